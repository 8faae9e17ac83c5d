"""Clear errors at the input edges (issue 11): each malformed input raises its RepsimError subclass.

Non-numeric, ragged and complex arrays for the measures and the engine; an asymmetric or NaN-holding
similarity array for consistency; constant features for the linear probe.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import repsim
from repsim.errors import (
    AsymmetricSimilarityError,
    ComplexInputError,
    ConstantFeaturesError,
    InputError,
    NonNumericInputError,
    RaggedInputError,
)

SUBCLASSES = [
    NonNumericInputError,
    RaggedInputError,
    ComplexInputError,
    AsymmetricSimilarityError,
    ConstantFeaturesError,
]


@pytest.mark.parametrize("cls", SUBCLASSES)
def test_every_edge_error_is_a_repsim_input_error(cls):
    assert issubclass(cls, InputError) and issubclass(cls, repsim.RepsimError)


def _good(rng, n=8, d=3):
    return rng.normal(size=(n, d))


BAD = {
    "strings": ([["a", "b"]] * 8, NonNumericInputError, "not real numbers"),
    "numeric strings": ([["1.0", "2.0"]] * 8, NonNumericInputError, "dtype <U3"),
    "None": ([[1.0, None]] + [[1.0, 2.0]] * 7, NonNumericInputError, "None"),
    "ragged": ([[1.0, 2.0], [3.0]] + [[1.0, 2.0]] * 6, RaggedInputError, "ragged"),
    "complex numpy": (np.ones((8, 2)) * (1 + 1j), ComplexInputError, "imaginary part"),
    "complex list": ([[1 + 2j, 1.0]] + [[1.0, 2.0]] * 7, ComplexInputError, "complex"),
    "complex torch": (torch.ones(8, 2, dtype=torch.complex64), ComplexInputError, "complex64"),
    # numpy drops a mask when it converts: the masked values were used as data
    "masked": (
        np.ma.masked_array(np.arange(16.0).reshape(8, 2), mask=[[True, False]] + [[False] * 2] * 7),
        InputError,
        "masked array with 1 masked value",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("measure", ["cka", "rsa", "mutual_knn"])
def test_measures_refuse_malformed_input(rng, case, measure):
    bad, cls, msg = BAD[case]
    fn = getattr(repsim, measure)
    kw = {"k": 2} if measure == "mutual_knn" else {}
    with pytest.raises(cls, match=msg):
        fn(bad, _good(rng), **kw)
    with pytest.raises(cls, match="^Y "):
        fn(_good(rng), bad, **kw)


@pytest.mark.parametrize("case", list(BAD))
def test_engine_refuses_malformed_input(rng, case):
    bad, cls, msg = BAD[case]
    with pytest.raises(cls, match=msg):
        repsim.similarity_matrix({"ok": _good(rng), "bad": bad}, "cka_linear", device="cpu")


def test_real_dtypes_still_accepted(rng):
    X = _good(rng)
    ref = repsim.cka(X, X[::-1].copy())
    assert repsim.cka(X.tolist(), X[::-1].tolist()) == pytest.approx(ref, rel=1e-12)
    assert repsim.cka(X.astype(object), X[::-1]) == pytest.approx(ref, rel=1e-12)
    assert repsim.cka(np.ma.masked_array(X), X[::-1]) == pytest.approx(ref, rel=1e-12)  # no mask
    ints = rng.integers(0, 5, size=(8, 3))
    flags = np.array([[i % 2, i % 3 == 0, i < 4] for i in range(8)], dtype=bool)
    assert repsim.cka(ints, flags) == pytest.approx(
        repsim.cka(ints.astype(float), flags.astype(float)), rel=1e-12
    )


# ------------------------------------------------------------------------------------ consistency


def _sim(rng, D=3, M=5):
    S = rng.uniform(size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    S[:, np.arange(M), np.arange(M)] = 1.0
    models = [f"m{i}" for i in range(M)]
    return xr.DataArray(
        S,
        dims=("dataset", "model_a", "model_b"),
        coords={"dataset": [f"d{i}" for i in range(D)], "model_a": models, "model_b": models},
        name="cka_linear",
        attrs={"measure": "cka_linear"},
    )


def test_consistency_refuses_an_asymmetric_matrix(rng):
    sim = _sim(rng)
    sim.values[1, 0, 3] += 0.1
    for fn, kw in (
        (repsim.grouped_consistency, {"by": {m: "x" for m in sim.model_a.values}}),
        (repsim.anchor_consistency, {}),
        (repsim.consistency, {}),
    ):
        with pytest.raises(AsymmetricSimilarityError, match=r"dataset 'd1', \(m0, m3\)"):
            fn(sim, **kw)
    sim.values[1, 0, 3] = np.nan  # NaN on one side only is asymmetric too
    with pytest.raises(AsymmetricSimilarityError, match="nan"):
        repsim.consistency(sim)


def test_consistency_accepts_rounding_asymmetry(rng):
    sim = _sim(rng)
    sim.values[1, 0, 3] *= 1 + 1e-13  # what cka(X, Y) vs cka(Y, X) can differ by
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repsim.consistency(sim)


def test_consistency_refuses_an_asymmetry_beyond_rounding(rng):
    """A relative difference of 1e-7 is no rounding of a float64 measure (the tolerance is
    1e-9 of the value): refused (a tolerance of 1e-3 would let it through)."""
    sim = _sim(rng)
    sim.values[1, 0, 3] *= 1 + 1e-7
    with pytest.raises(AsymmetricSimilarityError, match=r"dataset 'd1', \(m0, m3\)"):
        repsim.consistency(sim)


def test_consistency_refuses_complex_similarities(rng):
    sim = _sim(rng).astype(complex)
    with pytest.raises(ComplexInputError):
        repsim.consistency(sim)


def test_consistency_nan_rule_drops_pairwise_with_a_warning(rng):
    """The rule: NaN pairs are dropped pairwise (the study's code gives NaN), and never silently."""
    sim = _sim(rng, D=3, M=6)
    sim.values[2, 1, :] = sim.values[2, :, 1] = np.nan  # model m1 undefined on dataset d2
    with pytest.warns(RuntimeWarning, match=r"5 model-pair similarities are NaN .*'m1'.*\['d2'\]"):
        got = repsim.consistency(sim).values
    iu = np.triu_indices(6, k=1)
    V = sim.values[:, iu[0], iu[1]]
    keep = np.isfinite(V[0]) & np.isfinite(V[2])
    assert got[0, 2] == pytest.approx(np.corrcoef(V[0, keep], V[2, keep])[0, 1], rel=1e-12)
    assert got[0, 1] == pytest.approx(np.corrcoef(V[0], V[1])[0, 1], rel=1e-12)  # all 15 pairs


# ------------------------------------------------------------------------------------------ probe


@pytest.mark.parametrize("features", ["zeros", "constant", "scaled copies"])
def test_probe_refuses_constant_features(rng, features):
    y = np.repeat([0, 1], 20)
    if features == "zeros":
        X = np.zeros((40, 6))
    elif features == "constant":
        X = np.tile(rng.normal(size=6), (40, 1))
    else:  # rows that are positive multiples of one vector: identical once L2-normalised
        X = rng.uniform(1, 3, size=(40, 1)) * rng.normal(size=(1, 6))
    with pytest.raises(ConstantFeaturesError, match="X_train is the same vector for every row"):
        repsim.linear_probe(X, y, _good(rng, 10, 6), y[:10], epochs=1, device="cpu")


@pytest.mark.parametrize("case", ["strings", "ragged", "complex numpy", "complex torch"])
def test_probe_refuses_malformed_features(rng, case):
    bad, cls, _ = BAD[case]
    y = np.repeat([0, 1], 4)
    with pytest.raises(cls):
        repsim.linear_probe(bad, y, _good(rng, 8, 2), y, epochs=1, device="cpu")


def test_consistency_refuses_a_small_asymmetry_above_rounding(rng):
    sim = _sim(rng)
    sim.values[1, 0, 3] *= 1 + 1e-6  # far above rounding (1e-13): one side recomputed differently
    with pytest.raises(AsymmetricSimilarityError, match=r"dataset 'd1', \(m0, m3\)"):
        repsim.consistency(sim)


def test_consistency_refuses_infinite_similarities(rng):
    sim = _sim(rng)
    sim.values[2, 1, 4] = sim.values[2, 4, 1] = np.inf  # symmetric, so only the inf check sees it
    with pytest.raises(InputError, match="2 infinite values"):
        repsim.consistency(sim)
