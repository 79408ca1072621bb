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
# # The cost axis filled: a ladder of NNGP settings
#
# The paper claims that "the Kendall tau of 4- or 12-epoch training can be matched
# or bested with NNGP inference with an order-of-magnitude less FLOPs". The NNGP
# chapter's points all sit near 1e-4 PFLOPs per score (k = 1, n <= 100, half
# width), while 4-epoch training costs about 1 PFLOP: the claim is about NNGP
# settings up to a tenth of that, and three decades of the cost axis were empty.
# This chapter fills them with a **ladder** of settings, scored on the same
# seeded sample of the NB101 table that the other chapters use
# (`--sample 1000 --sample-seed 0`), and tests the claim at each training
# budget.
#
# The plan (`nngp_lib.ladder.PLAN`) grows n up to 3,000 at k = 1 and up to 1,000
# at k = 2 and 4, with m = 500 validation images (at m = 100, one accuracy has a
# standard error near 4 points) and m = 100 for comparison with the earlier runs.
# It is laid out in tiers over the sample: quarter width at k = 1 and 2 on all of
# it; every width, k = 4 at quarter width and n = 3,000 at half width on its first
# 300 architectures, so that each reduced width is compared with the real network
# on the same architectures; and the dearest full-width settings (n = 3,000, and
# k = 2) on the first 50. Every setting is a class-balanced nested subset of the
# largest images, and network i of an ensemble is the same whatever k, so one set
# of features per architecture and width serves every smaller setting; each
# setting is also read with eps chosen by leave-one-out and, beyond the paper,
# with the *centered* kernel (each network's features minus their mean over the
# images, which removes the near-rank-one constant direction of these kernels),
# at no extra forward pass.

# %% tags=["parameters"]
widths: list[float] = [0.25, 0.5, 1.0]  # ladder widths to read (each one of nngp_lib.ladder.PLAN)
fallback_architectures: int = 3  # architectures scored per width into a scratch folder when no ladder result exists
num_resamples: int = 1000  # bootstrap resamples of the architectures for every interval (0: none)
confidence: float = 0.95  # coverage of the bootstrap intervals (0..1)
saving: float = 10.0  # how much cheaper NNGP must be than training in the claim ("an order of magnitude")
seed: int = 0  # seed of the bootstrap

# %% tags=["remove-cell"]
# Singular settings (-p width 0.5), lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
import tempfile

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import display

from nngp_lib import analysis, ladder, plotting, results
from nngp_lib.book import provenance_note, show
from nngp_lib.data import nb101_table

if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
if saving <= 1:
    raise ValueError(f"saving must be above 1 (NNGP cheaper than training), got {saving}")
widths = [float(w) for w in widths]
for width in widths:
    ladder.run_name(width)  # a one-line error for a width outside the plan

plotting.enable_offline_renderer()
table = nb101_table.load_table()
present = [w for w in widths if results.exists(ladder.run_name(w))]
if present:
    rows, provenances = ladder.read_runs(present)
    scratch = None
else:  # a fresh checkout without the committed runs: a miniature of the plan, never in results/
    scratch = tempfile.mkdtemp(prefix="nngp-nas-scratch-")
    for width in widths:
        ladder.run(width, num_architectures=fallback_architectures, results_dir=scratch, progress=False)
    rows, provenances = ladder.read_runs(widths, results_dir=scratch)
    present = widths

by_hash = table.set_index("hash")
scored_per_width = rows.groupby("width_multiplier")["hash"].nunique()


def proxies_of(frame: pd.DataFrame, values=ladder.VALUES, epochs=(4, 12, 36)) -> analysis.ProxyScores:
    """NNGP at every setting of ``frame`` (by default three readings) and training, on its complete architectures."""
    return analysis.proxy_scores(frame, table, values=values, epochs=epochs)


def flops_of(proxy_scores: analysis.ProxyScores) -> dict[float, float]:
    return ladder.flops_by_width(proxy_scores, table, present)


