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
# # Using the NNGP score in a search
#
# The paper ends (section 5) with two ways to use an NNGP score that ranks
# architectures about as well as a few epochs of training but costs far less:
#
# 1. **Search-space reduction** (its Fig. 8): score the whole space with NNGP, keep the
#    top p% and run the costly training-based search there only. The paper reports that
#    keeping 30% "does not sacrifice the performance of the search while significantly
#    reducing the computational cost", unlike a random 30%, and that keeping 10%
#    degrades the search about as much as a random 10%.
# 2. **A hybrid metric** (its Fig. 9): a linear model of 4-epoch accuracy and NNGP
#    accuracy, fitted to 12-epoch accuracy, "produces a better performance metric than
#    4-epoch training alone, for only a small additional computational cost".
#
# Both are replayed here on the architectures of the NNGP scoring run, with the NB101
# table's shortened-training accuracies as the search signal and its 108-epoch
# accuracy (one training run) as the ground truth. At the paper's scale, in random
# 10,000-architecture spaces of the whole table, they are replayed in
# {doc}`the whole-table chapter <whole_table>`, on as many architectures as its run
# has scored.

# %% tags=["parameters"]
result_name: str = "nb101_nngp_k1"  # cached NNGP result (nngp_lib.results), used when it holds the settings below; if absent, a small sample is scored in scratch
recompute: bool = False  # True: score (or resume) `result_name` into results/ with the settings below
num_architectures: int = 10  # architectures scored when computing: random rows of the NB101 table (10..30001)
ensembles: list[int] = [1]  # ensemble sizes k (each at least 1); settings the cached run lacks are scored on num_architectures
n_trains: list[int] = [100]  # NNGP training-set sizes n when computing (each at least 10)
n_vals: list[int] = [100]  # NNGP validation-set sizes m when computing (each at least 10)
seed: int = 0  # seed of the architecture sample, the networks, the search trials and the splits
ladder_reading: bool = True  # also read NNGP at the ladder's best whole-sample setting once it covers this run
score_column: str = "nngp_acc"  # NNGP score: "nngp_acc" (best eps, the paper's) or "nngp_acc_loo" (leave-one-out eps)
screen_setting: str = ""  # label of the NNGP setting used for the screen, as in the tables below; "" takes the costliest
fractions: list[float] = [0.3, 0.1]  # shares of each search space kept by the screen (each in (0, 1])
search_epochs: list[int] = [12, 36]  # training budgets used as the search signal (of 4, 12, 36)
space_fraction: float = 0.5  # each trial's search space: this random share of the scored architectures (0..1]
num_trials: int = 500  # search trials (random spaces and visiting orders), at least 2
top_k: int = 1  # the search keeps the top_k drawn by the signal and reports the best truth among them
num_budgets: int = 25  # points per search curve (search budgets, geometrically spaced)
num_splits: int = 200  # random fit/evaluation splits of the hybrid metric (at least 1)
fit_fraction: float = 0.5  # share of architectures the hybrid is fitted on; it is scored on the rest

# %% tags=["remove-cell"]
# Singular settings (-p ensemble 8), lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
# (importing the library may print environment warnings, e.g. tqdm's about ipywidgets)
import altair as alt
import numpy as np
import pandas as pd

from nngp_lib import analysis, cost, plotting, search
from nngp_lib.book import nngp_sample_run, provenance_note, show, show_table, with_ladder_reading
from nngp_lib.data import nb101_table
from nngp_lib.spaces.nb101 import specs_from_table

if not 0 < space_fraction <= 1:
    raise ValueError(f"space_fraction must be in (0, 1], got {space_fraction}")
if num_trials < 2:
    raise ValueError(f"num_trials must be at least 2 (standard errors), got {num_trials}")
unknown_epochs = sorted(set(search_epochs) - {4, 12, 36})
if unknown_epochs:
    raise ValueError(f"search_epochs must be among 4, 12, 36 (the table's budgets below 108), got {unknown_epochs}")

