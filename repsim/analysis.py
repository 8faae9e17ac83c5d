"""The book's own tables: analyses of a run that only the book draws, as functions on its
result files.

The study's analyses live in the science modules (:mod:`repsim.consistency` for consistency, its
category pairs and anchors; :mod:`repsim.behavior` for the similarity-behaviour link;
:mod:`repsim.stats` for the controlled tests); what is left here is the book's view of a run:
mean and spread across datasets, model orders and maps, measure against measure, resampling of
the stored features, and the tables the chapters display. Figures are :mod:`repsim.plots`,
sentences :mod:`repsim.sentences`, a chapter's opening :mod:`repsim.chapter`. Figures follow
Ciernik et al., "Objective drives the consistency of representational similarity across
datasets" (ICML 2025, arXiv 2411.05561).
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from repsim.consistency import (
    category_labels,
    pair_vectors,
    similarity_pairs,
    transform_similarity,
)
from repsim.errors import InputError, check_count
from repsim.names import UNKNOWN, is_known, is_same_pair
from repsim.stats import correlate, format_mean_range, keyed_rng

if TYPE_CHECKING:
    from repsim.chapter import Chapter, Run

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ matrices and pairs
def cluster_order(matrix: np.ndarray, method: str = "average") -> np.ndarray:
    """Leaf order of hierarchical clustering on the distance 1 - similarity (average linkage).

    An undefined similarity (NaN: a model the measure failed on) counts as 0, as far apart as
    unrelated representations: scipy refuses a distance that is not finite, so a panel of a
    dataset with one failed model stopped chapter 3 with a traceback."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InputError(f"expected a square similarity matrix, got shape {m.shape}")
    if m.shape[0] < 3:
        return np.arange(m.shape[0])
    m = np.where(np.isfinite(m), m, 0.0)
    dist = 1.0 - (m + m.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    return leaves_list(linkage(squareform(np.clip(dist, 0, None), checks=False), method=method))


def defined_datasets(sim: xr.DataArray | xr.Dataset) -> list[str]:
    """The datasets on which some model pair has a defined similarity (under some measure, for a
    Dataset), in the run's order: those a mean or spread across datasets rests on (NaN is
    skipped) and a figure of it draws. A dataset every model failed on (all NaN) was counted in
    "across 10 datasets" over values from 9."""
    arrays = list(sim.data_vars.values()) if isinstance(sim, xr.Dataset) else [sim]
    keep: set[str] = set()
    for da in arrays:
        x = da.transpose("dataset", "model_a", "model_b").values
        pairs = ~np.eye(x.shape[1], dtype=bool)  # a model with itself is no pair
        defined = np.isfinite(x[:, pairs]).any(axis=1)
        keep |= {str(d) for d, ok in zip(da.dataset.values, defined) if ok}
    return [str(d) for d in sim.dataset.values if str(d) in keep]


def mean_std_across_datasets(
    da: xr.DataArray, category: str = "objective", transform: str | None = None
) -> pd.DataFrame:
    """Per model pair: mean and standard deviation (ddof 1) of its similarity over datasets
    (NaN skipped: over :func:`defined_datasets` where a dataset is undefined for every pair).

    The study's code takes numpy's default, ddof 0: its standard deviations are
    sqrt((D - 1) / D) of these (2% smaller at its 23 datasets); the shape of the plot is the same.

    ``transform`` (None, ``"arccos"``, ``"tan"``) is applied to each similarity first, as in the
    study's appendix on values near the upper bound (:func:`repsim.consistency.transform_similarity`).
    """
    t = similarity_pairs(transform_similarity(da, transform), category)
    g = t.groupby(["model_a", "model_b", "category_pair"], sort=False)["similarity"]
    return g.agg(mean="mean", std="std").reset_index()


def mean_std_matrices(
    da: xr.DataArray, transform: str | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Model x model mean and standard deviation (ddof 1) of similarity across datasets.

    The study's Fig. 2 shows both beside the per-dataset matrices: the mean is the pattern a
    single "typical" dataset would give, the standard deviation where that pattern does not hold
    (ddof 1 here, 0 in the study's code: see :func:`mean_std_across_datasets`).
    NaN similarities are skipped. Model metadata coords are kept.
    """
    x = transform_similarity(da, transform).transpose("dataset", "model_a", "model_b")
    keep = {k: v for k, v in x.coords.items() if "dataset" not in v.dims}
    mean = x.mean("dataset", skipna=True).assign_coords(keep)
    std = x.std("dataset", ddof=1, skipna=True).assign_coords(keep)
    return mean.rename("mean_similarity"), std.rename("std_similarity")


def common_model_order(da: xr.DataArray, category: str = "objective") -> list[str]:
    """One model order for every dataset panel: by category (alphabetical, unknown last), then
    within each category by average-linkage clustering of the mean similarity across datasets.

    With one order a model sits at the same row in every panel, so it can be followed from one
    dataset to the next, which a per-panel clustering order does not allow.
    """
    mean, _ = mean_std_matrices(da)
    models = np.array([str(m) for m in da.model_a.values])
    cats = category_labels(da, category)
    out: list[str] = []
    for c in sorted(set(cats), key=lambda c: (c == UNKNOWN, c)):
        idx = np.flatnonzero(cats == c)
        out += list(models[idx[cluster_order(mean.values[np.ix_(idx, idx)])]])
    return out


def std_by_category_pair(table: pd.DataFrame) -> pd.DataFrame:
    """Median standard deviation across datasets and number of model pairs per category pair of
    :func:`mean_std_across_datasets`, steadiest first. Columns: median, count."""
    return table.groupby("category_pair")["std"].agg(["median", "count"]).sort_values("median")


def measure_means(
    sim: xr.Dataset, measures: Sequence[str], category: str = "objective"
) -> pd.DataFrame:
    """Per model pair: its mean similarity across datasets under each measure, to set linear CKA
    against RBF CKA and RSA beside the study's mean against spread (its Fig. 3).

    Columns: model_a, model_b, category_pair, then one column per measure present in ``sim``.
    """
    present = [m for m in measures if m in sim]
    if not present:
        raise InputError(f"none of {list(measures)} is in the run; it has {list(sim.data_vars)}")
    out = None
    for m in present:
        t = mean_std_across_datasets(sim[m], category).rename(columns={"mean": m})
        t = t[["model_a", "model_b", "category_pair", m]]
        out = t if out is None else out.merge(t, on=["model_a", "model_b", "category_pair"])
    return out


def model_embedding(
    da: xr.DataArray,
    method: str = "tsne",
    seed: int = 42,
    perplexity: float = 5.0,
    category: str = "objective",
) -> pd.DataFrame:
    """A 2-D map of the models from their dissimilarity 1 - mean similarity across datasets.

    ``method`` is scikit-learn's t-SNE (precomputed metric, random init, perplexity 5 and seed 42
    as in the study's code, its notebook 4_3, which embeds each dataset's matrix rather than the
    mean; perplexity lowered to n - 1 for small zoos; the exact gradient up to 1000 models, since the
    Barnes-Hut approximation only pays off for many thousands of points) or metric MDS.
    Both are random: ``seed`` is their ``random_state`` and belongs in the figure caption.
    Columns: model, x, y, category; ``attrs["method"]`` names the method with the perplexity
    actually used (for the caption: a small zoo's is lower than ``perplexity``),
    ``attrs["dissimilarity"]`` what was embedded, for the title: "1 - mean cka_linear across 3
    datasets", or "1 - cka_linear on faces" for one dataset (whose map the title called a mean
    across datasets), and ``attrs["measure"]``, ``attrs["datasets"]`` (those with a defined
    similarity) for :func:`repsim.sentences.model_map_text`.
    """
    from sklearn.manifold import MDS, TSNE

    if method not in ("tsne", "mds"):
        raise InputError(f"method={method!r} is unknown; use 'tsne' or 'mds'")
    mean, _ = mean_std_matrices(da)
    m = mean.transpose("model_a", "model_b").values
    n = m.shape[0]
    if n < 3:
        raise InputError(f"a model map needs at least 3 models, got {n}")
    if not np.isfinite(m).all():
        raise InputError(
            "the mean similarity has NaN entries (a model undefined on every dataset); "
            "drop that model with `models=`"
        )
    dist = np.clip(1.0 - (m + m.T) / 2.0, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    if method == "tsne":
        used = min(perplexity, n - 1.0)
        how = f"scikit-learn t-SNE (perplexity {used:g}, random init)"
        emb = TSNE(
            n_components=2,
            perplexity=used,
            metric="precomputed",
            init="random",
            learning_rate="auto",
            method="exact" if n <= 1000 else "barnes_hut",  # exact is fast for model zoos
            random_state=seed,
        ).fit_transform(dist)
    else:
        how = "scikit-learn metric MDS"
        emb = MDS(
            n_components=2, metric="precomputed", init="classical_mds", n_init=1, random_state=seed
        ).fit_transform(dist)
    out = pd.DataFrame(
        {
            "model": [str(x) for x in da.model_a.values],
            "x": emb[:, 0],
            "y": emb[:, 1],
            "category": category_labels(da, category),
        }
    )
    out.attrs["method"] = how
    name = da.name or "similarity"
    dsets = defined_datasets(da)  # the mean skips a dataset with no defined similarity
    out.attrs.update(measure=str(name), datasets=dsets)  # for the chapter's sentence on it
    out.attrs["dissimilarity"] = (
        f"1 - {name} on {dsets[0]}"
        if len(dsets) == 1
        else f"1 - mean {name} across {len(dsets)} datasets"
    )
    return out


# -------------------------------------------------------------------------------------- probes


def class_counts(run: Run) -> dict[str, int]:
    """Number of classes per dataset of the run (:meth:`repsim.runfolder.RunFolder.class_counts`)."""
    from repsim.runfolder import RunFolder

    return RunFolder(run.path).class_counts(run.similarity.dataset.values)


def probes_above_chance(run: Run) -> tuple[xr.Dataset | None, pd.DataFrame | None]:
    """The run's probes with near-chance probes set to NaN (:func:`repsim.behavior.probe_chance`),
    and the chance table; (None, None) without probes."""
    from repsim.behavior import drop_near_chance, probe_chance

    if run.probes is None:
        return None, None
    chance = probe_chance(run.probes, class_counts(run))
    return drop_near_chance(run.probes, chance), chance


# ------------------------------------------------------------------------------ measures vs each other
def measure_pair_table(
    sim: xr.Dataset,
    measure_x: str,
    measure_y: str,
    datasets: Sequence[str] | None = None,
    category: str = "objective",
) -> pd.DataFrame:
    """Each model pair's similarity under two measures, per dataset (None: all of the run).

    Columns: dataset, domain, model_a, model_b, category_pair, x (``measure_x``), y.
    """
    sel = {"dataset": list(datasets)} if datasets is not None else {}
    x = similarity_pairs(sim[measure_x].sel(sel), category)
    y = similarity_pairs(sim[measure_y].sel(sel), category)
    out = x[["dataset", "domain", "model_a", "model_b", "category_pair"]].copy()
    out["x"], out["y"] = x["similarity"].values, y["similarity"].values
    return out


def measure_agreement(
    sim: xr.Dataset,
    measure_x: str,
    measure_y: str,
    method: str = "pearson",
    datasets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per dataset: correlation over model pairs between two measures (e.g. RBF vs linear CKA).

    Columns: dataset, domain, r.
    """
    t = measure_pair_table(sim, measure_x, measure_y, datasets)
    rows = [
        {"dataset": str(ds), "domain": g["domain"].iloc[0], "r": correlate(g.x, g.y, method)}
        for ds, g in t.groupby("dataset", sort=False)
    ]
    return pd.DataFrame(rows, columns=["dataset", "domain", "r"])


# ------------------------------------------------------------------------- features: resampling
def read_features(
    run: Run, dataset: str, models: Sequence[str], max_rows: int | None = None, seed: int = 0
) -> dict[str, np.ndarray] | None:
    """Features of some models on one dataset, rows aligned by stimulus id: the stimuli of the
    dataset's similarity subset (the run's stimulus table), as similarity.nc was computed on.

    The store holds every stimulus of the dataset, train split included (for the probes); the
    robustness chapter read them all, so its error curves described another pool of images than
    the run's similarity. A folder without stimulus tables (made by hand) gives every stored row.
    Models the store lacks on that dataset are left out; None without a store or with fewer than
    two of the models stored. ``max_rows`` keeps a fixed random subset of those stimuli. A
    dataset the run lacks (a chapter's parameter) is an InputError naming the run's datasets.
    """
    from repsim.chapter import select

    select(run.similarity, [dataset])
    if max_rows is not None:
        max_rows = check_count("max_rows", max_rows, CKA_MIN_N)
    if run.features_path is None:
        return None

    store = run.feature_store()
    models = [m for m in models if store.has(dataset, m)]
    if len(models) < 2:
        return None
    ids0, first = store.read(dataset, models[0])
    ids0, first = np.asarray(ids0), np.asarray(first)
    table = _stimulus_table(run, dataset)
    if table is not None:
        keep = np.isin(ids0, table.loc[table["in_similarity"].astype(bool), "id"].to_numpy())
        ids0, first = ids0[keep], first[keep]
    if max_rows is not None and len(ids0) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids0), size=max_rows, replace=False))
        ids0, first = np.asarray(ids0)[keep], np.asarray(first)[keep]
    out = {models[0]: np.asarray(first)}
    for m in models[1:]:
        _, f = store.read(dataset, m, ids=ids0)
        out[m] = np.asarray(f)
    return out


