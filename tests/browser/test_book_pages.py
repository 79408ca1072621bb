"""Every page of the built book, opened from disk by headless Chromium, with the network cut.

For each page of ``_build/html`` (``make book``) the test checks that the page asks for
nothing from the network, that its scripts raise no error, and that every altair chart
drew: each
``div.nngp-vega-chart`` holds an SVG with marks once the scripts ran. For pages built
from an executed chapter it also checks that the page has exactly as many charts as the
notebook has chart outputs. A screenshot of each page goes to ``artifacts/screenshots/``.

Needs Chromium (``$CHROMIUM``, default ``/usr/bin/chromium``; ``make browser`` installs
it) and the built book. Where either is missing the tests skip, except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from nngp_lib.plotting import CHART_CLASS, VEGALITE_MIME_TYPE

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
HTML_ROOT = REPO / "_build" / "html"
EXECUTED = REPO / "book" / "executed"
SCREENSHOTS = REPO / "artifacts" / "screenshots"
WINDOW = (1280, 6000)  # tall enough for a chapter's charts to appear in its screenshot

_REMOTE = re.compile(r"^(https?:)?//", re.I)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: the browser test must run in CI)")
    pytest.skip(reason)


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        _unavailable(f"Chromium not found at {path}: run `make chromium` or set CHROMIUM")
    return path


def _built_pages() -> list[Path]:
    """The book's pages; index.html is only a redirect to the root page."""
    return sorted(
        page
        for page in HTML_ROOT.rglob("*.html")
        if not page.relative_to(HTML_ROOT).parts[0].startswith("_") and page.name != "index.html"
    )


PAGES = _built_pages() if HTML_ROOT.is_dir() else []


def _page_id(page: Path | None) -> str:
    return "book-not-built" if page is None else page.relative_to(HTML_ROOT).as_posix()


def _chart_outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [
        output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if VEGALITE_MIME_TYPE in output.get("data", {}) or CHART_CLASS in output.get("data", {}).get("text/html", "")
    ]


def _render(page: Path) -> BeautifulSoup:
    """The page's DOM after its scripts ran, with any request off this machine refused."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / (_page_id(page).replace("/", "__").removesuffix(".html") + ".png")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--enable-logging=stderr",  # the page's console messages, JS errors included
                "--v=0",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                f"--screenshot={screenshot}",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, f"chromium failed on {page}:\n{result.stderr[-2000:]}"
    assert screenshot.is_file() and screenshot.stat().st_size > 0
    errors = [line for line in result.stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    assert errors == [], f"script errors on {_page_id(page)}:\n" + "\n".join(errors)
    return BeautifulSoup(result.stdout, "html.parser")


@pytest.mark.parametrize("page", PAGES or [None], ids=_page_id)
def test_page_is_offline_and_draws_every_chart(page: Path | None):
    if page is None:
        _unavailable(f"no built book in {HTML_ROOT}: run `make book` first")
    source = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    remote = [
        f"<{tag.name} {attr}={tag[attr]}>"
        for tag in source.find_all(["script", "link", "img", "iframe", "source", "video", "audio"])
        for attr in ("src", "href")
        if tag.has_attr(attr) and _REMOTE.match(tag[attr])
    ]
    assert remote == [], f"{_page_id(page)} loads from the network: {remote}"

    chart_divs = source.select(f"div.{CHART_CLASS}")
    chapter_pages = HTML_ROOT / "book" / "executed"
    if page.is_relative_to(chapter_pages):
        notebook = EXECUTED / page.relative_to(chapter_pages).with_suffix(".ipynb")
        charts = _chart_outputs(nbformat.read(notebook, as_version=4))
        assert len(chart_divs) == len(charts), (
            f"{len(charts)} chart outputs in {notebook.name} but {len(chart_divs)} charts on its page"
        )

    dom = _render(page)
    drawn = dom.select(f"div.{CHART_CLASS}")
    assert len(drawn) == len(chart_divs)
    for chart in drawn:
        svg = chart.find("svg", class_="marks")
        assert svg is not None, f"chart {chart.get('id')} on {_page_id(page)} did not draw: {chart.get_text()[:200]!r}"
        assert svg.select("g.role-mark path, g.role-mark rect"), f"chart {chart.get('id')} drew no marks"


def test_every_chart_output_has_the_offline_html():
    """A chart shown with altair's own renderers carries only the Vega-Lite spec, which the
    book cannot draw (and Sphinx's warning about it is silenced in _config.yml)."""
    notebooks = sorted(EXECUTED.glob("*.ipynb"))
    if not notebooks:
        _unavailable(f"no executed chapters in {EXECUTED}: run `make book` first")
    for path in notebooks:
        for output in _chart_outputs(nbformat.read(path, as_version=4)):
            assert CHART_CLASS in output.get("text/html", ""), (
                f"{path.name}: a chart without the offline HTML; call "
                "nngp_lib.plotting.enable_offline_renderer() before the first chart"
            )


def test_the_landing_page_is_the_findings_with_linked_tables():
    index = HTML_ROOT / "index.html"
    if not index.is_file():
        _unavailable(f"no built book in {HTML_ROOT}: run `make book` first")
    assert "book/executed/findings.html" in index.read_text(encoding="utf-8")
    page = HTML_ROOT / "book" / "executed" / "findings.html"
    dom = _render(page)
    (table,) = dom.select("table.nngp-table")
    rows = table.select("tbody tr")
    assert len(rows) >= 5
    links = {a["href"] for a in table.select("a[href]")}
    assert links and all((page.parent / link).is_file() for link in links), links
    assert len(dom.select(f"div.{CHART_CLASS} svg.marks")) == 1


def test_tables_render_as_html_tables():
    """Every table a chapter displays (nngp_lib.book.show_table) is an HTML table on its page."""
    notebooks = sorted(EXECUTED.glob("*.ipynb"))
    if not notebooks:
        _unavailable(f"no executed chapters in {EXECUTED}: run `make book` first")
    shown = 0
    for path in notebooks:
        tables = sum(output.get("data", {}).get("text/html", "").count('class="dataframe nngp-table"')
                     for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []))
        page = HTML_ROOT / "book" / "executed" / path.with_suffix(".html").name
        on_page = len(BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").select("table.nngp-table"))
        assert on_page == tables, f"{path.name}: {tables} tables in the notebook, {on_page} on its page"
        shown += tables
    assert shown >= 20
