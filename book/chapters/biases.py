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
# # Biases of the NNGP score
#
# A cheap score is useful for architecture search only if its errors are not
# systematic in a way that hides good architectures. The paper (section 4.1 and its
# appendix F) looks for such biases of NNGP validation accuracy in three places:
#
# 1. **Residual connections** (its Fig. 4): the competitive architectures that NNGP
#    misses are "mostly linear networks, having none or a small number of residual
#    connections", architectures that also look poor early in training.
# 2. **Model size** (its Fig. 6): NNGP accuracy could merely track the number of
#    parameters, a trivial property of an architecture; the paper finds "very low
#    correlation" between the two.
# 3. **Size clusters** (its Figs. S7 to S10): NAS-Bench-101's parameter counts fall
#    into separate clusters, which makes model size a strong but trivial predictor of
#    the best architectures; within the cluster of models below 10 million parameters
#    it stops being one, while NNGP and shortened training keep their ranking.
#
# Training-based numbers come from the whole NB101 table; NNGP numbers from the
# architectures of the scoring run (a random sample of the table), on which every
# proxy is also re-measured, so that NNGP and training are compared on the same
# architectures.

# %% tags=["parameters"]
result_name: str = "nb101_nngp_k1"  # cached NNGP result (nngp_lib.results), used when it holds the settings below; if absent, a small sample is scored in scratch
recompute: bool = False  # True: score (or resume) `result_name` into results/ with the settings below
num_architectures: int = 10  # architectures scored when computing: random rows of the NB101 table (10..30001)
ensembles: list[int] = [1]  # ensemble sizes k (each at least 1); settings the cached run lacks are scored on num_architectures
n_trains: list[int] = [100]  # NNGP training-set sizes n when computing (each at least 10)
n_vals: list[int] = [100]  # NNGP validation-set sizes m when computing (each at least 10)
seed: int = 0  # seed of the architecture sample and of the network initializations
ladder_reading: bool = True  # also read NNGP at the ladder's best whole-sample setting once it covers this run
score_column: str = "nngp_acc"  # NNGP score: "nngp_acc" (best eps, the paper's) or "nngp_acc_loo" (leave-one-out eps)
competitive_fraction: float = 0.2  # "competitive" architectures: this top fraction by 108-epoch accuracy (0..1)
size_limit: float = 10e6  # the paper's size cluster: fewer trainable parameters than this
cluster_gap: float = 2e6  # jump in parameter count that separates two size clusters (> 0)
pqetp_quantile: float = 0.5  # PQETP threshold: this quantile of the table's 108-epoch accuracy (0..1)
num_resamples: int = 1000  # bootstrap resamples of the architectures for confidence intervals (at least 1)
sample_for_plots: int = 3000  # points of the table in the size scatter (1..5000)

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

from nngp_lib import analysis, plotting, search
from nngp_lib.book import nngp_sample_run, provenance_note, show, show_table, with_ladder_reading
from nngp_lib.data import nb101_table
from nngp_lib.metrics import kendall_tau

for name, value in {"competitive_fraction": competitive_fraction, "pqetp_quantile": pqetp_quantile}.items():
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
if not 1 <= sample_for_plots <= 5000:
    raise ValueError(f"sample_for_plots must be in 1..5000 (altair embeds at most 5000 rows), got {sample_for_plots}")

TRUTH = analysis.TRUTH_COLUMN
SIZE = "trainable parameters"
TRAINING = [analysis.training_label(epochs) for epochs in (4, 12, 36)]

plotting.enable_offline_renderer()
table = nb101_table.load_table()


# The cached run when it holds the settings asked for; else those settings scored on
# num_architectures into a result named after them (nngp_lib.book.nngp_sample_run).
run, run_note = nngp_sample_run(result_name, num_architectures, ensembles=ensembles, n_trains=n_trains,
                                n_vals=n_vals, seed=seed, recompute=recompute, chapter="biases")
