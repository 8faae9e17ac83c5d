"""Representational similarity analysis (RSA) for one pair of representations.

The representational dissimilarity matrix (RDM) of a representation is ``1 - corr(x_i, x_j)``, the
Pearson correlation between the feature vectors of two stimuli. Two RDMs are compared over their upper
triangles (i < j) by Spearman (the study) or Pearson correlation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures._inputs import as_matrix, check_pair, require_variance
from repsim.measures.cka import REL_TOL


def rsa(X: Any, Y: Any, rdm: str = "correlation", compare: str = "spearman") -> float:
    """Correlation between the correlation-distance RDMs of two representations.

    Parameters
    ----------
    X, Y : arrays (n_stimuli, d_x), (n_stimuli, d_y), rows aligned; computed in float64.
    rdm : only ``"correlation"`` (1 - Pearson correlation between stimuli).
    compare : ``"spearman"`` (ranks, average ties) or ``"pearson"``.

    Returns
    -------
    float in [-1, 1]. Raises :class:`UndefinedMeasureError` if a stimulus has a constant feature
    vector (its correlations are undefined) or an RDM is constant.
    """
    if rdm != "correlation":
        raise InputError(f"rdm={rdm!r} is unknown; use rdm='correlation'")
    if compare not in ("spearman", "pearson"):
        raise InputError(f"compare={compare!r} is unknown; use 'spearman' or 'pearson'")
    Xa, Ya = as_matrix(X, "X"), as_matrix(Y, "Y")
    check_pair(Xa, Ya, 3, "RSA")
    vecs = []
    for A, name in ((Xa, "X"), (Ya, "Y")):
        require_variance(A, name, "RSA")
        v = rdm_upper_triangle(A, name)
        if rdm_is_constant(v):
            raise UndefinedMeasureError(
                f"RSA is undefined: the RDM of {name} is constant (all stimuli equally dissimilar)"
            )
        vecs.append(rankdata(v) if compare == "spearman" else v)
    a, b = (v - v.mean() for v in vecs)
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def rdm_is_constant(v: Any) -> bool:
    """Whether an RDM's upper triangle ``v`` (numpy or torch) is one value up to rounding.

    Every stimulus equally correlated with every other (one-hot rows, say) gives a constant RDM in
    exact arithmetic and rounding noise in float64, which ranks would order as if it were
    structure. The rule is the one the all-pairs Pearson path applies to the correlations ``1 - v``:
    their spread squared at most :data:`~repsim.measures.cka.REL_TOL` times their second moment
    (from the moments, one temporary: the cancellation is far below REL_TOL).
    """
    c = 1.0 - v
    second, total = float(c @ c), float(c.sum())
    return second - total * total / c.shape[0] <= REL_TOL * second


def standardise_rows(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Centre each stimulus over features and scale it to unit norm, so Z Z' is the correlation matrix."""
    Z = X - X.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", Z, Z))
    bad = ~(norms > 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UndefinedMeasureError(
            f"RSA is undefined: stimulus row {row} of {name} has a constant feature vector "
            f"({int(bad.sum())} such rows), so its correlation with other stimuli is undefined"
        )
    return Z / norms[:, None]


def rdm_upper_triangle(X: np.ndarray, name: str = "X") -> np.ndarray:
    """The RDM's entries i < j, row by row. Duplicate stimuli (identical rows) give exact ties: the
    RDM is computed over the distinct rows and read from there (a matrix product rounds the same
    entry differently at different positions), and a duplicate pair is 0 exactly."""
    n = X.shape[0]
    iu = np.triu_indices(n, k=1)
    distinct, which = np.unique(X, axis=0, return_inverse=True)
    if distinct.shape[0] == n:
        return correlation_rdm(X, name)[iu]
    which = which.reshape(-1)
    a, b = which[iu[0]], which[iu[1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.where(lo == hi, 0.0, correlation_rdm(distinct, name)[lo, hi])


def correlation_rdm(X: np.ndarray, name: str = "X") -> np.ndarray:
    """The n x n RDM ``1 - corr(x_i, x_j)`` with a zero diagonal."""
    Z = standardise_rows(X, name)
    D = 1.0 - Z @ Z.T
    np.fill_diagonal(D, 0.0)
    return D
