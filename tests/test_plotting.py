"""The offline altair renderer, the chart helpers and the book's Sphinx extension."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import altair as alt
import nbformat
import numpy as np
import pandas as pd
import pytest

from nngp_lib import plotting

REPO = Path(__file__).resolve().parent.parent

_SCRIPT_CALL = re.compile(r"window\.vegaEmbed\(element, (\{.*?\}), (\{.*?\})\)\.catch", re.S)


def _embedded(html: str) -> tuple[dict, dict]:
    """The spec and the options that the chart's script passes to vegaEmbed."""
    spec_json, options_json = _SCRIPT_CALL.search(html).groups()
    return json.loads(spec_json), json.loads(options_json)


@pytest.fixture
def offline_renderer():
    previous = alt.renderers.active
    plotting.enable_offline_renderer()
    yield
    alt.renderers.enable(previous)
    alt.data_transformers.enable("default")


def _bars() -> alt.Chart:
    frame = pd.DataFrame({"x": ["a", "b", "c"], "y": [1.5, 2.0, 0.25]})
    return alt.Chart(frame).mark_bar().encode(x="x:N", y="y:Q")


def test_chart_html_embeds_the_spec_and_the_default_options():
    spec = _bars().to_dict()
    html = plotting.chart_html(spec)
    assert html.startswith(f'<div class="{plotting.CHART_CLASS}" id="nngp-vega-')
    embedded_spec, options = _embedded(html)
    assert embedded_spec == spec
    assert options == {"renderer": "svg", "actions": False}
    assert _embedded(plotting.chart_html(spec, {"renderer": "canvas"}))[1] == {
        "renderer": "canvas",
        "actions": False,
    }


def test_chart_html_is_a_function_of_the_spec():
    spec = _bars().to_dict()
    assert plotting.chart_html(spec) == plotting.chart_html(json.loads(json.dumps(spec)))
    other = _bars().properties(title="other").to_dict()
    ids = {re.search(r'id="([^"]+)"', plotting.chart_html(s)).group(1) for s in (spec, other)}
    assert len(ids) == 2


def test_chart_html_survives_markup_in_the_data():
    hostile = "</script><script>alert(1)</script><!-- & \u2028"
    chart = alt.Chart(pd.DataFrame({"x": [hostile], "y": [1]})).mark_bar().encode(x="x:N", y="y:Q")
    html = plotting.chart_html(chart.properties(title=hostile).to_dict())
    assert html.count("</script>") == 1 and html.endswith("</script>")
    assert "<!--" not in html
    spec, _ = _embedded(html)
    assert spec["title"] == hostile


def test_chart_html_rejects_nan():
    with pytest.raises(ValueError):
        plotting.chart_html({"data": {"values": [{"x": float("nan")}]}, "mark": "point"})


def test_renderer_bundle_is_valid_notebook_output(offline_renderer):
    chart = _bars()
    bundle = chart._repr_mimebundle_()
    if isinstance(bundle, tuple):  # altair returns (data, metadata)
        bundle = bundle[0]
    assert bundle[plotting.VEGALITE_MIME_TYPE] == chart.to_dict()
    assert _embedded(bundle["text/html"])[0] == chart.to_dict()
    # nbformat only lets *+json MIME types hold a JSON object: papermill refuses
    # altair 6.3's own "application/vnd.vegalite.v6.json" key when saving the notebook.
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", data=bundle)])]
    )
    nbformat.validate(notebook)


def test_charts_embed_a_thousand_architectures_times_seven_proxies_but_not_unbounded_data(offline_renderer):
    def scatter(rows: int) -> alt.Chart:
        return alt.Chart(pd.DataFrame({"x": np.arange(rows, dtype=float)})).mark_point().encode(x="x:Q")

    assert len(scatter(7000).to_dict()["datasets"]) == 1  # altair's default stops at 5,000 rows
    with pytest.raises(alt.MaxRowsError):
        scatter(plotting.MAX_CHART_ROWS + 1).to_dict()


def test_histogram_counts_every_value_once():
    rng = np.random.default_rng(0)
    values = np.append(rng.normal(size=1000), [np.nan, np.nan])
    rows = plotting.histogram(values, bins=25, title="x").data
    assert len(rows) == 25
    assert rows["count"].sum() == 1000
    np.testing.assert_allclose(rows["start"].to_numpy()[1:], rows["end"].to_numpy()[:-1])
    np.testing.assert_allclose(
        [rows["start"].iloc[0], rows["end"].iloc[-1]], [np.nanmin(values), np.nanmax(values)], rtol=1e-5
    )


def test_density_heatmap_keeps_only_occupied_cells():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=5000)
    y = x + 0.01 * rng.normal(size=5000)  # a thin diagonal: most cells of the grid stay empty
    x[0] = np.nan
    rows = plotting.density_heatmap(x, y, bins=40, x_title="x", y_title="y").data
    assert rows["count"].sum() == 4999
    assert (rows["count"] > 0).all()
    assert len(rows) < 40 * 40 / 4
    assert (rows["x_end"] > rows["x_start"]).all() and (rows["y_end"] > rows["y_start"]).all()


def test_density_heatmap_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="same length"):
        plotting.density_heatmap(np.zeros(3), np.zeros(4), x_title="x", y_title="y")


def _load_extension():
    spec = importlib.util.spec_from_file_location("vega_offline", REPO / "book" / "_ext" / "vega_offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # vl-convert takes about 5 s to bundle vega
def test_extension_bundle_defines_vega_embed_in_its_own_scope():
    source = _load_extension()._bundle_source()
    major_minor = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    assert f"vega-lite {major_minor} " in source.splitlines()[0]  # the version altair emits
    assert source.splitlines()[1] == "(function () {"
    assert source.rstrip().endswith("}).call(window);")
    assert "window.vegaEmbed=" in source
