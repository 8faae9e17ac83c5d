"""Orthogonal Procrustes similarity for one pair of representations.

Both representations are centred over stimuli and scaled to unit Frobenius norm (``X~``, ``Y~``).
The orthogonal Procrustes distance is ``d = min_Q |X~ Q - Y~|_F`` over orthogonal ``Q`` (the narrower
representation is zero-padded to the wider one's dimension, as in netrep); its closed form is
``d^2 = 2 - 2 |X~' Y~|_*`` with ``|.|_*`` the nuclear norm, the sum of singular values (Schönemann
1966). Two similarities in [0, 1] follow, both 1 exactly when ``Y = c X Q + 1 b'``:

- ``procrustes``: ``|X~' Y~|_* = 1 - d^2 / 2``, the Procrustes similarity of Ding et al. (2021);
- ``procrustes_angular``: ``1 - theta / (pi / 2)`` with ``theta = arccos |X~' Y~|_*`` the angular
  Procrustes distance of Williams et al. (2021), a metric on shapes, scaled to [0, 1].

Both are invariant to every transform of the registry's vocabulary: a rotation or permutation of
either representation's features, isotropic scaling, translation, and the same permutation of stimuli.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from repsim.errors import UndefinedMeasureError
from repsim.measures._inputs import as_matrix, check_flag, check_pair, require_variance


def procrustes(X: Any, Y: Any, angular: bool = False) -> float:
    """Orthogonal Procrustes similarity between two representations of the same stimuli.

    Parameters
    ----------
    X, Y : arrays (n_stimuli, d_x) and (n_stimuli, d_y), rows aligned; numpy or torch, computed in
        float64. The feature dims may differ.
    angular : False: ``|X~' Y~|_* = 1 - d^2 / 2``; True: ``1 - 2 arccos(|X~' Y~|_*) / pi``.

    Returns
    -------
    float in [0, 1]; 1 when Y is a rotated, scaled and translated copy of X. Raises
    :class:`UndefinedMeasureError` for a representation without variance across stimuli.
    """
    angular = check_flag(angular, "angular")
    Xa, Ya = as_matrix(X, "X"), as_matrix(Y, "Y")
    check_pair(Xa, Ya, 3, "Procrustes similarity")  # at n = 2 it is 1 whatever the inputs
    parts = []
    for A, name in ((Xa, "X"), (Ya, "Y")):
        require_variance(A, name, "Procrustes similarity")
        Ac = A - A.mean(axis=0)
        norm = np.sqrt(np.einsum("ij,ij->", Ac, Ac))
        if not norm > 0:
            raise UndefinedMeasureError(
                f"Procrustes similarity is undefined: {name} has zero norm after centring"
            )
        parts.append(_span(Ac / norm))
    Xs, Ys = parts
    if not angular:
        # the nuclear norm of a product of unit-norm matrices is at most 1; clip rounding above it
        return min(float(np.linalg.svd(Xs.T @ Ys, compute_uv=False).sum()), 1.0)
    # arccos(s) loses half the digits near s = 1; the residual of the optimal rotation does not:
    # d = |X~ Q - Y~|_F is the chord of the angle on the unit sphere, d = 2 sin(theta / 2).
    Xs, Ys = _pad(Xs, Ys.shape[1]), _pad(Ys, Xs.shape[1])
    U, _, Vt = np.linalg.svd(Xs.T @ Ys)
    R = Xs @ (U @ Vt) - Ys
    d = np.sqrt(np.einsum("ij,ij->", R, R))
    theta = 2.0 * np.arcsin(min(d / 2.0, 1.0))
    return 1.0 - float(theta) / (np.pi / 2)


def _pad(A: np.ndarray, d: int) -> np.ndarray:
    """``A`` with zero columns appended up to ``d`` features (rotations act on a common space)."""
    return A if A.shape[1] >= d else np.hstack([A, np.zeros((A.shape[0], d - A.shape[1]))])


def _span(A: np.ndarray) -> np.ndarray:
    """``A`` with more features than stimuli replaced by ``U S`` of its thin SVD (``A = U S V'``).

    ``X' Y = V_x (S_x U_x' U_y S_y) V_y'`` has the singular values of the middle factor, so this
    changes no singular value of ``X' Y`` and shrinks the SVD to at most n x n.
    """
    n, d = A.shape
    if d <= n:
        return A
    U, S, _ = np.linalg.svd(A, full_matrices=False)
    return U * S
