"""Statistics of the central question: does the training objective explain the consistency of
pairwise similarity across datasets more than architecture does?

The study (Ciernik et al., ICML 2025) reads the answer off box plots of consistency per category
pair. The mini-zoo crosses objective x architecture x seed, so the question can be tested:

* **Statistic.** For a factor F (objective or architecture) and a labelling of the models, each
  unordered category pair {a, b} of F (a = b included) gets its *mean consistency*: the Pearson
  correlation, over the model pairs of that category pair, of the pair similarities on dataset A and
  on dataset B, averaged over all dataset pairs A < B. ``T_F`` is the variance (ddof 0) of these
  means over F's category pairs with at least ``min_pairs`` model pairs: large when some category
  pairs are consistently more consistent than others.
* **Null.** F's labels are permuted within the strata of the design (objective within architecture
  x seed, architecture within objective x seed), with :func:`scipy.stats.permutation_test`
  (``permutation_type="samples"``). A raw ``T_F`` favours the factor with more levels and smaller
  groups (noisier means spread more), so every effect is read against its own null: the p-value
  is the share of permuted ``T_F`` at least as large (one-sided), and the effect size is the
  *excess SD*, ``sign(d) * sqrt(|d|)`` with ``d = T_F - mean(null T_F)``: how far, in units of
  consistency, category-pair means spread beyond what random grouping of the same models gives.
* **Objective vs architecture.** The difference of the two excess SDs, with a bootstrap interval
  (:func:`scipy.stats.bootstrap` draws; the expanded percentile interval of
  :func:`percentile_interval`, which corrects the plain one's undercoverage with few datasets) and
  a two-sided bootstrap p-value on the same scale (:func:`bootstrap_p`; approximate, unlike the
  permutation p-values). With few datasets the excess SDs and their difference are biased
  upward, and the bootstrap draws reproduce the bias (they sit above the estimate by about as
  much as it sits above its target), so these intervals and p-values are taken from draws moved
  down by twice the bootstrap's estimate of the bias (:func:`bias_corrected_draws`; the
  ``bias`` column). How often the headline interval covers its target on datasets drawn like a
  run's own is :func:`repsim.simulations.headline_coverage`; the book's Methods page gives what
  it measured on the embedded run.
* **Units.** The bootstrap resamples datasets (dataset pairs are never resampled: pairs of one
  dataset with its own copy are left out); the models stay fixed, and each replicate re-estimates
  the null mean from ``n_null`` within-strata permutations. Seeds are not resampled: with three
  per design cell, a seed drawn twice changes which within-cell model pairs exist (copies are never
  paired), which on the embedded run pulled every seed-resampled excess SD below the estimate
  (median 0.17 against 0.21), so such intervals would be shifted, not widened. How much the
  category-pair means depend on the seeds is given instead by the ``seed`` rows (each seed's
  models left out, the model pairs weighted to the full design's mix, :func:`_seed_rows`) and
  the ``seed_spread`` rows (their jackknife standard error).
* **Labels.** SimCLR and Barlow Twins (``method`` coord) are separate objectives (view
  ``"separate"``); the ``"pooled"`` view merges them into one Self-Supervised objective. Models whose
  objective is a control (``Random``) are left out of both factors and reported as control rows.

:func:`controlled_tests` runs all of it and returns the tidy table of ``controlled_tests.csv``
(columns in :data:`COLUMNS`); :func:`answer` and the ``*_sentence`` helpers word the result.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import re
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import DegenerateDataWarning, bootstrap, permutation_test

from repsim.errors import InputError
from repsim.names import CONTROLS, MIN_PAIRS
from repsim.runfolder import CONTROLLED_TESTS, RunFolder

logger = logging.getLogger(__name__)

#: File name of the table in a run folder (owned by :class:`repsim.runfolder.RunFolder`).
FILENAME = CONTROLLED_TESTS
#: Measures tested by default (those present in the run): the study's two main measures.
DEFAULT_MEASURES = ("cka_linear", "cka_rbf_0.4")
VIEWS = ("separate", "pooled")
FACTORS = ("objective", "architecture")
#: The model field (coord ``<field>_a`` of similarity.nc) each factor is read from
#: (:func:`design_table`): a chapter grouped by one of these fields has its factor tested.
FACTOR_FIELDS = {"objective": "objective", "architecture": "architecture_class"}
#: Fewest datasets a bootstrap interval over datasets is given for. With few datasets the plain
#: percentile interval covers far less than its level: :func:`repsim.simulations.bootstrap_coverage`
#: (a median of dataset-pair values, each dataset shifting its pairs as much as they vary
#: otherwise) puts a nominal 95% interval over the truth in 58% of draws at 3 datasets, 87% at 5,
#: 91% at 8 and 92% at 10. The expanded interval the package reports (:func:`expanded_level`)
#: covers 95% at 5 and 97% at 8 there, but that is one model of how datasets vary, and at 5
#: datasets its level (0.998) leaves so little in each tail that some 7,000 resamples are needed
#: to settle even a clear verdict (:func:`bootstrap_undecided`). Below 8 the interval is not
#: given, and a sentence that would rest on it says the run cannot test it.
MIN_BOOTSTRAP_DATASETS = 8

#: Columns of :func:`controlled_tests` / ``controlled_tests.csv``, with their meaning.
COLUMNS: dict[str, str] = {
    "measure": "similarity measure (a variable of similarity.nc)",
    "view": "'separate': SimCLR and Barlow Twins are two objectives; 'pooled': one Self-Supervised",
    "analysis": "'factor' (permutation test of one factor), 'difference' (objective minus "
    "architecture), 'category_pair' (mean consistency of one category pair), 'seed' (the same "
    "with one seed's models left out), 'seed_spread' (jackknife over seeds)",
    "factor": "'objective', 'architecture', 'objective - architecture', 'control' (pairs with a "
    "Random model) or 'all' (all trained models)",
    "group_a": "first category of the pair (category_pair, seed, seed_spread rows)",
    "group_b": "second category of the pair",
    "seed": "seed whose models are left out (seed rows; -1 elsewhere)",
    "estimate": "factor: excess SD; difference: excess SD of objective minus architecture; "
    "category_pair and seed: mean consistency over dataset pairs; seed_spread: jackknife SE over "
    "seeds of the category-pair mean",
    "ci_low": "lower end of the bootstrap interval (datasets resampled, models fixed)",
    "ci_high": "upper end of the bootstrap interval",
    "p_value": "factor: one-sided permutation p (labels permuted within strata; NaN when the "
    "statistic is undefined); difference: two-sided bootstrap p on the scale of the expanded "
    "interval (bootstrap_p); NaN elsewhere",
    "p_min": "factor: the smallest p the permutations can give: 1 / (n + 1) for random "
    "permutations; with every labelling enumerated, the share of labellings that reach the "
    "largest T (a design with few labellings may never reach p < 0.05)",
    "statistic": "factor: observed T (variance of category-pair mean consistency)",
    "null_mean": "factor: mean of T under the permutation null",
    "null_sd": "factor: SD of T under the permutation null",
    "z": "factor: (statistic - null_mean) / null_sd",
    "bias": "factor and difference: the bootstrap's estimate of the estimate's bias (mean of the "
    "draws minus the estimate); ci_low, ci_high and the difference p_value are taken from the "
    "draws minus twice it (bias_corrected_draws), so they are centred on estimate - bias",
    "seed_min": "seed_spread: smallest leave-one-seed-out mean consistency",
    "seed_max": "seed_spread: largest leave-one-seed-out mean consistency",
    "n_models": "models used (seed_spread rows: the number of seeds)",
    "n_model_pairs": "model pairs in the category pair (factor rows: category pairs tested)",
    "n_datasets": "datasets used",
    "n_dataset_pairs": "dataset pairs averaged over",
    "n_permutations": "permutations of the null (factor rows)",
    "n_bootstrap": "bootstrap resamples the interval rests on (those that leave the estimate defined)",
    "confidence_level": "nominal level of the bootstrap interval (its percentile level is "
    "expanded_level of it and n_datasets)",
    "interval": "'expanded': ci_low and ci_high are expanded percentile intervals and the "
    "difference p_value is on their scale",
    "format": "layout of the table: 3 = expanded intervals, bias-corrected for the excess SDs and "
    "their difference, seed rows leave one seed out (a table without it, or of another format, "
    "was written by an earlier version and is not read)",
}
#: The value of the ``interval`` column of a table this version writes.
INTERVAL_KIND = "expanded"
#: The ``format`` of a table this version writes: 1 (no column) had plain percentile intervals
#: and seed rows computed within one seed's models (cross-architecture pairs only, another
#: estimand than the category-pair mean they were set beside); 2 had no bias correction of the
#: excess SDs' intervals (their misses all on one side with few datasets); 3 had leave-one-seed-out
#: rows over another mix of same- and cross-architecture pairs than the full estimate's.
TABLE_FORMAT = 4


# ------------------------------------------------------------------------------------------ design
def design_table(
    sim: xr.Dataset | xr.DataArray, controls: Sequence[str] = CONTROLS
) -> pd.DataFrame:
    """The design of a model zoo, read from the model coords of ``similarity.nc``.

    Returns one row per model (``model_a`` order) with ``objective`` (Self-Supervised split by its
    ``method``, e.g. SimCLR), ``objective_pooled`` (the metadata objective), ``architecture``
    (``architecture_class``), ``seed`` (coord ``seed_a``, else the ``-s<N>`` suffix of the id) and
    ``control`` (objective in ``controls``).
    """
    models = [str(m) for m in sim["model_a"].values]

    def coord(name: str) -> list[str] | None:
        key = f"{name}_a"
        if key in sim.coords and sim.coords[key].dims == ("model_a",):
            return [str(v) for v in sim.coords[key].values]
        return None

    objective = coord(FACTOR_FIELDS["objective"])
    architecture = coord(FACTOR_FIELDS["architecture"])
    if objective is None or architecture is None:
        raise InputError(
            "the controlled tests need model coords objective_a and architecture_class_a "
            "(written by `repsim run` into similarity.nc); pass the run's similarity dataset"
        )
    method = coord("method") or [""] * len(models)
    seeds = coord("seed")
    if seeds is None:
        parsed = [re.search(r"-s(\d+)$", m) for m in models]
        missing = [m for m, p in zip(models, parsed) if p is None]
        if missing:
            raise InputError(
                f"no seed for models {missing[:5]}: the controlled tests read a model's seed from "
                "its id, so name them '<id>-s<N>' (metadata.seed is a note for the reader, not "
                "read here; with xarray, a seed_a coord on model_a also works)"
            )
        seeds = [p.group(1) for p in parsed]  # type: ignore[union-attr]
    fine = [
        meth if obj == "Self-Supervised" and meth not in ("", "nan") else obj
        for obj, meth in zip(objective, method)
    ]
    return pd.DataFrame(
        {
            "objective": fine,
            "objective_pooled": objective,
            "architecture": architecture,
            "seed": [int(float(s)) for s in seeds],
            "control": [o in set(controls) for o in objective],
        },
        index=pd.Index(models, name="model"),
    )


# ------------------------------------------------------------------------ category-pair consistency
class _Engine:
    """Mean consistency of every category pair for any labelling of a fixed (re)sample of models.

    ``idx`` (models) and ``didx`` (datasets) index the full similarity array. The package's
    bootstrap repeats datasets only (models stay fixed); either may repeat here: a model is never
    paired with a copy of itself and a dataset never with a copy of itself, and repeated pairs
    count as often as they are drawn. All sums over model pairs of one
    category pair are ``L' X L`` for one-hot labels ``L``, so relabelling costs two small matmuls.
    """

    #: A category pair whose pair similarities vary by less than this share of their mean square
    #: on a dataset is taken as constant there (r undefined): the raw-sum variance below is
    #: n * sum(x^2) - (sum x)^2, which rounding leaves at ~1e-16 of its terms instead of 0.
    CONSTANT = 1e-12

    def __init__(
        self,
        S: np.ndarray,
        idx: np.ndarray,
        didx: np.ndarray,
        pair_weights: np.ndarray | None = None,
    ):
        sub = S[np.ix_(didx, idx, idx)]
        self.W = (idx[:, None] != idx[None, :]).astype(np.float64)
        if pair_weights is not None:  # (m, m) symmetric: a weighted Pearson r per dataset pair
            self.W = self.W * pair_weights
        A = sub * self.W  # (d, m, m)
        self.A = A
        iu, ju = np.triu_indices(A.shape[0], k=1)
        keep = didx[iu] != didx[ju]
        self.iu, self.ju = iu[keep], ju[keep]
        # products with pair weights, only where the sums are read: each kept dataset pair
        # (cross products) and each dataset with itself (sums of squares); all d x d products
        # cost twice as much in the bootstrap, which builds an engine per resample
        self.P = np.concatenate([sub[self.iu] * A[self.ju], sub * A])

    @property
    def n_dataset_pairs(self) -> int:
        return int(self.iu.size)

    def means(self, labels: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        """(K, K) mean consistency and (K, K) model-pair counts; labels < 0 are left out.

        A (B, m) stack of labellings gives (B, K, K) of each in one pass: the bootstrap's null
        means take many labellings of every resample, and one pass costs little more than one.
        """
        labels = np.asarray(labels)
        single = labels.ndim == 1
        labels = np.atleast_2d(labels)
        B, m = labels.shape
        L = np.zeros((B, m, K))
        row, col = np.nonzero(labels >= 0)
        L[row, col, labels[row, col]] = 1.0
        # ordered-pair sums: same-category pairs appear as (i, j) and (j, i), which cancels in r
        n2 = np.swapaxes(L, 1, 2) @ self.W @ L  # (B, K, K)
        s1 = _sandwich(L, self.A)  # (B, d, K, K)
        s2 = _sandwich(L, self.P)
        cross, sq = s2[:, : self.iu.size], s2[:, self.iu.size :]  # (B, pairs, K, K), (B, d, K, K)
        n = n2.copy()
        n[:, np.arange(K), np.arange(K)] /= 2.0  # unordered model pairs
        a, b = self.iu, self.ju
        N = n2[:, None]
        cov = N * cross - s1[:, a] * s1[:, b]
        var_a, var_b = N * sq[:, a] - s1[:, a] ** 2, N * sq[:, b] - s1[:, b] ** 2
        constant = (var_a <= self.CONSTANT * N * sq[:, a]) | (var_b <= self.CONSTANT * N * sq[:, b])
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip(cov / np.sqrt(var_a * var_b), -1.0, 1.0)
        r[constant | ~np.isfinite(r)] = np.nan
        if r.shape[1] == 0:
            mean = np.full((B, K, K), np.nan)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
                mean = np.nanmean(r, axis=1)
        return (mean[0], n[0]) if single else (mean, n)


def _sandwich(L: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``L[b]' X[q] L[b]`` for stacks L (B, m, K) and X (q, m, m): (B, q, K, K), as two plain
    matrix products (fast for small K)."""
    B, m, K = L.shape
    q = X.shape[0]
    Y = X.reshape(q * m, m) @ L.transpose(1, 0, 2).reshape(m, B * K)  # (q * m, B * K)
    Y = Y.reshape(q, m, B, K).transpose(2, 1, 0, 3).reshape(B, m, q * K)
    Z = np.swapaxes(L, 1, 2) @ Y  # (B, K, q * K)
    return Z.reshape(B, K, q, K).transpose(0, 2, 1, 3)