rows, ladder_note = with_ladder_reading(run, table, value=score_column, enabled=ladder_reading)
proxies = analysis.proxy_scores(rows, table, values=(score_column,))
nngp = list(proxies.proxies.index[proxies.proxies["kind"] == analysis.NNGP])
# the chapter's charts show the most informative setting: largest n, then k, then m
main = proxies.proxies.loc[nngp].sort_values(["n_train", "ensemble", "n_val"]).index[-1]
scored = table.set_index("hash").loc[proxies.scores.index]
num_scored = len(proxies)


def noise_caveat(n: int) -> str:
    """A sentence on how far a Kendall tau of n architectures can move by chance alone."""
    spread = 2 * search.tau_null_sd(n)  # two standard deviations of tau between independent rankings
    return (
        f"With {n} architectures, a Kendall tau moves by about ±{spread:.2f} from chance alone, "
        f"so differences smaller than that are noise."
    )


# %% tags=["remove-input"]
show(provenance_note(num_scored, f"the NNGP result `{run.name}`", {"score_column": score_column}))
show(run_note)
show(ladder_note)
show(run.record_markdown())
widths_used = sorted(float(w) for w in proxies.proxies.loc[nngp, "width_multiplier"].unique())
show(
    f"The Monte-Carlo networks of the NNGP scores have {' and '.join(f'{w:g}' for w in widths_used)} times the "
    "channels of the NB101 networks that were trained"
    + ("." if widths_used == [1.0] else ": a narrower network is a cheaper, noisier estimate of the limiting kernel.")
)
show(
    f"""
    The run scored {num_scored:,} architectures at {len(nngp)} setting(s)
    ({", ".join(nngp)}){f"; {proxies.dropped} were left out, not scored at every setting" if proxies.dropped else ""}.
    Charts use **{main}**. Table-wide numbers use all {len(table):,} architectures of the NB101 table,
    whose ground truth is the 108-epoch validation accuracy of **one** training run.
    """
)

# %% [markdown]
# ## Residual connections
#
# The paper counts as residual connections "the k-th diagonal elements with k > 1" of
# the directed adjacency matrix (our reading of its text, whose symbols were lost):
# edges from vertex i to vertex j ≥ i + 2, which skip a vertex in NAS-Bench-101's
# topological order (`nngp_lib.search.residual_connections`). A purely linear cell
# has none. We count them on the pruned matrix NAS-Bench-101 stores and group the
# counts as below (fewer than 2 or more than 5 are rare):

# %% tags=["hide-input"]
residuals = table["adjacency"].map(search.residual_connections)
GROUPS = ["0-2", "3", "4", "5+"]
group_of = pd.Series(
    pd.cut(residuals, [-1, 2, 3, 4, np.inf], labels=GROUPS), index=table.index, name="residual connections"
)
MIN_GROUP = 5  # group means of fewer architectures are not compared in the text
show_table(residuals.value_counts().sort_index().rename("architectures").rename_axis("residual connections"))

# %% [markdown]
# ### In the whole table: the bias of early training
#
# Where does a competitive architecture (the top fraction by 108-epoch accuracy) rank
# after shortened training? Mean percentile rank (1 = best of the table) by number of
# residual connections:

# %%
table_ranks = table[[f"val_acc_{e}" for e in (4, 12, 36, 108)]].rank(pct=True)
table_ranks.columns = [*TRAINING, "108 epochs (truth)"]
competitive_table = table_ranks["108 epochs (truth)"] > 1 - competitive_fraction
by_group_table = table_ranks[competitive_table].groupby(group_of[competitive_table], observed=False).mean()
by_group_table.insert(0, "architectures", group_of[competitive_table].value_counts().reindex(GROUPS))
show_table(by_group_table.round(3))

