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
# # Batch norm at initialization: momentum 0.997 against 0
#
# Every convolution of a NAS-Bench-101 network is followed by batch normalization,
# whose moving mean and variance start at 0 and 1. Before computing NNGP kernels, the
# paper runs each random network once in training mode on a batch of training images,
# with NAS-Bench-101's default momentum 0.997, then computes features in inference mode
# (its appendix A). Its Fig. S1 compares this with momentum 0, which sets the moving
# statistics to those of the batch: the NNGP accuracy "increases in expectation" but
# becomes "less indicative of the ground-truth performance", with Kendall's tau and
# correlation "close to 0", "nearly random chance".
#
# ## Why 0.997 leaves batch norm almost an identity
#
# One training-mode pass updates each layer's moving statistics as
#
#     mean ← μ · 0 + (1 − μ) · batch mean,    var ← μ · 1 + (1 − μ) · batch var,
#
# and inference mode computes `γ (x − mean) / sqrt(var + ε) + β` with γ = 1 and β = 0 at
# initialization. With μ = 0.997 the moving mean is 0.3% of the batch mean and the
# moving variance is 0.997 + 0.003 · (batch variance): unless a channel's batch
# variance is in the tens or more, the layer passes its input on nearly unchanged
# (measured below), and the network behaves as the same
# ReLU network *without* normalization, whose activations grow or shrink with depth
# and with the cell's wiring (how many branches are summed at a vertex, how many are
# concatenated at the output). Those differences between architectures reach the
# kernel. With μ = 0 every layer is standardized to zero mean and unit variance per
# channel on the batch, which erases the scale differences between architectures and
# between paths within a cell. The comparison below measures what that does to the
# NNGP score as a predictor.

# %% tags=["parameters"]
result_name: str = "nb101_nngp"  # NNGP result at momentum 0.997 (results/<name>.csv); if absent, scored in a scratch folder
bn0_result_name: str = "nb101_nngp_bn0"  # NNGP result at momentum 0 on some of the same architectures
recompute: bool = False  # True: score (or resume) both results into results/ with the settings below
num_architectures: int = 10  # architectures scored at momentum 0.997 when computing `result_name` (10..30001)
num_bn0_architectures: int = 8  # of those, architectures scored at momentum 0 when computing `bn0_result_name`
ensembles: list[int] = [1]  # ensemble sizes k when computing `result_name` (each at least 1)
n_trains: list[int] = [100]  # NNGP training-set sizes n when computing `result_name` (each at least 10)
n_vals: list[int] = [100]  # NNGP validation-set sizes m when computing `result_name` (each at least 10)
seed: int = 0  # seed of the architecture samples and of the network initializations
score_column: str = "nngp_acc"  # NNGP score: "nngp_acc" (best eps, the paper's) or "nngp_acc_loo" (leave-one-out eps)
num_resamples: int = 1000  # bootstrap resamples of the architectures for confidence intervals (at least 1)

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

from nngp_lib import analysis, plotting, scoring, search
from nngp_lib.book import cached_or_computed, provenance_note, show, show_table
from nngp_lib.data import nb101_table
from nngp_lib.metrics import kendall_tau
from nngp_lib.networks.layers import BN_EPSILON, BN_MOMENTUM
from nngp_lib.spaces.nb101 import specs_from_table

plotting.enable_offline_renderer()
table = nb101_table.load_table()


def compute_default(results_dir):
    """Score the default small sample at momentum 0.997 (a fallback when no cached run exists)."""
    return scoring.score_sample(
        result_name, num_architectures, ensembles=ensembles, n_trains=n_trains, n_vals=n_vals, seed=seed,
        results_dir=results_dir,
        command=f"book/chapters/bn_ablation.py (num_architectures={num_architectures}, ensembles={ensembles}, "
        f"n_trains={n_trains}, n_vals={n_vals}, seed={seed})",
    )


