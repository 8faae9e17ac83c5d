"""Slow, obviously-correct float64 reference implementations used by the measure tests."""

from __future__ import annotations

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


def hsic_u_exact(X, Y):
    """Unbiased linear HSIC in exact rational arithmetic (no rounding at all; small n only).

    The float formulas cancel large terms when n is small; this is the ground truth they approach.
    """
    from fractions import Fraction

    def gram_exact(A):
        Q = [[Fraction(float(v)) for v in row] for row in np.asarray(A)]
        n = len(Q)
        return [[Fraction(0) if i == j else sum(a * b for a, b in zip(Q[i], Q[j])) for j in range(n)]
                for i in range(n)]

    Kt, Lt = gram_exact(X), gram_exact(Y)
    n = len(Kt)
    trace = sum(Kt[i][j] * Lt[j][i] for i in range(n) for j in range(n))
    k_row, l_col = [sum(r) for r in Kt], [sum(Lt[i][j] for i in range(n)) for j in range(n)]
    one_k_l_one = sum(k_row[k] * l_col[k] for k in range(n))
    total = trace + sum(k_row) * sum(l_col) / ((n - 1) * (n - 2)) - Fraction(2, n - 2) * one_k_l_one
    return total / (n * (n - 3))


def cka_exact(X, Y):
    """Unbiased linear CKA from exact HSICs (the square root is the only rounding)."""
    hxy, hxx, hyy = hsic_u_exact(X, Y), hsic_u_exact(X, X), hsic_u_exact(Y, Y)
    return float(hxy) / np.sqrt(float(hxx) * float(hyy))


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
    def sets(A):
        U = A / np.linalg.norm(A, axis=1, keepdims=True)
        S = U @ U.T
        out = []
        for i in range(A.shape[0]):
            order = [j for j in np.argsort(-S[i], kind="stable") if j != i]
            out.append(set(order[:k]))
        return out

    sx, sy = sets(X), sets(Y)
    return float(np.mean([len(a & b) / k for a, b in zip(sx, sy)]))


def measure_ref(spec, X, Y):
    """Reference value of any registered measure."""
    p = spec.params
    if spec.family == "cka":
        K = kernel(X, p["kernel"], p.get("sigma"), p.get("sigma_mode", "absolute"))
        L = kernel(Y, p["kernel"], p.get("sigma"), p.get("sigma_mode", "absolute"))
        return float(cka_ref(K, L, p["unbiased"]))
    if spec.family == "rsa":
        return rsa_ref(X, Y, p["compare"])
    return knn_ref(X, Y, p["k"])
