"""Small analyses behind the book's figures, as functions on the result files of a run.

Each function takes xarray/pandas objects (or feature arrays) and returns a tidy DataFrame or an
ordering; the plotting lives in :mod:`repsim.plots` and the notebooks only glue the two together.
Figures follow Ciernik et al., "Objective drives the consistency of representational similarity
across datasets" (ICML 2025, arXiv 2411.05561).
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from repsim.consistency import transform_similarity
from repsim.errors import InputError, StoreError

log = logging.getLogger(__name__)

#: Domain categories of the study, in the order the book shows them.
DOMAINS = ("Natural (multi-domain)", "Natural (single-domain)", "Specialized", "Structured")
#: Model metadata fields that define category pairs.
CATEGORY_FIELDS = ("objective", "architecture_class", "data_class", "size_class")
PAIR_SEP = " | "
#: Fewest model pairs a consistency value needs: a Pearson r over 2 points is always +-1.
MIN_PAIRS = 3
UNKNOWN = "unknown"


def is_known(value) -> bool:
    """False for the empty, NaN or placeholder values that runs write for missing metadata."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return str(value).strip() not in ("", "nan", "None", "?", UNKNOWN)


def fmt(x: float, digits: int = 2) -> str:
    """A number for a sentence; 'undefined' for NaN."""
    return "undefined" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


# --------------------------------------------------------------------------------------- run files
@dataclass
class Run:
    """The result files of one run folder (absent optional files are None)."""

    path: Path
    similarity: xr.Dataset
    consistency: xr.Dataset | None = None
    probes: xr.Dataset | None = None
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name: attrs of similarity.nc, then run.json, then the folder name."""
        cfg = self.info.get("config", {}) if isinstance(self.info.get("config"), dict) else {}
        return str(self.similarity.attrs.get("run") or cfg.get("name") or self.path.name)

    @property
    def features_path(self) -> Path | None:
        """The feature store of the run, or None when the run kept no features."""
        from repsim.runfolder import RunFolder

        p = RunFolder(self.path).features
        return p if p.exists() else None

    @property
    def measures(self) -> list[str]:
        return list(self.similarity.data_vars)

    def caption(
        self,
        measure: str | None = None,
        datasets: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        extra: str = "",
    ) -> str:
        """A figure caption naming the run, the models, the datasets and the measure."""
        sim = self.similarity
        models = list(sim.model_a.values) if models is None else list(models)
        datasets = list(sim.dataset.values) if datasets is None else list(datasets)
        ds = ", ".join(map(str, datasets)) if len(datasets) <= 6 else f"{len(datasets)} datasets"
        parts = [f"Run '{self.name}'", f"{len(models)} models", f"datasets: {ds}"]
        if measure:
            parts.append(f"measure: {measure}")
        text = "; ".join(parts) + "."
        return f"{text} {extra}".strip()


def load_run(run_dir: str | Path) -> Run:
    """Open the result files of a run folder (similarity.nc required; the rest optional).

    Read through :class:`repsim.runfolder.RunFolder`, which checks each file's schema, that the
    files name the same models and datasets, and (when the run recorded a manifest) that every
    file is the one the last run wrote: a folder that mixes two runs is an error, not a figure.
    """
    from repsim.runfolder import RunFolder

    path = Path(run_dir)
    results = RunFolder(path).open_results()
    log.info("loaded run %s: %s", path, dict(results.similarity.sizes))
    return Run(
        path=path,
        similarity=results.similarity,
        info=results.info,
        consistency=results.consistency,
        probes=results.probes,
    )


def model_table(sim: xr.Dataset | xr.DataArray) -> pd.DataFrame:
    """Model metadata (coords with suffix ``_a`` on ``model_a``) as a DataFrame indexed by model."""
    cols = {
        name[:-2]: sim[name].values
        for name in sim.coords
        if name.endswith("_a") and sim[name].dims == ("model_a",)
    }
    return pd.DataFrame(cols, index=pd.Index(sim.model_a.values, name="model"))


def select(
    da: xr.DataArray,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> xr.DataArray:
    """Restrict a (dataset, model_a, model_b) array to some datasets and models (None: all)."""
    if datasets:
        da = da.sel(dataset=list(datasets))
    if models:
        da = da.sel(model_a=list(models), model_b=list(models))
    return da


def domain_order(sim: xr.Dataset | xr.DataArray) -> list[str]:
    """Dataset ids sorted by domain category (study order), then by id."""
    doms = sim["domain"].values if "domain" in sim.coords else [""] * sim.sizes["dataset"]
    rank = {d: i for i, d in enumerate(DOMAINS)}
    keyed = sorted(zip(sim.dataset.values, doms), key=lambda t: (rank.get(t[1], 99), str(t[0])))
    return [str(d) for d, _ in keyed]


# ------------------------------------------------------------------------------ matrices and pairs
def cluster_order(matrix: np.ndarray, method: str = "average") -> np.ndarray:
    """Leaf order of hierarchical clustering on the distance 1 - similarity (average linkage)."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InputError(f"expected a square similarity matrix, got shape {m.shape}")
    if m.shape[0] < 3:
        return np.arange(m.shape[0])
    dist = 1.0 - (m + m.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    return leaves_list(linkage(squareform(np.clip(dist, 0, None), checks=False), method=method))


def pair_label(a: str, b: str) -> str:
    """Order-free label of a category pair, as in consistency.nc (``"A | B"``, sorted)."""
    return PAIR_SEP.join(sorted((str(a), str(b))))


def category_labels(da: xr.Dataset | xr.DataArray, category: str = "objective") -> np.ndarray:
    """Each model's category (``model_a`` order), with missing metadata as ``"unknown"``."""
    coord = f"{category}_a"
    if coord not in da.coords:
        return np.array([UNKNOWN] * da.sizes["model_a"], dtype=object)
    return np.array([str(c) if is_known(c) else UNKNOWN for c in da[coord].values], dtype=object)


def pair_table(da: xr.DataArray, category: str = "objective") -> pd.DataFrame:
    """Tidy table of all unordered model pairs: one row per (dataset, pair) with its similarity.

    Columns: dataset, domain, model_a, model_b, similarity, cat_a, cat_b, category_pair.
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
    """Pairs x datasets table of pair similarities (index: 'model_a~model_b')."""
    t = pair_table(da)
    t["pair"] = t.model_a + "~" + t.model_b
    return t.pivot(index="pair", columns="dataset", values="similarity")


def mean_std_across_datasets(
    da: xr.DataArray, category: str = "objective", transform: str | None = None
) -> pd.DataFrame:
    """Per model pair: mean and standard deviation (ddof 1) of its similarity over datasets.

    ``transform`` (None, ``"arccos"``, ``"tan"``) is applied to each similarity first, as in the
    study's appendix on values near the upper bound (:func:`repsim.consistency.transform_similarity`).
    """
    t = pair_table(transform_similarity(da, transform), category)
    g = t.groupby(["model_a", "model_b", "category_pair"], sort=False)["similarity"]
    return g.agg(mean="mean", std="std").reset_index()


def mean_std_matrices(
    da: xr.DataArray, transform: str | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Model x model mean and standard deviation (ddof 1) of similarity across datasets.

    The study's Fig. 2 shows both beside the per-dataset matrices: the mean is the pattern a
    single "typical" dataset would give, the standard deviation where that pattern does not hold.
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
        sub = mean.values[np.ix_(idx, idx)]
        sub = np.where(np.isfinite(sub), sub, 0.0)
        out += list(models[idx[cluster_order(sub)]])
    return out


def measure_means(
    sim: xr.Dataset, measures: Sequence[str], category: str = "objective"
) -> pd.DataFrame:
    """Per model pair: its mean similarity across datasets under each measure (the study's
    Fig. 3b/c compares linear CKA with RBF CKA and with RSA this way).

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

    ``method`` is scikit-learn's t-SNE (precomputed metric, random init, perplexity 5 as in the
    study's code, lowered to n - 1 for small zoos; the exact gradient up to 1000 models, since the
    Barnes-Hut approximation only pays off for many thousands of points) or metric MDS.
    Both are random: ``seed`` is their ``random_state`` and belongs in the figure caption.
    Columns: model, x, y, category.
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
        emb = TSNE(
            n_components=2,
            perplexity=min(perplexity, n - 1.0),
            metric="precomputed",
            init="random",
            learning_rate="auto",
            method="exact" if n <= 1000 else "barnes_hut",  # exact is fast for model zoos
            random_state=seed,
        ).fit_transform(dist)
    else:
        emb = MDS(
            n_components=2, metric="precomputed", init="classical_mds", n_init=1, random_state=seed
        ).fit_transform(dist)
    return pd.DataFrame(
        {
            "model": [str(x) for x in da.model_a.values],
            "x": emb[:, 0],
            "y": emb[:, 1],
            "category": category_labels(da, category),
        }
    )


