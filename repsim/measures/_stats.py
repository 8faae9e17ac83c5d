"""Sufficient statistics of kernel matrices for all model pairs at once (the engine's core).

For every kernel matrix K (n x n) of a model, with K~ = K with a zeroed diagonal, the engine needs
only: ``G[a, b] = <K~_a, K~_b>`` (M x M), the row sums ``R[a] = K~_a 1`` (M x n) and the diagonal
``D[a] = diag K_a`` (M x n). Unbiased HSIC, biased HSIC and the Pearson correlation of off-diagonal
entries are closed forms in these (see :func:`hsic` and :func:`offdiag_pearson`), so all model pairs
cost one Gram-of-Grams product and no kernel matrix is ever stored whole:

- Gram path: rows are processed in blocks; block b holds rows r0:r1 and columns r0:n (the upper
  trapezoid, since K is symmetric), so each kernel entry is computed once per model. Entries right of
  the diagonal square stand for two entries and are weighted by sqrt(2) in the product.
- Feature path (linear kernel): ``<K~_a, K~_b> = |S_a' S_b|_F^2 - q_a . q_b`` with q the squared row
  norms, and ``K~_a 1 = S_a (S_a' 1) - q_a``: no n x n matrix at all.

The unbiased HSIC is a difference of these terms. On near-degenerate features (one outlier, the rest
within eps of each other) it is O(eps^2) while the terms are O(1), so the engine checks each model's
self-HSIC against :func:`unbiased_scale` and recomputes the models that lost digits on the Gram path
from median-centred features, where the terms are as small as the result (see ``batched.cka_all``).
An RBF kernel whose entries are all close to one value (stimuli close together next to the
bandwidth) cancels the same way; its entries are stored minus that value (``GramStats.shift``),
which changes neither HSIC (U- and double centring remove a constant) nor the Pearson correlation
of off-diagonal entries, and keeps the terms as small as the structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

SQRT2 = math.sqrt(2.0)


@dataclass
class GramStats:
    """``G`` (M, M) = <K~_a, K~_b>; ``R`` (M, n) = K~ 1; ``D`` (M, n) = diag K.

    ``mag`` (M,) is the size of the terms ``G[a, a]`` was computed from (``|S_a' S_a|^2`` on the
    feature path, where the diagonal is subtracted afterwards; ``G[a, a]`` itself on the Gram path):
    the rounding error of ``G[a, a]`` is a few ulps of it. With ``rows`` given to :func:`gram_path`,
    ``G`` holds only those rows (len(rows), M). ``shift`` (M,), where set, was subtracted from every
    entry of the kernel (diagonal included) before ``G``, ``R`` and ``D`` were formed.
    """

    G: torch.Tensor
    R: torch.Tensor
    D: torch.Tensor
    mag: torch.Tensor | None = None
    shift: torch.Tensor | None = None

    def offdiag_norm2(self) -> torch.Tensor:
        """<K~_a, K~_a> per model of the kernel as defined (before any shift): the scale a zero
        unbiased self-HSIC is judged by."""
        g = torch.diagonal(self.G)
        if self.shift is None:
            return g
        n = self.R.shape[1]
        return g + 2.0 * self.shift * self.R.sum(1) + self.shift**2 * (n * (n - 1))

    def second_moment(self) -> torch.Tensor:
        """<K_a, K_a> per model (diagonal included), the scale a zero biased self-HSIC is judged by."""
        D = self.D if self.shift is None else self.D + self.shift[:, None]
        return self.offdiag_norm2() + (D * D).sum(1)


@dataclass(frozen=True)
class Kernel:
    """A kernel on one source matrix: ``linear``, or ``rbf`` with one bandwidth per model."""

    kind: str
    bandwidths: tuple[float, ...] | None = None


def hsic(st: GramStats, n: int, unbiased: bool) -> torch.Tensor:
    """All-pairs HSIC (up to a constant factor), unbiased U-statistic or biased double centring."""
    if unbiased:
        s = st.R.sum(1)
        return st.G + torch.outer(s, s) / ((n - 1) * (n - 2)) - (2.0 / (n - 2)) * (st.R @ st.R.T)
    r = st.R + st.D
    s = r.sum(1)
    return st.G + st.D @ st.D.T - (2.0 / n) * (r @ r.T) + torch.outer(s, s) / (n * n)


def unbiased_scale(st: GramStats, n: int) -> torch.Tensor:
    """Per model, the size of the terms whose difference is the unbiased self-HSIC (see :func:`hsic`).

    A self-HSIC far below it has lost digits to cancellation (near-degenerate features).
    """
    s = st.R.sum(1)
    mag = st.mag if st.mag is not None else torch.diagonal(st.G)
    return mag.abs() + s * s / ((n - 1) * (n - 2)) + (2.0 / (n - 2)) * (st.R * st.R).sum(1)


def hsic_rows(st: GramStats, rows: Sequence[int], n: int) -> torch.Tensor:
    """Rows ``rows`` of the unbiased all-pairs HSIC from row-restricted stats ``st`` (see gram_path)."""
    s = st.R.sum(1)
    i = torch.as_tensor(list(rows), device=st.R.device)
    return st.G + torch.outer(s[i], s) / ((n - 1) * (n - 2)) - (2.0 / (n - 2)) * (st.R[i] @ st.R.T)


def offdiag_pearson(st: GramStats, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson correlation of the off-diagonal entries of every pair of kernels; and the variances."""
    s = st.R.sum(1)
    cov = st.G - torch.outer(s, s) / (n * (n - 1))
    var = torch.diagonal(cov).clone()
    return cov / torch.sqrt(torch.outer(var, var)), var


