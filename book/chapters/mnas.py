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
# # The MNAS space
#
# The paper's second study (its sections 3.2 and 4.2, figure 7) leaves NAS-Bench-101
# for the MnasNet search space (Tan et al., 2019; `nngp_lib.spaces.mnas`), built for mobile
# networks on ImageNet. It samples 10,000 networks, trains each for 5 epochs on ImageNet
# (the 5-epoch accuracy, and MnasNet's reward ACC × (LAT / TAR)^w that trades it
# against latency), and scores each with NNGP inference on label-subsampled ImageNet
# sets. Then it trains the top 10 networks by each measure, and 10 random networks,
# for 400 epochs: the best of each group is figure 7's left panel. Its other two
# panels give Kendall's tau and the correlation between the NNGP accuracies and the
# 5-epoch measures. The finding: NNGP correlates with the 5-epoch measures, yet its
# top 10 hold no better network than 10 random ones, in a space where even random
# networks train well.
#
# **What this chapter can and cannot replay.** No ImageNet and no accelerator were
# available, so nothing here is on ImageNet and there is **no 400-epoch ground truth**.
# Instead, on CIFAR-10 (the space's CIFAR variant, `nngp_lib.spaces.mnas.VARIANTS`), every
# sampled network is measured by `nngp_lib.spaces.mnas.study.run_study`:
#
# * **NNGP accuracy**: the paper's label-subsampled setting carried over to CIFAR-10,
#   a class-balanced set of randomly chosen CIFAR-10 classes;
# * **short-training accuracy**: validation accuracy after a few epochs of SGD, the
#   paper's 5-epoch accuracy;
# * **reward**: MnasNet's ACC × (LAT / TAR)^w with w = −0.07, the short-training
#   accuracy as ACC and forward FLOPs as a stand-in for latency, the target TAR being
#   MobileNetV2's FLOPs at the same width (the paper's target, 75 ms on a phone, has no
#   meaning here);
# * a **stand-in ground truth**: validation accuracy after a longer, separate training
#   run of the same network. It stands where the paper's 400-epoch ImageNet accuracy
#   stands, but it is only a longer short training on a small image set.
#
# All measures use networks narrowed by the same width multiplier.

# %% tags=["parameters"]
result_name: str = "mnas_cifar10"  # cached run (results/<name>.csv); if absent, the sample below is measured in scratch
recompute: bool = False  # True: measure (or resume) `result_name` into results/ with the settings below
num_networks: int = 3  # networks sampled uniformly from the space (at least top_k + 1)
seed: int = 0  # seed of the network sample, the initializations and the batch order
width_multiplier: float = 0.25  # channels relative to the space's networks, for every measure (0..4]
nngp_labels: int = 10  # CIFAR-10 classes drawn for the NNGP sets (1..10)
nngp_train: int = 100  # NNGP training images (at least nngp_labels)
nngp_val: int = 100  # NNGP validation images (at least nngp_labels)
ensemble: int = 1  # random networks per NNGP kernel (the paper: 4)
train_images: int = 128  # training images of the short and long trainings (at least batch_size)
val_images: int = 100  # images their accuracy is measured on, disjoint from those (at least 10)
short_epochs: int = 2  # the short training (the paper: 5 epochs on ImageNet)
long_epochs: int = 6  # the stand-in ground truth's training (> short_epochs; the paper: 400)
batch_size: int = 16  # SGD batch size (1..train_images)
top_k: int = 2  # networks kept by each measure (the paper: 10); the random group has as many
num_random_trials: int = 1000  # draws of the random group (its best is averaged over them)

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

from nngp_lib import plotting, search
from nngp_lib.book import cached_or_computed, provenance_note, show, show_table
from nngp_lib.metrics import kendall_tau, pearson
from nngp_lib.spaces import mnas
from nngp_lib.spaces.mnas import study as mnas_study

if num_networks < top_k + 1:
    raise ValueError(f"num_networks must be at least top_k + 1 = {top_k + 1}, got {num_networks}")

plotting.enable_offline_renderer()
settings = mnas_study.StudySettings(
    width_multiplier=width_multiplier, nngp_labels=nngp_labels, nngp_train=nngp_train, nngp_val=nngp_val,
    ensemble=ensemble, train_images=train_images, val_images=val_images, short_epochs=short_epochs,
    long_epochs=long_epochs, batch_size=batch_size, seed=seed, data_seed=seed,
)

RUN_PARAMETERS = dict(
    num_networks=num_networks, seed=seed, width_multiplier=width_multiplier, nngp_labels=nngp_labels,
    nngp_train=nngp_train, nngp_val=nngp_val, ensemble=ensemble, train_images=train_images, val_images=val_images,
    short_epochs=short_epochs, long_epochs=long_epochs, batch_size=batch_size,
)


