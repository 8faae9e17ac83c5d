"""Simulations behind three statistical rules of the book, so the numbers it quotes for them are
computed here (and checked by tests/test_simulations.py), not remembered from a notebook.

All three draw values over dataset pairs from one model: ``v(i, j) = u_i + u_j + e_ij``, where
each dataset shifts all of its pairs (``u ~ N(0, dataset_sd^2)``) and each pair has its own noise
(``e ~ N(0, pair_sd^2)``); the third adds each category pair's own response to each dataset. A
consistency over dataset pairs behaves so: a dataset on which the models look unusual lowers
every pair it is in. How far the rules matter depends on the ratio
``dataset_sd / pair_sd``; the functions take it as a parameter and the book says which it used.

- :func:`pair_test_false_positive_rate`: the study's anchor tests compare two partner categories
  with a rank-sum test that takes the dataset pairs as independent observations. With no
  difference between the categories, how often is p below alpha?
- :func:`bootstrap_coverage`: how often a nominal 95% percentile interval from resampling the
  datasets (as :func:`repsim.stats.dataset_bootstrap` does) covers the true median, by number of
  datasets, plain or expanded; the reason the package reports expanded intervals
  (:func:`repsim.stats.expanded_level`) and for :data:`repsim.stats.MIN_BOOTSTRAP_DATASETS`.
- :func:`top_pair_false_claims`: the book names the most consistent category pair and says
  whether it is ahead of the next by an interval over datasets; both pairs are chosen on the
  data the interval comes from. With the pairs tied, how often is it said to be ahead?

A fourth check is not of a rule but of the book's headline itself, on a run's own data:
:func:`headline_coverage` draws new datasets like the run's (:func:`fitted_datasets`: the models
fixed, each new dataset the run's mean similarity matrix plus a Gaussian combination of its
datasets' deviations from it) and counts how often the objective - architecture interval of
:func:`repsim.stats.controlled_tests` and each factor's, computed as ``repsim run`` computes
them, cover the value that many datasets give, with and without their bias correction
(:func:`repsim.stats.bias_corrected_draws`). It takes minutes (a full controlled test per
draw), so it is not part of ``make test``; its tests check its mechanics on a tiny zoo.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import ranksums

from repsim.errors import InputError, check_count
from repsim.stats import (
    MIN_BOOTSTRAP_DATASETS,
    controlled_tests,
    keyed_rng,
    percentile_interval,
)

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


def top_pair_false_claims(
    n_datasets: int,
    n_tied: int = 2,
    *,
    lead: float = 0.0,
    dataset_sd: float = DATASET_SD,
    category_sd: float = DATASET_SD,
    pair_sd: float = PAIR_SD,
    n_draws: int = 1000,
    n_resamples: int = 999,
    seed: int = 0,
) -> dict[str, float]:
    """How often :func:`repsim.analysis.top_pair_gap` says the first category pair is ahead of
    the next (its interval above 0) when ``n_tied`` pairs do not differ, the first pair and the
    next being chosen on the same data.

    Each pair ``k`` gets over the dataset pairs ``v_k(i, j) = u_i + u_j + w_ki + w_kj + e_kij``:
    dataset effects all pairs share (``dataset_sd``), each pair's own response to each dataset
    (``category_sd``) and noise (``pair_sd``). ``lead`` is added to pair 0 (a real difference,
    to see the claim made when it should be). Returns ``claimed`` (the share of draws with an
    interval above 0; a two-sided 95% interval orders two equal pairs in 5% of draws), ``draws``
    and ``intervals`` (draws with an interval: none below
    :data:`repsim.stats.MIN_BOOTSTRAP_DATASETS` datasets).
    """
    from repsim.analysis import top_pair_gap

    n_datasets = check_count("n_datasets", n_datasets, 2)
    n_tied = check_count("n_tied", n_tied, 2)
    a, b = np.triu_indices(n_datasets, k=1)
    names = np.array([f"d{i:02d}" for i in range(n_datasets)])
    labels = [f"P{k} | P{k}" for k in range(n_tied)]
    claimed = intervals = 0
    for draw in range(n_draws):
        rng = keyed_rng(seed, "top_pair_false_claims", draw)
        u = rng.normal(0.0, dataset_sd, n_datasets)
        w = rng.normal(0.0, category_sd, (n_tied, n_datasets))
        e = rng.normal(0.0, pair_sd, (n_tied, a.size))
        values = u[a] + u[b] + w[:, a] + w[:, b] + e
        values[0] += lead
        table = pd.DataFrame(
            {
                "label": np.repeat(labels, a.size),
                "dataset_a": np.tile(names[a], n_tied),
                "dataset_b": np.tile(names[b], n_tied),
                "consistency": values.ravel(),
            }
        )
        gap = top_pair_gap(table, n_resamples=n_resamples, rng=rng)
        if np.isfinite(gap["ci_low"]):
            intervals += 1
            claimed += bool(gap["ci_low"] > 0)
    return {"claimed": claimed / n_draws, "draws": n_draws, "intervals": intervals}


def fitted_datasets(sim: xr.DataArray, n_datasets: int, rng: np.random.Generator) -> xr.DataArray:
    """``n_datasets`` new datasets for the models of ``sim`` (dims dataset, model_a, model_b),
    drawn from the Gaussian fitted to its datasets: the mean similarity matrix plus
    ``sum_k z_k E_k / sqrt(D - 1)``, ``E_k`` dataset k's deviation from the mean and ``z ~ N(0,
    1)``. The pair similarities of the new datasets then have the run's mean and covariance over
    datasets (a model's similarity to itself, the same on every dataset of a run, stays as it
    is), so a statistic's value at many such
    datasets is known by drawing many; model coords are kept, dataset coords are the first ones
    repeated (names ``sim0``, ``sim1``, ...)."""
    n_datasets = check_count("n_datasets", n_datasets, 1)
    sim = sim.transpose("dataset", "model_a", "model_b")
    S = np.asarray(sim.values, dtype=np.float64)
    D = S.shape[0]
    if D < 2:
        raise InputError(f"fitting how datasets vary needs 2 or more datasets; got {D}")
    mean = S.mean(axis=0)
    z = rng.normal(size=(n_datasets, D))
    X = mean[None] + np.einsum("nk,kij->nij", z, S - mean[None]) / np.sqrt(D - 1)
    out = sim.isel(dataset=np.arange(n_datasets) % D).copy(data=X)
    return out.assign_coords(dataset=[f"sim{i}" for i in range(n_datasets)])


def _intervals(
    sim: xr.DataArray, options: Mapping[str, Any]
) -> dict[tuple[str, str], tuple[float, ...]]:
    """Per (factor, view): the estimate, interval and bias of the objective - architecture
    difference and of each factor's excess SD, as controlled_tests gives them (architecture
    once: its rows of the two views are the same)."""
    name = str(sim.name or "similarity")  # the measure's name keys its resampling
    table = controlled_tests(sim.to_dataset(name=name), [name], **options)
    rows = table[table["analysis"].isin(["difference", "factor"])]
    rows = rows[~((rows["factor"] == "architecture") & (rows["view"] != "separate"))]
    return {
        (r.factor, r.view): (r.estimate, r.ci_low, r.ci_high, r.bias)
        for r in rows.itertuples(index=False)
    }


def headline_coverage(
    sim: xr.DataArray,
    n_datasets: int | None = None,
    *,
    n_draws: int = 100,
    options: Mapping[str, Any] | None = None,
    truth_datasets: int = 100,
    truth_draws: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """How often the headline interval (objective minus architecture in excess SD, datasets
    resampled with the models fixed), and each factor's excess SD interval, cover their targets
    on datasets drawn like ``sim``'s.

    Each row's target is its value at many datasets: the mean of its estimates on
    ``truth_draws`` draws of ``truth_datasets`` datasets each (999 permutations, no bootstrap);
    the spread of those estimates is the target's own error (``truth_se``). Each of
    ``n_draws`` draws of ``n_datasets`` datasets (default: as many as ``sim`` has) gets the
    intervals of :func:`repsim.stats.controlled_tests` with ``options`` (default: the ones
    ``repsim run`` uses, :data:`repsim.results.CONTROLLED_TESTS_OPTIONS`, its seed set per
    draw).

    Returns one row per (draw, factor, view), factor ``objective - architecture``, ``objective``
    or ``architecture``: estimate, ci_low, ci_high, bias (the interval's correction,
    :func:`repsim.stats.bias_corrected_draws`: the uncorrected interval is ``ci + 2 * bias``),
    truth, truth_se, covered (``ci_low <= truth <= ci_high``); :func:`coverage_summary` sums it
    up.
    """
    from repsim.results import CONTROLLED_TESTS_OPTIONS

    options = dict(CONTROLLED_TESTS_OPTIONS if options is None else options)
    n_draws = check_count("n_draws", n_draws)
    truth_draws = check_count("truth_draws", truth_draws, 2)
    truth_datasets = check_count("truth_datasets", truth_datasets, 3)
    n_datasets = (
        sim.sizes["dataset"] if n_datasets is None else check_count("n_datasets", n_datasets, 3)
    )
    fewest = options.get("min_datasets", MIN_BOOTSTRAP_DATASETS)
    if n_datasets < fewest:
        raise InputError(
            f"the headline interval is not given below {fewest} datasets (stats."
            f"MIN_BOOTSTRAP_DATASETS); got n_datasets={n_datasets}"
        )
    exact = {"n_permutations": 999, "n_bootstrap": 0, "min_datasets": truth_datasets + 1}
    many = [
        _intervals(fitted_datasets(sim, truth_datasets, keyed_rng(seed, "truth", k)), exact)
        for k in range(truth_draws)
    ]
    truth = {key: np.mean([m[key][0] for m in many]) for key in many[0]}
    truth_se = {
        key: np.std([m[key][0] for m in many], ddof=1) / np.sqrt(truth_draws) for key in many[0]
    }
    rows = []
    draws = range(n_draws)
    if progress:
        from tqdm import tqdm

        draws = tqdm(draws, desc="headline coverage", unit="draw", dynamic_ncols=True)
    for k in draws:
        drawn = fitted_datasets(sim, n_datasets, keyed_rng(seed, "draw", k))
        for key, (est, low, high, bias) in _intervals(drawn, {**options, "seed": k}).items():
            rows.append(
                {
                    "draw": k,
                    "factor": key[0],
                    "view": key[1],
                    "estimate": est,
                    "ci_low": low,
                    "ci_high": high,
                    "bias": bias,
                    "truth": truth[key],
                    "truth_se": truth_se[key],
                    "covered": bool(low <= truth[key] <= high),
                }
            )
    return pd.DataFrame(rows)


def coverage_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (factor, view) of :func:`headline_coverage`'s table: draws, the share covered, the shares
    missed below (the interval under the truth) and above, the same three for the intervals
    without the bias correction (the same draws), the truth and its error, the mean estimate
    minus the truth (bias), the mean of the bootstrap's bias estimates (bootstrap_bias), the
    estimates' SD, and the mean interval width."""
    out = {}
    for key, t in table.groupby(["factor", "view"], sort=False):
        truth = t["truth"].iloc[0]
        shift = 2 * t["bias"].fillna(0.0)  # the draws were moved down by 2 * bias
        low, high = t["ci_low"] + shift, t["ci_high"] + shift
        out[key] = {
            "draws": len(t),
            "covered": t["covered"].mean(),
            "missed_below": (t["ci_high"] < truth).mean(),
            "missed_above": (t["ci_low"] > truth).mean(),
            "uncorrected_covered": ((low <= truth) & (truth <= high)).mean(),
            "uncorrected_missed_below": (high < truth).mean(),
            "uncorrected_missed_above": (low > truth).mean(),
            "truth": truth,
            "truth_se": t["truth_se"].iloc[0],
            "bias": t["estimate"].mean() - truth,
            "bootstrap_bias": t["bias"].mean(),
            "estimate_sd": t["estimate"].std(ddof=1),
            "width": (t["ci_high"] - t["ci_low"]).mean(),
        }
    return pd.DataFrame(out).T


__all__ = [
    "DATASET_SD",
    "PAIR_SD",
    "bootstrap_coverage",
    "coverage_summary",
    "fitted_datasets",
    "headline_coverage",
    "pair_test_false_positive_rate",
    "pair_values",
    "top_pair_false_claims",
]
