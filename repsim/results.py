"""Assembling the result files of a run from its per-stage parts, and the end-of-run summary."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from repsim.names import ALL, CATEGORY_FIELDS, MODEL_FIELDS
from repsim.plan import RunPlan, model_metadata


def _model_coords(plan: RunPlan, suffix: str, dim: str) -> dict[str, tuple[str, list]]:
    metas = [model_metadata(m) for m in plan.models]
    return {f"{key}{suffix}": (dim, [meta[key] for meta in metas]) for key in MODEL_FIELDS}


def _dataset_coords(plan: RunPlan, n_stimuli: list[int]) -> dict[str, tuple[str, list]]:
    return {
        "domain": ("dataset", [str(getattr(d, "domain", "")) for d in plan.datasets]),
        "dataset_name": ("dataset", [str(getattr(d, "name", None) or d.id) for d in plan.datasets]),
        "n_stimuli": ("dataset", n_stimuli),
    }


def similarity_part_problem(plan: RunPlan, part: xr.Dataset) -> str | None:
    """How a per-dataset similarity part fails to name exactly the plan's models (on both axes,
    in any order: the parts' keys do not depend on the config's order) and measures; None when
    it does. A part that lacks a model became a NaN model when it was reindexed to the plan's."""
    want_models, want_measures = [m.id for m in plan.models], list(plan.measures)
    problems = []
    for dim in ("model_a", "model_b"):
        have = [str(v) for v in part[dim].values] if dim in part.dims else []
        problems += _set_problems(dim, have, want_models)
    problems += _set_problems("measures", [str(v) for v in part.data_vars], want_measures)
    for name, var in part.data_vars.items():
        if tuple(var.dims) != ("model_a", "model_b"):
            problems.append(f"{name} has dims {tuple(var.dims)}, not (model_a, model_b)")
    return "; ".join(problems) or None


def _set_problems(what: str, have: list[str], want: list[str]) -> list[str]:
    """What ``have`` lacks of ``want``, holds beyond it, or holds twice (in ``what``)."""
    out = []
    missing = [v for v in want if v not in have]
    extra = [v for v in dict.fromkeys(have) if v not in want]
    twice = sorted({v for v in have if have.count(v) > 1})
    if missing:
        out.append(f"{what} lacks {', '.join(missing)}")
    if extra:
        out.append(f"{what} has {', '.join(extra)}, which the run does not")
    if twice:
        out.append(f"{what} names {', '.join(twice)} more than once")
    return out


def assemble_similarity(plan: RunPlan, parts: list[xr.Dataset], n_stimuli: list[int]) -> xr.Dataset:
    """Stack per-dataset similarity parts into (dataset, model_a, model_b) with metadata coords.

    Each part must name exactly the plan's models and measures (:func:`similarity_part_problem`):
    RunFolderError naming the dataset otherwise, never a NaN model. The pipeline recomputes
    such a part before it gets here (:func:`repsim.stages.run_similarity`).
    """
    from repsim.errors import RunFolderError

    if len(parts) != len(plan.datasets):
        raise RunFolderError(
            f"{len(parts)} similarity part(s) for the run's {len(plan.datasets)} datasets; rerun "
            "the config into the run folder to recompute them"
        )
    for ds, part in zip(plan.datasets, parts):
        problem = similarity_part_problem(plan, part)
        if problem is not None:
            raise RunFolderError(
                f"the similarity part of dataset {ds.id!r} does not fit the run ({problem}); "
                "rerun the config into the run folder, which recomputes that part"
            )
    model_ids = [m.id for m in plan.models]
    parts = [p.reindex(model_a=model_ids, model_b=model_ids) for p in parts]
    sim = xr.concat(parts, dim=pd.Index([d.id for d in plan.datasets], name="dataset"))
    sim = sim[list(plan.measures)].astype("float64")
    sim = sim.assign_coords(
        **_model_coords(plan, "_a", "model_a"),
        **_model_coords(plan, "_b", "model_b"),
        **_dataset_coords(plan, n_stimuli),
    )
    sim.attrs = {"run": plan.name, "config": plan.config_path, "measures": list(plan.measures)}
    return sim