def compute_bn0(results_dir):
    """The cheapest setting of the default run, at momentum 0, on some of its architectures."""
    runs = scoring.complete_settings(default_run.table)[list(scoring.SETTING_COLUMNS)].drop_duplicates()
    cheapest = runs.loc[[(runs["ensemble"] * (runs["n_train"] + runs["n_val"])).idxmin()]].to_dict("records")[0]
    cheapest.update(bn_momentum=0.0, width_multiplier=float(cheapest["width_multiplier"]))
    setting = scoring.Setting(**cheapest)
    hashes = pd.Series(default_run.table["hash"].unique())
    drawn = hashes.sample(n=min(num_bn0_architectures, len(hashes)), random_state=seed)
    return scoring.score_many(
        specs_from_table(table.set_index("hash").loc[drawn]), [setting], bn0_result_name,
        results_dir=results_dir, progress=False,
        description=f"NNGP scores at batch-norm momentum 0 of {len(drawn)} architectures of {result_name}",
        command=f"book/chapters/bn_ablation.py (num_bn0_architectures={num_bn0_architectures}, seed={seed})",
    )


default_run, default_cached = cached_or_computed(result_name, compute_default, recompute=recompute)
bn0_run, bn0_cached = cached_or_computed(bn0_result_name, compute_bn0, recompute=recompute)

momenta = sorted(bn0_run.table["bn_momentum"].unique())
if momenta != [0.0]:
    raise ValueError(f"{bn0_result_name!r} should hold momentum-0 scores, it holds momenta {momenta}")

# Scores of the architectures scored in both runs, one proxy per (setting, momentum).
proxies = analysis.proxy_scores(
    pd.concat([default_run.table, bn0_run.table], ignore_index=True), table, values=(score_column,)
)
described = proxies.proxies[proxies.proxies["kind"] == analysis.NNGP]
pair_keys = ["ensemble", "n_train", "n_val", "seed", "data_seed", "width_multiplier"]
pairs = described[described["bn_momentum"] == 0.0].reset_index().merge(
    described[described["bn_momentum"] != 0.0].reset_index(), on=pair_keys, suffixes=("_bn0", "_default")
)
if pairs.empty:
    raise ValueError(
        f"no setting of {bn0_result_name!r} matches one of {result_name!r} (same k, n, m, seeds, width): "
        "score the momentum-0 run at a setting of the default run"
    )
pairs.index = [analysis.setting_label(row) for _, row in pairs.iterrows()]
num_shared = len(proxies)
TRAINING = [analysis.training_label(e) for e in (4, 12, 36)]

# %% tags=["remove-input"]
show(provenance_note(num_shared, f"the NNGP results `{result_name}` and `{bn0_result_name}`", {
    "score_column": score_column, "num_resamples": num_resamples, "seed": seed,
}))
SCRATCH = " (computed for this page at the default small scale, not the committed run)"
show(f"*Momentum {BN_MOMENTUM}{'' if default_cached else SCRATCH}:* {default_run.describe()}.")
show(f"*Momentum 0{'' if bn0_cached else SCRATCH}:* {bn0_run.describe()}.")
show(default_run.record_markdown())
show(bn0_run.record_markdown())
nngp = list(pairs["proxy_default"])
widths_used = sorted(float(w) for w in proxies.proxies.loc[nngp, "width_multiplier"].unique())
show(
    f"The Monte-Carlo networks of the NNGP scores have {' and '.join(f'{w:g}' for w in widths_used)} times the "
    "channels of the NB101 networks that were trained"
    + ("." if widths_used == [1.0] else ": a narrower network is a cheaper, noisier estimate of the limiting kernel.")
)
show(
    f"""
    {num_shared} architectures were scored at both momenta, at {len(pairs)} common setting(s):
    {", ".join(pairs.index)}. Everything below is measured on those architectures only.
    """
)

# %% [markdown]
# ## The moving statistics after the pass
#
# For one architecture of the run (its first scored one), one random network at
# initialization, at the width of the compared runs, run once in training mode on 100
# NNGP training images: the moving
# mean and variance of all its batch-norm layers after the pass, and the factor
# 1 / sqrt(var + ε) by which inference mode then scales each channel, at both momenta:

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
# (JAX may warn about the machine's accelerators)
import jax

from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.spaces.nb101 import jax_network as nb101_network