plotting.enable_offline_renderer()
table = nb101_table.load_table()


# The cached run when it holds the settings asked for; else those settings scored on
# num_architectures into a result named after them (nngp_lib.book.nngp_sample_run).
run, run_note = nngp_sample_run(result_name, num_architectures, ensembles=ensembles, n_trains=n_trains,
                                n_vals=n_vals, seed=seed, recompute=recompute, chapter="applications")
rows, ladder_note = with_ladder_reading(run, table, value=score_column, enabled=ladder_reading)
proxies = analysis.proxy_scores(rows, table, values=(score_column,))
nngp = list(proxies.proxies.index[proxies.proxies["kind"] == analysis.NNGP])
truth = proxies.truth.to_numpy()
num_scored = len(proxies)

scored = table.set_index("hash").loc[proxies.scores.index]
specs = specs_from_table(scored)
flops = np.array([spec.flops() for spec in specs], dtype=np.float64)  # full width: what training costs
widths = sorted({1.0, *proxies.proxies.loc[nngp, "width_multiplier"].astype(float)})
# PFLOPs of one score per architecture, at the mean F of the networks each proxy runs
unit_costs = analysis.proxy_costs(proxies.proxies, analysis.mean_network_flops(specs, widths))
if screen_setting == "":
    screen_setting = unit_costs[nngp].idxmax()
elif screen_setting not in nngp:
    raise ValueError(f"screen_setting {screen_setting!r} is not a setting of the run; choose one of {nngp}")


def noise_caveat(n: int) -> str:
    """A sentence on how far a Kendall tau of n architectures can move by chance alone."""
    spread = 2 * search.tau_null_sd(n)  # two standard deviations of tau between independent rankings
    return f"With {n} architectures a Kendall tau moves by about ±{spread:.2f} from chance alone."


# %% tags=["remove-input"]
show(provenance_note(num_scored, f"the NNGP result `{run.name}`", {
    "score_column": score_column, "screen_setting": screen_setting, "fractions": fractions,
    "space_fraction": space_fraction, "num_trials": num_trials, "top_k": top_k, "seed": seed,
}))
show(run_note)
show(ladder_note)
show(run.record_markdown())
widths_used = sorted(float(w) for w in proxies.proxies.loc[nngp, "width_multiplier"].unique())
show(
    f"The Monte-Carlo networks of the NNGP scores have {' and '.join(f'{w:g}' for w in widths_used)} times the "
    "channels of the NB101 networks that were trained"
    + ("." if widths_used == [1.0] else ": a narrower network is a cheaper, noisier estimate of the limiting kernel.")
)

# %% [markdown]
# ## Search-space reduction
#
# Each trial draws a search space (a random `space_fraction` of the scored
# architectures, so that the screen sees a different space in every trial, as the
# paper's ten random 10,000-architecture subsets do) and searches it three ways:
#
# * **no reduction**: random search over the whole space;
# * **NNGP top p%**: score the whole space with NNGP, keep its top p%
#   (`nngp_lib.search.reduce_space`), random search there;
# * **random p%**: keep a random p% (`nngp_lib.search.random_reduction`), random search
#   there.
#
# The random search (`nngp_lib.search.random_search`) trains the architectures it
# draws, one after another in random order, for 12 or 36 epochs (the table's
# accuracies), keeps the `top_k` best by that accuracy and reports the best 108-epoch
# accuracy among them. Its cost is the training FLOPs of the architectures drawn
# (each with its own forward FLOPs, `nngp_lib.cost.training_flops`); the NNGP screen
# adds the cost of scoring every architecture of the space at the screen's setting
# (`nngp_lib.cost.nngp_flops` at the mean forward FLOPs). A search that has drawn
# every architecture of its space has spent its budget: the curves end there.

