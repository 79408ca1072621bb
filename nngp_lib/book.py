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
    # notebooks only; the library needs no IPython
    from IPython.display import Markdown, display

    display(Markdown(textwrap.dedent(markdown).strip()))


def format_number(value: Any) -> str:
    """A table cell for reading: thousands separated, at most six significant digits
    (callers round first), ``–`` for a missing value.

    >>> [format_number(v) for v in (1207.2628, 0.1234, 3.0, float("nan"))]
    ['1,207.26', '0.1234', '3', '–']
    """
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, ",.6g")


def show_table(frame, *, index: bool = True, float_format=None, formatters=None, escape: bool = True) -> None:
    """Display a DataFrame (or Series) as an HTML table, numbers formatted by
    :func:`format_number` unless ``float_format`` or per-column ``formatters`` say otherwise
    (the arguments of :meth:`pandas.DataFrame.to_html`); ``escape=False`` keeps HTML in cells (links)."""
    import pandas as pd
    from IPython.display import HTML, display  # notebooks only

    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    html = frame.to_html(index=index, float_format=float_format or format_number, formatters=formatters,
                         na_rep="–", border=0, classes="nngp-table", escape=escape)
    display(HTML(html))


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


class ParameterError(ValueError):
    """A chapter parameter that is unknown or cannot be read; the message is one line."""


# A user types the singular of a setting (``-p ensemble 8``); a chapter may hold the list
# of several (``ensembles``) or its own name for it (the MNAS chapter's ``nngp_train``).
SINGULAR_PARAMETERS = {
    "ensemble": ("ensembles",),
    "n_train": ("n_trains", "nngp_train"),
    "n_val": ("n_vals", "nngp_val"),
    "width": ("width_multiplier", "width_multipliers", "widths"),
}

# Names the IPython kernel and papermill (``--inject-paths``) put in a notebook's namespace.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (int, float, bool, str or list[...] of those), or a ParameterError."""
    import typing

    import yaml

    origin = typing.get_origin(annotation)
    if origin is list or annotation is list:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ParameterError(
                    f"parameter {name}: cannot read {value!r} as a list; write it as -p {name} '[1, 2]' "
                    f"or -y '{name}: [1, 2]'"
                ) from None
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            value = [value]  # a single value for a list parameter: the list of that one value
        (item_type,) = typing.get_args(annotation) or (None,)
        if item_type in (int, float, str, bool):
            return [_coerce(f"{name}[{i}]", item, item_type) for i, item in enumerate(value)]
        return value
    if annotation in (int, float) and isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        return value if isinstance(value, str) else str(value)
    else:
        return value
    raise ParameterError(f"parameter {name} must be {annotation.__name__}, got {value!r}")


def check_parameters(namespace: dict[str, Any]) -> None:
    """Check and normalise a chapter's parameters in place; call it with ``globals()`` in the
    cell right after the ``parameters`` cell, whose assignments carry type annotations.

    * A singular setting a user types (``ensemble``, ``n_train``, ``n_val``, ``width``) sets
      the chapter's own parameter for it (:data:`SINGULAR_PARAMETERS`): ``-p ensemble 8``
      becomes ``ensembles = [8]`` where the chapter holds a list.
    * A list parameter given as a string (papermill's ``-p ensembles '[1, 8]'``) is read as
      YAML; a single value becomes a one-value list; each item is checked against the
      annotation (``list[int]``), as are scalars.
    * A name that is not a parameter of the chapter raises :class:`ParameterError`, one line
      listing the chapter's parameters.
    """
    declared = dict(namespace.get("__annotations__", {}))
    if not declared:
        raise ParameterError("the chapter's parameters cell declares no annotated parameters (name: type = value)")
    given = [
        name for name, value in namespace.items()
        if name not in declared and not name.startswith("_") and not name.startswith("PAPERMILL_")
        and name not in _KERNEL_NAMES and not callable(value) and type(value).__name__ != "module"
    ]
    for name in given:
        target = next((t for t in SINGULAR_PARAMETERS.get(name, ()) if t in declared), None)
        if target is None:
            singulars = sorted(s for s, targets in SINGULAR_PARAMETERS.items() if any(t in declared for t in targets))
            accepted = ", ".join(sorted(declared) + singulars)
            raise ParameterError(f"unknown parameter {name!r}; this chapter's parameters are: {accepted}")
        namespace[target] = namespace.pop(name)
    for name, annotation in declared.items():
        if name in namespace:
            namespace[name] = _coerce(name, namespace[name], annotation)


def _setting_label(ensemble: int, n_train: int, n_val: int, width_multiplier: float) -> str:
    return f"k={ensemble}, n={n_train}, m={n_val}, width {width_multiplier:g}"


def derived_result_name(result_name: str, num_architectures: int, ensembles, n_trains, n_vals, seed: int,
                        width_multiplier: float) -> str:
    """The name of a run at settings the cached ``result_name`` does not hold, e.g.
    ``nb101_nngp_k1-a10-k8-n100-m100-w0.5-s0``: readable, and the same for the same settings
    (so a second call resumes it instead of starting over)."""
    def values(xs):
        return "_".join(str(x) for x in xs)

    return (f"{result_name}-a{num_architectures}-k{values(ensembles)}-n{values(n_trains)}-m{values(n_vals)}"
            f"-w{width_multiplier:g}-s{seed}")