def probe_seeds(plan: RunPlan) -> list[int]:
    """The probe seeds of the plan: its ``probe.seeds``, else :func:`repsim.linear_probe`'s."""
    from repsim.probe import probe_defaults

    seeds = plan.probe.get("seeds")
    return [int(s) for s in (probe_defaults()["seeds"] if seeds is None else seeds)]


PROBE_PART_KEYS = ("accuracy", "balanced_accuracy", "seeds", "lr", "wd")


def probe_part_problem(plan: RunPlan, part: Any) -> str | None:
    """How a probe part (the JSON of one model on one dataset) fails to hold what
    :func:`assemble_probes` reads: an object with :data:`PROBE_PART_KEYS`, the plan's seeds, an
    accuracy and balanced accuracy per seed (numbers in [0, 1], or NaN), and a learning rate and
    weight decay per seed or one for all. None when it holds them. A part without ``accuracy``
    was a KeyError traceback in the results stage."""
    if not isinstance(part, Mapping):
        return f"it is a JSON {type(part).__name__}, not an object"
    missing = [k for k in PROBE_PART_KEYS if k not in part]
    if missing:
        return f"it lacks {', '.join(missing)}"
    seeds = probe_seeds(plan)
    if part["seeds"] != seeds:
        return f"its seeds are {part['seeds']!r}, the run's {seeds}"
    problems = []
    for key in PROBE_PART_KEYS:
        if key == "seeds":
            continue
        values = part[key]
        lengths = (len(seeds),) if "accuracy" in key else (1, len(seeds))
        if not isinstance(values, list) or len(values) not in lengths:
            problems.append(f"{key} is not a list of {' or '.join(map(str, lengths))} numbers")
        elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            problems.append(f"{key} holds something other than numbers")
        elif "accuracy" in key and not all(0 <= v <= 1 or np.isnan(v) for v in values):
            problems.append(f"{key} holds a value outside [0, 1]")
    return "; ".join(problems) or None


def assemble_probes(plan: RunPlan, results: dict[tuple[str, str], dict[str, Any]]) -> xr.Dataset:
    """Probe results per (model, dataset) into accuracy (model, dataset, seed) and chosen lr/wd.

    Each part must hold what :func:`probe_part_problem` asks: RunFolderError naming the model
    and dataset otherwise (the pipeline recomputes such a part before it gets here)."""
    from repsim.errors import RunFolderError

    for (mid, did), res in results.items():
        problem = probe_part_problem(plan, {k: res.get(k) for k in PROBE_PART_KEYS if k in res})
        if problem is not None:
            raise RunFolderError(
                f"the probe part of model {mid!r} on dataset {did!r} cannot be used: {problem}; "
                "rerun the config into the run folder to compute it again"
            )
    model_ids = [m.id for m in plan.models]
    dataset_ids = [d.id for d in plan.datasets]
    seeds = probe_seeds(plan)
    shape = (len(model_ids), len(dataset_ids), len(seeds))
    acc, bacc = np.full(shape, np.nan), np.full(shape, np.nan)
    lr, wd = np.full(shape, np.nan), np.full(shape, np.nan)
    for (mid, did), res in results.items():
        i, j = model_ids.index(mid), dataset_ids.index(did)
        acc[i, j], bacc[i, j] = res["accuracy"], res["balanced_accuracy"]
        lr[i, j], wd[i, j] = res["lr"], res["wd"]
    metas = [model_metadata(m) for m in plan.models]
    ds = xr.Dataset(
        {
            "accuracy": (("model", "dataset", "seed"), acc),
            "balanced_accuracy": (("model", "dataset", "seed"), bacc),
            "lr": (("model", "dataset", "seed"), lr),
            "wd": (("model", "dataset", "seed"), wd),
        },
        coords={
            "model": model_ids,
            "dataset": dataset_ids,
            "seed": seeds,
            **{key: ("model", [m[key] for m in metas]) for key in MODEL_FIELDS},
            "domain": ("dataset", [str(getattr(d, "domain", "")) for d in plan.datasets]),
        },
        attrs={
            "run": plan.name,
            "config": plan.config_path,
            "probe": json.dumps({k: v for k, v in plan.probe.items()}, default=str),
        },
    )
    return ds


