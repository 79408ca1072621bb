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
# # The method: NNGP-guided scoring
#
# The paper scores an architecture without training it: it asks how well a
# *Bayesian* network of that architecture, with its random initialization as
# prior, would classify a small validation set after seeing a small training
# set. For wide networks that question has a closed-form answer.
#
# **The wide limit.** Let f_θ(x) ∈ ℝᵈ be the penultimate features of a network
# with random parameters θ, followed by a linear readout with Gaussian weights.
# Each logit is then a sum over d feature units of independent random terms; as
# the network grows wide, the logits at any finite set of inputs become jointly
# Gaussian (Neal 1994; Lee et al. 2018; Matthews et al. 2018; Novak et al.
# 2019), with zero mean and covariance given by the **NNGP kernel**, the second
# moment of the features (the paper's eq. 1):
#
#     K(x, x′) = E_θ[ f_θ(x) · f_θ(x′) ] / d.
#
# Bayesian inference in the wide network is then Gaussian-process regression
# with kernel K: no gradient step, only linear algebra.
#
# **Monte-Carlo kernels.** Analytic kernels exist for many layers, but not for
# the max-pooling and batch normalization of NAS-Bench-101 cells, and even where
# they exist they are costly for convolutions. The paper instead estimates eq. 1
# with k random initializations θ₁ … θ_k of the finite network itself (the
# *ensemble number* k):
#
#     K̂(x, x′) = (1/k) Σᵢ f_θᵢ(x) · f_θᵢ(x′) / d.
#
# **Algorithm 1.** Given n class-balanced training images X with labels and m
# validation images X*, with Y the one-hot training labels shifted to mean zero
# (one-hot minus 1/10):
#
# 1. draw k networks; in each, set the batch-norm moving statistics with one
#    training-mode pass over a batch of training images, then compute the
#    features of all n + m images in inference mode;
# 2. form K_tt = K̂(X, X) (n × n) and K_vt = K̂(X*, X) (m × n);
# 3. for each ε on a grid, predict μ(ε) = K_vt (K_tt + ε · tr(K_tt)/n · I)⁻¹ Y
#    and label each validation image by the largest entry of its row of μ;
# 4. report the validation accuracy: the paper keeps the best over the ε grid
#    `numpy.logspace(-7, 2, 20)`.
#
# This chapter runs each step on one real NAS-Bench-101 cell, then asks how
# good the Monte-Carlo estimate is: against an analytic kernel where one exists,
# and across random seeds where none does.

# %% tags=["parameters"]
architecture: str = "0774d3fe452f65c5ad438dfa0f6818a4"  # NB101 hash of the cell walked through (any hash of the table)
n_train: int = 100  # NNGP training images, class-balanced, from the official training split (10..4000)
n_val: int = 100  # NNGP validation images, disjoint from the training images (10..1000)
ensemble: int = 2  # ensemble number k of the walkthrough's kernel (1..spread_networks)
bn_momentum: float = 0.997  # momentum of the batch-norm pass: NAS-Bench-101's 0.997; 0 sets the batch statistics
data_seed: int = 0  # seed of the image selection
seed: int = 0  # seed of the first network; network i uses seed + i
heatmap_per_class: int = 6  # training images per class in the kernel heatmap (1..7: the chart stays under 5,000 cells)
spread_networks: int = 12  # networks drawn for the seed spread, split into disjoint ensembles (>= 2)
spread_ensembles: list[int] = [1, 2, 4]  # ensemble numbers k of the seed spread (each divides spread_networks at least twice)
convergence_widths: list[int] = [8, 32, 128]  # channels of the small conv net compared with neural-tangents
convergence_ensembles: list[int] = [1, 4, 16]  # ensemble numbers k of that comparison
convergence_seeds: int = 3  # independent estimates per (width, k); the error is their root-mean-square
convergence_images: int = 8  # images of the analytic kernel (its cost grows as images² x pixels²)
convergence_image_size: int = 16  # their side in pixels: 32 / 2**j, averaged down from CIFAR-10

# %% tags=["remove-cell"]
# Singular settings (-p ensemble 8), lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
import time

import altair as alt
import jax
import numpy as np
import pandas as pd