def nngp_sample_run(result_name: str, num_architectures: int, *, ensembles, n_trains, n_vals, seed: int = 0,
                    width_multiplier: float = 0.5, recompute: bool = False, chapter: str = "a chapter"):
    """The NNGP run a chapter analyses: the cached ``result_name`` when it holds every
    requested setting, else a run of exactly the requested ones.

    * Cached and holding every (k, n, m, width) asked for: that run (its other settings
      too). The chapter's defaults are chosen so that the committed run holds them.
    * Cached but missing one: ``num_architectures`` of the seeded sample are scored at
      the requested settings into a new result, named by :func:`derived_result_name`, in
      the results folder (resumed if it exists), with a progress bar and a rough time
      estimate first. The page names that result instead of quietly showing the cache.
    * Not cached: :func:`cached_or_computed`'s rule (a scratch folder, or ``results/``
      with ``recompute``).

    Returns ``(results.Results, note)`` where ``note`` is one Markdown sentence saying which
    of these happened.
    """
    import itertools

    from nngp_lib import results, scoring

    requested = [(int(k), int(n), int(m), float(width_multiplier))
                 for k, n, m in itertools.product(ensembles, n_trains, n_vals)]
    command = (f"book/chapters/{chapter}.py (num_architectures={num_architectures}, ensembles={list(ensembles)}, "
               f"n_trains={list(n_trains)}, n_vals={list(n_vals)}, width_multiplier={width_multiplier}, seed={seed})")

    def compute(name, results_dir):
        return scoring.score_sample(
            name, num_architectures, ensembles=ensembles, n_trains=n_trains, n_vals=n_vals, seed=seed,
            width_multiplier=width_multiplier, results_dir=results_dir, command=command, progress=True,
        )

    if recompute or not results.exists(result_name):
        run, cached = cached_or_computed(result_name, lambda folder: compute(result_name, folder), recompute=recompute)
        where = "computed into results/" if recompute else "computed in a scratch folder (no cached run)"
        return run, f"*The run:* `{result_name}`, {where}: {run.describe()}."
    run = results.read(result_name)
    table = run.table
    held = set(zip(table["ensemble"].astype(int), table["n_train"].astype(int), table["n_val"].astype(int),
                   table["width_multiplier"].astype(float)))
    missing = [setting for setting in requested if setting not in held]
    if not missing:
        return run, f"*The run:* {run.describe()}."
    name = derived_result_name(result_name, num_architectures, ensembles, n_trains, n_vals, seed, width_multiplier)
    # A rough estimate from the cached run's own timings: cost grows with k and with n + m.
    seconds = table["seconds"].astype(float)
    scale = sum(k * (n + m) for k, n, m, _ in requested) / float(
        (table["ensemble"] * (table["n_train"] + table["n_val"])).mean())
    estimate = num_architectures * float(seconds.mean()) * scale
    print(f"{result_name} holds no {_setting_label(*missing[0])}: scoring {num_architectures} architectures "
          f"into the result {name} (roughly {estimate / 60:.1f} min after about a minute of compilation)",
          flush=True)
    new_run = compute(name, None)
    note = (f"*The run:* the cached run `{result_name}` holds no {_setting_label(*missing[0])}, so this page "
            f"scored the new result `{name}`: {new_run.describe()}.")
    return new_run, note


def with_ladder_reading(run, table, *, value: str = "nngp_acc", enabled: bool = True, results_dir=None):
    """``run``'s rows (a :class:`nngp_lib.results.Results`) plus the NNGP score at the
    ladder's best whole-sample setting (:func:`nngp_lib.ladder.best_reading`), so that a
    chapter reads that setting next to its own: ``(rows, note)``.

    The ladder's rows join only when they hold every architecture of ``run``, so the
    chapter's analysis keeps all of its architectures; until then ``rows`` is the run's
    own and ``note`` says how far the ladder is. ``enabled=False`` (a chapter's
    ``ladder_reading`` parameter) returns the run's own rows.
    """
    import pandas as pd

    from nngp_lib import ladder

    if not enabled:
        return run.table, "*The ladder's reading:* not asked for (ladder_reading=False)."
    reading = ladder.best_reading(table, value=value, results_dir=results_dir)
    if reading.empty:
        return run.table, "*The ladder's reading:* no ladder run at quarter width yet, so none is shown."
    setting = reading.iloc[0]
    label = _setting_label(int(setting["ensemble"]), int(setting["n_train"]), int(setting["n_val"]),
                           float(setting["width_multiplier"]))
    wanted = set(run.table["hash"])
    held = wanted & set(reading["hash"])
    if held != wanted:
        return run.table, (
            f"*The ladder's reading:* its best whole-sample setting so far, {label}, holds {len(held):,} of this "
            f"page's {len(wanted):,} architectures; it joins this page's analysis once the ladder "
            f"(`nngp-nas ladder --width 0.25`) has scored them all.")
    extra = reading[reading["hash"].isin(wanted)].reindex(columns=run.table.columns)
    return pd.concat([run.table, extra], ignore_index=True), (
        f"*The ladder's reading:* the NNGP score at the ladder's best whole-sample setting, {label} "
        f"(`{ladder.run_name(0.25)}`; chosen by its tau on these architectures, as the paper reads its figures), "
        "is read next to this page's own settings.")
