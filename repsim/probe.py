"""Linear probes on frozen features: the study's measure of a model's behaviour on a dataset.

The protocol follows the study (one linear layer with bias on L2-normalised features, cross-entropy,
AdamW, cosine schedule without warm-up, a learning-rate x weight-decay search on a stratified
validation split, retraining on the whole train split). What makes it fast is that the search is
not a loop: every candidate (learning rate, weight decay) and every seed is one slice of a single
batched linear layer with weights ``(seed, d, setting, class)``, trained by one pass over the data
per step with a hand-written AdamW whose learning rate and weight decay are tensors, one value per
setting. Each slice follows exactly the trajectory that ``torch.optim.AdamW`` would give that setting
alone (same initialisation, same batch order); :func:`train_reference` is that one-at-a-time
version, kept for the tests and the benchmark.

Numerics: float32 throughout by default. Matmuls follow torch's global TF32 switch (off by
default); a probe's accuracy does not need more precision than that. ``precision="bfloat16"`` runs
the two matmuls of each training step on bfloat16 copies of the batch and the weights with float32
accumulation and float32 results (on a CPU the same arithmetic is emulated in float32);
weights, optimiser state and scoring stay float32. ``repsim bench probe --precision-check``
measures what that does to the accuracies.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from repsim.device import PROBE_PRECISIONS, resolve_device
from repsim.errors import ConstantFeaturesError, InputError, check_count
from repsim.measures._inputs import check_flag, real_array

logger = logging.getLogger(__name__)

DEFAULT_LRS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
DEFAULT_WDS: np.ndarray = np.logspace(-6, 1, 64)
#: the fine search's rounds (the study's): grid steps either side of each learning rate's best
#: weight decay so far, one round per step
REFINE_STEPS: tuple[int, ...] = (4, 2, 1)
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # torch.optim.AdamW defaults
_EVAL_ELEMENTS = 2**26  # logits per chunk when scoring (256 MB of float32)


def _check_precision(precision: str) -> bool:
    """True for bfloat16 matmuls; InputError naming the choices for anything else."""
    if precision not in PROBE_PRECISIONS:
        raise InputError(
            f"precision must be one of {', '.join(PROBE_PRECISIONS)}; got {precision!r}."
        )
    return precision == "bfloat16"


def _bmm(a: torch.Tensor, b: torch.Tensor, half: bool) -> torch.Tensor:
    """``a @ b`` batched, float32 result; with ``half`` on bfloat16 inputs, float32 accumulation."""
    if not half:
        return torch.bmm(a, b)
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    if a.is_cuda:
        return torch.bmm(a16, b16, out_dtype=torch.float32)
    # no bfloat16 -> float32 matmul on CPU: the same arithmetic (a product of two bfloat16
    # numbers is exact in float32), emulated, for tests and checks rather than speed
    return torch.bmm(a16.float(), b16.float())


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`; arrays are indexed by seed in the order of ``seeds``.

    ``val_accuracy`` is the search grid ``(seed, lr, wd)`` over ``lrs`` (high to low) x ``wds``
    (low to high), the grids sorted whatever order they were given in, NaN where the
    coarse-then-fine search did not train that setting or where its training diverged (a
    non-finite validation loss; such a setting is never chosen). ``classes`` maps class index to the
    original label.
    """

    seeds: np.ndarray
    accuracy: np.ndarray
    balanced_accuracy: np.ndarray
    lr: np.ndarray
    wd: np.ndarray
    lrs: np.ndarray
    wds: np.ndarray
    val_accuracy: np.ndarray
    classes: np.ndarray

    @property
    def mean_accuracy(self) -> float:
        """Top-1 test accuracy averaged over seeds (the study's number per model and dataset)."""
        return float(np.mean(self.accuracy))

    @property
    def mean_balanced_accuracy(self) -> float:
        """Balanced test accuracy averaged over seeds."""
        return float(np.mean(self.balanced_accuracy))

    def to_xarray(self) -> Any:
        """The result as an ``xr.Dataset`` with dims ``seed`` (and ``lr``, ``wd`` for the grid)."""
        import xarray as xr

        seed = ("seed", self.seeds)
        return xr.Dataset(
            {
                "accuracy": ("seed", self.accuracy),
                "balanced_accuracy": ("seed", self.balanced_accuracy),
                "chosen_lr": ("seed", self.lr),
                "chosen_wd": ("seed", self.wd),
                "val_accuracy": (("seed", "lr", "wd"), self.val_accuracy),
            },
            coords={"seed": seed, "lr": self.lrs, "wd": self.wds},
        )