def _spread(mean: np.ndarray, n: np.ndarray, min_pairs: int) -> float | np.ndarray:
    """T: variance of the mean consistency over the category pairs with enough model pairs (NaN
    with fewer than two); a (B, K, K) stack of means and counts gives the B values at once."""
    iu, ju = np.triu_indices(mean.shape[-1])
    v = mean[..., iu, ju]
    ok = (n[..., iu, ju] >= min_pairs) & np.isfinite(v)
    k = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(ok, v, 0.0).sum(axis=-1) / k
        var = (np.where(ok, v - mu[..., None], 0.0) ** 2).sum(axis=-1) / k
    var = np.where(k >= 2, var, np.nan)
    return float(var) if var.ndim == 0 else var


def _codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    levels = sorted(set(values))
    return np.array([levels.index(v) for v in values]), levels


# ------------------------------------------------------------------------ permutation within strata
def stratified_permutation_test(
    labels: Sequence,
    strata: Sequence,
    statistic: Callable[[np.ndarray], float],
    *,
    n_resamples: int = 9999,
    alternative: str = "greater",
    rng: np.random.Generator | int | None = None,
):
    """Permutation test that shuffles ``labels`` only among members of the same stratum.

    A thin layout over :func:`scipy.stats.permutation_test` with ``permutation_type="samples"``: each
    stratum is one observation and its k members are the k "samples", so scipy permutes members
    within a stratum; the label of each slot stays, so every stratum keeps its multiset of labels.
    ``statistic`` gets the permuted label array (same order as ``labels``). Needs strata of equal
    size (a crossed design); scipy enumerates all permutations when there are at most
    ``n_resamples``.

    Returns scipy's ``PermutationTestResult`` (``statistic``, ``pvalue``, ``null_distribution``).
    """
    labels = np.asarray(labels)
    strata = np.asarray(strata)
    if labels.shape != strata.shape or labels.ndim != 1:
        raise InputError("labels and strata must be 1-d arrays of the same length")
    keys = sorted(set(strata.tolist()), key=str)
    members = [np.flatnonzero(strata == k) for k in keys]
    sizes = {len(m) for m in members}
    if len(sizes) != 1:
        counts = {str(k): len(m) for k, m in zip(keys, members)}
        raise InputError(
            f"permutation within strata needs strata of equal size (a crossed design), got {counts}; "
            "test a balanced zoo (every stratum holds one model per level), e.g. the mini-zoo"
        )
    k = sizes.pop()
    slots = [np.array([m[j] for m in members]) for j in range(k)]
    slot_labels = [labels[s] for s in slots]

    def stat(*data: np.ndarray) -> float:
        perm = np.empty_like(labels)
        for positions, lab in zip(data, slot_labels):
            perm[positions] = lab
        return statistic(perm)

    return permutation_test(
        slots,
        stat,
        permutation_type="samples",
        vectorized=False,
        n_resamples=n_resamples,
        alternative=alternative,
        rng=rng,
    )


def n_labellings(strata: Sequence) -> int:
    """How many labellings :func:`stratified_permutation_test` can draw: k! per stratum of k."""
    _, sizes = np.unique(np.asarray(strata), return_counts=True)
    return math.prod(math.factorial(int(k)) for k in sizes)


