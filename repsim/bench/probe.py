"""``repsim bench probe``: the batched probe sweep against training each setting alone.

Both sides train the same settings with the same initialisation and batch order in this process:
:func:`repsim.probe.train_sweep` (all settings as one batched layer) against
:func:`repsim.probe.train_reference` (``torch.nn.Linear`` + ``torch.optim.AdamW``, one setting at a
time). Sequential training costs the same for every setting, so by default only a few settings are
timed and the total is extrapolated (``--sequential 0`` times them all). Then the full
:func:`repsim.linear_probe` (coarse and fine search plus retraining, all seeds) is timed: the cost
of one model on one dataset. Data are synthetic Gaussian classes on the unit sphere.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsim.probe import DEFAULT_LRS, linear_probe, train_reference, train_sweep

logger = logging.getLogger(__name__)


def _data(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy Gaussian classes on the unit sphere; the class means are shared by every ``seed``."""
    means = np.random.default_rng(0).normal(size=(classes, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    y = rng.integers(0, classes, size=n)
    X = means[y] + 3.0 * rng.normal(size=(n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall time of ``fn()`` (waiting for the GPU to finish) and its value."""
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, value


def run(
    n: int = 10_000,
    dim: int = 768,
    classes: int = 100,
    settings: int = 56,
    epochs: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    device: str | None = None,
    sequential: int = 4,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Time the batched sweep, the sequential sweep (timed or extrapolated) and a full probe.

    Returns a dict of the timings (seconds), the speed-up and the problem size.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    X, y = _data(n, dim, classes, seed=0)
    n_wd = math.ceil(settings / len(DEFAULT_LRS))
    grid = [(lr, wd) for wd in np.logspace(-6, 1, n_wd) for lr in DEFAULT_LRS][:settings]
    lrs, wds = [g[0] for g in grid], [g[1] for g in grid]
    common = {"epochs": epochs, "batch_size": batch_size, "n_classes": classes, "device": dev}

    warm = {**common, "epochs": 1}  # first calls pay for allocator and kernel set-up
    train_sweep(X[:2048], y[:2048], lrs, wds, **warm)
    train_reference(X[:2048], y[:2048], lrs[0], wds[0], **warm)

    batched, _ = _timed(lambda: train_sweep(X, y, lrs, wds, **common), dev)
    n_seq = settings if sequential <= 0 else min(sequential, settings)
    picks = np.linspace(0, settings - 1, n_seq).round().astype(int)
    seq_timed = sum(
        _timed(lambda i=i: train_reference(X, y, lrs[i], wds[i], **common), dev)[0] for i in picks
    )
    seq_total = seq_timed / n_seq * settings

    n_test = max(classes, n // 5)
    X_test, y_test = _data(n_test, dim, classes, seed=1)
    y_test = np.where(np.isin(y_test, y), y_test, y[0])  # only classes the probe has seen
    probe_s, probe = _timed(
        lambda: linear_probe(
            X, y, X_test, y_test, seeds=seeds, epochs=epochs, batch_size=batch_size, device=dev
        ),
        dev,
    )
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "n": n,
        "dim": dim,
        "classes": classes,
        "settings": settings,
        "epochs": epochs,
        "batch_size": batch_size,
        "batched_s": batched,
        "sequential_timed_settings": int(n_seq),
        "sequential_s": seq_total,
        "sequential_extrapolated": bool(n_seq < settings),
        "speedup": seq_total / batched,
        "full_probe_seeds": [int(s) for s in seeds],
        "full_probe_s": probe_s,
        "full_probe_settings_per_seed": int(np.isfinite(probe.val_accuracy[0]).sum()),
        "full_probe_mean_accuracy": probe.mean_accuracy,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run the benchmark, log a summary and optionally write JSON."""
    p = argparse.ArgumentParser(prog="repsim bench probe", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="train rows")
    p.add_argument("--dim", type=int, default=768, help="feature dimension")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--settings", type=int, default=56, help="(lr, wd) settings in the sweep")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="for the full probe")
    p.add_argument("--sequential", type=int, default=4, help="settings timed alone; 0 = all")
    p.add_argument("--device", default=None, help="cuda, cpu ... (default: cuda if available)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(list(argv) if argv is not None else None)
    res = run(
        n=args.n,
        dim=args.dim,
        classes=args.classes,
        settings=args.settings,
        epochs=args.epochs,
        seeds=args.seeds,
        device=args.device,
        sequential=args.sequential,
        batch_size=args.batch_size,
    )
    how = f"extrapolated from {res['sequential_timed_settings']}"
    logger.info(
        "probe sweep on %s, n=%d d=%d C=%d, %d settings x %d epochs: batched %.2f s, "
        "sequential %.2f s (%s settings), speed-up %.1fx",
        res["device"], res["n"], res["dim"], res["classes"], res["settings"], res["epochs"],
        res["batched_s"], res["sequential_s"],
        how if res["sequential_extrapolated"] else "all", res["speedup"],
    )  # fmt: skip
    logger.info(
        "full linear_probe (coarse + fine search, retrain), seeds %s: %.2f s, mean accuracy %.3f",
        res["full_probe_seeds"], res["full_probe_s"], res["full_probe_mean_accuracy"],
    )  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
