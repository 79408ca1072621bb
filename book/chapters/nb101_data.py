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
# # The NAS-Bench-101 data
#
# Every experiment in this book asks how well a cheap score ranks architectures
# of the NAS-Bench-101 search space (Ying et al., 2019) and compares the answer
# with what training them tells us. The ground truth is NAS-Bench-101's table of
# trained cells: each of its 423,624 unique cells was trained on CIFAR-10 for
# 4, 12, 36 and 108 epochs, three times per budget.
#
# We use a public subset of that table, read by
# `nngp_lib.data.nb101_table.load_table()`: one row per architecture with its
# pruned cell, its parameter count and its validation accuracy after each
# budget. The accuracies are those of **one** of the three training runs, not
# their mean, so they carry the noise of a single training. This chapter
# describes the table and measures how well the classical cheap proxies,
# shortened training and model size, rank the architectures by their
# 108-epoch accuracy: the baselines an NNGP score has to beat.

# %% tags=["parameters"]
sample_for_plots: int = 3000  # points in the scatter of size against accuracy (1..5000)
seed: int = 0  # seed of the draw of those points

# %% tags=["remove-cell"]
# Singular settings (-p ensemble 8), lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
import altair as alt
import pandas as pd

from nngp_lib import plotting
from nngp_lib.book import provenance_note, show, show_table
from nngp_lib.data import nb101_table
from nngp_lib.metrics import kendall_tau

if not 1 <= sample_for_plots <= 5000:
    raise ValueError(f"sample_for_plots must be in 1..5000 (altair embeds at most 5000 rows), got {sample_for_plots}")

NB101_SPACE_SIZE = 423_624  # unique cells of NAS-Bench-101 (Ying et al., 2019)
TRUTH = "val_acc_108"
FLOOR = 0.8  # the charts show the bulk of the table; the few failed trainings sit far below

plotting.enable_offline_renderer()
table = nb101_table.load_table()
truth = table[TRUTH]
failed = truth < FLOOR
vertices = table["num_vertices"]
parameters = table["trainable_parameters"]

# %% tags=["remove-input"]
show(
    provenance_note(
        len(table),
        f"`{nb101_table.TABLE_FILE.as_posix()}` in the data folder",
        {"sample_for_plots": sample_for_plots, "seed": seed},
    )
)
show(
    f"""
    The table holds {len(table):,} of NAS-Bench-101's {NB101_SPACE_SIZE:,} unique cells
    ({len(table) / NB101_SPACE_SIZE:.1%}). After pruning, {(vertices == 7).sum():,} of them
    ({(vertices == 7).mean():.1%}) keep all seven vertices and the smallest has
    {vertices.min()}; the networks built from them have between
    {parameters.min() / 1e6:.2f} and {parameters.max() / 1e6:.1f} million trainable
    parameters.
    """
)

# %% [markdown]
# ## The 108-epoch accuracy
#
# The distribution of the ground truth, rounded to four decimals:

# %%
show_table(truth.describe(percentiles=[0.05, 0.25, 0.5, 0.75, 0.95]).round(4))

# %% tags=["remove-input"]
show(
    f"""
    Half of the architectures reach between {truth.quantile(0.25):.1%} and
    {truth.quantile(0.75):.1%} validation accuracy after 108 epochs, and the best one
    {truth.max():.2%}: the upper half of the table lies within
    {100 * (truth.max() - truth.median()):.1f} points of the best architecture, so
    ranking it is a matter of small differences. {failed.sum():,} architectures
    ({failed.mean():.2%}) stay below {FLOOR:.0%}, the lowest at {truth.min():.1%};
    the charts leave them out.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
plotting.histogram(truth[~failed], bins=60, title="validation accuracy after 108 epochs").properties(
    width=560, height=240, title="108-epoch validation accuracy"
)

# %% [markdown]
# ## How well do the cheap proxies rank the architectures?
#
# Kendall's tau-b (`nngp_lib.metrics.kendall_tau`) between each proxy and the
# 108-epoch accuracy, over all rows of the table:

# %%
proxies = {
    "accuracy after 4 epochs": "val_acc_4",
    "accuracy after 12 epochs": "val_acc_12",
    "accuracy after 36 epochs": "val_acc_36",
    "trainable parameters": "trainable_parameters",
}
taus = pd.Series({name: kendall_tau(table[column], truth) for name, column in proxies.items()})
show_table(taus.round(3))

# %% tags=["remove-input"]
tau_4, tau_12, tau_36, tau_size = taus.to_numpy()
show(
    f"""
    Training a ninth of the way (12 epochs) ranks the architectures with
    tau = {tau_12:.3f}, a third of the way (36 epochs) with tau = {tau_36:.3f}, and
    4 epochs with tau = {tau_4:.3f}. The parameter count, which costs nothing to
    compute, reaches {tau_size:.3f}, {"more" if tau_size > tau_4 else "less"} than
    4 epochs of training: a cheap score earns its cost only where it ranks better
    than model size.

    The heatmap places the {(~failed).sum():,} architectures above {FLOOR:.0%} by their
    12-epoch and 108-epoch accuracy (the colour scale of the counts is logarithmic).
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
plotting.density_heatmap(
    table.loc[~failed, "val_acc_12"],
    truth[~failed],
    bins=50,
    x_title="validation accuracy after 12 epochs",
    y_title="validation accuracy after 108 epochs",
).properties(width=480, height=360, title="12 against 108 epochs of training")

# %% tags=["hide-input"]
kept = table.loc[~failed, ["trainable_parameters", TRUTH, "num_vertices"]]
sample = kept.sample(n=min(sample_for_plots, len(kept)), random_state=seed).round({TRUTH: 4})

# %% tags=["remove-input"]
show(
    f"""
    Model size against accuracy for {len(sample):,} architectures drawn at random
    (seed {seed}) from the {len(kept):,} above {FLOOR:.0%}; each point is one
    architecture, coloured by the number of vertices of its pruned cell.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
alt.Chart(sample).mark_circle(size=12, opacity=0.5).encode(
    x=alt.X(
        "trainable_parameters:Q",
        scale=alt.Scale(type="log"),
        axis=alt.Axis(format="~s"),
        title="trainable parameters",
    ),
    y=alt.Y(f"{TRUTH}:Q", scale=alt.Scale(zero=False), title="validation accuracy after 108 epochs"),
    color=alt.Color("num_vertices:O", title="vertices"),
    tooltip=["trainable_parameters:Q", f"{TRUTH}:Q", "num_vertices:O"],
).properties(width=480, height=360, title="Model size against 108-epoch accuracy")