def with_interval(frame: pd.DataFrame, statistic: str = "kendall_tau") -> pd.Series:
    return pd.Series([f"{p:.3f} [{a:.3f}, {b:.3f}]" for p, a, b in
                      zip(frame[statistic], frame[f"{statistic}_low"], frame[f"{statistic}_high"])], index=frame.index)


# Every width on the architectures they share (the first ladder.SHARED of the sample), at
# the settings planned on all of them: Fig. 1, the growth charts, the claim.
shared_rows = ladder.covering(rows, ladder.SHARED)
common = proxies_of(shared_rows)
common_flops = flops_of(common)
overview = ladder.summary(common, common_flops, num_resamples=num_resamples, seed=seed)
per_width = {w: proxies_of(shared_rows[shared_rows["width_multiplier"] == w], values=("nngp_acc",), epochs=())
             for w in present}
per_width_summary = {w: ladder.summary(p, flops_of(p), num_resamples=num_resamples, seed=seed)
                     for w, p in per_width.items()}

# %% tags=["remove-input"]
source = "scratch runs computed by this page (no committed ladder result)" if scratch else (
    "the results " + ", ".join(f"`{ladder.run_name(w)}`" for w in present))
show(provenance_note(len(common), source + " and the NB101 table", {"widths": present}))
show(
    "Architectures scored so far, per width: "
    + ", ".join(f"{int(scored_per_width[w]):,} at width {w:g} (of {ladder.ARCHITECTURES[w]:,} planned)"
                for w in present)
    + f". The comparisons across widths use the {len(common):,} architectures every width holds at the "
    f"settings planned on the first {ladder.SHARED:,}; the settings planned on more or fewer architectures "
    "are read on their own below."
)
for width, provenance in provenances.items():
    data = provenance.get("data", {})
    show(
        f"Width {width:g}: {provenance.get('description', '')}; images from the CIFAR-10 "
        f"{'python batches (exact pixels)' if data.get('source') == 'batches' else data.get('source', '?')}, "
        f"{data.get('n_train', '?')} training and {data.get('n_val', '?')} validation images; "
        f"backends {', '.join(provenance.get('backends', ['?']))}; computed {provenance.get('started', '?')} "
        f"to {provenance.get('updated', '?')} on {provenance.get('cpu') or provenance.get('machine', '?')}."
    )
    show(results.record_markdown(provenance, f"The full provenance record of `{ladder.run_name(width)}`"))

# %% [markdown]
# ## The plan and what it costs
#
# The plan by stretches of the sample that run the same settings: the images the
# networks process per architecture, their forward FLOPs, and the seconds per
# architecture the run recorded there (the `seconds` of every setting share the
# same forward passes, so the architecture's cost is the sum over its networks,
# not over its settings).

# %% tags=["hide-input"]
plan = ladder.plan_segments(present)
plan["forward PFLOPs per architecture"] = plan["images per architecture"] * plan["width"].map(common_flops) / 1e15
seconds = ladder.architecture_seconds(rows).reset_index()
seconds["position"] = seconds["hash"].map({h: i + 1 for i, h in enumerate(
    nb101_table.sample_rows(table, max(ladder.ARCHITECTURES.values()), ladder.SAMPLE_SEED)["hash"])})
stretches = [seconds.loc[(seconds["width_multiplier"] == w) & seconds["position"].between(a, b), "seconds"]
             for w, a, b in plan[["width", "first", "last"]].itertuples(index=False)]
plan["scored"] = [len(stretch) for stretch in stretches]
plan["median seconds per architecture"] = [stretch.median() for stretch in stretches]
plan["hours for the stretch"] = plan["median seconds per architecture"] * plan["architectures"] / 3600
display(plan.set_index(["width", "first", "last"]).round(3))

# %% tags=["remove-input"]
# NBVAL_IGNORE_OUTPUT
unmeasured = plan[plan["median seconds per architecture"].isna()]
whole = plan[plan["first"] == 1]  # the stretch that runs every setting of its width
not_yet = "" if unmeasured.empty else f", not counting {len(unmeasured)} stretch(es) with no architecture scored yet"
first_plan_hours = (whole["median seconds per architecture"] * whole["width"].map(ladder.FIRST_PLAN_ARCHITECTURES)
                    ).sum() / 3600
