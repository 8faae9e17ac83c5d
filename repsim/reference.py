"""The study's published numbers beside a run's: ``repsim compare RUN``.

``data/reference/study_numbers.csv`` holds every number of Ciernik et al. (ICML 2025, arXiv
2411.05561) on record: consistency of chosen dataset pairs per model group and measure, mean
similarity-behaviour correlations per dataset domain, and the study's design counts (its README
documents the columns). :func:`compare` computes the same quantity on a run wherever the run has the
ingredients (the measure, both datasets, probes) and sets the two side by side.

The rule. A row gets a verdict only when the run's value rests on the study's own models (for a
model group: exactly the study's models of that group, by id and objective), on all their pairs with
a finite similarity, and for a behaviour row on the study's datasets of its domain (by id or name,
``data/configs/paper_datasets.yaml``); then it is *within tolerance* when
``|run - study| <= tolerance`` (the tolerance is a column of the file: 0.05 for consistency, 0.10 for
the behaviour correlations, which come from an earlier 62-model run, 0 for counts) and otherwise
*outside tolerance*. A design count is compared exactly: it is *the study's count* or *not the
study's count*. A tolerance is a fixed rule, not a test: no interval is computed for the run's
value, so "within tolerance" is not evidence of agreement, and the summary says so. A value computed from other models (the mini-zoo, a subset of the study's models) is shown
with status ``other models`` or ``subset of the study's models``, one that lost model pairs to NaN
similarities with ``subset of the study's model pairs``, one from fewer or other datasets with
``subset of the study's datasets`` or ``other datasets``: comparable in kind, not expected to be
equal. Design counts always get one of their two statuses. Rows the run cannot compute are ``not in run``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from repsim.errors import InputError, RepsimError, StoreError
from repsim.names import MIN_PAIRS
from repsim.pathcheck import path_problem
from repsim.runfolder import RunFolder, check_schema

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[1] / "data"
#: The shipped table of the study's numbers.
REFERENCE_FILE = DATA / "reference" / "study_numbers.csv"
#: The study's 64 models with their metadata (ids and objectives define "the study's models").
STUDY_MODELS_FILE = DATA / "configs" / "paper_models.yaml"
#: The study's 23 datasets with names and domains (the behaviour rows need them).
STUDY_DATASETS_FILE = DATA / "configs" / "paper_datasets.yaml"
#: The model field the study's numbers per model group are grouped by (the ``models`` column of
#: its rows): it published them per objective only, so no other grouping has rows.
STUDY_GROUPING = "objective"
REFERENCE_COLUMNS = (
    "id", "quantity", "value", "tolerance", "measure", "method", "models", "n_models", "n_pairs",
    "dataset_a", "dataset_b", "dataset_a_name", "dataset_b_name", "domain", "n_datasets",
    "description", "source", "location",
)  # fmt: skip
#: Columns of :func:`compare`.
COMPARE_COLUMNS = (
    "id", "quantity", "description", "measure", "models", "dataset_a", "dataset_b", "domain",
    "study", "run", "difference", "tolerance", "status", "run_basis", "source", "location",
)  # fmt: skip
STATUSES = (
    "within tolerance", "outside tolerance", "subset of the study's models", "other models",
    "subset of the study's model pairs", "subset of the study's datasets", "other datasets",
    "not in run", "the study's count", "not the study's count",
)  # fmt: skip
#: The two statuses of a value set against the study's by its fixed tolerance (not a test).
VERDICTS = STATUSES[:2]
#: Statuses of values that are computed but have no verdict.
NO_VERDICT = STATUSES[2:-3]
#: The two statuses of a design count, which is compared exactly (no tolerance).
COUNT_VERDICTS = STATUSES[-2:]
#: Statuses of a number that differs from the study's: by more than its tolerance, or a count.
DIFFERS = (VERDICTS[1], COUNT_VERDICTS[1])
#: The design counts, and what each counts (a table's words for them).
COUNT_NAMES = {
    "n_models": "models",
    "n_model_pairs": "model pairs",
    "n_datasets": "datasets",
    "n_dataset_pairs": "dataset pairs",
}
COUNTS = tuple(COUNT_NAMES)


def load_study_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """The study's numbers (``data/reference/study_numbers.csv``), checked for its columns."""
    path = Path(path) if path is not None else REFERENCE_FILE
    if not path.exists():
        raise StoreError(f"{path} does not exist; the reference table ships in data/reference/")
    table = pd.read_csv(path, dtype={"dataset_a": str, "dataset_b": str}, keep_default_na=False)
    missing = [c for c in REFERENCE_COLUMNS if c not in table.columns]
    if missing:
        raise StoreError(f"{path} lacks columns {missing}; see data/reference/README.md")
    for col in ("value", "tolerance"):
        table[col] = pd.to_numeric(table[col], errors="raise")
    if table["id"].duplicated().any():
        raise StoreError(f"{path} repeats ids {table['id'][table['id'].duplicated()].tolist()}")
    return table