# %% tags=["hide-input"]
space_size = max(1, round(space_fraction * num_scored))
spaces = search.random_spaces(num_scored, space_size, num_trials, seed=seed)
screen_cost = space_size * float(unit_costs[screen_setting])  # PFLOPs of scoring one space with NNGP
curves = search.reduction_curves(
    proxies.scores[screen_setting].to_numpy(),
    {e: proxies.scores[analysis.training_label(e)].to_numpy() for e in search_epochs}, truth, spaces,
    fractions=fractions, costs={e: cost.to_pflops(cost.training_flops(flops, e)) for e in search_epochs},
    screen_cost=screen_cost, top_k=top_k, num_budgets=num_budgets, seed=seed,
).rename(columns={"signal": "epochs"})
STRATEGIES = list(curves["strategy"].unique())
pools = curves.groupby("strategy", sort=False)["pool_size"].first()
pool_sizes = sorted(pools.unique())

# %% tags=["remove-input"]
show(
    f"""
    {num_trials} trials, each on a space of {space_size} architectures. The screen uses
    **{screen_setting}** and costs {screen_cost:.3g} PFLOPs per space; training one architecture
    of mean size costs {float(unit_costs[analysis.training_label(search_epochs[0])]):.3g} PFLOPs for
    {search_epochs[0]} epochs. Kept pools: {", ".join(f"{name} = {size}" for name, size in pools.items())}
    architectures.
    """
)

# %% [markdown]
# Where every search has spent its budget (trained its whole pool), the truth of the
# architecture found (mean and standard error over the trials) and the cost:

# %%
exhausted = curves[curves["budget"] == curves["pool_size"]].set_index(["epochs", "strategy"])
exhausted = exhausted[["budget", "cost", "mean", "sem"]].rename(columns={"budget": "trained", "cost": "PFLOPs"})
show_table(exhausted.round({"PFLOPs": 3, "mean": 4, "sem": 4}))

# %% [markdown]
# And at equal training budget: with as many architectures trained as the screened
# pool holds, what the search finds with and without the screen:

# %%
equal_budget = curves[curves["budget"].isin(pool_sizes)].pivot_table(
    index=["epochs", "budget"], columns="strategy", values="mean"
)[STRATEGIES]
show_table(equal_budget.round(4))

# %% tags=["remove-input"]
def points(difference: float) -> str:
    """A difference of accuracies in percentage points, signed, never "-0.00"."""
    return f"{round(100 * difference, 2) + 0.0:+.2f}"


sentences, screen_wins = [], []
for epochs in search_epochs:
    full = exhausted.loc[(epochs, "no reduction")]
    for fraction in fractions:
        screened = exhausted.loc[(epochs, f"NNGP top {fraction:.0%}")]
        randomly = exhausted.loc[(epochs, f"random {fraction:.0%}")]
        screen_wins.append(screened["mean"] >= randomly["mean"])
        sentences.append(
            f"With {epochs}-epoch training, the NNGP top {fraction:.0%} finds {screened['mean']:.2%} for "
            f"{screened['PFLOPs'] / full['PFLOPs']:.0%} of the full search's cost, "
            f"{points(screened['mean'] - full['mean'])} points from the full search's {full['mean']:.2%}; "
            f"a random {fraction:.0%} finds {randomly['mean']:.2%} ({points(randomly['mean'] - full['mean'])})."
        )
show(" ".join(sentences))
if all(screen_wins):
    screen_verdict = "In every case the NNGP screen keeps a better search than a random reduction of the same size."
else:
    screen_verdict = (
        f"The NNGP screen beats a random reduction of the same size in {sum(screen_wins)} of {len(screen_wins)} cases."
    )