def _labellings_within_strata(
    labels: np.ndarray, strata: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, m) relabellings of ``labels`` that shuffle them only within ``strata`` (each stratum
    keeps its multiset), or every relabelling when there are at most ``n``, the observed one
    among them (what :func:`stratified_permutation_test` draws), in one array for one pass of
    :meth:`_Engine.means`."""
    labels, strata = np.asarray(labels), np.asarray(strata)
    members = [np.flatnonzero(strata == k) for k in sorted(set(strata.tolist()), key=str)]
    if n_labellings(strata) <= n:
        rows = []
        for orders in itertools.product(*(itertools.permutations(m) for m in members)):
            row = labels.copy()
            for m, order in zip(members, orders):
                row[m] = labels[list(order)]
            rows.append(row)
        return np.array(rows).reshape(len(rows), labels.size)
    out = np.tile(labels, (n, 1))
    for m in members:
        out[:, m] = labels[m][np.argsort(rng.random((n, m.size)), axis=1)]
    return out


def p_from_null(
    statistic: float, null: np.ndarray, exact: bool, alternative: str = "greater"
) -> tuple[float, float]:
    """Permutation p of ``statistic`` against ``null``, and the smallest p the null can give.

    scipy's rule (values within 100 ulp of the statistic count as reached; random permutations
    add the observed labelling, (k + 1) / (n + 1)), with two differences: an undefined statistic
    has no p (scipy's comparisons with NaN are False, so it got the smallest p), and a labelling
    whose statistic is undefined is left out of the null rather than counted as less extreme.
    ``exact``: ``null`` enumerates every labelling (the observed one among them); then the
    smallest reachable p is that of the null's most extreme value. ``alternative`` "greater" or
    "two-sided" (twice the smaller tail, at most 1, as scipy).
    """
    if alternative not in ("greater", "two-sided"):
        raise InputError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not null.size:
        return float("nan"), float("nan")
    add = 0 if exact else 1
    eps = 100 * np.finfo(float).eps

    def tail(count: int) -> float:
        return float((count + add) / (null.size + add))

    def p_of(t: float) -> float:
        greater = tail(int((null >= t - abs(eps * t)).sum()))
        if alternative == "greater":
            return greater
        less = tail(int((null <= t + abs(eps * t)).sum()))
        return min(1.0, 2 * min(greater, less))

    if not exact:
        p_min = (1.0 if alternative == "greater" else 2.0) / (null.size + 1)
    elif alternative == "greater":
        p_min = p_of(float(null.max()))
    else:
        p_min = min(p_of(float(null.max())), p_of(float(null.min())))
    return (p_of(statistic) if np.isfinite(statistic) else float("nan")), p_min


def unit_permutation_test(
    statistic: Callable[[np.ndarray], float],
    n_units: int,
    *,
    n_resamples: int = 9999,
    alternative: str = "two-sided",
    rng: np.random.Generator | int | None = 0,
    strata: Sequence | None = None,
) -> dict[str, float]:
    """Permutation test whose exchangeable units are whole models or whole datasets.

    ``statistic(order)`` computes the statistic with the units' labels (or one side's rows and
    columns, a Mantel test) taken in ``order``, a permutation of ``range(n_units)``; the identity
    is the data as observed. Every pair that shares a unit moves with it, so the dependence
    between pairs stays in the null (a p over pairs as if independent is too small). With
    ``strata`` (one key per unit, strata of equal size) units move only within their stratum
    (:func:`stratified_permutation_test`). Exact when the orderings (``n_units!``, or
    :func:`n_labellings` of the strata) are at most ``n_resamples`` (scipy enumerates them all),
    else that many random orderings; ``n_resamples=0`` computes the statistic only (p NaN).
    Returns ``statistic``, ``p_value`` and ``p_min`` (:func:`p_from_null`), ``n_permutations``
    (defined null values) and ``exact``.
    """
    t = float(statistic(np.arange(n_units)))
    out = {"statistic": t, "p_value": np.nan, "p_min": np.nan, "n_permutations": 0}
    n_orders = math.factorial(n_units) if strata is None else n_labellings(strata)
    exact = n_orders <= n_resamples
    out["exact"] = exact
    if n_units < 2 or not np.isfinite(t) or n_resamples == 0:
        return out
    if strata is not None:
        res = stratified_permutation_test(
            np.arange(n_units), strata, statistic,
            n_resamples=n_resamples, alternative=alternative, rng=rng,
        )  # fmt: skip
    else:
        res = permutation_test(
            (np.arange(n_units),),
            statistic,
            permutation_type="pairings",
            vectorized=False,
            n_resamples=n_resamples,
            alternative=alternative,
            rng=rng,
        )
    null = np.asarray(res.null_distribution, dtype=float)
    out["p_value"], out["p_min"] = p_from_null(t, null, exact, alternative)
    out["n_permutations"] = int(np.isfinite(null).sum())
    return out


def _excess_sd(t: float, null_mean: float) -> float:
    d = t - null_mean
    return float(np.sign(d) * np.sqrt(abs(d))) if np.isfinite(d) else float("nan")


# ----------------------------------------------------------------------------------- the analysis
@dataclass
class _Prepared:
    S: np.ndarray  # (D, M, M) float64
    design: pd.DataFrame
    datasets: list[str]
    min_pairs: int

    @property
    def trained(self) -> np.ndarray:
        return ~self.design["control"].to_numpy()


def _prepare(sim: xr.DataArray, controls: Sequence[str], min_pairs: int) -> _Prepared:
    if set(sim.dims) != {"dataset", "model_a", "model_b"}:
        raise InputError(
            f"expected a similarity array with dims (dataset, model_a, model_b), got {sim.dims}"
        )
    # One order whatever the config's: the permutations, the bootstrap draws and the sums over
    # model and dataset pairs follow positions, so positions are fixed by name (model_b as model_a).
    sim = sim.isel(
        {dim: np.argsort([str(v) for v in sim[dim].values], kind="stable") for dim in sim.dims}
    )
    a, b = ([str(v) for v in sim[d].values] for d in ("model_a", "model_b"))
    if a != b:  # position i of model_a is paired with position i of model_b below
        only = sorted(set(a) ^ set(b))[:5]
        raise InputError(
            f"model_a and model_b of the similarity array hold other models ({only} in only one "
            "of them); pass a (dataset, model, model) array of one set of models"
        )
    design = design_table(sim, controls)
    S = np.array(sim.transpose("dataset", "model_a", "model_b").values, dtype=np.float64)
    M = S.shape[1]
    off = ~np.eye(M, dtype=bool)
    bad = [design.index[i] for i in range(M) if not np.isfinite(S[:, i, :][:, off[i]]).all()]
    # a dataset every model failed on makes every model "bad", and dropping models cannot help
    defined = np.isfinite(S[:, off])  # (dataset, model pair)
    dead = ~defined.any(axis=1)
    if dead.any() and defined[~dead].all():
        names = [str(d) for d in sim["dataset"].values[dead]]
        one = len(names) == 1
        raise InputError(
            f"{', '.join(names)} {'has' if one else 'have'} no defined similarity (no model pair "
            "has one there) and the controlled tests need every pair's similarity on every "
            f"dataset; drop {'that dataset' if one else 'those datasets'} "
            f"(sim.drop_sel(dataset={names!r})) before the controlled tests"
        )
    if bad:
        raise InputError(
            f"similarities of models {bad[:5]} are NaN on some dataset; drop them "
            "(sim.drop_sel(model_a=..., model_b=...)) before the controlled tests"
        )
    # a model's similarity to itself is never used (no model is paired with itself), but a NaN
    # there would reach every sum through NaN * 0
    S[:, np.arange(M), np.arange(M)] = 0.0
    if S.shape[0] < 3:
        raise InputError(
            f"the controlled tests need at least 3 datasets (got {S.shape[0]}): consistency is "
            "averaged over dataset pairs and the bootstrap resamples datasets"
        )
    trained = design[~design["control"]]
    for factor in FACTORS:
        if trained[factor].nunique() < 2:
            raise InputError(
                f"the controlled tests need at least 2 levels of {factor} among trained models, got "
                f"{sorted(trained[factor].unique())}"
            )
    return _Prepared(S, design, [str(d) for d in sim["dataset"].values], min_pairs)


def _strata(design: pd.DataFrame, factor: str, seed: np.ndarray) -> np.ndarray:
    """Stratum of each model for permuting ``factor``: the other factor x seed replicate.

    Architecture is permuted within the design cell's objective (SimCLR and Barlow Twins apart).
    """
    other = "architecture" if factor == "objective" else "objective"
    return np.array([f"{o}|{s}" for o, s in zip(design[other], seed)])


def _label_column(factor: str, view: str) -> str:
    return "objective_pooled" if factor == "objective" and view == "pooled" else factor


def _renamed_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    """``labels`` (>= 0; negatives are left out and kept) renamed 0, 1, ... in order of first
    appearance: one array for a labelling and each of its renamings."""
    labels = np.asarray(labels)
    out = labels.copy()
    ok = labels >= 0
    _, first, inverse = np.unique(labels[ok], return_index=True, return_inverse=True)
    out[ok] = np.argsort(np.argsort(first))[inverse]
    return out


def _factor_stat(engine: _Engine, codes: np.ndarray, K: int, min_pairs: int) -> Callable:
    """T_F of a labelling (codes give the shape only; the permuted labels come as the argument).

    T is the same for two labellings that only rename the categories (swap objective A and B in
    every stratum), but sums taken in another column order differ in the last digits (3.7e-14
    relative between such a pair on the embedded mini-zoo, beyond the 100 ulp by which p counts a
    value as reached): the observed labelling's renamings then fell below it, and p and the
    design's smallest p were too small by their share. So T is taken of the labels renamed in
    order of first appearance, which is the same array for every renaming.
    """

    def stat(labels: np.ndarray) -> float:
        mean, n = engine.means(_renamed_by_first_appearance(labels), K)
        return _spread(mean, n, min_pairs)

    return stat


def controlled_tests(
    similarity: xr.Dataset | xr.DataArray,
    measures: Sequence[str] | None = None,
    *,
    n_permutations: int = 9999,
    n_bootstrap: int = 999,
    n_null: int = 19,
    confidence_level: float = 0.95,
    min_pairs: int = MIN_PAIRS,
    controls: Sequence[str] = CONTROLS,
    seed: int = 0,
    min_datasets: int = MIN_BOOTSTRAP_DATASETS,
    n_bootstrap_max: int | None = None,
) -> pd.DataFrame:
    """Test whether objective explains the consistency of pairwise similarity more than architecture.

    Parameters
    ----------
    similarity : the content of ``similarity.nc`` (or one measure's DataArray) of a crossed zoo
        (objective x architecture x seed, e.g. the mini-zoo).
    measures : measures to test; default those of :data:`DEFAULT_MEASURES` present (else the
        first by name, whatever the order of the file's variables).
    n_permutations : permutations per factor test; the smallest reachable p is 1 / (n + 1).
    n_bootstrap : bootstrap resamples; ``n_null`` permutations re-estimate the null mean in each
        (a noisy null mean widens the intervals of the excess SDs a little: conservative).
    n_bootstrap_max : when larger than ``n_bootstrap``, a measure whose objective - architecture
        bootstrap p is too close to ``1 - confidence_level`` to tell its side
        (:func:`bootstrap_undecided`) is resampled afresh with this many: the verdict then does
        not hang on the resampling seed, only the measures that need it pay for it, and the
        draws that asked for more are not part of the answer.
    min_datasets : fewest datasets the bootstrap intervals are computed for (below, NaN; see
        :data:`MIN_BOOTSTRAP_DATASETS`; lower it only to test the mechanics).
    seed : seeds every resampling: the same inputs give the same table, and a measure's rows do not
        depend on which other measures are tested (each has its own generator, :func:`keyed_rng`)
        nor on the order of the models or datasets (they are put in order of their names first).

    Returns
    -------
    pandas.DataFrame with the columns of :data:`COLUMNS`, one row per (measure, view, analysis,
    factor, category pair, seed); write it with :func:`save` as ``controlled_tests.csv``.
    """
    if isinstance(similarity, xr.DataArray):
        name = str(similarity.name or similarity.attrs.get("measure") or "similarity")
        similarity = similarity.to_dataset(name=name)
    available = [str(v) for v in similarity.data_vars]
    if measures is None:
        measures = [m for m in DEFAULT_MEASURES if m in available] or sorted(available)[:1]
    unknown = [m for m in measures if m not in available]
    if unknown or not measures:
        raise InputError(
            f"measures {unknown or measures} not in the similarity file; it has {available}"
        )
    rows: list[dict] = []
    for measure in measures:
        prep = _prepare(similarity[measure], controls, min_pairs)
        rng = keyed_rng(seed, measure)
        rows += _measure_rows(
            prep,
            measure,
            n_permutations,
            n_bootstrap,
            n_null,
            confidence_level,
            rng,
            min_datasets,
            max(n_bootstrap, n_bootstrap_max or 0),
        )
    table = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in table:
            table[col] = np.nan
    table["seed"] = table["seed"].fillna(-1).astype(int)
    groups = table[["group_a", "group_b"]].astype(object)  # all NaN (float) without pair rows
    table[["group_a", "group_b"]] = groups.where(groups.notna(), "")
    return table[list(COLUMNS)]


def _measure_rows(
    prep: _Prepared,
    measure: str,
    n_perm: int,
    n_boot: int,
    n_null: int,
    level: float,
    rng: np.random.Generator,
    min_datasets: int = MIN_BOOTSTRAP_DATASETS,
    n_boot_max: int = 0,
) -> list[dict]:
    design, S, min_pairs = prep.design, prep.S, prep.min_pairs
    D = S.shape[0]
    trained = prep.trained
    tpos = np.flatnonzero(trained)
    tdesign = design.iloc[tpos]
    # the levels, fixed for the whole analysis
    labelsets = {
        ("objective", "separate"): _codes(tdesign["objective"].tolist()),
        ("objective", "pooled"): _codes(tdesign["objective_pooled"].tolist()),
        ("architecture", "separate"): _codes(tdesign["architecture"].tolist()),
    }
    full_engine = _Engine(S, tpos, np.arange(D))
    base = {
        "measure": measure,
        "n_datasets": D,
        "n_dataset_pairs": full_engine.n_dataset_pairs,
        "confidence_level": level,
        "interval": INTERVAL_KIND,
        "format": TABLE_FORMAT,
    }
    # --- permutation tests on the data as observed
    tests: dict[tuple[str, str], dict] = {}
    for (factor, view), (codes, levels) in labelsets.items():
        strata = _strata(tdesign, factor, tdesign["seed"].to_numpy())
        res = stratified_permutation_test(
            codes,
            strata,
            _factor_stat(full_engine, codes, len(levels), min_pairs),
            n_resamples=n_perm,
            rng=rng,
        )
        null = np.asarray(res.null_distribution, dtype=float)
        exact = n_labellings(strata) <= n_perm  # scipy then enumerates every labelling
        p, p_min = p_from_null(float(res.statistic), null, exact)
        null = null[np.isfinite(null)]
        mean, n = full_engine.means(codes, len(levels))
        iu = np.triu_indices(len(levels))
        n_cat = int(((n[iu] >= min_pairs) & np.isfinite(mean[iu])).sum())
        tests[(factor, view)] = {
            "statistic": float(res.statistic),
            "p_value": p,
            "p_min": p_min,
            "null_mean": float(null.mean()) if null.size else np.nan,
            "null_sd": float(null.std(ddof=1)) if null.size > 1 else np.nan,
            "n_permutations": int(null.size),
            "n_model_pairs": n_cat,
        }
    # --- one bootstrap over datasets (models fixed), every estimate at once
    points, names = _replicate(prep, np.arange(D), labelsets, n_null, rng)

    def boot_stat(didx: np.ndarray) -> np.ndarray:
        return _replicate(prep, didx, labelsets, n_null, rng)[0]

    keys = [name[:5] if name[0] == "pair" else name for name in names]
    # the estimates as the table reports them (null means from all permutations)
    reported = {
        ("excess", factor, view): _excess_sd(t["statistic"], t["null_mean"])
        for (factor, view), t in tests.items()
    }
    for view in VIEWS:
        reported[("difference", view)] = (
            reported[("excess", "objective", view)]
            - reported[("excess", "architecture", "separate")]
        )
    bias = dict.fromkeys(reported, np.nan)
    if D < min_datasets:  # no interval: see MIN_BOOTSTRAP_DATASETS
        dist = np.empty((len(names), 0))
    else:

        def resample(n: int) -> np.ndarray:
            with warnings.catch_warnings():  # NaN draws: percentile_interval drops them
                warnings.simplefilter("ignore", DegenerateDataWarning)
                boot = bootstrap(
                    (np.arange(D),),
                    boot_stat,
                    n_resamples=n,
                    vectorized=False,
                    confidence_level=level,
                    method="percentile",
                    rng=rng,
                )
            return np.atleast_2d(boot.bootstrap_distribution)

        dist, bias = _bias_corrected(resample(n_boot), keys, reported)
        undecided = any(
            bootstrap_undecided(*bootstrap_p(dist[keys.index(("difference", v))], D), 1 - level, D)
            for v in VIEWS
        )
        if undecided and n_boot_max > n_boot:
            # fresh draws, not more of the same: the answer must not rest on the draws whose
            # closeness to alpha asked for it (optional stopping)
            dist, bias = _bias_corrected(resample(n_boot_max), keys, reported)
    est = dict(zip(keys, points))
    ci = {k: percentile_interval(draws, level, n_units=D) for k, draws in zip(keys, dist)}
    n_trained = int(trained.sum())
    rows: list[dict] = []
    for view in VIEWS:
        factor_rows = {}
        for factor in FACTORS:
            fview = view if factor == "objective" else "separate"
            t = tests[(factor, fview)]
            key = ("excess", factor, fview)
            factor_rows[factor] = {
                **base,
                "view": view,
                "analysis": "factor",
                "factor": factor,
                "estimate": reported[key],
                "bias": bias[key],
                "ci_low": ci[key][0],
                "ci_high": ci[key][1],
                "p_value": t["p_value"],
                "p_min": t["p_min"],
                "statistic": t["statistic"],
                "null_mean": t["null_mean"],
                "null_sd": t["null_sd"],
                "z": (t["statistic"] - t["null_mean"]) / t["null_sd"]
                if t["null_sd"] > 0  # False for NaN
                else np.nan,
                "n_models": n_trained,
                "n_model_pairs": t["n_model_pairs"],
                "n_permutations": t["n_permutations"],
                "n_bootstrap": ci[key][2],
            }
        rows += factor_rows.values()
        key = ("difference", view)
        p_boot, _ = bootstrap_p(dist[keys.index(key)], D)
        rows.append(
            {
                **base,
                "view": view,
                "analysis": "difference",
                "factor": "objective - architecture",
                "estimate": reported[key],
                "bias": bias[key],
                "ci_low": ci[key][0],
                "ci_high": ci[key][1],
                "p_value": p_boot,
                "n_models": n_trained,
                "n_bootstrap": ci[key][2],
            }
        )
        for name in names:
            if name[0] != "pair" or name[2] != view or not name[5] >= prep.min_pairs:
                continue  # category pairs with too few model pairs in the data are not reported
            _, factor, _, ga, gb, n_pairs, n_models = name
            rows.append(
                {
                    **base,
                    "view": view,
                    "analysis": "category_pair",
                    "factor": factor,
                    "group_a": ga,
                    "group_b": gb,
                    "estimate": est[name[:5]],
                    "ci_low": ci[name[:5]][0],
                    "ci_high": ci[name[:5]][1],
                    "n_models": n_models,
                    "n_model_pairs": n_pairs,
                    "n_bootstrap": ci[name[:5]][2],
                }
            )
        rows += _seed_rows(prep, base, view)
    return rows


def bootstrap_p(draws: np.ndarray, n_units: float | None = None) -> tuple[float, int]:
    """Two-sided bootstrap p of "the estimate is 0" from its finite draws, and their number.

    The raw p is twice the smaller share of draws at or beyond 0. With ``n_units`` (the units
    resampled) it is put on the scale of :func:`expanded_level`: p < alpha exactly when the
    interval of :func:`percentile_interval` at level 1 - alpha with the same ``n_units``
    excludes 0 (its ends are order statistics chosen so), so a sentence worded by one never
    contradicts the other."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    n = draws.size
    if n_units is not None:
        _units(n_units)
    if not n:
        return np.nan, 0
    raw = min(1.0, 2 * (min(int((draws <= 0).sum()), int((draws >= 0).sum())) / n))
    return (raw if n_units is None else _expanded_p(raw, n_units)), int(n)


def expanded_level(confidence_level: float, n_units: float) -> float:
    """The percentile level whose interval has ``confidence_level`` coverage with ``n_units``
    resampled units: Hesterberg's expanded percentile interval (The American Statistician 69,
    2015). A bootstrap distribution is narrower than the sampling distribution by about
    sqrt((n - 1) / n) and has normal, not t, tails, so a plain 95% percentile interval over few
    datasets covers less (:mod:`repsim.simulations`: 91% at 8 datasets, 97% expanded). The
    level is ``1 - 2 Phi(-sqrt(n / (n - 1)) t)``, t the ``(1 + level) / 2`` quantile of Student's
    t with n - 1 degrees of freedom: 0.983 for 95% at 10 units, 0.966 at 23."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    n = _units(n_units)
    quantile = student_t.isf((1 - confidence_level) / 2, n - 1)
    return float(1 - 2 * norm.sf(math.sqrt(n / (n - 1)) * quantile))


def _units(n_units: float) -> float:
    """The number of resampled units as a float; an InputError below 2 (or NaN): with one unit
    there is nothing to resample, and the expansion divides by n - 1."""
    n = float(n_units)
    if not n >= 2:
        raise InputError(f"an expanded bootstrap interval needs 2 or more units; got {n_units}.")
    return n


def _expanded_p(raw: float, n_units: float) -> float:
    """The inverse of :func:`expanded_level` applied to a raw two-sided bootstrap p: the alpha
    whose expanded level has ``1 - raw`` as its plain level."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    n = float(n_units)
    if raw <= 0:
        return 0.0
    z = norm.isf(raw / 2) / math.sqrt(n / (n - 1))
    return float(min(1.0, 2 * student_t.sf(z, n - 1)))


def bootstrap_undecided(p: float, n_bootstrap: float, alpha: float, n_units: float) -> bool:
    """:func:`monte_carlo_undecided` for a :func:`bootstrap_p` on the expanded scale: the draws'
    binomial error applies to the raw share, so p and alpha are taken back to it first."""
    if not (np.isfinite(p) and np.isfinite(n_units) and n_units >= 2):
        return monte_carlo_undecided(p, n_bootstrap, alpha)
    raw_p = 1 - expanded_level(1 - p, n_units) if p < 1 else 1.0
    return monte_carlo_undecided(raw_p, n_bootstrap, 1 - expanded_level(1 - alpha, n_units))


def _replicate(
    prep: _Prepared,
    didx: np.ndarray,
    labelsets: dict,
    n_null: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[tuple]]:
    """Every estimate on one resample of the datasets (the models fixed): category-pair means,
    excess SDs and their differences.

    Returns the values and their names, in an order that depends only on the design (so that
    bootstrap replicates line up); a category pair's name carries its model-pair count and models
    (the models are fixed, so the count is that of the data: :func:`_measure_rows` reports no
    pair with fewer than ``min_pairs``).
    """
    design, min_pairs, didx = prep.design, prep.min_pairs, np.asarray(didx)
    trained = prep.trained
    tpos = np.flatnonzero(trained)
    engine = _Engine(prep.S, np.arange(len(design)), didx)
    n_models, n_trained = len(design), int(tpos.size)
    tdesign = design.iloc[tpos]
    values: list[float] = []
    names: list[tuple] = []

    def add_pairs(factor: str, views: Sequence[str], mean, n, levels, wanted, models: int) -> None:
        for i, j in zip(*np.triu_indices(len(levels))):
            if wanted(i, j):
                for v in views:
                    names.append(("pair", factor, v, levels[i], levels[j], int(n[i, j]), models))
                    values.append(float(mean[i, j]))  # too few model pairs: not reported

    excess: dict[tuple[str, str], float] = {}
    for (factor, view), (codes, levels) in labelsets.items():
        K = len(levels)
        # the observed labelling (row 0) and relabellings within the design's strata for the
        # null mean of these datasets, in one pass; the controls are left out (-1)
        strata = _strata(tdesign, factor, tdesign["seed"].to_numpy())
        relabelled = np.vstack([codes, _labellings_within_strata(codes, strata, n_null, rng)])
        stack = np.full((relabelled.shape[0], n_models), -1)
        stack[:, tpos] = relabelled
        mean, n = engine.means(stack, K)
        views = VIEWS if factor == "architecture" else (view,)
        add_pairs(factor, views, mean[0], n[0], levels, lambda i, j: True, n_trained)
        spreads = _spread(mean, n, min_pairs)
        null = spreads[1:][np.isfinite(spreads[1:])]
        null_mean = float(null.mean()) if null.size else np.nan
        excess[(factor, view)] = _excess_sd(float(spreads[0]), null_mean)
    for (factor, view), value in excess.items():
        names.append(("excess", factor, view))
        values.append(value)
    for view in VIEWS:
        names.append(("difference", view))
        values.append(excess[("objective", view)] - excess[("architecture", "separate")])
    # controls (Random against every objective) and the all-trained baseline
    fine = sorted(set(design["objective"]))
    mean, n = engine.means(np.array([fine.index(v) for v in design["objective"]]), len(fine))
    ctrl = {fine.index(o) for o in design.loc[design["control"], "objective"]}
    add_pairs("control", VIEWS, mean, n, fine, lambda i, j: i in ctrl or j in ctrl, n_models)
    mean, n = engine.means(np.where(trained, 0, -1), 1)
    add_pairs("all", VIEWS, mean, n, ["all trained"], lambda i, j: True, n_trained)
    return np.array(values), names


def _seed_rows(prep: _Prepared, base: dict, view: str) -> list[dict]:
    """Each objective pair's mean consistency with one seed's models left out, and the jackknife
    SE over seeds of the full estimate.

    Leaving a seed out changes the mix of model pairs a category pair's consistency is computed
    over: with three seeds, 9 of an objective's 36 pairs share an architecture, with two left 3
    of 15. Where same-architecture pairs sit apart from the others, that moves the correlation
    over the pairs by design: unweighted, the embedded run's within-objective means of linear
    CKA with a seed left out lay 0.01 to 0.04 below the full mean on average (up to 3.5 times
    their jackknife SE; for three of the four objectives all three below it). Each model pair is
    therefore weighted by its kind (same or other architecture, same or other seed; the seed
    orders the training batches) so that each kind has its full-design share within its
    category pair: the weighted Pearson r over the pairs (:class:`_Engine`) then estimates what
    the full estimate does. A category pair that loses a kind altogether (two seeds, one left:
    no same-architecture pair within an objective) has no value for that seed.
    """
    design, S = prep.design, prep.S
    col = _label_column("objective", view)
    trained = design[~design["control"]]
    levels = sorted(set(trained[col]))
    seeds = sorted(set(trained["seed"]))
    per_pair: dict[tuple[str, str], list[float]] = {}
    rows = []
    full = _pair_kinds(design, np.flatnonzero(~design["control"].to_numpy()), col, levels)
    for seed in seeds if len(seeds) >= 2 else []:
        keep = (~design["control"].to_numpy()) & (design["seed"].to_numpy() != seed)
        pos = np.flatnonzero(keep)
        kinds = _pair_kinds(design, pos, col, levels)
        weights, lost = _kind_weights(full, kinds)
        eng = _Engine(S, pos, np.arange(S.shape[0]), weights)
        lab = kinds.labels
        mean, _ = eng.means(lab, len(levels))  # its counts are sums of weights
        for i, j in zip(*np.triu_indices(len(levels))):
            n_pairs = int(kinds.counts.get((i, j), np.zeros(4)).sum())
            if n_pairs < prep.min_pairs or (i, j) in lost:
                continue
            per_pair.setdefault((levels[i], levels[j]), []).append(float(mean[i, j]))
            rows.append(
                {
                    **base,
                    "view": view,
                    "analysis": "seed",
                    "factor": "objective",
                    "group_a": levels[i],
                    "group_b": levels[j],
                    "seed": int(seed),
                    "estimate": float(mean[i, j]),
                    "n_models": int(pos.size),
                    "n_model_pairs": n_pairs,
                }
            )
    for (ga, gb), vals in per_pair.items():
        v = np.asarray(vals)
        k = v.size
        complete = k == len(seeds)  # a pair undefined without some seed has no jackknife
        rows.append(
            {
                **base,
                "view": view,
                "analysis": "seed_spread",
                "factor": "objective",
                "group_a": ga,
                "group_b": gb,
                "estimate": float(np.sqrt((k - 1) / k * np.sum((v - v.mean()) ** 2)))
                if complete and k > 1
                else np.nan,
                "seed_min": float(v.min()),
                "seed_max": float(v.max()),
                "n_models": int(k),
            }
        )
    return rows


@dataclass
class _PairKinds:
    """The models at ``pos``: their category labels, and for each unordered pair of them its
    category pair (``cat``, ``(i, j)`` with i <= j) and kind (``kind``: 2 * same architecture +
    same seed), with the pair counts per (category pair, kind)."""

    labels: np.ndarray
    cat: np.ndarray  # (m, m, 2)
    kind: np.ndarray  # (m, m)
    counts: dict[tuple[int, int], np.ndarray]  # (i, j) -> counts of the 4 kinds


def _pair_kinds(design: pd.DataFrame, pos: np.ndarray, col: str, levels: list) -> _PairKinds:
    sub = design.iloc[pos]
    lab = np.array([levels.index(v) for v in sub[col]])
    arch, seed = sub["architecture"].to_numpy(), sub["seed"].to_numpy()
    kind = 2 * (arch[:, None] == arch[None, :]) + (seed[:, None] == seed[None, :])
    lo, hi = np.minimum.outer(lab, lab), np.maximum.outer(lab, lab)
    counts: dict[tuple[int, int], np.ndarray] = {}
    for a, b in zip(*np.triu_indices(lab.size, k=1)):
        key = (int(lo[a, b]), int(hi[a, b]))
        counts.setdefault(key, np.zeros(4))[kind[a, b]] += 1
    return _PairKinds(lab, np.stack([lo, hi], axis=-1), kind, counts)


def _kind_weights(full: _PairKinds, kept: _PairKinds) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Pair weights for the models of ``kept`` that give each kind of pair its share in
    ``full`` within each category pair (1 where the shares are already the same), and the
    category pairs that lost a kind ``full`` has (no weight can restore it)."""
    m = kept.labels.size
    W = np.ones((m, m))
    lost = set()
    ratio = {}
    for key, have in kept.counts.items():
        want = full.counts.get(key, np.zeros(4))
        if np.any((want > 0) & (have == 0)):
            lost.add(key)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio[key] = np.where(have > 0, (want / want.sum()) / (have / have.sum()), 0.0)
    for a in range(m):
        for b in range(m):
            key = (int(kept.cat[a, b, 0]), int(kept.cat[a, b, 1]))
            if a != b and key in ratio:
                W[a, b] = ratio[key][kept.kind[a, b]]
    return W, lost


def _bias_corrected(
    dist: np.ndarray, keys: list, reported: Mapping[tuple, float]
) -> tuple[np.ndarray, dict[tuple, float]]:
    """The bootstrap draws (one row per estimate, named by ``keys``) with the rows of the excess
    SDs and their differences bias-corrected (:func:`bias_corrected_draws` about the estimates
    ``reported``), and each one's bias. The category-pair means are left as drawn: a mean over
    dataset pairs is unbiased for its value at many datasets."""
    dist = dist.copy()
    bias = {}
    for key, value in reported.items():
        i = keys.index(key)
        dist[i], bias[key] = bias_corrected_draws(dist[i], value)
    return dist, bias


# ------------------------------------------------------------------------------------- file I/O
def save(table: pd.DataFrame, run_dir: str | Path) -> Path:
    """Write ``controlled_tests.csv`` into a run folder (atomically, 0644) and return its path."""
    folder = RunFolder(run_dir)
    folder.write_text(folder.controlled_tests, table.to_csv(index=False))
    return folder.controlled_tests


def load(path: str | Path) -> pd.DataFrame:
    """Read ``controlled_tests.csv`` (a run folder or the file itself); one written by an earlier
    version (another :data:`TABLE_FORMAT`: plain percentile intervals, seed rows of another
    estimand) is refused, not read as if it were this version's."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise InputError(
            f"{path} does not exist; compute it with repsim.stats.controlled_tests(similarity) "
            "and repsim.stats.save(table, run_dir)"
        )
    text = {c: str for c in ("measure", "view", "analysis", "factor", "group_a", "group_b")}
    table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text)
    current = (
        "interval" in table.columns
        and (table["interval"] == INTERVAL_KIND).all()
        and "format" in table.columns
        and (table["format"] == TABLE_FORMAT).all()
    )
    if not current:
        raise InputError(
            f"{path} was written by an earlier version of repsim (its intervals, bootstrap p or "
            "seed rows are computed otherwise than this version's); rerun the config into that "
            "folder (repsim run CONFIG --out RUN) to recompute it"
        )
    groups = table[["group_a", "group_b"]].astype(object)
    table[["group_a", "group_b"]] = groups.where(groups.notna(), "")
    return table


