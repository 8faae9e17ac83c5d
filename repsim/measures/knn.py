"""Mutual k-nearest-neighbour alignment (Huh et al. 2024, the Platonic Representation Hypothesis).

Neighbours are found by cosine similarity, i.e. the inner product of L2-normalised feature vectors,
as in that paper; this is part of the measure's definition, not a normalisation of the inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures._inputs import as_matrix, check_pair, require_variance


def mutual_knn(X: Any, Y: Any, k: int = 10) -> float:
    """Mean fraction of shared k nearest neighbours: ``mean_i |S_X(i) & S_Y(i)| / k``.

    Parameters
    ----------
    X, Y : arrays (n_stimuli, d_x), (n_stimuli, d_y), rows aligned; computed in float64.
    k : neighbours per stimulus, excluding the stimulus itself; needs ``k < n - 1`` (at
        ``k = n - 1`` the neighbours are all the other stimuli and the score is 1 for any inputs).

    Returns
    -------
    float in [0, 1]; 1 for identical inputs. Equal similarities (duplicate stimuli) are ordered
    by the lower stimulus index in both models (see :func:`knn_indices`).
    """
    k = _check_k(k)
    Xa, Ya = as_matrix(X, "X"), as_matrix(Y, "Y")
    n = check_pair(Xa, Ya, 2, "mutual kNN")
    if k >= n - 1:
        raise InputError(
            f"mutual kNN needs k < n_stimuli - 1 (with k = n - 1 neighbours, all the others, it is "
            f"1 whatever the features), got k={k} and n={n}; lower k or use more stimuli"
        )
    sets = []
    for A, name in ((Xa, "X"), (Ya, "Y")):
        require_variance(A, name, "mutual kNN")
        sets.append(knn_indices(torch.from_numpy(unit_rows(A, name)), k).numpy())
    a, b = np.sort(sets[0], axis=1), np.sort(sets[1], axis=1)
    shared = sum(np.intersect1d(a[i], b[i], assume_unique=True).size for i in range(n))
    return shared / (n * k)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def unit_rows(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Rows scaled to unit L2 norm; a zero row has no direction and raises."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    bad = ~(norms > 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UndefinedMeasureError(
            f"mutual kNN is undefined: stimulus row {row} of {name} is a zero vector "
            f"({int(bad.sum())} such rows), so it has no cosine neighbours"
        )
    return X / norms[:, None]


def knn_indices(Z: torch.Tensor, k: int, block_rows: int | None = None) -> torch.Tensor:
    """Indices (n, k) of each row's k most cosine-similar other rows of unit-norm ``Z``, blockwise.

    Ordered by similarity, and among equal similarities by the lower stimulus index. Exact ties
    are real: a dataset's duplicate images give identical rows in every model. Two models that
    rank a group of duplicates alike must pick the same members of it, or they lose overlap by
    chance (with duplicates in fours, mutual kNN 0.70 instead of 0.79). So the similarities to a
    group of identical rows are computed once, from one of them (a matrix product can round two
    identical columns differently, by their position), and ties are ordered by index
    (``torch.topk``'s order among them depends on n, the block and the device). ``block_rows``
    bounds the (block_rows, n) similarity block held at once.
    """
    n = Z.shape[0]
    block = n if block_rows is None else max(1, min(n, block_rows))
    out = torch.empty((n, k), dtype=torch.int64, device=Z.device)
    distinct, column = torch.unique(Z, dim=0, return_inverse=True)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        S = Z[r0:r1] @ Z.T if distinct.shape[0] == n else (Z[r0:r1] @ distinct.T)[:, column]
        rows = torch.arange(r1 - r0, device=Z.device)
        S[rows, rows + r0] = -torch.inf
        vals, idx = torch.topk(S, k, dim=1, sorted=True)
        # rows with a tie inside the k or at its edge: order them again, stably (lower index first)
        tied = (S >= vals[:, -1:]).sum(dim=1) > k
        if k > 1:
            tied |= (vals[:, 1:] == vals[:, :-1]).any(dim=1)
        if bool(tied.any()):
            t = torch.nonzero(tied).squeeze(1)
            idx[t] = torch.sort(S[t], dim=1, descending=True, stable=True).indices[:, :k]
        out[r0:r1] = idx
    return out
