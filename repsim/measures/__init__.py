"""Similarity measures between representations, their registry, and the all-pairs engine.

Every measure is a plain function ``f(X, Y, **options) -> float`` on two (n_stimuli, d) arrays with
aligned rows. Each family of measures is declared once in :mod:`repsim.measures.registry` (name
pattern, parameters, facts, single-pair function, optional batched kernel); :data:`MEASURES` and
:func:`parse_measure` resolve names such as ``cka_rbf_0.4`` through it, and
:func:`similarity_matrices` computes all model pairs with the family's batched kernel, or with the
single-pair function per pair when the family has none.
"""

from repsim._lazy import lazy_exports

# Eager: these three share their module's name (a lazy export would be shadowed by the submodule)
# and need only numpy/scipy.
from repsim.measures.cka import cka
from repsim.measures.procrustes import procrustes
from repsim.measures.rsa import rsa

# Lazy: the engine, the k-NN measure and the registry (which holds the batched kernels) import
# torch, which a notebook that only reads a run's result files should not pay for.
_LAZY = {
    "similarity_matrix": "repsim.measures.engine",
    "similarity_matrices": "repsim.measures.engine",
    "mutual_knn": "repsim.measures.knn",
    **dict.fromkeys(
        (
            "FAMILIES",
            "INVARIANCES",
            "MEASURES",
            "MeasureFamily",
            "MeasureSpec",
            "parse_measure",
            "register_measure",
        ),
        "repsim.measures.registry",
    ),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


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