# ------------------------------------------------------------------ tests with datasets as the unit
def _pair_rows(pairs: pd.DataFrame) -> tuple[list[str], dict[tuple[int, int], np.ndarray]]:
    """The datasets of a table with ``dataset_a``/``dataset_b`` columns, and for each unordered
    pair of their positions the table's row numbers that hold it (several group pairs may)."""
    names = sorted(set(map(str, pairs["dataset_a"])) | set(map(str, pairs["dataset_b"])))
    pos = {d: i for i, d in enumerate(names)}
    rows: dict[tuple[int, int], list[int]] = {}
    for k, (a, b) in enumerate(zip(map(str, pairs["dataset_a"]), map(str, pairs["dataset_b"]))):
        i, j = sorted((pos[a], pos[b]))
        if i != j:
            rows.setdefault((i, j), []).append(k)
    return names, {key: np.array(v) for key, v in rows.items()}


@functools.lru_cache(maxsize=8)
def _upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, k=1)``, made once per size: every draw of a bootstrap has the same
    size, and building them took a third of the time of a draw."""
    ia, ib = np.triu_indices(n, k=1)
    ia.flags.writeable = ib.flags.writeable = False
    return ia, ib


class _RowSampler:
    """Row numbers of a dataset resample (a draw of dataset positions): the rows of every pair of
    draws at two positions (a dataset drawn twice enters its pairs twice; a dataset with its own
    copy has no row), in the order of the draw's pairs, each pair's rows in table order. The
    pairs' rows are laid out once, so a draw costs a few array operations instead of a loop over
    its pairs (25,000 draws in chapter 10)."""

    def __init__(self, rows: Mapping[tuple[int, int], np.ndarray]):
        n = 1 + max((j for _, j in rows), default=-1)
        self.slot = np.full((n, n), -1, dtype=np.int64)  # pair (i, j) -> its block, -1: none
        blocks = [np.asarray(rows[key], dtype=np.int64) for key in rows]
        for b, (i, j) in enumerate(rows):
            self.slot[i, j] = self.slot[j, i] = b
        self.counts = np.array([len(v) for v in blocks], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.order = np.concatenate(blocks) if blocks else np.array([], dtype=np.int64)

    def __call__(self, draw: np.ndarray) -> np.ndarray:
        draw = np.asarray(draw, dtype=int)
        ia, ib = _upper_pairs(len(draw))
        found = self.slot[draw[ia], draw[ib]] if self.slot.size else np.array([], dtype=np.int64)
        found = found[found >= 0]
        counts = self.counts[found]
        if not counts.size:
            return np.array([], dtype=int)
        first = np.repeat(self.starts[found] - (np.cumsum(counts) - counts), counts)
        return self.order[first + np.arange(counts.sum())]


def domain_permutation_test(
    pairs: pd.DataFrame,
    domains: Mapping[str, str],
    *,
    n_resamples: int = 9999,
    rng: np.random.Generator | int | None = 0,
) -> dict[str, float]:
    """Are dataset pairs of one domain more (or less) consistent than pairs across domains?

    ``pairs``: one value per distinct dataset pair (columns ``dataset_a``, ``dataset_b``,
    ``consistency``; one group pair of :func:`repsim.consistency.consistency_table`; a pair
    with several rows is refused). Statistic: median consistency of same-domain pairs minus
    that of different-domain pairs. Null: the datasets' domain labels are exchangeable, so the
    labels are permuted over the *datasets* (:func:`scipy.stats.permutation_test`,
    ``permutation_type="pairings"`` on the one label array; exact when there are at most
    ``n_resamples`` orderings), never over the dataset pairs, which share datasets. Two-sided.
    A dataset with no defined pair carries no value and takes no part. ``p_value`` is NaN when
    no permutation can change the statistic's groups (one domain, or one dataset per domain).
    """
    ok = pairs.dropna(subset=["consistency"])
    names, rows = _pair_rows(ok)
    unknown = [d for d in names if d not in domains]
    if unknown:
        raise InputError(f"no domain for datasets {unknown}; pass a domain for every dataset")
    repeated = [(names[i], names[j]) for (i, j), r in rows.items() if len(r) > 1]
    if repeated:  # one of them would stand for the pair, unsaid
        raise InputError(
            f"dataset pairs {repeated[:3]} have several rows; the domain test takes one value per "
            "dataset pair: pass one group pair of the consistency table"
        )
    codes, _ = _codes([str(domains[d]) for d in names])
    keys = np.array(list(rows))
    values = ok["consistency"].to_numpy(dtype=float)[[rows[tuple(k)][0] for k in keys]]
    ia, ib = (keys[:, 0], keys[:, 1]) if len(keys) else (np.array([], int), np.array([], int))

    def statistic(labels: np.ndarray) -> float:
        same = labels[ia] == labels[ib]
        if not same.any() or same.all():
            return float("nan")
        return float(np.median(values[same]) - np.median(values[~same]))

    same = codes[ia] == codes[ib]
    # which domain the within-domain pairs come from: a contrast resting on one domain's pairs
    # says something about that domain, not about domains in general
    by_domain = pd.Series([str(domains[names[i]]) for i in ia[same]]).value_counts()
    out = {
        "main_domain": str(by_domain.index[0]) if len(by_domain) else "",
        "main_domain_pairs": int(by_domain.iloc[0]) if len(by_domain) else 0,
        "same": float(np.median(values[same])) if same.any() else float("nan"),
        "different": float(np.median(values[~same])) if (~same).any() else float("nan"),
        "difference": statistic(codes),
        "p_value": float("nan"),
        "p_min": float("nan"),
        "n_same_pairs": int(same.sum()),
        "n_different_pairs": int((~same).sum()),
        "n_datasets": len(names),
        "n_permutations": 0,
        "exact": False,
    }
    # With a dataset pair missing (undefined consistency), a relabelling can leave no pair within
    # (or across) domains: it has no statistic and is left out of the null (p_from_null), rather
    # than counted as less extreme (scipy's reading of NaN), which would shrink p.
    test = unit_permutation_test(
        lambda order: statistic(codes[order]), len(codes), n_resamples=n_resamples, rng=rng
    )
    out.update({k: test[k] for k in ("p_value", "p_min", "n_permutations", "exact")})
    return out


def dataset_bootstrap(
    pairs: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], float],
    *,
    n_resamples: int = 999,
    confidence_level: float = 0.95,
    rng: np.random.Generator | int | None = 0,
    min_datasets: int = MIN_BOOTSTRAP_DATASETS,
    column: str | None = None,
) -> dict[str, float]:
    """Bootstrap interval of a statistic of a table of dataset pairs, resampling the *datasets*.

    ``pairs`` has columns ``dataset_a`` and ``dataset_b`` (and whatever ``statistic`` reads); a
    resample draws datasets with replacement and keeps the rows of every pair of draws at two
    positions, so a dataset drawn twice enters its pairs twice, and a pair of one dataset with
    its own copy (no row) is left out. The models stay fixed: the interval says how much the
    statistic would move with another draw of datasets, not of models.
    (:func:`scipy.stats.bootstrap` draws, the expanded percentile interval of
    :func:`percentile_interval` over the datasets.) Returns ``estimate``, ``ci_low``,
    ``ci_high``, ``n_datasets``, ``n_bootstrap``; the interval is NaN with fewer than
    ``min_datasets`` datasets (:data:`MIN_BOOTSTRAP_DATASETS`; never fewer than 3).

    ``column``: when the statistic reads one column only, name it, and ``statistic`` gets that
    column's values (a float array, in row order) instead of the table: the same draws and
    interval, without building a table per draw (most of the time of 25,000 draws).
    """
    names, rows = _pair_rows(pairs)
    if column is not None:
        values = pairs[column].to_numpy(dtype=float)
        estimate = float(statistic(values))
    else:
        estimate = float(statistic(pairs))
    out = {
        "estimate": estimate,
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "n_datasets": len(names),
        "n_bootstrap": 0,
    }
    if len(names) < max(3, min_datasets) or not np.isfinite(estimate):
        return out

    sample_rows = _RowSampler(rows)

    def resampled(draw: np.ndarray) -> float:
        picked = sample_rows(draw)
        if not picked.size:
            return float("nan")
        return float(statistic(values[picked] if column is not None else pairs.iloc[picked]))

    with warnings.catch_warnings():  # scipy warns of the NaN of a one-dataset draw; see below
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap(
            (np.arange(len(names)),),
            resampled,
            n_resamples=n_resamples,
            vectorized=False,
            confidence_level=confidence_level,
            method="percentile",
            rng=rng,
        )
    # a draw of one dataset only has no pair: such resamples are left out of the interval
    low, high, kept = percentile_interval(
        res.bootstrap_distribution, confidence_level, n_units=len(names)
    )
    out.update(ci_low=low, ci_high=high, n_bootstrap=kept)
    return out


def bias_corrected_draws(
    draws: np.ndarray | Sequence[float], estimate: float
) -> tuple[np.ndarray, float]:
    """Bootstrap draws moved so that their percentile interval is about the bias-corrected
    estimate, and the bias: each draw minus ``2 * bias``, ``bias`` the mean of the finite draws
    minus ``estimate`` (the bootstrap's estimate of the estimate's bias; Efron and Tibshirani,
    An Introduction to the Bootstrap, ch. 10).

    Why twice: where the resampled world reproduces the bias, the draws sit above the estimate by
    about as much as the estimate sits above its target, so a plain percentile interval is off
    the target by twice the bias and misses on one side only. The excess SDs of
    :func:`controlled_tests` are such estimates (square roots of variance differences over few
    datasets; :func:`repsim.simulations.headline_coverage` measures it). Undefined draws stay
    undefined; with no finite draw or an undefined estimate, the draws come back as they are
    and the bias is NaN.
    """
    draws = np.asarray(draws, dtype=float)
    finite = draws[np.isfinite(draws)]
    if not finite.size or not np.isfinite(estimate):
        return draws.copy(), float("nan")
    bias = float(finite.mean() - estimate)
    return draws - 2 * bias, bias


def percentile_interval(
    draws: np.ndarray | Sequence[float],
    confidence_level: float,
    *,
    n_units: float | None = None,
) -> tuple[float, float, int]:
    """The percentile bootstrap interval of one statistic over its defined draws, and their count.

    With ``n_units`` (the number of units resampled, e.g. datasets) the interval is the expanded
    one, at :func:`expanded_level` instead of ``confidence_level``; every interval the package
    reports is. The ends are order statistics of the n defined draws: the (c)-th smallest and the
    (c)-th largest, c the fewest draws in a tail whose p is not below alpha (:func:`_tail_limit`;
    about ceil(n * (1 - level) / 2), e.g. the 25th of 999 at a plain 95%). Unlike interpolated
    percentiles, they make the interval exclude 0 exactly when the two-sided bootstrap p
    (:func:`bootstrap_p`, with the same ``n_units``) is below 1 - ``confidence_level``, so a
    sentence worded by one never contradicts the other.

    A resample can leave a statistic undefined (a draw of one dataset has no dataset pair; a
    category pair may lose its model pairs). Such draws are left out of the interval, and the
    count says on how many draws it rests; scipy's own interval would be NaN as soon as one draw
    is. ``(nan, nan, 0)`` when no draw is defined.
    """
    draws = np.asarray(draws, dtype=float).ravel()
    draws = np.sort(draws[np.isfinite(draws)])
    if not draws.size:
        return float("nan"), float("nan"), 0
    n = draws.size
    c = _tail_limit(n, confidence_level, n_units)
    return float(draws[c - 1]), float(draws[n - c]), int(n)


def _tail_limit(n: int, confidence_level: float, n_units: float | None) -> int:
    """c of :func:`percentile_interval`: the fewest draws in one tail whose :func:`bootstrap_p`,
    in the same float arithmetic, is not below alpha (``1 - confidence_level`` to 12 decimals,
    as a literal 0.05 is). Derived from the p itself, not from ``n (1 - level) / 2``, so interval
    and p agree even where that product lands on a whole number up to rounding."""
    alpha = round(1 - confidence_level, 12)

    def p_of(k: int) -> float:
        raw = min(1.0, 2 * (k / n))
        return raw if n_units is None else _expanded_p(raw, n_units)

    level = confidence_level if n_units is None else expanded_level(confidence_level, n_units)
    c = min(n, max(1, math.ceil(n * (1 - level) / 2)))  # a guess within a draw or two
    while c > 1 and p_of(c - 1) >= alpha:
        c -= 1
    while c < n and p_of(c) < alpha:
        c += 1
    return c


def tail_level(n: int, confidence_level: float, n_units: float | None = None) -> float:
    """The level, on the scale of ``confidence_level``, that :func:`percentile_interval`'s
    interval from ``n`` draws reaches: its ends are the c-th draws from each end, so 2c / n of
    the draws lie at or beyond them, one minus that share (mapped back through the expansion
    with ``n_units``). Just under the nominal level with many draws (999 draws at 10 datasets:
    0.949 for 0.95); well under it with few (79: c = 1, the extreme draws, 0.937), which a
    sentence quoting the interval then says."""
    c = _tail_limit(n, confidence_level, n_units)
    raw = min(1.0, 2 * c / n)
    return 1.0 - (raw if n_units is None else _expanded_p(raw, n_units))


# ----------------------------------------------------------------------------------- correlation
def correlation_test(
    x: Sequence[float], y: Sequence[float], method: str = "pearson", min_points: int = 3
) -> tuple[float, float]:
    """:func:`correlate`'s r and scipy's two-sided p over the points finite in both, treating
    them as independent ((NaN, NaN) when r is undefined). Points that share a unit (model pairs
    of one model) are not independent: test those by permuting the unit
    (:func:`unit_permutation_test`), not with this p.
    """
    from scipy.stats import pearsonr, spearmanr

    r = correlate(x, y, method, min_points)
    if not np.isfinite(r):
        return float("nan"), float("nan")
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    return r, float((pearsonr if method == "pearson" else spearmanr)(x[ok], y[ok])[1])


def keyed_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator for one unit of a computation (a measure, a subset size), seeded by ``seed`` and
    the unit's keys, so a unit's draws do not depend on which other units the same call computes
    or in which order. Strings enter by CRC-32, which, unlike ``hash``, is the same in every process.
    """
    # the key count first: numpy pads a seed sequence with zeros, so (0,) and (0, 0) would agree
    words = [len(keys), int(seed)]
    words += [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(words)


def sign_test(positive: int, negative: int) -> float:
    """Exact two-sided sign test (:func:`scipy.stats.binomtest`, p = 1/2) of ``positive`` against
    ``negative`` units, ties already left out; NaN when there is no unit. The book uses it with
    datasets as the units, the one level at which its observations are independent."""
    n = int(positive) + int(negative)
    if n == 0:
        return float("nan")
    from scipy.stats import binomtest

    return float(binomtest(int(positive), n, 0.5).pvalue)


def correlate(
    x: Sequence[float], y: Sequence[float], method: str = "pearson", min_points: int = 3
) -> float:
    """Pearson or Spearman r over the points finite in both; NaN when undefined: fewer than
    ``min_points`` such points, or either side constant. This is the rule of every r the book
    states. Computed from centred sums (ranks first for Spearman, ties at their mean rank), fast
    enough to be the statistic of a permutation test."""
    from scipy.stats import rankdata

    if method not in ("pearson", "spearman"):
        raise InputError(f"method must be 'pearson' or 'spearman', got {method!r}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < max(min_points, 2) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    if method == "spearman":
        x, y = rankdata(x), rankdata(y)
    xc, yc = x - x.mean(), y - y.mean()
    return float(np.clip(xc @ yc / np.sqrt((xc @ xc) * (yc @ yc)), -1.0, 1.0))


# ------------------------------------------------------------------------------------- sentences
def format_mean_range(values: Sequence[float]) -> str:
    """``0.600 (0.500-0.700)``: mean and range of a few values (seeds); one value alone, ``-`` none."""
    v = [float(x) for x in values]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})"


