"""Benchmarks: each module has ``main(argv) -> int`` and compares against a baseline in-process.

``repsim bench all`` (:func:`run_all`) runs every benchmark with sizes suited to the device and
writes one report (JSON and markdown, with the machine's facts) to an output folder; ``--gpu``
runs the GPU suite of :mod:`repsim.bench.gpu` with its projection of the study's full scale.
A benchmark that fails is reported as failed and the others still run.
"""

from __future__ import annotations

import argparse
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from repsim.argtypes import DEVICE_HELP, Parser
from repsim.errors import ConfigError
from repsim.runfolder import check_output_path, check_path_option

log = logging.getLogger(__name__)

NAMES = ("measures", "extract", "probe", "run")
DEFAULT_OUT = "bench-results"

#: sizes per benchmark: the CPU ones finish in a few minutes in all on a 2-core laptop; the CUDA
#: ones are the benchmarks' full sizes (``--full`` selects them on any device)
CPU_SIZES: dict[str, dict[str, Any]] = {
    "measures": {"models": 16, "n": 2000, "dim": 768, "naive_pairs": 2},
    "extract": {"n_images": 32, "batch_size": 16},
    "probe": {
        "n": 2000,
        "dim": 256,
        "classes": 50,
        "settings": 56,
        "epochs": 20,
        "seeds": [0, 1, 2],
        "sequential": 2,
    },
    "run": {},
}
CUDA_SIZES: dict[str, dict[str, Any]] = {
    "measures": {"models": 16, "n": 5000, "dim": 768, "naive_pairs": 3},
    "extract": {"n_images": 2048, "batch_size": 256},
    "probe": {
        "n": 10_000,
        "dim": 768,
        "classes": 100,
        "settings": 56,
        "epochs": 20,
        "seeds": [0, 1, 2],
        "sequential": 4,
    },
    "run": {},
}


@dataclass(frozen=True)
class Benchmark:
    """How ``bench all`` runs one benchmark and turns its result dict into report tables."""

    run: Callable[..., dict[str, Any]]
    tables: Callable[[Mapping[str, Any]], list[tuple[list[str], list[list[str]]]]]
    description: str


