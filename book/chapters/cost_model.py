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
# # What a score costs
#
# The paper's central economic claim is that an NNGP validation accuracy costs
# far fewer floating-point operations than the shortened trainings it competes
# with. Its cost axis is a **model**, not a measurement: it counts the FLOPs of
# the forward passes and matrix algebra of Algorithm 1 (its eq. 4, detailed as
# S1 and S2 in its Appendix B) and of training for E epochs (its eq. 5 = S4),
# and plots both for the architecture of average FLOPs. `nngp_lib.cost`
# implements these counts, with the paper's symbols:
#
# * kernel (S1): k (n + m) F + 2 k d n (n + m), where F is the forward FLOPs of
#   one image, k the ensemble number, n and m the NNGP training and validation
#   set sizes and d = 512 the feature dimension;
# * inference (S2): L (n³/3 + 2 n² C + 2 n m C), one Cholesky solve for each of
#   the L = 20 regularizers, C = 10 classes;
# * training (S4): 3 F E n_all + F m_all, E epochs on all 40,000 training images
#   (a training step costs about three forward passes, the paper's Fig. S2) and
#   one pass over the 10,000 validation images.
#
# This chapter evaluates the model for the average NAS-Bench-101 architecture,
# then checks it against wall time on the machine that built this page, and
# ends with cheaper estimates (narrower networks, smaller images): what they
# save, and, from scoring runs of a few hundred architectures, what they cost
# in ranking quality.

# %% tags=["parameters"]
result_name: str = "nb101_nngp"  # cached scoring run (nngp_lib.results) whose settings and timings are costed if present
flops_sample: int = 3000  # table rows whose mean forward FLOPs make "the average architecture" (100..30001)
ensembles: list[int] = [1, 2, 4, 8]  # NNGP ensemble numbers k to cost (each >= 1)
n_trains: list[int] = [100, 1000, 8000]  # NNGP training-set sizes n to cost (each >= 10)
n_vals: list[int] = [1000]  # NNGP validation-set sizes m to cost (each >= 10)
epochs: list[int] = [4, 12, 36, 108]  # training budgets to cost (NAS-Bench-101 trained 4, 12, 36 and 108 epochs)
timing_architectures: int = 4  # architectures whose kernels are timed, at evenly spaced FLOP quantiles (2..12)
timing_n_train: int = 16  # NNGP training images of each timed kernel (10..1000; it also sizes the batch-norm pass)
timing_n_val: int = 16  # NNGP validation images of each timed kernel (10..1000)
timing_ensemble: int = 1  # networks per timed kernel (1..8)
inference_sizes: list[int] = [250, 500, 1000, 1500]  # n of the timed eps sweeps (each 10..8000)
bench_result: str = "bench_nngp"  # result of benchmarks/bench_nngp.py, shown if it exists
cheap_results: list[str] = ["nb101_nngp_k1_w1", "nb101_nngp_k1", "nb101_nngp_k1_w025", "nb101_nngp_k1_px2"]  # scoring runs of one seeded sample, one per estimate; the first is the reference
cheap_estimates: list = [[1.0, 1], [0.5, 1], [0.25, 1], [0.5, 2]]  # (width multiplier, downsample factor) of each run above
cheap_setting: list[int] = [1, 100, 100]  # ensemble k, n_train and n_val compared in every run
cheap_architectures: int = 12  # architectures of the seeded sample scored for a run that is not cached (5..30001)
recompute: bool = False  # score the cheap-estimate runs into results/ even if cached (full scale: -p cheap_architectures 200)
num_resamples: int = 1000  # bootstrap resamples of the architectures for the intervals (0: none)
seed: int = 0  # seed of the table sample, the images and the networks

# %% tags=["remove-cell"]
# Singular settings (-p ensemble 8), lists given as strings, unknown names: see nngp_lib.book.
from nngp_lib.book import check_parameters

check_parameters(globals())

# %% tags=["hide-input"]
import time

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import display
from scipy import optimize, stats

from nngp_lib import analysis, cost, plotting, results, scoring
from nngp_lib.book import cached_or_computed, provenance_note, show, show_table
from nngp_lib.data import nb101_table
from nngp_lib.data.cifar10 import downsample, nngp_split
from nngp_lib.inference import nngp_inference
from nngp_lib.kernels import monte_carlo_nngp
from nngp_lib.metrics import kendall_tau, pearson
from nngp_lib.spaces.nb101 import jax_network as nb101_net
from nngp_lib.spaces.nb101 import specs_from_table

if not 2 <= timing_architectures <= 12:
    raise ValueError(f"timing_architectures must be in 2..12, got {timing_architectures}")
if len(cheap_results) != len(cheap_estimates) or len(cheap_results) < 2:
    raise ValueError("cheap_results and cheap_estimates need the same length, at least 2: one (width, factor) per run")
