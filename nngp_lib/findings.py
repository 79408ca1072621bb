"""The book's findings in one table: every key number read from a committed run.

The landing page (``book/chapters/findings.py``) shows :func:`key_results` and draws
:func:`cost_points`; each row names the run it comes from and the chapter that
analyses it. A run that is not committed yet leaves its rows out and is listed by
:func:`missing_runs`, so the page says what it could not show instead of inventing it.

Rows of :func:`key_results` (one per score):

* ``NNGP against training``: the book's 1,000-architecture run (``nb101_nngp_k1``) at
  each of its settings, with 4- and 12-epoch training on the same architectures;
* ``the ladder``: on the architectures every ladder width scored (at the settings planned
  on the shared prefix, :data:`nngp_lib.ladder.SHARED`), the NNGP settings on
  the frontier of tau against FLOPs spent, with 4- and 12-epoch training beside them;
* ``the whole table``: the run through every architecture of the NB101 table
  (``nb101_table_w025``), on as many as it has scored, with 4- and 12-epoch training on
  the same architectures;
* ``zero-cost proxies``: the best training-free proxy and the parameter count;
* ``cheap estimates``: how well each reduced-width NNGP run ranks like the full-width one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

NNGP_RUN = "nb101_nngp_k1"
TABLE_RUN = "nb101_table_w025"
PROXIES_RUN = "nb101_proxies"
CHEAP_RUNS = {"nb101_nngp_k1_w1": 1.0, "nb101_nngp_k1": 0.5, "nb101_nngp_k1_w025": 0.25}
CHEAP_SETTING = {"ensemble": 1, "n_train": 100, "n_val": 100}
EPOCHS = (4, 12)

COLUMNS = ["finding", "score", "architectures", "kendall_tau", "kendall_tau_low", "kendall_tau_high",
           "PFLOPs", "seconds", "run", "chapter"]


def _correlations(scores: pd.DataFrame, truth: pd.Series, num_resamples: int, seed: int) -> pd.DataFrame:
    from nngp_lib import analysis

    return analysis.correlation_table(scores, truth, num_resamples=num_resamples, seed=seed)


def _row(finding: str, score: str, count: int, tau: pd.Series, *, pflops=np.nan, seconds=np.nan, run: str,
         chapter: str) -> dict:
    return {"finding": finding, "score": score, "architectures": int(count), "kendall_tau": tau["kendall_tau"],
            "kendall_tau_low": tau.get("kendall_tau_low", np.nan),
            "kendall_tau_high": tau.get("kendall_tau_high", np.nan),
            "PFLOPs": float(pflops), "seconds": float(seconds), "run": run, "chapter": chapter}


def _run_against_training(run_name: str, finding: str, chapter: str, table: pd.DataFrame, num_resamples: int,
                          seed: int, results_dir) -> list[dict]:
    """Every NNGP setting of one run and 4- and 12-epoch training, on the run's complete architectures."""
    from nngp_lib import analysis, ladder, results

    run = results.read(run_name, results_dir)
    proxy_scores = analysis.proxy_scores(run.table, table, epochs=EPOCHS)
    widths = proxy_scores.proxies["width_multiplier"].dropna()
    costs = analysis.proxy_costs(proxy_scores.proxies, ladder.flops_by_width(proxy_scores, table, widths))
    taus = _correlations(proxy_scores.scores, proxy_scores.truth, num_resamples, seed)
    return [_row(finding, label, len(proxy_scores.truth), taus.loc[label], pflops=costs[label], run=run_name,
                 chapter=chapter) for label in proxy_scores.scores.columns]


def _nngp_against_training(table: pd.DataFrame, num_resamples: int, seed: int, results_dir) -> list[dict]:
    return _run_against_training(NNGP_RUN, "NNGP against training", "nb101", table, num_resamples, seed, results_dir)


def _whole_table(table: pd.DataFrame, num_resamples: int, seed: int, results_dir) -> list[dict]:
    return _run_against_training(TABLE_RUN, "the whole table", "whole_table", table, num_resamples, seed, results_dir)


def _ladder(table: pd.DataFrame, num_resamples: int, seed: int, results_dir) -> list[dict]:
    from nngp_lib import analysis, ladder

    rows, provenances = ladder.read_runs(results_dir=results_dir)
    proxy_scores = analysis.proxy_scores(ladder.covering(rows, ladder.SHARED), table, epochs=EPOCHS)
    summary = ladder.summary(proxy_scores, ladder.flops_by_width(proxy_scores, table, sorted(provenances)),
                             num_resamples=num_resamples, seed=seed)
    keep = summary[(summary["kind"] == analysis.TRAINING) | summary["frontier"]]
    runs = ", ".join(ladder.run_name(w) for w in sorted(provenances))
    return [_row("the ladder", label, len(proxy_scores.truth), keep.loc[label], pflops=keep.loc[label, "spent PFLOPs"],
                 run=runs, chapter="ladder") for label in keep.sort_values("spent PFLOPs").index]


