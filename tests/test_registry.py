"""The measure registry: every family's batched kernel equals its single-pair function; the fallback.

Generic over :data:`repsim.measures.FAMILIES`: a newly registered family is tested here without a
new test, on the example names it declares.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from helpers_features import pairwise, zoo

import repsim
from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures import (
    FAMILIES,
    MEASURES,
    MeasureFamily,
    MeasureSpec,
    parse_measure,
    register_measure,
    similarity_matrices,
)
from repsim.measures import registry as registry_module

EXAMPLES = [(f.name, name) for f in FAMILIES.values() for name in f.examples]
WITH_KERNEL = [(fam, name) for fam, name in EXAMPLES if FAMILIES[fam].batched is not None]


@pytest.mark.parametrize("family,name", EXAMPLES)
def test_engine_equals_single_pair_function(family, name):
    """Kernel (or fallback) of the engine against the family's function on every ordered pair."""
    feats = zoo(np.random.default_rng(len(name)), n=30, dims=(3, 8, 21, 40))
    got = similarity_matrices(feats, [name], device="cpu")[name].values
    spec = parse_measure(name)
    assert spec.family == family and spec.function is FAMILIES[family].function
    np.testing.assert_allclose(got, pairwise(spec, feats), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(got, got.T)


@pytest.mark.parametrize("family,name", WITH_KERNEL)
def test_batched_kernel_equals_the_per_pair_path(monkeypatch, family, name):
    """The same engine call with the family's kernel and with the kernel removed (the fallback)."""
    feats = zoo(np.random.default_rng(7), n=30, dims=(5, 12, 30))
    batched = similarity_matrices(feats, [name], device="cpu")[name].values
    bare = dataclasses.replace(FAMILIES[family], batched=None)
    monkeypatch.setitem(registry_module._FAMILIES, family, bare)
    per_pair = similarity_matrices(feats, [name], device="cpu")[name].values
    np.testing.assert_allclose(batched, per_pair, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("family,name", EXAMPLES)
def test_names_round_trip_and_facts_are_data(family, name):
    spec = parse_measure(name)
    assert parse_measure(spec.name) == spec
    assert name in MEASURES and MEASURES[name] == spec
    assert spec.invariances <= set(repsim.measures.INVARIANCES)
    assert spec.bounds[0] < spec.bounds[1] and spec.min_n >= 2 and spec.description
    assert FAMILIES[family].grammar in registry_module.grammar()


def test_public_functions_are_the_registered_ones():
    assert MEASURES["cka_linear"].function is repsim.cka
    assert MEASURES["rsa_spearman"].function is repsim.rsa
    assert MEASURES["mutual_knn_10"].function is repsim.mutual_knn
    assert MEASURES["procrustes"].function is repsim.measures.procrustes
    assert list(FAMILIES) == ["cka", "rsa", "mutual_knn", "procrustes"]


# ------------------------------------------------------------------ a family without a kernel


def first_column_corr(X, Y, power: int = 1) -> float:
    """|Pearson r|^power of the first feature of X and Y: a toy measure for the fallback test."""
    x, y = np.asarray(X, float)[:, 0], np.asarray(Y, float)[:, 0]
    if not (np.ptp(x) > 0 and np.ptp(y) > 0):
        raise UndefinedMeasureError("toy: a first feature is constant")
    return float(abs(np.corrcoef(x, y)[0, 1]) ** power)


def _toy_spec(m: re.Match[str]) -> MeasureSpec:
    return MeasureSpec(
        name=m.string,
        family="toy",
        params={"power": int(m["power"])},
        min_n=3,
        bounds=(0.0, 1.0),
        description="toy",
    )


TOY = MeasureFamily(
    name="toy",
    pattern=r"toy_first_(?P<power>[0-9])",
    spec=_toy_spec,
    function=first_column_corr,
    grammar="toy_first_<power>",
    examples=("toy_first_1", "toy_first_2"),
)


@pytest.fixture
def toy():
    register_measure(TOY)
    try:
        yield TOY
    finally:
        del registry_module._FAMILIES["toy"]


def test_fallback_for_a_family_without_kernel(toy):
    rng = np.random.default_rng(3)
    feats = {f"m{i}": rng.normal(size=(12, 2)) for i in range(3)}
    feats["flat"] = np.column_stack([np.ones(12), rng.normal(size=12)])  # toy undefined, model fine
    with pytest.warns(RuntimeWarning, match=r"toy_first_2 is undefined for 4 model pair\(s\)"):
        ds = similarity_matrices(feats, ["toy_first_2", "cka_linear"], device="cpu")
    got = ds["toy_first_2"].values
    first = [feats[k][:, 0] for k in list(feats)[:3]]
    expected = np.corrcoef(first) ** 2  # an independent route: numpy's correlation matrix
    np.testing.assert_allclose(got[:3, :3], expected, rtol=1e-12)
    assert np.isnan(got[3]).all() and np.isnan(got[:, 3]).all()
    assert np.isfinite(ds["cka_linear"].values).all()  # a kernel family alongside is unaffected
    assert ds["toy_first_2"].attrs["canonical_name"] == "toy_first_2"


def test_fallback_leaves_unusable_models_out(toy):
    rng = np.random.default_rng(4)
    feats = {
        "a": rng.normal(size=(8, 2)),
        "b": rng.normal(size=(8, 2)),
        "c": rng.normal(size=(8, 2)),
    }
    feats["c"][2, 1] = np.nan
    with pytest.warns(RuntimeWarning, match="'c' has NaN"):
        got = similarity_matrices(feats, ["toy_first_1"], device="cpu")["toy_first_1"].values
    assert np.isnan(got[2]).all() and np.isfinite(got[:2, :2]).all()


def test_registered_names_parse_and_unknown_names_list_the_grammar(toy):
    assert parse_measure("toy_first_3").params == {"power": 3}
    assert "toy_first_3" in MEASURES
    with pytest.raises(InputError, match="toy_first_<power>"):
        parse_measure("toy_second_1")
    with pytest.raises(InputError, match="at least 3 stimuli"):
        similarity_matrices({"a": np.eye(2), "b": np.eye(2)}, ["toy_first_1"])


def test_registration_refuses_ambiguous_families(toy):
    with pytest.raises(InputError, match="already registered"):
        register_measure(TOY)
    clash = dataclasses.replace(TOY, name="toy2", pattern=r"toy_first_[0-9]+|other")
    with pytest.raises(InputError, match="'toy_first_1' is a name of both 'toy2' and 'toy'"):
        register_measure(clash)
    greedy = dataclasses.replace(TOY, name="toy4", pattern=r"toy_.*", examples=("toy_any",))
    with pytest.raises(InputError, match="'toy_first_1' is a name of both 'toy' and 'toy4'"):
        register_measure(greedy)
    wrong = dataclasses.replace(TOY, name="toy3", pattern=r"third_[0-9]", examples=("toy_x",))
    with pytest.raises(InputError, match="does not match its pattern"):
        register_measure(wrong)
    assert not {"toy2", "toy3", "toy4"} & set(FAMILIES)
