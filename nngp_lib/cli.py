"""The ``nngp-nas`` command line: the one command a user needs (``nngp-nas SUBCOMMAND --help``
shows each subcommand's examples, :data:`EXAMPLES`, which tests/test_cli.py runs as typed)."""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
from pathlib import Path

from nngp_lib import config

# The examples each subcommand's --help shows; tests/test_cli.py runs every one as typed
# (with NNGP_NAS_RESULTS and the working directory in a temporary folder), so they stay tiny
# and true. The nb101 chapter example is run by tests/test_chapter_runs.py next to the
# papermill form of the same run.
EXAMPLES: dict[str, list[str]] = {
    "score": [
        "nngp-nas score --hash 00005c142e6f48ac74fdcf73e3439874 --ensemble 1 --n-train 10 --n-val 10",
        "nngp-nas score --adjacency '[[0,1,1],[0,0,1],[0,0,0]]' --ops '[\"input\",\"conv3x3-bn-relu\",\"output\"]' "
        "--ensemble 1 --n-train 10 --n-val 10 --width-multiplier 0.25",
    ],
    "score-table": [
        "nngp-nas score-table --sample 2 --out trial_nngp --ensemble 1 --n-train 10 20 --n-val 10 "
        "--width-multiplier 0.25",
    ],
    "proxies": [
        "nngp-nas proxies --sample 2 --out trial_proxies --proxies naswot params --option stem_channels=16 "
        "--option naswot.batch_size=8",
    ],
    "chapter": [
        "nngp-nas chapter nb101_data -p sample_for_plots 200",
        "nngp-nas chapter nb101 -p ensemble 8 -p num_architectures 4 -p n_train 10 -p n_val 10",
    ],
    "convert-tfrecord": [
        "nngp-nas convert-tfrecord nasbench_full.tfrecord nb101_full.csv.gz",
    ],
}


def _examples(command: str) -> str:
    return "examples:\n" + "\n".join(f"  {example}" for example in EXAMPLES.get(command, []))


def chapters_dir() -> "Path":
    """The book's chapter sources (``book/chapters`` of the repository this package runs from)."""
    return Path(__file__).resolve().parents[1] / "book" / "chapters"


def chapter_names() -> list[str]:
    return sorted(path.stem for path in chapters_dir().glob("*.py"))


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
                        help="architectures per task and per Parquet part (default: 5 for score-table, 1 for ladder)")


def _parser() -> argparse.ArgumentParser:
    everything = [example for examples in EXAMPLES.values() for example in examples]
    parser = argparse.ArgumentParser(
        prog="nngp-nas", description="NNGP-guided neural architecture search on NAS-Bench-101.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples (tiny settings; see each subcommand's --help):\n"
        + "\n".join(f"  {example}" for example in everything)
        + "\n  nngp-nas ladder --width 0.25   # hours: one width of the ladder plan (nngp_lib.ladder)")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, epilog=_examples(name), formatter_class=argparse.RawDescriptionHelpFormatter,
                                   **kwargs)

    score = add("score", help="NNGP validation accuracy of one NB101 cell")
    which = score.add_mutually_exclusive_group(required=True)
    which.add_argument("--hash", help="an NB101 module hash from the table")
    which.add_argument("--adjacency", help="JSON adjacency matrix (with --ops)")
    score.add_argument("--ops", help='JSON op list, e.g. ["input","conv3x3-bn-relu","output"]')
    _add_setting_arguments(score, many=False)

    table = add("score-table", help="score many NB101 cells into a results table")
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
    ladder.add_argument("--results-dir", default=None,
                        help=f"results folder (default ${config.RESULTS_ENV} or results/)")
    ladder.add_argument("--data-dir", default=None, help=f"data folder (default ${config.DATA_ENV})")
    _add_backend_argument(ladder)
    _add_cluster_arguments(ladder)

    # Its own parser (nngp_lib.proxies.main) reads the arguments; listed here for the help.
    add("proxies", help="training-free proxies (NASWOT, synflow, SNIP, grad-norm, ...) of many NB101 cells",
        add_help=False)

    chapter = add("chapter", help="execute one chapter of the book with parameters (the same run as papermill)",
                  description="Execute book/chapters/NAME.py with papermill (kernel python3) into OUTPUT. "
                  "Parameters are checked by the chapter: singular ensemble, n_train, n_val, width set its lists; "
                  "lists are YAML ('[1, 8]').")
    chapter.add_argument("name", metavar="NAME", help="one of: " + ", ".join(chapter_names()))
    chapter.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                         help="a parameter of the chapter; VALUE is read as YAML (8, 0.5, True, '[1, 8]')")
    chapter.add_argument("-o", "--output", type=Path, default=None,
                         help="executed notebook (default artifacts/chapters/NAME.ipynb)")

    convert = add("convert-tfrecord",
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


def default_chapter_output(name: str) -> Path:
    """Where ``nngp-nas chapter NAME`` writes the executed notebook without ``-o``."""
    return Path("artifacts") / "chapters" / f"{name}.ipynb"


def run_chapter(name: str, parameters: dict, output: Path | None = None) -> Path:
    """Execute ``book/chapters/<name>.py`` with papermill into ``output`` (default
    ``artifacts/chapters/<name>.ipynb``); the chapter checks ``parameters`` itself."""
    import papermill

    source = chapters_dir() / f"{name}.py"
    if not source.is_file():
        raise ValueError(f"no chapter {name!r}: choose one of {', '.join(chapter_names())}")
    output = Path(output) if output is not None else default_chapter_output(name)
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name="python3",
                               progress_bar=True)
    return output


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["proxies"]:
        from nngp_lib import proxies

        return proxies.main(argv[1:], prog="nngp-nas proxies", epilog=_examples("proxies"))
    args = _parser().parse_args(argv)
    # `kill PID` (SIGTERM) is how a background run is stopped: leave through the same
    # cleanup as Ctrl-C, so that the run's lock file is removed and its parts stay whole.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
                                            command="nngp-nas " + " ".join(argv))
            print(f"wrote {len(result.table)} rows to {result.path}")
        elif args.command == "ladder":
            from nngp_lib import cluster, ladder

            with cluster.connect(args.scheduler, args.workers, args.gpus) as client:
                result = ladder.run(args.width, num_architectures=args.num_architectures,
                                    results_dir=args.results_dir, data_dir=args.data_dir, backend=args.backend,
                                    client=client, chunk_size=args.chunk_size,
                                    command="nngp-nas " + " ".join(argv))
            print(f"wrote {len(result.table)} rows to {result.path}")
        elif args.command == "chapter":
            import papermill
            import yaml

            parameters = {key: yaml.safe_load(value) for key, value in args.parameter}
            try:
                output = run_chapter(args.name, parameters, args.output)
            except papermill.PapermillExecutionError as err:
                print(f"nngp-nas chapter {args.name}: {err.ename}: {err.evalue} (the notebook so far: "
                      f"{args.output or default_chapter_output(args.name)})", file=sys.stderr)
                return 1
            print(f"wrote {output}")
        elif args.command == "convert-tfrecord":
            from nngp_lib.data import tfrecord

            tfrecord.convert_tfrecord(args.src, args.dst)
            print(f"wrote {args.dst}")
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"nngp-nas: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
