"""``nngp-nas``: every example its --help shows runs as typed, at its tiny setting."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_tfrecord import official_file, table_rows  # noqa: F401  (fixtures: a small official TFRecord)

from nngp_lib import cli, results

NNGP_NAS = str(Path(sys.executable).with_name("nngp-nas"))
# The nb101 chapter example runs in tests/test_chapter_runs.py, next to papermill's form of that run.
RUN_ELSEWHERE = {"nngp-nas chapter nb101 -p ensemble 8 -p num_architectures 4 -p n_train 10 -p n_val 10"}


def _run(example: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(example)
    assert argv[0] == "nngp-nas"
    env = {**os.environ, "NNGP_NAS_RESULTS": str(cwd / "results")}
    return subprocess.run([NNGP_NAS, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)


@pytest.mark.parametrize("command", sorted(cli.EXAMPLES))
def test_help_shows_the_examples(command):
    done = subprocess.run([NNGP_NAS, command, "--help"], capture_output=True, text=True, check=True)
    for example in cli.EXAMPLES[command]:
        assert example in done.stdout, example


def test_the_main_help_lists_every_subcommand():
    text = subprocess.run([NNGP_NAS, "--help"], capture_output=True, text=True, check=True).stdout
    for command in (*cli.EXAMPLES, "ladder"):
        assert f"nngp-nas {command} " in text


@pytest.mark.slow
@pytest.mark.parametrize("example", [e for c in ("score", "score-table", "proxies") for e in cli.EXAMPLES[c]])
def test_scoring_examples_run_as_typed(example, tmp_path, data_dir):
    done = _run(example, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    if " --out " in example:
        name = example.split(" --out ")[1].split()[0]
        table = results.read(name, tmp_path / "results").table
        assert table["hash"].nunique() == 2
    else:
        assert '"nngp_acc"' in done.stdout


@pytest.mark.slow
def test_chapter_examples_run_as_typed(tmp_path, data_dir):
    for example in cli.EXAMPLES["chapter"]:
        if example in RUN_ELSEWHERE:
            continue
        done = _run(example, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        name = shlex.split(example)[2]
        assert (tmp_path / "artifacts" / "chapters" / f"{name}.ipynb").is_file()


def test_a_chapter_with_an_unknown_parameter_fails_in_one_line(tmp_path, data_dir):
    done = _run("nngp-nas chapter nb101_data -p ensemble 8", tmp_path)
    assert done.returncode == 1
    assert ("ParameterError: unknown parameter 'ensemble'; this chapter's parameters are: sample_for_plots, seed"
            in done.stderr.splitlines()[-1])


def test_convert_tfrecord_example_runs_as_typed(tmp_path, official_file):  # noqa: F811
    path, _, written = official_file
    (tmp_path / "nasbench_full.tfrecord").symlink_to(path)
    (example,) = cli.EXAMPLES["convert-tfrecord"]
    done = _run(example, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(pd.read_csv(tmp_path / "nb101_full.csv.gz")["hash"]) == set(written["hash"])
