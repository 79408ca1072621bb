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
# # Findings
#
# This book reproduces *Towards NNGP-guided Neural Architecture Search* (Park, Lee,
# Peng, Cao and Sohl-Dickstein, 2020) as an executable paper: NAS-Bench-101
# architectures on CIFAR-10 scored without training, by the accuracy of a Monte-Carlo
# NNGP kernel's regression, against the 108-epoch ground truth and against shortened
# training. This page collects what the book found. Every number on it is read from a
# committed run when the book is built (`nngp_lib.findings`), and every row links to the
# chapter that analyses it. How to build the book and run a chapter at full scale:
# {doc}`About this book <../intro>`.

# %% tags=["parameters"]
num_resamples: int = 1000  # bootstrap resamples of the architectures for every tau interval (0: none)
seed: int = 0  # seed of the bootstrap

# %% tags=["remove-cell"]
# Singular settings, lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["remove-cell"]
import altair as alt
import numpy as np

from nngp_lib import findings, ladder, plotting
from nngp_lib.book import show, show_table
from nngp_lib.data import nb101_table

plotting.enable_offline_renderer()
table = nb101_table.load_table()
missing = findings.missing_runs()
key = findings.key_results(table, num_resamples=num_resamples, seed=seed)


def rows_of(finding: str):
    return key[key["finding"] == finding].set_index("score")


def tau(row) -> str:
    if np.isnan(row["kendall_tau_low"]):
        return f"{row['kendall_tau']:.2f}"
    return f"{row['kendall_tau']:.2f} [{row['kendall_tau_low']:.2f}, {row['kendall_tau_high']:.2f}]"


def bounds(row) -> tuple[float, float]:
    """The interval of a row's tau, or its point estimate twice when no resamples were asked for."""
    if np.isnan(row["kendall_tau_low"]):
        return row["kendall_tau"], row["kendall_tau"]
    return row["kendall_tau_low"], row["kendall_tau_high"]


def pflops(value: float) -> str:
    return f"{value:.1e}"


# %% [markdown]
# ## In short

# %% tags=["remove-input"]
lines = []
if not missing["NNGP against training"]:
    main = rows_of("NNGP against training")
    nngp = main[main.index.str.startswith("NNGP")]
    best = nngp["kendall_tau"].idxmax()
    worst = nngp["kendall_tau"].idxmin()
    four, twelve = main.loc["train 4 epochs"], main.loc["train 12 epochs"]
    lines.append(
        f"- **At the book's first settings NNGP ranks "
        f"{'below' if bounds(main.loc[best])[1] < four['kendall_tau'] else 'near or above'} "
        f"4-epoch training.** On "
        f"{int(main['architectures'].iloc[0]):,} seeded NAS-Bench-101 architectures, the best of its "
        f"settings, {best}, ranks at Kendall tau {tau(main.loc[best])} (95 % bootstrap interval) against "
        f"the 108-epoch truth, at {pflops(main.loc[best, 'PFLOPs'])} PFLOPs per score; 4-epoch training "
        f"reaches {tau(four)} at {pflops(four['PFLOPs'])} PFLOPs and 12-epoch training {tau(twelve)}. "
        + (f"At {worst} the score is noise ({tau(main.loc[worst])}: its interval holds 0). "
           if bounds(main.loc[worst])[0] <= 0 <= bounds(main.loc[worst])[1]
           else f"The weakest setting, {worst}, ranks at {tau(main.loc[worst])}. ")
        + "<a href='nb101.html'>Chapter</a>"
    )
if not missing["the ladder"]:
    climb = rows_of("the ladder")
    nngp = climb[climb.index.str.startswith("NNGP")]
    top = nngp["kendall_tau"].idxmax()
    four, twelve = climb.loc["train 4 epochs"], climb.loc["train 12 epochs"]
    count = int(climb["architectures"].iloc[0])
    rows, provenances = ladder.read_runs()
    scored = rows.groupby("width_multiplier")["hash"].nunique()
    progress = ", ".join(f"{int(scored[w]):,} of {ladder.ARCHITECTURES[w]:,} at width {w:g}" for w in sorted(scored.index))
    lines.append(
        f"- **The ladder of larger settings{' (still running)' if int(scored.sum()) < sum(ladder.ARCHITECTURES.values()) else ''}.** "
        f"On the {count:,} "
        f"architectures that every width of the ladder has scored so far ({progress}), the best "
        f"setting on the frontier of tau against FLOPs, {top}, ranks at {tau(climb.loc[top])} at "
        f"{pflops(climb.loc[top, 'PFLOPs'])} PFLOPs, against {tau(four)} for 4-epoch and {tau(twelve)} for "
        f"12-epoch training on the same architectures ({'wide intervals: too few architectures to settle the paper' + chr(39) + 's claim' if count < 300 else 'the claim is tested with paired bootstraps'} in <a href='ladder.html'>the ladder chapter</a>)."
    )
if not missing["the whole table"]:
    whole = rows_of("the whole table")
    nngp = whole[whole.index.str.startswith("NNGP")]
    top = nngp["kendall_tau"].idxmax()
    count = int(whole["architectures"].iloc[0])
    lines.append(
        f"- **The whole table{' (still running)' if count < len(table) else ''}.** On the {count:,} of the NB101 "
        f"table's {len(table):,} architectures scored so far at one of the ladder's cheapest settings, "
        f"{top} ranks at {tau(whole.loc[top])} for {pflops(whole.loc[top, 'PFLOPs'])} PFLOPs per "
        f"score, against {tau(whole.loc['train 4 epochs'])} for 4-epoch and {tau(whole.loc['train 12 epochs'])} "
        "for 12-epoch training. <a href='whole_table.html'>Chapter</a>"
    )
