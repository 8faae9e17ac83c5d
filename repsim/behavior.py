"""The similarity-behaviour link: do similar models also perform alike on a dataset?

For each dataset, every unordered model pair {f, g} gives two numbers: their representational
similarity and their absolute probe-accuracy gap |acc_f - acc_g|. The study correlates the two over
all pairs (a negative r means similar models perform alike) and compares these correlations across
dataset domains. Inputs are the run's result arrays, so model and dataset labels (and the
dataset's ``domain`` coordinate) travel with the numbers; outputs are tidy DataFrames for plotting.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from repsim.errors import InputError
from repsim.sentences import shown

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["dataset", "domain", "model_a", "model_b", "similarity", "gap", "better_accuracy"]


def _accuracy_array(accuracy: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Accept a (model, dataset[, seed]) DataArray or a probes Dataset; average over seeds."""
    if isinstance(accuracy, xr.Dataset):
        if "accuracy" not in accuracy:
            raise InputError(
                f"the accuracy Dataset has no 'accuracy' variable (has {list(accuracy.data_vars)}); "
                "pass the DataArray of probe accuracies."
            )
        accuracy = accuracy["accuracy"]
    if "seed" in accuracy.dims:
        accuracy = accuracy.mean("seed")
    if set(accuracy.dims) != {"model", "dataset"}:
        raise InputError(
            f"accuracy must have dims (model, dataset[, seed]); got {accuracy.dims}. "
            "Rename or select dims first."
        )
    return accuracy


def _check_similarity(similarity: xr.DataArray) -> None:
    if not isinstance(similarity, xr.DataArray) or set(similarity.dims) != {
        "dataset",
        "model_a",
        "model_b",
    }:
        dims = getattr(similarity, "dims", type(similarity).__name__)
        raise InputError(
            f"similarity must be a DataArray with dims (dataset, model_a, model_b); got {dims}. "
            "Select one measure first, e.g. ds['cka_linear']."
        )


def _domains(datasets: list, *arrays: xr.DataArray) -> np.ndarray:
    """The ``domain`` coordinate of the datasets, from the first array that carries it."""
    for arr in arrays:
        if "domain" in arr.coords and arr.coords["domain"].dims == ("dataset",):
            return arr.coords["domain"].sel(dataset=datasets).values.astype(object)
    return np.full(len(datasets), None, dtype=object)


def pair_table(similarity: xr.DataArray, accuracy: xr.DataArray | xr.Dataset) -> pd.DataFrame:
    """One row per dataset and unordered model pair: similarity, accuracy gap, better accuracy.

    Only models and datasets present in both inputs are used (others are logged). The similarity
    of {f, g} is ``similarity[f, g]`` with f before g in the ``model_a`` order, or ``[g, f]`` where
    only the other triangle is filled. Pairs with a missing similarity or accuracy are dropped.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, domain, model_a, model_b, similarity, gap, better_accuracy``; ``gap`` is
        |acc_a - acc_b| and ``better_accuracy`` the higher of the two (for colouring scatter plots).
    """
    _check_similarity(similarity)
    acc = _accuracy_array(accuracy)
    b_models = set(similarity["model_b"].values.tolist())
    acc_models = set(acc["model"].values.tolist())
    models = [m for m in similarity["model_a"].values.tolist() if m in b_models and m in acc_models]
    acc_sets = set(acc["dataset"].values.tolist())
    datasets = [d for d in similarity["dataset"].values.tolist() if d in acc_sets]
    dropped = set(similarity["dataset"].values.tolist()) - set(datasets)
    if dropped:
        logger.warning("no accuracies for datasets %s; they are left out", sorted(dropped))
    if len(models) < 2 or not datasets:
        raise InputError(
            f"need at least 2 models and 1 dataset shared by similarity and accuracy; found "
            f"{len(models)} models and {len(datasets)} datasets. Check their model/dataset labels."
        )
    sim = similarity.sel(dataset=datasets, model_a=models, model_b=models)
    S = sim.transpose("dataset", "model_a", "model_b").values.astype(np.float64)
    S = np.where(np.isnan(S), S.transpose(0, 2, 1), S)
    A = acc.sel(dataset=datasets, model=models).transpose("dataset", "model").values
    A = A.astype(np.float64)
    i, j = np.triu_indices(len(models), k=1)
    n_pairs = i.size
    frame = pd.DataFrame(
        {
            "dataset": np.repeat(np.asarray(datasets, dtype=object), n_pairs),
            "domain": np.repeat(_domains(datasets, similarity, acc), n_pairs),
            "model_a": np.tile(np.asarray(models, dtype=object)[i], len(datasets)),
            "model_b": np.tile(np.asarray(models, dtype=object)[j], len(datasets)),
            "similarity": S[:, i, j].ravel(),
            "gap": np.abs(A[:, i] - A[:, j]).ravel(),
            "better_accuracy": np.maximum(A[:, i], A[:, j]).ravel(),
        },
        columns=PAIR_COLUMNS,
    )
    missing = frame["similarity"].isna() | frame["gap"].isna()
    if missing.any():
        # an accuracy is missing where its probe is left out (near chance, the chapter's rule,
        # which the tables say): the usual case, not an alarm
        logger.debug(
            "leaving out %d (model pair, dataset) rows without a similarity or an accuracy "
            "(probes left out near chance, or not run)",
            int(missing.sum()),
        )
    return frame[~missing].reset_index(drop=True)