show(
    f"""
    {screen_verdict}
    The paper reads its Fig. 8 as: a 30% screen keeps the search's performance while a random 30% loses it,
    and a 10% screen degrades the search about as much as a random 10%. Two limits of this replay: the
    standard errors above are over trials drawn from the same {num_scored} scored architectures, so they
    measure the Monte-Carlo error of the trials, not the uncertainty of having scored only {num_scored}
    architectures; and each space holds {space_size} architectures against the paper's 10,000, so the
    smallest pool, of {min(pool_sizes)}, holds few candidates and the reduction's effect is coarse.
    """
)


# %% [markdown]
# The search curves: mean truth found against the cost (log scale), with a band of
# one standard error over the trials. The NNGP curves start to the right of the
# others by the screen's cost.

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
plot = curves.assign(low_sem=curves["mean"] - curves["sem"], high_sem=curves["mean"] + curves["sem"])
plot = plot[["epochs", "strategy", "budget", "cost", "mean", "low_sem", "high_sem"]].round(6)
colour = alt.Color("strategy:N", sort=STRATEGIES, title="search space")
base = alt.Chart(plot).encode(
    x=alt.X("cost:Q", scale=alt.Scale(type="log"), title="cost (PFLOPs)"),
    color=colour,
)
bands = base.mark_area(opacity=0.2).encode(y="low_sem:Q", y2="high_sem:Q")
lines = base.mark_line(point=alt.OverlayMarkDef(size=15)).encode(
    y=alt.Y("mean:Q", scale=alt.Scale(zero=False), title="108-epoch accuracy of the architecture found"),
    tooltip=["strategy:N", "budget:Q", alt.Tooltip("cost:Q", format=".3g"), alt.Tooltip("mean:Q", format=".4f")],
)
(bands + lines).properties(width=320, height=280).facet(
    column=alt.Column("epochs:O", title="search signal: epochs of training")
)

# %% [markdown]
# ## A hybrid of 4-epoch training and NNGP
#
# For every NNGP setting, a linear model `a · (4-epoch accuracy) + b · (NNGP accuracy)
# + c` is fitted by least squares to the 12-epoch accuracy (`nngp_lib.search.fit_hybrid`,
# three parameters as in the paper). The paper fits and evaluates on the same
# architectures; here each of `num_splits` random splits fits on a `fit_fraction` of the
# scored architectures and measures Kendall's tau against the 108-epoch accuracy on the
# **others** only (`nngp_lib.search.hybrid_split_scores`), next to 4-epoch accuracy and
# the NNGP accuracy alone on the same held-out architectures. Mean held-out tau over
# the splits, its 5th and 95th percentiles, and the share of splits where the hybrid
# beats 4-epoch training alone:

# %%
four, twelve = analysis.training_label(4), analysis.training_label(12)
hybrid_rows = {}
for setting in nngp:
    features = proxies.scores[[four, setting]]
    taus = search.hybrid_split_scores(
        features, proxies.scores[twelve], truth,
        num_splits=num_splits, train_fraction=fit_fraction, seed=seed,
    )
    hybrid_rows[setting] = {
        "hybrid": taus["hybrid"].mean(),
        "hybrid_p05": taus["hybrid"].quantile(0.05),
        "hybrid_p95": taus["hybrid"].quantile(0.95),
        "4 epochs": taus[four].mean(),
        "NNGP alone": taus[setting].mean(),
        "hybrid_beats_4": (taus["hybrid"] > taus[four]).mean(),
        "PFLOPs": float(unit_costs[four] + unit_costs[setting]),
    }
hybrid_table = pd.DataFrame.from_dict(hybrid_rows, orient="index").rename_axis("NNGP setting")
# the same seed and sizes give the same held-out architectures: training alone on them
training_taus = search.hybrid_split_scores(
    proxies.scores[[four, twelve]], proxies.scores[twelve], truth,
    num_splits=num_splits, train_fraction=fit_fraction, seed=seed,
)[[four, twelve]].mean()
show_table(hybrid_table.round(3))

