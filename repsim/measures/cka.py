"""Centred kernel alignment (CKA) for one pair of representations.

Conventions (made explicit because the literature differs):

- RBF kernel: ``k(x, y) = exp(-|x - y|^2 / (2 bw^2))``. With ``sigma_mode="absolute"`` the bandwidth
  ``bw`` is ``sigma`` itself, as in the study's code on L2-normalised features. With
  ``sigma_mode="median"`` it is ``sigma`` times the median Euclidean distance between distinct stimuli
  (pairs i < j). Kornblith et al.'s (2019) code takes the root of the median of all n^2 squared
  distances, the zero diagonal included: a slightly smaller bandwidth (in one example CKA differed
  by 1e-4 at n = 500, 4e-3 at n = 10).
- Unbiased CKA uses the U-statistic HSIC of Song et al. (2012): with K~ the Gram matrix with a zeroed
  diagonal, ``HSIC_u(K, L) = <U(K), U(L)> / (n (n - 3))`` where ``U`` is U-centring
  ``U(K)_ij = K~_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2))`` for i != j and 0 on the diagonal
  (``r = K~ 1``, ``s = 1' K~ 1``). Expanding the product gives the trace formula of METHODS.md.
- Biased CKA centres with ``H = I - 11'/n``: ``HSIC_b ~ <HKH, HLH>``.

How the unbiased HSIC is evaluated so that it keeps its digits on near-degenerate inputs, and when
CKA counts as undefined, is explained at :func:`_unbiased_hsics` and :data:`REL_TOL` (and in the
methods chapter of the book).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures._inputs import as_matrix, check_flag, check_pair, require_variance

# The "undefined" rule (book/methods.md): unbiased CKA is undefined when the U-centred kernel of a
# representation is zero, judged as ||U(K)||^2 <= REL_TOL * ||K~||^2 with K~ the kernel without its
# diagonal (the entries the estimator uses); biased CKA compares <HKH, HKH> with REL_TOL * ||K||^2.
REL_TOL = 1e-12
# ... and when that scale itself is below SCALE_FLOOR: the kernel's squared entries (fourth powers of
# the features' spread) then sit where float64 loses digits to underflow (its smallest normal
# number over its epsilon, about 1e-292), and a self-HSIC judged against them is rounding noise.
SCALE_FLOOR = float(np.finfo(np.float64).tiny / np.finfo(np.float64).eps)
# The feature-space expansion of the unbiased HSIC subtracts terms of size ``mag`` to leave h; when
# h < CANCEL * mag it has lost more than two digits and is recomputed on the U-centred Gram path.
# The similarities of that representation then carry an error of about eps / CANCEL (1e-14) at most.
CANCEL = 1e-2
# elements of one (rows x n) kernel block on the blocked Gram path (32 MiB of float64)
BLOCK_ELEMENTS = 2**22


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
        Used as given: the study L2-normalises every row first (features read with
        :mod:`repsim.store` already are), and an absolute ``sigma`` such as 0.4 assumes unit-norm rows;
        on raw features pass ``X / np.linalg.norm(X, axis=1, keepdims=True)``.
    kernel : ``"linear"`` or ``"rbf"``.
    unbiased : True: U-statistic HSIC (needs n >= 4; can be slightly negative); False: biased double
        centring. Anything but a bool raises.
    sigma : RBF bandwidth; absolute, or a multiple of the median distance between distinct stimuli
        (pairs i < j; see the module docstring for how Kornblith et al.'s code differs; ``sigma_mode``).
        Required for ``sigma_mode="absolute"``; defaults to 1 (the median itself) for ``"median"``.
    sigma_mode : ``"absolute"`` (the study) or ``"median"``.

    Returns
    -------
    float
        CKA; 1 for identical inputs. Raises :class:`UndefinedMeasureError` for a representation
        without usable variance (see :data:`REL_TOL`), :class:`InputError` for malformed input.
    """
    unbiased = check_flag(unbiased, "unbiased")
    bw_x, bw_y = _check_options(kernel, sigma, sigma_mode)
    Xa, Ya = as_matrix(X, "X"), as_matrix(Y, "Y")
    check_pair(Xa, Ya, 4 if unbiased else 3, f"{'unbiased' if unbiased else 'biased'} CKA")
    require_variance(Xa, "X", "CKA")
    require_variance(Ya, "Y", "CKA")
    if unbiased:
        hxy, (hxx, scale_x), (hyy, scale_y) = _unbiased_hsics(
            Xa, Ya, kernel, bw_x, bw_y, sigma_mode
        )
    else:
        hxy, (hxx, scale_x), (hyy, scale_y) = _biased_hsics(Xa, Ya, kernel, bw_x, bw_y, sigma_mode)
    for h, scale, name in ((hxx, scale_x, "X"), (hyy, scale_y, "Y")):
        if not h > REL_TOL * scale:
            raise UndefinedMeasureError(
                f"CKA is undefined: the centred kernel of {name} is zero (self-HSIC {h:.3g}); "
                "the representation has no usable variance for this kernel (for RBF, check sigma)"
            )
        if not scale > SCALE_FLOOR:
            raise UndefinedMeasureError(
                f"CKA is undefined: the centred kernel of {name} underflows float64 (squared norm "
                f"{scale:.3g}, below {SCALE_FLOOR:.0e}); its variance is too small to compute"
            )
    return float(hxy / np.sqrt(hxx * hyy))


