"""The issue's literal command: papermill executes a chapter's .py, from the repository root
and from book/, with the singular (``-p ensemble 8``) and list forms, at a tiny setting.

The cached run ``nb101_nngp_k1`` holds k = 1 only, so k = 8 is scored into a new result in a
temporary results folder (a copy of the cached run there, the repository's results/ untouched).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nngp_lib import results

REPO = Path(__file__).resolve().parents[1]
PAPERMILL = str(Path(sys.executable).with_name("papermill"))
TINY = ["-p", "num_architectures", "4", "-p", "num_resamples", "100", "-p", "num_trials", "10"]
NEW_RESULT = "nb101_nngp_k1-a4-k8-n10-m10-w0.5-s0"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results_copy(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("results")
    for suffix in (".csv", ".json"):
        shutil.copy(REPO / "results" / f"nb101_nngp_k1{suffix}", folder)
    return folder


def _papermill(cwd: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NNGP_NAS_RESULTS": str(results)}
    return subprocess.run([PAPERMILL, "--no-progress-bar", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=1200)


def _markdown_outputs(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(str(o.get("data", {}).get("text/markdown", "")) + o.get("text", "")
                     for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_the_literal_command_from_the_root_scores_k8_into_a_named_result(results_copy, tmp_path):
    out = tmp_path / "out.ipynb"
    done = _papermill(REPO, results_copy, "book/chapters/nb101.py", str(out), "-p", "ensemble", "8",
                      "-p", "n_train", "10", "-p", "n_val", "10", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = results.read(NEW_RESULT, results_copy).table
    assert set(scored["ensemble"]) == {8} and scored["hash"].nunique() == 4
    text = _markdown_outputs(out)
    assert f"holds no k=8, n=10, m=10, width 0.5, so this page scored the new result `{NEW_RESULT}`" in text
    assert f"from the result `{NEW_RESULT}`" in text


def test_the_list_form_from_book_reads_the_same_result(results_copy, tmp_path):
    out = tmp_path / "out.ipynb"
    done = _papermill(REPO / "book", results_copy, "chapters/nb101.py", str(out), "-p", "ensembles", "[8]",
                      "-p", "n_trains", "[10]", "-y", "n_vals: [10]", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"the new result `{NEW_RESULT}`" in _markdown_outputs(out)


def test_an_unknown_parameter_stops_the_chapter_at_its_first_cell(results_copy, tmp_path):
    out = tmp_path / "out.ipynb"
    done = _papermill(REPO, results_copy, "book/chapters/nb101.py", str(out), "-p", "ensembels", "8")
    assert done.returncode != 0
    assert "ParameterError: unknown parameter 'ensembels'; this chapter's parameters are: " in done.stderr
    notebook = nbformat.read(out, as_version=4)
    executed = [c for c in notebook.cells if c.cell_type == "code" and c.get("execution_count")]
    assert "check_parameters(globals())" in executed[-1].source