def compute(results_dir):
    """Measure the chapter's sample (the default small one when no cached run exists)."""
    return mnas_study.run_study(
        mnas.sample_mnas(num_networks, seed=seed), settings, result_name, results_dir=results_dir,
        description=f"MNAS study on CIFAR-10: {num_networks} networks sampled with seed {seed}",
        command="make chapter NAME=mnas PARAMS='-p recompute True "
        + " ".join(f"-p {name} {value}" for name, value in RUN_PARAMETERS.items()) + "'",
    )


run, cached = cached_or_computed(result_name, compute, recompute=recompute)
table = run.table.sort_values("index").reset_index(drop=True)
used = run.provenance["settings"]  # the settings of the run read, cached or not
n = len(table)
k = min(top_k, n - 1)
NNGP_LABEL = f"NNGP ({used['nngp_labels']} labels, n={used['nngp_train']}, m={used['nngp_val']}, k={used['ensemble']})"
SELECTORS = {
    "nngp_acc": NNGP_LABEL,
    "short_acc": f"{used['short_epochs']}-epoch accuracy",
    "reward": f"{used['short_epochs']}-epoch reward",
}
TRUTH = f"{used['long_epochs']}-epoch accuracy (stand-in truth)"

# %% tags=["remove-input"]
show(provenance_note(n, f"the MNAS study result `{result_name}`", {
    "top_k": k, "num_random_trials": num_random_trials, **{name: used[name] for name in sorted(used)},
}))
scale_note = "" if cached else " It was computed for this page at the default small scale, not read from a committed run."
show(
    f"""
    **Scale.** {n} networks of the MnasNet space (the paper: 10,000), at
    {used['width_multiplier']:g} times their channels, on 32×32 CIFAR-10 images rather than
    224×224 ImageNet images. NNGP: {used['nngp_train']} training and {used['nngp_val']} validation
    images of {used['nngp_labels']} randomly chosen classes, {used['ensemble']} network(s) per
    kernel. Training: {used['train_images']} images, {used['short_epochs']} epoch(s) for the short
    measure and {used['long_epochs']} for the stand-in ground truth, accuracy on {used['val_images']}
    other images. The paper's ImageNet ground truth (400 epochs) is missing here: every "best
    network" below is best by the {used['long_epochs']}-epoch stand-in.{scale_note}
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
show(f"*Run:* {run.describe()}.")
show(run.record_markdown())

# %% [markdown]
# The measures over the sample (accuracies as fractions, FLOPs per 32×32 image of the
# narrowed network):

# %%
MEASURES = ["nngp_acc", "nngp_acc_loo", "short_acc", "reward", "truth_acc", "params", "flops"]
show_table(table[MEASURES].describe().loc[["mean", "std", "min", "max"]].round(3))

# %% tags=["remove-input"]
chance = 1 / used["nngp_labels"]
show(
    f"""
    NNGP accuracy ranges from {table['nngp_acc'].min():.1%} to {table['nngp_acc'].max():.1%}
    (chance: {chance:.0%}); the {used['short_epochs']}-epoch accuracy from
    {table['short_acc'].min():.1%} to {table['short_acc'].max():.1%}, and the stand-in truth from
    {table['truth_acc'].min():.1%} to {table['truth_acc'].max():.1%} (chance: 10%). The narrowed
    networks have {table['params'].min() / 1e3:,.0f}k to {table['params'].max() / 1e3:,.0f}k
    parameters and {table['flops'].min() / 1e6:.1f} to {table['flops'].max() / 1e6:.1f} MFLOPs per
    image; the reward's target is MobileNetV2's {used['target_flops'] / 1e6:.1f} MFLOPs.
    """
)

# %% [markdown]
# ## Which measure finds the best network? (figure 7, left)
#
# The top-k networks by each measure, and k networks drawn at random, with the best
# stand-in truth among them (`nngp_lib.spaces.mnas.study.selection_summary`). The measures rank
# the whole sample once, so their groups are fixed; the random group is redrawn many
# times and its mean best (with its standard error) is shown.

# %%
summary = mnas_study.selection_summary(
    table, list(SELECTORS), top_k=k, num_trials=num_random_trials, seed=seed
).rename(index={**SELECTORS, "random": f"{k} random networks"})
show_table(summary[["best", "sem"]].round(3))

# %% tags=["remove-input"]
best_nngp, best_short, best_reward, best_random = summary["best"].to_numpy()
best_overall = table["truth_acc"].max()


def compare(value: float, reference: float) -> str:
    return "above" if value > reference else "below" if value < reference else "equal to"


show(
    f"""
    The best stand-in truth among the top {k} by NNGP is {best_nngp:.2%}, {compare(best_nngp, best_random)}
    the mean best of {k} random networks ({best_random:.2%} ± {summary['sem'].iloc[-1]:.2%}); by
    {used['short_epochs']}-epoch accuracy {best_short:.2%}, by reward {best_reward:.2%}. The best network
    of the whole sample reaches {best_overall:.2%}. (The paper, on ImageNet with 10k networks and k = 10: the best of NNGP's top
    10 was below the best of 10 random networks.)
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
ranked = []
for column, label in SELECTORS.items():
    top = table.sort_values(column, ascending=False, kind="stable").head(k)
    ranked.append(pd.DataFrame({"selected by": label, "truth": top["truth_acc"], "index": top["index"]}))
selected = pd.concat(ranked, ignore_index=True)
everything = pd.DataFrame({"selected by": "all sampled networks", "truth": table["truth_acc"], "index": table["index"]})
points = alt.Chart(pd.concat([selected, everything], ignore_index=True)).mark_circle(size=60, opacity=0.7).encode(
    y=alt.Y("selected by:N", title=None, sort=[*SELECTORS.values(), "all sampled networks"]),
    x=alt.X("truth:Q", title=TRUTH, scale=alt.Scale(zero=False)),
    tooltip=["selected by:N", "index:Q", alt.Tooltip("truth:Q", format=".3f")],
)
random_best = alt.Chart(pd.DataFrame({"truth": [best_random]})).mark_rule(color="black", strokeDash=[4, 4]).encode(
    x="truth:Q"
)
(points + random_best).properties(
    width=480, height=160, title=f"Stand-in truth of the top {k} by each measure (dashed: mean best of {k} random)"
)

# %% [markdown]
# ## NNGP against the short-training measures (figure 7, middle and right)
#
# Kendall's tau-b (`nngp_lib.metrics.kendall_tau`) and Pearson's correlation
# (`nngp_lib.metrics.pearson`) over all sampled networks, of the NNGP accuracy (eps
# chosen on the validation labels, the paper's; and by leave-one-out) and of the
# short-training measures, against the short-training measures and the stand-in truth:

# %%
pairs = [
    ("nngp_acc", "short_acc"), ("nngp_acc", "reward"), ("nngp_acc", "truth_acc"),
    ("nngp_acc_loo", "short_acc"), ("nngp_acc_loo", "reward"), ("nngp_acc_loo", "truth_acc"),
    ("short_acc", "truth_acc"), ("reward", "truth_acc"), ("flops", "truth_acc"),
]  # fmt: skip
correlations = pd.DataFrame(
    [{"measure": a, "against": b, "kendall_tau": kendall_tau(table[a], table[b]),
      "pearson": pearson(table[a], table[b])} for a, b in pairs]  # fmt: skip
).set_index(["measure", "against"])
show_table(correlations.round(3))

# %% tags=["remove-input"]
tau_reward = correlations.loc[("nngp_acc", "reward"), "kendall_tau"]
r_reward = correlations.loc[("nngp_acc", "reward"), "pearson"]
tau_truth = correlations.loc[("nngp_acc", "truth_acc"), "kendall_tau"]
tau_short_truth = correlations.loc[("short_acc", "truth_acc"), "kendall_tau"]
noise = 2 * search.tau_null_sd(n)


def tau_text(tau: float) -> str:
    return "undefined (a measure is constant over the sample)" if np.isnan(tau) else f"{tau:.3f}"


show(
    f"""
    NNGP accuracy against the {used['short_epochs']}-epoch reward: tau = {tau_text(tau_reward)}, Pearson
    {r_reward:.3f}; against the stand-in truth tau = {tau_text(tau_truth)}, where the
    {used['short_epochs']}-epoch accuracy reaches {tau_text(tau_short_truth)}. **With {n} networks a
    Kendall tau moves by about ±{noise:.2f} from chance alone**, so
    {"these values are noise-level at this scale: they say nothing about the method" if noise > 0.3 else
     "differences smaller than that are not findings"}.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
alt.Chart(table.assign(reward=table["reward"].round(4))).mark_circle(size=60).encode(
    x=alt.X("nngp_acc:Q", title=NNGP_LABEL, scale=alt.Scale(zero=False)),
    y=alt.Y("reward:Q", title=SELECTORS["reward"], scale=alt.Scale(zero=False)),
    color=alt.Color("truth_acc:Q", title="stand-in truth", scale=alt.Scale(scheme="viridis")),
    tooltip=["index:Q", "nngp_acc:Q", "short_acc:Q", "reward:Q", "truth_acc:Q", "flops:Q"],
).properties(width=420, height=320, title="NNGP accuracy against the short-training reward")

# %% [markdown]
# ## Cost
#
# Wall seconds per network on the machine of the run (the first network also pays for
# compiling the layers it shares with later ones):

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
seconds = table[["seconds_nngp", "seconds_short", "seconds_truth"]]
show_table(seconds.describe().loc[["mean", "50%", "max"]].round(1))
show(
    f"""
    Median seconds per network: NNGP {seconds['seconds_nngp'].median():.1f}, the
    {used['short_epochs']}-epoch training {seconds['seconds_short'].median():.1f}, the
    {used['long_epochs']}-epoch training {seconds['seconds_truth'].median():.1f}, each including its
    evaluation and the compilation of layers no earlier network had. Wall seconds of networks this
    small measure compilation and dispatch more than arithmetic; the book's FLOP-based cost model
    compares the methods at scale.
    """
)
