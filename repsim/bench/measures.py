"""Benchmark: the all-pairs engine against a naive per-pair loop, in the same process.

The naive loop is what per-pair reference code does (thingsvision's CKA, the study's scripts): for
every model pair and measure it rebuilds both n x n kernel matrices (or RDMs) from the features, centres
them and reduces. It is timed on a few pairs and extrapolated to all M (M - 1) / 2 pairs; the output
says so. Features are random unit-norm float vectors with a shared low-rank structure.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from repsim.measures import parse_measure, similarity_matrices
from repsim.measures.engine import _device

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


def naive_pair(X: torch.Tensor, Y: torch.Tensor, measure: str) -> float:
    """One pair, from scratch: both n x n matrices rebuilt, centred and reduced."""
    spec = parse_measure(measure)
    p = spec.params
    if spec.family == "cka":
        mats = []
        for A in (X, Y):
            G = A @ A.T
            if p["kernel"] == "rbf":
                q = torch.diagonal(G)
                G = torch.exp(
                    -(q[:, None] + q[None, :] - 2 * G).clamp(min=0) / (2 * p["sigma"] ** 2)
                )
            mats.append(_u_centre(G) if p["unbiased"] else _h_centre(G))
        K, L = mats
        return float((K * L).sum() / torch.sqrt((K * K).sum() * (L * L).sum()))
    if spec.family == "rsa":
        vecs = []
        for A in (X, Y):
            Z = A - A.mean(1, keepdim=True)
            Z = Z / Z.norm(dim=1, keepdim=True)
            iu = torch.triu_indices(A.shape[0], A.shape[0], 1, device=A.device)
            v = (1 - Z @ Z.T)[iu[0], iu[1]]
            vecs.append(
                torch.argsort(torch.argsort(v)).double() if p["compare"] == "spearman" else v
            )
        a, b = (v - v.mean() for v in vecs)
        return float((a @ b) / (a.norm() * b.norm()))
    raise ValueError(f"no naive baseline for {measure}")


def _u_centre(K: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    K = K - torch.diag(torch.diagonal(K))
    r = K.sum(1)
    U = K - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    return U - torch.diag(torch.diagonal(U))


def _h_centre(K: torch.Tensor) -> torch.Tensor:
    r = K.mean(1)
    return K - r[:, None] - r[None, :] + r.mean()


def run(
    models: int = 16,
    n: int = 5000,
    dim: int = 768,
    measures: Sequence[str] = DEFAULT_MEASURES,
    device: str | None = None,
    naive_pairs: int = 3,
) -> dict[str, Any]:
    """Time the engine and the naive loop; return a dict of timings, the ratio and the agreement."""
    dev = _device(device)
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
        X = torch.from_numpy(feats[a]).to(dev, torch.float64)
        Y = torch.from_numpy(feats[b]).to(dev, torch.float64)
        for m in measures:
            worst = max(worst, abs(naive_pair(X, Y, m) - float(ds[m].sel(model_a=a, model_b=b))))
    _sync(dev)
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


def main(argv: list[str] | None = None) -> int:
    """``repsim bench measures``: print engine and naive times and their ratio."""
    ap = argparse.ArgumentParser(prog="repsim bench measures", description=__doc__)
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES))
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--naive-pairs", type=int, default=3, help="pairs the naive loop is timed on")
    ap.add_argument("--json", default=None, help="also write the result dict to this file")
    args = ap.parse_args(argv)
    res = run(args.models, args.n, args.dim, args.measures, args.device, args.naive_pairs)
    print(
        f"measures {' '.join(res['measures'])}: {res['models']} models x n={res['n']} x d={res['dim']} "
        f"on {res['device']} ({res['torch_threads']} threads)\n"
        f"  engine, all {res['naive_pairs_total']} pairs: {res['engine_s']:.2f} s\n"
        f"  naive per-pair loop: {res['naive_timed_s']:.2f} s for {res['naive_pairs_timed']} pairs, "
        f"extrapolated to {res['naive_pairs_total']} pairs: {res['naive_s_extrapolated']:.1f} s\n"
        f"  speedup: {res['speedup']:.1f}x   (max |engine - naive| on timed pairs: {res['max_abs_diff_vs_naive']:.1e})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
