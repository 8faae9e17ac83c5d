"""Similarity measures between representations, their registry, and the all-pairs engine.

Every measure is a plain function ``f(X, Y, **options) -> float`` on two (n_stimuli, d) arrays with
aligned rows; :data:`MEASURES` maps names such as ``cka_rbf_0.4`` to those functions, their options
and facts about them; :func:`similarity_matrix` is the only place that knows about batching.
"""

from repsim.measures.cka import cka
from repsim.measures.engine import similarity_matrices, similarity_matrix
from repsim.measures.knn import mutual_knn
from repsim.measures.registry import INVARIANCES, MEASURES, MeasureSpec, parse_measure
from repsim.measures.rsa import rsa

__all__ = [
    "cka",
    "rsa",
    "mutual_knn",
    "similarity_matrix",
    "similarity_matrices",
    "MEASURES",
    "MeasureSpec",
    "parse_measure",
    "INVARIANCES",
]
