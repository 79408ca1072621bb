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
    assert "test run: 2 rows, settings ensemble=2" in back.describe()
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
