"""Speed of Monte-Carlo NNGP scoring of NAS-Bench-101 networks on this machine.

    python -m benchmarks.bench_nngp            # 10 architectures per backend and width
    python -m benchmarks.bench_nngp --quick    # 3 architectures, records nothing

In one run it measures:

* the best 3x3 'same' convolution rate (GFLOP/s, batch 100, float32) that every
  installed backend reaches on NB101's layer shapes at full and half width: XLA
  through ``lax.conv_general_dilated``, oneDNN through PyTorch (channels-last, inference
  mode; both the plain ``conv2d`` and the fused conv + ReLU the torch backend calls);
* for each backend (:mod:`nngp_lib.backends`) and width, the scoring path end to end at
  the paper colab's setting (k = 2 networks, n = 100 training and m = 200 validation
  CIFAR-10 images, one batch-norm pass on 100 training images):
  :func:`nngp_lib.scoring.score_spec`, i.e. batch-norm pass, inference passes, kernels
  and the regularized inference, over the same seeded architectures after a warm-up
  architecture. Seconds per architecture, and GFLOP/s end to end counting the
  network's FLOPs (convolutions and readout, ``Network.flops``) over all images passed;
* neural-tangents' ``monte_carlo_kernel_fn`` on the first architecture at full width,
  doing the same work with the JAX networks (its ``init_fn`` runs the same batch-norm
  pass, ``n_samples=2``), compile included as a user scoring a new architecture pays it.

The last line reads exactly
``bench: s_per_arch=<float> vs_best_conv=<float> speedup=<float>x vs_nt_mc=<float>x``:
the default backend's seconds per architecture at full width, its end-to-end rate over
the best convolution rate of this run (any backend, any shape), its speed against the
JAX path, and neural-tangents' seconds over the default path's on the same architecture.
The full run records itself as the result ``bench_nngp`` (one row per backend, width
and architecture; the summary and the machine in the provenance), which the cost
chapter and the README's performance table read; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from nngp_lib import backends, results, scoring
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table
from nngp_lib.networks import layers
from nngp_lib.spaces import nb101

ENSEMBLE, N_TRAIN, N_VAL, BN_BATCH = 2, 100, 200, 100
BATCH = 100
WIDTHS = (1.0, 0.5)
# (spatial side, channels) of NB101's 3x3 convolutions at full width: one per stack.
CONV_SHAPES = ((32, 128), (16, 256), (8, 512))


def _best_seconds(run, repeats: int = 3) -> float:
    run()  # warm-up: compilation, oneDNN primitive creation
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def jax_conv_rate(side: int, channels: int) -> float:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((BATCH, side, side, channels), np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, channels, channels), np.float32) / (3 * channels**0.5))
    conv = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
    seconds = _best_seconds(lambda: conv(x, w).block_until_ready())
    return layers.conv_flops(side, side, 3, channels, channels) * BATCH / seconds


def torch_conv_rates(side: int, channels: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from nngp_lib.spaces.nb101 import torch_network

    x = torch.randn(BATCH, channels, side, side).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(channels, channels, 3, 3) / (3 * channels**0.5)).contiguous(memory_format=torch.channels_last)
    b = torch.zeros(channels)
    flops = layers.conv_flops(side, side, 3, channels, channels) * BATCH
    with torch.inference_mode():
        rates = {"torch conv2d": flops / _best_seconds(lambda: F.conv2d(x, w, b, padding=1))}
        rates["torch fused conv+relu"] = flops / _best_seconds(lambda: torch_network._conv_relu(x, w, b, 1))
    return rates


def conv_rates(installed: list[str]) -> pd.DataFrame:
    rows = []
    for width in WIDTHS:
        for side, full_channels in CONV_SHAPES:
            channels = round(full_channels * width)
            rates = {}
            if "jax" in installed:
                rates["xla (jax)"] = jax_conv_rate(side, channels)
            if "torch" in installed:
                rates.update(torch_conv_rates(side, channels))
            for method, rate in rates.items():
                rows.append({"width": width, "shape": f"{side}x{side}, {channels} -> {channels}",
                             "method": method, "gflop_per_s": rate / 1e9})
    return pd.DataFrame(rows)


def nt_monte_carlo_seconds(spec: nb101.ModelSpec, x_train: np.ndarray, x_all: np.ndarray, seed: int) -> float:
    """Seconds of neural-tangents' ``monte_carlo_kernel_fn`` for K(x_all, x_all), compile included."""
    import neural_tangents as nt

    net = nb101.network(spec, backend="jax")
    bn_batch = min(len(x_train), BN_BATCH)

    def init_fn(key, input_shape):
        init_key, bn_key = jax.random.split(key)
        variables = net.init(init_key)
        chosen = jax.random.choice(bn_key, len(x_train), (bn_batch,), replace=False)
        _, stats = net.features(variables, jnp.asarray(x_train)[chosen], train=True)
        return (input_shape[0], net.feature_dim), {**variables, "batch_stats": stats}

    def apply_fn(variables, x, **kwargs):
        return net.features(variables, x)[0]

    start = time.perf_counter()
    kernel_fn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(seed), ENSEMBLE, trace_axes=(-1,))
    kernel = np.asarray(kernel_fn(x_all, None, "nngp"))
    seconds = time.perf_counter() - start
    if not (np.isfinite(kernel).all() and kernel.shape == (len(x_all),) * 2):
        raise RuntimeError("neural-tangents returned a malformed kernel")
    return seconds