# %% tags=["remove-input"]
few, many = GROUPS[0], GROUPS[-1]
gap_table = (by_group_table.loc[many] - by_group_table.loc[few]).drop("architectures")
closing = "It closes with longer training: " if gap_table[TRAINING[2]] < gap_table[TRAINING[0]] else (
    "It does not close with longer training, against "
)
show(
    f"""
    Among the {int(competitive_table.sum()):,} competitive architectures of the table (top
    {competitive_fraction:.0%}), those with {few} residual connections rank on average at the
    {by_group_table.loc[few, TRAINING[0]]:.0%} percentile after 4 epochs, against
    {by_group_table.loc[many, TRAINING[0]]:.0%} for those with {many}, although their ground truth differs
    by only {gap_table["108 epochs (truth)"]:.2f} in percentile rank. The gap is
    {gap_table[TRAINING[0]]:.2f} after 4 epochs, {gap_table[TRAINING[1]]:.2f} after 12 and
    {gap_table[TRAINING[2]]:.2f} after 36. {closing}the paper's
    observation that such architectures "are poor early in training but improve significantly with
    extensive training", measured here on training alone.
    """
)

# %% [markdown]
# ### On the scored architectures: NNGP against training
#
# The same ranks, now within the scored sample, for every NNGP setting and the
# training budgets:

# %%
sample_scores = proxies.scores.copy()
sample_scores["108 epochs (truth)"] = proxies.truth
sample_ranks = sample_scores.rank(pct=True)
sample_groups = group_of.set_axis(table["hash"]).loc[sample_scores.index]
competitive = sample_ranks["108 epochs (truth)"] > 1 - competitive_fraction
by_group = sample_ranks[competitive].groupby(sample_groups[competitive], observed=False).mean()
by_group.insert(0, "architectures", sample_groups[competitive].value_counts().reindex(GROUPS))
show_table(by_group.round(3))

# %% [markdown]
# And across all scored architectures, Kendall's tau between the number of residual
# connections and each score (positive: more residual connections, higher score):

# %%
sample_residuals = residuals.set_axis(table["hash"]).loc[sample_scores.index]
residual_tau = pd.Series({proxy: kendall_tau(sample_residuals, sample_scores[proxy]) for proxy in sample_scores})
show_table(residual_tau.round(3))

# %% tags=["remove-input"]
counts = by_group["architectures"]
usable = [g for g in (few, many) if counts.get(g, 0) >= MIN_GROUP]
if len(usable) == 2:
    comparison = (
        f"Among the {int(competitive.sum())} competitive scored architectures, the {int(counts[few])} with {few} "
        f"residual connections rank on average at the {by_group.loc[few, main]:.0%} percentile by {main}, "
        f"the {int(counts[many])} with {many} at {by_group.loc[many, main]:.0%}; after 4 epochs of training "
        f"the same groups rank at {by_group.loc[few, TRAINING[0]]:.0%} and {by_group.loc[many, TRAINING[0]]:.0%}."
    )
else:
    comparison = (
        f"Of the {int(competitive.sum())} competitive scored architectures, fewer than {MIN_GROUP} have "
        f"{' or '.join(g for g in (few, many) if g not in usable)} residual connections "
        f"({', '.join(f'{int(counts[g])} with {g}' for g in (few, many))}), too few to compare the groups."
    )
excess = residual_tau[main] - residual_tau["108 epochs (truth)"]
if excess > 0:
    residual_verdict = (
        f"The NNGP score correlates with residual connections more than the truth does (by {excess:.3f}): "
        "it favours them beyond their merit, the direction of the bias the paper describes."
    )
else:
    residual_verdict = (
        "The NNGP score does not correlate with residual connections more than the truth does: this sample "
        "shows no excess preference for them, unlike the paper's finding."
    )
show(
    f"""
    {comparison} Over all {num_scored} scored architectures, the number of residual connections
    correlates with {main} at tau = {residual_tau[main]:.3f}, with 4-epoch accuracy at
    {residual_tau[TRAINING[0]]:.3f} and with the ground truth at {residual_tau["108 epochs (truth)"]:.3f}.
    {residual_verdict}
    {noise_caveat(num_scored)} Fewer still ({int(competitive.sum())}) enter the group means.
    """
)

