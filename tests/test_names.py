"""Tests of repsim.names: the one list of metadata fields, domains and category-pair labels, and
that configs, result files and analyses agree with it."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from repsim import names as N
from repsim.stimuli import spec as stimuli_spec

C = importlib.import_module("repsim.consistency")  # the package attribute is the function
REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "data" / "configs").glob("*.yaml")) + [
    REPO / "data" / "minizoo" / "models.yaml"
]


def test_field_lists_nest():
    assert set(N.CATEGORY_FIELDS) <= set(N.MODEL_FIELDS)
    assert set(N.NUMERIC_MODEL_FIELDS) <= set(N.MODEL_FIELDS)
    assert set(N.MODEL_FIELDS) <= set(N.SPEC_METADATA_KEYS)  # a config can set every field
    assert stimuli_spec.DOMAINS is N.DOMAINS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_use_the_names(path):
    cfg = yaml.safe_load(path.read_text()) or {}
    for model in cfg.get("models") or []:
        keys = set((model.get("metadata") or {}).keys())
        assert keys <= set(N.SPEC_METADATA_KEYS), (
            model.get("id"),
            keys - set(N.SPEC_METADATA_KEYS),
        )
    for dataset in cfg.get("datasets") or []:
        if isinstance(dataset, dict) and "domain" in dataset:
            assert dataset["domain"] in N.DOMAINS, dataset.get("id")


def test_pair_labels():
    assert N.pair_label("b", "a") == N.pair_label("a", "b") == "a | b"
    assert N.split_pair("a | b") == ["a", "b"]
    assert N.is_same_pair("a | a") and not N.is_same_pair("a | b") and not N.is_same_pair("a")
    assert N.group_pair_label("all", "all", "all") == "all"
    assert N.group_pair_label("objective", "A", "B") == "objective: A | B"
    assert N.anchor_partner_label("m0", "Supervised") == "m0 | Supervised"
    for value in ("", None, float("nan"), np.float64("nan"), "?", "None", N.UNKNOWN):
        assert not N.is_known(value)
    assert N.is_known("Supervised") and N.is_known(0.5)


def test_consistency_results_are_labelled_by_names():
    """consistency.nc's group_pair labels and the book's category-pair labels both come from
    names: the label of each group pair is pair_label of its two categories."""
    rng = np.random.default_rng(0)
    objs = ["B", "A", "B", "A", "B", "A"]
    vals = rng.uniform(0, 1, size=(3, 6, 6))
    vals = (vals + vals.transpose(0, 2, 1)) / 2
    ids = [f"m{i}" for i in range(6)]
    sim = xr.DataArray(
        vals,
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": ["x", "y", "z"],
            "model_a": ids,
            "model_b": ids,
            "objective_a": ("model_a", objs),
        },
        name="cka_linear",
    )
    grouped = C.grouped_consistency(sim, "objective")
    assert [str(g) for g in grouped.group_pair.values] == [
        N.group_pair_label("objective", a, b) for a, b in (("A", "A"), ("A", "B"), ("B", "B"))
    ]
    cons = C.consistency_dataset(sim.to_dataset(), by=("objective",))
    tidy = C.consistency_table(cons, "cka_linear", [N.ALL, "objective"])
    labels = dict(zip(tidy.group_pair, tidy.label))
    assert labels == {
        "all": "all",
        "objective: A | A": "A | A",
        "objective: A | B": "A | B",
        "objective: B | B": "B | B",
    }
    assert set(C.similarity_pairs(sim).category_pair) == {"A | A", "A | B", "B | B"}