def _pair_matrices(pairs: pd.DataFrame, datasets: list) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The models of a :func:`pair_table` and, per dataset, their similarity and accuracy-gap
    matrices (dataset, model, model), NaN where a pair has no row: the form in which whole models
    can be permuted."""
    models = list(dict.fromkeys([*pairs["model_a"], *pairs["model_b"]]))
    index = {m: i for i, m in enumerate(models)}
    S = np.full((len(datasets), len(models), len(models)), np.nan)
    G = S.copy()
    for k, dataset in enumerate(datasets):
        group = pairs[pairs["dataset"] == dataset]
        a = group["model_a"].map(index).to_numpy(dtype=np.intp)
        b = group["model_b"].map(index).to_numpy(dtype=np.intp)
        for M, col in ((S, "similarity"), (G, "gap")):
            M[k, a, b] = M[k, b, a] = group[col].to_numpy(dtype=float)
    return models, S, G


def _r_per_dataset(S: np.ndarray, G: np.ndarray, order: np.ndarray, method: str, min_pairs: int):
    """r over model pairs on each dataset, with the gap matrices' models taken in ``order``."""
    from repsim.stats import correlate

    iu, ju = np.triu_indices(S.shape[1], k=1)
    G = G[:, order][:, :, order]
    return np.array(
        [correlate(S[k][iu, ju], G[k][iu, ju], method, min_pairs) for k in range(len(S))]
    )


def _one_r(S: np.ndarray, G: np.ndarray, order: np.ndarray, method: str, min_pairs: int) -> float:
    return float(_r_per_dataset(S, G, order, method, min_pairs)[0])


#: Columns of :func:`behavior_correlation`.
CORRELATION_COLUMNS = [
    "dataset",
    "domain",
    "n_pairs",
    "pearson_r",
    "pearson_mantel_p",
    "spearman_r",
    "spearman_mantel_p",
    "mean_accuracy",
]


def behavior_correlation(
    similarity: xr.DataArray | pd.DataFrame,
    accuracy: xr.DataArray | xr.Dataset | None = None,
    *,
    min_pairs: int = 3,
    n_resamples: int = 999,
    seed: int = 0,
) -> pd.DataFrame:
    """Per dataset, the correlation between pair similarity and absolute accuracy gap.

    Pass ``(similarity, accuracy)`` as for :func:`pair_table`, or a table it returned. A dataset
    with fewer than ``min_pairs`` pairs, or constant similarity or gap, gets NaN (r is undefined);
    with arrays, every dataset the two share has a row, also one whose accuracies are all missing
    (probes left out as near chance: ``n_pairs`` 0). Each r's p is a Mantel test: the models of
    the gap matrix permuted (``n_resamples``, exact when few models;
    :func:`repsim.stats.unit_permutation_test`), since the pairs share models and a p over pairs
    as if independent comes out too small; ``n_resamples=0`` leaves the p's NaN (r only).

    Returns
    -------
    pandas.DataFrame
        One row per dataset (:data:`CORRELATION_COLUMNS`): ``dataset, domain, n_pairs, pearson_r,
        pearson_mantel_p, spearman_r, spearman_mantel_p, mean_accuracy`` (the mean over the models
        of their seed-mean accuracy; NaN when a table is passed). ``.set_index("dataset")
        .to_xarray()`` gives the xarray form.
    """
    from repsim.stats import keyed_rng, unit_permutation_test

    pairs, acc, datasets, domains = _pairs_of(similarity, accuracy)
    models, S, G = _pair_matrices(pairs, datasets)
    rows = []
    for k, dataset in enumerate(datasets):
        # this dataset's models: a model without accuracies here (left out as near chance) is
        # not permuted into the pairs of the others
        here = np.flatnonzero(np.isfinite(G[k]).any(axis=1))
        Sk, Gk = S[k][np.ix_(here, here)][None], G[k][np.ix_(here, here)][None]
        tests = [
            unit_permutation_test(
                partial(_one_r, Sk, Gk, method=method, min_pairs=min_pairs),
                here.size,
                n_resamples=n_resamples,
                rng=keyed_rng(seed, str(dataset), method),
            )
            for method in ("pearson", "spearman")
        ]
        mean = float(acc.sel(dataset=dataset).mean()) if acc is not None else np.nan
        rows.append(
            (
                dataset,
                domains.get(dataset),
                int((pairs["dataset"] == dataset).sum()),
                tests[0]["statistic"],
                tests[0]["p_value"],
                tests[1]["statistic"],
                tests[1]["p_value"],
                mean,
            )
        )
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def _pairs_of(similarity, accuracy):
    """The pair table, the seed-mean accuracies (None for a table), the datasets and domains."""
    if isinstance(similarity, pd.DataFrame):
        pairs = similarity
        datasets = list(dict.fromkeys(pairs["dataset"]))
        return pairs, None, datasets, dict(zip(pairs["dataset"], pairs["domain"]))
    pairs = pair_table(similarity, accuracy)
    acc = _accuracy_array(accuracy)
    models = set(similarity["model_a"].values.tolist())
    acc = acc.sel(model=[m for m in acc["model"].values.tolist() if m in models])
    shared = set(acc["dataset"].values.tolist())
    datasets = [d for d in similarity["dataset"].values.tolist() if d in shared]
    return pairs, acc, datasets, dict(zip(datasets, _domains(datasets, similarity, acc)))


