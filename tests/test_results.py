"""Assembling the result files from the per-stage parts (repsim.results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from repsim.errors import RunFolderError
from repsim.plan import load_plan
from repsim.results import assemble_similarity


@pytest.fixture(scope="module")
def plan(tiny_config: Path):
    return load_plan(tiny_config, check_models=False)


def _part(models: list[str], measures: list[str], seed: int = 0) -> xr.Dataset:
    """A symmetric part on ``models``, as the similarity stage writes one."""
    rng = np.random.default_rng(seed)
    data = {}
    for measure in measures:
        values = rng.uniform(size=(len(models), len(models)))
        data[measure] = (("model_a", "model_b"), (values + values.T) / 2)
    return xr.Dataset(data, coords={"model_a": models, "model_b": models})


def _without_model(part: xr.Dataset, model: str) -> xr.Dataset:
    keep = [m for m in part.model_a.values if m != model]
    return part.sel(model_a=keep, model_b=keep)


def _with_extra_model(part: xr.Dataset) -> xr.Dataset:
    return _part([*map(str, part.model_a.values), "not-in-run"], list(part.data_vars))


BAD = {
    # (damage of the first dataset's part, words the error must hold)
    "lacks a model": (
        lambda p, plan: _without_model(p, plan.models[1].id),
        lambda plan: f"model_a lacks {plan.models[1].id}; model_b lacks {plan.models[1].id}",
    ),
    "lacks a model on one axis": (
        lambda p, plan: p.sel(model_b=[m.id for m in plan.models[:-1]]),
        lambda plan: f"model_b lacks {plan.models[-1].id}",
    ),
    "has a model the run does not": (
        lambda p, plan: _with_extra_model(p),
        lambda plan: "model_a has not-in-run, which the run does not",
    ),
    "lacks a measure": (
        lambda p, plan: p.drop_vars(plan.measures[-1]),
        lambda plan: f"measures lacks {plan.measures[-1]}",
    ),
    "has a measure the run does not": (
        lambda p, plan: p.assign(procrustes=p[plan.measures[0]]),
        lambda plan: "measures has procrustes, which the run does not",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_part_that_does_not_name_the_runs_models_and_measures_is_refused(plan, case):
    """A part that lacked a model became a NaN model when reindexed to the run's models (one
    that lacked a measure a KeyError traceback; an extra model or measure was dropped unsaid):
    assemble_similarity refuses it, naming the dataset and what is missing or extra."""
    damage, words = BAD[case]
    ids, measures = [m.id for m in plan.models], list(plan.measures)
    parts = [_part(ids, measures, seed=k) for k in range(len(plan.datasets))]
    parts[0] = damage(parts[0], plan)
    with pytest.raises(RunFolderError) as err:
        assemble_similarity(plan, parts, [60] * len(plan.datasets))
    message = str(err.value)
    assert f"the similarity part of dataset {plan.datasets[0].id!r} does not fit the run" in message
    assert words(plan) in message
    assert "rerun the config into the run folder" in message


def _probe_part(seeds: list[int]) -> dict:
    """A probe part as the probe stage writes one (one lr and wd per seed)."""
    n = len(seeds)
    return {"accuracy": [0.5] * n, "balanced_accuracy": [0.4] * n, "seeds": seeds,
            "lr": [0.01] * n, "wd": [1e-4] * n}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"accuracy": None}, "lacks accuracy"),
        ({"seeds": [7]}, "its seeds are [7]"),
        ({"balanced_accuracy": [1.2, 0.1]}, "balanced_accuracy holds a value outside [0, 1]"),
        ({"lr": [0.1, 0.1, 0.1]}, "lr is not a list of 1 or 2 numbers"),
        ({"wd": ["x", "y"]}, "wd holds something other than numbers"),
    ],
)
def test_assemble_probes_refuses_a_part_it_cannot_read(plan, change, named) -> None:
    """A forged probe part without accuracy was a KeyError traceback (the pipeline recomputes one,
    tests/faults); assemble_probes names the model, the dataset and what is wrong."""
    from repsim.results import assemble_probes, probe_part_problem, probe_seeds

    seeds = probe_seeds(plan)
    assert seeds == [0, 1]  # tiny.yaml's probe.seeds
    good = {(m.id, d.id): _probe_part(seeds) for m in plan.models for d in plan.datasets}
    assert all(probe_part_problem(plan, p) is None for p in good.values())
    probes = assemble_probes(plan, good)
    assert probes["accuracy"].shape == (len(plan.models), len(plan.datasets), 2)
    model, ds = plan.models[1].id, plan.datasets[0].id
    bad = {k: v for k, v in {**good[model, ds], **change}.items() if v is not None}
    with pytest.raises(RunFolderError, match=rf"model '{model}' on dataset '{ds}'.*") as error:
        assemble_probes(plan, {**good, (model, ds): bad})
    assert named in str(error.value)


def test_the_summary_says_undefined_for_a_dataset_without_a_defined_similarity() -> None:
    """A dataset every model failed on printed "nan" in summary.txt, with numpy's "Mean of empty
    slice" warning on the run's stderr; its mean is "undefined", said why, and the others are
    the means of their defined off-diagonal values."""
    import warnings

    from repsim.results import summary_table

    values = np.full((2, 3, 3), np.nan)
    values[0] = [[1.0, 0.2, 0.4], [0.2, 1.0, np.nan], [0.4, np.nan, 1.0]]
    sim = xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), values)},
        coords={
            "dataset": ["faces", "cells"],
            "model_a": ["a", "b", "c"],
            "model_b": ["a", "b", "c"],
            "domain": ("dataset", ["Natural (single-domain)", "Specialized"]),
            "n_stimuli": ("dataset", [20, 30]),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = summary_table(sim, None, None)
    lines = text.splitlines()
    assert lines[1].split()[-1] == "0.300" and lines[2].split()[-1] == "undefined", text
    assert "nan" not in text.lower().replace("undefined", "")
    assert lines[-1] == "(undefined: no model pair has a defined value on that dataset)"