show(
    f"""
    At the recorded rates the plan takes about {plan['hours for the stretch'].sum():.1f} hours of
    one core of a 2-core machine (medians; the runs shared the machine with other work, so these
    are upper bounds){not_yet}.
    A first plan ran every group of settings on every architecture of its width, about
    {first_plan_hours:.0f} hours at the same rates; the groups that rank no better than
    a cheaper one on the architectures scored first (k = 4 next to k = 2 at quarter width,
    n = 3,000 next to n = 1,000 at half width, the dearest full-width settings) moved to the
    shared prefixes, which the comparisons below use.
    """
)

# %% [markdown]
# ## Fig. 1 over the ladder: rank correlation against cost
#
# Kendall's tau-b and Pearson's r with the 108-epoch ground truth, against the
# cost of one score by the paper's FLOP model, on the architectures every width
# holds. Two cost axes: the FLOPs actually spent (a narrower network counted as
# such) and the paper's axis, every NNGP setting counted at full width. Training
# for 4, 12 and 36 epochs sits on the same axes. Bars are the bootstrap
# intervals over architectures.

# %% tags=["hide-input"]
fig1 = overview.reset_index()
fig1 = fig1[(fig1["kind"] == analysis.TRAINING) | (fig1["variant"] == "best eps")]
fig1["series"] = np.where(fig1["kind"] == analysis.TRAINING, "training",
                          "NNGP width " + fig1["width_multiplier"].map("{:g}".format))
long = pd.concat([
    fig1.assign(axis=axis, PFLOPs=fig1[column], statistic=name, value=fig1[stat], low=fig1[f"{stat}_low"],
                high=fig1[f"{stat}_high"])
    for axis, column in (("FLOPs spent", "spent PFLOPs"), ("full-width FLOP model (paper)", "full-width PFLOPs"))
    for name, stat in (("Kendall tau", "kendall_tau"), ("Pearson r", "pearson"))
], ignore_index=True)[["proxy", "series", "axis", "statistic", "PFLOPs", "value", "low", "high"]]
base = alt.Chart(long).encode(
    x=alt.X("PFLOPs:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~e"), title="PFLOPs per score"),
    color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
)
points = base.mark_point(filled=True, size=50).encode(
    y=alt.Y("value:Q", title=None), tooltip=["proxy:N", alt.Tooltip("PFLOPs:Q", format=".2e"),
                                             alt.Tooltip("value:Q", format=".3f")])
bars = base.mark_rule(opacity=0.5).encode(y="low:Q", y2="high:Q")
(bars + points).properties(width=300, height=220).facet(
    row=alt.Row("statistic:N", title=None), column=alt.Column("axis:N", title=None)
).resolve_scale(y="independent")

# %% [markdown]
# ## How tau grows with n, with k and with width
#
# Each factor with the others fixed (best eps, m = 500), on each width's own
# architectures for n and k, and on the shared ones for width.

# %% tags=["hide-input"]
growth = pd.concat([s.reset_index().assign(width=w) for w, s in per_width_summary.items()], ignore_index=True)
growth = growth[(growth["kind"] == analysis.NNGP) & (growth["variant"] == "best eps") & (growth["n_val"] == 500)]
growth["k"] = growth["ensemble"].astype(int).astype(str)
line = alt.Chart(growth).encode(
    x=alt.X("n_train:Q", scale=alt.Scale(type="log"), title="NNGP training images n"),
    color=alt.Color("k:N", title="k"),
)
by_n = (line.mark_line(point=True).encode(y=alt.Y("kendall_tau:Q", title="Kendall tau"))
        + line.mark_rule(opacity=0.4).encode(y="kendall_tau_low:Q", y2="kendall_tau_high:Q")
        ).properties(width=260, height=200).facet(column=alt.Column("width:N", title="width"))
by_n

