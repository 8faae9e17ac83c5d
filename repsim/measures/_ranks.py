"""Rank vectors of RDM upper triangles for the all-pairs Spearman RSA."""

from __future__ import annotations

import tempfile

import numpy as np
import torch


def upper_triangle(Z: torch.Tensor, nb: int) -> torch.Tensor:
    """Row-major upper triangle (i < j) of the correlation RDM ``1 - Z Z'``, built blockwise.

    Duplicate stimuli (identical rows) make ties that the ranks must see as ties, but a matrix
    product rounds the same entry differently at different positions. So with duplicates the RDM
    is computed once over the distinct rows and each entry read from there: a duplicate pair is 0
    exactly, and every pair of the same two distinct rows has one value.
    """
    n = Z.shape[0]
    distinct, which = torch.unique(Z, dim=0, return_inverse=True)
    u = distinct.shape[0]
    if u == n:
        return _triangle(Z, nb)
    out = torch.zeros(n * (n - 1) // 2, dtype=torch.float64, device=Z.device)
    if u == 1:
        return out  # one stimulus repeated: every dissimilarity is 0
    tri = _triangle(distinct, nb)
    pos = 0
    for r0 in range(0, n, nb):
        r1 = min(n, r0 + nb)
        a, b = which[r0:r1, None], which[None, r0:]
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        mask = torch.ones(lo.shape, dtype=torch.bool, device=Z.device).triu_(diagonal=1)
        lo, hi = lo[mask], hi[mask]
        same = lo == hi
        at = (lo * (2 * u - lo - 1)) // 2 + hi - lo - 1  # (lo, hi)'s place in the distinct triangle
        at[same] = 0
        vals = tri[at]
        vals[same] = 0.0
        out[pos : pos + vals.numel()] = vals
        pos += vals.numel()
    return out


def _triangle(Z: torch.Tensor, nb: int) -> torch.Tensor:
    n = Z.shape[0]
    out = torch.empty(n * (n - 1) // 2, dtype=torch.float64, device=Z.device)
    pos = 0
    for r0 in range(0, n, nb):
        r1 = min(n, r0 + nb)
        B = Z[r0:r1] @ Z[r0:].T
        mask = torch.ones_like(B, dtype=torch.bool).triu_(diagonal=1)
        vals = 1.0 - B[mask]
        out[pos : pos + vals.numel()] = vals
        pos += vals.numel()
    return out


def doubled_ranks(v: torch.Tensor) -> torch.Tensor:
    """Twice the average ranks (1-based, ties averaged) of ``v``: exact integers, mean ``len(v) + 1``."""
    vals, order = torch.sort(v)
    _, inverse, counts = torch.unique_consecutive(vals, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0)
    twice_avg = 2 * ends - counts + 1  # start + end with start = end - count + 1
    dtype = torch.int32 if 2 * v.numel() < 2**31 else torch.int64
    out = torch.empty(v.numel(), dtype=dtype, device=v.device)
    out[order] = twice_avg[inverse].to(dtype)
    return out


class RankStore:
    """(M, N) doubled ranks on the device, in host memory, or in a temporary file, as the budget allows."""

    def __init__(self, M: int, N: int, device: torch.device, budget_bytes: float) -> None:
        dtype = torch.int32 if 2 * N < 2**31 else torch.int64
        size = M * N * (4 if dtype == torch.int32 else 8)
        self._tmp = None
        if size <= budget_bytes:
            self.data = torch.empty((M, N), dtype=dtype, device=device)
        elif device.type != "cpu":
            self.data = torch.empty((M, N), dtype=dtype)
        else:
            self._tmp = tempfile.NamedTemporaryFile(prefix="repsim-ranks-", suffix=".i32")
            mm = np.memmap(
                self._tmp.name,
                dtype=np.int32 if dtype == torch.int32 else np.int64,
                mode="w+",
                shape=(M, N),
            )
            self.data = torch.from_numpy(mm)
        self.N = N

    def gram(self, device: torch.device, budget_bytes: float) -> torch.Tensor:
        """``F F'`` of the centred doubled ranks, in column slices under the budget, float64."""
        M = self.data.shape[0]
        G = torch.zeros((M, M), dtype=torch.float64, device=device)
        step = int(max(1, budget_bytes // (8 * 2 * M)))
        for c0 in range(0, self.N, step):
            F = self.data[:, c0 : c0 + step].to(device=device, dtype=torch.float64) - (self.N + 1)
            G += F @ F.T
        return 0.5 * (G + G.T)

    def close(self) -> None:
        if self._tmp is not None:
            del self.data
            self._tmp.close()
