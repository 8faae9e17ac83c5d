"""The ``repsim`` command: a thin layer that parses arguments and calls one public function each."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from repsim.argtypes import DEVICE_HELP, Parser, at_least
from repsim.errors import RepsimError

BENCHMARKS = ("measures", "extract", "probe", "run", "precision")
#: the run folder `repsim book` renders when --run is not given (the one `make run` writes)
DEFAULT_BOOK_RUN = "runs/embedded"


def _cmd_run(args: argparse.Namespace) -> int:
    from repsim.pipeline import run
    from repsim.runfolder import RunFolder

    result = run(
        args.config, args.out, scheduler=args.scheduler, cluster=args.cluster, device=args.device
    )
    print(result.summary)
    folder = RunFolder(result.run_dir)
    files = [p.name for p in (*folder.result_paths().values(), folder.info) if p.exists()]
    print(
        f"results: {result.run_dir}/ ({', '.join(files)}); the book: repsim book --run "
        f"{shlex.quote(str(result.run_dir))}"
    )
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from repsim.book import build_book
    from repsim.errors import ConfigError, PathError

    if args.no_execute and args.run is not None:
        raise ConfigError(
            "--run does not apply with --no-execute, which builds the book from the notebooks "
            "executed last (on the run they were executed on); drop --run, or drop --no-execute "
            "to execute the notebooks on that run"
        )
    if args.run is not None and not args.run.strip():
        raise ConfigError(
            f"--run is empty; name a run folder (its --out), or leave --run out to render "
            f"{DEFAULT_BOOK_RUN}"
        )
    try:
        build_book(
            run_dir=args.run or DEFAULT_BOOK_RUN,
            book_dir=args.book,
            execute=not args.no_execute,
            timeout=args.timeout,
        )
    except OSError as exc:  # a full disk or a folder not writable: named, with the --book fix
        raise PathError(_book_os_error(exc, args.book)) from exc
    return 0


def _book_os_error(exc: OSError, book_dir: str) -> str:
    """The message of a filesystem error while the book is built: a file inside the book folder
    was being written (its fix names --book), any other was being read."""
    from repsim.runfolder import describe_output_error

    return describe_output_error(exc, book_dir, "--book")


def _cmd_models(args: argparse.Namespace) -> int:
    from repsim.zoo import check_models, list_models

    if args.check:
        table, ok = check_models(args.config)
        print(table)
        return 0 if ok else 1
    print(list_models(args.config))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from repsim.stimuli import check_datasets

    table, ok = check_datasets(args.config, decode=args.check)
    print(table)
    return 0 if (ok or not args.check) else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    if args.name == "all":
        from repsim.bench import run_all

        return run_all(args.rest)
    return importlib.import_module(f"repsim.bench.{args.name}").main(args.rest)


def _cmd_compare(args: argparse.Namespace) -> int:
    from repsim.reference import DIFFERS, compare, format_comparison

    table = compare(args.run)
    print(format_comparison(table, all_rows=args.all))
    differs = table["status"].isin(DIFFERS)
    if not (args.strict and differs.any()):
        return 0
    design = table["id"].str.startswith("design/")
    results, counts = int((differs & ~design).sum()), int((differs & design).sum())
    print(  # the headline counts results only; say what --strict failed on
        f"--strict: exit 1: {results} result{'s' * (results != 1)} outside the tolerance of the "
        f"study's and {counts} design count{'s' * (counts != 1)} (models, datasets, pairs) not "
        "the study's",
        file=sys.stderr,
    )
    return 1


def _cmd_minizoo(args: argparse.Namespace) -> int:
    from repsim.minizoo.merge import main as merge_main
    from repsim.minizoo.train import evaluate_main
    from repsim.minizoo.train import main as train_main

    actions = {"train": train_main, "evaluate": evaluate_main, "merge": merge_main}
    return actions[args.action](args.rest)


#: the path arguments of each command: (attribute, how a message names it, read or write)
PATH_OPTIONS = {
    "run": (("config", "config file", "read"), ("out", "--out", "create")),
    "book": (("run", "--run", "read"), ("book", "--book", "write")),
    "models": (("config", "--config", "read"),),
    "datasets": (("config", "--config", "read"),),
    "compare": (("run", "run folder", "read"),),
}


def _check_paths(args: argparse.Namespace) -> None:
    """PathError for a path argument too long for the filesystem, before the command starts."""
    from repsim.runfolder import check_path_option

    for attr, option, action in PATH_OPTIONS.get(args.command, ()):
        check_path_option(getattr(args, attr), option, action)


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C (or SIGTERM) leaves: a run keeps its finished stages and a training its
    finished models; the other commands have nothing to resume ("finished stages are kept" was
    said of ``repsim models --check`` too)."""
    if args.command == "run":
        return "finished stages are kept and a rerun resumes"
    if args.command == "minizoo" and args.action == "train":
        return "the models trained so far are kept; rerun with --resume to train the rest"
    return "rerun the command to start it again"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="repsim", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # -v after the command too (repsim run -v ...); SUPPRESS keeps a -v given before it
    verbose = Parser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run", parents=[verbose], help="run the pipeline of a config into a run folder"
    )
    p.add_argument("config", help="YAML config, e.g. data/configs/embedded.yaml")
    p.add_argument("--out", required=True, help="run folder (created; reused to resume)")
    p.add_argument(
        "--scheduler",
        default="synchronous",
        help="synchronous | local:N | tcp://HOST:PORT (an existing dask scheduler)",
    )
    p.add_argument(
        "--cluster", choices=["slurm", "pbs"], default=None, help="start workers via dask-jobqueue"
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "book", parents=[verbose], help="execute the notebooks on a run folder and build the book"
    )
    p.add_argument("--run", help=f"run folder to render (default: {DEFAULT_BOOK_RUN})")
    p.add_argument("--book", default="book", help="book folder (default: book)")
    p.add_argument(
        "--no-execute",
        action="store_true",
        help="build from the notebooks executed last, on the run they were executed on (so "
        "without --run); refused when that run has other results now (a rerun since) or no "
        "record of it was kept (a failed build)",
    )
    p.add_argument(
        "--timeout",
        type=at_least(1),
        default=600,
        help="seconds any one cell of a notebook may run (default: 600)",
    )
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser("models", parents=[verbose], help="list or check the models of a config")
    p.add_argument("--config", required=True, help="the run's config file (YAML)")
    p.add_argument(
        "--check",
        action="store_true",
        help="build every selected model on the meta device, check dims, open and match weights files",
    )
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("datasets", parents=[verbose], help="list or check the datasets of a config")
    p.add_argument("--config", required=True, help="the run's config file (YAML)")
    p.add_argument(
        "--check",
        action="store_true",
        help="decode every image, list each unusable one; exit non-zero if any dataset or image is bad",
    )
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser(
        "bench", parents=[verbose], help="benchmarks: " + ", ".join(BENCHMARKS) + ", all"
    )
    p.add_argument(
        "name",
        choices=[*BENCHMARKS, "all"],
        help="the benchmark; all runs measures, extract, probe and run",
    )
    p.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="options of that benchmark (see repsim bench NAME --help)",
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "compare", parents=[verbose], help="a run's values beside the study's published numbers"
    )
    p.add_argument("run", help="run folder (similarity.nc, optional probes.nc)")
    p.add_argument("--all", action="store_true", help="also list numbers the run cannot compute")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a result is outside the tolerance of the study's value or a design "
        "count (models, datasets, pairs) is not the study's",
    )
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "minizoo",
        parents=[verbose],
        help="retrain the mini-zoo (repsim minizoo train [options]), rewrite its per-dataset "
        "held-out accuracies (repsim minizoo evaluate) or merge zoo folders trained side by side "
        "(repsim minizoo merge SRC... --into data/minizoo)",
    )
    p.add_argument("action", choices=["train", "evaluate", "merge"], help="what to do")
    p.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="options of that action (see repsim minizoo ACTION --help); train without --out "
        "replaces the shipped weights in data/minizoo",
    )
    p.set_defaults(func=_cmd_minizoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    # repsim's own progress at INFO; other libraries (open_clip logs to the root logger) only warn
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("repsim").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from repsim import interrupts

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupts.handler) if main_thread else None
    previous_int = signal.signal(signal.SIGINT, interrupts.handler) if main_thread else None
    interrupts.reset()
    try:
        _check_paths(args)
        return args.func(args)
    except RepsimError as exc:
        print(f"repsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"repsim: interrupted; {_interrupted(args)}", file=sys.stderr)
        return 143 if isinstance(exc, interrupts.Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        interrupts.reset()  # a library call later in this process starts clean


if __name__ == "__main__":
    sys.exit(main())