def format_on_side(
    x: float,
    side: Callable[[float], Any] | Sequence[Callable[[float], Any]],
    digits: int = 2,
    notation: str = "f",
) -> str:
    """``x`` as text, with ``digits`` decimals (``notation`` ``"f"``; ``"e"``: digits after the
    first significant one; ``"g"``: significant digits), or more while the number shown would lie
    on another ``side`` of a rule than ``x`` itself: ``side`` maps a number to which side it is
    on (``lambda v: v < alpha``). The one rule by which every number shown beside a verdict is
    printed (:func:`format_p`, :func:`repsim.sentences.fmt_against`,
    :func:`repsim.reference.format_within`): what is shown never contradicts the verdict that
    reads the exact value. Several rules are tried in turn, each up to 16 digits (a stricter one
    first: :func:`~repsim.sentences.fmt_against` keeps a value off its threshold, then allows it
    on the threshold where the verdict counts the threshold on its side).
    """
    x = float(x)
    for rule in side if isinstance(side, Sequence) else (side,):
        for d in range(digits, 17):
            text = f"{x:.{d}{notation}}"
            if rule(float(text)) == rule(x):
                return text
    # 17 significant digits always read back as x itself (0.15 - 0.1 against 0.05 needs them,
    # and 16 decimals fall short of them below 0.1): repr gives the shortest such text
    return repr(x)