if not missing["zero-cost proxies"]:
    zero = rows_of("zero-cost proxies")
    named = [s for s in zero.index if "best" in s]
    if named:
        best_proxy = named[0]
        lines.append(
            f"- **Zero-cost proxies:** {best_proxy.replace(' (best training-free proxy)', '')} is the best "
            f"training-free proxy at {tau(zero.loc[best_proxy])} on {int(zero['architectures'].iloc[0]):,} "
            f"architectures; the parameter count alone ranks at {tau(zero.loc['parameters'])}. "
            "<a href='proxies.html'>Chapter</a>"
        )
if not missing["cheap estimates"]:
    cheap = rows_of("cheap estimates")
    lines.append(
        "- **How far narrow networks stand in for the real one at n = 100:** "
        + "; ".join(f"{score.split(' against')[0]} ranks like full width at tau {row['kendall_tau']:.2f}"
                    for score, row in cheap.iterrows())
        + f" ({int(cheap['architectures'].iloc[0]):,} architectures). <a href='cost_model.html'>Chapter</a>"
    )
show("\n".join(lines))

# %% [markdown]
# ## The key results
#
# One row per score: Kendall's tau-b against the 108-epoch truth with its 95 %
# percentile bootstrap interval (architectures resampled), the cost of one score by the
# paper's FLOP model (narrower networks counted as computed) or, for the zero-cost
# proxies, the measured median seconds per architecture, and the chapter that analyses
# it; the runs are named below the table. The cheap estimates' tau is against the full-width NNGP score, not the truth.

# %% tags=["remove-input"]
CHAPTER_TITLES = {"nb101": "NAS-Bench-101", "ladder": "The ladder", "whole_table": "The whole table",
                  "proxies": "Proxies", "cost_model": "Cost model"}


def cost(row) -> str:
    if not np.isnan(row["PFLOPs"]):
        return f"{pflops(row['PFLOPs'])} PFLOPs"
    if not np.isnan(row["seconds"]):
        return f"{row['seconds']:.3g} s measured"
    return "–"


shown = key.assign(**{
    "Kendall tau [95 % interval]": [tau(row) for _, row in key.iterrows()],
    "cost per score": [cost(row) for _, row in key.iterrows()],
    "chapter": [f'<a href="{c}.html">{CHAPTER_TITLES[c]}</a>' for c in key["chapter"]],
}).set_index(["finding", "score"])
show_table(shown[["architectures", "Kendall tau [95 % interval]", "cost per score", "chapter"]], escape=False)
show("*Runs:* " + "; ".join(f"{finding}: {', '.join(f'`{name}`' for name in names.split(', '))}"
                            for finding, names in key.groupby("finding", sort=False)["run"].first().items()) + ".")

# %% [markdown]
# ## Ranking against cost
#
# Every scored point above with a FLOP cost: NNGP settings and training budgets, Kendall
# tau with its interval against PFLOPs per score (log scale). Points of one colour share
# their architectures; the two groups do not, so compare within a colour.

# %% tags=["remove-input"]
points = findings.cost_points(key)
base = alt.Chart(points).encode(
    x=alt.X("PFLOPs:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~e"), title="PFLOPs per score"),
    color=alt.Color("source:N", title="architectures of", legend=alt.Legend(orient="bottom")),
)
(base.mark_rule().encode(y=alt.Y("kendall_tau_low:Q", title="Kendall tau"), y2="kendall_tau_high:Q")
 + base.mark_point(filled=True, size=60).encode(
     y="kendall_tau:Q", shape=alt.Shape("kind:N", title=None),
     tooltip=["score:N", alt.Tooltip("PFLOPs:Q", format=".2e"), alt.Tooltip("kendall_tau:Q", format=".3f"),
              "architectures:Q"])).properties(width=560, height=300)

# %% [markdown]
# ## What this book could not test (yet)

# %% tags=["remove-input"]
gaps = [f"- No committed run for *{finding}* ({', '.join(f'`{n}`' for n in names)}): its rows are missing above."
        for finding, names in missing.items() if names]
if not missing["the ladder"]:
    planned = sum(ladder.ARCHITECTURES.values())
    done = int(scored.sum())
    gaps.append(
        f"- **The paper's claim at its own budget.** The ladder of larger NNGP settings has scored {done:,} of "
        f"{planned:,} planned (width, architecture) pairs; until every width covers the first "
        f"{ladder.SHARED:,} architectures of the sample, the comparison with training at the paper's cost rests "
        "on the few architectures every width holds so far."
    )
table_rows = (int(rows_of("the whole table")["architectures"].iloc[0]) if not missing["the whole table"] else 0)
covered = ("covers the whole table" if table_rows == len(table) else
           f"has scored {table_rows:,} of them so far, so until it ends the paper's 10,000-architecture subsets "
           "are smaller")
gaps += [
    f"- **The whole space.** The paper scores all 423,624 NAS-Bench-101 cells; the ground truth this book reads "
    f"covers {len(table):,} of them, and its run through that table (`{findings.TABLE_RUN}`, "
    f"<a href='whole_table.html'>chapter</a>) {covered}. The cells outside the table have no truth to test a "
    "search against.",
    "- **GPUs and the paper's largest settings.** Every number here was computed on a 2-core CPU; no GPU was "
    "available, so settings beyond the ladder (k = 8, n = 8,000) are costed, not run.",
    "- **MNAS on ImageNet.** The MNAS chapter scores MNAS-space networks on CIFAR-10 images; the paper's "
    "ImageNet study needs data this book does not have.",
]
show("\n".join(gaps))