# %% tags=["hide-input"]
by_k_data = growth[growth["n_train"].isin([100, 300, 1000])].assign(n=lambda f: f["n_train"].astype(int))
k_line = alt.Chart(by_k_data).encode(
    x=alt.X("ensemble:Q", scale=alt.Scale(type="log", base=2), title="networks per kernel k"),
    color=alt.Color("n:O", title="n"),
)
(k_line.mark_line(point=True).encode(y=alt.Y("kendall_tau:Q", title="Kendall tau"))
 + k_line.mark_rule(opacity=0.4).encode(y="kendall_tau_low:Q", y2="kendall_tau_high:Q")
 ).properties(width=260, height=200).facet(column=alt.Column("width:N", title="width"))

# %% tags=["hide-input"]
shared = overview.reset_index()
shared = shared[(shared["kind"] == analysis.NNGP) & (shared["variant"] == "best eps") & (shared["n_val"] == 500)
                & (shared["ensemble"] == 1)]
width_chart = alt.Chart(shared).encode(
    x=alt.X("width_multiplier:Q", scale=alt.Scale(type="log", base=2), title="width multiplier"),
    color=alt.Color("n_train:O", title="n"),
)
(width_chart.mark_line(point=True).encode(y=alt.Y("kendall_tau:Q", title="Kendall tau"))
 + width_chart.mark_rule(opacity=0.4).encode(y="kendall_tau_low:Q", y2="kendall_tau_high:Q")
 ).properties(width=300, height=200, title=f"k = 1, m = 500, on the {len(common):,} shared architectures")

# %% [markdown]
# ### Beyond the shared architectures
#
# Two tiers of the plan reach past the shared prefix. Quarter width at k = 1 and
# 2 runs on the whole sample, which narrows its intervals; the dearest
# full-width settings (n = 3,000, and k = 2) run on the first 50 only, read here
# next to every other setting on the same architectures, with intervals that
# wide to match.

# %% tags=["hide-input"]
tier_views = {}
whole_sample = ladder.covering(rows, ladder.ARCHITECTURES[0.25])
if not whole_sample.empty:
    tier_views[f"quarter width, k <= 2, on the first {ladder.ARCHITECTURES[0.25]:,}"] = proxies_of(
        whole_sample, values=("nngp_acc",))
smallest = min(count for w in present for count in ladder.coverage(w).values())
if smallest < ladder.SHARED:
    tier_views[f"every setting, on the first {smallest:,}"] = proxies_of(rows, values=("nngp_acc",))
tier_tables = {}
for title, view in tier_views.items():
    if len(view) < 3:  # a scratch miniature: no rank correlation on fewer
        continue
    summary = ladder.summary(view, flops_of(view), num_resamples=num_resamples, seed=seed)
    tier_tables[title] = pd.DataFrame({
        "architectures": len(view), "PFLOPs spent": summary["spent PFLOPs"].map("{:.2e}".format),
        "Kendall tau [interval]": with_interval(summary)})
if tier_tables:
    display(pd.concat(tier_tables, names=["tier", "proxy"]))

# %% [markdown]
# ## The frontier: which setting to pick at a given budget
#
# The settings (and trainings) that no cheaper one beats on tau, by FLOPs spent,
# on the shared architectures. A user with a budget per score picks the last row
# that fits.

# %% tags=["hide-input"]
frontier = overview[overview["frontier"]].sort_values("spent PFLOPs")
frontier_view = pd.DataFrame({
    "PFLOPs spent": frontier["spent PFLOPs"].map("{:.2e}".format),
    "full-width PFLOPs": frontier["full-width PFLOPs"].map("{:.2e}".format),
    "Kendall tau [interval]": with_interval(frontier),
    "Pearson r [interval]": with_interval(frontier, "pearson"),
})
display(frontier_view)

# %% [markdown]
# ## The paper's claim at each training budget
#
# For 4- and 12-epoch training, an NNGP reading costing at most a tenth of the
# training (FLOPs spent) against the training itself, by a paired bootstrap over
# the shared architectures: the difference in tau, its interval and the share of
# resamples in which NNGP wins. Two choices of the reading: the best one (any
# setting, width and reading), as one reads the paper's figure, which is
# optimistic because it is chosen on the architectures it is tested on; and the
# dearest affordable setting read as the paper does (best eps), fixed before
# looking at any tau.

