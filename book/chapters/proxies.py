# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Beyond the paper: NNGP among the training-free proxies
#
# The paper compares NNGP inference with shortened training. Since it appeared,
# NAS has gathered *zero-cost proxies*: scores of one randomly initialized network
# on one batch of data, computed in a forward or a backward pass, far cheaper than an
# NNGP kernel. This chapter scores the same architectures with NNGP and with
#
# * **NASWOT** (Mellor et al., 2021): log |det K_H|, where K_H[i, j] counts the ReLU
#   units on which images i and j of a batch agree (both active or both inactive);
# * **synflow** (Tanaka et al., 2020): the "synaptic flow" sum |θ ∂R/∂θ| of the
#   network with all parameters made positive, on an all-ones image (no data);
# * **SNIP** (Lee et al., 2019) and **grad_norm**: the connection sensitivity
#   sum |θ g| and the summed per-layer norms of the gradient g of the cross-entropy of a
#   labelled batch, as defined in Abdelfattah et al. (2021, "Zero-Cost Proxies for
#   Lightweight NAS");
# * the **parameter count** and the **FLOPs** of the network, which need no network at all;
#
# and, on a smaller subset, with the **empirical NTK** of the paper's own comparison
# (its "Comments on usage of NTK"). All are computed by `nngp_lib.proxies` and
# `nngp_lib.ntk` on the same NAS-Bench-101 networks and CIFAR-10 images as the NNGP
# (definitions, batch sizes and initialization in their docstrings). We ask three
# questions: how well each ranks the architectures for what it costs; whether the
# NTK does better than the NNGP, as one might expect of a kernel that describes
# training; and whether a combination of NNGP with the cheap proxies beats every
# single one on architectures it was not fitted on.
#
# The ground truth is NAS-Bench-101's 108-epoch validation accuracy of **one**
# training run.

# %% tags=["parameters"]
result_name: str = "nb101_nngp_k1"  # cached NNGP run (nngp_lib.results); computed here if absent or recompute
proxies_result: str = "nb101_proxies"  # cached proxies of that run's architectures; computed here if absent or recompute
ntk_result: str = "nb101_ntk"  # cached empirical NTK and matching NNGP of a subset; computed here if absent or recompute
recompute: bool = False  # compute the three results even if they exist (each resumes a run with the same settings)
num_architectures: int = 12  # architectures drawn from the NB101 table (NNGP) or from the NNGP run (proxies) when computing
ensembles: list[int] = [1]  # NNGP ensemble numbers k when computing the NNGP run (each >= 1)
n_trains: list[int] = [50, 100]  # NNGP training set sizes n when computing (each >= 10)
n_vals: list[int] = [100]  # NNGP validation set sizes m when computing (each >= 10)
proxy_names: list[str] = ["naswot", "synflow", "snip", "grad_norm", "params", "flops"]  # proxies of nngp_lib.proxies
naswot_batch: int = 32  # NASWOT batch when computing (the library's and Mellor et al.'s default: 128)
gradient_batch: int = 16  # SNIP and grad_norm batch when computing (the library's default: 64)
proxy_stem_channels: int = 32  # width of the proxies' networks when computing (NB101's: 128)
ntk_architectures: int = 4  # architectures of the NNGP run whose empirical NTK is computed (2..num scored)
ntk_n_train: int = 20  # NTK (and matching NNGP) training images (>= 10)
ntk_n_val: int = 20  # NTK (and matching NNGP) validation images (>= 10)
ntk_stem_channels: int = 16  # width of the NTK's networks (NB101's: 128; the Jacobians grow with its square)
seed: int = 0  # seed of the draws of architectures, of the networks, of the images and of the splits
ladder_reading: bool = True  # also read NNGP at the ladder's best whole-sample setting once it covers this run
num_resamples: int = 1000  # bootstrap resamples of the architectures for the tau intervals (100..10000)
top_fraction: float = 0.1  # PQETP threshold: the truth of the top this fraction of the scored architectures
subset_size: int = 100  # architectures per random subset for the discovered performance (at most half the scored)
top_k: int = 10  # architectures kept by each score in a subset
num_trials: int = 100  # random subsets for the discovered performance
num_splits: int = 50  # random fitting/test splits of the combination experiment
test_fraction: float = 0.5  # share of the architectures held out in each split

