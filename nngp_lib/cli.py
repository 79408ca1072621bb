"""The ``nngp-nas`` command line.

Examples::

    nngp-nas score --hash 00005c142e6f48ac74fdcf73e3439874
    nngp-nas score --adjacency '[[0,1,1],[0,0,1],[0,0,0]]' --ops '["input","conv3x3-bn-relu","output"]'
    nngp-nas score-table --sample 200 --out nb101_nngp --ensemble 1 2 --n-train 100 200
    nngp-nas ladder --width 0.25
    nngp-nas convert-tfrecord nasbench_full.tfrecord nb101_full.csv.gz
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from nngp_lib import config


def _add_setting_arguments(parser: argparse.ArgumentParser, many: bool) -> None:
    nargs = "+" if many else None
    grid = " (several values: every combination is scored)" if many else ""
    parser.add_argument("--ensemble", type=int, nargs=nargs, default=[2] if many else 2,
                        help="random networks per kernel (k)" + grid)
    parser.add_argument("--n-train", type=int, nargs=nargs, default=[100] if many else 100,
                        help="NNGP training images" + grid)
    parser.add_argument("--n-val", type=int, nargs=nargs, default=[200] if many else 200,
                        help="NNGP validation images" + grid)
    parser.add_argument("--seed", type=int, default=0, help="seed of the network initializations")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the image selection")
    parser.add_argument("--bn-momentum", type=float, default=0.997,
                        help="momentum of the batch-norm pass (0.997 as NB101; 0 = batch statistics)")
    parser.add_argument("--width-multiplier", type=float, default=1.0,
                        help="channels relative to NB101 (cheaper, noisier estimate below 1)")
    parser.add_argument("--downsample-factor", type=int, default=1, choices=(1, 2, 4),
                        help="feed the networks images averaged over blocks of this side (cheaper above 1)")
    parser.add_argument("--data-dir", default=None, help=f"data folder (default ${config.DATA_ENV})")
    _add_backend_argument(parser)


def _add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", choices=("auto", "jax", "torch"),
                        help="what runs the networks (auto: torch when installed, see nngp_lib.backends)")


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="send the work to a running Dask scheduler, e.g. tcp://head:8786 (see nngp_lib.cluster)")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="start an embedded Dask LocalCluster of N single-threaded worker processes")
    where.add_argument("--gpus", nargs="+", default=None, metavar="GPU",
                       help="start one single-threaded worker per GPU, each with its CUDA_VISIBLE_DEVICES")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="architectures per task and per Parquet part (default 5)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nngp-nas", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="NNGP validation accuracy of one NB101 cell")
    which = score.add_mutually_exclusive_group(required=True)
    which.add_argument("--hash", help="an NB101 module hash from the table")
    which.add_argument("--adjacency", help="JSON adjacency matrix (with --ops)")
    score.add_argument("--ops", help='JSON op list, e.g. ["input","conv3x3-bn-relu","output"]')
    _add_setting_arguments(score, many=False)

    table = commands.add_parser("score-table", help="score many NB101 cells into a results table")
    which = table.add_mutually_exclusive_group(required=True)
    which.add_argument("--sample", type=int, help="a seeded random sample of this many architectures (see --space)")
    which.add_argument("--hashes", type=Path, help="a file with one NB101 hash per line")
    table.add_argument("--sample-seed", type=int, default=0, help="seed of --sample")
    table.add_argument("--space", choices=("table", "nb101"), default="table",
                       help="draw --sample from the 30,001-row NB101 table (default) or from all 423,624 cells "
                            "(rows outside the table have no ground truth)")
    table.add_argument("--out", required=True, help="result name, written to the results folder")
    table.add_argument("--results-dir", default=None, help=f"results folder (default ${config.RESULTS_ENV} or results/)")
    table.add_argument("--no-resume", action="store_true", help="fail instead of continuing an existing result")
    _add_setting_arguments(table, many=True)
    _add_cluster_arguments(table)

    ladder = commands.add_parser("ladder", help="score one width of the ladder of settings (nngp_lib.ladder)")
    ladder.add_argument("--width", type=float, required=True, help="width multiplier: 0.25, 0.5 or 1")
    ladder.add_argument("--num-architectures", type=int, default=None,
                        help="a shorter prefix of the sample than the plan's (for a trial)")
    ladder.add_argument("--results-dir", default=None, help=f"results folder (default ${config.RESULTS_ENV} or results/)")
    ladder.add_argument("--data-dir", default=None, help=f"data folder (default ${config.DATA_ENV})")
    _add_backend_argument(ladder)
    _add_cluster_arguments(ladder)

    convert = commands.add_parser("convert-tfrecord",
                                  help="convert NAS-Bench-101's official TFRecord to the table format")
    convert.add_argument("src", type=Path, help="nasbench_full.tfrecord or nasbench_only108.tfrecord")
    convert.add_argument("dst", type=Path, help="output CSV (.csv or .csv.gz)")
    return parser


def _spec_from_args(args):
    from nngp_lib.spaces import nb101

    if args.hash:
        table = nb101.load_table(args.data_dir)
        match = table[table["hash"] == args.hash]
        if match.empty:
            raise SystemExit(f"nngp-nas: hash {args.hash} is not in the NB101 table; give --adjacency and --ops instead")
        row = match.iloc[0]
        return nb101.ModelSpec.from_json(row["adjacency"], row["ops"])
    if not args.ops:
        raise SystemExit("nngp-nas: --adjacency needs --ops")
    try:
        return nb101.ModelSpec.from_json(args.adjacency, args.ops)
    except json.JSONDecodeError as err:
        raise SystemExit(f"nngp-nas: --adjacency/--ops must be JSON: {err}") from None


def _hashes_to_specs(hashes: list[str], data_dir):
    from nngp_lib.spaces import nb101

    table = nb101.load_table(data_dir).set_index("hash")
    missing = [h for h in hashes if h not in table.index]
    if missing:
        raise SystemExit(f"nngp-nas: {len(missing)} hashes are not in the NB101 table (first: {missing[0]})")
    rows = table.loc[hashes]
    return [nb101.ModelSpec.from_json(a, o) for a, o in zip(rows["adjacency"], rows["ops"])]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "score":
            from nngp_lib import scoring

            spec = _spec_from_args(args)
            setting = scoring.Setting(args.ensemble, args.n_train, args.n_val, args.seed, args.data_seed,
                                      args.bn_momentum, args.width_multiplier, args.downsample_factor)
            data = scoring.nngp_split(args.n_train, args.n_val, seed=args.data_seed, data_dir=args.data_dir)
            (row,) = scoring.score_spec(spec, [setting], data, backend=args.backend)
            print(json.dumps(row))
        elif args.command == "score-table":
            from nngp_lib import cluster, scoring
            from nngp_lib.data.nb101_table import sample_rows
            from nngp_lib.spaces import nb101

            if args.sample is not None and args.space == "nb101":
                if not 0 < args.sample <= nb101.SPACE_SIZE:
                    raise SystemExit(f"nngp-nas: --sample must be in 1..{nb101.SPACE_SIZE}, got {args.sample}")
                specs = nb101.permutation_sample(args.sample, args.sample_seed)
            elif args.sample is not None:
                table = nb101.load_table(args.data_dir)
                if not 0 < args.sample <= len(table):
                    raise SystemExit(f"nngp-nas: --sample must be in 1..{len(table)}, got {args.sample}")
                hashes = sample_rows(table, args.sample, args.sample_seed)["hash"].tolist()
                specs = _hashes_to_specs(hashes, args.data_dir)
            else:
                hashes = [line.strip() for line in args.hashes.read_text().splitlines() if line.strip()]
                specs = _hashes_to_specs(hashes, args.data_dir)
            settings = [
                scoring.Setting(k, n, m, args.seed, args.data_seed, args.bn_momentum, args.width_multiplier,
                                args.downsample_factor)
                for k, n, m in itertools.product(args.ensemble, args.n_train, args.n_val)
            ]
            with cluster.connect(args.scheduler, args.workers, args.gpus) as client:
                result = scoring.score_many(specs, settings, args.out, results_dir=args.results_dir,
                                            data_dir=args.data_dir, resume=not args.no_resume, backend=args.backend,
                                            client=client, chunk_size=args.chunk_size,
                                            command="nngp-nas " + " ".join(argv if argv is not None else sys.argv[1:]))
            print(f"wrote {len(result.table)} rows to {result.path}")
        elif args.command == "ladder":
            from nngp_lib import cluster, ladder

            with cluster.connect(args.scheduler, args.workers, args.gpus) as client:
                result = ladder.run(args.width, num_architectures=args.num_architectures,
                                    results_dir=args.results_dir, data_dir=args.data_dir, backend=args.backend,
                                    client=client, chunk_size=args.chunk_size,
                                    command="nngp-nas " + " ".join(argv if argv is not None else sys.argv[1:]))
            print(f"wrote {len(result.table)} rows to {result.path}")
        elif args.command == "convert-tfrecord":
            from nngp_lib.data import tfrecord

            tfrecord.convert_tfrecord(args.src, args.dst)
            print(f"wrote {args.dst}")
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"nngp-nas: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
