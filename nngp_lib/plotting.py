"""Altair charts that draw offline, in the built book and in executed notebooks.

The book renders every chart with :func:`offline_mimebundle`, an altair renderer whose
``text/html`` is a ``<div class="nngp-vega-chart">`` followed by an inline script that
calls ``vegaEmbed`` on it. ``vegaEmbed`` itself is not fetched from a CDN: the book's
Sphinx extension (``book/_ext/vega_offline.py``) writes the vega / vega-lite /
vega-embed bundle of ``vl-convert`` into the build's ``_static`` folder and loads it on
every page that holds a chart. The renderer's output also carries the spec under the
Vega-Lite MIME type, for front ends that draw Vega-Lite themselves.

The HTML depends on nothing but the spec (the div id is a hash of it), so executing a
chapter twice gives byte-identical outputs, which keeps nbval comparisons stable.

Large tables are summarised before they are charted (:func:`histogram`,
:func:`density_heatmap`): a chart of the 30,001 NAS-Bench-101 architectures then embeds
a few hundred rows instead of all of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

VEGALITE_MIME_TYPE = f"application/vnd.vegalite.v{alt.VEGALITE_VERSION.split('.')[0]}+json"
"""The Vega-Lite MIME type front ends recognise. altair 6.3 emits ``...vegalite.v6.json``,
which nbformat refuses to hold a JSON object under (only ``*+json`` types may)."""

RENDERER_NAME = "nngp-offline"
MAX_CHART_ROWS = 20_000
"""Most rows one chart embeds: its data is inlined in the page, about 50 bytes a row."""
CHART_CLASS = "nngp-vega-chart"
"""CSS class of every chart div; the browser test counts charts by it."""

DEFAULT_EMBED_OPTIONS: Mapping[str, Any] = {"renderer": "svg", "actions": False}

# Characters that must not appear literally in JSON placed inside <script>:
# "</script>" or "<!--" would end or alter the script; U+2028/9 end lines in old JS.
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}

_MISSING_BUNDLE_MESSAGE = (
    "This chart is drawn by vega-embed, which the built book loads from its _static "
    "folder. In Jupyter, run altair.renderers.enable('default') to draw it here."
)


def _script_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    for char, escape in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def chart_html(spec: Mapping[str, Any], embed_options: Mapping[str, Any] | None = None) -> str:
    """HTML that draws a Vega-Lite ``spec`` with the page's ``vegaEmbed``.

    Args:
      spec: a Vega-Lite specification (``chart.to_dict()``), JSON-serialisable; NaN and
        infinities are rejected (Vega-Lite data must use ``null``).
      embed_options: vega-embed options, merged over ``{"renderer": "svg", "actions": false}``.

    Returns:
      A ``<div class="nngp-vega-chart" id="nngp-vega-<hash>">`` and the inline script that
      fills it. The id is the first 16 hex digits of the SHA-256 of the spec and the
      options, so the output is a pure function of its inputs. The script finds its div as
      its previous sibling, so two identical charts on one page both draw. Where
      ``vegaEmbed`` is not defined (a notebook front end outside the book), the div says so
      instead of staying empty.
    """
    options = {**DEFAULT_EMBED_OPTIONS, **(embed_options or {})}
    spec_json = _script_json(dict(spec))
    options_json = _script_json(options)
    digest = hashlib.sha256(f"{spec_json}\n{options_json}".encode()).hexdigest()[:16]
    return (
        f'<div class="{CHART_CLASS}" id="nngp-vega-{digest}"></div>\n'
        '<script type="text/javascript">\n'
        "(function (element) {\n"
        '  if (typeof window.vegaEmbed !== "function") {\n'
        f"    element.textContent = {_script_json(_MISSING_BUNDLE_MESSAGE)};\n"
        "    return;\n"
        "  }\n"
        f"  window.vegaEmbed(element, {spec_json}, {options_json}).catch(function (error) {{\n"
        '    element.textContent = "Chart failed to render: " + error;\n'
        "    console.error(error);\n"
        "  });\n"
        "})(document.currentScript.previousElementSibling);\n"
        "</script>"
    )


def offline_mimebundle(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """Altair renderer: ``text/html`` from :func:`chart_html` plus the Vega-Lite spec.

    ``metadata`` are the options given to ``alt.renderers.enable``; ``embed_options``
    among them is passed on to vega-embed.
    """
    return {
        "text/html": chart_html(spec, metadata.get("embed_options")),
        VEGALITE_MIME_TYPE: spec,
        "text/plain": f"<VegaLite {alt.VEGALITE_VERSION} chart>",
    }


def enable_offline_renderer(**embed_options: Any) -> None:
    """Register :func:`offline_mimebundle` as altair's renderer ``"nngp-offline"`` and enable it.

    Chapters call this once, before their first chart. Keyword arguments are vega-embed
    options, e.g. ``renderer="canvas"``. Charts may embed up to :data:`MAX_CHART_ROWS`
    rows (altair's default stops at 5,000, below a scatter of 1,000 architectures x 7
    proxies); larger data belongs in a :func:`density_heatmap`.
    """
    alt.data_transformers.enable("default", max_rows=MAX_CHART_ROWS)
    alt.renderers.register(RENDERER_NAME, offline_mimebundle)
    if embed_options:
        alt.renderers.enable(RENDERER_NAME, embed_options=embed_options)
    else:
        alt.renderers.enable(RENDERER_NAME)


def _bin_edges(edges: np.ndarray) -> np.ndarray:
    """Bin edges rounded to 6 significant digits: the spec (and the page) stays half as
    large, and no chart can show the difference."""
    return np.array([float(f"{edge:.6g}") for edge in edges])


def histogram(
    values: np.ndarray | pd.Series,
    *,
    bins: int | np.ndarray = 40,
    title: str,
    range: tuple[float, float] | None = None,
) -> alt.Chart:
    """Bar chart of counts of ``values`` (1-D), binned in numpy so the spec holds ``bins`` rows.

    NaNs are dropped. ``bins`` and ``range`` are as in ``numpy.histogram``; ``title`` is the
    x-axis title.
    """
    values = np.asarray(values, dtype=float).ravel()
    counts, edges = np.histogram(values[~np.isnan(values)], bins=bins, range=range)
    edges = _bin_edges(edges)
    frame = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", bin="binned", title=title),
            x2="end:Q",
            y=alt.Y("count:Q", title="architectures"),
            tooltip=[
                alt.Tooltip("start:Q", format=".3f"),
                alt.Tooltip("end:Q", format=".3f"),
                "count:Q",
            ],
        )
    )


def density_heatmap(
    x: np.ndarray | pd.Series,
    y: np.ndarray | pd.Series,
    *,
    bins: int = 40,
    x_title: str,
    y_title: str,
    range: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> alt.Chart:
    """Heatmap of how many points fall in each cell of a ``bins`` x ``bins`` grid.

    The 2-D counterpart of :func:`histogram` for scatters too large to embed: ``x`` and
    ``y`` are 1-D of the same length (pairs with a NaN are dropped); only non-empty cells
    become rows of the spec. The colour scale is logarithmic, so sparse tails stay visible
    next to the dense core.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    counts, x_edges, y_edges = np.histogram2d(x[keep], y[keep], bins=bins, range=range)
    x_edges, y_edges = _bin_edges(x_edges), _bin_edges(y_edges)
    i, j = np.nonzero(counts)
    frame = pd.DataFrame(
        {
            "x_start": x_edges[i],
            "x_end": x_edges[i + 1],
            "y_start": y_edges[j],
            "y_end": y_edges[j + 1],
            "count": counts[i, j].astype(int),
        }
    )
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("x_start:Q", bin="binned", title=x_title),
            x2="x_end:Q",
            y=alt.Y("y_start:Q", bin="binned", title=y_title),
            y2="y_end:Q",
            color=alt.Color("count:Q", scale=alt.Scale(type="log"), title="architectures"),
            tooltip=["count:Q"],
        )
    )