from nngp_lib import plotting
from nngp_lib.book import provenance_note, show, show_table
from nngp_lib.data import nb101_table
from nngp_lib.data.cifar10 import CLASS_NAMES, downsample, nngp_split
from nngp_lib.inference import DEFAULT_EPS, nngp_inference
from nngp_lib.kernels import ensemble_features, monte_carlo_nngp, nngp_from_features
from nngp_lib.networks import convnet
from nngp_lib.spaces.nb101 import ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nb101_net

if not 1 <= heatmap_per_class <= 7:
    raise ValueError(f"heatmap_per_class must be in 1..7 (altair embeds at most 5000 cells), got {heatmap_per_class}")
if not 1 <= ensemble <= spread_networks:
    raise ValueError(f"ensemble must be in 1..spread_networks={spread_networks}, got {ensemble}")
if any(spread_networks // k < 2 for k in spread_ensembles):
    raise ValueError(f"each of spread_ensembles={spread_ensembles} must fit twice into spread_networks={spread_networks}")
if 32 % convergence_image_size:
    raise ValueError(f"convergence_image_size must divide 32, got {convergence_image_size}")

plotting.enable_offline_renderer()
table = nb101_table.load_table()
matches = table.index[table["hash"] == architecture]
if len(matches) != 1:
    raise ValueError(f"architecture {architecture!r} is not a hash of the NB101 table: pick one from its 'hash' column")
row = table.loc[matches[0]]
spec = ModelSpec.from_json(row["adjacency"], row["ops"])
assert spec.hash() == architecture

# %% tags=["remove-input"]
show(
    provenance_note(
        1,
        "the NB101 table (one cell, walked through) and a small convolutional network",
        {"architecture": architecture, "n_train": n_train, "n_val": n_val, "ensemble": ensemble,
         "bn_momentum": bn_momentum, "data_seed": data_seed, "seed": seed, "spread_networks": spread_networks,
         "spread_ensembles": spread_ensembles, "convergence_widths": convergence_widths,
         "convergence_ensembles": convergence_ensembles, "convergence_seeds": convergence_seeds},
    )
)

# %% [markdown]
# ## The cell
#
# The cell's operations and adjacency matrix (row i → column j is an edge):

# %%
truth = table["val_acc_108"]
print("hash:", architecture)
print("ops: ", ", ".join(spec.ops))
show_table(pd.DataFrame(spec.matrix, index=spec.ops, columns=range(spec.num_vertices)))
print(f"forward GFLOPs per image: {spec.flops() / 1e9:.3f}; trainable parameters: {spec.num_params():,}")
print(f"validation accuracy after 108 epochs: {row['val_acc_108']:.4f} "
      f"(percentile {(truth < row['val_acc_108']).mean():.1%} of the table)")

# %% tags=["remove-input"]
show(
    f"""
    Its network (NAS-Bench-101's: a 128-channel stem, three stacks of three copies of the
    cell, max-pooling between stacks, global average pooling) has
    {spec.num_params() / 1e6:.2f} million parameters and needs {spec.flops() / 1e9:.2f} GFLOPs
    per image; {(table['trainable_parameters'] > row['trainable_parameters']).mean():.0%} of the
    table's networks are larger, which keeps this page's build to minutes on a CPU. Trained
    for 108 epochs it reached {row['val_acc_108']:.2%} validation accuracy, better than
    {(truth < row['val_acc_108']).mean():.0%} of the table (median {truth.median():.2%}).
    """
)

# %% [markdown]
# ## Step 0: the images
#
# `nngp_split` draws n training and m validation images from the official
# CIFAR-10 *training* split, class-balanced and disjoint, and standardizes them
# with the paper's channel means and deviations:

# %%
data = nngp_split(n_train, n_val, seed=data_seed)
counts = pd.DataFrame(
    {"training": np.bincount(data.y_train, minlength=10), "validation": np.bincount(data.y_val, minlength=10)},
    index=pd.Index(CLASS_NAMES, name="class"),
)
show_table(counts.T)
print(f"source: {data.source}; disjoint: {np.intersect1d(data.train_indices, data.val_indices).size == 0}")
print(f"pixel mean {data.x_train.mean():.3f}, standard deviation {data.x_train.std():.3f}")

# %% [markdown]
# ## Step 1: one network, its batch-norm pass and its features
#
# A network is a pair of pure functions (`nngp_lib.spaces.nb101.jax_network.network`):
# `init(key)` draws the parameters as TensorFlow 1 did for NAS-Bench-101
# (variance-scaling convolution kernels, batch-norm scale 1 and offset 0, moving
# mean 0 and variance 1), and `features(variables, images, train=...)` returns the
# 512 penultimate features. The paper sets the batch-norm moving statistics with
# one training-mode pass over a batch of training images (its Appendix A): each
# moving statistic moves a fraction 1 − momentum of the way towards the batch's.
# For one random network:

# %%
network = nb101_net.network(spec)
bn_batch = min(n_train, 100)  # monte_carlo_nngp's default batch-norm pass
variables = network.init(jax.random.PRNGKey(seed))
_, moved = network.features(variables, data.x_train[:bn_batch], train=True, bn_momentum=bn_momentum)
_, batch_only = network.features(variables, data.x_train[:bn_batch], train=True, bn_momentum=0.0)


def statistics(tree: dict, name: str) -> np.ndarray:
    """Every channel's moving ``name`` ('mean' or 'var') over all batch-norm layers."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return np.concatenate([np.asarray(leaf) for path, leaf in leaves if path[-1].key == name])


bn_summary = pd.DataFrame(
    {
        f"after the pass (momentum {bn_momentum})": [
            np.abs(statistics(moved, "mean")).max(), np.abs(statistics(moved, "var") - 1).max()],
        "the batch's own statistics": [
            np.abs(statistics(batch_only, "mean")).max(), np.abs(statistics(batch_only, "var") - 1).max()],
    },
    index=["largest |moving mean|", "largest |moving variance - 1|"],
)
print(f"{statistics(moved, 'mean').size:,} batch-norm channels in {network.feature_dim}-feature network")
show_table(bn_summary.round(3))

variables = {**variables, "batch_stats": moved}
features, _ = network.features(variables, data.x_train, train=False)
features = np.asarray(features, dtype=np.float64)
print(f"features: {features.shape}, all >= 0: {(features >= 0).all()}, mean {features.mean():.2e}")

# %% tags=["remove-input"]
show(
    f"""
    The batch's own means and variances stray far from 0 and 1 (by up to
    {bn_summary.iloc[0, 1]:.2f} and {bn_summary.iloc[1, 1]:.2f}), but the pass with
    momentum {bn_momentum} moves the moving statistics only {1 - bn_momentum:.1%} of the way
    there: they stay within {bn_summary.iloc[0, 0]:.3f} and {bn_summary.iloc[1, 0]:.3f} of
    their initial 0 and 1, so inference-mode features are computed almost as if batch norm
    were the identity. The features are averages of
    ReLU outputs, hence non-negative: every image's feature vector shares a large common
    direction, which will dominate the kernel.
    """
)

# %% [markdown]
# ## Step 2: the kernel
#
# `nngp_lib.kernels.ensemble_features` repeats step 1 for k networks (network i
# drawn from `seed` and i, its batch-norm pass on a random batch of training
# images) and returns their features, (k, n, 512) and (k, m, 512);
# `nngp_from_features` averages the feature products into K_tt and K_vt, eq. 1.
# (`monte_carlo_nngp` does both.) Network i does not depend on k, so the first
# k networks of a larger ensemble are the ensemble of k: we draw
# `spread_networks` networks once, use the first k for the walkthrough, and all
# of them for the convergence study at the end.

# %% tags=["hide-input"]
start = time.perf_counter()
f_train, f_val = ensemble_features(
    network, data.x_train, data.x_val, ensemble=spread_networks, seed=seed, bn_momentum=bn_momentum
)
kernel_seconds = time.perf_counter() - start


def ensemble_kernel(networks: slice) -> tuple[np.ndarray, np.ndarray]:
    """K_tt and K_vt of the ensemble of the selected networks."""
    return nngp_from_features(f_train[networks], f_val[networks])


k_tt, k_vt = ensemble_kernel(slice(0, ensemble))

# %% tags=["remove-input"]
# NBVAL_IGNORE_OUTPUT
show(
    f"""
    The features of the {spread_networks} networks took {kernel_seconds:.0f} s on this
    machine ({kernel_seconds / spread_networks:.1f} s per network for {bn_batch} +
    {n_train + n_val} images).
    """
)

# %%
eigenvalues = np.linalg.eigvalsh(k_tt)[::-1]
normalized = k_tt / np.sqrt(np.outer(np.diag(k_tt), np.diag(k_tt)))
off_diagonal = normalized[np.triu_indices(n_train, 1)]
print(f"K_tt: {k_tt.shape}, K_vt: {k_vt.shape}, k = {ensemble}")
print(f"largest eigenvalue / trace: {eigenvalues[0] / eigenvalues.sum():.3f}")
print(f"K(x, x') / sqrt(K(x, x) K(x', x')) over pairs: min {off_diagonal.min():.3f}, "
      f"median {np.median(off_diagonal):.3f}")

# %% tags=["remove-input"]
show(
    f"""
    The largest eigenvalue of K_tt, the direction that the non-negative features of all
    images share, carries {eigenvalues[0] / eigenvalues.sum():.1%} of its trace, and the
    normalized kernel is at least {off_diagonal.min():.2f} for every pair of images. What
    tells classes apart is the small remainder. The heatmap shows it: the kernel after
    removing the component shared by all training images (double centering,
    K_c = H K_tt H with H = I − 11ᵀ/n, which subtracts the mean feature vector), normalized
    to a unit diagonal, for the first {heatmap_per_class} training images of each class,
    sorted by class (left), and its mean over all pairs of training images of two classes
    (right; pairs of an image with itself left out, on a narrower colour scale).
    """
)

# %% tags=["hide-input"]
centering = np.eye(n_train) - 1.0 / n_train
centered = centering @ k_tt @ centering
scale = np.sqrt(np.diag(centered))
centered = centered / np.outer(scale, scale)
same_class = data.y_train[:, None] == data.y_train[None, :]
pairs = ~np.eye(n_train, dtype=bool)

shown = np.concatenate([np.flatnonzero(data.y_train == c)[:heatmap_per_class] for c in range(10)])
cells = pd.DataFrame(
    [
        {"row": r, "column": c, "value": round(float(centered[i, j]), 3),
         "row class": CLASS_NAMES[data.y_train[i]], "column class": CLASS_NAMES[data.y_train[j]]}
        for r, i in enumerate(shown)
        for c, j in enumerate(shown)
    ]
)

# The mean of the centered kernel over the pairs of images of two classes (self-pairs left out;
# within a block every row has as many pairs, so the mean of row means is the block's mean).
by_class = pd.DataFrame(np.where(pairs, centered, np.nan), index=data.y_train, columns=data.y_train)
block_means = by_class.T.groupby(level=0).mean().T.groupby(level=0).mean()
class_means = (
    block_means.rename(index=dict(enumerate(CLASS_NAMES)), columns=dict(enumerate(CLASS_NAMES)))
    .rename_axis(index="row class", columns="column class")
    .stack()
    .round(3)
    .reset_index(name="value")
)

# %%
print(f"centered, normalized kernel: mean over same-class pairs {centered[same_class & pairs].mean():.3f}, "
      f"over different-class pairs {centered[~same_class].mean():.3f}")

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
color = alt.Color("value:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True), title="kernel",
                  legend=alt.Legend(orient="bottom"))
images_map = alt.Chart(cells).mark_rect().encode(
    x=alt.X("column:O", axis=None),
    y=alt.Y("row:O", axis=None),
    color=color,
    tooltip=["row class:N", "column class:N", "value:Q"],
).properties(width=250, height=250, title=f"{heatmap_per_class} training images per class, k = {ensemble}")
classes_map = alt.Chart(class_means).mark_rect().encode(
    x=alt.X("column class:N", sort=list(CLASS_NAMES), title=None),
    y=alt.Y("row class:N", sort=list(CLASS_NAMES), title=None),
    color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", domain=[-0.3, 0.3], reverse=True, clamp=True),
                    title="class mean", legend=alt.Legend(orient="bottom")),
    tooltip=["row class:N", "column class:N", "value:Q"],
).properties(width=170, height=170, title="mean over pairs of two classes")
alt.hconcat(images_map, classes_map).resolve_scale(color="independent").properties(
    title="Double-centered, normalized K_tt sorted by class"
)

# %% [markdown]
# ## Step 3: the ε sweep
#
# `nngp_lib.inference.nngp_inference` evaluates the posterior mean for the 20
# regularizers ε of the paper's grid from one eigendecomposition of K_tt. Next
# to the validation accuracy it computes, for each ε, the exact leave-one-out
# accuracy on the training images, which chooses ε without looking at the
# validation labels.

# %%
result = nngp_inference(k_tt, k_vt, data.y_train, data.y_val)
sweep = pd.DataFrame({"eps": result.eps, "validation accuracy": result.accuracy,
                      "leave-one-out accuracy": result.loo_accuracy})
show_table(sweep, index=False, formatters={"eps": "{:.2e}".format}, float_format="{:.3f}".format)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
long = sweep.melt("eps", var_name="accuracy of", value_name="accuracy").dropna()
choices = pd.DataFrame({"eps": [result.best_eps, result.loo_eps],
                        "choice": ["best on validation (paper)", "best leave-one-out"]})
curves = alt.Chart(long).mark_line(point=True).encode(
    x=alt.X("eps:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format=".0e"), title="ε (relative regularizer)"),
    y=alt.Y("accuracy:Q", title="accuracy"),
    color=alt.Color("accuracy of:N", title=None),
    tooltip=[alt.Tooltip("eps:Q", format=".1e"), "accuracy of:N", alt.Tooltip("accuracy:Q", format=".3f")],
)
rules = alt.Chart(choices).mark_rule(strokeDash=[4, 4]).encode(
    x="eps:Q", color=alt.Color("choice:N", scale=alt.Scale(range=["black", "gray"]), title="chosen ε")
)
(curves + rules).resolve_scale(color="independent").properties(
    width=480, height=280, title="NNGP accuracy across the regularizer grid"
)

# %% [markdown]
# ## Step 4: the score

# %%
print(f"paper's score (best eps {result.best_eps:.1e}):     {result.best_accuracy:.3f}")
print(f"leave-one-out eps {result.loo_eps:.1e}, its accuracy: {result.loo_val_accuracy:.3f}")
print(f"failed eps (numerically singular): {int(result.failed.sum())} of {len(DEFAULT_EPS)}")

# %% tags=["remove-input"]
chance = 1 / 10
gap = result.best_accuracy - result.loo_val_accuracy
if gap > 0:
    selection = f"{100 * gap:.1f} points lower"
else:
    selection = "the same accuracy here"
show(
    f"""
    With {n_train} training images and k = {ensemble} networks, the cell's NNGP validation
    accuracy on {n_val} images is {result.best_accuracy:.1%} at the best ε
    ({result.best_eps:.1e}), {result.best_accuracy / chance:.1f} times chance. Choosing ε by
    leave-one-out on the training images instead gives ε = {result.loo_eps:.1e} and
    {result.loo_val_accuracy:.1%}, {selection}. The paper's number is a maximum over 20
    accuracies of the same {n_val} validation images, so it is biased upwards on average;
    the leave-one-out choice never looks at the validation labels. With {n_val} validation
    images one accuracy has a binomial standard error of about
    {np.sqrt(result.best_accuracy * (1 - result.best_accuracy) / n_val):.1%}. The score is
    not a prediction of the trained network's {row['val_acc_108']:.1%}: only its *ranking*
    among architectures matters, which the following chapters test. In the library all of
    this is one call, `nngp_lib.scoring.score_spec`.
    """
)

# %% [markdown]
# ## How good is the Monte-Carlo kernel?
#
# ### Against the analytic kernel
#
# Where an analytic NNGP kernel exists, the estimate can be checked directly.
# neural-tangents computes it exactly for networks built from its `stax`
# layers. We take a small network that both implementations can build
# (`nngp_lib.networks.convnet`):
# conv3x3 → ReLU → conv3x3 → ReLU → global average pooling, without bias,
# batch norm or max-pooling, with Gaussian weights of variance 1/fan-in (the
# standard parameterization), on a few CIFAR-10 images averaged down to a
# smaller size. The Monte-Carlo estimate averages over k networks and, inside
# each, over its `width` features, so its relative error should fall as
# 1/√(width · k), down to a bias of order 1/width that no ensemble removes
# (the finite network's kernel is not the infinite one's).

# %% tags=["hide-input"]
small = downsample(data.x_train[:convergence_images], 32 // convergence_image_size)
exact = convnet.analytic_nngp(small)

errors = []
for width in convergence_widths:
    net = convnet.network(width)
    for k in convergence_ensembles:
        relative = [
            np.linalg.norm(monte_carlo_nngp(net, small, small[:1], ensemble=k, seed=s, bn_batch=0)[0] - exact)
            / np.linalg.norm(exact)
            for s in range(convergence_seeds)
        ]
        errors.append({"width": width, "k": k, "width x k": width * k,
                       "relative error": float(np.sqrt(np.mean(np.square(relative))))})
errors = pd.DataFrame(errors)
slope, intercept = np.polyfit(np.log(errors["width x k"]), np.log(errors["relative error"]), 1)
widest = errors[errors["width"] == max(convergence_widths)]
widest_slope = np.polyfit(np.log(widest["width x k"]), np.log(widest["relative error"]), 1)[0]

# %%
show_table(errors.pivot(index="width", columns="k", values="relative error").round(3))
print(f"fitted log-log slope over all (width, k): {slope:.2f}; at width {max(convergence_widths)}: "
      f"{widest_slope:.2f}; Monte-Carlo rate: -0.5")

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
reference = pd.DataFrame({"width x k": [errors["width x k"].min(), errors["width x k"].max()]})
# The reference line has slope -1/2 and passes through the geometric mean of the points.
anchor = np.exp(np.mean(np.log(errors["relative error"]) + 0.5 * np.log(errors["width x k"])))
reference["relative error"] = anchor / np.sqrt(reference["width x k"])
points = alt.Chart(errors).mark_line(point=True).encode(
    x=alt.X("width x k:Q", scale=alt.Scale(type="log"), title="width × k (features averaged over)"),
    y=alt.Y("relative error:Q", scale=alt.Scale(type="log"), title="relative error of K̂ (Frobenius)"),
    color=alt.Color("width:O", title="width"),
    tooltip=["width:O", "k:Q", alt.Tooltip("relative error:Q", format=".3f")],
)
guide = alt.Chart(reference).mark_line(color="gray", strokeDash=[4, 4]).encode(x="width x k:Q", y="relative error:Q")
(guide + points).properties(width=440, height=320, title="Monte-Carlo NNGP against neural-tangents (dashed: 1/√(width·k))")

# %% tags=["remove-input"]
# Pairs with the same number of averaged features (width x k) but different widths:
# does the wider network, with fewer networks, give the smaller error?
same_product = errors.sort_values("width").groupby("width x k").filter(lambda g: len(g) > 1)
wider_wins = same_product.groupby("width x k")["relative error"].agg(lambda e: e.iloc[-1] < e.iloc[0])
best = errors.loc[errors["relative error"].idxmin()]
show(
    f"""
    Across {len(errors)} (width, k) pairs the relative error falls with slope {slope:.2f} in
    log-log, against -0.5 for pure Monte-Carlo noise; at width {max(convergence_widths)} the
    slope over k alone is {widest_slope:.2f}. The smallest error, {best['relative error']:.1%},
    comes from width {best['width']:.0f} and k = {best['k']:.0f}. Among the
    {len(wider_wins)} products width × k reached by several widths, the widest network
    (with the fewest networks) has the smaller error in {int(wider_wins.sum())}.
    {"Averaging over networks removes noise, but only width removes the finite-width bias."
     if wider_wins.all() else
     "With this few seeds the finite-width bias is not resolved from the noise."}
    """
)

# %% [markdown]
# ### Across seeds, for the NAS-Bench-101 cell
#
# The cell's batch norm and max-pooling have no analytic kernel to compare with,
# but the noise of the estimate shows in the kernel and in the score. The
# `spread_networks` networks of step 2 split into disjoint ensembles of k
# networks each: independent estimates of the same kernel, with the same
# images. We compare their kernels in the form that matters for classes, the
# double-centered K_tt divided by its trace (so that neither the common
# component nor the overall scale, which varies a lot between networks and
# which the relative ε absorbs, counts), by the relative Frobenius difference
# averaged over all pairs of ensembles; and we score each ensemble.

# %% tags=["hide-input"]


def class_structure(kernel: np.ndarray) -> np.ndarray:
    """The double-centered kernel H K H divided by its trace."""
    centered = centering @ kernel @ centering
    return centered / np.trace(centered)


spread, differences = [], []
for k in spread_ensembles:
    groups = [slice(g * k, (g + 1) * k) for g in range(spread_networks // k)]
    group_kernels = [ensemble_kernel(group) for group in groups]
    structures = [class_structure(tt) for tt, _ in group_kernels]
    differences.extend(
        {"k": k, "kernel difference": np.linalg.norm(a - b) / np.linalg.norm(b)}
        for i, a in enumerate(structures) for b in structures[i + 1:]
    )
    for g, (tt, vt) in enumerate(group_kernels):
        scored = nngp_inference(tt, vt, data.y_train, data.y_val)
        spread.append({"k": k, "ensemble": g, "best eps": scored.best_accuracy,
                       "leave-one-out eps": scored.loo_val_accuracy})
spread = pd.DataFrame(spread)
summary = spread.groupby("k").agg(
    ensembles=("ensemble", "size"),
    mean_best=("best eps", "mean"), sd_best=("best eps", "std"),
    mean_loo=("leave-one-out eps", "mean"), sd_loo=("leave-one-out eps", "std"),
).join(pd.DataFrame(differences).groupby("k")["kernel difference"].mean())

# %%
print("NNGP accuracy over disjoint ensembles of k networks (mean and standard deviation), and the")
print("relative difference between the centered, trace-normalized K_tt of two ensembles (mean over pairs):")
show_table(summary.round(3))

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
alt.Chart(spread.melt(["k", "ensemble"], ["best eps", "leave-one-out eps"], "eps chosen by", "accuracy")).mark_circle(
    size=60, opacity=0.7
).encode(
    x=alt.X("k:O", title="ensemble number k"),
    y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False), title="NNGP validation accuracy"),
    color=alt.Color("eps chosen by:N"),
    xOffset="eps chosen by:N",
    tooltip=["k:O", "ensemble:Q", "eps chosen by:N", alt.Tooltip("accuracy:Q", format=".3f")],
).properties(width=360, height=280, title="The cell's score across independent ensembles")

# %% [markdown]
# Eq. 1 averages the networks' kernels with equal weights, but the networks do
# not contribute equally: with batch norm left near the identity, the scale of
# the features is a product of random gains through some twenty layers and
# varies widely from one network to the next. The scale of each network's
# kernel, tr(K_tt)/n relative to the mean over the networks, and the effective
# number of networks of the whole set, (Σ sᵢ)² / Σ sᵢ² for scales sᵢ (Kish's
# effective sample size of a weighted mean):

# %%
scales = np.square(f_train).sum(axis=2).mean(axis=1) / f_train.shape[2]  # tr(K_tt) / n of each network
print("relative scales:", " ".join(f"{v:.2f}" for v in scales / scales.mean()))
print(f"effective number of networks: {scales.sum() ** 2 / (scales ** 2).sum():.1f} of {spread_networks}")

# %% tags=["remove-input"]
k_small, k_large = min(spread_ensembles), max(spread_ensembles)
shrink = summary.loc[k_small, "kernel difference"] / summary.loc[k_large, "kernel difference"]
effective = scales.sum() ** 2 / (scales ** 2).sum()
binomial_se = np.sqrt(summary.loc[k_small, "mean_best"] * (1 - summary.loc[k_small, "mean_best"]) / n_val)
if shrink < np.sqrt(k_large / k_small):
    consequence = ", which slows the convergence in k"
else:
    consequence = ", yet the difference shrinks as fast as Monte-Carlo noise predicts"
show(
    f"""
    Two independent {k_small}-network kernels of this cell differ by
    {summary.loc[k_small, 'kernel difference']:.1%}, two {k_large}-network kernels by
    {summary.loc[k_large, 'kernel difference']:.1%}: a factor {shrink:.1f}, where pure
    Monte-Carlo noise with equally weighted networks predicts
    √({k_large}/{k_small}) = {np.sqrt(k_large / k_small):.1f}. The networks' kernel scales span
    a factor {scales.max() / scales.min():.0f}, so an ensemble's kernel is dominated by its
    largest-scale networks: the {spread_networks} networks together count as
    {effective:.1f} equally weighted ones{consequence}.

    The paper's score averages {summary.loc[k_small, 'mean_best']:.1%} over the
    {int(summary.loc[k_small, 'ensembles'])} ensembles of k = {k_small} and
    {summary.loc[k_large, 'mean_best']:.1%} over the {int(summary.loc[k_large, 'ensembles'])}
    of k = {k_large}, with standard deviations of {summary.loc[k_small, 'sd_best']:.1%} and
    {summary.loc[k_large, 'sd_best']:.1%} (rough estimates from so few ensembles), next to a
    binomial standard error of {binomial_se:.1%} for one accuracy on {n_val} validation
    images. When architectures are ranked, both kinds of noise blur the ranking, and both
    shrink only with more networks and more images: that is what the costlier settings of the paper buy.
    """
)