def _stimulus_table(run: Run, dataset: str) -> pd.DataFrame | None:
    """The run's stimulus table of one dataset (``stimuli/<dataset>.csv``: id, label, split,
    in_similarity); None for a folder without one (made by hand)."""
    from repsim.runfolder import RunFolder

    path = RunFolder(run.path).stimuli(dataset)
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"id": str, "split": str})


#: Fewest stimuli unbiased CKA, the measure of the stimulus-count figures, is defined on.
CKA_MIN_N = 4
#: The subset sizes the stability figure tries below a dataset's stimuli (:func:`stimulus_sizes`).
STABILITY_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: What :func:`stimulus_features` skips, in the skip sentences of chapter 13.
STIMULUS_FIGURES = "the section on the number of stimuli"


def stimulus_features(
    ch: Chapter, dataset: str | None, per_category: int, max_stimuli: int | None
) -> tuple[str, dict[str, np.ndarray] | None, str | None]:
    """The input of chapter 13's stimulus-count figures: ``(dataset, features, skip)``.

    The models are the first ``per_category`` of each category of the chapter's grouping
    (:func:`pick_models`), the stimuli at most ``max_stimuli`` (None: all) of the dataset's
    similarity stimuli (:func:`read_features`); ``dataset`` None is the chapter's first in domain
    order. ``features`` is None and ``skip`` the sentence that says why when the chapter does not
    show the dataset, the grouping gives fewer than two models, or the store lacks them: the
    chapter said the store lacked the features of one model picked (``per_category=1`` with one
    category), and a dataset its ``datasets`` parameter left out was a traceback. A
    ``max_stimuli`` below what unbiased CKA needs is the reader's error, named."""
    if max_stimuli is not None:
        max_stimuli = check_count("max_stimuli", max_stimuli, CKA_MIN_N)
    dataset = ch.order[0] if dataset is None else str(dataset)
    skip = ch.need("features", min_models=2, figures=2) or ch.dataset_skip(
        [dataset], "dataset", STIMULUS_FIGURES
    )
    if skip:
        return dataset, None, skip
    category = ch.category
    chosen = pick_models(ch.models.assign(**{category: ch.categories()}), per_category, category)
    if len(chosen) < 2:
        known = [str(c) for c in ch.categories() if is_known(c)]
        levels = sorted(set(known))
        more = (
            " (a per_category of 2 or more picks a pair)"
            if len(levels) == 1 and len(known) >= 2
            else ""
        )
        return (
            dataset,
            None,
            f"per_category = {per_category} picks {len(chosen)} model"
            f"{'' if len(chosen) == 1 else 's'} ({', '.join(chosen) or 'none'}): the models "
            f"shown have {len(levels)} known {category}"
            f"{'' if len(levels) == 1 else 's'}, and its figures need a model pair, so "
            f"{STIMULUS_FIGURES} is skipped{more}.",
        )
    feats = read_features(ch.run, dataset, chosen, max_rows=max_stimuli)
    if feats is None:
        return (
            dataset,
            None,
            f"The feature store of this run lacks features of two or more of {', '.join(chosen)} "
            f"on {dataset}, so {STIMULUS_FIGURES} is skipped.",
        )
    return dataset, feats, None


#: How the tables of the stimulus-count figures (:func:`stability_vs_n`, :func:`subsample_pairs`)
#: name a model pair: ``a~b``.
MODEL_PAIR_SEP = "~"


def stimulus_sizes(n_all: int) -> list[int]:
    """The numbers of stimuli the stability figure tries: :data:`STABILITY_SIZES` below
    ``n_all``, and ``n_all`` itself (the reference, error 0 by construction)."""
    return sorted({s for s in STABILITY_SIZES if s < n_all} | {int(n_all)})


def subsample_size(n_total: int, fraction: float) -> int | None:
    """Stimuli in each subset of :func:`subsample_pairs` (``fraction`` of ``n_total``), or None
    when that is fewer than unbiased CKA needs or all of them (no spread to measure)."""
    m = int(round(fraction * n_total))
    return m if 0.0 < fraction < 1.0 and CKA_MIN_N <= m < n_total else None


def subsample_skip(n_total: int, fraction: float = 0.5) -> str | None:
    """The sentence that skips :func:`subsample_pairs` on ``n_total`` stimuli, or None when it
    can run: its error named ``fraction``, which chapter 13 does not take, when ``max_stimuli``
    or a small dataset left fewer than 8 stimuli."""
    if subsample_size(n_total, fraction) is not None:
        return None
    what = "halves" if fraction == 0.5 else f"subsets of {fraction:g}"
    m = int(round(fraction * n_total))
    held = (
        f"{m}, fewer than the {CKA_MIN_N} that unbiased CKA needs"
        if m < CKA_MIN_N
        else "all of them, so they cannot spread"
    )
    return (
        f"Random {what} of the {n_total} stimuli hold {held}, so the spread over {what} is skipped."
    )


#: The measure of the stimulus-count figures when none is given: unbiased linear CKA, by its
#: registry name (the all-pairs engine takes names; :func:`_default_measure` is its function).
DEFAULT_STIMULUS_MEASURE = "cka_linear"


def _default_measure() -> Callable[[np.ndarray, np.ndarray], float]:
    """:data:`DEFAULT_STIMULUS_MEASURE` as a pair function, for the per-pair paths."""
    from repsim.measures import parse_measure

    spec = parse_measure(DEFAULT_STIMULUS_MEASURE)
    return lambda x, y: float(spec(x, y))