def format_p(p: float, alpha: float = 0.05) -> str:
    """``p = 0.003``, ``p = 0.41``, ``p < 0.001`` or ``p undefined``.

    Never rounded across ``alpha`` (:func:`format_on_side`): a p of 0.0496 prints as
    ``p = 0.0496``, not ``p = 0.05``, since the sentence beside it reads it as below 0.05 (and
    p = alpha counts as not below). With an alpha of 0.001 or less (a Bonferroni threshold) a
    small p gets significant digits (``p = 0.00052``), since ``p < 0.001`` would not say on
    which side of alpha it lies.
    """
    if p is None or not np.isfinite(p):
        return "p undefined"
    if p < 0.001 and alpha > 0.001:
        return "p < 0.001"

    def below(v: float) -> bool:
        return v < alpha

    if p < 0.001:  # an alpha this small (a Bonferroni threshold): "p < 0.001" would not say
        return f"p = {format_on_side(p, below, 2, 'g')}"  # on which side: significant digits
    return f"p = {format_on_side(p, below, 3 if p < 0.01 else 2)}"


def format_interval(low: float, high: float, digits: int = 2) -> str:
    """``0.12 to 0.30``: the ends of an interval, each with ``digits`` decimals or more.

    A non-zero end never prints as 0: one that would (0.004 as ``0.00``, -0.004 as ``-0.00``)
    gets more decimals (up to 6, then ``4.1e-07``), since the sentence beside an interval reads
    on which side of 0 each end lies (as :func:`format_p` never rounds across alpha).
    """

    return f"{format_estimate(low, digits)} to {format_estimate(high, digits)}"