# %% [markdown]
# Each scored architecture placed by its rank in the ground truth and in the score
# (percentiles within the sample), coloured by its residual connections: a bias
# shows as one colour sitting below the diagonal on the right of the chart.

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
rank_points = (
    sample_ranks[[main, TRAINING[0], "108 epochs (truth)"]]
    .assign(residual_connections=sample_groups.astype(str))
    .melt(id_vars=["108 epochs (truth)", "residual_connections"], var_name="score", value_name="rank")
    .round(4)
)
alt.Chart(rank_points).mark_circle(size=30, opacity=0.7).encode(
    x=alt.X("108 epochs (truth):Q", title="percentile rank by 108-epoch accuracy"),
    y=alt.Y("rank:Q", title="percentile rank by the score"),
    color=alt.Color("residual_connections:N", sort=GROUPS, title="residual connections"),
    tooltip=["score:N", "residual_connections:N", "rank:Q", "108 epochs (truth):Q"],
).properties(width=300, height=300).facet(column=alt.Column("score:N", title=None))

# %% [markdown]
# ## NNGP accuracy and model size
#
# Kendall's tau and Pearson's r between each score and the number of trainable
# parameters, on the scored architectures, with 95% bootstrap intervals over
# architectures (the paper's Fig. 6; a size-blind score sits near 0):

# %%
size_correlation = analysis.correlation_table(
    sample_scores, scored["trainable_parameters"].to_numpy(np.float64), num_resamples=num_resamples, seed=seed
)
show_table(size_correlation.round(3))

# %% tags=["remove-input"]
size_taus = size_correlation["kendall_tau"]
nngp_range = (
    f"; the NNGP settings range from tau = {size_taus[nngp].min():.3f} to {size_taus[nngp].max():.3f}"
    if len(nngp) > 1 else ""
)
if size_taus[nngp].abs().max() < abs(size_taus["108 epochs (truth)"]):
    size_verdict = (
        "As the paper finds, the NNGP score is not a disguised parameter count: "
        "its correlation with size stays below the truth's."
    )
else:
    size_verdict = (
        "Unlike the paper's finding of very low correlation, here an NNGP setting "
        "correlates with size at least as much as the ground truth does."
    )
