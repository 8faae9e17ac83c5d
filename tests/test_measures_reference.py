"""Slow, obviously-correct float64 reference implementations used by the measure tests."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import permutations

import numpy as np


def linear_kernel(X):
    return X @ X.T


def rbf_kernel(X, bw):
    n = X.shape[0]
    K = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            K[i, j] = np.exp(-np.sum((X[i] - X[j]) ** 2) / (2 * bw**2))
    return K


def median_distance(X):
    n = X.shape[0]
    return float(
        np.median([np.linalg.norm(X[i] - X[j]) for i in range(n) for j in range(i + 1, n)])
    )


def hsic_u_loops(K, L):
    """Unbiased HSIC as the U-statistic over distinct index tuples (Song et al. 2012, eq. 5 form)."""
    n = K.shape[0]
    t1 = sum(K[i, j] * L[i, j] for i, j in permutations(range(n), 2)) / (n * (n - 1))
    t2 = sum(K[i, j] * L[q, r] for i, j, q, r in permutations(range(n), 4)) / (
        n * (n - 1) * (n - 2) * (n - 3)
    )
    t3 = sum(K[i, j] * L[i, q] for i, j, q in permutations(range(n), 3)) / (n * (n - 1) * (n - 2))
    return t1 + t2 - 2 * t3


def hsic_u_trace(K, L):
    """The trace formula of METHODS.md with explicit matrices."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ Kt @ Lt @ one)
    ) / (n * (n - 3))


def _as_integers(A):
    """``A`` (float64) as an object array of Python ints and a power of two: A = ints * 2**-shift."""
    A = np.asarray(A, dtype=np.float64)
    shift = max((-math.frexp(float(v))[1] + 53 for v in A.ravel() if v != 0), default=0)
    shift = max(shift, 0)
    ints = np.array([int(Fraction(float(v)) * 2**shift) for v in A.ravel()], dtype=object)
    return ints.reshape(A.shape), shift


def _hsic_u_exact_scaled(X, Y):
    """n(n-3)(n-1)(n-2) HSIC_u of linear kernels as an exact integer, and its power-of-two scale."""
    (Xi, sx), (Yi, sy) = _as_integers(X), _as_integers(Y)
    n = Xi.shape[0]
    Kt, Lt = Xi @ Xi.T, Yi @ Yi.T
    for i in range(n):
        Kt[i, i] = Lt[i, i] = 0
    trace = int(np.sum(Kt * Lt))
    kr, lr = Kt.sum(axis=1), Lt.sum(axis=1)
    total = (n - 1) * (n - 2) * trace + int(kr.sum()) * int(lr.sum()) - 2 * (n - 1) * int(kr @ lr)
    return total, 2 * sx + 2 * sy


def hsic_u_exact(X, Y):
    """Unbiased linear HSIC in exact rational arithmetic (no rounding at all).

    Every float64 is an integer times a power of two, so the U-statistic is computed in Python
    integers and returned as a Fraction. The float formulas cancel large terms on near-degenerate
    inputs; this is the ground truth they approach.
    """
    total, shift = _hsic_u_exact_scaled(X, Y)
    n = np.asarray(X).shape[0]
    return Fraction(total, 2**shift * n * (n - 3) * (n - 1) * (n - 2))


def cka_exact(X, Y):
    """Unbiased linear CKA from exact HSICs: CKA^2 is an exact fraction, the square root rounds once."""
    hxy, hxx, hyy = hsic_u_exact(X, Y), hsic_u_exact(X, X), hsic_u_exact(Y, Y)
    r2 = hxy * hxy / (hxx * hyy)
    return math.copysign(math.sqrt(r2), hxy)


def hsic_b(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(H @ K @ H @ H @ L @ H) / (n - 1) ** 2


def cka_ref(K, L, unbiased=True):
    h = hsic_u_trace if unbiased else hsic_b
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def kernel(X, kernel="linear", sigma=None, sigma_mode="absolute"):
    if kernel == "linear":
        return linear_kernel(X)
    bw = sigma * median_distance(X) if sigma_mode == "median" else sigma
    return rbf_kernel(X, bw)


def rsa_ref(X, Y, compare="spearman"):
    from scipy.stats import pearsonr, spearmanr

    n = X.shape[0]
    a = [1 - np.corrcoef(X[i], X[j])[0, 1] for i in range(n) for j in range(i + 1, n)]
    b = [1 - np.corrcoef(Y[i], Y[j])[0, 1] for i in range(n) for j in range(i + 1, n)]
    return float((spearmanr if compare == "spearman" else pearsonr)(a, b)[0])


def knn_ref(X, Y, k):
    # similarities equal to 12 decimals are ties (duplicate stimuli), broken by the lower index
    def sets(A):
        U = A / np.linalg.norm(A, axis=1, keepdims=True)
        S = np.round(U @ U.T, 12)
        out = []
        for i in range(A.shape[0]):
            order = [j for j in np.argsort(-S[i], kind="stable") if j != i]
            out.append(set(order[:k]))
        return out

    sx, sy = sets(X), sets(Y)
    return float(np.mean([len(a & b) / k for a, b in zip(sx, sy)]))


def procrustes_ref(X, Y, angular=False):
    """Procrustes similarity from the optimal rotation itself (scipy), not from a nuclear norm.

    Centre, scale to unit Frobenius norm, zero-pad to a common width, find the rotation R with
    scipy.linalg.orthogonal_procrustes, and read the similarity off the residual distance
    d = |X R - Y|_F (1 - d^2 / 2) or off the angle between X R and Y (Williams et al. 2021), taken
    as 2 atan2(|XR - Y|, |XR + Y|) (Kahan's form, accurate for small angles where arccos is not).
    """
    from scipy.linalg import orthogonal_procrustes

    A, B = (M - M.mean(axis=0) for M in (X, Y))
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    d = max(A.shape[1], B.shape[1])
    A = np.hstack([A, np.zeros((A.shape[0], d - A.shape[1]))])
    B = np.hstack([B, np.zeros((B.shape[0], d - B.shape[1]))])
    R, _ = orthogonal_procrustes(A, B)
    assert np.allclose(R @ R.T, np.eye(d), atol=1e-12)
    if angular:
        theta = 2 * np.arctan2(np.linalg.norm(A @ R - B), np.linalg.norm(A @ R + B))
        return float(1 - theta / (np.pi / 2))
    return float(1 - np.sum((A @ R - B) ** 2) / 2)


def measure_ref(spec, X, Y):
    """Reference value of any registered measure."""
    p = spec.params
    if spec.family == "cka":
        K = kernel(X, p["kernel"], p.get("sigma"), p.get("sigma_mode", "absolute"))
        L = kernel(Y, p["kernel"], p.get("sigma"), p.get("sigma_mode", "absolute"))
        return float(cka_ref(K, L, p["unbiased"]))
    if spec.family == "rsa":
        return rsa_ref(X, Y, p["compare"])
    if spec.family == "procrustes":
        return procrustes_ref(X, Y, p["angular"])
    return knn_ref(X, Y, p["k"])