def run_consistency(sim: xr.Dataset) -> tuple[xr.Dataset | None, list[str]]:
    """``consistency.nc`` for a run, leaving out what is undefined for its models; and why.

    Consistency correlates model-pair similarities across datasets, so it needs at least 2 model
    pairs (3 models); a grouping (objective, architecture, ...) is kept only when some category
    pair of it has 2 or more model pairs. Runs that are too small for some of this (1 or 2 models,
    one model per category) still finish: the parts that are undefined are left out and listed.
    """
    from repsim.consistency import consistency_dataset, defined_groupings

    n_models = int(sim.sizes["model_a"])
    n_pairs = n_models * (n_models - 1) // 2
    if n_pairs < 2:
        return None, [
            f"consistency.nc: consistency needs at least 2 model pairs (3 models); this run has "
            f"{n_models} model(s), {n_pairs} pair(s)"
        ]
    usable, skipped = defined_groupings(sim, CATEGORY_FIELDS)
    return consistency_dataset(sim, by=tuple(usable)), skipped


def format_timings(timings: dict[str, float], images_per_s: float | None) -> str:
    """One line of per-stage seconds (summed over a stage's tasks) and the extraction rate."""
    parts = [f"{stage} {seconds:.1f} s" for stage, seconds in timings.items()]
    rate = f"; extraction {images_per_s:.0f} images/s" if images_per_s else ""
    return "Time per stage: " + ", ".join(parts) + rate


def summary_table(
    sim: xr.Dataset,
    consistency: xr.Dataset | None,
    probes: xr.Dataset | None,
    skipped: list[str] | None = None,
    unreadable: Mapping[str, int] | None = None,
) -> str:
    """A short plain-text summary: per dataset, mean similarity per measure and probe accuracy;
    the analyses left out, and how many items of each dataset could not be read (``unreadable``:
    a class lost to damaged files was said only in the log and run.json)."""
    rows = []
    for ds_id in sim.dataset.values:
        row: dict[str, Any] = {
            "dataset": ds_id,
            "domain": str(sim.domain.sel(dataset=ds_id).values),
            "n": int(sim.n_stimuli.sel(dataset=ds_id).values),
        }
        for measure in sim.data_vars:
            m = sim[measure].sel(dataset=ds_id).values
            off = m[~np.eye(m.shape[0], dtype=bool)]
            off = off[np.isfinite(off)]  # a dataset every model failed on has none: undefined
            row[f"mean {measure}"] = float(off.mean()) if off.size else float("nan")
        if probes is not None:
            row["probe acc"] = float(probes.accuracy.sel(dataset=ds_id).mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    text = table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="undefined")
    if table.isna().any().any():  # it printed "nan" (and numpy's "Mean of empty slice")
        text += "\n(undefined: no model pair has a defined value on that dataset)"
    if consistency is not None and "consistency" in consistency:
        overview = consistency_overview(consistency)
        text += "\n\nConsistency across dataset pairs (Pearson; median and IQR"
        if overview["measure"].nunique() > 1:  # the category pairs are the first measure's
            first = overview["measure"].iloc[0]
            text += f"; category pairs for {first} only, all measures' in consistency.nc"
        text += "):\n" + overview.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    if skipped:
        text += "\n\nLeft out of this run (undefined here, or switched off):\n  "
        text += "\n  ".join(skipped)
    lost = {d: n for d, n in (unreadable or {}).items() if n}
    if lost:
        text += "\n\nItems that could not be read and were left out (run.json 'skipped' lists each):\n  "
        text += "\n  ".join(f"{d}: {n}" for d, n in lost.items())
    return text