# %% tags=["hide-input"]
costs = overview["spent PFLOPs"]
paper_reading = common.select([p for p in common.proxies.index
                               if common.proxies.loc[p, "variant"] in ("best eps", analysis.TRAINING)])
claims = pd.concat([
    ladder.claim_tests(common, costs, saving=saving, num_resamples=num_resamples, seed=seed).assign(
        choice="best reading (optimistic)"),
    ladder.claim_tests(paper_reading, costs, saving=saving, choose="largest", num_resamples=num_resamples,
                       seed=seed).assign(choice="dearest affordable, best eps (fixed in advance)"),
], ignore_index=True)
display(claims.set_index(["training", "choice"]).round(3))

# %% tags=["remove-input"]
sentences = []
for _, claim in claims.iterrows():
    if claim["NNGP"] is None:
        sentences.append(f"No NNGP setting of the ladder costs less than {claim['NNGP budget PFLOPs']:.2g} PFLOPs, "
                         f"a {saving:g}th of {claim['training']}.")
        continue
    low, high = claim["low"], claim["high"]
    verdict = "matches or beats" if low > 0 else "is beaten by" if high < 0 else "cannot be told apart from"
    sentences.append(
        f"{claim['choice'].capitalize()}: within a {saving:g}th of {claim['training']} "
        f"({claim['training PFLOPs']:.2g} PFLOPs, tau "
        f"{claim['training tau']:.3f}) the NNGP reading is {claim['NNGP']} (tau {claim['NNGP tau']:.3f} at "
        f"{claim['NNGP PFLOPs']:.2g} PFLOPs): the difference is {claim['difference']:+.3f} "
        f"[{low:+.3f}, {high:+.3f}], NNGP ahead in {claim['fraction NNGP better']:.0%} of the resamples, so it "
        f"{verdict} the training (the interval {'is above' if low > 0 else 'is below' if high < 0 else 'spans'} zero)."
    )
show(" ".join(sentences))

# %% [markdown]
# Does the NNGP frontier (best reading per cost) reach the trainings' tau? Where a
# measured setting does, the cheapest such setting is named. Where none does, a
# straight line of tau against log cost, fitted to the frontier, says where it
# would if it went on. **That is an extrapolation**, not a measurement: nothing
# guarantees the growth continues past the largest setting.

# %% tags=["hide-input"]
nngp_frontier = frontier[frontier["kind"] == analysis.NNGP]
train_tau = {int(e): overview.loc[analysis.training_label(e), "kendall_tau"] for e in (4, 12)}
measured = {e: nngp_frontier[nngp_frontier["kendall_tau"] >= t].sort_values("spent PFLOPs")
            for e, t in train_tau.items()}
reached = [f"{e}-epoch training's tau {train_tau[e]:.3f} is reached by a measured setting, "
           f"{m.index[0]} at {m['spent PFLOPs'].iloc[0]:.2g} PFLOPs" for e, m in measured.items() if len(m)]
unreached = {e: t for e, t in train_tau.items() if measured[e].empty}
if unreached and len(nngp_frontier) >= 2:
    slope, intercept, reach = ladder.log_cost_trend(nngp_frontier["spent PFLOPs"], nngp_frontier["kendall_tau"],
                                                    targets=list(unreached.values()))
    extrapolated = [f"the line reaches {e}-epoch training's tau {t:.3f} at about {reach[t]:.2g} PFLOPs "
                    f"({reach[t] / overview.loc[analysis.training_label(e), 'spent PFLOPs']:.2g} times that "
                    "training's cost)" for e, t in unreached.items()]
    show("; ".join(reached) + ("; " if reached else "")
         + f"extrapolation: over the NNGP frontier tau grows by {slope:.3f} per decade of FLOPs; "
         + "; ".join(extrapolated) + ".")
elif unreached:
    show("; ".join(reached) + ("; " if reached else "")
         + "the NNGP frontier has fewer than two points: no trend is drawn.")
else:
    show("No extrapolation is needed: " + "; ".join(reached) + ".")

# %% [markdown]
# ## Three readings of the same features
#
# Every setting is read three ways: the paper's best eps (chosen on the
# validation labels), eps by leave-one-out on the training images (never looks
# at the validation labels), and the centered kernel (best eps). Tau on the
# shared architectures, per setting:

# %% tags=["hide-input"]
readings = overview[overview["kind"] == analysis.NNGP].reset_index()
readings["setting"] = [
    f"width {w:g}, k={int(k)}, n={int(n)}, m={int(m)}"
    for w, k, n, m in readings[["width_multiplier", "ensemble", "n_train", "n_val"]].itertuples(index=False)
]
by_reading = readings.pivot_table(index="setting", columns="variant", values="kendall_tau", sort=False)
display(by_reading.round(3))

# %% tags=["remove-input"]
gain_loo = (by_reading["leave-one-out eps"] - by_reading["best eps"])
centered_column = [c for c in by_reading.columns if c not in ("best eps", "leave-one-out eps")][0]
gain_centered = by_reading[centered_column] - by_reading["best eps"]
show(
    f"""
    Over the {len(by_reading)} settings, choosing eps by leave-one-out changes tau by
    {gain_loo.median():+.3f} in the median (from {gain_loo.min():+.3f} to {gain_loo.max():+.3f}),
    and centering the kernel by {gain_centered.median():+.3f} (from {gain_centered.min():+.3f} to
    {gain_centered.max():+.3f}); the centered kernel ranks better at
    {int((gain_centered > 0).sum())} of the {len(gain_centered)} settings.
    """
)

# %% [markdown]
# ## PQETP and discovered performance at the best ladder setting
#
# The NNGP chapter reads the paper's Fig. 2 (PQETP: the AUROC of telling
# whether an architecture's truth exceeds a threshold) and Fig. 3 (the truth of
# the best of the top 10 a proxy picks in a random subset) at n = 100. Here they
# are re-read at the ladder's best-tau setting (the paper's reading, best eps),
# next to the cheapest setting and the trainings, on the shared architectures.

# %% tags=["hide-input"]
paper_nngp = overview[(overview["kind"] == analysis.NNGP) & (overview["variant"] == "best eps")]
best_setting = paper_nngp["kendall_tau"].idxmax()
cheapest_setting = paper_nngp["spent PFLOPs"].idxmin()
reread = [cheapest_setting, best_setting, *(analysis.training_label(e) for e in (4, 12, 36))]
reread = list(dict.fromkeys(reread))
thresholds = np.quantile(common.truth, np.linspace(0.1, 0.9, 17))
pqetp = analysis.pqetp_table(common.scores[reread], common.truth, thresholds,
                             min_class_size=max(2, len(common) // 20))
pqetp_long = pqetp.reset_index().melt(id_vars="threshold", var_name="proxy", value_name="PQETP")
alt.Chart(pqetp_long.dropna()).mark_line(point=True).encode(
    x=alt.X("threshold:Q", scale=alt.Scale(zero=False), title="threshold on the 108-epoch accuracy"),
    y=alt.Y("PQETP:Q", scale=alt.Scale(zero=False)),
    color=alt.Color("proxy:N", title=None, legend=alt.Legend(orient="bottom", columns=1)),
).properties(width=420, height=240, title="PQETP at the cheapest and best ladder settings and training")

# %% tags=["hide-input"]
subset = max(2, len(common) // 4)  # subsets of a quarter of the architectures, top 10 as the paper (fewer if tiny)
discovered = analysis.discovered_performance_table(common.scores[reread], common.truth, subset_size=subset,
                                                   top_k=max(1, min(10, subset // 5)), num_trials=100, seed=seed)
display(discovered.round(4))

# %% tags=["remove-input"]
show(
    f"""
    At the best ladder setting ({best_setting}) the top picks of random subsets of {subset}
    architectures reach a mean truth of {discovered.loc[best_setting, 'mean']:.4f}, against
    {discovered.loc[cheapest_setting, 'mean']:.4f} at the cheapest setting,
    {discovered.loc[analysis.training_label(4), 'mean']:.4f} for 4-epoch training and
    {discovered.loc['random choice', 'mean']:.4f} for a random choice (the best in each subset:
    {discovered.loc['best in subset', 'mean']:.4f}).
    """
)
