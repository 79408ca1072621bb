"""The chapters' shared helpers: parameter checks and the run a chapter analyses."""

from __future__ import annotations

import pytest

from nngp_lib import book, results


def _namespace(**given):
    """A chapter's namespace after papermill injected ``given`` (defaults as nb101's)."""
    namespace = {"__annotations__": {"result_name": str, "ensembles": list[int], "n_trains": list[int],
                                     "n_vals": list[int], "width_multiplier": float, "recompute": bool},
                 "result_name": "nb101_nngp_k1", "ensembles": [1], "n_trains": [100], "n_vals": [100],
                 "width_multiplier": 0.5, "recompute": False, "In": [], "get_ipython": print}
    namespace.update(given)
    return namespace


def test_singular_settings_set_the_chapters_lists():
    namespace = _namespace(ensemble=8, n_train=200, n_val=50, width=1)
    book.check_parameters(namespace)
    assert (namespace["ensembles"], namespace["n_trains"], namespace["n_vals"]) == ([8], [200], [50])
    assert namespace["width_multiplier"] == 1.0 and isinstance(namespace["width_multiplier"], float)
    assert "ensemble" not in namespace


def test_a_list_given_as_a_string_is_read_and_checked():
    namespace = _namespace(ensembles="[1, 8]", n_trains="100", n_vals=(10, 20))
    book.check_parameters(namespace)
    assert (namespace["ensembles"], namespace["n_trains"], namespace["n_vals"]) == ([1, 8], [100], [10, 20])
    with pytest.raises(book.ParameterError, match=r"cannot read '\[1, 8' as a list.*-y 'ensembles: \[1, 2\]'"):
        book.check_parameters(_namespace(ensembles="[1, 8"))
    with pytest.raises(book.ParameterError, match=r"ensembles\[1\] must be int, got 'eight'"):
        book.check_parameters(_namespace(ensembles="[1, eight]"))


def test_scalars_are_checked_against_their_annotation():
    with pytest.raises(book.ParameterError, match="recompute must be bool"):
        book.check_parameters(_namespace(recompute="yes"))
    namespace = _namespace(width_multiplier="0.25")
    book.check_parameters(namespace)
    assert namespace["width_multiplier"] == 0.25


def test_an_unknown_name_is_one_line_listing_the_parameters():
    with pytest.raises(book.ParameterError) as error:
        book.check_parameters(_namespace(ensembels=[8]))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("unknown parameter 'ensembels'; this chapter's parameters are: ensembles, ")
    assert "result_name" in message and "ensemble" in message.split(": ", 1)[1].split(", ")


def test_a_chapter_without_a_list_refuses_the_singular():
    namespace = {"__annotations__": {"seed": int}, "seed": 0, "ensemble": 8}
    with pytest.raises(book.ParameterError, match="unknown parameter 'ensemble'; .* are: seed$"):
        book.check_parameters(namespace)


def test_every_chapter_declares_annotated_parameters_and_checks_them():
    import ast
    from pathlib import Path

    for chapter in sorted(Path(__file__).resolve().parents[1].glob("book/chapters/*.py")):
        source = chapter.read_text()
        cells = source.split("\n# %%")
        index = next(i for i, cell in enumerate(cells) if cell.startswith(' tags=["parameters"]'))
        tree = ast.parse(cells[index].split("\n", 1)[1])
        assert tree.body and all(isinstance(node, ast.AnnAssign) for node in tree.body), chapter.name
        assert "check_parameters(globals())" in cells[index + 1], chapter.name


def test_the_cached_run_is_used_when_it_holds_the_settings(data_dir):
    run, note = book.nngp_sample_run("nb101_nngp_k1", 10, ensembles=[1], n_trains=[50, 100], n_vals=[100],
                                     width_multiplier=0.5)
    assert run.path == results.read("nb101_nngp_k1").path
    assert note.startswith("*The run:* ") and "holds no" not in note


def test_derived_names_say_the_settings():
    name = book.derived_result_name("nb101_nngp_k1", 10, [8], [100], [200], 0, 0.5)
    assert name == "nb101_nngp_k1-a10-k8-n100-m200-w0.5-s0"
    results.paths(name)  # a valid result name
