"""Benchmark: the all-pairs engine against the per-pair path, in the same process.

The engine (:func:`repsim.measures.similarity_matrices`) runs each measure family's batched kernel.
The baseline is the registry's per-pair path, what the engine falls back to for a family without a
kernel and what per-pair reference code does (thingsvision's CKA, the study's scripts): the
measure's single-pair function (``MEASURES[name](X, Y)``, numpy float64 on the CPU) called for
every model pair from the features. It is timed on a few pairs and extrapolated to all
M (M - 1) / 2 pairs; the output says so. Features are random unit-norm float vectors with a shared
low-rank structure.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from repsim.argtypes import DEVICE_HELP, Parser, at_least
from repsim.device import resolve_device
from repsim.measures import parse_measure, similarity_matrices
from repsim.runfolder import check_output_path, write_output

logger = logging.getLogger(__name__)

DEFAULT_MEASURES = ("cka_linear", "cka_rbf_0.4")


def make_features(models: int, n: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random unit-norm features (n, dim) per model, correlated through a shared latent."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 16)).astype(np.float32)
    feats = {}
    for m in range(models):
        A = np.tanh(Z @ rng.normal(size=(16, dim)).astype(np.float32)) + rng.normal(
            size=(n, dim)
        ).astype(np.float32)
        feats[f"model{m:02d}"] = A / np.linalg.norm(A, axis=1, keepdims=True)
    return feats


def naive_pair(X: Any, Y: Any, measure: str) -> float:
    """One pair on the registry's per-pair path: the measure's single-pair function, from scratch.

    The same call the engine makes per pair for a family without a batched kernel; numpy or torch
    inputs (a tensor on a GPU is copied to the CPU), computed in float64.
    """
    return parse_measure(measure)(X, Y)


def run(
    models: int = 16,
    n: int = 5000,
    dim: int = 768,
    measures: Sequence[str] = DEFAULT_MEASURES,
    device: str | None = None,
    naive_pairs: int = 3,
) -> dict[str, Any]:
    """Time the engine and the per-pair path; return a dict of timings, the ratio and the agreement.

    The result keys keep the benchmark's historical names: ``naive_*`` is the per-pair path.
    """
    dev = resolve_device(device)
    feats = make_features(models, n, dim)
    _sync(dev)
    t0 = time.perf_counter()
    ds = similarity_matrices(feats, list(measures), device=dev)
    _sync(dev)
    engine_s = time.perf_counter() - t0
    ids = list(feats)
    all_pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    timed = all_pairs[: max(1, min(naive_pairs, len(all_pairs)))]
    worst = 0.0
    t0 = time.perf_counter()
    for a, b in timed:
        for m in measures:
            got = naive_pair(feats[a], feats[b], m)
            worst = max(worst, abs(got - float(ds[m].sel(model_a=a, model_b=b))))
    naive_timed_s = time.perf_counter() - t0
    naive_s = naive_timed_s * len(all_pairs) / len(timed)
    return {
        "device": str(dev),
        "models": models,
        "n": n,
        "dim": dim,
        "measures": list(measures),
        "engine_s": engine_s,
        "naive_s_extrapolated": naive_s,
        "naive_pairs_timed": len(timed),
        "naive_pairs_total": len(all_pairs),
        "naive_timed_s": naive_timed_s,
        "speedup": naive_s / engine_s,
        "max_abs_diff_vs_naive": worst,
        "torch_threads": torch.get_num_threads(),
    }


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def build_parser() -> Parser:
    """The options of ``repsim bench measures`` (``bench all --set measures.KEY`` is checked
    against them too)."""
    ap = Parser(prog="repsim bench measures", description=__doc__)
    ap.add_argument("--models", type=at_least(2), default=16, help="models (default: %(default)s)")
    ap.add_argument("--n", type=at_least(4), default=5000, help="stimuli (default: %(default)s)")
    ap.add_argument(
        "--dim", type=at_least(1), default=768, help="feature width (default: %(default)s)"
    )
    ap.add_argument(
        "--measures",
        nargs="+",
        default=list(DEFAULT_MEASURES),
        help=f"measures to time (default: {' '.join(DEFAULT_MEASURES)})",
    )
    ap.add_argument("--device", default=None, help=DEVICE_HELP)
    ap.add_argument(
        "--naive-pairs",
        type=at_least(1),
        default=3,
        help="pairs the per-pair path is timed on (default: %(default)s)",
    )
    ap.add_argument("--json", default=None, help="also write the result dict to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``repsim bench measures``: print engine and per-pair times and their ratio."""
    args = build_parser().parse_args(argv)
    check_output_path(args.json, "--json")
    res = run(args.models, args.n, args.dim, args.measures, args.device, args.naive_pairs)
    print(
        f"measures {' '.join(res['measures'])}: {res['models']} models x n={res['n']} x d={res['dim']} "
        f"on {res['device']} ({res['torch_threads']} threads)\n"
        f"  engine, all {res['naive_pairs_total']} pairs: {res['engine_s']:.2f} s\n"
        f"  per-pair path (single-pair functions): {res['naive_timed_s']:.2f} s for {res['naive_pairs_timed']} pairs, "
        f"extrapolated to {res['naive_pairs_total']} pairs: {res['naive_s_extrapolated']:.1f} s\n"
        f"  speedup: {res['speedup']:.1f}x   (max |engine - per-pair| on timed pairs: {res['max_abs_diff_vs_naive']:.1e})"
    )
    if args.json:
        write_output(args.json, json.dumps(res, indent=2), "--json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