def _zero_cost(table: pd.DataFrame, num_resamples: int, seed: int, results_dir) -> list[dict]:
    from nngp_lib import analysis, proxies, results

    run = results.read(PROXIES_RUN, results_dir)
    scores = proxies.wide_scores(run.table).dropna()
    scores = scores[[p for p in proxies.ZERO_COST if p in scores.columns]]
    truth = table.set_index("hash").loc[scores.index, analysis.TRUTH_COLUMN].astype(float)
    taus = _correlations(scores, truth, num_resamples, seed)
    seconds = run.table.groupby("proxy")["seconds"].median()
    training_free = [p for p in scores.columns if p not in ("params", "flops")]
    picked = [max(training_free, key=lambda p: taus.loc[p, "kendall_tau"])] if training_free else []
    picked += [p for p in ("params",) if p in scores.columns]
    return [_row("zero-cost proxies", f"{proxies.LABELS[p]}{' (best training-free proxy)' if i == 0 else ''}",
                 len(scores), taus.loc[p], seconds=seconds.get(p, np.nan), run=PROXIES_RUN, chapter="proxies")
            for i, p in enumerate(picked)]


def _cheap_estimates(table: pd.DataFrame, num_resamples: int, seed: int, results_dir) -> list[dict]:
    """Rank agreement with the full-width run; the truth, resamples and seed are not used."""
    from nngp_lib import results, scoring
    from nngp_lib.metrics import kendall_tau

    columns = {}
    for name, width in CHEAP_RUNS.items():
        rows = scoring.complete_settings(results.read(name, results_dir).table)
        wanted = np.isclose(rows["width_multiplier"], width) & (rows["downsample_factor"] == 1)
        for key, value in CHEAP_SETTING.items():
            wanted &= rows[key] == value
        columns[width] = rows[wanted].set_index("hash")["nngp_acc"]
    scores = pd.DataFrame(columns).dropna()
    reference = scores[1.0]
    return [_row("cheap estimates", f"width {width:g} against full width ({_setting()})", len(scores),
                 pd.Series({"kendall_tau": kendall_tau(scores[width], reference)}), run=name, chapter="cost_model")
            for name, width in CHEAP_RUNS.items() if width != 1.0]


def _setting() -> str:
    return f"k={CHEAP_SETTING['ensemble']}, n={CHEAP_SETTING['n_train']}, m={CHEAP_SETTING['n_val']}"


SOURCES = {
    "NNGP against training": ([NNGP_RUN], _nngp_against_training),
    "the ladder": (["nb101_ladder_w025"], _ladder),
    "the whole table": ([TABLE_RUN], _whole_table),
    "zero-cost proxies": ([PROXIES_RUN], _zero_cost),
    "cheap estimates": (list(CHEAP_RUNS), _cheap_estimates),
}


def missing_runs(results_dir: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Per finding, the committed runs it needs that are absent (empty lists: all present)."""
    from nngp_lib import results

    return {finding: [name for name in names if not results.exists(name, results_dir)]
            for finding, (names, _) in SOURCES.items()}


def key_results(
    table: pd.DataFrame,
    *,
    num_resamples: int = 1000,
    seed: int = 0,
    results_dir: str | os.PathLike | None = None,
    findings: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The key results, one row per score (columns :data:`COLUMNS`), from the runs present.

    Args:
      table: the NB101 table (:func:`nngp_lib.data.nb101_table.load_table`): the truth and training.
      num_resamples: bootstrap resamples of the architectures for the tau intervals (0: none).
      findings: which groups (keys of :data:`SOURCES`), default all whose runs are present.

    ``PFLOPs`` is the cost of one score by the paper's FLOP model (reduced widths counted as
    computed), ``seconds`` the measured median seconds per architecture where no FLOP
    model applies (the proxies); a cheap estimate's tau is against the full-width NNGP
    run on the same architectures, not against the truth.
    """
    missing = missing_runs(results_dir)
    wanted = list(SOURCES) if findings is None else list(findings)
    unknown = [f for f in wanted if f not in SOURCES]
    if unknown:
        raise ValueError(f"unknown findings {unknown}; choose from {list(SOURCES)}")
    rows: list[dict] = []
    for finding in wanted:
        if not missing[finding]:
            rows += SOURCES[finding][1](table, num_resamples, seed, results_dir)
    key = pd.DataFrame(rows, columns=COLUMNS)
    return key


def cost_points(key: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`key_results` with a FLOP cost, for the chart of tau against cost:
    ``kind`` is ``training`` or ``NNGP`` and ``source`` the finding."""
    points = key[key["PFLOPs"].notna() & (key["PFLOPs"] > 0)].copy()
    points["kind"] = np.where(points["score"].str.contains("epoch"), "training", "NNGP")
    points["source"] = points["finding"]
    return points