def behavior_link_test(
    similarity: xr.DataArray | pd.DataFrame,
    accuracy: xr.DataArray | xr.Dataset | None = None,
    *,
    min_pairs: int = 3,
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, object]:
    """Do similar models perform alike beyond what random pairings of the same models give?

    The statistic is the mean over datasets of the Pearson r between pair similarity and
    accuracy gap (:func:`behavior_correlation`'s ``pearson_r``). The null permutes whole models:
    one ordering of the models' accuracies for every dataset, so each model keeps its accuracy
    profile and its similarities, and only which model has which is shuffled (a joint Mantel
    test; :func:`repsim.stats.unit_permutation_test`, two-sided). A count of datasets with a
    negative r (a sign test) would treat datasets as independent, but the same models meet on
    every dataset.

    Returns ``statistic``, ``p_value``, ``p_min``, ``n_permutations``, ``exact``, ``n_models``
    and ``n_datasets`` (those with a defined r).
    """
    from repsim.stats import keyed_rng, unit_permutation_test

    pairs, _, datasets, _ = _pairs_of(similarity, accuracy)
    models, S, G = _pair_matrices(pairs, datasets)

    def statistic(order: np.ndarray) -> float:
        r = _r_per_dataset(S, G, order, "pearson", min_pairs)
        return float(np.mean(r[np.isfinite(r)])) if np.isfinite(r).any() else float("nan")

    test = unit_permutation_test(
        statistic, len(models), n_resamples=n_resamples, rng=keyed_rng(seed, "behaviour link")
    )
    r = _r_per_dataset(S, G, np.arange(len(models)), "pearson", min_pairs)
    return {**test, "n_models": len(models), "n_datasets": int(np.isfinite(r).sum())}


def correlation_by_domain(correlations: pd.DataFrame) -> pd.DataFrame:
    """Mean and median of the per-dataset correlations within each dataset domain.

    Takes the output of :func:`behavior_correlation`. Datasets with an undefined r are left out of
    that domain's statistics; ``n_datasets`` counts the ones used for Pearson.
    """
    if correlations["domain"].isna().all():
        raise InputError(
            "no dataset has a domain; give the similarity or accuracy array a 'domain' coordinate "
            "on its dataset dim (e.g. sim.assign_coords(domain=('dataset', [...])))."
        )
    grouped = correlations.dropna(subset=["domain"]).groupby("domain", sort=True)
    out = grouped[["pearson_r", "spearman_r"]].agg(["mean", "median"])
    out.columns = [f"{measure.split('_')[0]}_{stat}" for measure, stat in out.columns]
    out.insert(0, "n_datasets", grouped["pearson_r"].count())
    return out.reset_index()


# ------------------------------------------------------------------------------ probes near chance
#: Absolute margin above chance (1 / n_classes) that a probe must clear to enter the behaviour link.
CHANCE_MARGIN = 0.05
CHANCE_COLUMNS = [
    "model",
    "dataset",
    "n_classes",
    "chance",
    "threshold",
    "accuracy",
    "ci_low",
    "ci_high",
    "n_seeds",
    "near_chance",
]