example = specs_from_table(table.set_index("hash").loc[[proxies.scores.index[0]]])[0]
width = float(pairs["width_multiplier"].iloc[0])
network = nb101_network.network(example, stem_channels=scoring.stem_channels(width))
variables = network.init(jax.random.PRNGKey(seed))
images = nngp_split(100, 10, seed=seed).x_train
statistics = {}
for momentum in (BN_MOMENTUM, 0.0):
    _, moving = network.features(variables, images, train=True, bn_momentum=momentum)
    leaves = jax.tree_util.tree_leaves_with_path(moving)
    means = np.concatenate([np.asarray(leaf) for path, leaf in leaves if "mean" in jax.tree_util.keystr(path)])
    variances = np.concatenate([np.asarray(leaf) for path, leaf in leaves if "var" in jax.tree_util.keystr(path)])
    scale = 1 / np.sqrt(variances + BN_EPSILON)
    statistics[f"momentum {momentum:g}"] = {
        "|mean| max": np.abs(means).max(), "var min": variances.min(), "var max": variances.max(),
        "scale min": scale.min(), "scale max": scale.max(),
    }
statistics = pd.DataFrame(statistics).T
identity_error = max(1 - statistics.iloc[0]["scale min"], statistics.iloc[0]["scale max"] - 1)
num_layers = sum("var" in jax.tree_util.keystr(path) for path, _ in leaves)

# %%
show_table(statistics.round(3))

# %% tags=["remove-input"]
show(
    f"""
    Over the {num_layers} batch-norm layers of this network ({means.size:,} channels), momentum {BN_MOMENTUM}
    leaves inference mode scaling every channel by between {statistics.iloc[0]["scale min"]:.3f} and
    {statistics.iloc[0]["scale max"]:.3f} and shifting it by at most {statistics.iloc[0]["|mean| max"]:.3f}:
    batch norm is an identity to within {identity_error:.1%}.
    At momentum 0 the scales range from {statistics.iloc[1]["scale min"]:.3f} to
    {statistics.iloc[1]["scale max"]:.3f}: each channel is standardized by its own batch statistics.
    """
)

# %% [markdown]
# ## Accuracy
#
# The distribution of NNGP validation accuracy at each momentum (rounded):

# %%
accuracy = pd.DataFrame(
    {f"{setting}, momentum {momentum}": proxies.scores[pairs.loc[setting, f"proxy_{suffix}"]]
     for setting in pairs.index for suffix, momentum in (("default", BN_MOMENTUM), ("bn0", 0))}
)
show_table(accuracy.describe(percentiles=[0.1, 0.5, 0.9]).round(4))

# %% tags=["remove-input"]
first = pairs.index[0]
default_scores = proxies.scores[pairs.loc[first, "proxy_default"]]
bn0_scores = proxies.scores[pairs.loc[first, "proxy_bn0"]]
higher = (bn0_scores > default_scores).mean()
if bn0_scores.mean() > default_scores.mean():
    mean_verdict = "As the paper reports, the accuracy increases in expectation with momentum 0."
else:
    mean_verdict = "Unlike the paper's report, the accuracy does not increase in expectation with momentum 0 here."