def _f(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _run_measures(device: str, **kw: Any) -> dict[str, Any]:
    from repsim.bench import measures

    return measures.run(device=device, **kw)


def _tables_measures(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    size = f"{r['models']} models x n={r['n']} x d={r['dim']}, {', '.join(r['measures'])}"
    rows = [
        ["problem", size],
        [f"engine, all {r['naive_pairs_total']} pairs (s)", _f(r["engine_s"])],
        [
            f"naive per-pair loop, extrapolated from {r['naive_pairs_timed']} pairs (s)",
            _f(r["naive_s_extrapolated"], ".1f"),
        ],
        ["speed-up", _f(r["speedup"], ".1f") + "x"],
        ["max abs difference vs naive", _f(r["max_abs_diff_vs_naive"], ".1e")],
    ]
    return [(["measures", "value"], rows)]


def _run_extract(device: str, **kw: Any) -> dict[str, Any]:
    from repsim.bench import extract

    return extract.run(device=device, **kw)


def _tables_extract(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    rows = [
        [name, _f(m["whole_img_s"], ".1f"), _f(m["forward_img_s"], ".1f"), _f(m["ratio"])]
        for name, m in r["models"].items()
    ]
    header = [
        f"model ({r['n_images']} images, batch {r['batch_size']})",
        "whole path img/s",
        "forward-only img/s",
        "ratio",
    ]
    return [(header, rows)]


def _run_probe(device: str, **kw: Any) -> dict[str, Any]:
    from repsim.bench import probe

    return probe.run(device=device, **kw)


def _tables_probe(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    seq = (
        f"extrapolated from {r['sequential_timed_settings']}"
        if r["sequential_extrapolated"]
        else "all timed"
    )
    rows = [
        [
            "problem",
            f"n={r['n']} d={r['dim']} {r['classes']} classes, {r['settings']} settings x {r['epochs']} epochs, batch {r['batch_size']}",
        ],
        ["batched sweep (s)", _f(r["batched_s"])],
        [f"one setting at a time, {seq} (s)", _f(r["sequential_s"])],
        ["speed-up", _f(r["speedup"], ".1f") + "x"],
        [f"full linear_probe, seeds {r['full_probe_seeds']} (s)", _f(r["full_probe_s"])],
        ["full probe mean accuracy", _f(r["full_probe_mean_accuracy"], ".3f")],
    ]
    return [(["probe", "value"], rows)]


def _run_run(device: str, **kw: Any) -> dict[str, Any]:
    from repsim.bench import run

    return run.run(device=device, **kw)


def _tables_run(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    rows = [
        ["config", str(r["config"])],
        ["cold run (s)", _f(r["cold_s"], ".1f")],
        ["cached rerun (s)", _f(r["cached_rerun_s"], ".1f")],
    ]
    rows += [[f"stage {k} (s)", _f(v, ".1f")] for k, v in (r.get("stages_s") or {}).items()]
    return [(["end-to-end", "value"], rows)]


BENCHMARKS: dict[str, Benchmark] = {
    "measures": Benchmark(
        _run_measures,
        _tables_measures,
        "All-pairs similarity engine against a naive per-pair loop (random unit-norm features).",
    ),
    "extract": Benchmark(
        _run_extract,
        _tables_extract,
        "Whole extraction path (uint8 images -> preprocessing -> forward -> feature store) "
        "against the forward pass alone; random weights.",
    ),
    "probe": Benchmark(
        _run_probe,
        _tables_probe,
        "Batched linear-probe sweep against one setting at a time, and the full probe search.",
    ),
    "run": Benchmark(
        _run_run, _tables_run, "The pipeline end to end on a config, cold and then fully cached."
    ),
}


def default_sizes(device_type: str, full: bool = False) -> dict[str, dict[str, Any]]:
    """Per-benchmark keyword arguments for a device type (``cuda`` or anything else)."""
    src = CUDA_SIZES if (full or device_type == "cuda") else CPU_SIZES
    return {name: dict(kw) for name, kw in src.items()}


def apply_overrides(
    sizes: dict[str, dict[str, Any]], settings: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Apply ``NAME.KEY=VALUE`` overrides (values read as YAML, e.g. ``measures.n=5000``)."""
    for item in settings:
        key, sep, raw = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise ConfigError(f"--set {item!r}: write NAME.KEY=VALUE, e.g. --set measures.n=5000")
        if name not in sizes:
            raise ConfigError(
                f"--set {item!r}: unknown benchmark {name!r}; choose one of {', '.join(sizes)}"
            )
        if option not in sizes[name] and name in BENCHMARKS:
            known = _options(name)
            if option not in known:
                raise ConfigError(
                    f"--set {item!r}: {name} has no option {option!r}; choose from "
                    f"{', '.join(known)}"
                )
        sizes[name][option] = _override_value(item, raw, sizes[name].get(option))
        _check_option(item, name, option, sizes[name][option])
    return sizes


def _check_option(item: str, name: str, option: str, value: Any) -> None:
    """ConfigError when ``value`` breaks a bound of the benchmark's own option of that name
    (``repsim bench measures --models 1`` is a usage error): ``--set measures.models=1`` was run,
    after the other benchmarks, and failed inside with an InputError."""
    import importlib

    build = getattr(importlib.import_module(f"repsim.bench.{name}"), "build_parser", None)
    action = next((a for a in build()._actions if a.dest == option), None) if build else None
    if action is None or not callable(action.type):
        return
    for each in value if isinstance(value, list) else [value]:
        try:
            action.type(str(each))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            flag = action.option_strings[0] if action.option_strings else option
            raise ConfigError(f"--set {item!r}: {exc} (as {flag} of repsim bench {name})") from None


def _options(name: str) -> list[str]:
    """The keyword options of benchmark ``name``'s ``run`` function (``device`` is given by
    ``bench all`` itself): an unknown ``--set`` key was a TypeError inside the benchmark."""
    import importlib
    import inspect

    run = importlib.import_module(f"repsim.bench.{name}").run
    return [p for p in inspect.signature(run).parameters if p != "device"]


def _override_value(item: str, raw: str, default: Any) -> Any:
    """``raw`` read as a config value (``1e4`` a number), checked against the type of the
    size it replaces: a count stays an integer, so a typo is an error here and not a TypeError
    inside the benchmark."""
    from repsim.config import parse_yaml, whole_number

    try:
        value = parse_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    if isinstance(default, int) and not isinstance(default, bool):
        if whole_number(value) is None or whole_number(value) < 0:
            raise ConfigError(
                f"--set {item!r}: the value must be a whole number >= 0, e.g. {default}"
            )
        return whole_number(value)
    if isinstance(default, float) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise ConfigError(f"--set {item!r}: the value must be a number, e.g. {default}")
    return value


def run_benchmarks(
    names: Sequence[str],
    device: str,
    sizes: Mapping[str, Mapping[str, Any]],
    registry: Mapping[str, Benchmark] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run each named benchmark; a failure is recorded (with its error) and the next one runs.

    Returns name -> ``{status, seconds, kwargs, result, tables, description}`` or, on failure,
    ``{status: "failed", seconds, kwargs, error, traceback}``.
    """
    registry = BENCHMARKS if registry is None else registry
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        bench, kw = registry[name], dict(sizes.get(name, {}))
        log.info("benchmark %s on %s with %s", name, device, kw or "its defaults")
        t0 = time.perf_counter()
        try:
            result = bench.run(device, **kw)
            entry = {
                "status": "ok",
                "result": result,
                "tables": bench.tables(result),
                "description": bench.description,
            }
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            log.error("benchmark %s failed: %s: %s", name, type(exc).__name__, exc)
            entry = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        entry.update(seconds=time.perf_counter() - t0, kwargs=kw)
        out[name] = entry
    return out


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = Parser(prog="repsim bench all", description=__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"benchmarks to run (default all): {', '.join(NAMES)}; with --gpu: extract, similarity, probe, decode_once",
    )
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder for bench.json and bench.md (bench-gpu.json and bench-gpu.md "
        f"with --gpu; default {DEFAULT_OUT}/)",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="run the GPU suite and the projection of the study's full scale",
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument(
        "--full",
        action="store_true",
        help="the full sizes a GPU runs (e.g. measures 16 models x 5000 stimuli), on any device",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="override one size, e.g. --set measures.n=5000 (repeatable)",
    )
    return p.parse_args(list(argv))


def run_all(argv: Sequence[str] | None = None) -> int:
    """``repsim bench all``: run the benchmarks, write ``OUT/bench.{json,md}``, print the markdown.

    Exit status 0 when every benchmark ran, 1 when any failed (its error is in the report).
    """
    from repsim.bench.report import write_report
    from repsim.device import resolve_device
    from repsim.runinfo import machine_info

    args = _parse(argv or [])
    check_path_option(args.out, "--out")
    device = str(resolve_device(args.device))
    if args.gpu:
        from repsim.bench import gpu

        check_output_path(args.out, "--out", "folder")
        report = gpu.run_suite(device=device, only=args.only, overrides=args.set)
        stem = "bench-gpu"
    else:
        unknown = sorted(set(args.only or ()) - set(NAMES))
        if unknown:
            raise ConfigError(
                f"--only: unknown benchmarks {unknown}; choose from {', '.join(NAMES)}"
            )
        names = [n for n in NAMES if n in (args.only or NAMES)]
        sizes = apply_overrides(default_sizes(device.split(":")[0], args.full), args.set)
        check_output_path(args.out, "--out", "folder")  # made once the options are checked
        report = {
            "title": f"repsim benchmarks ({device})",
            "machine": machine_info(device),
            "benchmarks": run_benchmarks(names, device, sizes),
        }
        stem = "bench"
    json_path, md_path = write_report(report, Path(args.out), stem)
    print(md_path.read_text())  # the report is this command's output
    print(f"written: {json_path} and {md_path}")
    failed = [n for n, e in report["benchmarks"].items() if e.get("status") != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)} (see the report for the errors)")
    return 1 if failed else 0
