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
# # The whole table: Fig. 3, 8 and 9 at the paper's scale
#
# The paper scored all 423,624 NAS-Bench-101 cells and read three of its figures
# over **ten random subsets of 10,000 architectures**: discovered performance (Fig.
# 3, the best truth among the top 10 a proxy picks in a subset), search-space
# reduction (Fig. 8, random search inside the top 30% or 10% of a subset by NNGP)
# and the hybrid metric (Fig. 9). The NNGP and applications chapters replay them on
# the book's 1,000-architecture sample, with subsets of 100 and spaces of 500, an
# easier task in which every proxy lands near the best of the subset.
#
# This chapter reads the run that scores **every architecture of the NB101 table**
# we hold (30,001 of them carry a ground truth), `nb101_table_w025`: one of the
# cheapest settings of the ladder chapter, k = 1 and n = 100 at quarter width, read
# on m = 100 validation images as in the earlier runs and on m = 500 for a smaller
# standard error, at about a ten-thousandth of the FLOPs of 4-epoch training per
# architecture (measured below). The run goes through the seeded
# permutation of the table (`--sample 30001 --sample-seed 0`, so its first 1,000
# architectures are the book's sample) in parts of 100, over as many sessions as it
# takes; the page reads it as far as it has gone. Subsets hold 10,000
# architectures once it holds 30,000, as the paper's; until then a third of what it
# holds, and the page says so.

# %% tags=["parameters"]
result_name: str = "nb101_table_w025"  # the whole-table run (nngp_lib.results); absent: a few architectures are scored in scratch
fallback_architectures: int = 30  # architectures scored into a scratch folder when result_name is absent (30..30001)
subset_size: int = 10000  # architectures per random subset, as the paper's; at most a third of those scored
num_subsets: int = 10  # random subsets (the paper's 10), at least 2
top_k: int = 10  # architectures a proxy keeps in a subset (the paper's 10)
fractions: list[float] = [0.3, 0.1]  # shares of each subset kept by the screen (each in (0, 1])
search_epochs: list[int] = [12, 36]  # training budgets used as the search signal in the reduced spaces (of 4, 12, 36)
num_budgets: int = 25  # points per search curve (geometrically spaced)
fit_fraction: float = 0.1  # share of architectures the hybrid metric is fitted on; it is read on the others
num_resamples: int = 200  # bootstrap resamples of the architectures for the intervals (0: none)
seed: int = 0  # seed of the subsets, the search orders, the fit split and the bootstrap

# %% tags=["remove-cell"]
# Singular settings, lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
# (importing the library may print environment warnings, e.g. tqdm's about ipywidgets)
import altair as alt
import numpy as np
import pandas as pd

from nngp_lib import analysis, cost, metrics, plotting, search
from nngp_lib.book import nngp_sample_run, provenance_note, show, show_table
from nngp_lib.data import nb101_table
from nngp_lib.spaces.nb101 import specs_from_table

if num_subsets < 2:
    raise ValueError(f"num_subsets must be at least 2 (standard errors), got {num_subsets}")
if not 0 < fit_fraction < 1:
    raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
unknown_epochs = sorted(set(search_epochs) - {4, 12, 36})
if unknown_epochs:
    raise ValueError(f"search_epochs must be among 4, 12, 36 (the table's budgets below 108), got {unknown_epochs}")

plotting.enable_offline_renderer()
table = nb101_table.load_table()
run, run_note = nngp_sample_run(result_name, fallback_architectures, ensembles=[1], n_trains=[100],
                                n_vals=[100, 500], seed=seed, width_multiplier=0.25, chapter="whole_table")
proxies = analysis.proxy_scores(run.table, table, values=("nngp_acc",), epochs=(4, 12, 36))
num_scored = len(proxies)
truth = proxies.truth.to_numpy()
NNGP = list(proxies.proxies.index[proxies.proxies["kind"] == analysis.NNGP])
FOUR, TWELVE = analysis.training_label(4), analysis.training_label(12)

