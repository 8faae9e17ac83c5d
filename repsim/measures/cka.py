"""Centred kernel alignment (CKA) for one pair of representations.

Conventions (made explicit because the literature differs):

- RBF kernel: ``k(x, y) = exp(-|x - y|^2 / (2 bw^2))``. With ``sigma_mode="absolute"`` the bandwidth
  ``bw`` is ``sigma`` itself, as in the study's code on L2-normalised features. With
  ``sigma_mode="median"`` it is ``sigma`` times the median Euclidean distance between distinct stimuli
  (pairs i < j), the convention of Kornblith et al. (2019).
- Unbiased CKA uses the U-statistic HSIC of Song et al. (2012): with K~ the Gram matrix with a zeroed
  diagonal, ``HSIC_u(K, L) = <U(K), U(L)> / (n (n - 3))`` where ``U`` is U-centring
  ``U(K)_ij = K~_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2))`` for i != j and 0 on the diagonal
  (``r = K~ 1``, ``s = 1' K~ 1``). Expanding the product gives the trace formula of METHODS.md.
- Biased CKA centres with ``H = I - 11'/n``: ``HSIC_b ~ <HKH, HLH>``.

Features are centred over stimuli first; CKA is exactly invariant to that and it avoids cancellation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures._inputs import as_matrix, check_pair, require_variance

# a self-HSIC below this fraction of the kernel's second moment counts as zero (undefined CKA)
REL_TOL = 1e-12


def cka(
    X: Any,
    Y: Any,
    kernel: str = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    sigma_mode: str = "absolute",
) -> float:
    """Centred kernel alignment between two representations of the same stimuli.

    Parameters
    ----------
    X, Y : arrays (n_stimuli, d_x) and (n_stimuli, d_y), rows aligned; numpy or torch, computed in float64.
    kernel : ``"linear"`` or ``"rbf"``.
    unbiased : U-statistic HSIC (needs n >= 4; can be slightly negative) or biased double centring.
    sigma : RBF bandwidth; absolute, or a multiple of the median distance (``sigma_mode``).
        Required for ``sigma_mode="absolute"``; defaults to 1 (the median itself) for ``"median"``.
    sigma_mode : ``"absolute"`` (the study) or ``"median"``.

    Returns
    -------
    float
        CKA; 1 for identical inputs. Raises :class:`UndefinedMeasureError` for a representation
        without variance, :class:`InputError` for malformed input.
    """
    bw_x, bw_y = _check_options(kernel, sigma, sigma_mode)
    Xa, Ya = as_matrix(X, "X"), as_matrix(Y, "Y")
    n = check_pair(Xa, Ya, 4 if unbiased else 3, f"{'unbiased' if unbiased else 'biased'} CKA")
    require_variance(Xa, "X", "CKA")
    require_variance(Ya, "Y", "CKA")
    Xa = Xa - Xa.mean(axis=0)
    Ya = Ya - Ya.mean(axis=0)
    dx, dy = Xa.shape[1], Ya.shape[1]
    if kernel == "linear" and dx * dy + dx * dx + dy * dy < n * (dx + dy):
        hxy, hxx, hyy = (
            _linear_feature_hsic(A, B, unbiased) for A, B in ((Xa, Ya), (Xa, Xa), (Ya, Ya))
        )
        scale_x, scale_y = _fro2(Xa.T @ Xa), _fro2(Ya.T @ Ya)
    else:
        K = gram(Xa, kernel, bw_x, sigma_mode)
        L = gram(Ya, kernel, bw_y, sigma_mode)
        scale_x, scale_y = _fro2(K), _fro2(L)
        centre = u_centre if unbiased else double_centre
        Kc, Lc = centre(K), centre(L)
        hxy, hxx, hyy = _fro_inner(Kc, Lc), _fro2(Kc), _fro2(Lc)
    for h, scale, name in ((hxx, scale_x, "X"), (hyy, scale_y, "Y")):
        if not h > REL_TOL * scale:
            raise UndefinedMeasureError(
                f"CKA is undefined: the centred kernel of {name} is zero (self-HSIC {h:.3g}); "
                "the representation has no usable variance for this kernel (for RBF, check sigma)"
            )
    return float(hxy / np.sqrt(hxx * hyy))


def _check_options(
    kernel: str, sigma: float | None, sigma_mode: str
) -> tuple[float | None, float | None]:
    if kernel not in ("linear", "rbf"):
        raise InputError(f"kernel={kernel!r} is unknown; use 'linear' or 'rbf'")
    if sigma_mode not in ("absolute", "median"):
        raise InputError(f"sigma_mode={sigma_mode!r} is unknown; use 'absolute' or 'median'")
    if kernel == "linear":
        if sigma is not None:
            raise InputError("the linear kernel takes no sigma; drop sigma or use kernel='rbf'")
        return None, None
    if sigma is None:
        if sigma_mode == "absolute":
            raise InputError("kernel='rbf' needs sigma (the study uses sigma=0.4, absolute)")
        sigma = 1.0
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive number, got {sigma!r}")
    return float(sigma), float(sigma)


def sq_distances(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between all rows of ``X`` (clipped at 0)."""
    q = np.einsum("ij,ij->i", X, X)
    D2 = q[:, None] + q[None, :] - 2.0 * (X @ X.T)
    np.maximum(D2, 0.0, out=D2)
    np.fill_diagonal(D2, 0.0)
    return D2


