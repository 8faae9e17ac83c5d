"""Small feature sets for the measure and engine tests: models sharing a latent structure."""

from __future__ import annotations

import numpy as np


def zoo(rng: np.random.Generator, n: int = 36, dims=(3, 7, 20, 50)) -> dict[str, np.ndarray]:
    """Features of a few models (float64, unit rows) that share a 4-d latent, with rising noise."""
    Z = rng.normal(size=(n, 4))
    out = {}
    for i, d in enumerate(dims):
        A = np.tanh(Z @ rng.normal(size=(4, d))) + (0.3 + 0.3 * i) * rng.normal(size=(n, d))
        out[f"m{i}"] = A / np.linalg.norm(A, axis=1, keepdims=True)
    return out


def pairwise(spec, feats: dict[str, np.ndarray]) -> np.ndarray:
    """The obviously-correct all-pairs matrix: ``spec`` called on every ordered pair."""
    names = list(feats)
    return np.array([[spec(feats[a], feats[b]) for b in names] for a in names])