def study_models(path: str | Path | None = None) -> dict[str, str]:
    """The study's models: id -> objective, from ``data/configs/paper_models.yaml``."""
    path = Path(path) if path is not None else STUDY_MODELS_FILE
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return {
        str(m["id"]): str((m.get("metadata") or {}).get(STUDY_GROUPING, ""))
        for m in raw.get("models", [])
    }


def study_datasets(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """The study's datasets: id -> {name, domain}, from ``data/configs/paper_datasets.yaml``."""
    path = Path(path) if path is not None else STUDY_DATASETS_FILE
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return {
        str(d["id"]): {"name": str(d.get("name", d["id"])), "domain": str(d.get("domain", ""))}
        for d in raw.get("datasets", [])
    }


# ----------------------------------------------------------------------------------- run input
def _load_netcdf(path: Path) -> xr.Dataset:
    problem = path_problem(path, "file")  # a FIFO was "does not exist", and blocked when read
    if problem is not None:
        raise StoreError(
            f"{path} {problem}: give a run folder written by `repsim run` "
            "(it holds similarity.nc and, with probes, probes.nc) or a similarity file"
        )
    try:
        return xr.load_dataset(path)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is not a readable netCDF file ({exc})") from exc


@dataclass
class _RunData:
    similarity: xr.Dataset
    probes: xr.Dataset | None
    name: str
    n_classes: dict[str, int] = field(default_factory=dict)  # per dataset; empty: chance unknown
    #: "" for a whole run; else the part a chapter's parameters kept (repsim.chapter.Run.selection)
    selection: str = ""

    @property
    def where(self) -> str:
        """How a row's basis names what it was computed on: a chapter's part of a run lacks
        what the run may well have ("dataset X not in the run" was said of a selection)."""
        from repsim.sentences import PART

        return f"{PART} of the run" if self.selection else "the run"


def _open(run: Any, probes: xr.Dataset | None) -> _RunData:
    """A run folder, an object with ``.similarity`` (e.g. repsim.chapter.Run) or a similarity Dataset."""
    if isinstance(run, str | Path):
        path = Path(run)
        # a file inside a run folder, even one whose manifest and run.json are missing (a run
        # killed before it wrote them), is read through the folder's checks
        in_run = path.suffix == ".nc" and RunFolder(path.parent).is_run_folder()
        if path.suffix != ".nc" or in_run:
            # a run folder (or a file of one): read through its checks, never around them
            folder = RunFolder(path.parent if path.suffix == ".nc" else path)
            results = folder.open_results()
            similarity = results.similarity
            probes = probes if probes is not None else results.probes
        else:  # a similarity file on its own (exported, or made by hand): read as it is
            similarity = _load_netcdf(path)
            probe_file = path.parent / "probes.nc"
            if probes is None and probe_file.exists():
                probes = _load_netcdf(probe_file)
            try:
                check_schema(similarity, None, probes, where=path.parent)
            except RepsimError as exc:
                problem = str(exc).split(";")[0].split(": ", 1)[-1]
                raise StoreError(
                    f"{path} is not a similarity file written by repsim ({problem}); give a run "
                    "folder or its similarity.nc"
                ) from exc
            folder = RunFolder(path.parent)
        name = str(similarity.attrs.get("run") or folder.path.name)
        return _RunData(similarity, probes, name, folder.class_counts(similarity.dataset.values))
    if isinstance(run, xr.Dataset):
        return _RunData(run, probes, str(run.attrs.get("run", "run")))
    if hasattr(run, "similarity") and isinstance(run.similarity, xr.Dataset):
        probes = probes if probes is not None else getattr(run, "probes", None)
        name = str(getattr(run, "name", run.similarity.attrs.get("run", "run")))
        path = getattr(run, "path", None)
        classes = RunFolder(path).class_counts(run.similarity.dataset.values) if path else {}
        selection = str(getattr(run, "selection", "") or "")
        return _RunData(run.similarity, probes, name, classes, selection)
    raise InputError(
        f"compare() takes a run folder, a similarity Dataset or a loaded run, got {type(run).__name__}"
    )


# ------------------------------------------------------------------------------------ compare
def compare(
    run: str | Path | xr.Dataset | Any,
    *,
    probes: xr.Dataset | None = None,
    reference: pd.DataFrame | str | Path | None = None,
    models: dict[str, str] | None = None,
    datasets: dict[str, dict[str, str]] | None = None,
    n_classes: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Line up a run's values against the study's published numbers.

    Parameters
    ----------
    run : a run folder (``similarity.nc``, optional ``probes.nc``), a similarity Dataset, or an
        object with ``.similarity`` / ``.probes`` such as :func:`repsim.chapter.load_run`'s result.
    probes : probe results, when ``run`` is a Dataset (needed for the behaviour rows).
    reference : the study's numbers; default the shipped ``data/reference/study_numbers.csv``.
    models : the study's models (id -> objective); default from ``data/configs/paper_models.yaml``.
    datasets : the study's datasets (id -> {name, domain}); default from
        ``data/configs/paper_datasets.yaml``.
    n_classes : classes per dataset, so the behaviour rows leave near-chance probes out as the
        behaviour chapter does (:func:`repsim.behavior.probe_chance`); default: read from the run
        folder, and unknown for a Dataset (then no probe is left out, and the basis says so).
        Pass the probes as the run has them, not already filtered: the basis reports what
        this function left out.

    Returns
    -------
    pandas.DataFrame with :data:`COMPARE_COLUMNS`, one row per study number: ``study`` and
    ``run`` values, ``difference`` (run - study), ``status`` (one of :data:`STATUSES`, see the
    module docstring) and ``run_basis`` (models and datasets behind the run's value, or why it is
    missing). ``attrs`` carry ``run``, ``n_models``, ``n_study_models`` (the run's models that
    are the study's) and ``n_study_models_total``.
    """
    data = _open(run, probes)
    if n_classes is not None:
        data.n_classes = {str(k): int(v) for k, v in n_classes.items()}
    ref = reference if isinstance(reference, pd.DataFrame) else load_study_numbers(reference)
    study = study_models() if models is None else dict(models)
    study_ds = study_datasets() if datasets is None else dict(datasets)
    sim = data.similarity
    run_models = [str(m) for m in sim["model_a"].values]
    objectives = _coord(sim, f"{STUDY_GROUPING}_a", "model_a")
    rows = []
    behavior = _behavior(data)
    names = _study_names(study_ds, ref)
    for _, r in ref.iterrows():
        value, basis, used = _run_value(r, data, objectives, behavior, study_ds, names)
        status, basis = _status(r, value, basis, used, study, study_ds)
        rows.append(
            {
                **{k: r[k] for k in ("id", "quantity", "description", "measure", "models")},
                **{k: r[k] for k in ("dataset_a", "dataset_b", "domain")},
                "study": float(r["value"]),
                "run": value,
                "difference": value - float(r["value"]) if np.isfinite(value) else np.nan,
                "tolerance": float(r["tolerance"]),
                "status": status,
                "run_basis": basis,
                "source": r["source"],
                "location": r["location"],
            }
        )
    table = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    table.attrs.update(
        run=data.name,
        n_models=len(run_models),
        n_study_models=sum(m in study for m in run_models),
        n_study_models_total=len(study),
        earlier_runs=_earlier_runs(ref, len(study)),
        selection=data.selection,
    )
    return table


def _earlier_runs(ref: pd.DataFrame, n_study: int) -> dict[str, int]:
    """Published numbers over all models that count another number of models than the study's
    design, by that run's size ("62 models, 25 datasets" -> rows): the study's behaviour numbers
    come from an earlier run."""
    n = pd.to_numeric(ref["n_models"], errors="coerce")
    d = pd.to_numeric(ref["n_datasets"], errors="coerce")
    other = (ref["models"].astype(str) == "all") & n.notna() & (n != n_study)
    counts: dict[str, int] = {}
    for size, rows in ref[other].groupby(n[other].astype(int)):
        most = d[rows.index].max()
        label = f"{size} models" + (f", {int(most)} datasets" if np.isfinite(most) else "")
        counts[label] = len(rows)
    return counts


def _coord(sim: xr.Dataset, name: str, dim: str) -> list[str] | None:
    if name in sim.coords and sim.coords[name].dims == (dim,):
        return [str(v) for v in sim.coords[name].values]
    return None


def _study_names(study_ds: dict[str, dict[str, str]], ref: pd.DataFrame) -> dict[str, str]:
    """Every name a run may give a study dataset, mapped to the study's id of it:
    ``paper_datasets.yaml``'s name (the one repsim writes into a run of the study's config) and
    the reference file's ``dataset_*_name``. Consistency and behaviour rows find a run's datasets
    by the same names (each knew only one of them: a run naming ImageNet one way lost one kind)."""
    names = {str(v["name"]): k for k, v in study_ds.items() if v.get("name")}
    for side in ("dataset_a", "dataset_b"):
        for ident, name in zip(ref[side], ref[f"{side}_name"]):
            if isinstance(ident, str) and ident and isinstance(name, str) and name:
                names.setdefault(name, ident)
    return names


def _dataset_id(sim: xr.Dataset, ident: str, names: dict[str, str]) -> str | None:
    """The run's id of a study dataset: by id, else by the ``dataset_name`` coord (``names``:
    :func:`_study_names`)."""
    ids = [str(d) for d in sim["dataset"].values]
    if ident in ids:
        return ident
    for run_id, name in zip(ids, _coord(sim, "dataset_name", "dataset") or []):
        if names.get(name) == ident:
            return run_id
    return None


def _group(sim: xr.Dataset, objectives: list[str] | None, group: str) -> list[str] | None:
    models = [str(m) for m in sim["model_a"].values]
    if group in ("", "all"):
        return models
    if objectives is None:
        return None
    return [m for m, o in zip(models, objectives) if o == group]


@dataclass
class _Used:
    """What a run's value rests on; None where a row does not depend on it."""

    models: list[str]
    pairs: int | None = None  # model pairs with a finite similarity (consistency)
    datasets: list[str] | None = None  # the study's id where the dataset is the study's (behaviour)


def _as_study_datasets(
    sim: xr.Dataset, ids: list[str], study_ds: dict, names: dict[str, str]
) -> list[str]:
    """The study's id of each run dataset (by id, else by ``dataset_name``, ``names``:
    :func:`_study_names`); others keep theirs."""
    run_names = dict(
        zip(map(str, sim["dataset"].values), _coord(sim, "dataset_name", "dataset") or [])
    )
    return [d if d in study_ds else names.get(run_names.get(d, ""), d) for d in ids]


def _run_value(
    r: pd.Series,
    data: _RunData,
    objectives: list[str] | None,
    behavior: pd.DataFrame | None,
    study_ds: dict[str, dict[str, str]],
    names: dict[str, str],
) -> tuple[float, str, _Used | None]:
    """The run's value of one study number, what it rests on, and what it used (``names``: the
    names a run may give a study dataset, :func:`_study_names`)."""
    from repsim.consistency import consistency

    sim = data.similarity
    q = r["quantity"]
    if q == "consistency":
        if r["measure"] not in sim.data_vars:
            return np.nan, f"no measure {r['measure']} in {data.where}", None
        a, b = (_dataset_id(sim, r[k], names) for k in ("dataset_a", "dataset_b"))
        if a is None or b is None:
            missing = [r["dataset_a"] if a is None else None, r["dataset_b"] if b is None else None]
            return np.nan, f"dataset {', '.join(m for m in missing if m)} not in {data.where}", None
        group = _group(sim, objectives, r["models"])
        if group is None:
            return np.nan, f"the run has no {STUDY_GROUPING}_a coord", None
        if len(group) * (len(group) - 1) // 2 < MIN_PAIRS:
            return (
                np.nan,
                f"{len(group)} {r['models']} models in {data.where}: too few pairs",
                None,
            )
        # consistency() drops NaN pairs: count the pairs and models that are left
        vals = sim[r["measure"]].sel(dataset=[a, b], model_a=group, model_b=group).values
        i, j = np.triu_indices(len(group), k=1)
        finite = np.isfinite(vals[0][i, j]) & np.isfinite(vals[1][i, j])
        n_pairs = int(finite.sum())
        used = sorted({group[k] for k in np.concatenate([i[finite], j[finite]])})
        if n_pairs < MIN_PAIRS:
            return np.nan, f"{n_pairs} model pairs with a finite similarity: too few pairs", None
        c = consistency(
            sim[r["measure"]].sel(dataset=[a, b]), r["method"] or "pearson", group, group
        )
        return (
            float(c.values[0, 1]),
            f"{len(used)} models, {n_pairs} pairs",
            _Used(used, pairs=n_pairs),
        )
    if q == "behavior_r":
        if behavior is None:
            why = "no probes.nc in the run" if data.probes is None else "no cka_linear in the run"
            return np.nan, why, None
        rows = behavior if r["domain"] in ("", "all") else behavior[behavior.domain == r["domain"]]
        rows = rows.dropna(subset=["pearson_r"])
        if rows.empty:
            return (
                np.nan,
                f"no dataset of domain {r['domain']} with a defined r in {data.where}",
                None,
            )
        n_models = sim.sizes["model_a"]
        chance = (
            f"; {behavior.attrs['near_chance']} near-chance probes left out (behavior.probe_chance)"
            if behavior.attrs.get("chance_known")
            else "; class counts unknown, no probe left out as near chance"
        )
        return (
            float(rows["pearson_r"].mean()),
            f"{len(rows)} dataset{'s' if len(rows) > 1 else ''}, {n_models} models{chance}",
            _Used(
                [str(m) for m in sim["model_a"].values],
                datasets=_as_study_datasets(
                    sim, [str(d) for d in rows["dataset"]], study_ds, names
                ),
            ),
        )
    if q in COUNTS:
        return _count(sim, r, objectives), f"the design of {data.where}", None
    return np.nan, f"unknown quantity {q!r}", None


def _count(sim: xr.Dataset, r: pd.Series, objectives: list[str] | None) -> float:
    q = r["quantity"]
    if q in ("n_models", "n_model_pairs"):
        group = _group(sim, objectives, r["models"])
        if group is None:
            return np.nan
        n = len(group)
        return float(n if q == "n_models" else n * (n - 1) // 2)
    domains = _coord(sim, "domain", "dataset")
    D = sim.sizes["dataset"]
    if r["domain"] not in ("", "all"):
        if domains is None:
            return np.nan
        D = sum(d == r["domain"] for d in domains)
    return float(D if q == "n_datasets" else D * (D - 1) // 2)


def _behavior(data: _RunData) -> pd.DataFrame | None:
    if data.probes is None or "cka_linear" not in data.similarity.data_vars:
        return None
    from repsim.behavior import behavior_correlation, drop_near_chance, probe_chance

    chance = probe_chance(data.probes, data.n_classes)
    table = behavior_correlation(  # the comparison reads r only: no Mantel p's
        data.similarity["cka_linear"], drop_near_chance(data.probes, chance), n_resamples=0
    )
    table.attrs["near_chance"] = int(chance["near_chance"].sum())
    table.attrs["chance_known"] = bool(data.n_classes)
    return table


def within_tolerance(value: float, study: float, tolerance: float) -> bool:
    """The verdict rule: ``|value - study| <= tolerance``, with 1e-9 for the float error of a
    sum such as 0.70 + 0.05 (0.75 is then within, as written)."""
    return abs(value - study) <= tolerance + 1e-9


def format_within(value: float, study: float, tolerance: float, digits: int = 3) -> str:
    """``value`` shown beside its :func:`within_tolerance` verdict, by
    :func:`repsim.stats.format_on_side`: a value just outside never shows on the edge or inside
    (0.7504 against 0.70 +- 0.05 is shown as 0.7504, not 0.750)."""
    from repsim.stats import format_on_side

    return format_on_side(value, lambda v: within_tolerance(v, study, tolerance), digits)


def _status(
    r: pd.Series,
    value: float,
    basis: str,
    used: _Used | None,
    study: dict[str, str],
    study_ds: dict[str, dict[str, str]],
) -> tuple[str, str]:
    if not np.isfinite(value):
        return "not in run", basis
    verdict = (
        "within tolerance"
        if within_tolerance(value, float(r["value"]), float(r["tolerance"]))
        else "outside tolerance"
    )
    if r["quantity"] in COUNTS:  # exact, whatever the tolerance column says
        return COUNT_VERDICTS[value != float(r["value"])], basis
    group = r["models"] if r["models"] not in ("", "all") else None
    wanted = {m for m, o in study.items() if group is None or o == group}
    models = set(used.models if used else [])
    if models != wanted:
        if models and models <= wanted:
            return "subset of the study's models", (
                f"{basis}; {len(models)} of the study's {len(wanted)} models "
                f"({len(wanted) - len(models)} missing)"
            )
        n_in = len(models & set(study))
        return "other models", f"{basis}; {n_in} of them are the study's models"
    n_pairs = len(wanted) * (len(wanted) - 1) // 2
    if used is not None and used.pairs is not None and used.pairs < n_pairs:
        return "subset of the study's model pairs", (
            f"{basis}; {n_pairs - used.pairs} of the study's {n_pairs} pairs missing "
            "(NaN similarity)"
        )
    if used is None or used.datasets is None:
        return verdict, basis
    domain = r["domain"] if r["domain"] not in ("", "all") else None
    want = {d for d, v in study_ds.items() if domain is None or v["domain"] == domain}
    got = set(used.datasets)
    if got == want:
        return verdict, basis
    if got < want:
        missing = sorted(want - got)
        named = f" (missing {', '.join(missing)})" if len(missing) <= 3 else ""
        return "subset of the study's datasets", (
            f"{basis}; {len(got)} of the study's {len(want)} datasets{named}"
        )
    return "other datasets", f"{basis}; {len(got & want)} of them are the study's datasets"


# ------------------------------------------------------------------------------------- printing
def _earlier_note(table: pd.DataFrame) -> str:
    runs = table.attrs.get("earlier_runs") or {}
    return "".join(
        f"; {k} of its numbers are from its earlier run with {size}" for size, k in runs.items()
    )


def summary(table: pd.DataFrame) -> str:
    """A few sentences: which results were comparable, how they came out, and the run's design."""
    design = table["quantity"].isin(COUNTS)
    res, des = table[~design], table[design]

    def n(frame: pd.DataFrame, *status: str) -> int:
        return int(frame["status"].isin(status).sum())

    computed = len(res) - n(res, "not in run")
    # a chapter's part of a run (its models/datasets parameters) is named as such: what it
    # lacks, the run may have
    from repsim.sentences import PART, shown

    selection = table.attrs.get("selection") or ""
    name = f"Run '{table.attrs.get('run', 'run')}'"
    this, whose = "this run", "The run"
    if selection:
        name, this, whose = f"{name}, {shown(selection)},", "it", f"{PART[0].upper()}{PART[1:]}"
    lines = [
        f"{name} against the study (Ciernik et al. 2025, "
        f"{table.attrs.get('n_study_models_total', 64)} models{_earlier_note(table)}): "
        f"{computed} of {len(res)} published "
        f"results could be computed on {this}; {n(res, *VERDICTS)} are set against the study's "
        f"value ({n(res, VERDICTS[0])} within tolerance, {n(res, VERDICTS[1])} outside: "
        "|run - study| against the row's fixed tolerance, a rule of thumb and not a test, since "
        "no interval is computed for the run's value)."
    ]
    shown = n(res, *NO_VERDICT)
    n_study = table.attrs.get("n_study_models", 0)
    # the models explain a run without verdicts only when it lacks some of the study's
    lacks = n_study < table.attrs.get("n_study_models_total", 64)
    by_models = n(res, "subset of the study's models", "other models")
    if computed and n(res, *VERDICTS) == 0 and by_models == shown and lacks:
        lines.append(
            f"{whose} shares {n_study} of its {table.attrs.get('n_models', '?')} models with the "
            f"study, so none of its results is comparable with the study's values"
            + (f" ({shown} are shown for orientation only)." if shown else ".")
        )
    elif shown:
        why = ", ".join(f"{k} {status}" for status in NO_VERDICT if (k := n(res, status)))
        lines.append(
            f"{shown} results rest on other or fewer models, model pairs or datasets than the "
            f"study's and have no verdict ({why})."
        )
    if len(des):
        lines.append(
            f"Design: {n(des, COUNT_VERDICTS[0])} of {len(des)} counts (models, datasets, pairs) are the "
            "study's."
        )
    return "\n".join(lines)


def format_comparison(table: pd.DataFrame, all_rows: bool = False) -> str:
    """The text ``repsim compare`` prints: a summary and one line per computed number."""
    shown = table if all_rows else table[table["status"] != "not in run"]
    cols = ["id", "study", "run", "difference", "tolerance", "status", "run_basis"]
    text = summary(table)
    if not shown.empty:
        shown = shown[cols].copy()
        verdict = shown["status"].isin(VERDICTS) & shown["run"].notna()

        def three(v: float) -> str:
            return f"{round(v, 3) + 0.0:.3f}"

        # a value with a verdict on the side of the tolerance that the verdict gives it (0.7504
        # against 0.70 +- 0.05 printed as 0.750, on the edge, beside "outside tolerance"); the
        # difference (run - study) reads against the tolerance around 0
        for c, centre in (("run", shown["study"]), ("difference", [0.0] * len(shown))):
            shown[c] = [
                "-" if pd.isna(v) else format_within(v, m, tol) if keep else three(v)
                for v, m, tol, keep in zip(shown[c], centre, shown["tolerance"], verdict)
            ]
        body = shown.to_string(index=False, float_format=three, na_rep="-")
        text += "\n\n" + body
    missing = int((table["status"] == "not in run").sum())
    if missing and not all_rows:
        text += f"\n\n{missing} numbers are not in this run (repsim compare RUN --all lists them)."
    return text


__all__ = [
    "COMPARE_COLUMNS",
    "COUNT_VERDICTS",
    "DIFFERS",
    "REFERENCE_FILE",
    "STUDY_GROUPING",
    "compare",
    "format_comparison",
    "load_study_numbers",
    "study_datasets",
    "study_models",
    "summary",
]
