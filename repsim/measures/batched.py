"""Batched all-pairs kernels of the built-in measure families (CKA, RSA, mutual kNN).

A batched kernel computes a whole model x model matrix for every measure of its family at once:
what is per model is computed once (centred features, bandwidths, kernel row sums, RDM ranks, kNN
sets) and all pairs then come from one batched product (see ``_stats``). Each is declared beside
its family's single-pair function in :mod:`repsim.measures.registry` and called by the engine
(:func:`repsim.measures.similarity_matrices`) with one signature::

    kernel(ids, arrays, ok, specs, device, budget_bytes, progress) -> {name: (M, M) array}

``arrays`` are the models' float64 features, ``ok`` the mask of models with usable features (the
others get NaN rows), ``specs`` the requested measures of the family by name. A model for which a
measure is undefined gets a NaN row and column and a warning naming it. The tests check every kernel
against its family's single-pair function (``tests/test_registry.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from repsim.measures._ranks import RankStore, doubled_ranks, upper_triangle
from repsim.measures._stats import (
    GramStats,
    Kernel,
    block_rows,
    feature_path,
    gram_path,
    hsic,
    hsic_rows,
    offdiag_pearson,
    unbiased_scale,
)
from repsim.measures.cka import CANCEL, REL_TOL, SCALE_FLOOR
from repsim.measures.knn import knn_indices
from repsim.measures.rsa import rdm_is_constant

if TYPE_CHECKING:  # the registry imports this module to declare the kernels
    from repsim.measures.registry import MeasureSpec

logger = logging.getLogger("repsim.measures.engine")


#: Set by :func:`quiet_nan`: the NaN notices of :func:`warn_nan` go to the debug log only.
_QUIET_NAN: ContextVar[bool] = ContextVar("repsim_quiet_nan", default=False)


def warn_nan(msg: str) -> None:
    """Log and warn about a model whose similarities are NaN (the other models go on); inside
    :func:`quiet_nan`, log it at debug level only."""
    if _QUIET_NAN.get():
        logger.debug(msg)
        return
    logger.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=4)


@contextlib.contextmanager
def quiet_nan() -> Iterator[None]:
    """The engine without its warnings of NaN similarities, for a caller that keeps the NaN and
    reports the pairs it leaves undefined itself (chapter 13's stimulus subsets: one warning per
    subset repeated the same model on the chapter's stderr)."""
    token = _QUIET_NAN.set(True)
    try:
        yield
    finally:
        _QUIET_NAN.reset(token)


def embed(sub: np.ndarray, idx: np.ndarray, M: int) -> np.ndarray:
    """Put the (k, k) matrix of models ``idx`` into an (M, M) NaN matrix, with an exact unit diagonal."""
    out = np.full((M, M), np.nan)
    sub = 0.5 * (sub + sub.T)
    out[np.ix_(idx, idx)] = sub
    ok = idx[np.isfinite(np.diagonal(sub))]
    out[ok, ok] = 1.0
    return out


def nan_undefined(sim: np.ndarray, defined: np.ndarray, names: list[str], what: str) -> np.ndarray:
    for i in np.flatnonzero(~defined):
        warn_nan(
            f"{what} is undefined for model {names[i]!r} (no usable variance); its similarities are NaN"
        )
    sim = sim.copy()
    sim[~defined, :] = np.nan
    sim[:, ~defined] = np.nan
    return sim


# ------------------------------------------------------------------------------------------- CKA


def cka_all(
    ids, arrays, ok, specs: dict[str, MeasureSpec], dev, budget, progress
) -> dict[str, np.ndarray]:
    idx = np.flatnonzero(ok)
    M = len(ids)
    out = {name: np.full((M, M), np.nan) for name in specs}
    if idx.size == 0:
        return out
    names = [ids[i] for i in idx]
    n, dims = arrays[idx[0]].shape[0], [arrays[i].shape[1] for i in idx]
    budget -= 8 * n * sum(dims)
    budget = max(budget, 64 * 2**20)
    rbf_keys = list(
        dict.fromkeys(
            ("rbf", s.params["sigma"], s.params["sigma_mode"])
            for s in specs.values()
            if s.params["kernel"] == "rbf"
        )
    )
    stats: dict[tuple, GramStats] = {}
    kernels: dict[tuple, Kernel] = {("linear",): Kernel("linear")}
    gram_keys: list[tuple] = list(rbf_keys)
    linear_by_features = False
    if any(s.params["kernel"] == "linear" for s in specs.values()):
        if _linear_in_feature_space(n, dims, shared_gram=bool(rbf_keys)):
            stats[("linear",)] = feature_path([_centred(arrays[i], dev) for i in idx], budget)
            linear_by_features = True
        else:
            gram_keys.append(("linear",))
    if gram_keys:
        # the Gram path works from median-centred features, as the pair function does: a tight
        # cluster of stimuli then sits near 0, where |x|^2 + |y|^2 - 2 x.y keeps its digits, and a
        # majority of duplicates is exactly 0 (a median distance of 0, as the pair function finds)
        S = [_median_centred(arrays[i], dev) for i in idx]
        medians = (
            [_median_distance(s, budget) for s in S]
            if any(k[2] == "median" for k in rbf_keys)
            else None
        )
        for key in rbf_keys:
            _, sigma, mode = key
            kernels[key] = Kernel(
                "rbf", tuple(sigma * m for m in medians) if mode == "median" else (sigma,) * len(S)
            )
        res = gram_path(S, [kernels[k] for k in gram_keys], budget, progress)
        stats.update(zip(gram_keys, res))
        del S
    redone: dict[tuple, tuple[torch.Tensor, GramStats]] = {}
    for name, spec in specs.items():
        p = spec.params
        key = ("linear",) if p["kernel"] == "linear" else ("rbf", p["sigma"], p["sigma_mode"])
        st = stats[key]
        H = hsic(st, n, p["unbiased"])
        if p["unbiased"] and linear_by_features and key == ("linear",):
            H, scale = _keep_digits(H, st, key, redone, [arrays[i] for i in idx], kernels, budget)
        elif p["unbiased"]:
            scale = st.offdiag_norm2()
        else:
            scale = st.second_moment()
        self_h = torch.diagonal(H)
        defined = ((self_h > REL_TOL * scale) & (scale > SCALE_FLOOR)).cpu().numpy()
        sim = (H / torch.sqrt(torch.outer(self_h, self_h).clamp(min=0.0))).cpu().numpy()
        sim = nan_undefined(sim, defined, names, spec.name)
        out[name] = embed(sim, idx, M)
    return out


def _keep_digits(
    H: torch.Tensor,
    st: GramStats,
    key: tuple,
    redone: dict[tuple, tuple[torch.Tensor, GramStats]],
    arrays: list[np.ndarray],
    kernels: dict[tuple, Kernel],
    budget: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recompute the unbiased HSIC rows of models whose self-HSIC lost digits; return H and scales.

    A model whose self-HSIC is below ``CANCEL`` times the terms it was computed from (near-degenerate
    features) gets its row and column again from the Gram path on median-centred features, where the
    kernel entries are as small as the structure they carry. The scale of the "undefined" rule is
    ``|K~|^2`` (off-diagonal entries only) of whichever evaluation is kept. Linear kernels from the
    feature path only: the Gram path already works from median-centred features.
    """
    n = st.R.shape[1]
    scale = torch.diagonal(st.G).clone()
    lost = torch.nonzero(torch.diagonal(H) < CANCEL * unbiased_scale(st, n)).flatten()
    if lost.numel() == 0:
        return H, scale
    rows = lost.tolist()
    if key not in redone:
        dev = H.device
        med = [_median_centred(A, dev) for A in arrays]
        (st2,) = gram_path(med, [kernels[key]], budget, rows=rows)
        redone[key] = lost, st2
        del med
    lost, st2 = redone[key]
    rows = lost.tolist()
    Hr = hsic_rows(st2, rows, n)
    H = H.clone()
    H[lost, :] = Hr
    H[:, lost] = Hr.T
    scale[lost] = st2.G[torch.arange(len(rows), device=H.device), lost]
    return H, scale


def _centred(A: np.ndarray, dev: torch.device) -> torch.Tensor:
    """Features centred over stimuli: CKA is invariant to it, and it avoids cancellation."""
    t = torch.from_numpy(A).to(dev)
    return t - t.mean(0)


def _median_centred(A: np.ndarray, dev: torch.device) -> torch.Tensor:
    """Features minus their coordinate-wise median: a tight cluster of stimuli sits at 0 exactly."""
    t = torch.from_numpy(A).to(dev)
    return t - t.median(0).values


def _linear_in_feature_space(n: int, dims: list[int], shared_gram: bool) -> bool:
    """Choose the cheaper all-pairs route for linear kernels from n and the feature dims."""
    total, M = float(sum(dims)), len(dims)
    feature_cost = n * total * total / 2
    gram_cost = M * M * n * n / 4 + (0.0 if shared_gram else n * n * total / 2)
    return feature_cost <= gram_cost


def _median_distance(S: torch.Tensor, budget: float) -> float:
    """Median Euclidean distance over stimulus pairs i < j (mean of the two middles for an even count)."""
    n = S.shape[0]
    q = (S * S).sum(1)
    nb = block_rows(n, 8.0 * n * 3, budget / 2)
    parts = []
    for r0 in range(0, n, nb):
        r1 = min(n, r0 + nb)
        D2 = (q[r0:r1, None] + q[None, r0:]).sub_(S[r0:r1] @ S[r0:].T, alpha=2.0).clamp_(min=0.0)
        parts.append(D2[torch.ones_like(D2, dtype=torch.bool).triu_(diagonal=1)])
    d2 = torch.cat(parts)
    N = d2.numel()
    lo = torch.kthvalue(d2, (N + 1) // 2).values
    hi = torch.kthvalue(d2, N // 2 + 1).values
    med = 0.5 * (math.sqrt(float(lo)) + math.sqrt(float(hi)))
    return med if med > 0 else math.nan


# ------------------------------------------------------------------------------------------- RSA


def rsa_all(
    ids, arrays, ok, specs: dict[str, MeasureSpec], dev, budget, progress
) -> dict[str, np.ndarray]:
    M = len(ids)
    out = {name: np.full((M, M), np.nan) for name in specs}
    Z, idx = [], []
    for i in np.flatnonzero(ok):
        t = torch.from_numpy(arrays[i]).to(dev)
        t = t - t.mean(1, keepdim=True)
        norms = t.norm(dim=1)
        bad = ~(norms > 0)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0])
            warn_nan(
                f"model {ids[i]!r}: stimulus row {row} has a constant feature vector, so RSA is undefined; its RSA is NaN"
            )
            continue
        Z.append(t / norms[:, None])
        idx.append(i)
    if not Z:
        return out
    idx_arr = np.asarray(idx)
    names = [ids[i] for i in idx]
    n = Z[0].shape[0]
    budget = max(budget - sum(z.numel() * 8 for z in Z), 64 * 2**20)
    for name, spec in specs.items():
        if spec.params["compare"] == "pearson":
            dims = [z.shape[1] for z in Z]
            if _linear_in_feature_space(n, dims, shared_gram=False):
                st = feature_path(Z, budget)
            else:
                (st,) = gram_path(Z, [Kernel("linear")], budget, progress)
            sim, var = offdiag_pearson(st, n)
            defined = (var > REL_TOL * torch.diagonal(st.G)).cpu().numpy()
            sim = sim.cpu().numpy()
        else:
            sim, defined = _spearman(Z, budget, dev)
        out[name] = embed(nan_undefined(sim, defined, names, spec.name), idx_arr, M)
    return out


def _spearman(
    Z: list[torch.Tensor], budget: float, dev: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    n = Z[0].shape[0]
    N = n * (n - 1) // 2
    store = RankStore(len(Z), N, dev, budget / 2)
    constant = np.zeros(len(Z), dtype=bool)
    try:
        nb = block_rows(n, 8.0 * n * 3, budget / 8)
        for m, z in enumerate(Z):
            tri = upper_triangle(z, nb)
            constant[m] = rdm_is_constant(tri)  # its ranks would order rounding noise
            store.data[m] = doubled_ranks(tri).to(store.data.device)
            del tri
        G = store.gram(dev, budget / 4)
    finally:
        store.close()
    var = torch.diagonal(G).clone()
    sim = G / torch.sqrt(torch.outer(var, var))
    return sim.cpu().numpy(), (var > 0).cpu().numpy() & ~constant


# ------------------------------------------------------------------------------------ mutual kNN


def knn_all(
    ids, arrays, ok, specs: dict[str, MeasureSpec], dev, budget, progress=False
) -> dict[str, np.ndarray]:
    M = len(ids)
    out = {name: np.full((M, M), np.nan) for name in specs}
    kmax = max(s.params["k"] for s in specs.values())
    sets, idx = [], []
    for i in np.flatnonzero(ok):
        t = torch.from_numpy(arrays[i]).to(dev)
        norms = t.norm(dim=1)
        bad = ~(norms > 0)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0])
            warn_nan(
                f"model {ids[i]!r}: stimulus row {row} is a zero vector, so mutual kNN is undefined; its kNN is NaN"
            )
            continue
        n = t.shape[0]
        nb = block_rows(n, 8.0 * n * 2, budget / 2)
        sets.append(knn_indices(t / norms[:, None], kmax, nb).cpu().numpy())
        idx.append(i)
    if not sets:
        return out
    n = sets[0].shape[0]
    for name, spec in specs.items():
        k = spec.params["k"]
        cols = np.concatenate([(np.arange(n)[:, None] * n + s[:, :k]).ravel() for s in sets])
        rows = np.repeat(np.arange(len(sets)), n * k)
        A = sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(sets), n * n))
        shared = (A @ A.T).toarray()
        out[name] = embed(shared / (n * k), np.asarray(idx), M)
    return out
