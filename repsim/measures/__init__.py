"""Similarity measures between representations, their registry, and the all-pairs engine.

Every measure is a plain function ``f(X, Y, **options) -> float`` on two (n_stimuli, d) arrays with
aligned rows. Each family of measures is declared once in :mod:`repsim.measures.registry` (name
pattern, parameters, facts, single-pair function, optional batched kernel); :data:`MEASURES` and
:func:`parse_measure` resolve names such as ``cka_rbf_0.4`` through it, and
:func:`similarity_matrices` computes all model pairs with the family's batched kernel, or with the
single-pair function per pair when the family has none.
"""

from repsim.measures.cka import cka
from repsim.measures.engine import similarity_matrices, similarity_matrix
from repsim.measures.knn import mutual_knn
from repsim.measures.procrustes import procrustes
from repsim.measures.registry import (
    FAMILIES,
    INVARIANCES,
    MEASURES,
    MeasureFamily,
    MeasureSpec,
    parse_measure,
    register_measure,
)
from repsim.measures.rsa import rsa

__all__ = [
    "cka",
    "rsa",
    "mutual_knn",
    "procrustes",
    "similarity_matrix",
    "similarity_matrices",
    "MEASURES",
    "MeasureSpec",
    "MeasureFamily",
    "FAMILIES",
    "register_measure",
    "parse_measure",
    "INVARIANCES",
]