# ----------------------------------------------------------------------------- input handling


def _features(X: Any, name: str, device: torch.device, normalize: bool) -> torch.Tensor:
    """Validate a feature matrix and return it as float32 on ``device``, optionally L2-normalised."""
    t = torch.as_tensor(real_array(X, name)).detach()
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(
            f"{name} must be a non-empty 2-D array (n_samples, n_features); got shape "
            f"{tuple(t.shape)}. Pass one feature vector per row."
        )
    t = t.to(device=device, dtype=torch.float32)
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or inf; fix or drop those rows before probing.")
    if normalize:
        t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return t.contiguous()


def stream_features(
    chunks: Iterable[Any],
    n_rows: int,
    *,
    device: str | torch.device | None = None,
    normalize: bool = True,
    name: str = "X_train",
) -> torch.Tensor:
    """Feature rows arriving in chunks (e.g. a store's chunks) as one float32 tensor on ``device``.

    A chunk is an array of the next rows, or a pair ``(positions, rows)`` that places its rows
    anywhere (what :meth:`repsim.store.FeatureStore.iter_rows` yields). The tensor is allocated
    once and filled chunk by chunk, each chunk converted and (with ``normalize``) L2-normalised on
    its own, so a large train split is never whole in host memory nor held twice on the device; the
    rows equal those of :func:`linear_probe`'s own conversion bit for bit. Pass the result to
    :func:`linear_probe` with ``normalize=False``.
    """
    dev = resolve_device(device)
    out: torch.Tensor | None = None
    filled = np.zeros(n_rows, dtype=bool)
    start = 0
    for chunk in chunks:
        if isinstance(chunk, tuple):
            positions, rows = np.asarray(chunk[0], dtype=np.int64), chunk[1]
        else:
            positions, rows = None, chunk
        t = _features(rows, name, dev, normalize)
        if out is None:
            out = torch.empty((n_rows, t.shape[1]), dtype=torch.float32, device=dev)
        if positions is None:
            positions = np.arange(start, start + t.shape[0])
        start += t.shape[0]
        bad = positions.size != t.shape[0] or t.shape[1] != out.shape[1]
        bad = bad or positions.size == 0 or positions.min() < 0 or positions.max() >= n_rows
        if bad or filled[positions].any():
            raise InputError(
                f"{name}: a chunk of shape {tuple(t.shape)} does not fit the ({n_rows}, "
                f"{out.shape[1]}) matrix (rows out of range or given twice); pass chunks of one "
                "width that fill every row once."
            )
        filled[positions] = True
        out[torch.as_tensor(positions, device=dev)] = t
    if out is None or not filled.all():
        raise InputError(
            f"{name}: the chunks held {int(filled.sum())} rows, not the {n_rows} expected."
        )
    return out


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            f"{name} must be 1-D with one label per feature row ({n}); got shape {arr.shape}."
        )
    missing = (
        np.isnan(arr)
        if arr.dtype.kind in "fc"
        else pd.isna(arr)  # None, NaN of any float type, pandas' NA and NaT
        if arr.dtype.kind == "O"
        else np.zeros(arr.shape, dtype=bool)
    )
    if missing.any():  # np.unique would make "missing" one more class
        raise InputError(
            f"{name} has {int(missing.sum())} missing labels (NaN or None), first at row "
            f"{int(np.flatnonzero(missing)[0])}; drop those rows (features and labels) before probing."
        )
    return arr