# %% tags=["remove-cell"]
# Singular settings (-p ensemble 8), lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
import warnings

import altair as alt
import numpy as np
import pandas as pd
from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # tqdm.auto finds no ipywidgets here

from nngp_lib import analysis, metrics, plotting, proxies, results, scoring
from nngp_lib.book import cached_or_computed, nngp_sample_run, provenance_note, show, show_table, with_ladder_reading
from nngp_lib.data import nb101_table

unknown = sorted(set(proxy_names) - set(proxies.ZERO_COST))
if unknown:
    raise ValueError(f"proxy_names must be among {proxies.ZERO_COST}, got {unknown}")
if not 0.0 < top_fraction < 0.5:
    raise ValueError(f"top_fraction must be in (0, 0.5), got {top_fraction}")

plotting.enable_offline_renderer()
table = nb101_table.load_table()
TRUTH = analysis.TRUTH_COLUMN



def proxies_of_run(name: str, names: list[str], limit: int, options: dict):
    """``compute(results_dir)`` scoring the first ``limit`` of the NNGP run's architectures."""
    def compute(results_dir) -> results.Results:
        return proxies.score_result_architectures(
            run, name, names, limit=limit, seed=seed, options=options, progress=False,
            results_dir=results_dir,
            command=f"book/chapters/proxies.py ({name}: proxies {names} of {result_name}, limit={limit}, "
            f"seed={seed}, options={options})",
        )
    return compute


# Each result is the committed full-scale run when there is one, else computed here at
# the small default scale into a scratch folder (never into results/).
# The NNGP run: the cached one when it holds the settings asked for, else those settings
# scored on num_architectures into a result named after them (nngp_lib.book.nngp_sample_run).
run, run_note = nngp_sample_run(result_name, num_architectures, ensembles=ensembles, n_trains=n_trains,
                                n_vals=n_vals, seed=seed, recompute=recompute, chapter="proxies")
rows, ladder_note = with_ladder_reading(run, table, enabled=ladder_reading)
zero_cost_run, _ = cached_or_computed(proxies_result, proxies_of_run(
    proxies_result, proxy_names, num_architectures,
    {p: o for p, o in {"naswot": {"batch_size": naswot_batch, "stem_channels": proxy_stem_channels},
                       "synflow": {"stem_channels": proxy_stem_channels},
                       "snip": {"batch_size": gradient_batch, "stem_channels": proxy_stem_channels},
                       "grad_norm": {"batch_size": gradient_batch, "stem_channels": proxy_stem_channels},
                       }.items() if p in proxy_names},
), recompute=recompute)
ntk_options = {"n_train": ntk_n_train, "n_val": ntk_n_val, "stem_channels": ntk_stem_channels}
ntk_run, _ = cached_or_computed(ntk_result, proxies_of_run(
    ntk_result, ["ntk", "nngp"], ntk_architectures, {"ntk": ntk_options, "nngp": ntk_options}), recompute=recompute)

# One score matrix over the architectures scored by NNGP at every setting and by every proxy.
nngp_scores = analysis.proxy_scores(rows, table, values=("nngp_acc",), epochs=())
NNGP = list(nngp_scores.proxies.index)
zero_cost = proxies.wide_scores(zero_cost_run.table)
ZERO = [p for p in proxies.ZERO_COST if p in zero_cost.columns]
LABEL = {p: proxies.LABELS[p] for p in ZERO}
zero_cost = zero_cost[ZERO].rename(columns=LABEL)
ZERO = [LABEL[p] for p in ZERO]
scores = nngp_scores.scores.join(zero_cost, how="inner").dropna()
truth = table.set_index("hash").loc[scores.index, TRUTH].astype(float)
n = len(scores)
if n < 6:
    raise ValueError(f"only {n} architectures carry every score: score more (num_architectures) or check the runs")

