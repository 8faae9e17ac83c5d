"""Simulations behind two statistical rules of the book, so the numbers it quotes for them are
computed here (and checked by tests/test_simulations.py), not remembered from a notebook.

Both draw values over dataset pairs from one model: ``v(i, j) = u_i + u_j + e_ij``, where each
dataset shifts all of its pairs (``u ~ N(0, dataset_sd^2)``) and each pair has its own noise
(``e ~ N(0, pair_sd^2)``). A consistency over dataset pairs behaves so: a dataset on which the
models look unusual lowers every pair it is in. How far the rules matter depends on the ratio
``dataset_sd / pair_sd``; the functions take it as a parameter and the book says which it used.

- :func:`pair_test_false_positive_rate`: the study's anchor tests compare two partner categories
  with a rank-sum test that takes the dataset pairs as independent observations. With no
  difference between the categories, how often is p below alpha?
- :func:`bootstrap_coverage`: how often a nominal 95% percentile interval from resampling the
  datasets (as :func:`repsim.stats.dataset_bootstrap` does) covers the true median, by number of
  datasets, plain or expanded; the reason the package reports expanded intervals
  (:func:`repsim.stats.expanded_level`) and for :data:`repsim.stats.MIN_BOOTSTRAP_DATASETS`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import ranksums

from repsim.stats import percentile_interval

#: the settings the book quotes: each dataset shifts its pairs by as much as they vary otherwise
DATASET_SD = 1.0
PAIR_SD = 1.0


def pair_values(
    rng: np.random.Generator, n_draws: int, n_datasets: int, dataset_sd: float, pair_sd: float
) -> np.ndarray:
    """``(n_draws, n_pairs)`` values over the dataset pairs ``i < j`` (in ``np.triu_indices``
    order) of ``n_datasets`` datasets; their true median is 0."""
    a, b = np.triu_indices(n_datasets, k=1)
    u = rng.normal(0.0, dataset_sd, (n_draws, n_datasets))
    return u[:, a] + u[:, b] + rng.normal(0.0, pair_sd, (n_draws, a.size))


def pair_test_false_positive_rate(
    n_datasets: int = 10,
    *,
    dataset_sd: float = DATASET_SD,
    pair_sd: float = PAIR_SD,
    alpha: float = 0.01,
    n_draws: int = 2000,
    seed: int = 0,
) -> float:
    """Share of rank-sum tests (:func:`scipy.stats.ranksums`, the study's) over the dataset pairs
    of two categories that do not differ, whose p is below ``alpha``.

    The two categories get their own dataset effects (on the embedded run the partner
    categories' consistencies barely move together over dataset pairs), so their values differ
    only by chance; a valid test would give p < alpha in ``alpha`` of draws.
    """
    rng = np.random.default_rng(seed)
    a = pair_values(rng, n_draws, n_datasets, dataset_sd, pair_sd)
    b = pair_values(rng, n_draws, n_datasets, dataset_sd, pair_sd)
    return float((ranksums(a, b, axis=1).pvalue < alpha).mean())


def bootstrap_coverage(
    n_datasets: int,
    *,
    dataset_sd: float = DATASET_SD,
    pair_sd: float = PAIR_SD,
    confidence_level: float = 0.95,
    n_draws: int = 1000,
    n_resamples: int = 499,
    seed: int = 0,
    expanded: bool = True,
) -> float:
    """Share of draws whose percentile interval of the median over dataset pairs covers the
    true median (0), resampling the datasets with replacement as
    :func:`repsim.stats.dataset_bootstrap` does: a dataset drawn twice enters its pairs twice,
    a pair of a dataset with its own copy is left out, and the ends are
    :func:`repsim.stats.percentile_interval`'s order statistics; ``expanded``: the expanded
    interval the package reports (:func:`repsim.stats.expanded_level`), else the plain one."""
    rng = np.random.default_rng(seed)
    a, b = np.triu_indices(n_datasets, k=1)
    covered = 0
    for values in pair_values(rng, n_draws, n_datasets, dataset_sd, pair_sd):
        M = np.full((n_datasets, n_datasets), np.nan)
        M[a, b] = M[b, a] = values
        draw = rng.integers(0, n_datasets, (n_resamples, n_datasets))
        i, j = draw[:, a], draw[:, b]
        with warnings.catch_warnings():  # a draw of one dataset has no pair: NaN, dropped
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(np.where(i != j, M[i, j], np.nan), axis=1)
        low, high, _ = percentile_interval(
            medians, confidence_level, n_units=n_datasets if expanded else None
        )
        covered += bool(low <= 0.0 <= high)
    return covered / n_draws


__all__ = [
    "DATASET_SD",
    "PAIR_SD",
    "bootstrap_coverage",
    "pair_test_false_positive_rate",
    "pair_values",
]