#: Fewer bootstrap resamples than this give an interval whose ends move from one resampling seed
#: to the next; a sentence quoting such an interval says how many there were.
#: :func:`controlled_tests` and ``repsim run`` draw 999 (more where the verdict needs them, see
#: :func:`monte_carlo_undecided`).
COARSE_BOOTSTRAP = 999


#: z of the band around alpha inside which a bootstrap p cannot be placed on either side of it
#: (99%, two-sided): another resampling seed would too often give the other answer.
MONTE_CARLO_Z = 2.576


def monte_carlo_undecided(p: float, n: float, alpha: float, two_sided: bool = True) -> bool:
    """Whether a p from ``n`` random resamples is too close to ``alpha`` to say on which side of
    it the exact p lies: within :data:`MONTE_CARLO_Z` binomial standard errors at p = alpha.

    Two-sided (twice the share of draws in the smaller tail: a bootstrap p, a two-sided
    permutation p) the error is ``sqrt(alpha (2 - alpha) / n)``; one-sided (the share of draws
    at least as extreme) ``sqrt(alpha (1 - alpha) / n)``. With 79 bootstrap resamples at alpha
    0.05 the band reaches up to 0.14, 0 included (0 of 79 draws beyond 0 happens 14% of the time
    when the exact p is 0.05): the embedded headline's interval moved across 0 from one seed to
    the next. A p from exact enumeration has no such error: do not pass it here.
    """
    if not (np.isfinite(p) and np.isfinite(n) and n > 0):
        return False
    spread = alpha * ((2 - alpha) if two_sided else (1 - alpha))
    return bool(abs(p - alpha) <= MONTE_CARLO_Z * math.sqrt(spread / n))


def permutation_verdict(test: Mapping[str, Any], alpha: float = 0.05) -> str:
    """Where a permutation result stands at ``alpha``: "undefined" (no p), "untestable" (the
    smallest p the design allows is not below alpha), "not settled" (random permutations and p
    within Monte Carlo error of alpha, :func:`monte_carlo_undecided`), "below" or "not below".

    ``test``: ``p_value``, ``p_min``, ``n_permutations``, ``exact`` and optionally
    ``alternative`` ("two-sided", the default, or "greater"), as :func:`unit_permutation_test`.
    """
    p, p_min = float(test["p_value"]), float(test.get("p_min", np.nan))
    if not np.isfinite(p):
        return "undefined"
    if np.isfinite(p_min) and p_min >= alpha:
        return "untestable"
    two_sided = test.get("alternative", "two-sided") == "two-sided"
    if not test.get("exact", False) and monte_carlo_undecided(
        p, float(test.get("n_permutations", np.nan)), alpha, two_sided
    ):
        return "not settled"
    return "below" if p < alpha else "not below"


def no_interval_reason(n_datasets: float) -> str:
    """Why a bootstrap interval over datasets is missing, for a sentence."""
    if np.isfinite(n_datasets) and n_datasets < MIN_BOOTSTRAP_DATASETS:
        return (
            f"{int(n_datasets)} datasets, fewer than the {MIN_BOOTSTRAP_DATASETS} a bootstrap "
            "interval over datasets needs to come near its level"
        )
    return "the statistic is undefined in every resample of the datasets"


def format_estimate(x: float, digits: int = 2) -> str:
    """A number for a sentence with ``digits`` decimals or more: a non-zero value never prints as 0
    (0.004 as ``0.00``, -0.004 as ``-0.00``): it gets more decimals (up to 6, then ``4.1e-07``).
    The ends of :func:`format_interval` and the estimates beside them are printed so."""
    x = float(x) + 0.0  # -0.0 as 0.0: an exact zero has no sign to show
    if not np.isfinite(x) or x == 0:
        return f"{x:.{digits}f}"
    d = digits
    while d < 6 and round(x, d) == 0:
        d += 1
    return f"{x:.{d}f}" if round(x, d) != 0 else f"{x:.1e}"


def _ci(row: pd.Series) -> str:
    """The bootstrap interval of a controlled-tests row, saying what was resampled (the datasets;
    the models stay fixed), that it is bias-corrected where it is (so a reader does not take
    an estimate off its centre for an error) and, below :data:`COARSE_BOOTSTRAP` resamples,
    that its ends are approximate."""
    level = row.get("confidence_level", 0.95)
    level = 0.95 if not np.isfinite(level) else level
    if not (np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])):
        return f"no {level:.0%} CI: {no_interval_reason(_number(row, 'n_datasets'))}"
    corrected = "bias-corrected " if np.isfinite(_number(row, "bias")) else ""
    interval = format_interval(row["ci_low"], row["ci_high"])
    n_boot = _number(row, "n_bootstrap")
    if np.isfinite(n_boot) and n_boot < COARSE_BOOTSTRAP:
        draws = f"{int(n_boot)} bootstrap resamples of the datasets with these models held fixed"
        short = _short_of_level(int(n_boot), level, _number(row, "n_datasets"))
        if short is None:
            return f"{corrected}{level:.0%} CI {interval} from {draws}, so its ends are approximate"
        ends, reached = short
        return (
            f"{corrected}CI {interval}, about a {reached:.1%} interval rather than the nominal "
            f"{level:.0%}: from {draws}, its ends are {ends}"
        )
    return f"{corrected}{level:.0%} CI {interval}, datasets resampled with these models held fixed"


def _short_of_level(n_boot: int, level: float, n_datasets: float) -> tuple[str, float] | None:
    """Where so few resamples leave the interval more than half a point short of its level
    (:func:`tail_level`), which draws its ends are and the level it reaches; else None."""
    units = n_datasets if np.isfinite(n_datasets) and n_datasets >= 2 else None
    reached = tail_level(n_boot, level, units)
    if reached >= level - 0.005:
        return None
    c = _tail_limit(n_boot, level, units)
    ends = "the extreme draws" if c == 1 else f"the {_ordinal(c)} draws from each end"
    return ends, reached


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _number(row: pd.Series, key: str) -> float:
    try:
        return float(row.get(key, np.nan))
    except (TypeError, ValueError):
        return float("nan")