def time_scoring(backend: str, width: float, specs, data) -> list[dict]:
    """Seconds of :func:`scoring.score_spec` per architecture; ``specs[0]`` is the warm-up."""
    setting = scoring.Setting(ENSEMBLE, N_TRAIN, N_VAL, width_multiplier=width)
    if backend == "jax":
        scoring._precompile([setting], data.x_train.shape[1:3], backend)
    scoring.score_spec(specs[0], [setting], data, backend=backend)
    rows = []
    for spec in specs[1:]:
        images = ENSEMBLE * (BN_BATCH + N_TRAIN + N_VAL)
        flops = nb101.network(spec, backend="jax", stem_channels=scoring.stem_channels(width)).flops(32, 32) * images
        with layers.count_compilations() as compiled:
            start = time.perf_counter()
            (row,) = scoring.score_spec(spec, [setting], data, backend=backend)
            seconds = time.perf_counter() - start
        rows.append({"backend": backend, "width": width, "hash": spec.hash(), "tflop": flops / 1e12,
                     "seconds": seconds, "gflop_per_s": flops / seconds / 1e9, "compilations": compiled.count,
                     "nngp_acc": row["nngp_acc"]})
        print(f"  {backend:5s} width {width:4.2f} {spec.hash()}: {flops / 1e12:.2f} TFLOP in {seconds:5.1f} s, "
              f"{flops / seconds / 1e9:5.1f} GFLOP/s, {compiled.count} compilations", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=10, help="architectures timed per backend and width")
    parser.add_argument("--quick", action="store_true", help="3 architectures, nothing recorded")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="result name to record (default: bench_nngp, none with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.archs = 3
    if args.archs < 1:
        parser.error(f"--archs must be at least 1, got {args.archs}")
    out = args.out if args.out is not None or args.quick else "bench_nngp"
    installed = ["jax", *(["torch"] if backends.torch_available() else [])]
    default = backends.resolve("auto")
    provenance = results.new_provenance(
        "Monte-Carlo NNGP scoring throughput (benchmarks/bench_nngp.py)",
        {"ensemble": ENSEMBLE, "n_train": N_TRAIN, "n_val": N_VAL, "bn_batch": BN_BATCH, "batch_size": BATCH,
         "architectures": args.archs, "widths": list(WIDTHS), "sample_seed": args.seed},
        command=" ".join(["python -m benchmarks.bench_nngp", *(argv if argv is not None else sys.argv[1:])]),
    )
    provenance["backends"] = [backends.version(b) for b in installed]
    start = time.perf_counter()
    print(f"backends: {', '.join(provenance['backends'])}; default {default}", flush=True)

    convs = conv_rates(installed)
    print(convs.pivot_table(index="shape", columns="method", values="gflop_per_s", sort=False).round(1).to_string())
    best_conv = convs.loc[convs["gflop_per_s"].idxmax()]
    print(f"best 3x3 conv: {best_conv['gflop_per_s']:.1f} GFLOP/s ({best_conv['method']}, {best_conv['shape']})")

    data = nngp_split(N_TRAIN, N_VAL, seed=0, data_dir=args.data_dir)
    table = load_table(args.data_dir)
    picked = np.random.default_rng(args.seed).choice(len(table), args.archs + 1, replace=False)
    specs = [nb101.ModelSpec.from_json(table["adjacency"][i], table["ops"][i]) for i in picked]

    rows = []
    for width in WIDTHS:
        for backend in installed:
            rows.extend(time_scoring(backend, width, specs, data))
    timings = pd.DataFrame(rows)

    nt_seconds = nt_monte_carlo_seconds(specs[1], data.x_train, np.concatenate([data.x_train, data.x_val]), seed=0)
    timings["nt_seconds"] = np.nan
    first_default = (timings["backend"] == default) & (timings["width"] == 1.0) & (timings["hash"] == specs[1].hash())
    timings.loc[first_default, "nt_seconds"] = nt_seconds

    summary = {"best_conv_gflop_per_s": float(best_conv["gflop_per_s"]), "best_conv_method": best_conv["method"],
               "best_conv_shape": best_conv["shape"], "default_backend": default}
    for (backend, width), group in timings.groupby(["backend", "width"]):
        key = f"{backend}_w{round(100 * width):03d}"
        summary[f"{key}_s_per_arch"] = float(group["seconds"].mean())
        summary[f"{key}_gflop_per_s"] = float(1e3 * group["tflop"].sum() / group["seconds"].sum())
        print(f"{backend:5s} width {width:4.2f}: {summary[f'{key}_s_per_arch']:6.2f} s per architecture, "
              f"{summary[f'{key}_gflop_per_s']:6.1f} GFLOP/s end to end")
    for width in WIDTHS:
        tag = f"w{round(100 * width):03d}"
        summary[f"speedup_{tag}"] = summary[f"jax_{tag}_s_per_arch"] / summary[f"{default}_{tag}_s_per_arch"]
        summary[f"vs_best_conv_{tag}"] = summary[f"{default}_{tag}_gflop_per_s"] / summary["best_conv_gflop_per_s"]
        print(f"width {width:4.2f}: {default} vs jax {summary[f'speedup_{tag}']:.2f}x, "
              f"{summary[f'vs_best_conv_{tag}']:.2f} of the best conv rate")
    s_per_arch = summary[f"{default}_w100_s_per_arch"]
    summary.update(s_per_arch=s_per_arch, vs_best_conv=summary["vs_best_conv_w100"],
                   speedup=summary["speedup_w100"],
                   vs_nt_mc=nt_seconds / float(timings.loc[first_default, "seconds"].iloc[0]))
    print(f"neural-tangents monte_carlo_kernel_fn: {nt_seconds:.1f} s on the first architecture (compile included); "
          f"benchmark wall time {time.perf_counter() - start:.0f} s")
    if out:
        provenance["summary"] = summary
        provenance["conv_rates"] = convs.to_dict(orient="records")
        path = results.write(out, timings, provenance)
        print(f"recorded as result {out!r}: {path}")
    print(f"bench: s_per_arch={s_per_arch:.2f} vs_best_conv={summary['vs_best_conv']:.3f} "
          f"speedup={summary['speedup']:.2f}x vs_nt_mc={summary['vs_nt_mc']:.2f}x")


if __name__ == "__main__":
    main()
