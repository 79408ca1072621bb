"""The results store: atomic writes, provenance, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from nngp_lib import results


def test_round_trip_keeps_table_and_provenance(tmp_path):
    table = pd.DataFrame({"hash": ["a" * 32, "b" * 32], "nngp_acc": [0.25, 0.3125]})
    record = results.new_provenance("test run", {"ensemble": 2}, command="pytest")
    results.write("scores", table, record, results_dir=tmp_path)

    back = results.read("scores", results_dir=tmp_path)
    pd.testing.assert_frame_equal(back.table, table)
    assert back.provenance["settings"] == {"ensemble": 2}
    assert back.provenance["rows"] == 2
    assert "numpy" in back.provenance["versions"]
    sentence = back.describe()
    assert sentence.startswith("test run: 2 rows, settings ensemble=2, computed 20") and "\n" not in sentence
    assert sentence.endswith("with `pytest`")
    block = back.record_markdown()
    assert block.startswith("<details><summary>The full provenance record of `scores`</summary>")
    assert '"ensemble": 2' in block and block.endswith("</details>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "scores.json"]


def test_missing_result_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"result 'nope' not found .*nngp-nas score"):
        results.read("nope", results_dir=tmp_path)


def test_corrupt_provenance_is_one_line_error(tmp_path):
    results.write("scores", pd.DataFrame({"x": [1]}), results.new_provenance("t", {}), results_dir=tmp_path)
    (tmp_path / "scores.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"^corrupt provenance file .*delete it and re-run$"):
        results.read("scores", results_dir=tmp_path)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_bad_names_are_rejected(name, tmp_path):
    with pytest.raises(ValueError, match="invalid result name"):
        results.paths(name, results_dir=tmp_path)


def test_failed_write_leaves_previous_files_intact(tmp_path, monkeypatch):
    results.write("scores", pd.DataFrame({"x": [1]}), results.new_provenance("t", {}), results_dir=tmp_path)

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        results.write("scores", pd.DataFrame({"x": [2]}), {"bad": Unserializable()}, results_dir=tmp_path)
    assert results.read("scores", results_dir=tmp_path).table["x"].tolist() == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_open_run_starts_resumes_and_refuses_other_runs(tmp_path):
    settings = {"k": 1}
    table, provenance = results.open_run("run", settings, ["hash", "score"], description="d",
                                         command="c", results_dir=tmp_path)
    assert list(table.columns) == ["hash", "score"] and table.empty
    assert provenance["settings"] == settings and provenance["command"] == "c"
    results.write("run", pd.DataFrame({"score": [0.5], "hash": ["a"]}), provenance, tmp_path)

    resumed, record = results.open_run("run", settings, ["hash", "score"], description="d",
                                       results_dir=tmp_path)
    assert list(resumed.columns) == ["hash", "score"] and resumed["hash"].tolist() == ["a"]
    assert record["started"] == provenance["started"]
    with pytest.raises(FileExistsError, match="pass resume=True"):
        results.open_run("run", settings, ["hash", "score"], description="d", resume=False,
                         results_dir=tmp_path)
    with pytest.raises(ValueError, match="computed with other settings"):
        results.open_run("run", {"k": 2}, ["hash", "score"], description="d", results_dir=tmp_path)
    with pytest.raises(ValueError, match="other columns"):
        results.open_run("run", settings, ["hash", "score", "seconds"], description="d",
                         results_dir=tmp_path)


def test_open_run_upgrades_an_older_result_before_comparing(tmp_path):
    results.write("old", pd.DataFrame({"hash": ["a"]}), results.new_provenance("d", {"k": 1}), tmp_path)

    def upgrade(previous):
        return results.Results(previous.table.assign(n=100), {**previous.provenance, "settings": {"k": 1, "n": 100}},
                               previous.path)

    table, provenance = results.open_run("old", {"k": 1, "n": 100}, ["hash", "n"], description="d",
                                         results_dir=tmp_path, upgrade=upgrade)
    assert table["n"].tolist() == [100] and provenance["settings"] == {"k": 1, "n": 100}


def test_a_run_folder_named_with_a_dot_keeps_its_whole_name(tmp_path):
    name = "nb101_nngp_k1-a4-k8-n10-m10-w0.5-s0"
    record = {**results.new_provenance("test run", {"ensemble": 8}, command="pytest"),
              "columns": ["hash", "nngp_acc"], "key_columns": ["hash"]}
    results.write_part(name, pd.DataFrame({"hash": ["a" * 32], "nngp_acc": [0.5]}), record, tmp_path)
    results.write_provenance(name, record, tmp_path, rows=1)
    back = results.read(name, tmp_path)
    assert back.name == name and f"`{name}`" in back.record_markdown()
    results.write("w0.5-csv", pd.DataFrame({"hash": ["b" * 32]}), record, results_dir=tmp_path)
    assert results.read("w0.5-csv", tmp_path).name == "w0.5-csv"