Terms = tuple[float, tuple[float, float], tuple[float, float]]


def _unbiased_hsics(
    X: np.ndarray, Y: np.ndarray, kernel: str, bw_x: float | None, bw_y: float | None, mode: str
) -> Terms:
    """n (n - 3) HSIC_u for (X, Y), (X, X), (Y, Y), with the scale each self term is judged against.

    Small d, linear kernel: the feature-space expansion (no n x n matrix) on mean-centred features.
    It subtracts O(|X|^4) terms; near-degenerate inputs (one outlier, the rest within eps) leave an
    O(eps^2) result, so when more than two digits cancel the U-centred Gram path is used instead.
    That path works from features centred at their coordinate-wise median: a tight cluster then sits
    near 0 (its differences to the median are exact), every off-diagonal kernel entry is as small as
    the structure it carries, and U-centring entry by entry loses no more than a few ulps.
    """
    n, dx, dy = X.shape[0], X.shape[1], Y.shape[1]
    if kernel == "linear" and dx * dy + dx * dx + dy * dy < n * (dx + dy):
        Xm, Ym = X - X.mean(axis=0), Y - Y.mean(axis=0)
        (hxx, mx), (hyy, my) = _linear_feature_terms(Xm, Xm), _linear_feature_terms(Ym, Ym)
        if hxx >= CANCEL * mx and hyy >= CANCEL * my:
            return _linear_feature_terms(Xm, Ym)[0], (hxx, mx), (hyy, my)
    Xo, Yo = _median_centred(X), _median_centred(Y)
    return _u_gram_hsics(
        _kernel_rows(Xo, kernel, bw_x, mode), _kernel_rows(Yo, kernel, bw_y, mode), n
    )


def _biased_hsics(
    X: np.ndarray, Y: np.ndarray, kernel: str, bw_x: float | None, bw_y: float | None, mode: str
) -> Terms:
    """<HKH, HLH> for (X, Y), (X, X), (Y, Y), with ||K||^2 and ||L||^2 as the scales."""
    Xm, Ym = X - X.mean(axis=0), Y - Y.mean(axis=0)
    dx, dy = X.shape[1], Y.shape[1]
    if kernel == "linear" and dx * dy + dx * dx + dy * dy < X.shape[0] * (dx + dy):
        hxx, hyy = _fro2(Xm.T @ Xm), _fro2(Ym.T @ Ym)  # centred features: HKH = X X'
        return _fro2(Xm.T @ Ym), (hxx, hxx), (hyy, hyy)
    if kernel != "linear":  # distances from the features as given (see sq_distances)
        Xm, Ym = X, Y
    K, L = gram(Xm, kernel, bw_x, mode), gram(Ym, kernel, bw_y, mode)
    Kc, Lc = double_centre(K), double_centre(L)
    return _fro_inner(Kc, Lc), (_fro2(Kc), _fro2(K)), (_fro2(Lc), _fro2(L))


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
    try:  # a string or a bool is no bandwidth, even where float() would read it as one
        bw = float(sigma) if not isinstance(sigma, (str, bytes, bool, np.bool_)) else None
    except (TypeError, ValueError):
        bw = None
    if bw is None or not (np.isfinite(bw) and bw > 0):
        raise InputError(f"sigma must be a positive number, e.g. sigma=0.4, got {sigma!r}")
    return bw, bw