def _pair_similarities(
    features: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    draws: Sequence[np.ndarray | None],
    measure: str | Callable[[np.ndarray, np.ndarray], float],
) -> np.ndarray:
    """The similarity of each of ``pairs`` (columns) on each stimulus subset of ``draws`` (rows
    of the features; None: all of them).

    A registry name is one call of the all-pairs engine (:func:`repsim.similarity_matrix`) per
    subset, on the models the pairs name, which shares each model's work across its pairs: pair
    by pair, chapter 13's halves of 45 models (990 pairs, 21 subsets) took 400 s of a cell's
    600. A Python callable is called once per pair and subset, pair by pair.

    Where the measure is undefined on a subset (for CKA, a model whose features do not vary
    over it) the value is NaN on both paths, without the engine's warning: the callers keep the
    NaN in their tables, and chapter 13's sentences count and name the pairs it leaves undefined
    (:func:`undefined_pairs`), where a warning per subset repeated one model on its stderr."""
    from repsim.errors import UndefinedMeasureError

    out = np.full((len(draws), len(pairs)), np.nan)

    def rows(x: np.ndarray, i: np.ndarray | None) -> np.ndarray:
        return x if i is None else x[i]

    if callable(measure):

        def value(x: np.ndarray, y: np.ndarray) -> float:
            try:
                return measure(x, y)
            except UndefinedMeasureError:  # as the engine: NaN for this pair, the others go on
                return np.nan

        for k, (a, b) in enumerate(pairs):
            x, y = np.asarray(features[a]), np.asarray(features[b])
            out[:, k] = [value(rows(x, i), rows(y, i)) for i in draws]
        return out
    from repsim.measures import similarity_matrix
    from repsim.measures.batched import quiet_nan

    models = list(dict.fromkeys(m for pair in pairs for m in pair))
    where = {m: j for j, m in enumerate(models)}
    a_idx = [where[a] for a, _ in pairs]
    b_idx = [where[b] for _, b in pairs]
    for d, i in enumerate(draws):
        if pairs:
            with quiet_nan():
                sim = similarity_matrix(
                    {str(m): rows(np.asarray(features[m]), i) for m in models}, measure
                )
            out[d] = sim.to_numpy()[a_idx, b_idx]
    return out


def stability_vs_n(
    features: Mapping[str, np.ndarray],
    sizes: Sequence[int],
    repeats: int = 5,
    measure: str | Callable[[np.ndarray, np.ndarray], float] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Similarity of every model pair on random subsets of n stimuli, against all stimuli.

    ``measure``: a registry name (default :data:`DEFAULT_STIMULUS_MEASURE`, unbiased linear
    CKA), each subset's pairs computed in one call of the all-pairs engine (pair by pair,
    chapter 13's 45 models took 174 s), or any function ``f(X, Y) -> float``, called pair by
    pair (:func:`_pair_similarities`).

    Columns: n, repeat, pair, similarity, full (value on all stimuli), abs_error; similarity
    and full are NaN where the measure is undefined on those stimuli (:func:`undefined_pairs`).
    """
    repeats = check_count("repeats", repeats)
    fn = DEFAULT_STIMULUS_MEASURE if measure is None else measure
    pairs = list(itertools.combinations(list(features), 2))
    n_total = len(next(iter(features.values())))
    keys, draws = [], []
    for n in sorted({int(s) for s in sizes if 4 <= int(s) <= n_total}):
        rng = keyed_rng(seed, n)  # the draws at n do not depend on the other sizes asked for
        for r in range(repeats if n < n_total else 1):
            keys.append((n, r))
            draws.append(rng.choice(n_total, size=n, replace=False))
    full, *by_draw = _pair_similarities(features, pairs, [None, *draws], fn)
    rows = [
        {
            "n": n,
            "repeat": r,
            "pair": f"{a}{MODEL_PAIR_SEP}{b}",
            "similarity": s,
            "full": ref,
            "abs_error": abs(s - ref),
        }
        for (n, r), values in zip(keys, by_draw)
        for (a, b), s, ref in zip(pairs, values, full)
    ]
    return pd.DataFrame(rows)


def undefined_pairs(table: pd.DataFrame, reference: str, value: str) -> dict[str, list[str]]:
    """The pairs of a stimulus-subset table whose measure is undefined somewhere, so that a
    sentence can count and name them rather than print "nan" or drop them unsaid.

    ``reference`` is the column of the all-stimuli value, ``value`` that of a subset's (for
    :func:`stability_vs_n` ``full`` and ``similarity``, for :func:`subsample_pairs`
    ``estimate`` and ``se``). Returns ``all`` (NaN on all stimuli), ``some`` (defined on all
    stimuli, NaN on one or more subsets) and ``pairs`` (every pair of the table), each in the
    table's order."""
    ref = table.groupby("pair", sort=False)[reference].apply(lambda v: v.isna().any())
    val = table.groupby("pair", sort=False)[value].apply(lambda v: v.isna().any())
    return {
        "all": [str(p) for p in ref.index[ref.to_numpy()]],
        "some": [str(p) for p in val.index[val.to_numpy() & ~ref.to_numpy()]],
        "pairs": [str(p) for p in ref.index],
    }


