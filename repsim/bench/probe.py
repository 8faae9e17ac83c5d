"""``repsim bench probe``: the batched probe sweep against training each setting alone.

Both sides train the same settings with the same initialisation and batch order in this process:
:func:`repsim.probe.train_sweep` (all settings as one batched layer) against
:func:`repsim.probe.train_reference` (``torch.nn.Linear`` + ``torch.optim.AdamW``, one setting at a
time). Sequential training costs the same for every setting, so by default only a few settings are
timed and the total is extrapolated (``--sequential 0`` times them all). Then the full
:func:`repsim.linear_probe` (coarse and fine search plus retraining, all seeds) is timed: the cost
of one model on one dataset. Data are synthetic Gaussian classes on the unit sphere.

``--study`` prices the probes where they cost: at the study's sizes (n in {100k, 300k, 1.28M}
train rows, d in {384, 1024, 1536}, 1,000 classes; the sizes that fit in memory) it times
training steps of each phase of the protocol (coarse search: 32 settings, fine search: three
rounds of at most 8, retraining: 3 seeds x 1 setting; batch 1024) and prices a full probe as
steps x measured seconds per step (:func:`study_probe_seconds`); :func:`fit_step_cost` fits the per-step cost to those
points, which is what the projection of ``repsim bench all --gpu`` uses. ``--precision-check``
trains the same probes in float32 and with bfloat16 matmuls and reports the accuracy difference.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsim.argtypes import DEVICE_HELP, Parser, at_least
from repsim.device import resolve_device
from repsim.probe import (
    DEFAULT_LRS,
    REFINE_STEPS,
    _train_batched,
    coarse_indices,
    linear_probe,
    train_reference,
    train_sweep,
)
from repsim.runfolder import check_output_path, write_output

logger = logging.getLogger(__name__)


def _data(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy Gaussian classes on the unit sphere; the class means are shared by every ``seed``."""
    means = np.random.default_rng(0).normal(size=(classes, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    y = rng.integers(0, classes, size=n)
    X = means[y] + 3.0 * rng.normal(size=(n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def _on_gpu(device: str | None) -> bool:
    """Whether ``device`` (as ``--device`` takes it: ``auto`` too) is a GPU."""
    return resolve_device(device).type == "cuda"


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
    dev = resolve_device(device)
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


#: the study's probe sizes (train rows x feature dims) at 1,000 classes (ImageNet-1k train split)
STUDY_N: tuple[int, ...] = (100_000, 300_000, 1_281_167)
STUDY_DIMS: tuple[int, ...] = (384, 1024, 1536)
STUDY_CLASSES = 1000
#: the study's protocol (data/configs/paper.yaml: 3 seeds, one search per seed) in phases:
#: (name, seeds trained at once K, settings per seed S, share of the train rows it trains on,
#: rounds); a fine round tries at most the two neighbours of each learning rate's best
PHASES: tuple[tuple[str, int, int, float, int], ...] = (
    ("coarse", 3, len(DEFAULT_LRS) * len(coarse_indices(64)), 0.8, 1),
    ("fine", 3, len(DEFAULT_LRS) * 2, 0.8, len(REFINE_STEPS)),
    ("final", 3, 1, 1.0, 1),
)


def step_seconds(
    n: int,
    dim: int,
    classes: int,
    *,
    seeds: int,
    settings: int,
    batch_size: int = 1024,
    steps: int = 8,
    warmup: int = 2,
    device: str | None = None,
    precision: str = "float32",
) -> float:
    """Measured seconds of one training step of ``seeds x settings`` probes on ``n`` rows.

    The features are random unit vectors of all ``n`` rows on the device (so the batch gather
    reads from a train split of the real size); ``warmup`` steps are run and discarded first.
    """
    dev = resolve_device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    X = torch.randn(n, dim, generator=g, device=dev)
    X /= X.norm(dim=1, keepdim=True)
    y = torch.randint(0, classes, (n,), generator=g, device=dev)
    lr = torch.full((seeds, settings), 1e-3)
    wd = torch.full((seeds, settings), 1e-4)

    def train(k: int) -> None:
        rows = torch.randint(0, n, (seeds, k * batch_size), generator=g, device=dev)
        _train_batched(X, y, rows, list(range(seeds)), lr, wd, classes, 1, batch_size,
                       "bench", precision)  # fmt: skip

    train(warmup)
    seconds, _ = _timed(lambda: train(steps), dev)
    return seconds / steps


def study_probe_seconds(
    n: int, per_step: Mapping[str, float], epochs: int = 20, batch_size: int = 1024
) -> float:
    """Seconds of one full probe of the study's protocol: steps of each phase x seconds per step.

    Scoring the validation and test rows (one forward pass each) is left out: under 1% of the
    training steps' work at 20 epochs.
    """
    return sum(
        rounds * epochs * math.ceil(share * n / batch_size) * per_step[name]
        for name, _, _, share, rounds in PHASES
    )


def fit_step_cost(points: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per phase, ``(a, c)`` of ``seconds per step = a * K*S*d*C + c`` fitted to measured points.

    ``points`` hold ``dim``, ``classes`` and ``per_step`` (phase -> seconds); the fit is least
    squares in relative error with a, c >= 0, so a small problem's fixed cost (kernel launches)
    and a large one's matmul cost both count.
    """
    from scipy.optimize import nnls

    out = {}
    for name, k, s, _, _ in PHASES:
        work = np.array([k * s * p["dim"] * p["classes"] for p in points], dtype=np.float64)
        t = np.array([p["per_step"][name] for p in points], dtype=np.float64)
        if len(points) == 1 or np.ptp(work) == 0:
            out[name] = (float(t.mean() / work.mean()), 0.0)
            continue
        A = np.stack([work, np.ones_like(work)], axis=1) / t[:, None]
        coef, _ = nnls(A, np.ones_like(t))
        out[name] = (float(coef[0]), float(coef[1]))
    return out


def step_cost(dim: int, classes: int, fit: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Seconds per step of each phase for ``dim`` x ``classes`` from :func:`fit_step_cost`."""
    return {
        name: fit[name][0] * k * s * dim * classes + fit[name][1] for name, k, s, _, _ in PHASES
    }


def fits_in_memory(
    n: int, dim: int, classes: int, device: str, budget_gb: float, batch_rows: int = 1024
) -> bool:
    """Whether the features (n x d) and the coarse phase's weights, optimiser state and one
    batch of logits fit in ``budget_gb``."""
    k, s = PHASES[0][1], PHASES[0][2]
    weights = 4 * k * s * dim * classes + batch_rows * k * s * classes  # W, m, v, grad; logits
    return 4 * (n * dim + weights) / 1e9 <= budget_gb


def study_sweep(
    ns: Sequence[int] = STUDY_N,
    dims: Sequence[int] = STUDY_DIMS,
    classes: int = STUDY_CLASSES,
    *,
    device: str | None = None,
    steps: int = 8,
    batch_size: int = 1024,
    precision: str = "float32",
    memory_budget_gb: float | None = None,
) -> dict[str, Any]:
    """Seconds per step of each phase at each (n, d) that fits, and the full probe they price.

    Sizes above ``memory_budget_gb`` (default: 80% of the GPU's memory, 8 GB on a CPU) are listed
    as skipped, not measured.
    """
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if memory_budget_gb is None:
        if dev.startswith("cuda"):
            memory_budget_gb = 0.8 * torch.cuda.get_device_properties(dev).total_memory / 1e9
        else:
            memory_budget_gb = 8.0
    points, skipped = [], []
    for n in ns:
        for d in dims:
            if not fits_in_memory(n, d, classes, dev, memory_budget_gb):
                skipped.append({"n": n, "dim": d, "why": f"over {memory_budget_gb:.0f} GB"})
                continue
            per_step = {
                name: step_seconds(
                    n,
                    d,
                    classes,
                    seeds=k,
                    settings=s,
                    batch_size=batch_size,
                    steps=steps,
                    device=dev,
                    precision=precision,
                )  # fmt: skip
                for name, k, s, _, _ in PHASES
            }
            points.append(
                {
                    "n": n,
                    "dim": d,
                    "classes": classes,
                    "per_step": per_step,
                    "full_probe_s": study_probe_seconds(n, per_step, batch_size=batch_size),
                }
            )
            logger.info(
                "probe steps n=%d d=%d C=%d (%s): %s; full probe %.1f s",
                n, d, classes, precision,
                ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in per_step.items()),
                points[-1]["full_probe_s"],
            )  # fmt: skip
    return {
        "device": torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu",
        "precision": precision,
        "batch_size": batch_size,
        "steps_timed": steps,
        "points": points,
        "skipped": skipped,
    }


def precision_check(
    n: int = 4000,
    dim: int = 64,
    classes: int = 20,
    n_test: int = 10_000,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 20,
    batch_size: int = 1024,
    device: str | None = None,
    shared_search: bool = True,
) -> dict[str, Any]:
    """The same probes in float32 and with bfloat16 matmuls: accuracies and their difference.

    The criterion (this project's, for a faster probe; the study trained in float32) is every
    accuracy within 0.2 points of float32; ``n_test`` is
    large so that one test row is far below that (0.01 points at 10,000 rows).
    """
    X, y = _data(n, dim, classes, seed=0)
    X_test, y_test = _data(n_test, dim, classes, seed=1)
    y_test = np.where(np.isin(y_test, y), y_test, y[0])
    opts = {"seeds": seeds, "epochs": epochs, "batch_size": batch_size, "device": device,
            "shared_search": shared_search}  # fmt: skip
    out: dict[str, Any] = {"n": n, "dim": dim, "classes": classes, "n_test": n_test}
    for precision in ("float32", "bfloat16"):
        seconds, res = _timed(
            lambda p=precision: linear_probe(X, y, X_test, y_test, precision=p, **opts),
            resolve_device(device),
        )
        out[precision] = {
            "accuracy": [float(a) for a in res.accuracy],
            "lr": [float(v) for v in res.lr],
            "wd": [float(v) for v in res.wd],
            "seconds": seconds,
        }
    diff = np.abs(np.subtract(out["float32"]["accuracy"], out["bfloat16"]["accuracy"]))
    out["max_abs_diff_points"] = float(100 * diff.max())
    out["within_0_2_points"] = bool(100 * diff.max() <= 0.2)
    out["same_choice"] = out["float32"]["lr"] == out["bfloat16"]["lr"] and (
        out["float32"]["wd"] == out["bfloat16"]["wd"]
    )
    return out


def build_parser() -> Parser:
    """The options of ``repsim bench probe`` (``bench all --set probe.KEY`` is checked against
    them too)."""
    p = Parser(prog="repsim bench probe", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=at_least(2), default=10_000, help="train rows")
    p.add_argument("--dim", type=at_least(1), default=768, help="feature dimension")
    p.add_argument("--classes", type=at_least(2), default=100)
    p.add_argument(
        "--settings", type=at_least(1), default=56, help="(lr, wd) settings in the sweep"
    )
    p.add_argument("--epochs", type=at_least(1), default=20)
    p.add_argument("--batch-size", type=at_least(1), default=1024)
    p.add_argument(
        "--seeds", type=at_least(0), nargs="+", default=[0, 1, 2], help="for the full probe"
    )
    p.add_argument(
        "--sequential", type=at_least(0), default=4, help="settings timed alone; 0 = all"
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--study", action="store_true", help="time steps at the study's sizes")
    p.add_argument(
        "--study-n", type=at_least(2), nargs="+", default=None, help="train rows (--study)"
    )
    p.add_argument("--study-dims", type=at_least(1), nargs="+", default=None, help="dims (--study)")
    p.add_argument("--steps", type=at_least(1), default=8, help="timed steps per phase (--study)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    p.add_argument(
        "--precision-check", action="store_true", help="float32 against bfloat16 accuracies"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run the benchmark, log a summary and optionally write JSON."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    check_output_path(args.json, "--json")
    if args.study or args.precision_check:
        res: dict[str, Any] = {}
        if args.study:
            default_ns = STUDY_N if _on_gpu(args.device) else (10_000, 30_000)
            res["study"] = study_sweep(
                args.study_n or default_ns,
                args.study_dims or STUDY_DIMS,
                args.classes if args.classes != 100 else STUDY_CLASSES,
                device=args.device,
                steps=args.steps,
                precision=args.precision,
            )
        if args.precision_check:
            res["precision_check"] = chk = precision_check(device=args.device)
            logger.info(
                "bfloat16 matmuls against float32 (n=%d d=%d C=%d, %d test rows): max accuracy "
                "difference %.3f points (%s 0.2), same lr/wd chosen: %s",
                chk["n"], chk["dim"], chk["classes"], chk["n_test"], chk["max_abs_diff_points"],
                "within" if chk["within_0_2_points"] else "NOT within", chk["same_choice"],
            )  # fmt: skip
        if args.json is not None:
            write_output(args.json, json.dumps(res, indent=2), "--json")
        return 0
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
        write_output(args.json, json.dumps(res, indent=2), "--json")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