if len(cheap_setting) != 3 or any(len(estimate) != 2 for estimate in cheap_estimates):
    raise ValueError("cheap_setting is [k, n_train, n_val] and each of cheap_estimates [width, downsample factor]")
if cheap_architectures < 5:
    raise ValueError(f"cheap_architectures must be at least 5, got {cheap_architectures}")
if not 100 <= flops_sample:
    raise ValueError(f"flops_sample must be at least 100, got {flops_sample}")

plotting.enable_offline_renderer()
table = nb101_table.load_table()
sample = table.sample(n=min(flops_sample, len(table)), random_state=seed).reset_index(drop=True)
specs = specs_from_table(sample)
flops = np.array([spec.flops() for spec in specs], dtype=np.float64)
mean_flops = flops.mean()
GIGA = 1e9

# %% tags=["remove-input"]
show(
    provenance_note(
        len(sample),
        f"a random sample (seed {seed}) of the NB101 table",
        {"ensembles": ensembles, "n_trains": n_trains, "n_vals": n_vals, "epochs": epochs,
         "timing_architectures": timing_architectures, "timing_n_train": timing_n_train,
         "timing_n_val": timing_n_val, "timing_ensemble": timing_ensemble},
    )
)
show(
    f"""
    The networks of the {len(sample):,} sampled cells need between
    {flops.min() / GIGA:.2f} and {flops.max() / GIGA:.1f} GFLOPs to classify one
    32x32 image (a multiply-add counts two); their mean, F = {mean_flops / GIGA:.2f} GFLOPs
    (standard error {flops.std(ddof=1) / np.sqrt(len(flops)) / GIGA:.2f}), stands for
    "the average architecture" below, as in the paper's cost axes. The median,
    {np.median(flops) / GIGA:.2f} GFLOPs, sits well below the mean: a few wide cells
    are expensive.
    """
)

# %% [markdown]
# ## The model: NNGP inference against training
#
# The cost of one NNGP accuracy and of one shortened training, in PFLOPs
# (10¹⁵ FLOPs), for the average architecture. The kernel and inference columns
# are the two terms of eq. 4; training costs the same architecture's budget of
# epochs.

# %%
grid = pd.MultiIndex.from_product([ensembles, n_trains, n_vals], names=["k", "n", "m"]).to_frame(index=False)
grid["kernel PFLOPs"] = cost.to_pflops(cost.nngp_kernel_flops(mean_flops, grid["n"], grid["m"], grid["k"]))
grid["inference PFLOPs"] = cost.to_pflops(cost.nngp_inference_flops(grid["n"], grid["m"]))
grid["NNGP PFLOPs"] = grid["kernel PFLOPs"] + grid["inference PFLOPs"]
training = pd.DataFrame({"epochs": epochs, "training PFLOPs": cost.to_pflops(cost.training_flops(mean_flops, epochs))})
show_table(grid, index=False, float_format=lambda v: f"{v:.3g}")
print()
show_table(training, index=False, float_format=lambda v: f"{v:.3g}")

# %% tags=["remove-input"]
cheapest = grid.loc[grid["NNGP PFLOPs"].idxmin()].to_dict()
dearest = grid.loc[grid["NNGP PFLOPs"].idxmax()].to_dict()
train_cost = training.set_index("epochs")["training PFLOPs"]
shortest = int(min(epochs))


def setting_name(row: dict) -> str:
    return f"k = {row['k']:.0f}, n = {row['n']:,.0f}, m = {row['m']:,.0f}"


def crossover_n(k: int, m: int) -> float:
    """The n at which the inference term of eq. 4 catches up with the kernel term."""

    def gap(n: float) -> float:
        return float(cost.nngp_inference_flops(n, m) - cost.nngp_kernel_flops(mean_flops, n, m, k))

    return optimize.brentq(gap, 1.0, 1e7)