show(
    f"""
    {main} correlates with model size at tau = {size_correlation.loc[main, "kendall_tau"]:.3f}
    (95% interval {size_correlation.loc[main, "kendall_tau_low"]:.3f} to
    {size_correlation.loc[main, "kendall_tau_high"]:.3f}) and r =
    {size_correlation.loc[main, "pearson"]:.3f}{nngp_range}.
    Training correlates with size at
    tau = {size_correlation.loc[TRAINING[0], "kendall_tau"]:.3f} after 4 epochs and
    {size_correlation.loc[TRAINING[2], "kendall_tau"]:.3f} after 36, and the ground truth itself at
    {size_correlation.loc["108 epochs (truth)", "kendall_tau"]:.3f}.
    {size_verdict} {noise_caveat(num_scored)}
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
alt.Chart(
    pd.DataFrame({"parameters": scored["trainable_parameters"], "score": proxies.scores[main]}).round(4)
).mark_circle(size=30, opacity=0.7).encode(
    x=alt.X("parameters:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s"), title="trainable parameters"),
    y=alt.Y("score:Q", scale=alt.Scale(zero=False), title=main),
    tooltip=["parameters:Q", "score:Q"],
).properties(width=480, height=320, title=f"{main} against model size")

# %% [markdown]
# ## Model-size clusters
#
# The paper sees "multiple clusters of models with respect to size" without defining
# them. We use a plain rule (`nngp_lib.search.size_clusters`): sort the parameter
# counts and start a new cluster wherever two consecutive counts differ by more than
# `cluster_gap`. On the NB101 table:

# %%
parameters = table["trainable_parameters"].to_numpy(np.float64)
cluster = search.size_clusters(parameters, min_gap=cluster_gap)
clusters = (
    table.assign(cluster=cluster)
    .groupby("cluster")
    .agg(
        architectures=(TRUTH, "size"),
        min_parameters_M=("trainable_parameters", lambda p: p.min() / 1e6),
        max_parameters_M=("trainable_parameters", lambda p: p.max() / 1e6),
        median_truth=(TRUTH, "median"),
        best_truth=(TRUTH, "max"),
    )
)
show_table(clusters.round(3))

# %% tags=["remove-input"]
small = parameters < size_limit
near_limit = ((parameters >= size_limit - 1e6) & (parameters < size_limit)).sum()
below_limit_band = ((parameters >= size_limit - 2e6) & (parameters < size_limit - 1e6)).sum()
show(
    f"""
    The rule finds {len(clusters)} clusters separated by empty intervals of more than
    {cluster_gap / 1e6:g} million parameters. The paper's "cluster of models with less than
    {size_limit / 1e6:g}M parameters" is not one of them: it is the lower part of our first cluster
    ({clusters.iloc[0]["min_parameters_M"]:.2f}M to {clusters.iloc[0]["max_parameters_M"]:.1f}M),
    cut where the table thins out ({near_limit:,} architectures between {(size_limit - 1e6) / 1e6:g}M and
    {size_limit / 1e6:g}M against {below_limit_band:,} in the million below). We follow the paper and take
    the {small.sum():,} architectures ({small.mean():.1%} of the table) below {size_limit / 1e6:g}M as the
    small-model cluster.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
size_sample = (
    table.assign(cluster=cluster.astype(str))[["trainable_parameters", TRUTH, "cluster"]]
    .loc[lambda frame: frame[TRUTH] > 0.8]
    .sample(n=sample_for_plots, random_state=seed)
    .round({TRUTH: 4})
)
points = alt.Chart(size_sample).mark_circle(size=12, opacity=0.5).encode(
    x=alt.X("trainable_parameters:Q", axis=alt.Axis(format="~s"), title="trainable parameters"),
    y=alt.Y(f"{TRUTH}:Q", scale=alt.Scale(zero=False), title="validation accuracy after 108 epochs"),
    color=alt.Color("cluster:N", title="size cluster"),
    tooltip=["trainable_parameters:Q", f"{TRUTH}:Q", "cluster:N"],
)
limit = alt.Chart(pd.DataFrame({"limit": [size_limit]})).mark_rule(strokeDash=[4, 4], color="black").encode(
    x="limit:Q"
)
title = f"Size clusters ({len(size_sample):,} architectures above 80%; dashed: {size_limit / 1e6:g}M)"
(points + limit).properties(width=520, height=320, title=title)

# %% [markdown]
# ### Inside the small-model cluster: training and size on the whole table
#
# Kendall's tau, Pearson's r and PQETP (the AUROC of the score for "ground truth above
# the threshold"; the threshold is the `pqetp_quantile` of the whole table's truth,
# kept fixed for the cluster), then the average discovered performance (the best
# truth among the top 10 by the score, in 10 random subsets of 10,000, as the
# paper's Figs. S8 and S10), over all architectures and below the size limit:

# %%
threshold = float(table[TRUTH].quantile(pqetp_quantile))
small_label = f"< {size_limit / 1e6:g}M"
table_scores = pd.DataFrame(
    {**{label: table[f"val_acc_{e}"] for label, e in zip(TRAINING, (4, 12, 36))}, SIZE: parameters}
)


def scores_summary(scores: pd.DataFrame, truth: pd.Series) -> pd.DataFrame:
    """Tau, Pearson and PQETP at `threshold` of every column of `scores`."""
    summary = analysis.correlation_table(scores, truth, num_resamples=0)[list(analysis.STATISTICS)]
    summary["pqetp"] = analysis.pqetp_table(scores, truth, [threshold]).iloc[0]
    return summary


subset_size = min(10_000, int(small.sum()))
table_metrics = pd.concat(
    {
        "all": scores_summary(table_scores, table[TRUTH]).join(
            analysis.discovered_performance_table(
                table_scores, table[TRUTH], subset_size=subset_size, seed=seed, references=False
            )["mean"].rename("discovered")
        ),
        small_label: scores_summary(table_scores[small], table.loc[small, TRUTH]).join(
            analysis.discovered_performance_table(
                table_scores[small], table.loc[small, TRUTH], subset_size=subset_size, seed=seed, references=False
            )["mean"].rename("discovered")
        ),
    },
    axis=1,
)
print(f"PQETP threshold: {threshold:.4f}; subsets of {subset_size:,}")
show_table(table_metrics.round(4))

# %% tags=["remove-input"]
drop = table_metrics["all"]["discovered"] - table_metrics[small_label]["discovered"]
top_large = (~small[table[TRUTH] >= table[TRUTH].quantile(0.99)]).mean()
size_tau_small = table_metrics[small_label].loc[SIZE, "kendall_tau"]
size_tau_all = table_metrics["all"].loc[SIZE, "kendall_tau"]
if drop[SIZE] > drop[TRAINING].max():
    size_drop_verdict = "size loses more than every training budget, as the paper reports for its Fig. S10"
else:
    size_drop_verdict = "size does not lose more than every training budget here, unlike the paper's Fig. S10"
show(
    f"""
    Over the whole table, choosing by model size discovers architectures of
    {table_metrics["all"].loc[SIZE, "discovered"]:.2%} on average, against
    {table_metrics["all"].loc[TRAINING[1], "discovered"]:.2%} for 12 epochs of training. Below
    {size_limit / 1e6:g}M parameters the discovered performance of size changes by {-100 * drop[SIZE]:+.2f} points,
    that of 4, 12 and 36 epochs of training by {-100 * drop[TRAINING[0]]:+.2f}, {-100 * drop[TRAINING[1]]:+.2f}
    and {-100 * drop[TRAINING[2]]:+.2f}: {size_drop_verdict}.
    Yet model size ranks the small models with tau = {size_tau_small:.3f},
    {"more" if size_tau_small > size_tau_all else "less"} than the whole table ({size_tau_all:.3f}):
    inside the cluster size still orders the bulk of the architectures but no longer singles out the
    best ones, which are mostly large:
    {top_large:.0%} of the top 1% by ground truth have at least {size_limit / 1e6:g}M parameters, against
    {1 - small.mean():.0%} of all architectures.
    """
)

# %% [markdown]
# ### Inside the small-model cluster: NNGP against training on the scored architectures

# %%
scored_small = (scored["trainable_parameters"] < size_limit).to_numpy()
sample_with_size = proxies.scores.assign(**{SIZE: scored["trainable_parameters"].to_numpy(np.float64)})
sample_metrics = pd.concat(
    {
        "all": scores_summary(sample_with_size, proxies.truth),
        small_label: scores_summary(sample_with_size[scored_small], proxies.truth[scored_small]),
    },
    axis=1,
)
print(f"architectures: all {num_scored}, below the limit {int(scored_small.sum())}")
show_table(sample_metrics.round(3))

# %% tags=["remove-input"]
best_nngp_small = sample_metrics[small_label].loc[nngp, "kendall_tau"].idxmax()
small_taus, all_taus = sample_metrics[small_label]["kendall_tau"], sample_metrics["all"]["kendall_tau"]
show(
    f"""
    On the {int(scored_small.sum())} scored architectures below {size_limit / 1e6:g}M parameters,
    the best NNGP setting, {best_nngp_small}, ranks with tau = {small_taus[best_nngp_small]:.3f}
    (all sizes: {all_taus[best_nngp_small]:.3f}), 4-epoch training with {small_taus[TRAINING[0]]:.3f}
    (all sizes: {all_taus[TRAINING[0]]:.3f}) and model size with {small_taus[SIZE]:.3f}
    (all sizes: {all_taus[SIZE]:.3f}). The paper reports that inside the cluster
    "the hierarchy of both metrics between NNGP and shortened training performance stay largely the same".
    {noise_caveat(max(int(scored_small.sum()), 2))}
    """
)
