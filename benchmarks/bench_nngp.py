"""Speed of Monte-Carlo NNGP scoring of NAS-Bench-101 networks on this machine.

    python -m benchmarks.bench_nngp            # 10 architectures, NT on 3 of them
    python -m benchmarks.bench_nngp --quick    # 3 architectures, NT on 1

At the paper colab's setting (ensemble k=2, 100 NNGP training and 200 validation
CIFAR-10 images, one batch-norm pass on 100 training images, batches of 100) it reports,
after warm-up (:func:`nngp_lib.spaces.nb101.jax_network.precompile`):

* seconds per architecture (wall clock) and XLA compilations per new architecture;
* conv efficiency: the network FLOP/s (convolutions and readout, ``Network.flops``)
  divided by the FLOP/s of one large jitted 3x3 conv (32x32, 128 -> 128 channels, the
  same batch) timed right before and after each architecture, so that load from other
  processes affects both alike. The same ratio in CPU seconds is printed too;
* the speed ratio against ``neural_tangents.monte_carlo_kernel_fn`` doing the same work
  on the same networks and images: its ``init_fn`` initializes with the same code and
  runs the same training-mode batch-norm pass, its ``apply_fn`` returns the same
  penultimate features, ``n_samples=2``, and ``kernel_fn(x_train + x_val, None, 'nngp')``
  computes the features of the 300 images once per sample, as ours does. NT jits that
  whole computation, so a never-seen architecture costs a compilation: its time is what
  a user scoring new architectures pays, compile included.

The last line reads ``bench: s_per_arch=<float> conv_efficiency=<float> vs_nt_mc=<float>x``.
Architectures are a seeded random sample of the rows of the NB101 table. The full run
records its measurements as the result ``bench_nngp`` (``results/bench_nngp.csv``, one row
per architecture, and ``.json`` with the summary and the machine), which the cost-model
chapter shows; ``--quick`` records nothing unless ``--out`` names a result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from nngp_lib import results
from nngp_lib.data.cifar10 import nngp_split
from nngp_lib.data.nb101_table import load_table
from nngp_lib.kernels import monte_carlo_nngp
from nngp_lib.networks import layers
from nngp_lib.spaces.nb101 import ModelSpec
from nngp_lib.spaces.nb101 import jax_network as nb101_net

ENSEMBLE, N_TRAIN, N_VAL = 2, 100, 200
BN_BATCH = 100  # the colab's: one batch of 100 training images sets batch norm


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class ReferenceConv:
    """One large jitted 3x3 conv, 32x32x128 -> 128 channels: the machine's conv FLOP/s."""

    def __init__(self, batch_size: int):
        rng = np.random.default_rng(0)
        self.x = jnp.asarray(rng.standard_normal((batch_size, 32, 32, 128), np.float32))
        self.w = jnp.asarray(rng.standard_normal((3, 3, 128, 128), np.float32) / 34)
        self.flops = layers.conv_flops(32, 32, 3, 128, 128) * batch_size
        self.conv = jax.jit(
            lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        )
        self.conv(self.x, self.w).block_until_ready()

    def measure(self, repeats: int = 2) -> tuple[float, float]:
        """(FLOP/s by wall clock, FLOP/s per CPU second), best of ``repeats``."""
        wall = cpu = np.inf
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), _cpu_seconds()
            self.conv(self.x, self.w).block_until_ready()
            wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, _cpu_seconds() - c0)
        return self.flops / wall, self.flops / max(cpu, 1e-9)