def encode_labels(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, ...]:
    """Map arbitrary labels to ``0..C-1`` by the sorted train classes.

    Returns ``(classes, train_index, test_index)``. A test class that never occurs in the train
    split cannot be predicted by a probe, so it is an error rather than a silent zero recall.
    """
    try:
        classes = np.unique(y_train)
        unseen = np.setdiff1d(np.unique(y_test), classes)
    except TypeError as err:  # e.g. ints mixed with strings: no order to map them by
        raise InputError(
            f"labels must be of one sortable kind (all numbers or all strings); sorting them "
            f"failed: {err}. Convert them, e.g. y.astype(str)."
        ) from None
    if classes.size < 2:
        raise InputError(
            f"the train split has {classes.size} class(es); a probe needs at least 2. Check labels."
        )
    if unseen.size:
        raise InputError(
            f"test labels {unseen[:10].tolist()} (of {unseen.size}) never occur in the train split; "
            "drop those test rows or add train examples of those classes."
        )
    return classes, np.searchsorted(classes, y_train), np.searchsorted(classes, y_test)


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices into (train, validation).

    Each class with n_c >= 2 rows sends ``round(val_fraction * n_c)`` rows (at least 1, at most
    n_c - 1) to validation, so every class stays trainable; a class with a single row stays in
    train. Sizes depend only on the class counts, so all seeds get splits of equal size.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1); got {val_fraction}.")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rows = rows[rng.permutation(rows.size)]
        n_val = (
            0 if rows.size < 2 else min(rows.size - 1, max(1, int(val_fraction * rows.size + 0.5)))
        )
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# ----------------------------------------------------------------------------- training