show(
    f"""
    At {first}, the mean NNGP accuracy is {default_scores.mean():.1%} at momentum {BN_MOMENTUM} and
    {bn0_scores.mean():.1%} at momentum 0; momentum 0 scores higher on {higher:.0%} of the architectures.
    {mean_verdict}
    The two momenta agree on the ranking of the architectures with Kendall's tau =
    {kendall_tau(default_scores, bn0_scores):.3f}.
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
edges = np.linspace(min(default_scores.min(), bn0_scores.min()), max(default_scores.max(), bn0_scores.max()), 31)
histograms = pd.concat(
    [
        pd.DataFrame({"start": edges[:-1], "end": edges[1:], "architectures": np.histogram(values, edges)[0],
                      "momentum": str(momentum)})
        for momentum, values in ((BN_MOMENTUM, default_scores), (0, bn0_scores))
    ]
).round(6)
alt.Chart(histograms).mark_bar(opacity=0.6).encode(
    x=alt.X("start:Q", bin="binned", title=f"NNGP validation accuracy ({first})"),
    x2="end:Q",
    y=alt.Y("architectures:Q", stack=None),
    color=alt.Color("momentum:N", title="batch-norm momentum"),
).properties(width=480, height=240, title="NNGP accuracy at the two momenta")

# %% [markdown]
# ## Ranking
#
# Kendall's tau-b and Pearson's r against the 108-epoch accuracy (one training run),
# with 95% bootstrap intervals over the shared architectures, for both momenta and for
# shortened training on the same architectures:

# %%
columns = [label for setting in pairs.index for label in pairs.loc[setting, ["proxy_default", "proxy_bn0"]]]
ranking = analysis.correlation_table(
    proxies.scores[columns + TRAINING], proxies.truth, num_resamples=num_resamples, seed=seed
)
show_table(ranking.round(3))

# %% [markdown]
# The difference in tau (momentum 0.997 minus momentum 0) on the same bootstrap
# resamples, per setting:

# %%
differences = pd.DataFrame(
    {setting: analysis.paired_comparison(
        proxies.scores, proxies.truth, pairs.loc[setting, "proxy_default"], pairs.loc[setting, "proxy_bn0"],
        num_resamples=num_resamples, seed=seed,
    ) for setting in pairs.index}
).T
show_table(differences.round(3))

# %% tags=["remove-input"]
tau_default = ranking.loc[pairs.loc[first, "proxy_default"]]
tau_bn0 = ranking.loc[pairs.loc[first, "proxy_bn0"]]
difference = differences.loc[first]
if difference["low"] > 0:
    ranking_verdict = "As in the paper, momentum 0 ranks worse than the default momentum."
elif difference["high"] >= 0:
    ranking_verdict = (
        "The interval of the difference includes 0, so these architectures do not show the paper's "
        "loss of ranking at momentum 0 beyond noise."
    )
else:
    ranking_verdict = "Here momentum 0 ranks better than the default momentum, unlike the paper."
chance = 2 * search.tau_null_sd(num_shared)
if abs(tau_bn0["kendall_tau"]) < chance:
    chance_verdict = (
        f"The momentum-0 tau is within two null standard deviations of 0 (±{chance:.2f}): "
        "the paper's 'nearly random chance'."
    )
else:
    chance_verdict = (
        f"The momentum-0 tau is further from 0 than two null standard deviations (±{chance:.2f}), "
        "unlike the paper's tau close to 0."
    )
show(
    f"""
    At {first}, momentum {BN_MOMENTUM} ranks the architectures with tau = {tau_default["kendall_tau"]:.3f}
    ({tau_default["kendall_tau_low"]:.3f} to {tau_default["kendall_tau_high"]:.3f}) and momentum 0 with
    tau = {tau_bn0["kendall_tau"]:.3f} ({tau_bn0["kendall_tau_low"]:.3f} to {tau_bn0["kendall_tau_high"]:.3f});
    Pearson's r is {tau_default["pearson"]:.3f} against {tau_bn0["pearson"]:.3f}. The paired difference in tau is
    {difference["difference"]:.3f} (95% interval {difference["low"]:.3f} to {difference["high"]:.3f}), positive
    in {difference["fraction_first_better"]:.0%} of the resamples. Four epochs of training rank the same
    architectures with tau = {ranking.loc[TRAINING[0], "kendall_tau"]:.3f}.
    {ranking_verdict} {chance_verdict}
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
scatter = pd.DataFrame(
    {"truth": proxies.truth, f"momentum {BN_MOMENTUM}": default_scores, "momentum 0": bn0_scores}
).melt(id_vars="truth", var_name="momentum", value_name="nngp").round(4)
alt.Chart(scatter).mark_circle(size=30, opacity=0.7).encode(
    x=alt.X("nngp:Q", scale=alt.Scale(zero=False), title=f"NNGP validation accuracy ({first})"),
    y=alt.Y("truth:Q", scale=alt.Scale(zero=False), title="validation accuracy after 108 epochs"),
    color=alt.Color("momentum:N", title="batch-norm momentum"),
    tooltip=["momentum:N", "nngp:Q", "truth:Q"],
).properties(width=300, height=280).facet(column=alt.Column("momentum:N", title=None))