specs = specs_from_table(table.set_index("hash").loc[proxies.scores.index].reset_index())
flops = np.array([spec.flops() for spec in specs], dtype=np.float64)  # full width: what training costs
widths = sorted(set(proxies.proxies.loc[NNGP, "width_multiplier"].astype(float)) - {1.0})
flops_by_width = {1.0: float(flops.mean()), **analysis.mean_network_flops(specs, widths)}
unit_costs = analysis.proxy_costs(proxies.proxies, flops_by_width)  # PFLOPs of one score, mean architecture
screen = unit_costs[NNGP].idxmax()  # the costliest NNGP setting of the run (m = 500)


def subset_of(count: int) -> int:
    """Architectures per random subset of ``count``: the paper's size, or a third of them while fewer are scored."""
    return min(subset_size, max(top_k, count // 3), count)


subset = subset_of(num_scored)


def points(difference: float) -> str:
    """A difference of accuracies in percentage points, signed, never "-0.00"."""
    return f"{round(100 * difference, 2) + 0.0:+.2f}"


# %% tags=["remove-input"]
show(provenance_note(num_scored, f"the NNGP result `{run.name}` and the NB101 table", {
    "subset_size": subset, "num_subsets": num_subsets, "top_k": top_k, "fractions": fractions,
    "fit_fraction": fit_fraction, "seed": seed}))
show(run_note)
show(run.record_markdown())
show(
    f"""
    The run holds {num_scored:,} of the table's {len(table):,} architectures
    ({num_scored / len(table):.1%}). Every subset below holds {subset:,} of them
    ({"the paper's size" if subset == subset_size else f"a third of those scored, not yet the paper's {subset_size:,}"}).
    """
)

# %% [markdown]
# ## Ranking on every scored architecture
#
# Kendall's tau-b and Pearson's r with the 108-epoch truth, with bootstrap
# intervals over the architectures, and the cost of one score by the paper's FLOP
# model (NNGP at the quarter-width networks' own FLOPs, training at full width).

# %% tags=["hide-input"]
ranking = analysis.correlation_table(proxies.scores, proxies.truth, num_resamples=num_resamples, seed=seed)
ranking["PFLOPs"] = unit_costs
show_table(ranking.round({c: 3 for c in ranking.columns if c != "PFLOPs"}).round({"PFLOPs": 6}))

# %% tags=["remove-input"]
if num_resamples:
    versus_four = analysis.paired_comparison(proxies.scores, proxies.truth, screen, FOUR,
                                             num_resamples=num_resamples, seed=seed)
    show(
        f"""
        On these {num_scored:,} architectures **{screen}** ranks with tau
        {ranking.loc[screen, "kendall_tau"]:.3f} against {ranking.loc[FOUR, "kendall_tau"]:.3f} for 4-epoch
        training: a difference of {versus_four["difference"]:+.3f} [{versus_four["low"]:+.3f},
        {versus_four["high"]:+.3f}] (paired bootstrap), NNGP ahead in
        {versus_four["fraction_first_better"]:.0%} of the resamples, for
        {unit_costs[screen] / unit_costs[FOUR]:.2%} of that training's FLOPs.
        """
    )

# %% [markdown]
# ## Discovered performance (the paper's Fig. 3)
#
# In each random subset every proxy keeps its top 10 and reports the best truth
# among them (`nngp_lib.analysis.discovered_performance_table`); all proxies see
# the same subsets. A random choice of 10 and the best architecture of the subset
# frame the numbers.

# %% tags=["hide-input"]
discovered = analysis.discovered_performance_table(proxies.scores, truth, subset_size=subset,
                                                   top_k=min(top_k, subset),
                                                   num_trials=num_subsets, seed=seed)
discovered["PFLOPs"] = unit_costs
show_table(discovered.round({"mean": 4, "sem": 4, "PFLOPs": 6}))

# %% tags=["remove-input"]
random_choice, ceiling = discovered.loc[analysis.RANDOM_CHOICE], discovered.loc[analysis.BEST_IN_SUBSET]
show(
    f"""
    Top {top_k} of {num_subsets} random subsets of {subset:,}: **{screen}** discovers
    {discovered.loc[screen, "mean"]:.2%} on average ({points(discovered.loc[screen, "mean"] - discovered.loc[FOUR, "mean"])}
    points from 4-epoch training's {discovered.loc[FOUR, "mean"]:.2%}, {points(discovered.loc[screen, "mean"] -
    discovered.loc[TWELVE, "mean"])} from 12-epoch training's {discovered.loc[TWELVE, "mean"]:.2%}); a random
    choice discovers {random_choice["mean"]:.2%} and a perfect proxy {ceiling["mean"]:.2%}. The top {top_k} of
    {subset:,} is the top {top_k / subset:.2%} of a subset{
        ", the paper's task" if subset == subset_size else
        f" (the paper's top 10 of 10,000 is the top 0.1%, a harder task: differences grow with it)"}.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
fig3 = discovered.reset_index().assign(low=lambda f: f["mean"] - f["sem"], high=lambda f: f["mean"] + f["sem"])
fig3["kind"] = np.where(fig3["proxy"].isin(NNGP), "NNGP", np.where(fig3["PFLOPs"].notna(), "training", "reference"))
priced = fig3[fig3["PFLOPs"].notna()]
base = alt.Chart(priced).encode(
    x=alt.X("PFLOPs:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~e"), title="PFLOPs per architecture"),
    color=alt.Color("kind:N", title=None))
references = alt.Chart(fig3[fig3["PFLOPs"].isna()]).mark_rule(strokeDash=[4, 3]).encode(
    y="mean:Q", color=alt.value("gray"), tooltip=["proxy:N", alt.Tooltip("mean:Q", format=".4f")])
(base.mark_rule().encode(y="low:Q", y2="high:Q")
 + base.mark_point(filled=True, size=70).encode(
     y=alt.Y("mean:Q", scale=alt.Scale(zero=False), title="108-epoch accuracy discovered"),
     tooltip=["proxy:N", alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("PFLOPs:Q", format=".3g")])
 + references).properties(width=440, height=280,
                          title=f"Top {top_k} of {subset:,}: mean ± one standard error over {num_subsets} subsets "
                                "(dashed: random choice, best in subset)")

# %% [markdown]
# ## Search-space reduction (the paper's Fig. 8)
#
# Each subset is a search space. Random search with 12- or 36-epoch training as
# its signal runs in the whole space, in its top 30% and 10% by the NNGP score
# (the screen, which costs one NNGP score per architecture of the space), and in
# a random 30% and 10% (`nngp_lib.search.reduction_curves`). The search keeps
# the best architecture by its signal and is judged by that architecture's
# 108-epoch accuracy; its cost is the training FLOPs of the architectures it drew.

# %% tags=["hide-input"]
spaces = search.random_spaces(num_scored, subset, num_subsets, seed=seed)
screen_cost = subset * float(unit_costs[screen])
curves = search.reduction_curves(
    proxies.scores[screen].to_numpy(),
    {e: proxies.scores[analysis.training_label(e)].to_numpy() for e in search_epochs}, truth, spaces,
    fractions=fractions, costs={e: cost.to_pflops(cost.training_flops(flops, e)) for e in search_epochs},
    screen_cost=screen_cost, num_budgets=num_budgets, seed=seed,
).rename(columns={"signal": "epochs"})
STRATEGIES = list(curves["strategy"].unique())
exhausted = curves[curves["budget"] == curves["pool_size"]].set_index(["epochs", "strategy"])
exhausted = exhausted[["budget", "cost", "mean", "sem"]].rename(columns={"budget": "trained", "cost": "PFLOPs"})
show_table(exhausted.round({"PFLOPs": 3, "mean": 4, "sem": 4}))

# %% tags=["remove-input"]
sentences = []
for epochs in search_epochs:
    full = exhausted.loc[(epochs, search.NO_REDUCTION)]
    for fraction in fractions:
        screened, randomly = (exhausted.loc[(epochs, f"{kind} {fraction:.0%}")] for kind in ("NNGP top", "random"))
        sentences.append(
            f"With {epochs}-epoch training the NNGP top {fraction:.0%} finds {screened['mean']:.2%} "
            f"({points(screened['mean'] - full['mean'])} points from the whole space's {full['mean']:.2%}) for "
            f"{screened['PFLOPs'] / full['PFLOPs']:.0%} of its cost; a random {fraction:.0%} finds "
            f"{randomly['mean']:.2%} ({points(randomly['mean'] - full['mean'])})."
        )
show(f"Where each search has trained its whole pool, over {num_subsets} spaces of {subset:,}: " + " ".join(sentences)
     + f" One NNGP screen of a space costs {screen_cost:.3g} PFLOPs.")

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
plot = curves.assign(low_sem=curves["mean"] - curves["sem"], high_sem=curves["mean"] + curves["sem"])
plot = plot[["epochs", "strategy", "budget", "cost", "mean", "low_sem", "high_sem"]].round(6)
base = alt.Chart(plot).encode(x=alt.X("cost:Q", scale=alt.Scale(type="log"), title="cost (PFLOPs)"),
                              color=alt.Color("strategy:N", sort=STRATEGIES, title="search space"))
(base.mark_area(opacity=0.2).encode(y="low_sem:Q", y2="high_sem:Q")
 + base.mark_line(point=alt.OverlayMarkDef(size=15)).encode(
     y=alt.Y("mean:Q", scale=alt.Scale(zero=False), title="108-epoch accuracy of the architecture found"),
     tooltip=["strategy:N", "budget:Q", alt.Tooltip("cost:Q", format=".3g"), alt.Tooltip("mean:Q", format=".4f")])
 ).properties(width=320, height=280).facet(column=alt.Column("epochs:O", title="search signal: epochs of training"))

# %% [markdown]
# ## The hybrid metric (the paper's Fig. 9)
#
# A linear model `a · (4-epoch accuracy) + b · (NNGP accuracy) + c`, fitted by
# least squares to the 12-epoch accuracy (`nngp_lib.search.fit_hybrid`), on a
# random `fit_fraction` of the scored architectures. The paper fits and reads it
# on the same architectures; here it is read only on the others: its tau, and its
# discovered performance in random subsets of them, next to its two ingredients
# and the 12-epoch training it imitates.

# %% tags=["hide-input"]
order = np.random.default_rng(seed).permutation(num_scored)
num_fit = max(4, round(fit_fraction * num_scored))
fit, held_out = order[:num_fit], order[num_fit:]
hybrid = search.fit_hybrid(proxies.scores.iloc[fit][[FOUR, screen]], proxies.scores.iloc[fit][TWELVE])
HYBRID = f"hybrid of {FOUR} and {screen}"
held = proxies.scores.iloc[held_out][[FOUR, screen, TWELVE]].assign(**{HYBRID: hybrid(
    proxies.scores.iloc[held_out][[FOUR, screen]])})
held_subset = subset_of(len(held_out))
hybrid_table = analysis.discovered_performance_table(held, truth[held_out], subset_size=held_subset,
                                                     top_k=min(top_k, held_subset),
                                                     num_trials=num_subsets, seed=seed)
hybrid_table["kendall_tau"] = [metrics.kendall_tau(held[p], truth[held_out]) if p in held else np.nan
                               for p in hybrid_table.index]
hybrid_table["PFLOPs"] = pd.Series({**unit_costs[[FOUR, screen, TWELVE]].to_dict(),
                                    HYBRID: unit_costs[FOUR] + unit_costs[screen]})
show_table(hybrid_table.round({"mean": 4, "sem": 4, "kendall_tau": 3, "PFLOPs": 6}))

# %% tags=["remove-input"]
show(
    f"""
    Fitted on {num_fit:,} architectures, the hybrid weighs 4-epoch accuracy by {hybrid.coef[0]:.3f} and
    NNGP accuracy by {hybrid.coef[1]:.3f} (intercept {hybrid.intercept:.3f}). On the other {len(held_out):,} it
    ranks with tau {hybrid_table.loc[HYBRID, "kendall_tau"]:.3f} against {hybrid_table.loc[FOUR, "kendall_tau"]:.3f}
    for 4-epoch training alone and {hybrid_table.loc[TWELVE, "kendall_tau"]:.3f} for 12-epoch training, and
    discovers {hybrid_table.loc[HYBRID, "mean"]:.2%} in subsets of {held_subset:,}
    ({points(hybrid_table.loc[HYBRID, "mean"] - hybrid_table.loc[FOUR, "mean"])} points from 4-epoch training,
    {points(hybrid_table.loc[HYBRID, "mean"] - hybrid_table.loc[TWELVE, "mean"])} from 12-epoch training), for
    {unit_costs[screen] / unit_costs[FOUR]:.2%} more FLOPs than 4-epoch training and
    {(unit_costs[FOUR] + unit_costs[screen]) / unit_costs[TWELVE]:.0%} of 12-epoch training's.
    """
)