def probe_chance(
    accuracy: xr.DataArray | xr.Dataset,
    n_classes: Mapping[str, int],
    *,
    margin: float = CHANCE_MARGIN,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """Which probes cannot be told from chance: the rule that keeps them out of the behaviour link.

    A probe (model, dataset) is *near chance* when the lower end of the interval of its accuracy
    over probe seeds (a Student t interval of the mean at ``confidence_level``; with one seed, the
    accuracy itself) does not exceed ``1 / n_classes + margin``. An accuracy gap between two models
    that both guess is noise, so such probes say nothing about the similarity-behaviour link.

    Parameters
    ----------
    accuracy : probe accuracy (model, dataset[, seed]) or the probes Dataset.
    n_classes : number of classes per dataset id; datasets missing here are kept (chance unknown,
        ``near_chance`` False, ``chance`` NaN).

    Returns
    -------
    pandas.DataFrame with the columns of :data:`CHANCE_COLUMNS`, one row per (model, dataset).
    """
    if not 0 <= margin < 1 or not 0 < confidence_level < 1:
        raise InputError(
            f"margin must be in [0, 1) and confidence_level in (0, 1); got {margin}, "
            f"{confidence_level}"
        )
    if isinstance(accuracy, xr.Dataset):
        if "accuracy" not in accuracy:
            raise InputError("the probes Dataset has no 'accuracy' variable; pass probes.nc")
        accuracy = accuracy["accuracy"]
    if "seed" not in accuracy.dims:
        accuracy = accuracy.expand_dims(seed=[0])
    if set(accuracy.dims) != {"model", "dataset", "seed"}:
        raise InputError(f"accuracy must have dims (model, dataset[, seed]); got {accuracy.dims}")
    A = accuracy.transpose("model", "dataset", "seed").values.astype(np.float64)
    rows = []
    for i, model in enumerate(accuracy["model"].values.tolist()):
        for j, dataset in enumerate(accuracy["dataset"].values.tolist()):
            v = A[i, j][np.isfinite(A[i, j])]
            k = n_classes.get(str(dataset))
            chance = 1.0 / k if k else np.nan
            mean = float(v.mean()) if v.size else np.nan
            if v.size > 1:
                half = stats.t.ppf((1 + confidence_level) / 2, v.size - 1) * v.std(ddof=1)
                half /= np.sqrt(v.size)
            else:
                half = 0.0
            rows.append(
                {
                    "model": str(model),
                    "dataset": str(dataset),
                    "n_classes": int(k) if k else 0,
                    "chance": chance,
                    "threshold": chance + margin,
                    "accuracy": mean,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "n_seeds": int(v.size),
                    "near_chance": bool(np.isfinite(chance) and mean - half <= chance + margin),
                }
            )
    return pd.DataFrame(rows, columns=CHANCE_COLUMNS)


def drop_near_chance(probes: xr.Dataset, chance: pd.DataFrame) -> xr.Dataset:
    """``probes`` with accuracy (and balanced accuracy) set to NaN for near-chance probes, so
    :func:`pair_table` and :func:`behavior_correlation` leave their pairs out."""
    out = probes.copy()
    mask = xr.DataArray(
        np.zeros((probes.sizes["model"], probes.sizes["dataset"]), dtype=bool),
        coords={"model": probes["model"].values, "dataset": probes["dataset"].values},
        dims=("model", "dataset"),
    )
    for row in chance[chance["near_chance"]].itertuples():
        mask.loc[{"model": row.model, "dataset": row.dataset}] = True
    for var in ("accuracy", "balanced_accuracy"):
        if var in out:
            out[var] = out[var].where(~mask)
    return out


def near_chance_text(
    chance: pd.DataFrame, margin: float = CHANCE_MARGIN, selection: str = ""
) -> str:
    """The chance rule and which probes it leaves out, in words (of the chapter's part of the
    run, ``selection``, when it shows one)."""
    rule = (
        f"A probe is left out of the behaviour correlations when the lower end of the 95% "
        f"interval of its accuracy over probe seeds is at most chance (1 / number of classes) "
        f"plus {margin:.2f}."
    )
    unknown = sorted(set(chance.loc[chance["n_classes"] == 0, "dataset"]))
    if unknown:
        rule += f" The number of classes is unknown for {', '.join(unknown)}: kept."
    near = chance[chance["near_chance"]]
    if near.empty:
        return rule + f" No probe of {shown(selection, 'this run')} is that close to chance."
    parts = []
    for dataset, group in near.groupby("dataset", sort=False):
        n_all = int((chance["dataset"] == dataset).sum())
        parts.append(
            f"{dataset} ({len(group)} of {n_all} models; chance {group['chance'].iloc[0]:.2f})"
        )
    return rule + f" Left out: {'; '.join(parts)}."


__all__ = [
    "CHANCE_COLUMNS",
    "CHANCE_MARGIN",
    "CORRELATION_COLUMNS",
    "PAIR_COLUMNS",
    "behavior_correlation",
    "correlation_by_domain",
    "drop_near_chance",
    "near_chance_text",
    "pair_table",
    "probe_chance",
]