# %% tags=["remove-input"]
best = hybrid_table["hybrid"].idxmax()
selection_note = (
    f" of the {len(nngp)} settings (chosen on these same splits, so slightly optimistic)" if len(nngp) > 1 else ""
)
full_fit = search.fit_hybrid(proxies.scores[[four, best]], proxies.scores[twelve])
num_held_out = num_scored - round(fit_fraction * num_scored)
if hybrid_table.loc[best, "hybrid_beats_4"] > 0.5:
    hybrid_verdict = "As the paper reports, the hybrid improves on 4-epoch training alone"
else:
    hybrid_verdict = "Unlike the paper's finding, the hybrid does not improve on 4-epoch training alone in most splits"
show(
    f"""
    The best hybrid{selection_note}, with **{best}**, ranks the held-out architectures with tau =
    {hybrid_table.loc[best, "hybrid"]:.3f} on average (5th to 95th percentile of the splits:
    {hybrid_table.loc[best, "hybrid_p05"]:.3f} to {hybrid_table.loc[best, "hybrid_p95"]:.3f}), against
    {hybrid_table.loc[best, "4 epochs"]:.3f} for 4-epoch accuracy and {hybrid_table.loc[best, "NNGP alone"]:.3f}
    for that NNGP accuracy alone; it beats 4-epoch training in {hybrid_table.loc[best, "hybrid_beats_4"]:.0%}
    of the splits, and adds {hybrid_table.loc[best, "PFLOPs"] / float(unit_costs[four]) - 1:.2%} to the cost of
    4-epoch training. Fitted on all {num_scored} architectures its weights are
    {full_fit.coef[0]:.3f} on 4-epoch and {full_fit.coef[1]:.3f} on NNGP accuracy (intercept
    {full_fit.intercept:.3f}). On the same held-out architectures, the 12-epoch accuracy the hybrid
    imitates ranks with tau = {training_taus[twelve]:.3f}, for {float(unit_costs[twelve] / unit_costs[four]):.3g}
    times the cost of 4 epochs.

    {hybrid_verdict};
    the paper does not separate fitting from evaluation, so its gain may include some overfitting that
    the held-out measurement here excludes. The splits reuse the same {num_scored} architectures, so the
    spread over splits shows the effect of the split, not a confidence interval over new architectures.
    {noise_caveat(max(num_held_out, 2))}
    """
)

# %% [markdown]
# Held-out tau against cost per architecture (the paper's Fig. 9 plots discovered
# performance instead): 4-epoch and 12-epoch training, each NNGP setting alone, and its
# hybrid with 4-epoch training.

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
points = pd.concat(
    [
        pd.DataFrame({"metric": list(hybrid_table.index), "kind": "NNGP alone",
                      "tau": hybrid_table["NNGP alone"], "PFLOPs": unit_costs[nngp].to_numpy()}),
        pd.DataFrame({"metric": list(hybrid_table.index), "kind": "hybrid with 4 epochs",
                      "tau": hybrid_table["hybrid"], "PFLOPs": hybrid_table["PFLOPs"]}),
        pd.DataFrame({"metric": [four, twelve], "kind": "training",
                      "tau": training_taus.to_numpy(), "PFLOPs": unit_costs[[four, twelve]].to_numpy()}),
    ],
    ignore_index=True,
).round(6)
alt.Chart(points).mark_point(filled=True, size=70).encode(
    x=alt.X("PFLOPs:Q", scale=alt.Scale(type="log"), title="cost per architecture (PFLOPs)"),
    y=alt.Y("tau:Q", scale=alt.Scale(zero=False), title="Kendall's tau with the 108-epoch accuracy"),
    color=alt.Color("kind:N", title=None),
    shape=alt.Shape("kind:N", title=None),
    tooltip=["metric:N", "kind:N", alt.Tooltip("tau:Q", format=".3f"), alt.Tooltip("PFLOPs:Q", format=".3g")],
).properties(width=480, height=320, title="Hybrid metrics: held-out tau against cost")
