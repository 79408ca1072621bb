"""papermill reads jupytext chapters through nngp_lib.papermill_plugin (a papermill.io entry point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import papermill_io

from nngp_lib.papermill_plugin import JupytextLocalHandler

REPO = Path(__file__).resolve().parents[1]
PAPERMILL = [sys.executable, "-m", "papermill", "--no-progress-bar", "-k", "python3"]

TINY_CHAPTER = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
ensemble = 1

# %%
print("ensemble", ensemble * 2)
'''


def test_the_entry_point_replaces_papermills_local_handler():
    for path in ("book/chapters/nb101.py", "chapters/nb101.py", "out.ipynb", "local"):
        assert isinstance(papermill_io.get_handler(path), JupytextLocalHandler), path
    assert [scheme for scheme, _ in papermill_io._handlers].count("local") == 1


def test_a_chapter_source_reads_as_its_notebook_with_the_parameters_cell():
    notebook = nbformat.reads(papermill_io.read(str(REPO / "book/chapters/nb101.py")), as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "result_name" in tagged[0].source
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_ipynb_is_read_unchanged(tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    assert papermill_io.read(str(path)) == path.read_text()


def test_writing_over_a_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match="give an .ipynb output path"):
        papermill_io.write("{}", str(tmp_path / "chapter.py"))


def test_papermill_executes_a_py_with_parameters(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_CHAPTER)
    out = tmp_path / "out.ipynb"
    subprocess.run([*PAPERMILL, "tiny.py", str(out), "-p", "ensemble", "4"], cwd=tmp_path, check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    outputs = [o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])]
    assert "ensemble 8\n" in outputs
    assert (tmp_path / "tiny.py").read_text() == TINY_CHAPTER  # the source stays the source


def test_without_an_output_path_a_piped_run_writes_the_notebook_to_stdout(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_CHAPTER)
    done = subprocess.run([*PAPERMILL, "tiny.py"], cwd=tmp_path, check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    notebook = nbformat.reads(done.stdout, as_version=4)
    assert any("ensemble 2" in o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