# Measured cost: median seconds per architecture of each score, as its run recorded it.
nngp_seconds = scoring.complete_settings(rows)[rows["hash"].isin(scores.index)].merge(
    nngp_scores.proxies.reset_index()[["proxy", *scoring.SETTING_COLUMNS]], on=list(scoring.SETTING_COLUMNS)
).groupby("proxy")["seconds"].median()
proxy_seconds = zero_cost_run.table[zero_cost_run.table["hash"].isin(scores.index)].groupby("proxy")[
    "seconds"].median().rename(index=proxies.LABELS)
seconds = pd.concat([nngp_seconds, proxy_seconds]).reindex(NNGP + ZERO)
family = pd.Series({**{p: "NNGP" for p in NNGP}, **{p: "zero-cost proxy" for p in ZERO}})
family[[LABEL[p] for p in ("params", "flops") if p in LABEL]] = "size baseline"


def listing(labels) -> str:
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' * (count != 1)}"


def option(result: results.Results, proxy: str, name: str, default):
    """A proxy option as the run recorded it (the run records only non-default values)."""
    return result.provenance["settings"]["options"].get(proxy, {}).get(name, default)


def noise_caveat(count: int, width: float) -> str:
    """The sentence that says how far a tau from ``count`` architectures can be trusted."""
    if count >= 100:
        return f"With {count:,} architectures a tau is known to about ±{width:.2f}."
    return (f"With only {count} architectures a tau is known to about ±{width:.2f}: at this size the taus "
            "are noise, and the differences between scores below are not evidence of anything.")


# %% tags=["remove-input"]
show(provenance_note(
    n, f"the results `{run.name}` (NNGP), `{proxies_result}` (zero-cost proxies) and `{ntk_result}` (NTK)",
    {"seed": seed, "num_resamples": num_resamples, "top_fraction": top_fraction, "num_splits": num_splits,
     "test_fraction": test_fraction, "subset_size": subset_size, "top_k": top_k, "num_trials": num_trials},
))
show(run_note + "\n\n" + ladder_note + "\n\n" + "\n\n".join(f"*{what}:* {r.describe()}." for what, r in
                                     (("Zero-cost proxies", zero_cost_run), ("NTK", ntk_run))))
for r in (run, zero_cost_run, ntk_run):
    show(r.record_markdown())
show(
    f"""
    {n:,} architectures carry every score: the NNGP run's architectures scored at all its
    {len(NNGP)} settings ({listing(NNGP)}) that the proxies' run also scored. The NNGP networks have
    stem width {listing([str(c) for c in sorted({scoring.stem_channels(w) for w in rows["width_multiplier"]})])}
    (NAS-Bench-101's is 128); the zero-cost proxies' networks have stem width
    {option(zero_cost_run, "naswot", "stem_channels", 128)}, NASWOT a batch of
    {option(zero_cost_run, "naswot", "batch_size", proxies.NASWOT_BATCH)} images and SNIP and grad_norm
    one of {option(zero_cost_run, "snip", "batch_size", proxies.GRADIENT_BATCH)} (one shared gradient).
    """
)

# %% [markdown]
# ## Ranking quality against measured cost
#
# For each score: Kendall's tau-b with its percentile bootstrap interval (architectures
# resampled), Spearman's rho, PQETP at the threshold of the top of the truth among these
# architectures, the average discovered performance (best truth among the score's top
# architectures of random subsets), and the median seconds one architecture took, as
# each run recorded it (wall time on the machine named above, compilation included the
# first time a layer shape appears). The size baselines take microseconds.

