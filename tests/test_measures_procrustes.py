"""Orthogonal Procrustes similarity (the worked example of CONTRIBUTING.md) against references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import ortho_group
from test_measures_reference import procrustes_ref

import repsim.measures
from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures import MEASURES, parse_measure, procrustes, similarity_matrices


def pair(rng, n, dx, dy, noise=0.7):
    Z = rng.normal(size=(n, 3))
    X = Z @ rng.normal(size=(3, dx)) + noise * rng.normal(size=(n, dx))
    Y = np.tanh(Z @ rng.normal(size=(3, dy))) + noise * rng.normal(size=(n, dy))
    return X, Y


@pytest.mark.parametrize("dims", [(4, 4), (3, 9), (9, 3), (40, 25), (1, 6)])  # incl. d > n
@pytest.mark.parametrize("angular", [False, True])
def test_procrustes_matches_scipy_rotation(rng, dims, angular):
    X, Y = pair(rng, 30, *dims)
    got = procrustes(X, Y, angular=angular)
    assert got == pytest.approx(procrustes_ref(X, Y, angular), rel=1e-10, abs=1e-12)
    assert 0.0 <= got <= 1.0


def test_procrustes_of_one_feature_is_absolute_correlation(rng):
    """With one feature the orthogonal group is {+1, -1}: the similarity is |Pearson r|."""
    x = rng.normal(size=(25, 1))
    y = -0.5 * x + rng.normal(size=(25, 1))
    r = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert procrustes(x, y) == pytest.approx(abs(r), rel=1e-12)
    angle = np.arccos(abs(r))
    assert procrustes(x, y, angular=True) == pytest.approx(1 - angle / (np.pi / 2), rel=1e-12)


@pytest.mark.parametrize("angular", [False, True])
def test_procrustes_is_one_for_a_similar_copy_and_accurate_near_it(rng, angular):
    X = rng.normal(size=(20, 6))
    Y = 2.5 * X @ ortho_group.rvs(6, random_state=3) + rng.normal(size=6)
    assert procrustes(X, X, angular=angular) == pytest.approx(1.0, abs=1e-14)
    assert procrustes(X, Y, angular=angular) == pytest.approx(1.0, abs=1e-14)
    # a copy with a small perturbation: the angle is small but its digits are kept
    E = 1e-7 * rng.normal(size=X.shape)
    expected = procrustes_ref(X, X + E, angular)
    assert 1 - procrustes(X, X + E, angular=angular) == pytest.approx(1 - expected, rel=1e-6)


def test_procrustes_undefined_for_constant_features(rng):
    X = np.ones((10, 3))
    with pytest.raises(UndefinedMeasureError, match="zero variance"):
        procrustes(X, rng.normal(size=(10, 2)))


def test_procrustes_refuses_two_stimuli(rng):
    # two centred points differ only by a rotation and a scale: the score would be 1 for any inputs
    with pytest.raises(InputError, match="needs at least 3 stimuli, got 2"):
        procrustes(rng.normal(size=(2, 4)), rng.normal(size=(2, 3)))


def test_procrustes_is_registered_as_data():
    spec = parse_measure("procrustes_angular")
    assert spec.family == "procrustes" and spec.params == {"angular": True}
    assert spec.function is procrustes is repsim.measures.procrustes
    assert spec.invariances == frozenset(repsim.measures.INVARIANCES)
    assert spec.bounds == (0.0, 1.0) and spec.larger_is_more_similar and spec.min_n == 3
    assert "procrustes" in MEASURES and "procrustes" not in list(MEASURES)  # not a study measure


def test_procrustes_through_the_engine(rng):
    """No batched kernel: the engine's per-pair path, NaN and one warning for an unusable pair."""
    feats = {f"m{i}": pair(rng, 24, 3 + i, 5)[0] for i in range(3)}
    feats["flat"] = np.ones((24, 4))
    with pytest.warns(RuntimeWarning, match="'flat'"):
        ds = similarity_matrices(feats, ["procrustes", "procrustes_angular"], device="cpu")
    ids = list(feats)
    for name in ("procrustes", "procrustes_angular"):
        got = ds[name].values
        for a in range(3):
            for b in range(3):
                ref = procrustes_ref(feats[ids[a]], feats[ids[b]], name.endswith("angular"))
                assert got[a, b] == pytest.approx(ref, rel=1e-10, abs=1e-12)
        assert np.isnan(got[3]).all() and np.isnan(got[:, 3]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del feats["flat"]
        similarity_matrices(feats, ["procrustes"], device="cpu")


def test_procrustes_never_exceeds_one(rng):
    # the nuclear norm of X~' X~ is 1 in exact arithmetic but rounds to 1 + 2e-16 for about a
    # quarter of random X: the documented range [0, 1] needs the clip
    for _ in range(20):
        X = rng.normal(size=(34, 13))
        assert procrustes(X, X) <= 1.0