def correlate(x: np.ndarray, y: np.ndarray, method: str = "pearson") -> float:
    """Pearson or Spearman correlation, NaN when undefined (fewer than 3 points or constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    return float(fn(x, y)[0])


# ---------------------------------------------------------------------------------- consistency
def upper_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """All unordered pairs of distinct labels, in order."""
    return list(itertools.combinations([str(x) for x in labels], 2))


def consistency_values(
    cons: xr.Dataset,
    measure: str,
    group_by: str | Iterable[str] = "objective",
    variable: str = "consistency",
    datasets: Sequence[str] | None = None,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Tidy consistency over distinct dataset pairs, one row per (group_pair, dataset pair).

    Columns: group_pair, group_by, group_a, group_b, label (``"A | B"``), dataset_a, dataset_b,
    consistency. ``group_by`` may be one grouping or several (``"all"`` is the baseline);
    ``datasets`` restricts the dataset pairs (None: all of the run). Category pairs with fewer than
    ``min_pairs`` model pairs (their r is +-1 or undefined) or an unknown category are left out.
    """
    groups = [group_by] if isinstance(group_by, str) else list(group_by)
    da = cons[variable].sel(measure=measure)
    if datasets:
        da = da.sel(dataset_a=list(datasets), dataset_b=list(datasets))
    keep = np.isin(da["group_by"].values, groups)
    if "n_pairs" in da.coords:
        keep &= da["n_pairs"].values >= min_pairs
    known = [
        g == "all" or (is_known(a) and is_known(b))
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
                    "label": "all" if ga in ("", "all") else pair_label(ga, gb),
                    "dataset_a": np.array(dsets)[ia],
                    "dataset_b": np.array(dsets)[ib],
                    "consistency": m[ia, ib],
                }
            )
        )
    cols = [
        "group_pair",
        "group_by",
        "group_a",
        "group_b",
        "label",
        "dataset_a",
        "dataset_b",
        "consistency",
    ]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def consistency_pairs(
    cons: xr.Dataset,
    x: tuple[str, str],
    y: tuple[str, str],
    group_by: str | Iterable[str] = ("all", "objective"),
    datasets: Sequence[str] | None = None,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """The same consistency values under two settings, one row per (category pair, dataset pair).

    ``x`` and ``y`` are ``(measure, variable)`` of consistency.nc, e.g.
    ``("cka_linear", "consistency")`` against ``("mutual_knn_10", "consistency")`` for local
    against global (the study's appendix), or against ``("cka_linear", "consistency_spearman")``
    for Pearson against Spearman. Columns: label, group_by, dataset_a, dataset_b, x, y.
    """
    keys = ["group_pair", "group_by", "label", "dataset_a", "dataset_b"]
    tables = []
    for (measure, variable), name in ((x, "x"), (y, "y")):
        if variable not in cons or measure not in set(map(str, cons.measure.values)):
            raise InputError(
                f"consistency.nc has no {variable} for {measure}; measures: "
                f"{list(map(str, cons.measure.values))}"
            )
        t = consistency_values(cons, measure, group_by, variable, datasets, min_pairs)
        tables.append(t[keys + ["consistency"]].rename(columns={"consistency": name}))
    out = tables[0].merge(tables[1], on=keys)
    return out.drop(columns="group_pair")


def median_order(tidy: pd.DataFrame, by: str = "label", value: str = "consistency") -> list[str]:
    """Labels sorted by the median of ``value``, highest first (NaN-only labels last)."""
    med = tidy.groupby(by)[value].median().sort_values(ascending=False, na_position="last")
    return [str(x) for x in med.index]


def consistency_summary(tidy: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles and count of consistency per label, sorted by median (highest first)."""
    g = tidy.dropna(subset=["consistency"]).groupby(["group_by", "label"])["consistency"]
    cols = ["group_by", "label", "median", "q25", "q75", "n"]
    if not len(g):
        return pd.DataFrame(columns=cols)
    out = g.agg(
        median="median", q25=lambda s: s.quantile(0.25), q75=lambda s: s.quantile(0.75), n="count"
    ).reset_index()
    return out.sort_values("median", ascending=False, ignore_index=True)


def grouping_spread(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per grouping: range and standard deviation of the category-pair medians.

    A grouping whose category pairs differ a lot in median consistency "drives" consistency more
    than one whose pairs all sit near the all-pairs baseline (the study's central comparison).
    Groupings with fewer than two category pairs (nothing to compare) are left out.
    """
    s = consistency_summary(tidy) if len(tidy) else pd.DataFrame(columns=["group_by", "median"])
    s = s[s.group_by != "all"]
    g = s.groupby("group_by")["median"]
    out = g.agg(range=lambda v: v.max() - v.min(), std="std", n_pairs="count").reset_index()
    out = out[out.n_pairs >= 2]
    return out.sort_values("range", ascending=False, ignore_index=True)


def anchor_values(cons: xr.Dataset, measure: str, category: str = "objective") -> pd.DataFrame:
    """Tidy anchor consistency over distinct dataset pairs, with the anchor's category."""
    if "anchor_consistency" not in cons:
        raise StoreError("consistency.nc has no 'anchor_consistency'; rerun the consistency stage")
    da = cons["anchor_consistency"].sel(measure=measure)
    dsets = [str(d) for d in da.dataset_a.values]
    ia, ib = np.triu_indices(len(dsets), k=1)
    cat_coord = next((c for c in (category, f"{category}_a") if c in da["anchor"].coords), None)
    rows = []
    for k, a in enumerate(da.anchor.values):
        m = da.sel(anchor=a).transpose("dataset_a", "dataset_b").values
        rows.append(
            pd.DataFrame(
                {
                    "anchor": str(a),
                    "category": str(da[cat_coord].values[k]) if cat_coord else "?",
                    "dataset_a": np.array(dsets)[ia],
                    "dataset_b": np.array(dsets)[ib],
                    "consistency": m[ia, ib],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def attach_category(
    tidy: pd.DataFrame, models: pd.DataFrame, category: str, key: str = "anchor"
) -> pd.DataFrame:
    """Fill a tidy table's 'category' column from a model table (for anchors without coords)."""
    out = tidy.copy()
    if category in models:
        out["category"] = out[key].map(models[category]).fillna(out.get("category", "?"))
    return out


def rank_sum_tests(
    tidy: pd.DataFrame,
    by: str = "category",
    value: str = "consistency",
    alpha: float = 0.01,
    unit: str | None = "anchor",
) -> pd.DataFrame:
    """Two-sided Wilcoxon rank-sum tests between every two groups, Bonferroni-corrected.

    With ``unit`` set, each unit (e.g. an anchor model) contributes its median, so the samples are
    independent; with ``unit=None`` every row is one observation.
    Columns: group_a, group_b, n_a, n_b, median_a, median_b, statistic, p, p_bonferroni, significant.
    """
    data = tidy.dropna(subset=[value])
    if unit:
        data = data.groupby([unit, by], as_index=False)[value].median()
    groups = sorted(data[by].unique())
    tests = list(itertools.combinations(groups, 2))
    rows = []
    for a, b in tests:
        xa, xb = data.loc[data[by] == a, value].values, data.loc[data[by] == b, value].values
        if len(xa) < 2 or len(xb) < 2:
            stat, p = float("nan"), float("nan")
        else:
            stat, p = stats.ranksums(xa, xb)
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
            }
        )
    out = pd.DataFrame(
        rows, columns=["group_a", "group_b", "n_a", "n_b", "median_a", "median_b", "statistic", "p"]
    )
    out["p_bonferroni"] = np.minimum(out["p"] * max(len(tests), 1), 1.0)
    out["significant"] = out["p_bonferroni"] < alpha
    return out


# ------------------------------------------------------------------------------------ behaviour
def mean_accuracy(probes: xr.Dataset, variable: str = "accuracy") -> xr.DataArray:
    """Probe accuracy averaged over seeds: (model, dataset)."""
    acc = probes[variable]
    return acc.mean("seed") if "seed" in acc.dims else acc


def accuracy_gap_table(da: xr.DataArray, probes: xr.Dataset, dataset: str) -> pd.DataFrame:
    """Per model pair on one dataset: similarity, |accuracy gap| and the better model's accuracy."""
    acc = mean_accuracy(probes).sel(dataset=dataset)
    t = pair_table(da.sel(dataset=[dataset]))
    models = set(map(str, acc.model.values))
    t = t[t.model_a.isin(models) & t.model_b.isin(models)].copy()
    a = acc.sel(model=t.model_a.values).values
    b = acc.sel(model=t.model_b.values).values
    t["gap"] = np.abs(a - b)
    t["best_accuracy"] = np.maximum(a, b)
    return t[np.isfinite(t["gap"])].reset_index(drop=True)  # probes left out (NaN) drop their pairs


#: Why a probe option may differ from the study's protocol (the embedded config's reasons).
PROBE_DEVIATIONS = {
    "batch_size": "the embedded sets have 1-2k train images, and batches of 1024 would give about "
    "two optimiser steps per epoch, which underfits",
    "lrs": "with so few steps the study's learning rates (0.1 down to 0.0001) underfit, so larger "
    "ones are searched",
    "shared_search": "one hyperparameter search shared by the seeds keeps the default run "
    "within minutes on a CPU",
    "epochs": "fewer epochs keep a small run fast",
    "seeds": "fewer seeds keep a small run fast",
    "wds": "a shorter weight-decay grid keeps a small run fast",
}


def probe_protocol_text(run: Run) -> str:
    """The run's probe protocol and each way it departs from the study's, with the reason."""
    import json

    from repsim.probe import linear_probe

    if run.probes is None:
        return "This run has no probes."
    try:
        opts = json.loads(run.probes.attrs.get("probe", "{}"))
    except ValueError:
        opts = {}
    defaults = {
        k: v.default
        for k, v in inspect.signature(linear_probe).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    study = {"batch_size": 1024, "shared_search": False, "epochs": 20, "seeds": (0, 1, 2)}
    study["lrs"], study["wds"] = tuple(defaults["lrs"]), tuple(defaults["wds"])
    changed = []
    for key, value in study.items():
        got = opts.get(key)
        if got is None:
            continue
        same = tuple(got) == tuple(value) if isinstance(value, tuple) else got == value
        if not same:
            shown = got if not isinstance(got, list) or len(got) <= 6 else f"{len(got)} values"
            reason = PROBE_DEVIATIONS.get(key, "set in the run's config")
            changed.append(f"`{key}` {shown} (the study: {_short(value)}), because {reason}")
    text = (
        "Probe protocol: the study's (a linear layer on L2-normalised features, AdamW, cosine "
        "schedule, learning-rate and weight-decay search on a validation split, accuracy on the "
        "held-out test split)"
    )
    if not changed:
        return text + ", unchanged."
    return text + ", with these changes: " + "; ".join(changed) + "."


def _short(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 6:
        return f"{len(value)} values from {value[0]:g} to {value[-1]:g}"
    if isinstance(value, tuple):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def class_counts(run: Run) -> dict[str, int]:
    """Number of classes per dataset, read from the run's stimulus tables (datasets without a
    table, such as those of a synthetic run, are missing: their chance level is unknown)."""
    from repsim.runfolder import RunFolder

    folder, out = RunFolder(run.path), {}
    for ds in map(str, run.similarity.dataset.values):
        path = folder.stimuli(ds)
        if path.is_file():
            out[ds] = int(pd.read_csv(path, usecols=["label"])["label"].nunique())
    return out


def probes_above_chance(run: Run) -> tuple[xr.Dataset | None, pd.DataFrame | None]:
    """The run's probes with near-chance probes set to NaN (:func:`repsim.behavior.probe_chance`),
    and the chance table; (None, None) without probes."""
    from repsim.behavior import drop_near_chance, probe_chance

    if run.probes is None:
        return None, None
    chance = probe_chance(run.probes, class_counts(run))
    return drop_near_chance(run.probes, chance), chance


def gap_correlations(da: xr.DataArray, probes: xr.Dataset, method: str = "pearson") -> pd.DataFrame:
    """Per dataset: correlation of pair similarity with the absolute accuracy gap."""
    shared = [d for d in map(str, da.dataset.values) if d in set(map(str, probes.dataset.values))]
    rows = []
    for ds in shared:
        t = accuracy_gap_table(da, probes, ds)
        rows.append(
            {
                "dataset": ds,
                "domain": t.domain.iloc[0] if len(t) else "",
                "r": correlate(t.similarity, t.gap, method),
                "n_pairs": len(t),
                "mean_accuracy": float(mean_accuracy(probes).sel(dataset=ds).mean()),
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "domain", "r", "n_pairs", "mean_accuracy"])


# ------------------------------------------------------------------------------ measures vs each other
def measure_agreement(
    sim: xr.Dataset, measure_x: str, measure_y: str, method: str = "pearson"
) -> pd.DataFrame:
    """Per dataset: correlation over model pairs between two measures (e.g. RBF vs linear CKA)."""
    rows = []
    for ds in map(str, sim.dataset.values):
        x = pair_table(sim[measure_x].sel(dataset=[ds])).similarity.values
        y = pair_table(sim[measure_y].sel(dataset=[ds])).similarity.values
        rows.append(
            {
                "dataset": ds,
                "domain": str(sim["domain"].sel(dataset=ds).values)
                if "domain" in sim.coords
                else "",
                "r": correlate(x, y, method),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- features: resampling
def read_features(
    run: Run, dataset: str, models: Sequence[str], max_rows: int | None = None, seed: int = 0
) -> dict[str, np.ndarray] | None:
    """Features of some models on one dataset, rows aligned by stimulus id.

    Models the store lacks on that dataset are left out; None without a store or with fewer than
    two of the models stored. ``max_rows`` keeps a fixed random subset of the stimuli (the store
    holds every stimulus of the dataset, not only the similarity subset).
    """
    if run.features_path is None:
        return None
    from repsim.store import FeatureStore

    store = FeatureStore(run.features_path)
    models = [m for m in models if store.has(dataset, m)]
    if len(models) < 2:
        return None
    ids0, first = store.read(dataset, models[0])
    if max_rows is not None and len(ids0) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids0), size=max_rows, replace=False))
        ids0, first = np.asarray(ids0)[keep], np.asarray(first)[keep]
    out = {models[0]: np.asarray(first)}
    for m in models[1:]:
        _, f = store.read(dataset, m, ids=ids0)
        out[m] = np.asarray(f)
    return out


def _default_measure() -> Callable[[np.ndarray, np.ndarray], float]:
    from repsim.measures import cka

    return lambda x, y: float(cka(x, y, kernel="linear", unbiased=True))


def stability_vs_n(
    features: Mapping[str, np.ndarray],
    sizes: Sequence[int],
    repeats: int = 5,
    measure: Callable[[np.ndarray, np.ndarray], float] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Similarity of every model pair on random subsets of n stimuli, against all stimuli.

    Columns: n, repeat, pair, similarity, full (value on all stimuli), abs_error.
    """
    fn = measure or _default_measure()
    names = list(features)
    n_total = len(next(iter(features.values())))
    rng = np.random.default_rng(seed)
    full = {(a, b): fn(features[a], features[b]) for a, b in itertools.combinations(names, 2)}
    rows = []
    for n in sorted({int(s) for s in sizes if 4 <= int(s) <= n_total}):
        for r in range(repeats if n < n_total else 1):
            idx = rng.choice(n_total, size=n, replace=False)
            for (a, b), ref in full.items():
                s = fn(features[a][idx], features[b][idx])
                rows.append(
                    {
                        "n": n,
                        "repeat": r,
                        "pair": f"{a}~{b}",
                        "similarity": s,
                        "full": ref,
                        "abs_error": abs(s - ref),
                    }
                )
    return pd.DataFrame(rows)


def subsample_pairs(
    features: Mapping[str, np.ndarray],
    n_draws: int = 20,
    fraction: float = 0.5,
    measure: Callable[[np.ndarray, np.ndarray], float] | None = None,
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

    Columns: pair, model_a, model_b, estimate (all stimuli), mean, std (over subsets), se,
    q05, q95, m (stimuli per subset), n (all stimuli).
    """
    fn = measure or _default_measure()
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(list(features), 2))
    n_total = len(next(iter(features.values())))
    m = int(round(fraction * n_total))
    if not 0.0 < fraction < 1.0 or m < 4 or m >= n_total:
        raise InputError(
            f"fraction={fraction} of {n_total} stimuli gives subsets of {m}; "
            "choose 0 < fraction < 1 with at least 4 stimuli per subset"
        )
    rng = np.random.default_rng(seed)
    draws = [np.sort(rng.choice(n_total, size=m, replace=False)) for _ in range(n_draws)]
    rows = []
    for a, b in pairs:
        x, y = features[a], features[b]
        vals = np.array([fn(x[i], y[i]) for i in draws])
        std = vals.std(ddof=1)
        rows.append(
            {
                "pair": f"{a}~{b}",
                "model_a": a,
                "model_b": b,
                "estimate": fn(x, y),
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


def pick_models(
    models: pd.DataFrame, per_category: int = 2, category: str = "objective"
) -> list[str]:
    """A small, deterministic sample of models: the first ``per_category`` of each category."""
    return [str(m) for _, g in models.groupby(category, sort=True) for m in g.index[:per_category]]


# ----------------------------------------------------------------------------- chapter context
#: What a chapter may need from a run, and the sentence that says why it is skipped without it.
_NEEDS = {
    "consistency": "This run has no consistency.nc (its consistency stage did not run)",
    "anchors": "This run's consistency.nc has no anchor consistency",
    "probes": "This run has no probes.nc (probing was switched off in its config)",
    "features": "This run kept no features (features.zarr)",
}


@dataclass
class Chapter:
    """What every chapter notebook starts from: the run, its selection and the main measure."""

    run: Run
    sim: xr.Dataset
    measure: str
    category: str

    @property
    def da(self) -> xr.DataArray:
        return self.sim[self.measure]

    @property
    def order(self) -> list[str]:
        return domain_order(self.sim)

    @property
    def datasets(self) -> list[str]:
        return [str(d) for d in self.sim.dataset.values]

    @property
    def models(self) -> pd.DataFrame:
        return model_table(self.sim)

    @property
    def domains(self) -> dict[str, str]:
        doms = (
            self.sim["domain"].values if "domain" in self.sim.coords else [""] * len(self.datasets)
        )
        return {d: str(x) if is_known(x) else UNKNOWN for d, x in zip(self.datasets, doms)}

    @property
    def caption(self) -> str:
        return self.run.caption(self.measure, self.datasets, list(self.sim.model_a.values))

    def categories(self) -> pd.Series:
        """Each model's category under the chapter's grouping (``unknown`` where missing)."""
        return pd.Series(
            category_labels(self.sim, self.category),
            index=[str(m) for m in self.sim.model_a.values],
            name=self.category,
        )

    def need(
        self, *needs: str, min_datasets: int = 1, min_models: int = 2, min_domains: int = 1
    ) -> str | None:
        """The first reason this chapter's figure cannot be drawn on this run, or None.

        ``needs`` names optional run files (``consistency``, ``anchors``, ``probes``,
        ``features``); the counts are lower bounds on the run's datasets, models and domains.
        """
        run = self.run
        have = {
            "consistency": run.consistency is not None,
            "anchors": run.consistency is not None and "anchor_consistency" in run.consistency,
            "probes": run.probes is not None,
            "features": run.features_path is not None,
        }
        for n in needs:
            if n not in have:
                raise InputError(f"unknown need {n!r}; choose from {sorted(have)}")
            if not have[n]:
                return f"{_NEEDS[n]}, so this figure is skipped."
        n_d, n_m = len(self.datasets), self.sim.sizes["model_a"]
        n_dom = len(set(self.domains.values()))
        if n_d < min_datasets:
            return (
                f"This needs at least {min_datasets} datasets and the run has {n_d} "
                f"({', '.join(self.datasets)}), so this figure is skipped."
            )
        if n_m < min_models:
            return (
                f"This needs at least {min_models} models and the run has {n_m}, so this "
                "figure is skipped."
            )
        if n_dom < min_domains:
            return (
                f"This compares domain categories and every dataset of the run is "
                f"{next(iter(self.domains.values()))}, so this figure is skipped."
            )
        return None


def open_chapter(
    run_dir: str | Path,
    measure: str = "cka_linear",
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    category: str = "objective",
) -> Chapter:
    """Load a run and apply a chapter's parameters (an absent measure falls back to the first)."""
    run = load_run(run_dir)
    sim = select(run.similarity, datasets, models)
    if measure not in sim:
        log.info("measure %s not in the run; using %s", measure, run.measures[0])
        measure = run.measures[0]
    if f"{category}_a" not in sim.coords:
        known_fields = [c for c in CATEGORY_FIELDS if f"{c}_a" in sim.coords]
        category = known_fields[0] if known_fields else category
    return Chapter(run=run, sim=sim, measure=measure, category=category)


def count_table(
    models: pd.DataFrame, rows: str = "objective", cols: str = "architecture_class"
) -> pd.DataFrame:
    """Number of models per (rows, cols) category, missing metadata shown as ``unknown``."""
    t = pd.DataFrame(index=models.index)
    for c in (rows, cols):
        t[c] = [str(v) if is_known(v) else UNKNOWN for v in models[c]] if c in models else UNKNOWN
    return t.groupby([rows, cols]).size().unstack(fill_value=0)


def join_names(items: Sequence[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(x) for x in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def is_same_pair(label: str) -> bool:
    """True for a category pair of one category, ``"A | A"``."""
    parts = str(label).split(PAIR_SEP)
    return len(parts) == 2 and parts[0] == parts[1]


# ---------------------------------------------------------------------------- computed sentences
def controlled_tests(run: Run) -> tuple[pd.DataFrame | None, str]:
    """The run's ``controlled_tests.csv`` (:mod:`repsim.stats`), or None and why it is absent."""
    from repsim import stats
    from repsim.runfolder import RunFolder

    path = RunFolder(run.path).controlled_tests
    if path.is_file():
        return stats.load(path), ""
    for line in run.info.get("skipped_analyses", []) or []:
        if str(line).startswith(f"{path.name}:"):
            return None, str(line).split(":", 1)[1].strip()
    return None, f"the run folder has no {path.name} (runs of older versions did not write it)"


def controlled_answer(
    tests: pd.DataFrame | None, reason: str = "", measure: str | None = None
) -> str:
    """The answer of the controlled tests in words (separate objectives, then pooled), or why
    there is none; every sentence comes from :func:`repsim.stats.answer`."""
    from repsim import stats

    if tests is None:
        return (
            "Whether objective explains the consistency of pairwise similarity more than "
            f"architecture is not tested on this run: {reason}."
        )
    measures = list(dict.fromkeys(tests["measure"]))
    measure = measure if measure in measures else measures[0]
    pooled = stats.answer(tests, measure, "pooled")
    return (
        f"{stats.answer(tests, measure, 'separate')} "
        f"Secondary view, SimCLR and Barlow Twins pooled: {pooled[0].lower()}{pooled[1:]}"
    )


CONTROLLED_DISPLAY = {
    "factor": ["view", "factor", "estimate", "ci_low", "ci_high", "p_value", "z", "n_permutations"],
    "difference": ["view", "factor", "estimate", "ci_low", "ci_high", "p_value", "n_bootstrap"],
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


def controlled_rows(
    tests: pd.DataFrame, measure: str, analysis: str, view: str | None = "separate"
) -> pd.DataFrame:
    """The rows of one analysis of ``controlled_tests.csv`` for display (one measure; one view,
    or both when ``view`` is None), with the columns that matter for it."""
    measures = list(dict.fromkeys(tests["measure"]))
    t = tests[(tests["measure"] == (measure if measure in measures else measures[0]))]
    t = t[t["analysis"] == analysis]
    if view is not None:
        t = t[t["view"] == view]
    return t[CONTROLLED_DISPLAY[analysis]].reset_index(drop=True)


def study_overlap_text(run: Run) -> str:
    """Whether the run's models are the study's (Ciernik et al. 2025): its numbers are comparable
    with the study's only where they rest on the study's own models."""
    from repsim.reference import study_models

    study = study_models()
    models = [str(m) for m in run.similarity.model_a.values]
    shared = [m for m in models if m in study]
    if not shared:
        return (
            f"None of this run's {len(models)} models is one of the study's {len(study)}, so "
            "its numbers are not comparable with the study's: they answer the same questions on "
            "other models and other images."
        )
    if len(shared) == len(models):
        return f"All {len(models)} models of this run are among the study's {len(study)}."
    return (
        f"{len(shared)} of this run's {len(models)} models are among the study's {len(study)}; "
        "numbers over all of the run's models are not comparable with the study's."
    )


#: The label of the study's values in every table that sets them beside a run's.
STUDY_LABEL = "study (Ciernik et al. 2025, 64 models)"


def study_beside_run(comparison: pd.DataFrame, quantity: str | Sequence[str]) -> pd.DataFrame:
    """Rows of :func:`repsim.reference.compare` for display: the study's value (labelled as the
    study's), the run's where it has one, and the basis of the run's value."""
    quantities = [quantity] if isinstance(quantity, str) else list(quantity)
    t = comparison[comparison["quantity"].isin(quantities)]
    keep = {
        "measure": "measure",
        "models": "models",
        "dataset_a": "dataset A",
        "dataset_b": "dataset B",
        "domain": "domain",
        "study": STUDY_LABEL,
        "run": "this run",
        "status": "status",
        "run_basis": "basis of this run's value",
    }
    out = t[list(keep)].rename(columns=keep)
    return out.loc[:, [c for c in out.columns if out[c].astype(str).str.strip().ne("").any()]]


def stimuli_split_text(run: Run) -> str:
    """Which split the run's similarity stimuli come from (config ``stimuli.split``)."""
    cfg = run.info.get("config") if isinstance(run.info.get("config"), dict) else {}
    split = (cfg.get("stimuli") or {}).get("split") or "train"
    if not run.info:
        return "The run records no config, so the split of its similarity stimuli is unknown."
    if split == "test":
        return (
            "Similarity is measured on the held-out **test** split of each dataset: images no "
            "model of a zoo trained on these sets has seen."
        )
    return (
        "Similarity is measured on the **train** split of each dataset, as in the study; for "
        "models trained on these sets (the mini-zoo) those are images they were trained on."
    )


def overview_text(
    summary: pd.DataFrame,
    spread: pd.DataFrame | None,
    measure: str,
    category: str,
    tests: pd.DataFrame | None = None,
    reason: str = "",
) -> str:
    """The chapter-0 answer in words: consistency medians (described, not ranked) and the answer
    of the controlled tests (:func:`controlled_answer`) when the run has them.

    ``spread`` (:func:`grouping_spread`) is accepted for compatibility and not worded: a range of
    medians favours the grouping with more category pairs, so it supports no ranking.
    """
    base = summary.loc[summary.group_by == "all", "median"]
    if not len(base):
        return f"With {measure}, no consistency over dataset pairs could be computed on this run."
    parts = [f"With {measure}, the all-pairs median consistency is **{fmt(float(base.iloc[0]))}**."]
    same = summary[(summary.group_by == category) & summary.label.map(is_same_pair)]
    if len(same) >= 2:
        from repsim.stats import CONTROLS

        listed = ", ".join(
            f"{name}{' (untrained control)' if name in CONTROLS else ''} {fmt(r['median'])}"
            for name, r in zip(same.label.str.split(PAIR_SEP).str[0], same.to_dict("records"))
        )
        parts.append(
            f"Median consistency of model pairs that share the {category}: {listed} "
            "(medians over dataset pairs, described here, not tested against each other)."
        )
    elif len(same) == 1:
        row = same.iloc[0]
        parts.append(
            f"Only **{row.label.split(PAIR_SEP)[0]}** has at least {MIN_PAIRS} model pairs "
            f"within one {category} (median {fmt(row['median'])}), so categories cannot be "
            "ranked against each other."
        )
    else:
        parts.append(
            f"No {category} has enough models for {MIN_PAIRS} model pairs within it, so "
            "the within-category comparison of the study cannot be made on this run."
        )
    if tests is not None or reason:
        parts.append(controlled_answer(tests, reason, measure))
    return " ".join(parts)


def pearson_spearman_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Median consistency per category pair under Pearson (``x``) and Spearman (``y``)."""
    return (
        pairs.groupby("label")[["x", "y"]]
        .median()
        .rename(columns={"x": "median Pearson", "y": "median Spearman"})
    )


def pearson_spearman_text(pairs: pd.DataFrame) -> str:
    """How closely Spearman consistency follows Pearson consistency, worded descriptively: the
    values share datasets and models, so no p-value is attached and no ranking is claimed."""
    ok = pairs[["x", "y"]].dropna()
    if len(ok) < 3:
        return "Too few consistency values to compare Pearson with Spearman on this run."
    return (
        f"Across the {len(ok)} consistency values (dataset pairs x category pairs), Spearman "
        f"follows Pearson with r = **{fmt(correlate(ok.x, ok.y))}**. The values share datasets "
        "and models, so this r describes agreement and carries no p-value; the medians above "
        "are descriptive, and which category pair ranks first is not tested here (the test of "
        "the objective factor is in the controlled-experiment chapter)."
    )


def within_between(da: xr.DataArray, category: str = "objective") -> pd.DataFrame:
    """Per dataset: median similarity of same-category and of different-category model pairs
    (NaN where the run has no such pair); unknown categories count as neither."""
    t = pair_table(da, category)
    t = t[(t.cat_a != UNKNOWN) & (t.cat_b != UNKNOWN)]
    t["kind"] = np.where(t.cat_a == t.cat_b, "same category", "different category")
    out = t.groupby(["dataset", "kind"]).similarity.median().unstack()
    out = out.reindex(
        index=[str(d) for d in da.dataset.values], columns=["same category", "different category"]
    )
    out.index.name = "dataset"
    out.columns.name = None
    return out


def within_between_text(table: pd.DataFrame, category: str) -> str:
    """How often same-category pairs are more similar than different-category pairs."""
    ok = table.dropna()
    if not len(ok):
        return (
            f"The run has no model pairs of the same {category} and of different {category} "
            "to compare, so this comparison is skipped."
        )
    diff = ok["same category"] - ok["different category"]
    more, less = int((diff > 0).sum()), int((diff < 0).sum())
    gap = float(diff.median())
    head = (
        f"On **{more} of {len(ok)}** datasets, models of the same {category} are more similar "
        f"to each other (median) than models of different {category}; the median difference "
        f"is {fmt(gap)}."
    )
    if more + less == 0:
        return head + " No dataset separates the two, so there is nothing to test."
    # the unit is the dataset: an exact two-sided sign test over datasets (ties left out)
    p = float(stats.binomtest(more, more + less, 0.5).pvalue)
    from repsim.stats import format_p

    if p < 0.05:
        verdict = (
            f"Same-{category} pairs are the more similar ones on more datasets than chance "
            f"would give (exact sign test over datasets, {format_p(p)})."
        )
    else:
        verdict = (
            f"That is not more often than chance would give (exact sign test over datasets, "
            f"{format_p(p)})"
            + (
                "; with fewer than 6 datasets no sign test can reach p < 0.05."
                if more + less < 6
                else "."
            )
        )
    return f"{head} {verdict}"


def pick_dataset_pairs(da: xr.DataArray, k: int = 3) -> list[tuple[str, str]]:
    """Up to ``k`` dataset pairs that show the range of consistency: the most consistent, the
    least consistent and the median one (all-pairs Pearson r over model pairs)."""
    vec = pair_vectors(da)
    dsets = [str(d) for d in da.dataset.values]
    pairs = list(itertools.combinations(dsets, 2))
    if len(pairs) <= k:
        return pairs
    r = np.array([correlate(vec[a], vec[b]) for a, b in pairs])
    idx = np.argsort(np.where(np.isfinite(r), r, -np.inf))[::-1]
    picks = [idx[0], idx[len(idx) // 2], idx[-1]][:k]
    picks += [i for i in idx if i not in picks][: k - len(picks)]
    return [pairs[i] for i in dict.fromkeys(picks)]


def scatter_correlations(
    da: xr.DataArray,
    dataset_pairs: Sequence[tuple[str, str]],
    category: str = "objective",
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Per dataset pair: r over all model pairs and within each category with enough pairs."""
    rows = []
    for a, b in dataset_pairs:
        t = (
            pair_table(da.sel(dataset=[a, b]), category)
            .pivot_table(
                index=["model_a", "model_b", "category_pair"],
                columns="dataset",
                values="similarity",
            )
            .reset_index()
        )
        row = {"dataset pair": f"{a} / {b}", "all": correlate(t[a], t[b])}
        for lab, g in t.groupby("category_pair"):
            if is_same_pair(lab) and len(g) >= min_pairs and UNKNOWN not in lab:
                row[lab.split(PAIR_SEP)[0]] = correlate(g[a], g[b])
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset pair")


def scatter_text(table: pd.DataFrame, category: str) -> str:
    """Which same-category group keeps its pair ordering best over the chosen dataset pairs."""
    r_all = table["all"].mean()
    text = f"Over these dataset pairs, the mean consistency of all model pairs is **{fmt(r_all)}**."
    groups = table.drop(columns="all").mean().dropna()
    if len(groups) >= 2:
        return (
            f"{text} Within one {category}, **{groups.idxmax()}** models keep their similarity "
            f"ordering best ({fmt(groups.max())}) and **{groups.idxmin()}** models worst "
            f"({fmt(groups.min())})."
        )
    if len(groups) == 1:
        return (
            f"{text} Only **{groups.index[0]}** has {MIN_PAIRS} or more model pairs within one "
            f"{category} (r {fmt(groups.iloc[0])})."
        )
    return f"{text} No {category} has {MIN_PAIRS} model pairs within it, so no group r is shown."


def spread_over_domains(order: Sequence[str], domains: Mapping[str, str], k: int) -> list[str]:
    """Up to ``k`` datasets taken in turn from each domain (in ``order``), then in ``order``."""
    by: dict[str, list[str]] = {}
    for d in order:
        by.setdefault(domains.get(d, ""), []).append(d)
    out: list[str] = []
    while len(out) < min(k, len(order)):
        for lst in by.values():
            if lst and len(out) < k:
                out.append(lst.pop(0))
    return [d for d in order if d in out]


def domain_contrast(tidy: pd.DataFrame, domains: Mapping[str, str]) -> pd.DataFrame:
    """Median consistency of dataset pairs within one domain and across domains, per group pair."""
    t = tidy.copy()
    t["pairs of datasets"] = np.where(
        t.dataset_a.map(domains) == t.dataset_b.map(domains), "same domain", "different domains"
    )
    out = t.groupby(["group_pair", "pairs of datasets"]).consistency.median().unstack()
    return out.reindex(columns=["same domain", "different domains"])


def domain_contrast_text(table: pd.DataFrame) -> str:
    """Whether dataset pairs of one domain are more consistent than pairs across domains."""
    if "all" not in table.index or table.loc["all"].isna().any():
        return (
            "The run lacks dataset pairs of the same domain or of different domains, so "
            "within- and across-domain consistency cannot be compared."
        )
    same, diff = table.loc["all", "same domain"], table.loc["all", "different domains"]
    word = "more" if same > diff else "less"
    return (
        f"Over all model pairs, datasets of the same domain are {word} consistent with each "
        f"other (median {fmt(same)}) than datasets of different domains ({fmt(diff)})."
    )


def behaviour_text(corr: pd.DataFrame) -> str:
    """The similarity-behaviour link in words, per dataset and per domain (domains are listed,
    never ranked: no test compares them, and a domain with one dataset is one dataset)."""
    ok = corr.dropna(subset=["r"])
    if not len(ok):
        return (
            "No dataset has a defined correlation between similarity and accuracy gap (too "
            "few models, or equal accuracies), so there is nothing to summarise."
        )
    neg = int((ok.r < 0).sum())
    text = (
        f"Similarity and accuracy gap are negatively correlated (similar representations, "
        f"similar accuracy) on **{neg} of {len(ok)}** datasets; mean r = {fmt(ok.r.mean())}."
    )
    by = ok.groupby("domain").r.agg(["mean", "size"])
    if len(by) >= 2:
        listed = "; ".join(
            f"{dom} {fmt(row['mean'])} ({int(row['size'])} dataset{'s' if row['size'] > 1 else ''})"
            for dom, row in by.iterrows()
        )
        single = [str(d) for d, row in by.iterrows() if row["size"] < 2]
        why = "no test compares domains here"
        if single:
            why += (
                f", and {join_names(single)} rest{'s' if len(single) == 1 else ''} on one dataset"
            )
        text += f" Mean r per domain: {listed}. Domains are not ranked: {why}."
    return text


def rank_sum_text(tests: pd.DataFrame, alpha: float) -> str:
    """The anchor rank-sum tests in words (untestable comparisons said as such)."""
    testable = tests.dropna(subset=["p"])
    if not len(testable):
        return (
            "No two categories have at least 2 anchor models each, so no rank-sum test can be "
            "run on this run."
        )
    sig = testable[testable.significant]
    text = (
        f"{len(sig)} of {len(testable)} testable category comparisons are significant after "
        f"Bonferroni correction (alpha = {alpha})"
    )
    if len(sig):
        text += ": " + "; ".join(
            f"{r.group_a} vs {r.group_b} (p = {r.p_bonferroni:.2g}, medians "
            f"{fmt(r.median_a)} and {fmt(r.median_b)})"
            for r in sig.itertuples()
        )
    if len(testable) < len(tests):
        text += (
            f" ({len(tests) - len(testable)} comparisons have a category with fewer than 2 anchors)"
        )
    return text + "."


def partner_tests_text(tests: pd.DataFrame, alpha: float) -> str:
    """The study's anchor rank-sum tests in words: how many survive Bonferroni, and which."""
    testable = tests.dropna(subset=["p"])
    if not len(testable):
        return (
            "No anchor has two partner categories with enough dataset pairs to compare, so no "
            "rank-sum test can be run on this run."
        )
    thr = float(testable["p_threshold"].iloc[0])
    sig = testable[testable.significant.astype(bool)]
    text = (
        f"{len(sig)} of {len(testable)} comparisons of partner categories are significant after "
        f"Bonferroni correction (alpha = {alpha}, so p < {thr:.3g} for each test)"
    )
    if len(sig):
        text += ": " + "; ".join(
            f"anchor {r.anchor}: {r.partner_a} (median {fmt(r.median_a)}) vs {r.partner_b} "
            f"(median {fmt(r.median_b)}), p = {r.p:.3g}"
            for r in sig.itertuples()
        )
    return text + "."