def _smallest_p(row: pd.Series) -> float:
    """The smallest p a factor row's permutations can give (``p_min``; for a table written before
    that column, the (k + 1) / (n + 1) floor of random permutations)."""
    p_min, n_perm = _number(row, "p_min"), _number(row, "n_permutations")
    if np.isfinite(p_min):
        return p_min
    return 1.0 / (n_perm + 1) if np.isfinite(n_perm) and n_perm > 0 else float("nan")


def _permutation_p(row: pd.Series, alpha: float = 0.05) -> str:
    """``format_p`` of a permutation p, saying so when it sits at the floor the count allows."""
    p, n_perm = row["p_value"], _number(row, "n_permutations")
    p_text = format_p(p, alpha)
    floor = _smallest_p(row)
    if np.isfinite(p) and np.isfinite(floor) and p <= floor * (1 + 1e-9):
        if np.isfinite(n_perm) and floor * (n_perm + 1) > 1 + 1e-9:  # every labelling enumerated
            p_text += f", the smallest the design's {int(n_perm)} labellings can give"
        elif np.isfinite(n_perm):
            # (k + 1) / (n + 1) with k = 0: no permutation reached the observed value
            p_text += f", the smallest {int(n_perm)} permutations can give"
    return p_text


def _untestable(row: pd.Series, alpha: float) -> str | None:
    """Why a factor row's permutation test cannot reject at ``alpha``; None when it can."""
    if not np.isfinite(row["p_value"]):
        n_cat = _number(row, "n_model_pairs")
        counted = f"{int(n_cat)} category pairs" if np.isfinite(n_cat) else "fewer category pairs"
        return f"its statistic is undefined ({counted} with enough model pairs, two needed)"
    floor, n_perm = _smallest_p(row), _number(row, "n_permutations")
    if np.isfinite(floor) and floor >= alpha:
        if not np.isfinite(n_perm):
            return f"its permutations give p >= {floor:.3g} at best"
        if _enumerated(row):
            return f"the design's {int(n_perm)} labellings give p >= {floor:.3g} at best"
        # random permutations: too few of them, not the design, keep p from alpha
        return (
            f"{int(n_perm)} random permutations give p >= {floor:.3g} at best (too few: rerun "
            "controlled_tests with more permutations)"
        )
    return None


def _enumerated(row: pd.Series) -> bool:
    """Whether a factor row's permutations enumerated every labelling of the design: its
    smallest p is then above the 1 / (n + 1) of n random permutations."""
    n_perm, floor = _number(row, "n_permutations"), _smallest_p(row)
    return bool(np.isfinite(n_perm) and np.isfinite(floor) and floor * (n_perm + 1) > 1 + 1e-9)


def _factor_unsettled(row: pd.Series, alpha: float) -> bool:
    """Whether a factor row's one-sided permutation p came from random labellings and lies
    within Monte Carlo error of ``alpha`` (:func:`permutation_verdict`)."""
    n_perm, floor = _number(row, "n_permutations"), _smallest_p(row)
    test = {
        "p_value": _number(row, "p_value"),
        "p_min": floor,
        "n_permutations": n_perm,
        "exact": _enumerated(row),
        "alternative": "greater",
    }
    return permutation_verdict(test, alpha) == "not settled"


def factor_sentence(row: pd.Series | dict, alpha: float = 0.05) -> str:
    """One sentence for a ``factor`` row, worded by its permutation p-value."""
    row = pd.Series(row)
    what = f"{row['factor']} explains the consistency of pairwise similarity across datasets"
    why = _untestable(row, alpha)
    if why is not None:
        return (
            f"Whether {what} beyond random grouping cannot be tested at alpha = {alpha:g} on "
            f"this run: {why}."
        )
    if _factor_unsettled(row, alpha):
        return (
            f"Whether {what} beyond random grouping is not settled by "
            f"{int(_number(row, 'n_permutations'))} random labellings: permutation "
            f"{format_p(row['p_value'], alpha)} is within Monte Carlo error of alpha = "
            f"{alpha:g}; rerun controlled_tests with more permutations."
        )
    if row["p_value"] < alpha:
        p_text = _permutation_p(row, alpha)
        lo, hi = row["ci_low"], row["ci_high"]
        size = (
            "; the permutation test finds the grouping, but the size of its spread is not "
            "resolved: that interval includes 0"
            if np.isfinite(lo) and np.isfinite(hi) and lo <= 0 <= hi
            else ""
        )
        return (
            f"{what.capitalize()} beyond random grouping of the same models (permutation "
            f"{p_text}; category-pair means spread {format_estimate(row['estimate'])} beyond "
            f"the null, {_ci(row)}{size})."
        )
    return (
        f"No evidence that {what} beyond random grouping (permutation "
        f"{format_p(row['p_value'], alpha)})."
    )


def difference_sentence(
    difference: pd.Series | dict,
    objective: pd.Series | dict,
    architecture: pd.Series | dict,
    alpha: float = 0.05,
) -> str:
    """The answer to "objective more than architecture?", worded by the tests' results.

    "More than" needs both the factor's own permutation p < ``alpha`` and a bootstrap interval of
    the difference that excludes 0 (equivalently, its two-sided bootstrap p < ``alpha``: the
    interval's ends are order statistics chosen so that the two agree, see
    :func:`percentile_interval`); anything else is worded as no evidence, or as untestable when
    neither factor's permutations can reach ``alpha``. A bootstrap p within Monte Carlo error of
    ``alpha`` (:func:`bootstrap_undecided`, on the raw scale) is said to be unsettled where it
    would decide.
    """
    d, o, a = pd.Series(difference), pd.Series(objective), pd.Series(architecture)
    level = _number(d, "confidence_level")
    if np.isfinite(level) and not math.isclose(level, 1 - alpha):
        raise InputError(
            f"the difference is judged by its {level:.0%} bootstrap interval, which answers at "
            f"alpha = {1 - level:.2g}, not {alpha:g}; pass alpha={1 - level:.2g} or recompute "
            f"with controlled_tests(..., confidence_level={1 - alpha:g})"
        )
    stats_text = (
        f"difference in excess SD {format_estimate(d['estimate'])}, {_ci(d)}; objective "
        f"{_permutation_p(o, alpha)}, architecture {_permutation_p(a, alpha)}"
    )
    subject = "the consistency of pairwise similarity across datasets"
    n_boot = _number(d, "n_bootstrap")
    if (o["p_value"] < alpha or a["p_value"] < alpha) and bootstrap_undecided(
        _number(d, "p_value"), n_boot, alpha, _number(d, "n_datasets")
    ):
        return (
            f"Whether objective explains {subject} more than architecture does, or the reverse, "
            f"is not settled by {int(n_boot)} bootstrap resamples: their two-sided p "
            f"({format_estimate(d['p_value'], 3)}) is within Monte Carlo error of alpha = "
            f"{alpha:g}, so another resampling seed could give the other answer; rerun "
            f"controlled_tests with more resamples ({stats_text})."
        )
    hangs_on = [
        name
        for name, row, side in (
            ("objective", o, d["ci_low"] > 0),
            ("architecture", a, d["ci_high"] < 0),
        )
        if side and _factor_unsettled(row, alpha)
    ]
    if hangs_on:
        return (
            f"Whether objective explains {subject} more than architecture does, or the reverse, "
            f"is not settled: the interval excludes 0, but {hangs_on[0]}'s own permutation p is "
            f"within Monte Carlo error of alpha = {alpha:g}; rerun controlled_tests with more "
            f"permutations ({stats_text})."
        )
    if d["ci_low"] > 0 and o["p_value"] < alpha:
        return (
            f"Objective explains {subject} more than architecture does for these models "
            f"({stats_text})."
        )
    if d["ci_high"] < 0 and a["p_value"] < alpha:
        return (
            f"Architecture explains {subject} more than objective does for these models "
            f"({stats_text})."
        )
    why_o, why_a = _untestable(o, alpha), _untestable(a, alpha)
    if why_o is not None and why_a is not None:
        return (
            f"Whether objective explains {subject} more than architecture does cannot be tested "
            f"at alpha = {alpha:g} on this run: for objective, {why_o}; for architecture, "
            f"{why_a} ({stats_text})."
        )
    if not (np.isfinite(d["ci_low"]) and np.isfinite(d["ci_high"])):
        return (
            f"Whether objective explains {subject} more than architecture does cannot be tested "
            f"on this run ({stats_text})."
        )
    why = ""
    if d["ci_low"] > 0:  # the interval alone would say "more": say what it lacks
        why = "; the interval lies above 0, but objective's own permutation p is not below alpha"
    elif d["ci_high"] < 0:
        why = "; the interval lies below 0, but architecture's own permutation p is not below alpha"
    return (
        f"No evidence that objective explains {subject} more than architecture does, or the "
        f"reverse ({stats_text}{why})."
    )


def answer(
    table: pd.DataFrame, measure: str | None = None, view: str = "separate", alpha: float = 0.05
) -> str:
    """The headline sentence for one measure and view of a :func:`controlled_tests` table."""
    t = table[(table["view"] == view)]
    measure = measure or str(t["measure"].iloc[0])
    t = t[t["measure"] == measure]
    if t.empty:
        raise InputError(f"no rows for measure {measure!r}, view {view!r} in the table")

    def pick(analysis: str, factor: str) -> pd.Series:
        return t[(t["analysis"] == analysis) & (t["factor"] == factor)].iloc[0]

    o, a = pick("factor", "objective"), pick("factor", "architecture")
    d = pick("difference", "objective - architecture")
    pooled_too = view == "separate" and (table["view"] == "pooled").any()
    scope = (
        f"With {measure} on {int(o['n_datasets'])} datasets and {int(o['n_models'])} trained models"
        + (" (SimCLR and Barlow Twins pooled as Self-Supervised)" if view == "pooled" else "")
        + (" (SimCLR and Barlow Twins as two objectives)" if pooled_too else "")
    )
    sentence = difference_sentence(d, o, a, alpha)
    return f"{scope}, {sentence[0].lower()}{sentence[1:]}"


__all__ = [
    "COARSE_BOOTSTRAP",
    "MIN_BOOTSTRAP_DATASETS",
    "COLUMNS",
    "CONTROLS",
    "FILENAME",
    "answer",
    "bias_corrected_draws",
    "bootstrap_p",
    "bootstrap_undecided",
    "controlled_tests",
    "dataset_bootstrap",
    "design_table",
    "difference_sentence",
    "domain_permutation_test",
    "expanded_level",
    "factor_sentence",
    "format_estimate",
    "format_interval",
    "format_on_side",
    "format_p",
    "load",
    "monte_carlo_undecided",
    "no_interval_reason",
    "percentile_interval",
    "save",
    "sign_test",
    "stratified_permutation_test",
    "tail_level",
]