def consistency_overview(
    consistency: xr.Dataset, group_by: tuple[str, ...] = (ALL, "objective")
) -> pd.DataFrame:
    """Median and IQR over dataset pairs for the end-of-run summary: all model pairs per measure,
    the category pairs of ``group_by`` for the first measure only (a readable summary).

    The numbers are :func:`repsim.consistency.consistency_summary` of
    :func:`repsim.consistency.consistency_table`, with the category pairs of at least
    :data:`repsim.names.MIN_PAIRS` model pairs, as in the book (consistency.nc also keeps
    those of 2, whose r is +-1 whatever the data). Columns: measure, models, median, q25, q75,
    dataset pairs.
    """
    from repsim.consistency import consistency_summary, consistency_table

    measures = [str(m) for m in consistency["consistency"].measure.values]
    parts = []
    for k, measure in enumerate(measures):
        groups = group_by if k == 0 else (ALL,)
        tidy = consistency_table(consistency, measure, groups)
        # in consistency.nc's order (all model pairs first), not by median
        order = list(dict.fromkeys(zip(tidy["group_by"], tidy["label"])))
        summary = consistency_summary(tidy).set_index(["group_by", "label"])
        summary = summary.reindex([k for k in order if k in summary.index]).reset_index()
        parts.append(
            pd.DataFrame(
                {
                    "measure": measure,
                    "models": [
                        ALL if g == ALL else f"{g}: {lab}"
                        for g, lab in zip(summary["group_by"], summary["label"])
                    ],
                    "median": summary["median"].astype(float),
                    "q25": summary["q25"].astype(float),
                    "q75": summary["q75"].astype(float),
                    "dataset pairs": summary["n"].astype(int),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


#: Resampling of the controlled tests written by ``repsim run`` (see :func:`run_controlled_tests`).
CONTROLLED_TESTS_OPTIONS = {
    "n_permutations": 999,
    "n_bootstrap": 999,
    "n_bootstrap_max": 1999,
    "n_null": 9,
    "seed": 0,
}


def controlled_design_problem(sim: xr.Dataset) -> str | None:
    """Why a run's models are not a crossed objective x architecture x seed design, or None.

    The controlled tests permute labels within the design's strata (the other factor x seed) and
    resample datasets, so they need every trained objective x architecture cell present with the
    same number (>= 2) of seeds, two or more levels of each factor, and three or more datasets.
    Zoos of real models (no seeds, objective confounded with architecture) fail here by design.
    """
    from repsim.errors import InputError
    from repsim.stats import design_table

    try:
        design = design_table(sim)
    except InputError as exc:
        return f"the models lack the design metadata ({exc})"
    trained = design[~design["control"]]
    objectives = sorted(set(trained["objective"]))
    archs = sorted(set(trained["architecture"]))
    if len(objectives) < 2 or len(archs) < 2:
        return (
            f"the trained models have {len(objectives)} objective(s) and {len(archs)} "
            "architecture class(es); the tests need 2 or more of each"
        )
    cells = trained.groupby(["objective", "architecture"]).size()
    missing = [f"{o} x {a}" for o in objectives for a in archs if (o, a) not in cells.index]
    if missing:
        return f"objective x architecture is not crossed (no models for {', '.join(missing[:4])})"
    if cells.nunique() != 1 or int(cells.iloc[0]) < 2:
        return (
            "every objective x architecture cell needs the same number (2 or more) of seed "
            f"replicates; this run has {sorted(set(cells.tolist()))}"
        )
    if sim.sizes["dataset"] < 3:
        return f"the tests need at least 3 datasets; this run has {sim.sizes['dataset']}"
    return None


def run_controlled_tests(sim: xr.Dataset) -> tuple[pd.DataFrame | None, list[str]]:
    """``controlled_tests.csv`` for a run whose models form a crossed design; else why not.

    Uses :func:`repsim.stats.controlled_tests` with :data:`CONTROLLED_TESTS_OPTIONS`: 999
    bootstrap resamples per measure (the bootstrap dominates, about 4 ms per resample and measure
    on the embedded run's 45 models x 10 datasets on one core), raised to 1,999 for a measure
    whose verdict they cannot settle (:func:`repsim.stats.bootstrap_undecided`). The smallest
    reachable permutation p is 1 / (n_permutations + 1) = 0.001. For a final analysis call
    ``controlled_tests`` with its defaults (9,999 permutations, 19 null draws per resample).
    """
    from repsim.errors import InputError
    from repsim.stats import controlled_tests

    problem = controlled_design_problem(sim)
    if problem is None:
        try:
            return controlled_tests(sim, **CONTROLLED_TESTS_OPTIONS), []
        except InputError as exc:
            problem = str(exc)
    return None, [f"controlled_tests.csv: {problem}"]