def sq_distances(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between all rows of ``X`` (clipped at 0).

    Computed about the coordinate-wise median (distances do not depend on the origin): a tight
    cluster of rows far from the origin keeps the digits |x|^2 + |y|^2 - 2 x.y would cancel."""
    X = _median_centred(X)
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


def _linear_feature_terms(X: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """n (n - 3) HSIC_u of linear kernels of column-centred X, Y from d x d products only.

    Returns the value and the magnitude of the terms it is the difference of: ``tr(K~ L~)`` (as
    ``|X'Y|^2 - q_x . q_y``), ``s_K s_L / ((n-1)(n-2))`` and ``2 r_K . r_L / (n-2)``.
    """
    n = X.shape[0]
    qx, qy = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    ax, ay = X.sum(axis=0), Y.sum(axis=0)
    t, p = _fro2(X.T @ Y), float(qx @ qy)
    sx, sy = ax @ ax - qx.sum(), ay @ ay - qy.sum()
    rx, ry = X @ ax - qx, Y @ ay - qy
    s2, r2 = sx * sy / ((n - 1) * (n - 2)), 2.0 / (n - 2) * float(rx @ ry)
    return t - p + s2 - r2, abs(t) + abs(p) + abs(s2) + abs(r2)


def _median_centred(X: np.ndarray) -> np.ndarray:
    """``X`` minus its coordinate-wise median (the U-centred kernel does not depend on the origin)."""
    return X - np.median(X, axis=0)


def _kernel_rows(
    X: np.ndarray, kernel: str, bw: float | None, mode: str
) -> Callable[[int, int], np.ndarray]:
    """A function giving rows r0:r1 of the kernel matrix of ``X`` (all n columns)."""
    if kernel == "linear":
        return lambda r0, r1: X[r0:r1] @ X.T
    if mode == "median":
        bw = bw * median_distance(X)
    q = np.einsum("ij,ij->i", X, X)

    def rows(r0: int, r1: int) -> np.ndarray:
        D2 = q[r0:r1, None] + q[None, :] - 2.0 * (X[r0:r1] @ X.T)
        np.maximum(D2, 0.0, out=D2)
        return np.exp(D2 / (-2.0 * bw * bw))

    return rows


def _u_gram_hsics(
    kx: Callable[[int, int], np.ndarray], ky: Callable[[int, int], np.ndarray], n: int
) -> Terms:
    """<U(K), U(L)>, <U(K), U(K)>, <U(L), U(L)> in row blocks, with ||K~||^2 and ||L~||^2.

    U-centring needs the row sums of K~ first, so with more than one block the kernel rows are
    computed twice (one pass for the sums, one for the products); one block is kept in memory.
    """
    nb = max(1, min(n, BLOCK_ELEMENTS // n))
    starts = list(range(0, n, nb))
    rx, ry = np.zeros(n), np.zeros(n)
    fx = fy = 0.0
    kept = None
    for r0 in starts:
        r1 = min(n, r0 + nb)
        Kb, Lb = _offdiag(kx(r0, r1), r0), _offdiag(ky(r0, r1), r0)
        rx[r0:r1], ry[r0:r1] = Kb.sum(axis=1), Lb.sum(axis=1)
        fx, fy = fx + _fro2(Kb), fy + _fro2(Lb)
        if len(starts) == 1:
            kept = Kb, Lb
    sx, sy = rx.sum(), ry.sum()
    hxy = hxx = hyy = 0.0
    for r0 in starts:
        r1 = min(n, r0 + nb)
        Kb, Lb = kept if kept is not None else (_offdiag(kx(r0, r1), r0), _offdiag(ky(r0, r1), r0))
        Ux, Uy = _u_rows(Kb, rx, sx, r0), _u_rows(Lb, ry, sy, r0)
        hxy += _fro_inner(Ux, Uy)
        hxx += _fro2(Ux)
        hyy += _fro2(Uy)
    return hxy, (hxx, fx), (hyy, fy)


def _offdiag(B: np.ndarray, r0: int) -> np.ndarray:
    """Rows r0:r0+h of a kernel matrix with their diagonal entries set to 0 (in place)."""
    h = B.shape[0]
    B[np.arange(h), np.arange(r0, r0 + h)] = 0.0
    return B


def _u_rows(Kb: np.ndarray, r: np.ndarray, s: float, r0: int) -> np.ndarray:
    """Rows r0:r0+h of U(K) from rows of K~, the row sums ``r`` of K~ and their total ``s``."""
    n, h = Kb.shape[1], Kb.shape[0]
    U = Kb - r[r0 : r0 + h, None] / (n - 2) - r[None, :] / (n - 2) + s / ((n - 1) * (n - 2))
    return _offdiag(U, r0)


def _fro2(A: np.ndarray) -> float:
    return float(np.einsum("ij,ij->", A, A))


def _fro_inner(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.einsum("ij,ij->", A, B))