def nt_monte_carlo_kernel(net, x_train, x_all, seed: int) -> np.ndarray:
    """K(x_all, x_all) by neural-tangents' Monte-Carlo estimator, same work as ours."""
    import neural_tangents as nt

    bn_batch = min(len(x_train), BN_BATCH)

    def init_fn(key, input_shape):
        init_key, bn_key = jax.random.split(key)
        variables = net.init(init_key)
        chosen = jax.random.choice(bn_key, len(x_train), (bn_batch,), replace=False)
        _, stats = net.features(variables, jnp.asarray(x_train)[chosen], train=True)
        return (input_shape[0], net.feature_dim), {**variables, "batch_stats": stats}

    def apply_fn(variables, x, **kwargs):
        return net.features(variables, x)[0]

    kernel_fn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(seed), ENSEMBLE, trace_axes=(-1,))
    return np.asarray(kernel_fn(x_all, None, "nngp"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=10, help="architectures timed after warm-up")
    parser.add_argument("--nt-archs", type=int, default=3, help="of which also timed with neural-tangents")
    parser.add_argument("--quick", action="store_true", help="3 architectures, NT on 1")
    parser.add_argument("--batch-size", type=int, default=100, help="images per inference pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="result name to record (default: bench_nngp, none with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.archs, args.nt_archs = 3, 1
    out = args.out if args.out is not None or args.quick else "bench_nngp"
    if not 1 <= args.nt_archs <= args.archs:
        parser.error(f"--nt-archs must be in 1..--archs ({args.archs}), got {args.nt_archs}")
    provenance = results.new_provenance(
        "Monte-Carlo NNGP scoring throughput (benchmarks/bench_nngp.py)",
        {"ensemble": ENSEMBLE, "n_train": N_TRAIN, "n_val": N_VAL, "bn_batch": BN_BATCH,
         "batch_size": args.batch_size, "architectures": args.archs, "nt_architectures": args.nt_archs,
         "sample_seed": args.seed},
        command=" ".join(["python -m benchmarks.bench_nngp", *(argv if argv is not None else sys.argv[1:])]),
    )
    start = time.perf_counter()

    data = nngp_split(N_TRAIN, N_VAL, seed=0, data_dir=args.data_dir)
    x_train, x_val = data.x_train, data.x_val
    table = load_table(args.data_dir)
    rows = np.random.default_rng(args.seed).choice(len(table), args.archs + 1, replace=False)
    specs = [ModelSpec.from_json(table["adjacency"][i], table["ops"][i]) for i in rows]
    bn_batch = min(N_TRAIN, BN_BATCH)
    images_per_member = bn_batch + N_TRAIN + N_VAL

    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs; "
          f"k={ENSEMBLE}, n_train={N_TRAIN}, n_val={N_VAL}, batch {args.batch_size}, bn batch {bn_batch}")
    reference = ReferenceConv(args.batch_size)
    peak_wall, peak_cpu = reference.measure(3)
    print(f"reference conv 32x32x128->128 3x3: {peak_wall / 1e9:.1f} GFLOP/s ({peak_cpu / 1e9:.1f} per CPU second)")

    t0 = time.perf_counter()
    with layers.count_compilations() as compiled:
        nb101_net.precompile(batch_size=args.batch_size, train_batch_size=bn_batch)
        monte_carlo_nngp(nb101_net.network(specs[0]), x_train, x_val, ensemble=ENSEMBLE, seed=0,
                         bn_batch=bn_batch, batch_size=args.batch_size)
    warmup_compilations = compiled.count
    print(f"warm-up: {time.perf_counter() - t0:.1f} s, {compiled.count} compilations "
          "(precompile every primitive of the space + one architecture)")

    seconds, efficiencies, cpu_efficiencies, rows_out = [], [], [], []
    for i, spec in enumerate(specs[1:], start=1):
        net = nb101_net.network(spec)
        flops = net.flops(32, 32) * images_per_member * ENSEMBLE
        before_wall, before_cpu = reference.measure()
        w0, c0 = time.perf_counter(), _cpu_seconds()
        with layers.count_compilations() as compiled:
            monte_carlo_nngp(net, x_train, x_val, ensemble=ENSEMBLE, seed=i, bn_batch=bn_batch,
                             batch_size=args.batch_size)
        wall, cpu = time.perf_counter() - w0, _cpu_seconds() - c0
        after_wall, after_cpu = reference.measure()
        efficiency = flops / wall / ((before_wall + after_wall) / 2)
        cpu_efficiency = flops / cpu / ((before_cpu + after_cpu) / 2)
        seconds.append(wall)
        efficiencies.append(efficiency)
        cpu_efficiencies.append(cpu_efficiency)
        rows_out.append({"hash": spec.hash(), "tflop": flops / 1e12, "seconds": wall, "cpu_seconds": cpu,
                         "gflop_per_s": flops / wall / 1e9, "reference_gflop_per_s": (before_wall + after_wall) / 2e9,
                         "conv_efficiency": efficiency, "cpu_conv_efficiency": cpu_efficiency,
                         "compilations": compiled.count, "nt_seconds": np.nan})
        print(f"arch {i:2d} {spec.hash()}: {flops / 1e12:.2f} TFLOP in {wall:5.1f} s ({cpu:5.1f} CPU s), "
              f"{flops / wall / 1e9:5.1f} GFLOP/s, efficiency {efficiency:.2f} (CPU {cpu_efficiency:.2f}), "
              f"{compiled.count} compilations")
        if compiled.count:
            print(f"  WARNING: {compiled.count} compilations for a new architecture after warm-up")

    ratios = []
    for i, spec in enumerate(specs[1 : 1 + args.nt_archs], start=1):
        net = nb101_net.network(spec)
        t0 = time.perf_counter()
        nt_kernel = nt_monte_carlo_kernel(net, x_train, np.concatenate([x_train, x_val]), seed=i)
        nt_seconds = time.perf_counter() - t0
        assert np.isfinite(nt_kernel).all() and nt_kernel.shape == (N_TRAIN + N_VAL,) * 2
        ratios.append(nt_seconds / seconds[i - 1])
        rows_out[i - 1]["nt_seconds"] = nt_seconds
        print(f"arch {i:2d}: neural-tangents monte_carlo_kernel_fn {nt_seconds:5.1f} s (compile included) "
              f"vs ours {seconds[i - 1]:5.1f} s: {ratios[-1]:.1f}x")

    s_per_arch = float(np.mean(seconds))
    print(f"mean over {len(seconds)} architectures: {s_per_arch:.1f} s, efficiency {np.mean(efficiencies):.2f} "
          f"(CPU-time {np.mean(cpu_efficiencies):.2f}); NT speed ratio {np.mean(ratios):.1f}x over {len(ratios)}; "
          f"benchmark wall time {time.perf_counter() - start:.0f} s")
    if out:
        provenance["summary"] = {
            "s_per_arch": s_per_arch, "conv_efficiency": float(np.mean(efficiencies)),
            "cpu_conv_efficiency": float(np.mean(cpu_efficiencies)), "vs_nt_mc": float(np.mean(ratios)),
            "reference_gflop_per_s": peak_wall / 1e9, "warmup_compilations": warmup_compilations,
        }
        path = results.write(out, pd.DataFrame(rows_out), provenance)
        print(f"recorded as result {out!r}: {path}")
    print(f"bench: s_per_arch={s_per_arch:.2f} conv_efficiency={np.mean(efficiencies):.3f} "
          f"vs_nt_mc={np.mean(ratios):.2f}x")


if __name__ == "__main__":
    main()
