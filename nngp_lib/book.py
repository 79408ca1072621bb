"""Small helpers the book's chapters share: prose from variables, and what produced it.

Every sentence of a chapter that states a result is an f-string of the run's variables
shown with :func:`show`, never typed by hand; :func:`provenance_note` is the sentence
that says how many architectures and which settings produced a chapter's numbers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any


def format_settings(settings: Mapping[str, Any]) -> str:
    """``{"seed": 0, "k": 8}`` -> ``"k=8, seed=0"`` (sorted by name; ``"none"`` if empty)."""
    if not settings:
        return "none"
    return ", ".join(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
                     for name, value in sorted(settings.items()))


def provenance_note(n_architectures: int, source: str, settings: Mapping[str, Any]) -> str:
    """The sentence stating what a chapter's numbers come from, as Markdown.

    >>> provenance_note(30001, "the NB101 table", {"seed": 0})
    '*Numbers on this page: 30,001 architectures from the NB101 table; settings: seed=0.*'
    """
    if n_architectures < 0:
        raise ValueError(f"n_architectures must be >= 0, got {n_architectures}")
    return (
        f"*Numbers on this page: {n_architectures:,} architecture{'s' * (n_architectures != 1)} from {source}; "
        f"settings: {format_settings(settings)}.*"
    )


def show(markdown: str) -> None:
    """Display Markdown (dedented, stripped) as a cell output, e.g. a sentence of results."""
    from IPython.display import Markdown, display  # notebooks only; the library needs no IPython

    display(Markdown(textwrap.dedent(markdown).strip()))


def cached_or_computed(name: str, compute, *, recompute: bool = False):
    """The result a chapter analyses: the committed full-scale run, or a fresh computation.

    Args:
      name: result name (``results/<name>.csv`` and ``.json``).
      compute: ``compute(results_dir)`` runs the chapter's computation, writing the result
        ``name`` into ``results_dir`` (``None`` = the project's ``results/``), and returns it.
      recompute: compute even when a cached run exists, writing into ``results/``: the
        full-scale run of the README (``-p recompute True`` plus the full-scale parameters).

    Without a cached run and without ``recompute``, the chapter's default (small) setting is
    computed into a scratch folder, never into ``results/``, so a quick build can't pass
    itself off as the full-scale run, nor block its resumption.

    Returns ``(results.Results, cached: bool)``.
    """
    import tempfile
    from pathlib import Path

    from nngp_lib import results

    if not recompute and results.exists(name):
        return results.read(name), True
    scratch = None if recompute else Path(tempfile.mkdtemp(prefix="nngp-nas-scratch-"))
    return compute(scratch), False