def subsample_pairs(
    features: Mapping[str, np.ndarray],
    n_draws: int = 20,
    fraction: float = 0.5,
    measure: str | Callable[[np.ndarray, np.ndarray], float] | None = None,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Spread of each pair's similarity over random subsets of the stimuli drawn WITHOUT replacement.

    Why not the ordinary bootstrap: a resample with replacement repeats stimuli, and a repeated
    stimulus puts a self-similarity k(x_i, x_i) off the diagonal of the Gram matrix, exactly the
    term unbiased (U-centred) HSIC removes; unbiased CKA on such resamples is biased upwards.
    A subset of m distinct stimuli keeps the estimator unbiased. With m = n/2 (``fraction`` 0.5,
    the default) this is the delete-d jackknife with d = n/2 (Shao and Wu 1989), whose standard
    error of the all-stimuli value is the spread over subsets times sqrt(m / (n - m)) = 1; the
    column ``se`` applies that factor for other fractions.

    ``measure``: a registry name (default :data:`DEFAULT_STIMULUS_MEASURE`, unbiased linear
    CKA), each subset's pairs computed in one call of the all-pairs engine, or any function
    ``f(X, Y) -> float``, called pair by pair.

    Columns: pair, model_a, model_b, estimate (all stimuli), mean, std (over subsets), se,
    q05, q95, m (stimuli per subset), n (all stimuli); estimate NaN where the measure is
    undefined on all stimuli, the spread NaN where it is on a subset (:func:`undefined_pairs`).
    """
    n_draws = check_count("n_draws", n_draws, 2)  # a spread needs two draws
    fn = DEFAULT_STIMULUS_MEASURE if measure is None else measure
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(list(features), 2))
    n_total = len(next(iter(features.values())))
    m = subsample_size(n_total, fraction)
    if m is None:
        m = int(round(fraction * n_total))
        raise InputError(
            f"fraction={fraction} of {n_total} stimuli gives subsets of {m}; "
            "choose 0 < fraction < 1 with at least 4 stimuli per subset"
        )
    rng = np.random.default_rng(seed)
    draws = [np.sort(rng.choice(n_total, size=m, replace=False)) for _ in range(n_draws)]
    estimates, *by_draw = _pair_similarities(features, pairs, [None, *draws], fn)
    rows = []
    for k, (a, b) in enumerate(pairs):
        vals = np.array([v[k] for v in by_draw])
        std = vals.std(ddof=1)
        rows.append(
            {
                "pair": f"{a}{MODEL_PAIR_SEP}{b}",
                "model_a": a,
                "model_b": b,
                "estimate": estimates[k],
                "mean": vals.mean(),
                "std": std,
                "se": std * np.sqrt(m / (n_total - m)),
                "q05": np.quantile(vals, 0.05),
                "q95": np.quantile(vals, 0.95),
                "m": m,
                "n": n_total,
            }
        )
    return pd.DataFrame(rows)


def subsample_separation(spread: pd.DataFrame) -> dict[str, float] | None:
    """Whether the subsets of :func:`subsample_pairs` are large enough to separate its pairs.

    The estimates' variance across pairs is about the variance of the pairs' true values plus the
    mean squared standard error (each estimate's noise). When the root-mean-square SE reaches
    the standard deviation of the estimates across pairs (``ratio`` >= 1), that leaves no spread
    of true values to find: the pairs differ by what the noise alone would make, and their error
    bars cannot tell them apart. Chapter 13 at ``max_stimuli`` 8 has halves of 4 stimuli, SEs
    near 0.6 and estimates with an SD near 0.2 across pairs.

    Returns m, n, pairs (with a finite SE and estimate), rms_se, sd (ddof 1), ratio and
    ``separates`` (ratio < 1); None with fewer than two such pairs or estimates all equal.
    """
    ok = spread[np.isfinite(spread["se"]) & np.isfinite(spread["estimate"])]
    if len(ok) < 2:
        return None
    sd = float(ok["estimate"].std(ddof=1))
    if not sd > 0:
        return None
    rms = float(np.sqrt(np.mean(ok["se"].to_numpy() ** 2)))
    return {
        "m": int(ok["m"].iloc[0]),
        "n": int(ok["n"].iloc[0]),
        "pairs": len(ok),
        "rms_se": rms,
        "sd": sd,
        "ratio": rms / sd,
        "separates": bool(rms / sd < 1.0),
    }


def pick_models(
    models: pd.DataFrame, per_category: int = 2, category: str = "objective"
) -> list[str]:
    """A small, deterministic sample of models: the first ``per_category`` of each category by id
    (not by config order, so the sample is the same however a config lists its models). Models
    of unknown category are not a category and are not picked."""
    per_category = check_count("per_category", per_category)
    known = models[models[category].map(is_known)]
    return [
        str(m)
        for _, g in known.groupby(category, sort=True)
        for m in sorted(map(str, g.index))[:per_category]
    ]


#: The study's six anchor models (its appendix on anchor models), by the ids of
#: ``data/configs/paper_models.yaml``: a CLIP, a SimCLR and a supervised ResNet-50, and a CLIP, a
#: DINOv2 and a supervised ViT-L.
STUDY_ANCHORS: tuple[str, ...] = (
    "OpenCLIP_RN50_openai",
    "simclr-rn50",
    "resnet50",
    "OpenCLIP_ViT-L-14_openai",
    "dinov2-vit-large-p14",
    "vit_large_patch16_224",
)


def anchor_models(
    models: pd.DataFrame, per_category: int = 2, category: str = "objective"
) -> tuple[list[str], str]:
    """The anchors of the study's anchor design and how they were chosen (for the caption): the
    study's six when the run has all of them, else the first ``per_category`` models of each
    category (:func:`pick_models`)."""
    if set(STUDY_ANCHORS) <= set(map(str, models.index)):
        return list(STUDY_ANCHORS), "the study's six"
    how = f"the first {per_category} of each {category}"
    return pick_models(models, per_category, category), how


# ------------------------------------------------------------------------------ tables shown


def count_table(
    models: pd.DataFrame, rows: str = "objective", cols: str = "architecture_class"
) -> pd.DataFrame:
    """Number of models per (rows, cols) category, missing metadata shown as ``unknown``."""
    t = pd.DataFrame(index=models.index)
    for c in (rows, cols):
        t[c] = [str(v) if is_known(v) else UNKNOWN for v in models[c]] if c in models else UNKNOWN
    return t.groupby([rows, cols]).size().unstack(fill_value=0)


# ------------------------------------------------------------------- tables of the chapters
def controlled_tests(run: Run, measure: str | None = None) -> tuple[pd.DataFrame | None, str]:
    """The run's ``controlled_tests.csv`` (:mod:`repsim.stats`), or None and why it is absent.

    ``measure``: a chapter's main measure. The run tests only the study's two main measures
    (:data:`repsim.stats.DEFAULT_MEASURES`); another one's rows are computed here as ``repsim
    run`` computes them (:data:`repsim.results.CONTROLLED_TESTS_OPTIONS`; a measure's rows do
    not depend on the other measures tested) and added to the table, which names them in
    ``attrs["computed"]``: a chapter on rsa_spearman showed cka_linear's factor sentences with
    only a note above them saying whose they were.

    A chapter that shows part of a run (:func:`repsim.chapter.select_run`) gets None: the tests
    resample and permute the run's datasets and models, so the whole run's numbers are not this
    part's, and they are not recomputed in a chapter."""
    import tempfile

    from repsim import stats
    from repsim.results import CONTROLLED_TESTS_OPTIONS
    from repsim.runfolder import RunFolder

    path = RunFolder(run.path).controlled_tests
    if run.selection:
        return None, (
            f"this chapter shows part of the run ({run.selection}), and the run's {path.name} "
            "tests all of it; the tests are not recomputed for a part (run a config with "
            "these models and datasets to test them)"
        )
    if path.is_file():
        try:
            table = stats.load(path)
        except InputError as exc:  # written by an earlier version: said, not read
            return None, str(exc)
        if measure is None or measure in set(table["measure"]):
            return table, ""
        extra = stats.controlled_tests(run.similarity, [measure], **CONTROLLED_TESTS_OPTIONS)
        with tempfile.TemporaryDirectory() as tmp:  # read back as the run's file is read
            extra = stats.load(stats.save(extra, tmp))
        both = extra if table.empty else pd.concat([table, extra], ignore_index=True)
        both.attrs["computed"] = [measure]
        return both, ""
    for line in run.info.get("skipped_analyses", []) or []:
        if str(line).startswith(f"{path.name}:"):
            return None, str(line).split(":", 1)[1].strip()
    return None, f"the run folder has no {path.name} (runs of older versions did not write it)"


#: a factor's and a difference's row alike: the estimate, the bias its interval is corrected for
#: (the interval is centred on estimate - bias, stats.bias_corrected_draws), interval and p
_TESTED = ["view", "factor", "estimate", "bias", "ci_low", "ci_high", "p_value"]
CONTROLLED_DISPLAY = {
    # no z: the permutation null is skewed (right tail ~16 SD), so a z of 10 read as normal says
    # p ~ 1e-23 where the permutation p is 0.001 (controlled_tests.csv keeps it)
    "factor": [*_TESTED, "n_permutations"],
    "difference": [*_TESTED, "n_bootstrap"],
    "category_pair": [
        "factor",
        "group_a",
        "group_b",
        "estimate",
        "ci_low",
        "ci_high",
        "n_model_pairs",
    ],
    "seed_spread": ["group_a", "group_b", "estimate", "seed_min", "seed_max", "n_models"],
}


def tested_measure(tests: pd.DataFrame, measure: str | None) -> str:
    """The measure whose controlled tests a chapter shows: ``measure`` when the table has it,
    else the table's first (the tests run on the study's two main measures by default)."""
    measures = [str(m) for m in dict.fromkeys(tests["measure"])]
    return measure if measure in measures else measures[0]


def controlled_rows(
    tests: pd.DataFrame,
    measure: str,
    analysis: str,
    view: str | None = "separate",
    display: bool = True,
) -> pd.DataFrame:
    """The rows of one analysis of ``controlled_tests.csv`` (the measure of
    :func:`tested_measure`; one view, or both when ``view`` is None): with ``display``, the
    columns that matter for a table; without, every column (what the sentences read, e.g. how
    many bootstrap resamples an interval rests on)."""
    t = tests[tests["measure"] == tested_measure(tests, measure)]
    t = t[t["analysis"] == analysis]
    if view is not None:
        t = t[t["view"] == view]
    out = (t[CONTROLLED_DISPLAY[analysis]] if display else t).reset_index(drop=True)
    for c in out.columns:  # counts read back as floats (other analyses leave them empty): ints
        if c.startswith("n_"):
            out[c] = _counts_as_int(out[c])
    return out


def same_category_share(
    tests: pd.DataFrame, measure: str, factor: str, view: str = "separate"
) -> dict[str, float]:
    """How much of a factor's statistic (the variance of its category-pair means, the
    ``category_pair`` rows of ``controlled_tests.csv``) lies between pairs of one category and
    pairs of two: the between-group share of their sum of squares, and the two groups' mean
    and count. The permutation test says the grouping beats a random one; this says whether it
    does so mostly by whether two models share the category, or by which categories they have.
    Empty without both kinds of pair."""
    rows = controlled_rows(tests, measure, "category_pair", view)
    rows = rows[rows["factor"] == factor].dropna(subset=["estimate"])
    same = (rows["group_a"] == rows["group_b"]).to_numpy()
    if same.all() or not same.any():
        return {}
    m = rows["estimate"].to_numpy(dtype=float)
    total = float(np.sum((m - m.mean()) ** 2))
    between = sum(float(k.sum()) * (m[k].mean() - m.mean()) ** 2 for k in (same, ~same))
    return {
        "share": between / total if total > 0 else float("nan"),
        "same_mean": float(m[same].mean()),
        "cross_mean": float(m[~same].mean()),
        "n_same": int(same.sum()),
        "n_cross": int((~same).sum()),
    }


def seed_spread_table(tests: pd.DataFrame, measure: str, view: str = "separate") -> pd.DataFrame:
    """Per objective pair: its mean consistency over all seeds' models beside the smallest and
    largest with one seed's models left out and their jackknife SE (``seed_spread`` rows of
    ``controlled_tests.csv``), so a reader sees whether the full mean lies among them."""
    spread = controlled_rows(tests, measure, "seed_spread", view)
    pairs = controlled_rows(tests, measure, "category_pair", view)
    pairs = pairs[pairs["factor"] == "objective"]
    full = pairs.set_index(["group_a", "group_b"])["estimate"]
    keys = list(zip(spread["group_a"], spread["group_b"]))
    return pd.DataFrame(
        {
            "group_a": spread["group_a"],
            "group_b": spread["group_b"],
            "all seeds": [full.get(k, np.nan) for k in keys],
            "smallest leaving a seed out": spread["seed_min"],
            "largest leaving a seed out": spread["seed_max"],
            "jackknife SE over seeds": spread["estimate"],
            "seeds": spread["n_models"],
        }
    )


#: Columns of the book's tables that hold p-values (printed by :func:`page_table`).
P_COLUMNS = ("p", "p_value", "p_bonferroni", "pearson_mantel_p")

#: Columns of the book's tables whose sign a sentence or a verdict reads (an interval's ends, a
#: difference, a correlation counted as negative): :func:`page_table` never shows one of them as
#: 0 (``0.000``, ``-0.000``) unless it is 0.
SIGNED_COLUMNS = (
    "estimate",
    "ci_low",
    "ci_high",
    "difference",
    "mean_difference",
    "pearson_r",
)


def page_table(
    table: pd.DataFrame,
    digits: int = 3,
    alpha: float = 0.05,
    against: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``table`` for a page: numbers rounded to ``digits``, p-values as
    :func:`repsim.stats.format_p` prints them (never rounded across ``alpha``: a ``round(3)``
    showed 0.0496 as 0.05 beside a sentence that read it as below 0.05), the columns of
    :data:`SIGNED_COLUMNS` by :func:`repsim.stats.format_estimate` (a non-zero value never as
    0), and each column of ``against`` (column: threshold) by
    :func:`repsim.sentences.fmt_against` (an r of 0.8996 beside "below 0.9" as 0.8996, not
    0.900). Formatted columns hold text; undefined values stay NaN."""
    from repsim.sentences import fmt_against
    from repsim.stats import format_estimate, format_p

    def shown(values: pd.Series, how: Callable[[float], str]) -> list:
        return [how(float(v)) if pd.notna(v) and np.isfinite(float(v)) else np.nan for v in values]

    out = table.round(digits)
    against = dict(against or {})
    for c in SIGNED_COLUMNS:
        if c in out and c not in against:
            out[c] = shown(table[c], lambda v: format_estimate(v, digits))
    for c, threshold in against.items():
        if c in out:
            out[c] = shown(table[c], lambda v, t=threshold: fmt_against(v, t, digits))
    for c in P_COLUMNS:
        if c in out:
            out[c] = [
                format_p(float(v), alpha).removeprefix("p = ").removeprefix("p ") for v in table[c]
            ]
    return out


def defined_rows(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The rows of ``table`` whose ``columns`` are all defined: what the sentence under the table
    speaks of. Empty means no table: a table of NaN shown before the sentence that says why
    (a part of a run too small for the comparison) reads as a broken result."""
    return table.dropna(subset=list(columns))


def _counts_as_int(values: pd.Series) -> pd.Series:
    """A column of whole numbers as ints (64 models, not 64.0); any other column unchanged."""
    try:
        v = values.astype(float)
    except (TypeError, ValueError):
        return values
    if len(v) and v.notna().all() and (v % 1 == 0).all():
        return v.astype(int)
    return values


def rank_sum_display(tests: pd.DataFrame, alpha: float | None = None) -> pd.DataFrame:
    """Rank-sum test rows (:func:`repsim.consistency.partner_rank_sum_tests`,
    :func:`~repsim.consistency.anchor_rank_sum_tests`, run at ``alpha``) for a page: medians and
    statistic to two decimals, p-values in scientific notation (a 4-decimal round showed 5e-08 as
    0.0; with ``alpha``, more digits where two would put a p on the other side of the verdict
    ``below thr.`` gives it), and the per-test threshold (the sentence under the table gives it)
    and the anchor's own category (the figure's panel titles give it) left out, so the table fits
    the page. The anchor (or the anchors' category) and the first partner category are the row
    index, so a page prints each once for its block of rows instead of a position column and a
    repeated name."""
    from repsim.stats import format_on_side

    dropped = ("p_threshold", "p_min", "anchor_category")
    out = tests.drop(columns=[c for c in dropped if c in tests]).copy()
    for c in ("median_a", "median_b", "statistic"):
        if c in out:
            out[c] = out[c].round(2)
    # each p on the side that "below thr." (p_bonferroni = min(p m, 1) < alpha, m the tests that
    # ran) gives it: a p of 0.00499 under 0.01 / 2 showed as 5.0e-03, the threshold, beside True
    m = max(int(tests["p"].notna().sum()), 1) if "p" in tests else 1
    sides = {
        "p": lambda v: min(v * m, 1.0) < alpha,
        "p_bonferroni": lambda v: v < alpha,
    }
    for c, side in sides.items():
        if c in out:
            out[c] = [
                "undefined"
                if not np.isfinite(v)
                else f"{v:.1e}"
                if alpha is None
                else format_on_side(v, side, 1, "e")
                for v in out[c]
            ]
    out = out.rename(columns=RANK_SUM_HEADERS)
    keys = ["anchor", "partners A"] if "anchor" in out else ["anchors A"]
    return out.set_index(keys) if set(keys) <= set(out.columns) else out


#: Short headers of :func:`rank_sum_display`, so its columns fit a page's width.
RANK_SUM_HEADERS = {
    "partner_a": "partners A",
    "partner_b": "partners B",
    "group_a": "anchors A",
    "group_b": "anchors B",
    "median_a": "median A",
    "median_b": "median B",
    "statistic": "z",
    "p_bonferroni": "p Bonferroni",
    "significant": "below thr.",
}


#: The label of the study's values in every table that sets them beside a run's.
STUDY_LABEL = "study (Ciernik et al. 2025)"
#: The run's cell of a row it has no value for (its status and basis say why): every table of
#: the study's values keeps the run's columns, so each has the same shape.
NO_RUN_VALUE = "none"


def _as_published(value: float) -> str:
    """One of the study's values as published: two decimals (0.70), more where it has them."""
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


def study_sources(study: pd.DataFrame) -> pd.DataFrame:
    """Where each of the study's numbers comes from (:func:`repsim.reference.load_study_numbers`):
    id, value (counts as whole numbers), description and location, for display."""
    from repsim.reference import COUNT_NAMES

    value = [
        f"{v:.0f}" if q in COUNT_NAMES else _as_published(v)
        for q, v in zip(study["quantity"], study["value"])
    ]
    return pd.DataFrame(
        {
            "id": study["id"].to_numpy(),
            STUDY_LABEL: value,
            "description": study["description"].to_numpy(),
            "location": study["location"].to_numpy(),
        }
    )


def study_beside_run(
    comparison: pd.DataFrame, quantity: str | Sequence[str], digits: int = 3
) -> pd.DataFrame:
    """Rows of :func:`repsim.reference.compare` for display: the study's value (labelled as the
    study's), the run's (:data:`NO_RUN_VALUE` where it has none), and the basis of the run's
    value. The run's two columns are kept when no row has a value, so that every such table has
    the same shape (they were dropped, and the page's tables differed from run to run).

    The study's values are shown as published (two decimals), the run's to ``digits`` decimals
    (counts as whole numbers); one with a verdict (within or outside the row's tolerance of the
    study's) with more where fewer would put it on the other side of the tolerance
    (:func:`repsim.reference.format_within`: 0.7504 "outside" 0.70 +- 0.05 showed as 0.750, on
    its edge). A chapter's part of a run (``comparison.attrs["selection"]``) is labelled as
    such, not as the run."""
    from repsim.reference import COUNT_NAMES, VERDICTS, format_within
    from repsim.sentences import PART
    from repsim.stats import format_estimate

    quantities = [quantity] if isinstance(quantity, str) else list(quantity)
    t = comparison[comparison["quantity"].isin(quantities)].copy()
    t["count"] = t["quantity"].map(COUNT_NAMES)
    # a chapter's part of a run (compare's attrs) is not labelled as the run
    part = bool(comparison.attrs.get("selection"))
    this, whose = (f"{PART} of the run", f"{PART}'s") if part else ("this run", "this run's")
    keep = {
        **({"count": "count"} if t["count"].notna().any() else {}),
        "measure": "measure",
        "models": "models",
        "dataset_a": "dataset A",
        "dataset_b": "dataset B",
        "domain": "domain",
        "study": STUDY_LABEL,
        "run": this,
        "status": "status",
        "run_basis": f"basis of {whose} value",
    }
    out = t[list(keep)].rename(columns=keep)
    for c in (STUDY_LABEL, this):
        out[c] = _counts_as_int(out[c])
    if out[STUDY_LABEL].dtype.kind == "f":  # as published, as the sources table shows them
        out[STUDY_LABEL] = [_as_published(float(v)) for v in out[STUDY_LABEL]]
    if out[this].dtype.kind == "f" and t["run"].notna().any():
        out[this] = [
            np.nan
            if not np.isfinite(v)
            else format_within(v, study, tol, digits)
            if status in VERDICTS
            else format_estimate(v, digits)
            for v, study, tol, status in zip(t["run"], t["study"], t["tolerance"], t["status"])
        ]
    # a row without a run value says so in words (compare's status and basis say why): the
    # run's columns are kept, so a table of a run with no value has the shape of any other
    out[this] = out[this].where(t["run"].notna().to_numpy(), NO_RUN_VALUE)
    if part:
        out["status"] = out["status"].replace({"not in run": f"not in {PART}"})
    shown = out.notna() & out.astype(str).apply(lambda col: col.str.strip().ne(""))
    shown[[this, keep["run_basis"]]] = True
    return out.loc[:, shown.any().to_numpy()]


def pearson_spearman_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Median consistency per category pair under Pearson (``x``) and Spearman (``y``)."""
    return (
        pairs.groupby("label")[["x", "y"]]
        .median()
        .rename(columns={"x": "median Pearson", "y": "median Spearman"})
    )


def within_between(da: xr.DataArray, category: str = "objective") -> pd.DataFrame:
    """Per dataset: median similarity of same-category and of different-category model pairs
    (NaN where the run has no such pair); unknown categories count as neither."""
    t = similarity_pairs(da, category)
    t = t[(t.cat_a != UNKNOWN) & (t.cat_b != UNKNOWN)]
    t["kind"] = np.where(t.cat_a == t.cat_b, "same category", "different category")
    out = t.groupby(["dataset", "kind"]).similarity.median().unstack()
    out = out.reindex(
        index=[str(d) for d in da.dataset.values], columns=["same category", "different category"]
    )
    out.index.name = "dataset"
    out.columns.name = None
    return out


def _design_strata(da: xr.DataArray, category: str, models: np.ndarray) -> np.ndarray | None:
    """The strata of a crossed zoo within which ``category`` was assigned (objective within
    architecture x seed, architecture within objective x seed; :func:`repsim.stats.design_table`),
    for the positions ``models``; None when the run is not such a design (equal strata needed)."""
    from repsim.stats import design_table

    other = {"objective": "architecture", "architecture_class": "objective"}.get(category)
    if other is None:
        return None
    try:
        design = design_table(da, controls=())
    except InputError:
        return None
    strata = (design[other].astype(str) + "|" + design["seed"].astype(str)).to_numpy()[models]
    _, sizes = np.unique(strata, return_counts=True)
    return strata if len(sizes) > 1 and len(set(sizes.tolist())) == 1 else None


def within_between_test(
    da: xr.DataArray,
    category: str = "objective",
    *,
    n_resamples: int = 9999,
    rng: int = 0,
) -> dict[str, object]:
    """Are same-category pairs more (or less) similar than random groupings of the same models?

    The statistic is the mean over datasets of the :func:`within_between` difference (median
    similarity of same-category pairs minus that of different-category pairs). The labels are
    permuted over the *models*, the unit that carries a category, never over pairs: within the
    design's strata in a crossed zoo (a free shuffle there would mix architectures into the
    objective groups; :func:`_design_strata`), otherwise freely. One relabelling holds for every
    dataset. Models of unknown category take no part. Two-sided (:func:`repsim.stats.p_from_null`).

    Returns ``statistic``, ``p_value``, ``p_min``, ``n_permutations``, ``exact``, ``n_models`` and
    ``permuted`` (how the labels were shuffled, for the sentence).
    """
    from repsim.stats import unit_permutation_test

    cats = category_labels(da, category)
    models = np.flatnonzero(cats != UNKNOWN)
    codes = np.unique(cats[models], return_inverse=True)[1]
    iu, ju = np.triu_indices(models.size, k=1)
    S = da.transpose("dataset", "model_a", "model_b").values.astype(np.float64)
    pairs = S[:, models[iu], models[ju]]  # (dataset, pair)

    median = np.median if np.isfinite(pairs).all() else np.nanmedian  # nanmedian: 3x slower

    def statistic(labels: np.ndarray) -> float:
        same = labels[iu] == labels[ju]
        if same.all() or not same.any():
            return float("nan")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a dataset without such pairs
            diff = median(pairs[:, same], 1) - median(pairs[:, ~same], 1)
            return float(np.nanmean(diff)) if np.isfinite(diff).any() else float("nan")

    strata = _design_strata(da, category, models)
    test = unit_permutation_test(
        lambda order: statistic(codes[order]),
        int(models.size),
        n_resamples=n_resamples,
        rng=rng,
        strata=strata,
    )
    if strata is None:
        permuted = f"freely over the {models.size} models"
    else:
        other = "architecture" if category == "objective" else "objective"
        permuted = f"within {other} x seed over the {models.size} models"
    return {**test, "n_models": int(models.size), "permuted": permuted}


def pick_dataset_pairs(da: xr.DataArray, k: int = 3) -> list[tuple[str, str]]:
    """Up to ``k`` dataset pairs that show the range of consistency: the most consistent, the
    least consistent and the median one (all-pairs Pearson r over model pairs)."""
    vec = pair_vectors(da)
    dsets = [str(d) for d in da.dataset.values]
    pairs = list(itertools.combinations(dsets, 2))
    if len(pairs) <= k:
        return pairs
    r = np.array([correlate(vec[a], vec[b]) for a, b in pairs])
    # most to least consistent, undefined pairs last: they are ranked nowhere, so they are only
    # shown when fewer than k pairs have a consistency
    order = [int(i) for i in np.argsort(np.where(np.isfinite(r), -r, np.inf), kind="stable")]
    finite = [i for i in order if np.isfinite(r[i])]
    picks = (
        list(dict.fromkeys([finite[0], finite[len(finite) // 2], finite[-1]]))[:k] if finite else []
    )
    picks += [i for i in order if i not in picks][: k - len(picks)]
    return [pairs[i] for i in picks]


def spread_over_domains(
    order: Sequence[str], domains: Mapping[str, str], max_panels: int
) -> list[str]:
    """Up to ``max_panels`` datasets taken in turn from each domain (in ``order``), then in
    ``order`` (a chapter's panels: a count of 0 would draw an empty figure)."""
    k = check_count("max_panels", max_panels)
    by: dict[str, list[str]] = {}
    for d in order:
        by.setdefault(domains.get(d, ""), []).append(d)
    out: list[str] = []
    while len(out) < min(k, len(order)):
        for lst in by.values():
            if lst and len(out) < k:
                out.append(lst.pop(0))
    return [d for d in order if d in out]


def domain_contrast(
    tidy: pd.DataFrame, domains: Mapping[str, str], n_resamples: int = 9999
) -> pd.DataFrame:
    """Median consistency of dataset pairs within one domain and across domains, per group pair,
    with the permutation test of the difference (:func:`repsim.stats.domain_permutation_test`:
    domain labels permuted over datasets). Index: group_pair, in the order of ``tidy``."""
    from repsim.stats import domain_permutation_test

    rows = {}
    for gp, t in tidy.groupby("group_pair", sort=False):
        r = domain_permutation_test(t, domains, n_resamples=n_resamples)
        rows[gp] = {
            "same domain": r["same"],
            "different domains": r["different"],
            "difference": r["difference"],
            "p": r["p_value"],
            "smallest p": r["p_min"],
            "same-domain pairs": r["n_same_pairs"],
            "main domain": r["main_domain"],
            "main domain pairs": r["main_domain_pairs"],
            "datasets": r["n_datasets"],
            "permutations": r["n_permutations"],
            "exact": r["exact"],
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group_pair")


#: Most resamples :func:`scale_difference` draws by default (an interval at 98.3% over the fewest
#: datasets it is computed for, 8, needs about 60,000 for 25 draws beyond each end).
MAX_RESAMPLES = 99_999


def _resamples_for(level: float, pairs: pd.DataFrame) -> int:
    """Dataset resamples that leave about 25 draws beyond each end of an expanded interval at
    ``level`` over the datasets of ``pairs``, at least 999 (and at most :data:`MAX_RESAMPLES`)."""
    from repsim.stats import MIN_BOOTSTRAP_DATASETS, expanded_level

    n_datasets = len(set(pairs["dataset_a"]) | set(pairs["dataset_b"]))
    if n_datasets < MIN_BOOTSTRAP_DATASETS:  # there is no interval to draw for
        return 999
    tail = (1 - expanded_level(level, n_datasets)) / 2
    return min(MAX_RESAMPLES, max(999, math.ceil(25 / tail)))


def scale_difference(
    pairs: pd.DataFrame,
    n_resamples: int | None = None,
    n_comparisons: int = 1,
    confidence_level: float = 0.95,
) -> dict[str, float]:
    """How much higher consistency is under the local measure (``y``) than under the global one
    (``x``) of :func:`repsim.consistency.consistency_pairs`: the median of ``y - x`` over the
    dataset pairs of the all-model-pairs rows (label ``all``; the category-pair rows, drawn in the
    figure, reuse the same models and would weigh each category by how many pairs it has), with a
    bootstrap interval that resamples datasets (:func:`repsim.stats.dataset_bootstrap`).

    ``n_comparisons``: how many measures a chapter sets against the same main one. Each interval
    is then at ``1 - (1 - confidence_level) / n_comparisons`` (Bonferroni), so that all of them
    cover together at ``confidence_level`` and "one of them excludes 0" is not found by chance one
    time in seven. ``n_resamples`` (default) leaves about 25 draws beyond each end of the
    interval, at least 999. The returned dict adds ``confidence_level`` (each interval's) and
    ``n_comparisons``.
    """
    from repsim.names import ALL
    from repsim.stats import dataset_bootstrap

    if not (isinstance(n_comparisons, (int, np.integer)) and n_comparisons >= 1):
        raise InputError(
            f"n_comparisons must be a whole number of 1 or more; got {n_comparisons!r}"
        )
    ok = pairs.dropna(subset=["x", "y"])
    if "label" in ok:
        ok = ok[ok["label"] == ALL]
    level = 1 - (1 - confidence_level) / n_comparisons
    if n_resamples is None:
        n_resamples = _resamples_for(level, ok)
    diff = (ok["y"] - ok["x"]).to_numpy()
    out = dataset_bootstrap(
        ok.assign(diff=diff),
        lambda d: float(np.median(d)) if len(d) else np.nan,
        n_resamples=n_resamples,
        confidence_level=level,
        column="diff",
    )
    out.update(confidence_level=level, n_comparisons=int(n_comparisons))
    return out


def top_pair_gaps(
    cons: xr.Dataset,
    measures: Sequence[str],
    category: str = "objective",
    datasets: Sequence[str] | None = None,
    n_resamples: int | None = None,
    confidence_level: float = 0.95,
    same_only: bool = False,
) -> dict[str, dict]:
    """Is the most consistent category pair first by more than chance? For each measure of
    consistency.nc (those it lacks left out): the category pair with the highest median
    consistency over dataset pairs (``top``, as in :func:`repsim.consistency.category_pair_medians`),
    the next one (``runner_up``), and the gap between their medians with a bootstrap interval
    that resamples datasets, models fixed (:func:`repsim.stats.dataset_bootstrap`); both pairs
    are held fixed across the draws. An interval above 0 says the first pair stays above the
    next under another draw of datasets; one that covers 0 says the ranking of the two is not
    settled by these datasets. With several measures each interval is at the Bonferroni level
    (``n_comparisons``), so that they cover together at ``confidence_level``. A measure with fewer
    than two category pairs with a defined median has no entry. ``same_only``: among the pairs
    of one category (``A | A``) only, the within-category comparison of the study.
    """
    from repsim.consistency import consistency_table

    have = set(map(str, cons.measure.values))
    present = [m for m in dict.fromkeys(measures) if m in have]
    level = 1 - (1 - confidence_level) / max(1, len(present))
    out: dict[str, dict] = {}
    for m in present:
        table = consistency_table(cons, m, category, datasets=datasets)
        result = top_pair_gap(table, level, n_resamples, same_only=same_only)
        if result is not None:
            out[m] = {**result, "confidence_level": level, "n_comparisons": len(present)}
    return out


def top_pair_gap(
    table: pd.DataFrame,
    confidence_level: float = 0.95,
    n_resamples: int | None = None,
    *,
    same_only: bool = False,
    rng: np.random.Generator | int | None = 0,
) -> dict | None:
    """:func:`top_pair_gaps` of one measure's :func:`repsim.consistency.consistency_table`: the
    category pair with the highest median over dataset pairs (``top``), the next
    (``runner_up``), and :func:`repsim.stats.dataset_bootstrap` of the gap between their medians
    at ``confidence_level``, both pairs held fixed over the draws. None with fewer than two
    category pairs. Both are chosen on the data the interval comes from;
    :func:`repsim.simulations.top_pair_false_claims` counts how often that orders two tied pairs.
    """
    from repsim.stats import dataset_bootstrap

    table = table.dropna(subset=["consistency"])
    medians = table.groupby("label")["consistency"].median()
    if same_only:
        medians = medians[medians.index.map(is_same_pair).to_numpy(dtype=bool)]
    if len(medians) < 2:
        return None
    top = str(medians.idxmax())
    runner_up = str(medians.drop(top).idxmax())
    table = table[table["label"].isin([top, runner_up])].reset_index(drop=True)
    first = (table["label"] == top).to_numpy()
    values = table["consistency"].to_numpy(dtype=float)

    def gap(rows: np.ndarray) -> float:
        rows = rows.astype(np.int64)
        a, b = values[rows[first[rows]]], values[rows[~first[rows]]]
        return float(np.median(a) - np.median(b)) if len(a) and len(b) else np.nan

    result = dataset_bootstrap(
        table.assign(row=np.arange(len(table), dtype=float)),
        gap,
        n_resamples=n_resamples
        if n_resamples is not None
        else _resamples_for(confidence_level, table),
        confidence_level=confidence_level,
        column="row",
        rng=rng,
    )
    return {"top": top, "runner_up": runner_up, **result}


# ------------------------------------------------------------- train split against held-out images
#: The two variants of :func:`train_split_similarity`: the run's similarity on its held-out (test)
#: similarity stimuli, and the same measure on the train-split subset under the same rules.
SPLIT_VARIANTS = ("held_out", "train")


def run_split(run: Run) -> str | None:
    """The split the run drew its similarity stimuli from (``stimuli.split`` of run.json's config:
    ``train`` when unset, as in the study); None when the run records no config."""
    cfg = run.info.get("config") if isinstance(run.info.get("config"), dict) else None
    if cfg is None:
        return None
    return str((cfg.get("stimuli") or {}).get("split") or "train")


def _subset_rules(run: Run, dataset: str) -> tuple[int, int | None, int]:
    """``(max_images, per_class, seed)`` of one dataset under the run's config: the dataset entry's
    own values, else the config's ``stimuli:`` block, else the defaults (parsed by the config's own
    rules, :func:`repsim.stimuli.spec.parse_dataset`)."""
    from repsim.config import StimuliOptions, parse_section
    from repsim.stimuli.spec import parse_dataset

    cfg = run.info.get("config") if isinstance(run.info.get("config"), dict) else {}
    stimuli = parse_section(StimuliOptions, cfg.get("stimuli"), "run.json: stimuli").to_dict()
    entry = next((e for e in cfg.get("datasets") or [] if e.get("id") == dataset), None)
    if entry is None:
        return stimuli["max_images"], stimuli.get("per_class"), stimuli["seed"]
    spec = parse_dataset(entry, stimuli)
    return spec.max_images, spec.per_class, spec.seed


def split_ids(run: Run, dataset: str, split: str = "train") -> np.ndarray | None:
    """Ids (sorted) of the similarity subset of ``split`` of one dataset under the run's rules.

    The rule is the pipeline's own (:func:`repsim.stimuli.subset.similarity_subset`, with the
    run's ``max_images``, ``per_class`` and ``seed``), applied to the run's stimulus table
    (``stimuli/<dataset>.csv``): with ``split`` the run's own split it gives the rows marked
    ``in_similarity``. None without a table; empty when the table has no row of ``split``.
    """
    from repsim.stimuli.subset import similarity_subset

    table = _stimulus_table(run, dataset)
    if table is None:
        return None
    max_images, per_class, seed = _subset_rules(run, dataset)
    items = _rule_items(table)
    return similarity_subset(items, max_images, per_class, seed, split)  # type: ignore[arg-type]


def _train_ids_like(run: Run, dataset: str, held_ids: np.ndarray) -> np.ndarray | None:
    """Ids (sorted) of train images with the class counts of ``held_ids``, drawn by the run's
    rule with its seed (:func:`repsim.stimuli.subset.similarity_subset` with ``counts``); fewer,
    logged, where a class has fewer train images. The rule capped at the held-out size rounds up
    to whole images per class (360 train images beside 359 held out)."""
    from collections import Counter

    from repsim.stimuli.subset import similarity_subset

    table = _stimulus_table(run, dataset)
    if table is None:
        return None
    _, _, seed = _subset_rules(run, dataset)
    items = _rule_items(table)
    label_of = dict(zip(items.ids, items.labels))
    want = Counter(label_of[str(i)] for i in held_ids)
    ids = similarity_subset(items, seed=seed, split="train", counts=want)  # type: ignore[arg-type]
    if len(ids) < len(held_ids):
        log.info(
            "train split of %s: %d images beside %d held out (a class has fewer train images)",
            dataset,
            len(ids),
            len(held_ids),
        )
    return ids


def _rule_items(table: pd.DataFrame) -> object:
    """A stimulus table as the subset rule reads it (ids, labels, split): the stimulus set it
    needs, without images."""
    from types import SimpleNamespace

    return SimpleNamespace(
        ids=table["id"].to_numpy(dtype=str),
        labels=table["label"].to_numpy(),
        split=table["split"].to_numpy(dtype=str),
    )


def _train_rows(store: object, dataset: str, model: str, ids: np.ndarray) -> np.ndarray | None:
    """Features of ``model`` on the rows ``ids``, from one checked read; None when the store lacks
    the model there or any of the rows (a damaged group still raises StoreError)."""
    if not store.has(dataset, model):  # type: ignore[attr-defined]
        return None
    stored, feats = store.read(dataset, model)  # type: ignore[attr-defined]
    where = {str(i): k for k, i in enumerate(stored)}
    rows = [where.get(str(i)) for i in ids]
    if any(r is None for r in rows):
        return None
    return np.asarray(feats)[rows]


def _stored_with(store: object, dataset: str, model: str, ids: np.ndarray) -> bool:
    """Whether the store holds complete features of ``model`` on ``dataset`` for every id."""
    if not store.has(dataset, model):  # type: ignore[attr-defined]
        return False
    return set(map(str, store.ids(dataset, model))).issuperset(map(str, ids))  # type: ignore[attr-defined]


def train_split_skip(run: Run, datasets: Sequence[str] | None = None) -> str | None:
    """Why the train-split variant cannot be computed on this run (a sentence), or None.

    It needs held-out similarity stimuli (``stimuli.split: test``), a feature store and, on at
    least one dataset, a stimulus table with train rows whose features two or more models have.
    """
    split = run_split(run)
    if split is None:
        return "The run records no config, so the split of its similarity stimuli is unknown."
    if split != "test":
        return (
            f"This run measured similarity on the {split} split already, so there is no "
            "held-out value to set the train-split variant beside."
        )
    if run.features_path is None:
        return "This run kept no features (features.zarr), so the train-split variant is skipped."

    store = run.feature_store()
    models = [str(m) for m in run.similarity.model_a.values]
    for ds in datasets or [str(d) for d in run.similarity.dataset.values]:
        ids = split_ids(run, ds, "train")
        if ids is None or not len(ids):
            continue
        stored = (m for m in models if _stored_with(store, ds, m, ids))
        if next(stored, None) is not None and next(stored, None) is not None:  # two suffice
            return None
    return (
        "The feature store of this run holds no train-split rows (its probes were off, so only "
        "the similarity stimuli were extracted), so the train-split variant is skipped."
    )


def train_split_similarity(
    run: Run,
    measure: str = "cka_linear",
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    device: str | None = None,
    same_n: bool = True,
) -> xr.Dataset:
    """The run's similarity beside the same measure on the train-split subset of every dataset.

    With ``same_n`` (default) the train-split subset has as many images of each class as the
    dataset's held-out subset (:func:`_train_ids_like`), so the two variants differ in the split
    alone, not in the number of stimuli or the class mix as well; it also keeps the cost of the
    variant that of the run's. Without it, the run's rule draws the train subset.

    The study measured similarity on the train images of pretrained models; the mini-zoo default
    measures it on held-out images, which no model trained on. The train-split subset (same
    ``max_images``/``per_class``/``seed`` rule, :func:`split_ids`) is read from the feature store
    and passed through the all-pairs engine (:func:`repsim.measures.similarity_matrices`), as the
    similarity stage does. Returns a Dataset with variables ``held_out`` (the run's values) and
    ``train`` (dataset, model_a, model_b) and the run's coords; datasets without train rows are
    left out (logged), models without train features there are NaN. Attr ``n_train`` per dataset.
    """
    from repsim.chapter import select
    from repsim.measures import similarity_matrices
    from repsim.measures.registry import parse_measure

    if measure not in run.similarity:
        raise InputError(f"{measure!r} is not in the run; it has {list(run.similarity.data_vars)}")
    reason = train_split_skip(run, datasets)
    if reason:
        raise InputError(f"{reason} Check with repsim.analysis.train_split_skip(run) first.")
    held = select(run.similarity[measure], datasets, models).transpose(
        "dataset", "model_a", "model_b"
    )
    store = run.feature_store()
    ids_of = [str(m) for m in held.model_a.values]
    min_n = parse_measure(measure).min_n
    keep, train, n_train = [], [], []
    for ds in [str(d) for d in held.dataset.values]:
        held_ids = split_ids(run, ds, run_split(run) or "test")
        if same_n and held_ids is not None and len(held_ids):
            ids = _train_ids_like(run, ds, held_ids)
        else:
            ids = split_ids(run, ds, "train")
        if ids is None or len(ids) < min_n:
            log.info("train split: %s left out (fewer than %d train rows)", ds, min_n)
            continue
        feats = {m: f for m in ids_of if (f := _train_rows(store, ds, m, ids)) is not None}
        if len(feats) < 2:
            log.info("train split: %s left out (train features of %d models)", ds, len(feats))
            continue
        sim = similarity_matrices(feats, [measure], device=device)[measure]
        full = sim.reindex(model_a=ids_of, model_b=ids_of).values  # absent models: NaN
        keep.append(ds)
        train.append(full)
        n_train.append(len(ids))
    if not keep:
        raise InputError(
            f"no dataset has {min_n} or more train-split rows stored for two or more models; "
            "check with repsim.analysis.train_split_skip(run)"
        )
    held = held.sel(dataset=keep)
    out = xr.Dataset(
        {"held_out": held, "train": held.copy(data=np.stack(train))},
        attrs={"measure": measure, "n_train": n_train},
    )
    out["held_out"].attrs = {"measure": measure, "split": "test"}
    out["train"].attrs = {"measure": measure, "split": "train"}
    return out


def split_pair_table(variants: xr.Dataset, category: str = "objective") -> pd.DataFrame:
    """Each model pair's similarity on held-out and on train images, per dataset (tidy).

    Columns: dataset, domain, model_a, model_b, category_pair, held_out, train.
    """
    t = measure_pair_table(variants, *SPLIT_VARIANTS, category=category)
    return t.rename(columns={"x": "held_out", "y": "train"})


def split_agreement(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: Pearson r over model pairs between train-split and held-out similarity, and
    the mean of each and their difference.

    Columns: dataset, domain, n_pairs, r, mean_held_out, mean_train, mean_difference (train
    minus held-out). No p-value: the pairs of one dataset share models, so a p over pairs would
    treat them as more independent than they are.
    """
    from repsim.stats import correlation_test

    rows = []
    for ds, g in pairs.groupby("dataset", sort=False):
        ok = g.dropna(subset=["held_out", "train"])
        r, _ = correlation_test(ok["held_out"], ok["train"])
        rows.append(
            {
                "dataset": str(ds),
                "domain": g["domain"].iloc[0],
                "n_pairs": len(ok),
                "r": r,
                "mean_held_out": ok["held_out"].mean(),
                "mean_train": ok["train"].mean(),
                "mean_difference": (ok["train"] - ok["held_out"]).mean(),
            }
        )
    cols = ["dataset", "domain", "n_pairs", "r", "mean_held_out", "mean_train"]
    return pd.DataFrame(rows, columns=[*cols, "mean_difference"])


def split_agreement_table(agreement: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`split_agreement` for a page (:func:`page_table`, by dataset): each r shown on the
    side of :data:`repsim.sentences.CLOSE_AGREEMENT` that the sentence under it reads (an r of
    0.8996 "below 0.9" was shown as 0.900), the mean difference never as 0 unless it is."""
    from repsim.sentences import CLOSE_AGREEMENT

    return page_table(agreement.set_index("dataset"), digits, against={"r": CLOSE_AGREEMENT})


def split_consistency_dataset(variants: xr.Dataset, category: str = "objective") -> xr.Dataset:
    """consistency.nc's definition (:func:`repsim.consistency.consistency_dataset`) applied to
    the two variants of :func:`train_split_similarity`: its ``measure`` values are ``held_out``
    and ``train``, so every reader of consistency.nc (e.g. :func:`top_pair_gaps`) reads it."""
    from repsim.consistency import consistency_dataset, defined_groupings

    if variants.sizes["dataset"] < 2:
        raise InputError(
            f"consistency needs two or more datasets; the train-split variant has "
            f"{variants.sizes['dataset']}"
        )
    by, _ = defined_groupings(variants[[SPLIT_VARIANTS[0]]], [category])  # as the run's
    return consistency_dataset(variants, by=by)


def split_consistency(variants: xr.Dataset, category: str = "objective") -> pd.DataFrame:
    """Consistency (Pearson, :func:`split_consistency_dataset`) of all model pairs and of each
    ``category`` pair, under each variant.

    One row per (category pair, dataset pair). Columns: label, group_by, dataset_a, dataset_b,
    held_out, train. Category pairs with fewer than 3 model pairs are left out; when no category
    pair has 2 model pairs (one model per category: a part of a run), only all model pairs are.
    """
    from repsim.consistency import consistency_pairs
    from repsim.names import ALL

    cons = split_consistency_dataset(variants, category)
    x, y = ((v, "consistency") for v in SPLIT_VARIANTS)
    out = consistency_pairs(cons, x, y, (ALL, category))
    return out.rename(columns={"x": "held_out", "y": "train"})


def split_consistency_summary(cons: pd.DataFrame) -> pd.DataFrame:
    """Per category pair of :func:`split_consistency`: median consistency over dataset pairs under
    each variant, their difference (train minus held-out) and the number of dataset pairs.

    Index: label (``all`` first, then by held-out median, highest first). Columns: held_out,
    train, difference, n.
    """
    ok = cons.dropna(subset=["held_out", "train"])
    out = ok.groupby("label")[["held_out", "train"]].median()
    out["difference"] = out["train"] - out["held_out"]
    out["n"] = ok.groupby("label").size()
    order = sorted(out.index, key=lambda lab: (lab != "all", -out.loc[lab, "held_out"]))
    return out.loc[order]


# ------------------------------------------------------------------- the mini-zoo's own accuracy
_ZOO_MANIFEST_COLUMNS = ("id", "objective", "method", "architecture", "seed", "epochs")
_ZOO_MANIFEST_COLUMNS += ("probe_acc", "sha256")
_ZOO_HELDOUT_COLUMNS = ("id", "dataset", "n_classes", "probe_acc", "sha256")


def _zoo_csv(
    path: Path, columns: Sequence[str], notes: list[str], damaged_ids: set[str] | None = None
) -> pd.DataFrame | None:
    """A zoo table as strings; None when absent, or unreadable or of another kind (noted).

    Rows that cannot be what the trainer wrote (an empty field, a SHA-256 that is not 64 hex
    digits, a number that does not parse: a truncated or edited file) are left out and noted,
    so that a cut-off hash is not taken for a model retrained since.
    """
    if not path.is_file():
        return None
    name = f"{path.parent.name}/{path.name}"
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        notes.append(f"{name} is not a mini-zoo table ({type(exc).__name__}: {exc})")
        return None
    lacking = [c for c in columns if c not in table.columns]
    if lacking:
        notes.append(f"{name} is not a mini-zoo table (no column {', '.join(lacking)})")
        return None
    damaged = _damaged_rows(table, columns)
    if damaged.any():
        ids = ", ".join(str(i) or "?" for i in table.loc[damaged, "id"])
        if damaged_ids is not None:
            damaged_ids.update(table.loc[damaged, "id"])
        notes.append(
            f"{name} has {int(damaged.sum())} damaged row(s) (truncated or edited), left out: {ids}"
        )
    return table.loc[~damaged].reset_index(drop=True)


def _damaged_rows(table: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    bad = (table[list(columns)].apply(lambda col: col.str.strip()) == "").any(axis=1)
    bad |= ~table["sha256"].str.fullmatch(r"[0-9a-f]{64}")
    for col in ("probe_acc", "seed", "epochs", "n_classes"):
        if col in columns:
            bad |= pd.to_numeric(table[col], errors="coerce").isna()
    return bad


def zoo_heldout(run: Run) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str]:
    """What the mini-zoo's ``manifest.csv`` and ``heldout.csv`` record for the run's models.

    Only rows that describe the very files the run used count: the run's ``run.json`` lists each
    weights file with its SHA-256, and a manifest row with another hash (a model retrained after
    the run) is left out. Returns ``(models, cells, note)``: one row per model (id, method,
    architecture, seed, epochs, the 95-way held-out ridge-probe accuracy), the per-set rows (of
    the run's datasets, when run.json lists them) with the behaviour chapter's chance rule applied
    (:func:`repsim.minizoo.evaluate.heldout_chance`), and a note on what was left out
    (``models`` is None when nothing matched; the note says why).
    """
    weights = run.info.get("weights") or {}
    if run.selection:  # a chapter's part of the run: its models only
        shown = {str(m) for m in run.similarity.model_a.values}
        weights = {k: v for k, v in weights.items() if k in shown}
    if not weights:
        return (
            None,
            None,
            "run.json lists no weights files (a run of pretrained or untrained models)",
        )
    rows, held, stale, notes, damaged = [], [], [], [], set()
    for folder in sorted({str(Path(w["path"]).parent) for w in weights.values()}):
        manifest = _zoo_csv(Path(folder, "manifest.csv"), _ZOO_MANIFEST_COLUMNS, notes, damaged)
        if manifest is None:
            continue
        for rec in manifest.to_dict("records"):
            used = weights.get(rec["id"])
            if used is None or Path(used["path"]).parent != Path(folder):
                continue
            if used.get("sha256") != rec["sha256"]:
                stale.append(rec["id"])
                continue
            rows.append(rec)
        per_set = _zoo_csv(Path(folder, "heldout.csv"), _ZOO_HELDOUT_COLUMNS, notes)
        if per_set is not None:
            held += per_set.to_dict("records")
    matched = {r["id"]: r["sha256"] for r in rows}
    if stale:
        notes.append(
            f"{len(stale)} model(s) were retrained after this run (manifest hash differs from the "
            f"file the run used) and are left out: {', '.join(stale)}"
        )
    missing = sorted(set(weights) - set(matched) - set(stale) - damaged)
    if missing:
        notes.append(f"no manifest row for {len(missing)} model(s): {', '.join(missing)}")
    if not rows:
        return None, None, "; ".join(notes) or "no manifest.csv beside the run's weights files"
    models = pd.DataFrame(
        {
            "model": [r["id"] for r in rows],
            "method": [r["method"] for r in rows],
            "objective": [r["objective"] for r in rows],
            "architecture": [r["architecture"] for r in rows],
            "seed": [int(r["seed"]) for r in rows],
            "epochs": [int(r["epochs"]) for r in rows],
            "accuracy": [float(r["probe_acc"]) for r in rows],
        }
    )
    in_run = set(run.info.get("datasets") or [])  # the sets this run compares the models on
    if run.selection:  # of those, the ones the chapter shows
        shown_sets = {str(d) for d in run.similarity.dataset.values}
        in_run = shown_sets & in_run if in_run else shown_sets
    held = [
        h
        for h in held
        if matched.get(h["id"]) == h["sha256"]
        and (h["dataset"] in in_run if in_run or run.selection else True)
    ]
    cells = None
    if held:
        from repsim.minizoo.evaluate import heldout_chance

        cells = heldout_chance(held)
        trained = set(models.loc[models["objective"] != "Random", "model"])
        cells["trained"] = cells["model"].isin(trained)
    return models, cells, "; ".join(notes)


#: The cells of :func:`zoo_accuracy_table`: a row per method, a column per architecture.
ZOO_ACCURACY_CELL = ["method", "architecture"]


def zoo_accuracy_table(models: pd.DataFrame) -> pd.DataFrame:
    """Held-out accuracy per method (rows) and architecture (columns): "mean (min-max)" over seeds."""
    order = list(dict.fromkeys(models["method"]))
    archs = list(dict.fromkeys(models["architecture"]))
    table = models.groupby(ZOO_ACCURACY_CELL)["accuracy"].apply(format_mean_range).unstack()
    return table.reindex(index=order, columns=archs).fillna("")


def one_model_per_zoo_cell(models: pd.DataFrame) -> bool:
    """Whether every cell of :func:`zoo_accuracy_table` holds one model (a value, not a mean over
    seeds with its range), so the caption says which."""
    if not set(ZOO_ACCURACY_CELL) <= set(models):
        return False
    return bool(models.groupby(ZOO_ACCURACY_CELL).size().max() == 1)