def init_params(d: int, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial weights ``(d, C)`` and bias ``(C,)`` as ``torch.nn.Linear`` draws them, seeded."""
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(d)
    w = (torch.rand(n_classes, d, generator=g) * 2 - 1) * bound
    b = (torch.rand(n_classes, generator=g) * 2 - 1) * bound
    return w.T.contiguous(), b


def _orders(n: int, seed: int) -> Iterator[torch.Tensor]:
    """The seeded sequence of per-epoch permutations of ``n`` rows."""
    g = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randperm(n, generator=g)


def _cosine(step: int, total: int) -> float:
    """Cosine factor without warm-up, stepped once per optimiser step (as the study does)."""
    return 0.5 * (1.0 + math.cos(math.pi * step / total))


def _adamw_(p, g, m, v, lr, decay, step: int) -> None:
    """One AdamW step in place; ``lr`` and ``decay = 1 - lr * wd`` broadcast per setting.

    ``g`` is used as scratch space afterwards, which saves two allocations of the weights' size.
    ``lr`` and ``decay`` may be expanded over the class axis (same values): the elementwise loops
    then run over whole rows of settings x classes instead of one class count at a time.
    """
    p.mul_(decay)
    m.lerp_(g, 1 - _BETA1)
    v.mul_(_BETA2).addcmul_(g, g, value=1 - _BETA2)
    denom = torch.sqrt(v, out=g).div_(math.sqrt(1 - _BETA2**step)).add_(_EPS)
    p.sub_(torch.div(m, denom, out=g).mul_(lr / (1 - _BETA1**step)))


def _schedule(
    lr: torch.Tensor, wd: torch.Tensor, total: int, steps: range | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step learning rates ``lr * f`` and decays ``1 - lr * f * wd`` of the ``steps`` (default
    all ``total``) of a ``total``-step cosine schedule, shape ``(len(steps), *lr.shape)``.

    The same float32 operations, in the same order, as computing them at each step from the cosine
    factor ``f`` (:func:`_cosine`, rounded to float32 as a scalar operand is), for many steps at once.
    """
    steps = range(total) if steps is None else steps
    f = torch.tensor([_cosine(t, total) for t in steps], dtype=torch.float32)
    f = f.view(-1, *([1] * lr.dim()))
    lr_f = lr.unsqueeze(0) * f
    return lr_f, 1 - lr_f * wd.unsqueeze(0)


def _train_batched(
    X: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    seeds: Sequence[int],
    lr: torch.Tensor,
    wd: torch.Tensor,
    n_classes: int,
    epochs: int,
    batch_size: int,
    desc: str = "probe",
    precision: str = "float32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``K x S`` probes at once: seed k trains on ``X[rows[k]]`` with settings ``lr[k], wd[k]``.

    Returns weights ``(K, d, S, C)`` and bias ``(K, S, C)``. Per step: one gather of the batch rows,
    one batched matmul forward and one backward, a softmax, and AdamW; the learning-rate schedule
    is computed once for all steps, so a step launches no small tensor operations of its own.
    """
    K, n = rows.shape
    S, d, C = lr.shape[1], X.shape[1], n_classes
    dev = X.device
    half = _check_precision(precision)
    inits = [init_params(d, C, s) for s in seeds]
    W = torch.stack([w for w, _ in inits]).to(dev)[:, :, None, :].repeat(1, 1, S, 1)
    b = torch.stack([bb for _, bb in inits]).to(dev)[:, None, :].repeat(1, S, 1)
    mW, vW, mb, vb = (torch.zeros_like(t) for t in (W, W, b, b))
    orders = [_orders(n, s) for s in seeds]
    per_epoch = math.ceil(n / batch_size)
    total = epochs * per_epoch
    minus_one = torch.full((1, 1, 1, 1), -1.0, device=dev).expand(K, batch_size, S, 1)
    step = 0
    with tqdm(total=total, desc=desc, leave=False, disable=None, delay=2.0) as bar:
        for epoch in range(epochs):
            # this epoch's (per_epoch, K, 1, S, C) schedule, expanded over classes and
            # materialised so AdamW's loops are long; one epoch at a time, since all steps at
            # once grow with epochs x steps x classes (gigabytes at ImageNet's train split)
            first = epoch * per_epoch
            lr_f, decay = (
                t.view(per_epoch, K, 1, S, 1).expand(per_epoch, K, 1, S, C).contiguous().to(dev)
                for t in _schedule(lr.float(), wd.float(), total, range(first, first + per_epoch))
            )
            perm = torch.stack([next(o) for o in orders]).to(dev)
            epoch_rows = torch.gather(rows, 1, perm)
            for start in range(0, n, batch_size):
                idx = epoch_rows[:, start : start + batch_size].reshape(-1)
                B = idx.numel() // K
                xb = X.index_select(0, idx).view(K, B, d)
                yb = y.index_select(0, idx).view(K, B, 1, 1)
                if half:
                    logits = _bmm(xb, W.view(K, d, S * C), True).add_(b.view(K, 1, S * C))
                else:
                    logits = torch.baddbmm(b.view(K, 1, S * C), xb, W.view(K, d, S * C))
                grad = torch.softmax(logits.view(K, B, S, C), dim=-1)
                grad.scatter_add_(3, yb.expand(K, B, S, 1), minus_one[:, :B])
                grad.div_(B)
                gW = _bmm(xb.transpose(1, 2), grad.view(K, B, S * C), half).view(K, d, S, C)
                gb = grad.sum(dim=1)
                step += 1
                lr_t, decay_t = lr_f[step - 1 - first], decay[step - 1 - first]
                _adamw_(W, gW, mW, vW, lr_t, decay_t, step)
                _adamw_(b, gb, mb, vb, lr_t[:, 0], decay_t[:, 0], step)
                bar.update()
    return W, b


def _score(
    X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, W: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions ``(K, S, m)``, accuracy ``(K, S)`` and mean cross-entropy ``(K, S)`` on ``rows``."""
    K, d, S, C = W.shape
    preds, correct, loss = [], 0, 0
    chunk = max(1, _EVAL_ELEMENTS // (K * S * C))
    for start in range(0, rows.shape[1], chunk):
        idx = rows[:, start : start + chunk]
        xb, yb = X[idx], y[idx]
        logits = torch.baddbmm(b.view(K, 1, S * C), xb, W.view(K, d, S * C)).view(K, -1, S, C)
        pred = logits.argmax(dim=-1)  # (K, m, S)
        target = yb[:, :, None].expand_as(pred)
        correct = correct + (pred == target).sum(dim=1)
        picked = logits.gather(3, target.unsqueeze(-1)).squeeze(-1)
        loss = loss + (torch.logsumexp(logits, dim=-1) - picked).sum(dim=1)
        preds.append(pred)
    m = rows.shape[1]
    return torch.cat(preds, dim=1).transpose(1, 2), correct / m, loss / m


def train_sweep(
    X: Any,
    y: Any,
    lr: Sequence[float],
    wd: Sequence[float],
    *,
    seed: int = 0,
    epochs: int = 20,
    batch_size: int = 1024,
    n_classes: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "float32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one probe per setting ``(lr[i], wd[i])`` at once on ``X``, labels ``y`` in ``0..C-1``.

    No normalisation, split or search: this is the batched trainer itself, for benchmarks and for
    checking it against :func:`train_reference`. Returns weights ``(S, d, C)`` and bias ``(S, C)``.
    """
    dev = resolve_device(device)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64, device=dev)
    C = int(n_classes if n_classes is not None else int(yt.max()) + 1)
    lr_t = torch.as_tensor(np.asarray(lr, dtype=np.float32)).view(1, -1)
    wd_t = torch.as_tensor(np.asarray(wd, dtype=np.float32)).view(1, -1)
    if lr_t.shape != wd_t.shape:
        raise InputError(
            f"lr and wd need one value per setting; got {lr_t.numel()} and {wd_t.numel()}."
        )
    rows = torch.arange(Xt.shape[0], device=dev).view(1, -1)
    W, b = _train_batched(
        Xt, yt, rows, [seed], lr_t, wd_t, C, epochs, batch_size, "sweep", precision
    )
    return W[0].permute(1, 0, 2).contiguous(), b[0]


def train_reference(
    X: Any,
    y: Any,
    lr: float,
    wd: float,
    *,
    seed: int = 0,
    epochs: int = 20,
    batch_size: int = 1024,
    n_classes: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one probe alone with ``torch.nn.Linear`` and ``torch.optim.AdamW``: the plain way.

    Same initialisation, batch order and per-step cosine schedule as :func:`train_sweep`, so the
    two agree up to float rounding. Returns weights ``(d, C)`` and bias ``(C,)``.
    """
    dev = resolve_device(device)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64, device=dev)
    n, d = Xt.shape
    C = int(n_classes if n_classes is not None else int(yt.max()) + 1)
    layer = torch.nn.Linear(d, C).to(dev)
    w0, b0 = init_params(d, C, seed)
    with torch.no_grad():
        layer.weight.copy_(w0.T)
        layer.bias.copy_(b0)
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=wd)
    total = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: _cosine(t, total))
    orders = _orders(n, seed)
    for _ in range(epochs):
        perm = next(orders).to(dev)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(layer(Xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return layer.weight.detach().T.contiguous(), layer.bias.detach()


# ----------------------------------------------------------------------------- the search


def coarse_indices(n_wds: int) -> list[int]:
    """Indices of the coarse weight-decay values: one per power of ten of the default
    64-value grid (1e-6 to 1e1: 8 values).

    For another grid length: every ``s``-th index and the last, with ``s`` the largest step that
    still puts 8 values on the grid (``7 s <= n_wds - 1``), so a short grid is never searched
    more coarsely than the study's.
    """
    step = max(1, (n_wds - 1) // 7)
    idx = list(range(0, n_wds, step))
    if idx[-1] != n_wds - 1:
        idx.append(n_wds - 1)
    return idx


def _peak(acc: np.ndarray, idxs: Sequence[int]) -> int | None:
    """The study's choice among weight decays ``idxs`` (its ``find_peak``): the highest validation
    accuracy, ties to the later index (the larger weight decay). A diverged cell (NaN: its NaN
    logits would "predict" class 0 everywhere) never wins; None when every one diverged."""
    best = None
    for i in idxs:
        if np.isfinite(acc[i]) and (best is None or acc[i] >= acc[best]):
            best = i
    return best


def _study_choice(acc: np.ndarray, peaks: Sequence[int | None]) -> tuple[int, int]:
    """The study's choice of learning rate (its ``HyperparameterTuner``): the first, in the grid's
    order, whose best weight decay has the strictly highest validation accuracy."""
    best = None
    for li, wi in enumerate(peaks):
        if wi is not None and (best is None or acc[li, wi] > acc[best, peaks[best]]):
            best = li
    if best is None:
        raise InputError(
            "every (lr, wd) setting of the probe search diverged (non-finite validation loss). "
            "Fix: use smaller learning rates or weight decays (lr x wd above 2 makes AdamW's "
            "decay step overshoot)."
        )
    return best, int(peaks[best])


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean recall over the classes that occur in ``y``."""
    classes = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _grid(values: Any, name: str) -> np.ndarray:
    """A search grid as a 1-D float64 array (one number is a grid of one)."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or isinstance(values, (str, bytes)):
        raise InputError(f"{name} must be a number or a 1-D sequence of numbers; got {values!r}.")
    return arr


def _seed_list(seeds: Any) -> list[int]:
    """Seeds as a list of ints (one int is one seed); non-integers are refused, not truncated."""
    seeds = [seeds] if _is_int(seeds) else seeds
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise InputError(f"seeds must be a list of non-negative integers; got {seeds!r}.")
    seeds = list(seeds)
    if not all(_is_int(s) and s >= 0 for s in seeds):
        raise InputError(f"seeds must be a list of non-negative integers; got {seeds!r}.")
    return [int(s) for s in seeds]


def _check_options(lrs, wds, seeds, epochs: int, batch_size: int) -> None:
    if lrs.size == 0 or wds.size == 0 or not (np.isfinite(lrs).all() and np.isfinite(wds).all()):
        raise InputError(f"lrs and wds must be non-empty and finite; got {lrs} and {wds}.")
    if (lrs <= 0).any() or (wds < 0).any():
        raise InputError("lrs must be non-empty and positive, wds non-empty and >= 0.")
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be a non-empty list of distinct integers; got {list(seeds)}.")
    check_count("epochs", epochs)
    check_count("batch_size", batch_size)


def probe_defaults() -> dict[str, Any]:
    """:func:`linear_probe`'s keyword defaults (the study's protocol), by name: what a config's
    ``probe:`` option left unset (None) means."""
    return {
        k: v.default
        for k, v in inspect.signature(linear_probe).parameters.items()
        if v.default is not inspect.Parameter.empty
    }


def linear_probe(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    lrs: Sequence[float] = DEFAULT_LRS,
    wds: Sequence[float] = DEFAULT_WDS,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 20,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    val_fraction: float = 0.2,
    normalize: bool = True,
    shared_search: bool = False,
    precision: str = "float32",
) -> ProbeResult:
    """Linear-probe accuracy of frozen features, with the study's hyperparameter search.

    For each seed: a seeded stratified ``val_fraction`` split of the train rows; for each learning
    rate, the coarse weight decays (:func:`coarse_indices`; the best: highest validation accuracy,
    ties to the larger weight decay), then ``REFINE_STEPS`` rounds that try the weight decays that
    many grid steps either side of the best so far and move to one only when its accuracy is
    strictly higher; the learning rate whose best is strictly highest (ties: the first, from high
    to low) is retrained with it on all train rows and scored on the test rows. That is the
    study's search (its ``HyperparameterTuner`` and ``RegularizationTuner``), tie rules included.
    Training: cross-entropy, AdamW (betas 0.9/0.999, weight decay on weights and bias, as
    ``torch.optim.AdamW`` over all parameters of a ``torch.nn.Linear``), learning rate scaled by a
    cosine without warm-up stepped once per batch, last partial batch kept. All seeds and settings
    of a phase train together as one batched layer (see the module docstring). The seed fixes the split, the initialisation and the batch order, so a result is
    deterministic for a given seed and device.

    Parameters
    ----------
    X_train, X_test : array (n, d), numpy or torch
        Features; rows are L2-normalised first when ``normalize`` (the study's protocol). Real
        numbers only; an ``X_train`` that is the same vector in every row (e.g. all zero) raises
        :class:`~repsim.errors.ConstantFeaturesError` rather than reporting a majority-class accuracy.
    y_train, y_test : array (n,)
        Labels of any sortable kind; they are mapped to ``0..C-1`` by the sorted train classes. A
        test class absent from the train split raises :class:`~repsim.errors.InputError`, and so
        does a missing label (NaN or None) or a mix of kinds that cannot be sorted (ints and strings).
    lrs, wds : sequence of float, or one float
        The learning-rate and weight-decay grids (finite; lrs > 0, wds >= 0); one number is a grid
        of one.
    seeds : sequence of int, or one int
        Non-negative integer seeds, one probe each; accuracies are averaged over them.
    epochs, batch_size : int
        Integers >= 1.
    device : str, optional
        ``"cuda"``, ``"cpu"`` ...; default: CUDA when available.
    shared_search : bool
        Search (lr, wd) once, on the smallest seed's split, and retrain every seed with that choice,
        instead of one search per seed (the study). About ``len(seeds)`` times cheaper; the
        seeds then differ only in initialisation and batch order of the final training.
    precision : {"float32", "bfloat16"}
        ``bfloat16``: the training matmuls on bfloat16 inputs with float32 accumulation (see the
        module docstring); about twice the matmul throughput of float32 on a GPU.

    Returns
    -------
    ProbeResult
        Test accuracy and balanced accuracy per seed, the chosen (lr, wd) per seed, the
        validation grid.
    """
    # the grids in one canonical order (learning rates high to low, weight decays low to high, as
    # the defaults): the coarse-then-fine search steps along the sorted weight-decay grid, and
    # ties go to the first cell, so the order a config lists them in must not change the result
    lrs_a = -np.sort(-_grid(lrs, "lrs"))
    wds_a = np.sort(_grid(wds, "wds"))
    seeds = _seed_list(seeds)
    _check_options(lrs_a, wds_a, seeds, epochs, batch_size)
    _check_precision(precision)
    normalize = check_flag(normalize, "normalize")  # a truthy "no" would switch it on
    shared_search = check_flag(shared_search, "shared_search")
    dev = resolve_device(device)
    Xtr = _features(X_train, "X_train", dev, normalize)
    Xte = _features(X_test, "X_test", dev, normalize)
    if Xtr.shape[1] != Xte.shape[1]:
        raise InputError(
            f"X_train has {Xtr.shape[1]} features but X_test has {Xte.shape[1]}; "
            "use features from the same model and layer."
        )
    if Xtr.shape[0] < 2:  # else taken below for constant features, which misleads
        raise InputError(
            f"X_train has {Xtr.shape[0]} row: a probe needs training images of two or more "
            "classes; pass the train split's features"
        )
    if bool((Xtr - Xtr[0]).abs().max() <= 1e-6 * Xtr.abs().max()):  # equal up to float32 rounding
        raise ConstantFeaturesError(
            "X_train is the same vector for every row (all-zero or constant features"
            f"{', after L2 normalisation' if normalize else ''}): a probe could only predict the "
            "majority class, which is no measure of the model. Check that the model and layer give "
            "input-dependent features (the similarity engine gives this model NaN)."
        )
    classes, ytr, yte = encode_labels(
        _labels(y_train, Xtr.shape[0], "y_train"), _labels(y_test, Xte.shape[0], "y_test")
    )
    C, n_lr, n_wd = classes.size, lrs_a.size, wds_a.size
    search_seeds = [min(seeds)] if shared_search else seeds  # not seeds[0]: order must not matter
    K = len(search_seeds)
    splits = [stratified_split(ytr, val_fraction, s) for s in search_seeds]
    if splits[0][1].size == 0:
        raise InputError(
            "no validation rows: every class has a single train example. Provide more train data."
        )
    fit_rows = torch.as_tensor(np.stack([t for t, _ in splits]), device=dev)
    val_rows = torch.as_tensor(np.stack([v for _, v in splits]), device=dev)
    ytr_t = torch.as_tensor(ytr, dtype=torch.int64, device=dev)
    val_acc = np.full((K, n_lr, n_wd), np.nan)
    tried = np.zeros((K, n_lr, n_wd), dtype=bool)

    def search(cells: list[list[tuple[int, int]]], phase: str) -> None:
        """Train and score the untried cells of each seed's list (padded to one width)."""
        cells = [[c for c in dict.fromkeys(row) if not tried[k][c]] for k, row in enumerate(cells)]
        width = max(len(row) for row in cells)
        if width == 0:
            return
        padded = [row + (row or [(0, 0)])[:1] * (width - len(row)) for row in cells]
        lr_t = torch.tensor([[lrs_a[li] for li, _ in row] for row in padded], dtype=torch.float32)
        wd_t = torch.tensor([[wds_a[wi] for _, wi in row] for row in padded], dtype=torch.float32)
        W, b = _train_batched(
            Xtr, ytr_t, fit_rows, search_seeds, lr_t, wd_t, C, epochs, batch_size, phase, precision
        )
        _, acc, loss = _score(Xtr, ytr_t, val_rows, W, b)
        acc, loss = acc.cpu().numpy(), loss.cpu().numpy()
        for k, row in enumerate(cells):  # the padding is not recorded
            for s, (li, wi) in enumerate(row):
                tried[k, li, wi] = True
                # a diverged cell keeps no accuracy: its NaN logits would "predict" class 0
                val_acc[k, li, wi] = acc[k, s] if np.isfinite(loss[k, s]) else np.nan

    # the study's search, for each seed and learning rate on its own: the coarse weight decays,
    # then rounds of one step either side of the best so far, which moves only to a strictly
    # higher accuracy; all seeds and learning rates of a round train as one batched layer
    coarse = coarse_indices(n_wd)
    search([[(li, wi) for li in range(n_lr) for wi in coarse]] * K, "probe coarse")
    peaks = [[_peak(val_acc[k, li], coarse) for li in range(n_lr)] for k in range(K)]
    for step in REFINE_STEPS:
        sides = [
            [
                [i for i in dict.fromkeys((max(p - step, 0), min(p + step, n_wd - 1))) if i != p]
                if p is not None
                else []
                for p in peaks[k]
            ]
            for k in range(K)
        ]
        search(
            [[(li, wi) for li in range(n_lr) for wi in sides[k][li]] for k in range(K)],
            f"probe fine +-{step}",
        )
        for k in range(K):
            for li, side in enumerate(sides[k]):
                new = _peak(val_acc[k, li], side)
                if new is not None and val_acc[k, li, new] > val_acc[k, li, peaks[k][li]]:
                    peaks[k][li] = new

    chosen = [_study_choice(val_acc[k], peaks[k]) for k in range(K)]
    if shared_search:
        chosen = chosen * len(seeds)
        val_acc = np.repeat(val_acc, len(seeds), axis=0)
    K = len(seeds)
    lr_c = np.array([lrs_a[li] for li, _ in chosen])
    wd_c = np.array([wds_a[wi] for _, wi in chosen])
    all_rows = torch.arange(Xtr.shape[0], device=dev).expand(K, -1)
    W, b = _train_batched(
        Xtr, ytr_t, all_rows, seeds,
        torch.tensor(lr_c, dtype=torch.float32).view(K, 1),
        torch.tensor(wd_c, dtype=torch.float32).view(K, 1),
        C, epochs, batch_size, "probe final", precision,
    )  # fmt: skip
    if not (bool(torch.isfinite(W).all()) and bool(torch.isfinite(b).all())):
        bad = sorted({(float(lr_c[k]), float(wd_c[k])) for k in range(K)})
        raise InputError(
            f"the final probe training diverged (non-finite weights) with (lr, wd) in {bad}, "
            "chosen on the validation split. Fix: use smaller learning rates or weight decays."
        )
    yte_t = torch.as_tensor(yte, dtype=torch.int64, device=dev)
    pred, acc, _ = _score(Xte, yte_t, torch.arange(Xte.shape[0], device=dev).expand(K, -1), W, b)
    pred = pred[:, 0].cpu().numpy()
    for k, s in enumerate(seeds):
        logger.debug("probe seed %d: lr=%g wd=%g test acc=%.4f", s, lr_c[k], wd_c[k], acc[k, 0])
    return ProbeResult(
        seeds=np.asarray(seeds),
        accuracy=acc[:, 0].cpu().numpy().astype(np.float64),
        balanced_accuracy=np.array([_balanced_accuracy(p, yte) for p in pred]),
        lr=lr_c,
        wd=wd_c,
        lrs=lrs_a,
        wds=wds_a,
        val_accuracy=val_acc,
        classes=classes,
    )


__all__ = [
    "DEFAULT_LRS",
    "DEFAULT_WDS",
    "REFINE_STEPS",
    "ProbeResult",
    "coarse_indices",
    "encode_labels",
    "init_params",
    "linear_probe",
    "stratified_split",
    "stream_features",
    "train_reference",
    "train_sweep",
]