def median_distance(X: np.ndarray) -> float:
    """Median Euclidean distance over distinct stimulus pairs i < j."""
    D2 = sq_distances(X)
    med = float(np.median(np.sqrt(D2[np.triu_indices(X.shape[0], k=1)])))
    if not med > 0:
        raise UndefinedMeasureError(
            "the median distance between stimuli is 0 (more than half of the stimuli are duplicates), "
            "so sigma_mode='median' has no bandwidth; use sigma_mode='absolute'"
        )
    return med


def gram(
    X: np.ndarray, kernel: str, sigma: float | None = None, sigma_mode: str = "absolute"
) -> np.ndarray:
    """The n x n kernel matrix of the rows of ``X`` (linear, or RBF with the module's convention)."""
    if kernel == "linear":
        return X @ X.T
    bw = sigma * median_distance(X) if sigma_mode == "median" else sigma
    return np.exp(sq_distances(X) / (-2.0 * bw * bw))


def u_centre(K: np.ndarray) -> np.ndarray:
    """U-centre a kernel matrix (Székely & Rizzo 2014): <U(K), U(L)> / (n(n-3)) is the unbiased HSIC."""
    n = K.shape[0]
    Kt = K.copy()
    np.fill_diagonal(Kt, 0.0)
    r = Kt.sum(axis=1)
    U = Kt - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(U, 0.0)
    return U


def double_centre(K: np.ndarray) -> np.ndarray:
    """HKH with H = I - 11'/n, without forming H."""
    r = K.mean(axis=1)
    return K - r[:, None] - r[None, :] + r.mean()


def _linear_feature_hsic(X: np.ndarray, Y: np.ndarray, unbiased: bool) -> float:
    """HSIC of linear kernels from d x d products only (no n x n matrix), up to a factor of n."""
    if not unbiased:  # X, Y are column-centred, so HKH = X X'
        return _fro2(X.T @ Y)
    n = X.shape[0]
    qx, qy = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    ax, ay = X.sum(axis=0), Y.sum(axis=0)
    tr = _fro2(X.T @ Y) - qx @ qy
    sx, sy = ax @ ax - qx.sum(), ay @ ay - qy.sum()
    rx, ry = X @ ax - qx, Y @ ay - qy
    return tr + sx * sy / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rx @ ry)


def _fro2(A: np.ndarray) -> float:
    return float(np.einsum("ij,ij->", A, A))


def _fro_inner(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.einsum("ij,ij->", A, B))