def block_rows(n: int, bytes_per_row: float, budget_bytes: float) -> int:
    """Rows per block so that a block of ``bytes_per_row`` per row stays under ``budget_bytes``."""
    return int(max(1, min(n, budget_bytes // max(bytes_per_row, 1.0))))


def gram_path(
    sources: Sequence[torch.Tensor],
    kernels: Sequence[Kernel],
    budget_bytes: float,
    progress: bool = False,
    rows: Sequence[int] | None = None,
) -> list[GramStats]:
    """Stats of several kernels of the same per-model source matrices (n, d_m), blockwise.

    ``rows``: accumulate only those rows of ``G`` (the models being recomputed), all columns.
    """
    M, n = len(sources), sources[0].shape[0]
    dev, C = sources[0].device, len(kernels)
    sel = None if rows is None else torch.as_tensor(list(rows), device=dev)
    q = [(S * S).sum(1) for S in sources]
    shifts = [_rbf_shifts(sources, q, ker) for ker in kernels]
    shift_of = [None if c is None else c.tolist() for c in shifts]  # floats: no sync per block
    G = [
        torch.zeros((M if sel is None else len(sel), M), dtype=torch.float64, device=dev)
        for _ in kernels
    ]
    R = [torch.zeros((M, n), dtype=torch.float64, device=dev) for _ in kernels]
    nb = block_rows(n, 8.0 * n * (C * M + 3), budget_bytes)
    starts = range(0, n, nb)
    for r0 in tqdm(starts, desc="kernel blocks", disable=not progress, leave=False):
        r1 = min(n, r0 + nb)
        w, h = n - r0, r1 - r0
        F = [torch.empty((M, h, w), dtype=torch.float64, device=dev) for _ in kernels]
        t = torch.arange(h, device=dev)
        for m, S in enumerate(sources):
            B = S[r0:r1] @ S[r0:].T
            D2 = None
            for c, ker in enumerate(kernels):
                Kb = F[c][m]
                if ker.kind == "linear":
                    Kb.copy_(B)
                else:
                    if D2 is None:
                        D2 = (
                            (q[m][r0:r1, None] + q[m][None, r0:]).sub_(B, alpha=2.0).clamp_(min=0.0)
                        )
                    bw = ker.bandwidths[m]
                    torch.mul(D2, -0.5 / (bw * bw), out=Kb).exp_().sub_(shift_of[c][m])
                Kb[t, t] = 0.0
                R[c][m, r0:r1] += Kb.sum(1)
                R[c][m, r1:] += Kb[:, h:].sum(0)
                Kb[:, h:] *= SQRT2
        for c in range(C):
            flat = F[c].reshape(M, -1)
            G[c] += (flat if sel is None else flat[sel]) @ flat.T
        del F
    out = []
    for c, ker in enumerate(kernels):
        if ker.kind == "linear":
            D = torch.stack(q)
        else:
            D = (1.0 - shifts[c])[:, None].expand(M, n).clone()
        Gc = _sym(G[c]) if sel is None else G[c]
        mag = torch.diagonal(Gc) if sel is None else None
        out.append(GramStats(G=Gc, R=R[c], D=D, mag=mag, shift=shifts[c]))
    return out


def _rbf_shifts(
    sources: Sequence[torch.Tensor], q: Sequence[torch.Tensor], ker: Kernel
) -> torch.Tensor | None:
    """Per model, the RBF kernel at the mean squared distance between distinct stimuli: the value
    its entries are stored minus (None for a linear kernel). Any value near the typical entry
    removes the cancellation, so the mean need not be exact."""
    if ker.kind == "linear":
        return None
    out = []
    for m, S in enumerate(sources):
        n, total = S.shape[0], S.sum(0)
        mean_d2 = float(2.0 * n * q[m].sum() - 2.0 * (total @ total)) / (n * (n - 1))
        bw = ker.bandwidths[m]
        c = math.exp(-0.5 * max(mean_d2, 0.0) / (bw * bw))
        out.append(c if math.isfinite(c) else 0.0)
    return torch.tensor(out, dtype=torch.float64, device=sources[0].device)


def feature_path(sources: Sequence[torch.Tensor], budget_bytes: float) -> GramStats:
    """Stats of the linear kernels ``S S'`` from d x d products only."""
    M = len(sources)
    dev = sources[0].device
    q = torch.stack([(S * S).sum(1) for S in sources])
    R = torch.stack([S @ S.sum(0) for S in sources]) - q
    dims = [S.shape[1] for S in sources]
    G = torch.zeros((M, M), dtype=torch.float64, device=dev)
    for a in range(M):
        b = a
        while b < M:  # group models b.. so that S_a' [S_b ...] stays under the budget
            cols, e = 0, b
            while e < M and (e == b or 8.0 * dims[a] * (cols + dims[e]) <= budget_bytes):
                cols += dims[e]
                e += 1
            P = sources[a].T @ torch.cat(list(sources[b:e]), dim=1)
            sq = (P * P).sum(0)
            G[a, b:e] = torch.stack([part.sum() for part in torch.split(sq, dims[b:e])])
            b = e
    G = torch.triu(G) + torch.triu(G, 1).T
    mag = torch.diagonal(G).clone()
    return GramStats(G=G - q @ q.T, R=R, D=q, mag=mag)


def _sym(G: torch.Tensor) -> torch.Tensor:
    return 0.5 * (G + G.T)
