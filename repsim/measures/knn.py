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
    float in [0, 1]; 1 for identical inputs.
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

    ``block_rows`` bounds the (block_rows, n) similarity block held at once.
    """
    n = Z.shape[0]
    block = n if block_rows is None else max(1, min(n, block_rows))
    out = torch.empty((n, k), dtype=torch.int64, device=Z.device)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        S = Z[r0:r1] @ Z.T
        rows = torch.arange(r1 - r0, device=Z.device)
        S[rows, rows + r0] = -torch.inf
        out[r0:r1] = torch.topk(S, k, dim=1, sorted=True).indices
    return out