# %%
threshold = float(np.quantile(truth, 1.0 - top_fraction))
correlations = analysis.correlation_table(scores, truth, num_resamples=num_resamples, seed=seed)
subset = min(subset_size, n // 2)
keep = min(top_k, max(1, subset // 10))
discovered = analysis.discovered_performance_table(scores, truth, subset_size=subset, top_k=keep,
                                                   num_trials=num_trials, seed=seed)
quality = pd.DataFrame({
    "family": family,
    "kendall_tau": correlations["kendall_tau"],
    "tau_low": correlations["kendall_tau_low"],
    "tau_high": correlations["kendall_tau_high"],
    "spearman": [metrics.spearman(scores[c], truth) for c in scores.columns],
    "pqetp": [metrics.pqetp(scores[c], truth, threshold) for c in scores.columns],
    "discovered": discovered.loc[scores.columns, "mean"],
    "seconds": seconds,
}).rename_axis("score")
show_table(quality.drop(columns="family").round({"kendall_tau": 3, "tau_low": 3, "tau_high": 3, "spearman": 3,
                                            "pqetp": 3, "discovered": 4, "seconds": 1}))

# %% tags=["remove-input"]
half_width = float(np.median(quality["tau_high"] - quality["tau_low"]) / 2)
best_nngp = quality.loc[NNGP, "kendall_tau"].idxmax()
best_zero = quality.loc[ZERO, "kendall_tau"].idxmax()
backwards = quality.index[(quality["tau_high"] < 0)]
backwards_sentence = (
    f"The interval of {listing(backwards)} lies entirely below zero: "
    f"{'it ranks' if len(backwards) == 1 else 'they rank'} NAS-Bench-101 backwards."
    if len(backwards) else "No score's interval lies entirely below zero."
)
random_pick, ceiling = discovered.loc[analysis.RANDOM_CHOICE, "mean"], discovered.loc[analysis.BEST_IN_SUBSET, "mean"]
show(
    f"""
    {noise_caveat(n, half_width)} The best NNGP setting by tau is {best_nngp}
    ({quality.loc[best_nngp, "kendall_tau"]:.3f} [{quality.loc[best_nngp, "tau_low"]:.3f},
    {quality.loc[best_nngp, "tau_high"]:.3f}], {quality.loc[best_nngp, "seconds"]:.1f} s per architecture);
    the best of the other scores is {best_zero} ({quality.loc[best_zero, "kendall_tau"]:.3f}
    [{quality.loc[best_zero, "tau_low"]:.3f}, {quality.loc[best_zero, "tau_high"]:.3f}],
    {quality.loc[best_zero, "seconds"]:.3g} s).
    {backwards_sentence}
    PQETP is taken at {threshold:.4f}, above which lie the top {top_fraction:.0%}
    ({plural(int((truth > threshold).sum()), "architecture")}). In the discovered performance, each score keeps its top
    {keep} of {num_trials} random subsets of {subset}; picking at random discovers {random_pick:.4f}
    and a perfect score {ceiling:.4f}.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
chart_data = quality.reset_index()
# The size baselines cost microseconds: draw them at a floor so that the log axis keeps them.
floor = 10 ** np.floor(np.log10(chart_data.loc[chart_data["family"] != "size baseline", "seconds"].min() / 10))
chart_data["x"] = chart_data["seconds"].clip(lower=floor)
base = alt.Chart(chart_data).encode(
    x=alt.X("x:Q", scale=alt.Scale(type="log"), title="median seconds per architecture (log; measured)"),
    color=alt.Color("family:N", title=None, legend=alt.Legend(orient="bottom")),
    tooltip=["score:N", alt.Tooltip("seconds:Q", format=".3g"), alt.Tooltip("kendall_tau:Q", format=".3f"),
             alt.Tooltip("tau_low:Q", format=".3f"), alt.Tooltip("tau_high:Q", format=".3f"),
             alt.Tooltip("pqetp:Q", format=".3f")],
)
(
    base.mark_rule().encode(y=alt.Y("tau_low:Q", title="Kendall's tau-b against the 108-epoch truth"),
                            y2="tau_high:Q")
    + base.mark_point(filled=True, size=70).encode(y="kendall_tau:Q", shape=alt.Shape("family:N", legend=None))
    + base.mark_text(align="left", dx=6, fontSize=10).encode(y="kendall_tau:Q", text="score:N")
    + alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray", strokeDash=[3, 3]).encode(y="y:Q")
).properties(width=520, height=320, title="Ranking quality against measured cost (95% bootstrap intervals)")

# %% [markdown]
# ## The empirical NTK (the paper's comparison)
#
# The paper computes the empirical-NTK validation accuracy of 1,000 NAS-Bench-101
# networks and reports that its best Kendall's tau is lower than the NNGP's "for
# equivalent parameters", and that it costs more: every image needs the Jacobian of the
# logits with respect to all parameters, and the Jacobians need much memory. We compute
# the logit-averaged empirical NTK Θ(x, x') = (1/10) Σ_o J_o(x) · J_o(x') with
# neural-tangents on a smaller seeded subset, with the same inference as the NNGP, and
# pair it with the NNGP of the very same network (network 0 of the NNGP ensemble at the
# same seed, k = 1) on the same images at the same width. On this CPU, narrow networks
# and few images are what the Jacobians allow.

# %%
ntk_wide = proxies.wide_scores(ntk_run.table).rename(columns=proxies.LABELS)
ntk_hashes = ntk_wide.dropna().index
on_subset = ntk_wide.loc[ntk_hashes, ["NTK", "NNGP"]].rename(columns={"NNGP": "NNGP, same network and images"})
on_subset = on_subset.join(scores[NNGP], how="left")
subset_truth = table.set_index("hash").loc[ntk_hashes, TRUTH].astype(float)
ntk_seconds = ntk_run.table.groupby("proxy")["seconds"].median().rename(index=proxies.LABELS)
ntk_table = pd.DataFrame({
    "mean accuracy": on_subset.mean(),
    "kendall_tau": [metrics.kendall_tau(on_subset[c], subset_truth, nan_policy="omit") for c in on_subset.columns],
    "seconds": pd.Series({"NTK": ntk_seconds.get("NTK"), "NNGP, same network and images": ntk_seconds.get("NNGP"),
                          **seconds[NNGP].to_dict()}),
}).rename_axis("score")
show_table(ntk_table.round({"mean accuracy": 3, "kendall_tau": 3, "seconds": 1}))

# %% tags=["remove-input"]
n_ntk = len(ntk_hashes)
ntk_width = option(ntk_run, "ntk", "stem_channels", 128)
ntk_images = (option(ntk_run, "ntk", "n_train", 100), option(ntk_run, "ntk", "n_val", 100))
ratio = ntk_table.loc["NTK", "seconds"] / ntk_table.loc["NNGP, same network and images", "seconds"]
show(
    f"""
    {plural(n_ntk, "architecture")}, networks of stem width {ntk_width} (NB101: 128), {ntk_images[0]} training and
    {ntk_images[1]} validation images. The NTK took {ratio:.2g} times as long as the NNGP of the same
    network and images ({ntk_table.loc["NTK", "seconds"]:.1f} s against
    {ntk_table.loc["NNGP, same network and images", "seconds"]:.1f} s per architecture),
    {"as the paper says it would" if ratio > 1 else "unlike what the paper reports"}. Its mean validation accuracy is {ntk_table.loc["NTK", "mean accuracy"]:.3f} against
    {ntk_table.loc["NNGP, same network and images", "mean accuracy"]:.3f} for that NNGP. Their taus,
    {ntk_table.loc["NTK", "kendall_tau"]:.3f} and {ntk_table.loc["NNGP, same network and images", "kendall_tau"]:.3f},
    come from {n_ntk} architectures{" and are pure noise" if n_ntk < 30 else ""}: this page checks the cost
    side of the paper's statement, and the machinery, not its claim about tau.
    """
)

# %% [markdown]
# ## A combined training-free score
#
# Can NNGP and the cheap proxies together rank better than any of them alone? We
# build two combinations of the most expensive NNGP setting with the zero-cost
# proxies and the size baselines, and the same two of the cheap proxies alone:
#
# * the **rank average**: each score turned into ranks, flipped if it correlates
#   negatively with the truth, and averaged;
# * a **linear model on ranks**: least squares of the truth's rank on the scores' ranks.
#
# Both are *fitted* (the orientations, the model's weights) on a random part of the
# architectures and *judged only on the others*, over repeated seeded splits; every
# single score gets the same treatment (its orientation fitted on the fitting part), so
# a score that ranks backwards is not penalized for its sign. The table gives the mean
# and standard deviation over splits of Kendall's tau, Spearman's rho and PQETP (at the
# top of the truth of each test part) on the held-out architectures.

# %%
combined_nngp = quality.loc[NNGP, "seconds"].idxmax()
combinations = {f"{combined_nngp} + proxies": [combined_nngp, *ZERO], "proxies only": ZERO}
held_out = proxies.held_out_comparison(scores[[*NNGP, *ZERO]], truth, combinations, num_splits=num_splits,
                                       test_fraction=test_fraction, top_fraction=top_fraction, seed=seed)
summary = held_out.groupby("score")[["kendall_tau", "spearman", "pqetp"]].agg(["mean", "std"])
summary = summary.sort_values(("kendall_tau", "mean"), ascending=False)
show_table(summary.round(3))

# %% tags=["remove-input"]
by_split = held_out.pivot(index="split", columns="score", values="kendall_tau")
singles = [*NNGP, *ZERO]
best_single = by_split[singles].mean().idxmax()
combined = [c for c in by_split.columns if c not in singles]
best_combined = by_split[combined].mean().idxmax()
wins = float((by_split[best_combined] > by_split[singles].max(axis=1)).mean())
gain = by_split[best_combined] - by_split[best_single]
num_test = int(round(test_fraction * n))
show(
    f"""
    Over {num_splits} splits, each holding out {num_test} of the {n} architectures, the best single
    score is {best_single} (held-out tau {by_split[best_single].mean():.3f} ± {by_split[best_single].std():.3f})
    and the best combination {best_combined} ({by_split[best_combined].mean():.3f} ±
    {by_split[best_combined].std():.3f}). Split by split, the combination's tau minus that of
    {best_single} is {gain.mean():+.3f} on average (± {gain.std():.3f}), and the combination beats
    *every* single score of its split in {wins:.0%} of the splits.
    {noise_caveat(num_test, 1.96 * np.sqrt(2 * (2 * num_test + 5) / (9 * num_test * (num_test - 1))))}
    The splits reuse the same {n} architectures, so their spread understates how much these numbers
    would move on another sample.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
held_out_summary = held_out.groupby(["score", "kind"])["kendall_tau"].agg(["mean", "std"]).reset_index()
held_out_summary["low"] = held_out_summary["mean"] - held_out_summary["std"]
held_out_summary["high"] = held_out_summary["mean"] + held_out_summary["std"]
order = list(summary.index)
bars = alt.Chart(held_out_summary).encode(
    y=alt.Y("score:N", sort=order, title=None),
    color=alt.Color("kind:N", title=None, legend=alt.Legend(orient="bottom")),
    tooltip=["score:N", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f")],
)
(
    bars.mark_rule().encode(x=alt.X("low:Q", title="held-out Kendall's tau-b (mean ± sd over splits)"), x2="high:Q")
    + bars.mark_point(filled=True, size=60).encode(x="mean:Q")
).properties(width=420, height=alt.Step(22), title="Single scores and combinations, on held-out architectures")

# %% [markdown]
# ## Reading these numbers
#
# The zero-cost proxies were proposed elsewhere: NASWOT on NAS-Bench-201, SNIP and
# synflow as criteria for pruning single weights; how they transfer to NAS-Bench-101
# is what the tables above measure, next to the two size baselines that any proxy of
# this space has to beat. The comparison is on equal terms only in the inputs:
# the same cells, networks and images. It is not on equal terms in cost: a zero-cost
# proxy is one pass over one batch, an NNGP score the features of hundreds of images
# and an eigendecomposition, so the chart above shows what each second buys.