k_low, m_low, n_high = min(ensembles), min(n_vals), max(n_trains)
at_n_high = grid[(grid["k"] == k_low) & (grid["m"] == m_low) & (grid["n"] == n_high)].iloc[0]
show(
    f"""
    At the cheapest setting of the grid ({setting_name(cheapest)}) an NNGP accuracy costs
    {cheapest['NNGP PFLOPs']:.3g} PFLOPs, {train_cost[shortest] / cheapest['NNGP PFLOPs']:,.0f}
    times less than {shortest} epochs of training ({train_cost[shortest]:.3g} PFLOPs); at the
    dearest ({setting_name(dearest)}) it costs {dearest['NNGP PFLOPs']:.3g} PFLOPs,
    {dearest['NNGP PFLOPs'] / train_cost[shortest]:.2g} times the {shortest}-epoch training.
    The kernel term grows linearly in k and in n + m, the inference term as n³. With
    k = {k_low} and m = {m_low:,}, inference is
    {at_n_high['inference PFLOPs'] / at_n_high['NNGP PFLOPs']:.0%} of the cost at
    n = {n_high:,} and overtakes the forward passes from n ≈ {crossover_n(k_low, m_low):,.0f}
    on; the paper caps n at 8,000 "to keep the inference cost reasonable".
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
bars = pd.concat(
    [
        pd.DataFrame({
            "proxy": [f"NNGP k={r.k} n={r.n} m={r.m}" for r in grid.itertuples()],
            "PFLOPs": grid["NNGP PFLOPs"], "kind": "NNGP",
        }),
        pd.DataFrame({
            "proxy": [f"train {e} epochs" for e in training["epochs"]],
            "PFLOPs": training["training PFLOPs"], "kind": "training",
        }),
    ],
    ignore_index=True,
)
# A dot plot: bars have no baseline on a logarithmic axis.
alt.Chart(bars).mark_circle(size=90, opacity=1).encode(
    x=alt.X("PFLOPs:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~g"),
            title="PFLOPs per score (average architecture)"),
    y=alt.Y("proxy:N", sort=None, title=None),
    color=alt.Color("kind:N", title=None, legend=alt.Legend(orient="bottom")),
    tooltip=["proxy:N", alt.Tooltip("PFLOPs:Q", format=".3g")],
).properties(width=360, title="The FLOP model: one NNGP score against shortened training")

# %% [markdown]
# Our inference does not solve one Cholesky system per regularizer: it
# diagonalizes K_tt once and evaluates all 20 regularizers from the
# eigendecomposition (`nngp_lib.inference`). Its count (`solver="eigh"`) against
# the paper's:

# %%
solvers = pd.DataFrame(
    {
        "n": n_trains,
        "Cholesky x 20 (paper) PFLOPs": cost.to_pflops(cost.nngp_inference_flops(np.array(n_trains), max(n_vals))),
        "one eigh PFLOPs": cost.to_pflops(cost.nngp_inference_flops(np.array(n_trains), max(n_vals), solver="eigh")),
    }
)
print(f"m = {max(n_vals)}")
show_table(solvers, index=False, float_format=lambda v: f"{v:.3g}")

# %% [markdown]
# ## The model against the clock
#
# FLOPs are a proxy for time only if the hardware runs every network at a
# similar rate. To check, we time the kernel computation
# (`nngp_lib.kernels.monte_carlo_nngp`: one batch-norm pass and the features of
# the n + m images, for k networks) of architectures spread over the FLOP range,
# each run twice with different network seeds: the first run also compiles the
# network's layers (JAX compiles each layer shape once per process), the second
# measures the computation alone. The model of each run is eq. S1 with the
# batch-norm pass counted (`bn_batch`). The same runs also time two cheaper
# estimates of the same kernel, discussed in the last section: networks of half
# the width (a stem of 64 instead of 128 channels, so 256 features) and images
# averaged down to 16x16 pixels.

# %% tags=["hide-input"]
quantiles = np.linspace(0.1, 0.9, timing_architectures)
order = np.argsort(flops, kind="stable")
timed = list(dict.fromkeys(int(order[round(q * (len(order) - 1))]) for q in quantiles))
data = nngp_split(timing_n_train, timing_n_val, seed=seed)
bn_batch = min(timing_n_train, 100)  # monte_carlo_nngp's default batch-norm pass


VARIANTS = {  # name -> (network arguments, training images, validation images)
    "full": ({}, data.x_train, data.x_val),
    "half width": ({"stem_channels": scoring.stem_channels(0.5)}, data.x_train, data.x_val),
    "16x16 images": ({}, downsample(data.x_train, 2), downsample(data.x_val, 2)),  # Setting(downsample_factor=2)
}

labels = {position: sample["hash"][position][:8] for position in timed}  # short hashes name the cells
timings, kernels_tt = [], {}
for position in timed:
    spec = specs[position]
    for variant, (network_args, x_train, x_val) in VARIANTS.items():
        network = nb101_net.network(spec, **network_args)
        height, width = x_train.shape[1:3]
        model = cost.nngp_kernel_flops(
            network.flops(height, width), timing_n_train, timing_n_val, timing_ensemble,
            feature_dim=network.feature_dim, bn_batch=bn_batch,
        )
        for run in range(2):
            start = time.perf_counter()
            k_tt, _ = monte_carlo_nngp(network, x_train, x_val, ensemble=timing_ensemble, seed=seed + run)
            seconds = time.perf_counter() - start
            kernels_tt[position, variant, run] = k_tt
            timings.append({
                "architecture": labels[position], "GFLOPs per image": flops[position] / GIGA, "variant": variant,
                "run": "first (compiles)" if run == 0 else "second", "model GFLOPs": float(model) / GIGA,
                "seconds": seconds,
            })
timings = pd.DataFrame(timings)
warm = timings[timings["run"] == "second"]
full_warm = warm[warm["variant"] == "full"]
fit = stats.linregress(full_warm["model GFLOPs"], full_warm["seconds"])
rate = 1.0 / fit.slope  # GFLOP/s

# %% [markdown]
# The model FLOPs of each timed kernel depend only on the architecture and the
# settings, so they are checked here (in GFLOPs):

# %%
show_table(timings.pivot_table(index="architecture", columns="variant", values="model GFLOPs", sort=False).round(2))

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
show_table(timings.pivot_table(index=["architecture", "run"], columns="variant", values="seconds", sort=False).round(2))

# %% tags=["remove-input"]
# NBVAL_IGNORE_OUTPUT
by_run = timings.pivot_table(index=["architecture", "variant"], columns="run", values="seconds")
compile_overhead = (by_run["first (compiles)"] - by_run["second"]).mean()
show(
    f"""
    On this machine the second runs of the full-width kernels follow the model with
    Pearson r = {fit.rvalue:.3f} over {len(full_warm)} architectures: the fitted line
    is {fit.intercept:+.2f} s + model FLOPs / ({rate:.1f} GFLOP/s), so the machine
    achieves about {rate:.0f} GFLOP/s on these networks. A first run takes
    {compile_overhead:.1f} s longer on average, mostly compilation, a cost paid once per
    layer shape and process that the FLOP model ignores (scoring many architectures in
    one process amortizes it: NB101 networks share a small set of layer shapes).
    """
)

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
line = pd.DataFrame({"model GFLOPs": [0.0, timings["model GFLOPs"].max()]})
line["seconds"] = fit.intercept + fit.slope * line["model GFLOPs"]
points = alt.Chart(timings).mark_point(filled=True, size=60).encode(
    x=alt.X("model GFLOPs:Q", title="model FLOPs of the kernel (eq. S1), GFLOPs"),
    y=alt.Y("seconds:Q", title="measured seconds"),
    color=alt.Color("variant:N", title="estimate"),
    shape=alt.Shape("run:N", title="run"),
    tooltip=["architecture:Q", "variant:N", "run:N", alt.Tooltip("GFLOPs per image:Q", format=".2f"),
             alt.Tooltip("model GFLOPs:Q", format=".1f"), alt.Tooltip("seconds:Q", format=".2f")],
)
fitted = alt.Chart(line).mark_line(color="gray", strokeDash=[4, 4]).encode(x="model GFLOPs:Q", y="seconds:Q")
(fitted + points).properties(width=480, height=320, title="Kernel wall time against the FLOP model")

# %% [markdown]
# The inference step is timed the same way: `nngp_inference` (without
# leave-one-out) on kernels of n training and n validation images, against the
# model's count for one eigendecomposition.

# %% tags=["hide-input"]
rng = np.random.default_rng(seed)
inference_timings = []
for n in [min(inference_sizes), *inference_sizes]:  # the first run warms up LAPACK and is dropped
    features = rng.standard_normal((2 * n, 2 * cost.NB101_FEATURE_DIM))
    kernel = features @ features[:n].T / features.shape[1]
    labels = rng.integers(0, 10, 2 * n)
    start = time.perf_counter()
    nngp_inference(kernel[:n], kernel[n:], labels[:n], labels[n:], leave_one_out=False)
    inference_timings.append({
        "n": n, "model GFLOPs": float(cost.nngp_inference_flops(n, n, solver="eigh")) / GIGA,
        "seconds": time.perf_counter() - start,
    })
inference_timings = pd.DataFrame(inference_timings[1:])
inference_timings["GFLOP/s"] = inference_timings["model GFLOPs"] / inference_timings["seconds"]

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
show_table(inference_timings.round(3), index=False)
largest = inference_timings.iloc[-1]
show(
    f"""
    At n = {largest['n']:,.0f} the eps sweep runs at {largest['GFLOP/s']:.1f} GFLOP/s of the
    model's count, against {rate:.1f} GFLOP/s for the forward passes above: converting the
    model's inference FLOPs to time at the forward-pass rate is
    {"optimistic" if largest['GFLOP/s'] < rate else "pessimistic"} by a factor
    {max(rate / largest['GFLOP/s'], largest['GFLOP/s'] / rate):.1f} on this machine.
    """
)

# %% [markdown]
# ## From FLOPs to hours
#
# Dividing the model by the measured rate turns the grid of the first section
# into wall time on this machine, per architecture and for the whole table and
# search space (this ignores compilation, and assumes the n³ inference runs at
# the rate of the forward passes, which the timing above tests):

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
hours = grid[["k", "n", "m"]].copy()
hours["seconds per architecture"] = grid["NNGP PFLOPs"] * 1e6 / rate
hours["days for the 30,001-row table"] = hours["seconds per architecture"] * len(table) / 86400
hours["days for all 423,624 cells"] = hours["seconds per architecture"] * 423_624 / 86400
show_table(hours, index=False, float_format=lambda v: f"{v:.3g}")

# %% [markdown]
# ## Runs recorded elsewhere
#
# The measurements above come from the machine that built this page. Two
# recorded results can add others: the cached full-scale scoring run (its
# `seconds` column times the feature computation of every architecture) and
# the throughput benchmark `benchmarks/bench_nngp.py`.

# %% tags=["hide-input"]
if results.exists(result_name):
    scored = results.read(result_name)
    show(f"Cached scoring run `{result_name}`: {scored.describe()}.")
    show(scored.record_markdown())
    runs = scored.table.merge(table[["hash", "adjacency", "ops"]], on="hash", how="left")
    networks = [
        nb101_net.network(spec, stem_channels=scoring.stem_channels(width))
        for spec, width in zip(specs_from_table(runs), runs["width_multiplier"])
    ]
    runs["model GFLOPs"] = cost.nngp_kernel_flops(
        [net.flops(32, 32) for net in networks], runs["n_train"], runs["n_val"], runs["ensemble"],
        feature_dim=[net.feature_dim for net in networks],
    ) / GIGA
    per_setting = runs.groupby(["ensemble", "n_train", "n_val", "width_multiplier"]).apply(
        lambda rows: pd.Series({
            "architectures": len(rows),
            "median seconds": rows["seconds"].median(),
            "achieved GFLOP/s": rows["model GFLOPs"].sum() / rows["seconds"].sum(),
        }),
        include_groups=False,
    )
    show_table(per_setting.round(2))
    device = scored.provenance.get("device", "unknown")
    show(
        f"""
        The cached run was computed on {device}. Its achieved rate divides the paper's
        eq. S1 by the recorded feature time, which also includes the batch-norm passes and
        any compilation that eq. S1 leaves out, so it understates the machine's speed. The
        run computes the features of each architecture once, for its largest setting, and
        apportions their time to the smaller settings by images × networks, which is why
        every setting shows nearly the same rate.
        """
    )
else:
    show(
        f"""
        No cached scoring run `{result_name}` exists in `{results.paths(result_name)[0].parent}`,
        so only this machine's timings appear on this page.
        """
    )
if results.exists(bench_result):
    bench = results.read(bench_result)
    summary = bench.provenance["summary"]
    if "best_conv_gflop_per_s" not in summary:
        raise ValueError(f"result {bench_result!r} predates the per-backend benchmark: rerun `make bench`")
    default = summary["default_backend"]
    per_backend = bench.table.groupby(["backend", "width"]).agg(
        architectures=("seconds", "size"), seconds_per_architecture=("seconds", "mean"),
        tflop=("tflop", "sum"), seconds=("seconds", "sum"), compilations=("compilations", "sum"),
    )
    per_backend["GFLOP/s end to end"] = 1e3 * per_backend["tflop"] / per_backend["seconds"]
    per_backend["of the best conv"] = per_backend["GFLOP/s end to end"] / summary["best_conv_gflop_per_s"]
    show(
        f"""
        Benchmark `{bench_result}`: {bench.describe()}. The best 3x3 convolution any installed
        backend reached on NB101's layer shapes was {summary['best_conv_gflop_per_s']:.0f} GFLOP/s
        ({summary['best_conv_method']}, {summary['best_conv_shape']}). At the colab's setting the
        default backend, {default}, scored an architecture in {summary['s_per_arch']:.1f} s on
        average at full width, {summary['speedup']:.1f} times faster than the JAX path
        ({summary['speedup_w050']:.1f} times at half width), end to end at
        {summary['vs_best_conv']:.2f} of the best convolution rate; neural-tangents'
        `monte_carlo_kernel_fn`, doing the same work on the first architecture, took
        {summary['vs_nt_mc']:.1f} times as long (its compilation included).
        """
    )
    display(per_backend.drop(columns=["tflop", "seconds"]).round(2))
    display(pd.DataFrame(bench.provenance["conv_rates"]).pivot_table(
        index=["width", "shape"], columns="method", values="gflop_per_s", sort=False).round(1))
else:
    show(
        f"""
        No benchmark result `{bench_result}` is stored in `{results.paths(bench_result)[0].parent}`:
        `make bench` (`benchmarks/bench_nngp.py`) records one, so this page quotes none.
        """
    )

# %% [markdown]
# ## Cheaper estimates
#
# The kernel term is linear in F, and F falls with the square of the width and
# with the number of pixels. Two cheaper estimates of an architecture's kernel
# follow: networks of half the width (every layer's channels halved, 256
# features), and images averaged down to 16x16 pixels (NB101 networks accept any
# image size; their feature maps then shrink from 32, 16, 8 to 16, 8, 4 pixels).
# Both cut F about fourfold. Their model cost for the average architecture, at
# the smallest ensemble number and validation size of the grid:

# %%
half_width = [nb101_net.network(spec, stem_channels=scoring.stem_channels(0.5)) for spec in specs]
estimates = {  # name -> (mean F, feature dimension d)
    "full": (mean_flops, cost.NB101_FEATURE_DIM),
    "half width": (np.mean([net.flops(32, 32) for net in half_width]), half_width[0].feature_dim),
    "16x16 images": (np.mean([nb101_net.network(spec).flops(16, 16) for spec in specs]), cost.NB101_FEATURE_DIM),
}
k_cheap, m_cheap = min(ensembles), min(n_vals)
cheap = pd.DataFrame({"n": n_trains})
for name, (f, d) in estimates.items():
    cheap[f"{name} PFLOPs"] = cost.to_pflops(cost.nngp_flops(f, cheap["n"], m_cheap, k_cheap, feature_dim=d))
print(f"k = {k_cheap}, m = {m_cheap}; mean F in GFLOPs: "
      + ", ".join(f"{name} {f / GIGA:.3f}" for name, (f, _) in estimates.items()))
show_table(cheap, index=False, float_format=lambda v: f"{v:.3g}")

# %% [markdown]
# A cheaper kernel is only useful if it ranks architectures as the full one
# does. The timed runs above allow a first, small check of the kernels
# themselves; the next section compares the rankings of scoring runs.
# We compare kernels by Pearson's r between the off-diagonal entries of their
# normalized forms K(x, x') / √(K(x, x) K(x', x')), first between the two runs
# of the same estimate (which differ only in their random networks: the
# agreement the Monte-Carlo noise leaves), then between each cheap estimate and
# the full-width kernel (the mean over the four pairs of runs).

# %% tags=["hide-input"]


def normalized_pairs(kernel: np.ndarray) -> np.ndarray:
    """Upper off-diagonal entries of K(x, x') / sqrt(K(x, x) K(x', x'))."""
    scale = np.sqrt(np.diag(kernel))
    return (kernel / np.outer(scale, scale))[np.triu_indices(len(kernel), 1)]


def agreement(position: int, variant: str, other: str) -> float:
    """Pearson's r between the normalized kernels of two estimates (two runs each)."""
    pairs = [(0, 1)] if variant == other else [(a, b) for a in range(2) for b in range(2)]
    return float(np.mean([
        pearson(normalized_pairs(kernels_tt[position, variant, a]), normalized_pairs(kernels_tt[position, other, b]))
        for a, b in pairs
    ]))


cheap_variants = [v for v in VARIANTS if v != "full"]
kernel_agreement = pd.DataFrame(
    {
        "GFLOPs per image": [flops[p] / GIGA for p in timed],
        **{f"{v}: two seeds": [agreement(p, v, v) for p in timed] for v in VARIANTS},
        **{f"{v} vs full": [agreement(p, v, "full") for p in timed] for v in cheap_variants},
    },
    index=pd.Index([labels[p] for p in timed], name="architecture"),
)
print(f"Pearson r of normalized kernels, {timing_n_train} training images, k = {timing_ensemble}")
show_table(kernel_agreement.round(3).T)

# %% tags=["remove-input"]
median_r = kernel_agreement.median()
noise = kernel_agreement["full: two seeds"]
outliers = [v for v in cheap_variants if median_r[f"{v} vs full"] < noise.min()]
if outliers:
    verdict = (
        f"The median agreement of {' and of '.join(outliers)} with the full kernel lies below every "
        "agreement of two full-width runs: a difference beyond Monte-Carlo noise."
    )
else:
    verdict = (
        "Neither cheap estimate's median agreement with the full kernel falls below the range "
        "of two full-width runs: at this scale, neither differs from the full kernel by more "
        "than the Monte-Carlo noise shows."
    )
show(
    f"""
    Medians over the {len(timed)} architectures: two full-width kernels agree at
    r = {median_r['full: two seeds']:.3f}, two half-width kernels at
    r = {median_r['half width: two seeds']:.3f} and two 16x16 kernels at
    r = {median_r['16x16 images: two seeds']:.3f}; a half-width kernel agrees with a
    full-width one at r = {median_r['half width vs full']:.3f} and a 16x16 kernel at
    r = {median_r['16x16 images vs full']:.3f}. The agreement of two full-width runs alone
    ranges from {noise.min():.3f} to {noise.max():.3f} across the architectures, so with
    {len(timed)} architectures, {timing_n_train} images and k = {timing_ensemble} only large
    effects show. {verdict} Whether a cheap estimate ranks architectures as well as the full
    one is a question for a scoring run at scale; a cheap estimate that is noisier per
    network needs more networks for the same precision, which eats into its saving.
    """
)

# %% tags=["remove-input"]
# NBVAL_IGNORE_OUTPUT
measured = warm.pivot_table(index="architecture", columns="variant", values="seconds")
modelled = warm.pivot_table(index="architecture", columns="variant", values="model GFLOPs")
show(
    f"""
    Measured on this machine, the cheap kernels of the second runs take
    {(measured['half width'] / measured['full']).median():.2f} (half width) and
    {(measured['16x16 images'] / measured['full']).median():.2f} (16x16 images) of the
    full kernel's time (medians over architectures), where the model predicts
    {(modelled['half width'] / modelled['full']).median():.2f} and
    {(modelled['16x16 images'] / modelled['full']).median():.2f}.
    """
)

# %% [markdown]
# ## Cheap estimates at scale
#
# The question that matters for search is whether a cheaper estimate *ranks*
# architectures as the full one does. Here the same seeded sample of the NB101
# table (`nngp-nas score-table --sample N --sample-seed 0`, whose first N rows do
# not depend on N) is scored once per estimate at one setting, and each estimate
# is compared with the 108-epoch truth and with the first (reference) estimate on
# the architectures every run scored. Cost is the paper's model (eq. S1 + S2,
# with each network's own F at its width and image size), in TFLOPs per
# architecture; the timing section above measures how far the clock follows it.
# (The runs' own `seconds` columns are not compared: they were recorded on a
# machine under different loads.)

# %% tags=["hide-input"]
scale_k, scale_n, scale_m = (int(v) for v in cheap_setting)
estimate_names = {
    (float(width), int(factor)): f"width {width:g}" + (f", {32 // int(factor)}x{32 // int(factor)} images" if factor != 1 else "")
    for width, factor in cheap_estimates
}
cheap_runs, cheap_cached, cheap_rows = {}, {}, []
for name, (width, factor) in zip(cheap_results, cheap_estimates):

    def compute(results_dir, name=name, width=width, factor=factor):
        return scoring.score_sample(
            name, cheap_architectures, ensembles=[scale_k], n_trains=[scale_n], n_vals=[scale_m], seed=seed,
            width_multiplier=width, downsample_factor=factor, results_dir=results_dir,
            command=f"book/chapters/cost_model.py ({name}: cheap_architectures={cheap_architectures}, "
                    f"cheap_setting={cheap_setting}, width {width:g}, downsample factor {factor}, seed={seed})",
        )

    run, cheap_cached[name] = cached_or_computed(name, compute, recompute=recompute)
    cheap_runs[name] = run
    rows = scoring.complete_settings(run.table)
    wanted = ((rows["ensemble"] == scale_k) & (rows["n_train"] == scale_n) & (rows["n_val"] == scale_m)
              & np.isclose(rows["width_multiplier"], width) & (rows["downsample_factor"] == factor))
    if not wanted.any():
        raise ValueError(
            f"result {name!r} has no rows at k={scale_k}, n={scale_n}, m={scale_m}, width {width:g}, downsample "
            f"factor {factor}: give its setting in cheap_setting and cheap_estimates, or another result name"
        )
    cheap_rows.append(rows[wanted])
cheap_proxies = analysis.proxy_scores(pd.concat(cheap_rows, ignore_index=True), table, epochs=(4, 12))
estimate_of = {
    label: estimate_names[float(row["width_multiplier"]), int(row["downsample_factor"])]
    if row["kind"] == analysis.NNGP else label
    for label, row in cheap_proxies.proxies.iterrows()
}
cheap_scores = cheap_proxies.scores.rename(columns=estimate_of)
reference = estimate_names[float(cheap_estimates[0][0]), int(cheap_estimates[0][1])]
nngp_estimates = list(estimate_names.values())
challengers = [e for e in nngp_estimates if e != reference]
common = table.set_index("hash").loc[cheap_scores.index]
cheap_specs = specs_from_table(common.reset_index())
widths = sorted({1.0, *(float(w) for w, _ in cheap_estimates)})
cheap_info = cheap_proxies.proxies.rename(index=estimate_of)
cheap_info["TFLOPs"] = 1e3 * analysis.proxy_costs(cheap_info, analysis.mean_network_flops(cheap_specs, widths))
cheap_table = analysis.correlation_table(cheap_scores, cheap_proxies.truth, num_resamples=num_resamples, seed=seed)
cheap_table.insert(0, "TFLOPs", cheap_info["TFLOPs"])
cheap_table["tau vs " + reference] = [
    kendall_tau(cheap_scores[column], cheap_scores[reference]) for column in cheap_table.index
]
cheap_table["mean accuracy"] = cheap_scores.mean()

# %% tags=["remove-input"]
show(
    provenance_note(
        len(cheap_scores),
        "the runs " + ", ".join(
            f"`{name}` ({'cached' if cheap_cached[name] else 'computed on this page'}, "
            f"{cheap_runs[name].table['hash'].nunique():,} architectures)" for name in cheap_results
        ) + ", restricted to the architectures all of them scored",
        {"ensemble": scale_k, "n_train": scale_n, "n_val": scale_m,
         "estimates (width, downsample factor)": cheap_estimates},
    )
)
for name in cheap_results:
    show(f"`{name}`: {cheap_runs[name].describe()}.")
    show(cheap_runs[name].record_markdown())

# %%
print(f"{len(cheap_scores)} architectures; k = {scale_k}, n = {scale_n}, m = {scale_m}; "
      f"Kendall tau-b and Pearson r against the 108-epoch truth")
show_table(cheap_table.round(3))

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
cheap_long = cheap_table.reset_index(names="estimate").assign(
    kind=lambda frame: np.where(frame["estimate"].isin(nngp_estimates), "NNGP", "training")
)
base = alt.Chart(cheap_long).encode(
    x=alt.X("TFLOPs:Q", scale=alt.Scale(type="log"), title="TFLOPs per architecture (log, paper's model)"),
    color=alt.Color("kind:N", title=None),
    tooltip=["estimate:N", alt.Tooltip("TFLOPs:Q", format=".3g"), alt.Tooltip("kendall_tau:Q", format=".3f"),
             alt.Tooltip("kendall_tau_low:Q", format=".3f"), alt.Tooltip("kendall_tau_high:Q", format=".3f")],
)
alt.layer(
    base.mark_rule().encode(y=alt.Y("kendall_tau_low:Q", title="Kendall tau-b vs 108 epochs"), y2="kendall_tau_high:Q"),
    base.mark_point(filled=True, size=70).encode(y="kendall_tau:Q"),
    base.mark_text(align="left", dx=7, fontSize=11).encode(y="kendall_tau:Q", text="estimate:N"),
).properties(width=460, height=260, title=f"Cheap estimates on {len(cheap_scores)} architectures (95% bootstrap intervals)")

# %% tags=["remove-input"]
comparisons = pd.DataFrame({
    estimate: analysis.paired_comparison(cheap_scores, cheap_proxies.truth, estimate, reference, num_resamples=max(num_resamples, 1),
                                         seed=seed)
    for estimate in challengers
}).T
ratios = cheap_table.loc[reference, "TFLOPs"] / cheap_table["TFLOPs"]
agreement_with_reference = cheap_table.loc[challengers, "tau vs " + reference]


def verdict(estimate: str) -> str:
    row = comparisons.loc[estimate]
    if row["low"] > 0:
        outcome = "ranks better than the reference"
    elif row["high"] < 0:
        outcome = "ranks worse than the reference"
    else:
        outcome = "is not distinguishable from the reference"
    return (
        f"{estimate} ({ratios[estimate]:.1f}x cheaper by the model) {outcome}: tau "
        f"{cheap_table.loc[estimate, 'kendall_tau']:.3f}, difference {row['difference']:+.3f} "
        f"[{row['low']:+.3f}, {row['high']:+.3f}], and its ranking agrees with the reference's at "
        f"tau {cheap_table.loc[estimate, 'tau vs ' + reference]:.3f}"
    )


show(
    f"""
    On these {len(cheap_scores)} architectures the reference, {reference}, reaches tau
    {cheap_table.loc[reference, 'kendall_tau']:.3f} [{cheap_table.loc[reference, 'kendall_tau_low']:.3f},
    {cheap_table.loc[reference, 'kendall_tau_high']:.3f}] against the 108-epoch truth, where 4-epoch
    training reaches {cheap_table.loc[analysis.training_label(4), 'kendall_tau']:.3f}. With paired bootstrap
    intervals of the tau differences: {"; ".join(verdict(e) for e in challengers)}.
    The estimates' rankings agree with the reference's only at tau
    {agreement_with_reference.min():.3f} to {agreement_with_reference.max():.3f}: at k = {scale_k}
    and n = {scale_n}, an architecture's score depends mostly on the one random network drawn,
    so estimates that differ only in width or image size rank architectures largely differently. A cheap estimate that ranks as well
    as the reference could be traded for a larger n or k at the same cost; the NB101 chapter
    shows how much tau grows with n.
    """
)
