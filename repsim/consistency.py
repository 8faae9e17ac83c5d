"""Consistency of representational similarity across stimulus datasets.

For model sets Theta and Phi, the consistency of datasets A and B is the correlation (Pearson, or
Spearman as a robustness check) between the similarities of all unordered model pairs {f, g},
f in Theta, g in Phi, f != g, measured on A and on B (Ciernik et al. 2025). Each unordered pair counts
once. NaN similarities (a model whose measure was undefined) are dropped pairwise, with a
``RuntimeWarning`` naming the models and datasets: the consistency of datasets A and B is the
correlation over the pairs finite on both (the study's code returns NaN for that dataset pair
instead). Where the NaN are whole datasets with no defined pair (their consistency is NaN), the
warning is an :class:`~repsim.errors.UndefinedDatasetWarning`, a ``RuntimeWarning`` the book's
chapters ignore. A consistency over 2 model pairs (the study's minimum) is +-1 whatever the data:
:func:`consistency` computes it with a ``RuntimeWarning``; :func:`grouped_consistency` keeps such
group pairs for the study's rule, marked by their ``n_pairs`` (and consistency.nc's attributes),
and every table, test and figure leaves them out. To refuse NaN similarities (and a
:func:`consistency` of 2 pairs) altogether, turn the warnings into errors with
``warnings.simplefilter("error", RuntimeWarning)``: the call then raises before computing anything.
A similarity array must be symmetric in (model_a, model_b). Inputs and outputs
are xarray objects whose coords carry model and dataset metadata, so results can be plotted directly
(:func:`to_tidy`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from itertools import combinations, combinations_with_replacement
from numbers import Real

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import rankdata

from repsim.errors import (
    AsymmetricSimilarityError,
    InputError,
    StoreError,
    UndefinedDatasetWarning,
    check_count,
)
from repsim.measures._inputs import real_array
from repsim.names import (
    ALL,
    CATEGORY_FIELDS,
    CONTROLS,
    MIN_PAIRS,
    UNKNOWN,
    anchor_partner_label,
    group_pair_label,
    is_known,
    is_same_pair,
    pair_label,
    split_pair,
)

logger = logging.getLogger(__name__)

METHODS = ("pearson", "spearman")
#: The anchor rank-sum tests use an exact p when a group has at most this many values (scipy's
#: own rule for ``mannwhitneyu(method="auto")``), with ties too (:func:`exact_rank_sum_p`).
EXACT_RANK_SUM_MAX = 8
#: Most splits of the pooled values :func:`exact_rank_sum_p` enumerates (C(20, 8) = 125,970).
EXACT_RANK_SUM_SPLITS = 200_000
#: Transforms of similarity before correlating (the study's appendix on values near the upper bound).
TRANSFORMS = (None, "arccos", "tan")


def consistency(
    sim: xr.DataArray,
    method: str = "pearson",
    models_a: Sequence[str] | None = None,
    models_b: Sequence[str] | None = None,
    transform: str | None = None,
) -> xr.DataArray:
    """Dataset x dataset consistency of the model-pair similarity pattern.

    Parameters
    ----------
    sim : DataArray (dataset, model_a, model_b), symmetric in the model dims.
    method : ``"pearson"`` (the study) or ``"spearman"``.
    models_a, models_b : the model sets Theta and Phi (ids); None means all models.
    transform : None (the study's main analysis), ``"arccos"`` or ``"tan"``: applied to every
        similarity before correlating (see :func:`transform_similarity`).

    Returns
    -------
    DataArray (dataset_a, dataset_b) with unit diagonal (NaN for a dataset with fewer than
    :data:`MIN_PAIRS` finite model pairs), attrs ``method`` and ``n_pairs``; dataset coords
    such as ``domain`` are carried as ``domain_a`` / ``domain_b``.

    NaN similarities are dropped pairwise with a ``RuntimeWarning``: each dataset pair is correlated over
    the model pairs finite on both datasets (the study's code gives NaN), and is NaN where fewer than
    :data:`MIN_PAIRS` of them are left of ``n_pairs`` >= MIN_PAIRS. An asymmetric ``sim`` raises
    :class:`~repsim.errors.AsymmetricSimilarityError`; a non-numeric or complex one
    :class:`~repsim.errors.NonNumericInputError` / :class:`~repsim.errors.ComplexInputError`; one
    holding inf, or naming a model twice, :class:`~repsim.errors.InputError`. A single model id may
    be given as a string for ``models_a`` / ``models_b``.
    """
    _check(sim, method)
    mask = _pair_mask(sim, models_a, models_b)
    n_pairs = int(mask.sum())
    if n_pairs < 2:
        raise InputError(
            f"consistency needs at least 2 model pairs, got {n_pairs}; pass larger model sets"
        )
    if n_pairs < MIN_PAIRS:
        warnings.warn(
            f"consistency over {n_pairs} model pairs is +-1 whatever the similarities (a "
            f"correlation of {n_pairs} points); repsim's tables, tests and figures leave such "
            f"values out (at least {MIN_PAIRS} model pairs); pass larger model sets",
            RuntimeWarning,
            stacklevel=2,
        )
    return _consistency(transform_similarity(sim, transform), mask, method)


def grouped_consistency(
    sim: xr.DataArray,
    by: str | Mapping[str, str] = "objective",
    method: str = "pearson",
) -> xr.DataArray:
    """Consistency per pair of model categories (e.g. objective: Supervised | Self-Supervised).

    Categories come from the coord ``<by>_a`` on ``model_a`` (or ``<by>``), or from a mapping
    model id -> category. Models whose coord is unknown ('' or NaN) are left out with a
    ``RuntimeWarning``; they are not one category. Category pairs {c, c'} (c <= c', same-category
    pairs included) with fewer than 2 model pairs are skipped, the study's rule; those of exactly
    2 are kept for it, but their r is +-1 whatever the data, and every table, test and figure of
    repsim leaves them out (``min_pairs``, default :data:`MIN_PAIRS`). Returns a DataArray
    (group_pair, dataset_a, dataset_b) with coords ``group_by``, ``group_a``, ``group_b``,
    ``n_pairs`` on ``group_pair``.
    """
    _check(sim, method)
    label, cats = _categories(sim, by)
    models = np.asarray(sim["model_a"].values)
    parts = []
    for ca, cb in combinations_with_replacement(sorted(set(cats.values())), 2):
        theta = [m for m in models if cats.get(m) == ca]
        phi = [m for m in models if cats.get(m) == cb]
        mask = _pair_mask(sim, theta, phi)
        if mask.sum() < 2:
            logger.debug(
                "consistency by %s: skipping %s | %s (%d model pairs)", label, ca, cb, mask.sum()
            )
            continue
        parts.append(_labelled(_consistency(sim, mask, method), label, ca, cb, int(mask.sum())))
    if not parts:
        raise InputError(
            f"no {label} category pair has 2 or more model pairs; add models or group differently"
        )
    return xr.concat(parts, dim="group_pair", combine_attrs="drop_conflicts")


def anchor_consistency(
    sim: xr.DataArray,
    anchors: Sequence[str] | None = None,
    method: str = "pearson",
) -> xr.DataArray:
    """Consistency of each anchor model's similarities to all other models (Theta = {anchor}).

    Returns a DataArray (anchor, dataset_a, dataset_b); the anchor's metadata (coords ``<x>_a`` on
    ``model_a``) become coords ``<x>`` on ``anchor``.
    """
    _check(sim, method)
    models = [str(m) for m in sim["model_a"].values]
    anchors = models if anchors is None else [str(a) for a in _id_list(anchors)]
    _known(anchors, models, "anchors")
    parts = [_consistency(sim, _pair_mask(sim, [a], None), method) for a in anchors]
    out = xr.concat(parts, dim="anchor", combine_attrs="drop_conflicts")
    out = out.assign_coords(anchor=anchors)
    for name, coord in sim.coords.items():
        if coord.dims == ("model_a",) and name != "model_a":
            meta = coord.sel(model_a=anchors).values
            out = out.assign_coords({str(name).removesuffix("_a"): ("anchor", meta)})
    out.attrs["n_pairs"] = len(models) - 1
    return out


def transform_similarity(sim: xr.DataArray, transform: str | None = None) -> xr.DataArray:
    """Similarity values passed through the study's appendix transforms before any statistic.

    CKA values pile up near the upper bound 1, where a fixed change of the representation moves
    CKA less than in the middle of the range; the study's appendix checks whether its mean-versus-
    spread results survive stretching that end of the scale (here consistency can be computed on
    the transformed values too, which the study's code does not do). As in the study's
    code, the transform is numpy's function applied to the raw value:

    - ``"arccos"``: ``arccos(s)``, the angle whose cosine is the similarity (0 for s = 1); values
      are clipped to [-1, 1] first, since unbiased CKA can leave that range by rounding.
      Decreasing, so a Pearson correlation of two transformed vectors keeps its sign.
    - ``"tan"``: ``tan(s)`` with s read as radians, mapping [0, 1] to [0, tan 1 = 1.557].
    - ``None``: the values unchanged (the main analysis).

    Returns a DataArray like ``sim`` with attr ``transform`` (``"none"`` when None).
    """
    if transform not in TRANSFORMS:
        raise InputError(f"transform={transform!r} is unknown; use one of {TRANSFORMS}")
    if transform is None:
        return sim
    values = np.asarray(sim.values, dtype=float)
    out = np.arccos(np.clip(values, -1.0, 1.0)) if transform == "arccos" else np.tan(values)
    return sim.copy(data=out).assign_attrs(transform=transform)


def transform_comparison(
    sim: xr.DataArray,
    transforms: Sequence[str | None] = TRANSFORMS,
    method: str = "pearson",
    models_a: Sequence[str] | None = None,
    models_b: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Consistency of every distinct dataset pair under each transform, side by side.

    Columns: dataset_a, dataset_b, then one column per transform (``"none"``, ``"arccos"``,
    ``"tan"``) holding the consistency computed on the transformed similarities.
    """
    cols = {}
    for t in transforms:
        tidy = to_tidy(consistency(sim, method, models_a, models_b, transform=t))
        cols[t or "none"] = tidy.set_index(["dataset_a", "dataset_b"])["consistency"]
    return pd.DataFrame(cols).reset_index()


def anchor_partner_consistency(
    sim: xr.DataArray,
    anchors: Sequence[str],
    by: str | Mapping[str, str] = "objective",
    method: str = "pearson",
    min_pairs: int = 2,
) -> xr.DataArray:
    """The study's anchor design: consistency of one anchor's similarities to the models of one
    partner category, R({anchor}, Phi_c), for every anchor and partner category c.

    The partners of an anchor are the models of category c other than the anchor itself, so an
    anchor is compared with models of its own objective and of every other objective separately,
    which is what lets the study ask whether the partners' objective, for a fixed anchor, changes
    consistency. A (anchor, category) cell with fewer than ``min_pairs`` partners is skipped (the
    study's rule for category pairs, at least 2 model pairs; its anchor code sets no minimum); a
    ``min_pairs`` below 2 is refused, as one partner gives one model pair and no correlation.

    Returns a DataArray (anchor_partner, dataset_a, dataset_b) with coords ``anchor``,
    ``anchor_category``, ``partner`` (the partner category), ``n_pairs`` and ``group_by`` on
    ``anchor_partner``; :func:`to_tidy` turns it into a table and :func:`partner_rank_sum_tests`
    tests it.
    """
    min_pairs = check_count("min_pairs", min_pairs, 2)
    _check(sim, method)
    label, cats = _categories(sim, by)
    models = [str(m) for m in sim["model_a"].values]
    anchors = [str(a) for a in _id_list(anchors)]
    _known(anchors, models, "anchors")
    uncategorised = [a for a in anchors if a not in cats]
    if uncategorised:
        raise InputError(
            f"anchor(s) {', '.join(uncategorised)} have no {label}; give their models that "
            "metadata or choose other anchors"
        )
    parts = []
    for a in anchors:
        for c in sorted(set(cats.values())):
            partners = [m for m in models if cats.get(m) == c and m != a]
            if len(partners) < min_pairs:
                logger.debug("anchor %s: skipping partners %s (%d models)", a, c, len(partners))
                continue
            da = _consistency(sim, _pair_mask(sim, [a], partners), method)
            da = da.expand_dims(anchor_partner=[anchor_partner_label(a, c)])
            da.attrs.pop("n_pairs", None)
            parts.append(
                da.assign_coords(
                    anchor=("anchor_partner", [a]),
                    anchor_category=("anchor_partner", [cats[a]]),
                    partner=("anchor_partner", [c]),
                    n_pairs=("anchor_partner", [len(partners)]),
                    group_by=("anchor_partner", [label]),
                )
            )
    if not parts:
        raise InputError(
            f"no anchor has {min_pairs} or more partners in any {label} category; "
            "add models or choose other anchors"
        )
    return xr.concat(parts, dim="anchor_partner", combine_attrs="drop_conflicts")


def partner_rank_sum_tests(
    partner: xr.DataArray | pd.DataFrame, alpha: float = 0.01
) -> pd.DataFrame:
    """Per anchor, two-sided Wilcoxon rank-sum tests between its partner categories, as the study
    ran them: the samples are the consistency values over dataset pairs, a dataset pair missing
    (NaN) in either sample is dropped from both, and all tests of all anchors are Bonferroni-
    corrected together (p * number of tests, capped at 1) at family-wise ``alpha`` (0.01 in the
    study). The family is the tests of one measure; the study's pooled its two measures (linear
    CKA and RBF CKA 0.4), twice as many tests, so its correction was twice as strict.

    ``partner`` is the output of :func:`anchor_partner_consistency` or its :func:`to_tidy` table.
    Columns: anchor, anchor_category, partner_a, partner_b, n, median_a, median_b, statistic, p,
    p_bonferroni, p_threshold (alpha / number of tests), significant.
    """
    from scipy.stats import ranksums

    if not (isinstance(alpha, Real) and 0 < alpha <= 1):
        raise InputError(f"alpha must be a number above 0 and at most 1; got {alpha!r}")
    tidy = to_tidy(partner) if isinstance(partner, xr.DataArray) else partner
    need = {"anchor", "partner", "dataset_a", "dataset_b", "consistency"}
    if not need <= set(tidy.columns):
        raise InputError(
            f"partner_rank_sum_tests needs columns {sorted(need)}; pass the output of "
            "anchor_partner_consistency"
        )
    rows = []
    for anchor, g in tidy.groupby("anchor", sort=False):
        wide = g.pivot_table(
            index=["dataset_a", "dataset_b"], columns="partner", values="consistency", dropna=False
        )
        cat = str(g["anchor_category"].iloc[0]) if "anchor_category" in g else ""
        for pa, pb in combinations(sorted(wide.columns), 2):
            both = wide[[pa, pb]].dropna()
            a, b = both[pa].to_numpy(), both[pb].to_numpy()
            stat, p = ranksums(a, b) if len(both) >= 2 else (np.nan, np.nan)
            rows.append(
                {
                    "anchor": str(anchor),
                    "anchor_category": cat,
                    "partner_a": str(pa),
                    "partner_b": str(pb),
                    "n": len(both),
                    "median_a": float(np.median(a)) if len(a) else np.nan,
                    "median_b": float(np.median(b)) if len(b) else np.nan,
                    "statistic": float(stat),
                    "p": float(p),
                }
            )
    cols = [
        "anchor",
        "anchor_category",
        "partner_a",
        "partner_b",
        "n",
        "median_a",
        "median_b",
        "statistic",
        "p",
    ]
    out = pd.DataFrame(rows, columns=cols)
    m = max(int(out["p"].notna().sum()), 1)
    out["p_bonferroni"] = np.minimum(out["p"] * m, 1.0)
    out["p_threshold"] = alpha / m
    out["significant"] = out["p_bonferroni"] < alpha
    return out


def defined_groupings(
    sim_ds: xr.Dataset, keys: Sequence[str] = CATEGORY_FIELDS
) -> tuple[list[str], list[str]]:
    """The groupings of ``keys`` that consistency is defined for on these models, and why each
    other one is not: a grouping needs some category pair with 2 or more model pairs (one model
    per category has none). Keys the models do not record are neither."""
    first = sim_ds[next(iter(sim_ds.data_vars))]
    usable, skipped = [], []
    for key in keys:
        if f"{key}_a" not in sim_ds.coords:
            continue
        try:
            grouped_consistency(first, key)
        except InputError as exc:
            skipped.append(f"consistency by {key}: {exc}")
            continue
        usable.append(key)
    return usable, skipped


#: What consistency.nc says of its category pairs of 2 model pairs, for a reader of the file.
TWO_PAIR_NOTE = (
    f"a group pair with n_pairs < {MIN_PAIRS} is kept for the study's rule (at least 2 model "
    "pairs), but its r is +-1 whatever the data; repsim's tables, tests and figures leave it out"
)


def consistency_dataset(sim_ds: xr.Dataset, by: Sequence[str] = CATEGORY_FIELDS) -> xr.Dataset:
    """All consistency results of a run: the content of ``consistency.nc``.

    Variables: ``consistency`` and ``consistency_spearman`` (measure, group_pair, dataset_a,
    dataset_b), the first group pair being ``"all"``; ``anchor_consistency`` (measure, anchor,
    dataset_a, dataset_b), Pearson. A grouping whose metadata coord is missing is skipped with a warning.
    The two consistency variables say in their attributes (``min_pairs``, ``note``) that group pairs
    of 2 model pairs are +-1 whatever the data (:data:`TWO_PAIR_NOTE`).
    """
    measures = [str(v) for v in sim_ds.data_vars]
    if not measures:
        raise InputError(
            "the similarity dataset has no measure variables; run the similarity stage first"
        )
    usable = []
    for key in by:
        if f"{key}_a" in sim_ds.coords or key in sim_ds.coords:
            usable.append(key)
        else:
            logger.warning(
                "consistency: no coord %s_a on model_a; skipping grouping by %s", key, key
            )
    out: dict[str, list[xr.DataArray]] = {
        "consistency": [],
        "consistency_spearman": [],
        "anchor_consistency": [],
    }
    for name in measures:
        sim = sim_ds[name]
        for var, method in (("consistency", "pearson"), ("consistency_spearman", "spearman")):
            groups = [_labelled(consistency(sim, method), ALL, ALL, ALL, _n_all(sim))]
            groups += [grouped_consistency(sim, key, method) for key in usable]
            out[var].append(xr.concat(groups, dim="group_pair", combine_attrs="drop_conflicts"))
        out["anchor_consistency"].append(anchor_consistency(sim, method="pearson"))
    data = {
        var: xr.concat(
            parts, dim=pd.Index(measures, name="measure"), combine_attrs="drop_conflicts"
        )
        for var, parts in out.items()
    }
    for da in data.values():
        da.attrs.pop("method", None)
    ds = xr.Dataset(data)
    ds["consistency"].attrs["method"] = "pearson"
    ds["consistency_spearman"].attrs["method"] = "spearman"
    ds["anchor_consistency"].attrs["method"] = "pearson"
    for var in ("consistency", "consistency_spearman"):
        ds[var].attrs["min_pairs"] = MIN_PAIRS
        ds[var].attrs["note"] = TWO_PAIR_NOTE
    return ds


def to_tidy(da: xr.DataArray) -> pd.DataFrame:
    """One row per unordered dataset pair (dataset_a before dataset_b), all other dims and coords as columns."""
    if "dataset_a" not in da.dims or "dataset_b" not in da.dims:
        raise InputError(
            "to_tidy needs a DataArray with dims dataset_a and dataset_b (a consistency result)"
        )
    name = da.name or "consistency"
    order = {d: i for i, d in enumerate(da["dataset_a"].values)}
    df = da.rename(name).to_dataframe().reset_index()
    keep = df["dataset_a"].map(order) < df["dataset_b"].map(order)
    return df.loc[keep].reset_index(drop=True)


# ------------------------------------------------------------------- tidy tables for the book
#: Columns of :func:`similarity_pairs`.
PAIR_COLUMNS = [
    "dataset",
    "domain",
    "model_a",
    "model_b",
    "similarity",
    "cat_a",
    "cat_b",
    "category_pair",
]
#: Columns of :func:`consistency_table`.
TABLE_COLUMNS = [
    "group_pair",
    "group_by",
    "group_a",
    "group_b",
    "label",
    "dataset_a",
    "dataset_b",
    "consistency",
]


def category_labels(da: xr.Dataset | xr.DataArray, category: str = "objective") -> np.ndarray:
    """Each model's category (``model_a`` order), with missing metadata as ``"unknown"``."""
    coord = f"{category}_a"
    if coord not in da.coords:
        return np.array([UNKNOWN] * da.sizes["model_a"], dtype=object)
    return np.array([str(c) if is_known(c) else UNKNOWN for c in da[coord].values], dtype=object)


def similarity_pairs(da: xr.DataArray, category: str = "objective") -> pd.DataFrame:
    """Tidy table of all unordered model pairs: one row per (dataset, pair) with its similarity.

    The unit that consistency correlates. Columns (:data:`PAIR_COLUMNS`): dataset, domain,
    model_a, model_b (model_a before model_b in the array's order), similarity, cat_a, cat_b and
    category_pair (``"A | B"``, :func:`repsim.names.pair_label`).
    """
    models = [str(m) for m in da.model_a.values]
    iu, ju = np.triu_indices(len(models), k=1)
    cats = category_labels(da, category)
    rows = []
    for k, ds in enumerate(da.dataset.values):
        vals = da.sel(dataset=ds).transpose("model_a", "model_b").values[iu, ju]
        dom = str(da["domain"].values[k]) if "domain" in da.coords else ""
        rows.append(
            pd.DataFrame(
                {
                    "dataset": str(ds),
                    "domain": dom,
                    "model_a": np.array(models)[iu],
                    "model_b": np.array(models)[ju],
                    "similarity": vals,
                    "cat_a": cats[iu],
                    "cat_b": cats[ju],
                }
            )
        )
    out = pd.concat(rows, ignore_index=True)
    out["category_pair"] = [pair_label(a, b) for a, b in zip(out.cat_a, out.cat_b)]
    return out


def pair_vectors(da: xr.DataArray) -> pd.DataFrame:
    """Pairs x datasets table of pair similarities (index: ``"model_a~model_b"``): the vectors
    whose correlation across two datasets is their consistency."""
    t = similarity_pairs(da)
    t["pair"] = t.model_a + "~" + t.model_b
    return t.pivot(index="pair", columns="dataset", values="similarity")


def dataset_pair_table(
    da: xr.DataArray, dataset_a: str, dataset_b: str, category: str = "objective"
) -> pd.DataFrame:
    """Each model pair's similarity on two datasets side by side: the points whose correlation is
    the consistency of the two datasets. Columns: model_a, model_b, category_pair, then one
    column per dataset (named by its id). A dataset the array lacks, or the same one twice (a
    chapter's parameters), is an InputError naming it."""
    from repsim.chapter import select

    return (
        similarity_pairs(select(da, [dataset_a, dataset_b]), category)
        .pivot_table(
            index=["model_a", "model_b", "category_pair"], columns="dataset", values="similarity"
        )
        .reset_index()
    )


def within_category_consistency(
    da: xr.DataArray,
    dataset_pairs: Sequence[tuple[str, str]],
    category: str = "objective",
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Per dataset pair: consistency over all model pairs (``all``) and within each category with
    at least ``min_pairs`` model pairs (one column per category; unknown categories left out).

    Index: ``"A / B"`` (column name ``dataset pair``). Pearson r, as :func:`consistency`, over the
    model pairs finite on both datasets (:func:`repsim.stats.correlate`).
    """
    from repsim.stats import correlate

    min_pairs = check_count("min_pairs", min_pairs, 2)
    rows = []
    for a, b in dataset_pairs:
        t = dataset_pair_table(da, a, b, category)
        row = {"dataset pair": f"{a} / {b}", ALL: correlate(t[a], t[b])}
        for lab, g in t.groupby("category_pair"):
            if is_same_pair(lab) and len(g) >= min_pairs and UNKNOWN not in lab:
                row[split_pair(lab)[0]] = correlate(g[a], g[b])
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset pair")


def architecture_mix(
    da: xr.DataArray,
    factor: str = "objective",
    architecture: str = "architecture_class",
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Within each category of ``factor``, the consistency of its model pairs split by whether the
    two models share an architecture, beside the consistency of all its pairs, and the mean
    similarity of each kind of pair.

    In a zoo that crosses objective with architecture, the pairs within one objective mix two
    kinds: same-architecture pairs, alike on every dataset, and cross-architecture pairs, less
    alike on every dataset. A correlation over the mix then rises with that gap in level alone
    (Simpson's paradox), so a within-objective consistency above both of its parts says as much
    about the architecture blocks as about the objective. Consistency is the mean over dataset
    pairs of the Pearson r over the model pairs (undefined below ``min_pairs`` pairs). Index: the
    factor's categories (unknown left out); columns: ``all``, ``same architecture``, ``across
    architectures`` (consistency), ``similarity same``, ``similarity across`` (mean similarity
    over model pairs and datasets), ``pairs same``, ``pairs across``.
    """
    min_pairs = check_count("min_pairs", min_pairs, 2)
    labels = category_labels(da, factor)
    archs = category_labels(da, architecture)
    S = da.transpose("dataset", "model_a", "model_b").values.astype(float)
    ia, ib = np.triu_indices(S.shape[1], k=1)
    D = S.shape[0]

    def consistency(mask: np.ndarray) -> float:
        if mask.sum() < min_pairs or D < 2:
            return float("nan")
        rs = _corr_rows(S[:, ia[mask], ib[mask]], "pearson")[np.triu_indices(D, k=1)]
        return float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")

    rows = {}
    for cat in sorted({c for c in labels if c != UNKNOWN}):
        within = (labels[ia] == cat) & (labels[ib] == cat)
        known = (archs[ia] != UNKNOWN) & (archs[ib] != UNKNOWN)
        same = within & known & (archs[ia] == archs[ib])
        across = within & known & (archs[ia] != archs[ib])
        rows[cat] = {
            "all": consistency(within),
            "same architecture": consistency(same),
            "across architectures": consistency(across),
            "similarity same": float(np.nanmean(S[:, ia[same], ib[same]]))
            if same.any()
            else np.nan,
            "similarity across": float(np.nanmean(S[:, ia[across], ib[across]]))
            if across.any()
            else np.nan,
            "pairs same": int(same.sum()),
            "pairs across": int(across.sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(factor)


def consistency_matrices(
    cons: xr.Dataset,
    measure: str,
    group_pairs: Sequence[str],
    datasets: Sequence[str],
    variable: str = "consistency",
) -> xr.DataArray:
    """Dataset x dataset consistency of some group pairs of ``consistency.nc``, datasets in the
    given order: (group_pair, dataset_a, dataset_b)."""
    return cons[variable].sel(
        measure=measure,
        group_pair=list(group_pairs),
        dataset_a=list(datasets),
        dataset_b=list(datasets),
    )


def consistency_table(
    cons: xr.Dataset,
    measure: str,
    group_by: str | Sequence[str] = "objective",
    variable: str = "consistency",
    datasets: Sequence[str] | None = None,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Tidy consistency of ``consistency.nc`` over distinct dataset pairs, one row per
    (group_pair, dataset pair).

    Columns (:data:`TABLE_COLUMNS`): group_pair, group_by, group_a, group_b, label (``"A | B"``,
    or ``"all"``), dataset_a, dataset_b, consistency. ``group_by`` may be one grouping or several
    (``"all"`` is the baseline); ``datasets`` restricts the dataset pairs (None: all of the run).
    Category pairs with fewer than ``min_pairs`` model pairs (their r is +-1 or undefined) or an
    unknown category are left out.
    """
    min_pairs = check_count("min_pairs", min_pairs, 2)
    groups = [group_by] if isinstance(group_by, str) else list(group_by)
    da = cons[variable].sel(measure=measure)
    if datasets:
        da = da.sel(dataset_a=list(datasets), dataset_b=list(datasets))
    keep = np.isin(da["group_by"].values, groups)
    if "n_pairs" in da.coords:
        keep &= da["n_pairs"].values >= min_pairs
    known = [
        g == ALL or (is_known(a) and is_known(b))
        for g, a, b in zip(da["group_by"].values, da["group_a"].values, da["group_b"].values)
    ]
    keep &= np.array(known, dtype=bool)
    da = da.isel(group_pair=np.flatnonzero(keep))
    dsets = [str(d) for d in da.dataset_a.values]
    ia, ib = np.triu_indices(len(dsets), k=1)
    rows = []
    for k, gp in enumerate(da.group_pair.values):
        m = da.sel(group_pair=gp).transpose("dataset_a", "dataset_b").values
        ga, gb = str(da["group_a"].values[k]), str(da["group_b"].values[k])
        rows.append(
            pd.DataFrame(
                {
                    "group_pair": str(gp),
                    "group_by": str(da["group_by"].values[k]),
                    "group_a": ga,
                    "group_b": gb,
                    "label": ALL if ga in ("", ALL) else pair_label(ga, gb),
                    "dataset_a": np.array(dsets)[ia],
                    "dataset_b": np.array(dsets)[ib],
                    "consistency": m[ia, ib],
                }
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=TABLE_COLUMNS)


def consistency_pairs(
    cons: xr.Dataset,
    x: tuple[str, str],
    y: tuple[str, str],
    group_by: str | Sequence[str] = (ALL, "objective"),
    datasets: Sequence[str] | None = None,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """The same consistency values under two settings, one row per (category pair, dataset pair).

    ``x`` and ``y`` are ``(measure, variable)`` of consistency.nc, e.g.
    ``("cka_linear", "consistency")`` against ``("cka_rbf_0.4", "consistency")`` for local
    against global (the study's appendix, which also sets RSA with Spearman against linear CKA;
    ``mutual_knn_10`` works the same way), or against ``("cka_linear", "consistency_spearman")``
    for Pearson against Spearman. Columns: label, group_by, dataset_a, dataset_b, x, y. A
    category pair of every model pair (all models in one category) is left out beside ``all``:
    its values are the all-pairs values.
    """
    keys = ["group_pair", "group_by", "label", "dataset_a", "dataset_b"]
    tables = []
    for (measure, variable), name in ((x, "x"), (y, "y")):
        if variable not in cons or measure not in set(map(str, cons.measure.values)):
            raise InputError(
                f"consistency.nc has no {variable} for {measure}; measures: "
                f"{list(map(str, cons.measure.values))}"
            )
        t = consistency_table(cons, measure, group_by, variable, datasets, min_pairs)
        tables.append(t[keys + ["consistency"]].rename(columns={"consistency": name}))
    out = tables[0].merge(tables[1], on=keys)
    # a category pair holding every model pair (all models of one category: a part of a run) is
    # the all-pairs baseline itself; kept beside it, each value would be counted twice
    if "n_pairs" in cons[x[1]].coords and (out["group_by"] == ALL).any():
        n = pd.Series(cons[x[1]]["n_pairs"].values, index=map(str, cons.group_pair.values))
        n_all = n[(cons[x[1]]["group_by"].values == ALL)]
        if len(n_all):
            same = (out["group_by"] != ALL) & (out["group_pair"].map(n) == int(n_all.iloc[0]))
            out = out[~same].reset_index(drop=True)
    return out.drop(columns="group_pair")


def median_order(tidy: pd.DataFrame, by: str = "label", value: str = "consistency") -> list[str]:
    """Labels sorted by the median of ``value``, highest first (NaN-only labels last)."""
    med = tidy.groupby(by)[value].median().sort_values(ascending=False, na_position="last")
    return [str(x) for x in med.index]


def consistency_summary(tidy: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles and count of consistency per label of a :func:`consistency_table`,
    sorted by median (highest first). Columns: group_by, label, median, q25, q75, n."""
    g = tidy.dropna(subset=["consistency"]).groupby(["group_by", "label"])["consistency"]
    cols = ["group_by", "label", "median", "q25", "q75", "n"]
    if not len(g):
        return pd.DataFrame(columns=cols)
    out = g.agg(
        median="median", q25=lambda s: s.quantile(0.25), q75=lambda s: s.quantile(0.75), n="count"
    ).reset_index()
    return out.sort_values("median", ascending=False, ignore_index=True)


def category_pair_table(
    cons: xr.Dataset,
    measures: Sequence[str],
    category: str = "objective",
    datasets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The rows :func:`category_pair_medians` takes its medians of: :func:`consistency_table` of
    each measure of consistency.nc (those it lacks left out), stacked, with a ``measure`` column.
    A figure of the medians names the datasets of these rows (Chapter.drawn_caption), not the
    chapter's: a dataset with no defined consistency adds nothing to any median."""
    present = set(map(str, cons.measure.values))
    parts = [
        consistency_table(cons, m, category, datasets=datasets).assign(measure=m)
        for m in dict.fromkeys(measures)
        if m in present
    ]
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[*TABLE_COLUMNS, "measure"])
    )


def category_pair_medians(
    cons: xr.Dataset,
    measures: Sequence[str],
    category: str = "objective",
    datasets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Median consistency over dataset pairs of each category pair (rows, sorted by label) under
    each measure of consistency.nc (columns, sorted; measures it lacks are left out).

    Built from :func:`consistency_summary` of :func:`category_pair_table` per measure; a
    category pair missing under one measure is NaN there.
    """
    tidy = category_pair_table(cons, measures, category, datasets)
    parts = [
        consistency_summary(rows).assign(measure=m)
        for m, rows in tidy.groupby("measure", sort=False)
    ]
    if not parts:
        return pd.DataFrame(index=pd.Index([], name="label"))
    return pd.concat(parts, ignore_index=True).pivot(
        index="label", columns="measure", values="median"
    )


def grouping_spread(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per grouping: range and standard deviation of the category-pair medians.

    The study read a grouping whose category pairs differ a lot in median consistency as
    "driving" consistency more than one whose pairs sit near the all-pairs baseline. The range
    grows with the number of category pairs even by chance, so it describes; the test that
    compares factors is :func:`repsim.stats.controlled_tests`. Groupings with fewer than two
    category pairs (nothing to describe) are left out. ``range_trained`` and ``n_trained``: the
    same over the category pairs without a control (:data:`repsim.names.CONTROLS`): the
    untrained models' pairs widen the objective's range, and no other grouping has such a level.
    """
    cols = ["group_by", "label", "median"]
    s = consistency_summary(tidy) if len(tidy) else pd.DataFrame(columns=cols)
    s = s[s.group_by != ALL]
    trained = np.array([not set(split_pair(lab)) & set(CONTROLS) for lab in s["label"]], bool)
    g = s.groupby("group_by")["median"]
    out = g.agg(range=lambda v: v.max() - v.min(), std="std", n_pairs="count")
    t = s[trained].groupby("group_by")["median"]
    out["range_trained"] = t.agg(lambda v: v.max() - v.min())
    out["n_trained"] = t.count()
    out["n_trained"] = out["n_trained"].fillna(0).astype(int)
    out = out.reset_index()
    out = out[out.n_pairs >= 2]
    return out.sort_values("range", ascending=False, ignore_index=True)


def anchor_table(cons: xr.Dataset, measure: str, category: str = "objective") -> pd.DataFrame:
    """Tidy anchor consistency of ``consistency.nc`` over distinct dataset pairs.

    Columns: anchor, category (the anchor's, from the ``<category>`` coord on ``anchor``;
    ``"unknown"`` where missing), dataset_a, dataset_b, consistency.
    """
    if "anchor_consistency" not in cons:
        raise StoreError("consistency.nc has no 'anchor_consistency'; rerun the consistency stage")
    da = cons["anchor_consistency"].sel(measure=measure)
    dsets = [str(d) for d in da.dataset_a.values]
    ia, ib = np.triu_indices(len(dsets), k=1)
    cat_coord = next((c for c in (category, f"{category}_a") if c in da["anchor"].coords), None)
    rows = []
    for k, a in enumerate(da.anchor.values):
        m = da.sel(anchor=a).transpose("dataset_a", "dataset_b").values
        cat = da[cat_coord].values[k] if cat_coord else None
        rows.append(
            pd.DataFrame(
                {
                    "anchor": str(a),
                    "category": str(cat) if is_known(cat) else UNKNOWN,
                    "dataset_a": np.array(dsets)[ia],
                    "dataset_b": np.array(dsets)[ib],
                    "consistency": m[ia, ib],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def exact_rank_sum_p(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float]:
    """Exact two-sided p of the rank-sum test and the smallest p these values allow, over every
    split of the pooled values into groups of these sizes; tied values share their mid rank, so
    the p is exact with ties too (scipy's exact Mann-Whitney assumes none: one tie sent it back
    to the normal approximation, which gave p = 0.0495 where 0.1 is the least possible).
    """
    from scipy.stats import permutation_test, rankdata

    from repsim.stats import p_from_null

    ranks = rankdata(np.r_[xa, xb])
    ra, rb = ranks[: len(xa)], ranks[len(xa) :]
    res = permutation_test(
        (ra, rb),
        lambda a, b, axis: a.sum(axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=np.inf,
        alternative="two-sided",
    )
    return p_from_null(float(ra.sum()), res.null_distribution, exact=True, alternative="two-sided")


def anchor_rank_sum_tests(
    tidy: pd.DataFrame,
    by: str = "category",
    value: str = "consistency",
    alpha: float = 0.01,
    unit: str | None = "anchor",
) -> pd.DataFrame:
    """Two-sided Wilcoxon rank-sum tests between every two anchor categories, Bonferroni-corrected.

    ``tidy`` is an :func:`anchor_table`. With ``unit`` set, each unit (an anchor model)
    contributes its median, so the samples are independent; with ``unit=None`` every row is one
    observation. Anchors of unknown category are left out; the Bonferroni factor counts the tests
    that could run (both groups with two or more values). When a group has at most
    :data:`EXACT_RANK_SUM_MAX` values, p is exact (:func:`exact_rank_sum_p`, ties at their mid
    rank; without ties beyond :data:`EXACT_RANK_SUM_SPLITS` splits, scipy's exact Mann-Whitney U):
    the normal approximation gave p = 0.0495 for 3 against 3 anchors, whose exact smallest p is
    0.1. Otherwise it is the normal approximation, as the study's ``scipy.stats.ranksums``, with
    the tie correction where values tie (``mannwhitneyu(method="asymptotic",
    use_continuity=False)``, which equals ``ranksums`` without ties). ``p_min`` is the smallest p
    the groups allow: 2 / C(n_a + n_b, n_a) without ties, from the enumeration with them.
    Columns: group_a, group_b, n_a, n_b, median_a, median_b, statistic (the rank-sum z: its sign
    is the direction), p, p_min, p_bonferroni, p_threshold (alpha / tests run), significant.
    """
    from math import comb

    from scipy.stats import mannwhitneyu, ranksums

    data = tidy.dropna(subset=[value])
    data = data[data[by].map(is_known)]  # anchors of unknown kind are not one category
    if unit:
        data = data.groupby([unit, by], as_index=False)[value].median()
    groups = sorted(data[by].unique())
    tests = list(combinations(groups, 2))
    rows = []
    for a, b in tests:
        xa, xb = data.loc[data[by] == a, value].values, data.loc[data[by] == b, value].values
        if len(xa) < 2 or len(xb) < 2:
            stat, p, p_min = float("nan"), float("nan"), float("nan")
        else:
            stat, p = ranksums(xa, xb)
            ties = len(np.unique(np.r_[xa, xb])) < len(xa) + len(xb)
            splits = comb(len(xa) + len(xb), len(xa))
            p_min = min(1.0, 2 / splits)
            small = min(len(xa), len(xb)) <= EXACT_RANK_SUM_MAX
            if small and splits <= EXACT_RANK_SUM_SPLITS:
                p, p_min = exact_rank_sum_p(xa, xb)
            elif small and not ties:
                p = mannwhitneyu(xa, xb, alternative="two-sided", method="exact").pvalue
            elif ties:
                p = mannwhitneyu(
                    xa, xb, alternative="two-sided", method="asymptotic", use_continuity=False
                ).pvalue
        rows.append(
            {
                "group_a": a,
                "group_b": b,
                "n_a": len(xa),
                "n_b": len(xb),
                "median_a": float(np.median(xa)) if len(xa) else np.nan,
                "median_b": float(np.median(xb)) if len(xb) else np.nan,
                "statistic": float(stat),
                "p": float(p),
                "p_min": float(p_min),
            }
        )
    columns = ["group_a", "group_b", "n_a", "n_b", "median_a", "median_b", "statistic", "p"]
    out = pd.DataFrame(rows, columns=[*columns, "p_min"])
    m = max(int(out["p"].notna().sum()), 1)  # the tests that ran (as partner_rank_sum_tests)
    out["p_bonferroni"] = np.minimum(out["p"] * m, 1.0)
    out["p_threshold"] = alpha / m
    out["significant"] = out["p_bonferroni"] < alpha
    return out


def reachable_rank_sums(tests: pd.DataFrame) -> pd.DataFrame:
    """The rank-sum comparisons (:func:`anchor_rank_sum_tests`) that can come out significant:
    p defined and, where the table has ``p_min``, a smallest possible p below the Bonferroni
    threshold. The others are untestable with so few anchors, not tested and negative."""
    testable = tests.dropna(subset=["p"])
    if "p_min" in testable:
        testable = testable[~(testable["p_min"] >= testable["p_threshold"])]
    return testable


# ------------------------------------------------------------------------------------- internals


def _check(sim: xr.DataArray, method: str) -> None:
    if method not in METHODS:
        raise InputError(f"method={method!r} is unknown; use one of {METHODS}")
    if not isinstance(sim, xr.DataArray) or set(sim.dims) != {"dataset", "model_a", "model_b"}:
        if isinstance(sim, xr.Dataset):  # its dims print as a mapping
            got = f"a Dataset of {', '.join(map(str, sim.data_vars)) or 'no variables'}"
        elif isinstance(sim, xr.DataArray):
            got = f"dims {tuple(map(str, sim.dims))}"
        else:
            got = f"a {type(sim).__name__}"
        raise InputError(
            f"consistency needs a DataArray with dims (dataset, model_a, model_b), got {got}; "
            "select one measure of similarity.nc, e.g. ds['cka_linear']"
        )
    if list(sim["model_a"].values) != list(sim["model_b"].values):
        raise InputError("model_a and model_b must list the same models in the same order")
    ids = [str(m) for m in sim["model_a"].values]
    if len(set(ids)) != len(ids):  # a repeated model adds its pairs twice, and itself as a pair
        dup = sorted({m for m in ids if ids.count(m) > 1})
        raise InputError(
            f"model ids must be unique, but {dup[:10]} occur more than once on model_a; "
            "drop the repeats, e.g. sim.drop_duplicates('model_a').drop_duplicates('model_b')"
        )
    if sim.sizes["dataset"] < 1:
        raise InputError("the similarity array has no datasets")
    V = real_array(sim.transpose("dataset", "model_a", "model_b").values, "the similarity array")
    V = np.asarray(V, dtype=np.float64)
    if np.isinf(V).any():  # no measure gives inf; dropping it like NaN would hide a broken input
        d, i, j = (int(k[0]) for k in np.nonzero(np.isinf(V)))
        raise InputError(
            f"the similarity array holds {int(np.isinf(V).sum())} infinite values, e.g. "
            f"({sim['model_a'].values[i]}, {sim['model_b'].values[j]}) on dataset "
            f"'{sim['dataset'].values[d]}'; recompute them (NaN marks an undefined similarity)"
        )
    _check_symmetric(sim, V)
    _warn_nan(sim, V)


def _check_symmetric(sim: xr.DataArray, V: np.ndarray) -> None:
    """Every measure here is symmetric; an asymmetric array is a mix-up of model_a and model_b."""
    VT = V.swapaxes(1, 2)
    nan, nanT = np.isnan(V), np.isnan(VT)
    with np.errstate(invalid="ignore"):
        off = np.abs(V - VT) > 1e-9 * np.maximum(np.abs(V), np.abs(VT)) + 1e-12
    bad = (nan != nanT) | (off & ~nan & ~nanT)
    if bad.any():
        d, i, j = (int(k[0]) for k in np.nonzero(bad))
        models, datasets = sim["model_a"].values, sim["dataset"].values
        a, b = models[i], models[j]
        raise AsymmetricSimilarityError(
            f"the similarity array is not symmetric: on dataset '{datasets[d]}', ({a}, {b}) is "
            f"{float(V[d, i, j])!r} but ({b}, {a}) is {float(V[d, j, i])!r} ({int(bad.sum()) // 2 or 1} "
            "entries differ); pass a result of repsim.similarity_matrix, or symmetrise with "
            "0.5 * (S + S.transpose('dataset', 'model_b', 'model_a').values) if this is rounding"
        )


def _warn_nan(sim: xr.DataArray, V: np.ndarray) -> None:
    """The NaN rule: model pairs with a NaN similarity are dropped pairwise, never silently. An
    :class:`~repsim.errors.UndefinedDatasetWarning` when each dataset with a NaN has no defined
    pair at all (its consistency is NaN, nothing is computed over fewer pairs)."""
    upper = np.triu(np.ones(V.shape[1:], dtype=bool), k=1)
    nan = np.isnan(V) & upper
    if not nan.any():
        return
    n_nan = nan.sum(axis=(1, 2))
    whole = bool(((n_nan == 0) | (n_nan == upper.sum())).all())
    d, i, j = np.nonzero(nan)
    models, datasets = sim["model_a"].values, sim["dataset"].values
    names = sorted({str(models[k]) for k in np.concatenate([i, j])})
    warnings.warn(
        f"{sim.attrs.get('measure', sim.name) or 'similarity'}: {int(nan.sum())} model-pair "
        f"similarities are NaN (models involved {names[:10]}, datasets "
        f"{sorted({str(datasets[k]) for k in d})[:10]}); consistency drops them pairwise, so each "
        "dataset pair is correlated over the model pairs finite on both",
        UndefinedDatasetWarning if whole else RuntimeWarning,
        stacklevel=4,
    )


def _known(ids: Sequence[str], models: Sequence[str], what: str) -> None:
    unknown = [m for m in ids if m not in set(models)]
    if unknown:
        raise InputError(f"{what} contains unknown models {unknown}; known models: {list(models)}")


def _pair_mask(
    sim: xr.DataArray, theta: Sequence[str] | None, phi: Sequence[str] | None
) -> np.ndarray:
    """Upper-triangular (i < j) mask of the unordered pairs {f, g}, f in theta, g in phi, f != g."""
    models = [str(m) for m in sim["model_a"].values]
    sets = []
    for group, what in ((theta, "models_a"), (phi, "models_b")):
        if group is None:
            sets.append(np.ones(len(models), dtype=bool))
        else:
            group = [str(g) for g in _id_list(group)]
            _known(group, models, what)
            sets.append(np.isin(models, group))
    a, b = sets
    pairs = np.outer(a, b) | np.outer(b, a)
    return np.triu(pairs, k=1)


def _id_list(ids: str | Sequence[str]) -> Sequence[str]:
    """One model id given as a string is a set of one (not its characters)."""
    return [ids] if isinstance(ids, str) else ids


def _consistency(sim: xr.DataArray, mask: np.ndarray, method: str) -> xr.DataArray:
    values = sim.transpose("dataset", "model_a", "model_b").values
    V = values[:, mask]  # (dataset, pair)
    C = _corr_rows(V, method)
    defined = np.flatnonzero(np.isfinite(np.diagonal(C)))  # a constant vector has no correlation
    C[defined, defined] = 1.0
    datasets = sim["dataset"].values
    coords: dict[str, tuple[str, np.ndarray] | np.ndarray] = {
        "dataset_a": datasets,
        "dataset_b": datasets,
    }
    for name, coord in sim.coords.items():
        if coord.dims == ("dataset",) and name != "dataset":
            coords[f"{name}_a"] = ("dataset_a", coord.values)
            coords[f"{name}_b"] = ("dataset_b", coord.values)
    return xr.DataArray(
        C,
        dims=("dataset_a", "dataset_b"),
        coords=coords,
        name="consistency",
        attrs={"method": method, "n_pairs": int(mask.sum()), **_measure_attr(sim)},
    )


def _measure_attr(sim: xr.DataArray) -> dict[str, str]:
    m = sim.attrs.get("measure", sim.name)
    return {"measure": str(m)} if m is not None else {}


def _corr_rows(V: np.ndarray, method: str) -> np.ndarray:
    """Correlation between the rows of V, dropping NaN entries pairwise.

    Dropping never takes a correlation below :data:`MIN_PAIRS` points when V has that many (over 2
    points r is +-1): such a dataset pair is NaN, so ``n_pairs >= MIN_PAIRS`` holds for every value.
    """
    D = V.shape[0]
    finite = np.isfinite(V)
    C = np.full((D, D), np.nan)
    if finite.all():
        W = np.apply_along_axis(rankdata, 1, V) if method == "spearman" else V
        return _corr_full(W)
    need = max(2, min(V.shape[1], MIN_PAIRS))
    for i in range(D):
        for j in range(i, D):
            keep = finite[i] & finite[j]
            if keep.sum() >= need:
                a, b = V[i, keep], V[j, keep]
                if method == "spearman":
                    a, b = rankdata(a), rankdata(b)
                C[i, j] = C[j, i] = _corr_full(np.vstack([a, b]))[0, 1]
    return C


def _corr_full(W: np.ndarray) -> np.ndarray:
    """Pearson r between the rows of W; NaN for a constant row (its mean is often one ulp off
    the values, which left a centred row of +-1e-17 and r near 0 instead of undefined)."""
    Wc = W - W.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", Wc, Wc))
    norms[np.ptp(W, axis=1) == 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        C = (Wc @ Wc.T) / np.outer(norms, norms)
    C[~np.isfinite(C)] = np.nan
    return np.clip(C, -1.0, 1.0)


def _categories(sim: xr.DataArray, by: str | Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The category of each model, from a coord or a mapping; models whose category is missing
    ('', NaN, 'unknown': :func:`repsim.names.is_known`) are left out with a warning, since
    models of unknown kind are not one category."""
    models = [str(m) for m in sim["model_a"].values]
    if isinstance(by, Mapping):
        unmapped = [m for m in models if m not in by]
        if unmapped:
            raise InputError(
                f"the category mapping has no category for {len(unmapped)} model(s) of the "
                f"similarity array: {', '.join(unmapped[:5])}{' ...' if len(unmapped) > 5 else ''}; "
                "give each model id a category, or select the mapped models first "
                "(sim.sel(model_a=ids, model_b=ids))"
            )
        name, values, what = "group", {m: by[m] for m in models}, "no category in the mapping"
    else:
        coord = next(
            (c for c in (f"{by}_a", by) if c in sim.coords and sim.coords[c].dims == ("model_a",)),
            None,
        )
        if coord is None:
            raise InputError(
                f"no coord {by}_a on model_a to group by; add model metadata coords (see "
                "similarity.nc) or pass a mapping {model_id: category}"
            )
        name, values, what = by, dict(zip(models, sim.coords[coord].values)), f"no {by}"
    missing = [m for m, v in values.items() if not is_known(v)]
    if missing:
        warnings.warn(
            f"{len(missing)} model(s) have {what} and are left out of the grouping: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
            RuntimeWarning,
            stacklevel=3,
        )
    return name, {m: str(v) for m, v in values.items() if m not in missing}


def _labelled(da: xr.DataArray, by: str, ca: str, cb: str, n_pairs: int) -> xr.DataArray:
    da = da.expand_dims(group_pair=[group_pair_label(by, ca, cb)])
    da.attrs.pop("n_pairs", None)
    return da.assign_coords(
        group_by=("group_pair", [by]),
        group_a=("group_pair", [ca]),
        group_b=("group_pair", [cb]),
        n_pairs=("group_pair", [n_pairs]),
    )


def _n_all(sim: xr.DataArray) -> int:
    M = sim.sizes["model_a"]
    return M * (M - 1) // 2
