"""Consistency across datasets against hand computations with explicit pair lists."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import pearsonr, spearmanr

import repsim
from repsim.consistency import (
    anchor_consistency,
    consistency,
    consistency_dataset,
    grouped_consistency,
    to_tidy,
)
from repsim.errors import InputError

MODELS = ["a1", "a2", "a3", "b1", "b2", "c1"]
OBJ = ["A", "A", "A", "B", "B", "C"]
ARCH = ["cnn", "vit", "cnn", "vit", "cnn", "vit"]
DATASETS = ["d0", "d1", "d2", "d3"]


def make_sim(rng, nan_model=None):
    M, D = len(MODELS), len(DATASETS)
    S = rng.uniform(size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    S[:, np.arange(M), np.arange(M)] = 1.0
    if nan_model is not None:
        i = MODELS.index(nan_model)
        S[1, i, :] = S[1, :, i] = np.nan
    return xr.DataArray(
        S,
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": DATASETS,
            "model_a": MODELS,
            "model_b": MODELS,
            "objective_a": ("model_a", OBJ),
            "objective_b": ("model_b", OBJ),
            "architecture_class_a": ("model_a", ARCH),
            "architecture_class_b": ("model_b", ARCH),
            "domain": ("dataset", ["nat", "nat", "spec", "struct"]),
        },
        name="cka_linear",
        attrs={"measure": "cka_linear"},
    )


def by_hand(sim, pairs, method="pearson"):
    """Correlate the similarity vectors of the listed model pairs, with a loop per dataset pair."""
    corr = pearsonr if method == "pearson" else spearmanr
    D = sim.sizes["dataset"]
    out = np.eye(D)
    for i in range(D):
        for j in range(D):
            if i != j:
                a = [float(sim.isel(dataset=i).sel(model_a=f, model_b=g)) for f, g in pairs]
                b = [float(sim.isel(dataset=j).sel(model_a=f, model_b=g)) for f, g in pairs]
                keep = np.isfinite(a) & np.isfinite(b)
                out[i, j] = corr(np.asarray(a)[keep], np.asarray(b)[keep])[0]
    return out


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_all_pairs_by_hand(rng, method):
    sim = make_sim(rng)
    got = consistency(sim, method)
    assert got.dims == ("dataset_a", "dataset_b") and got.attrs["n_pairs"] == 15
    np.testing.assert_allclose(
        got.values, by_hand(sim, list(combinations(MODELS, 2)), method), rtol=1e-12
    )
    assert list(got.domain_a.values) == ["nat", "nat", "spec", "struct"]
    # the package attribute may be the submodule (once imported); it must still compute consistency
    xr.testing.assert_identical(repsim.consistency(sim, method), got)


def test_model_sets_count_each_unordered_pair_once(rng):
    sim = make_sim(rng)
    theta, phi = ["a1", "a2", "b1"], ["a2", "b1", "c1"]
    pairs = {frozenset((f, g)) for f in theta for g in phi if f != g}
    got = consistency(sim, models_a=theta, models_b=phi)
    assert got.attrs["n_pairs"] == len(pairs) == 6
    np.testing.assert_allclose(
        got.values, by_hand(sim, [tuple(sorted(p)) for p in pairs]), rtol=1e-12
    )
    # changing a pair outside the sets leaves the result alone
    sim2 = sim.copy()
    sim2.loc[{"dataset": "d2", "model_a": "a3", "model_b": "b2"}] = 99.0
    np.testing.assert_allclose(consistency(sim2, models_a=theta, models_b=phi).values, got.values)


def test_nan_pairs_dropped_pairwise(rng):
    sim = make_sim(rng, nan_model="b2")
    got = consistency(sim)
    np.testing.assert_allclose(got.values, by_hand(sim, list(combinations(MODELS, 2))), rtol=1e-12)
    assert np.isfinite(got.values).all()


def test_grouped_skips_small_groups_and_labels(rng):
    sim = make_sim(rng)
    g = grouped_consistency(sim, by="objective")
    # A|A 3 pairs, A|B 6, A|C 3, B|B 1 (skipped), B|C 2, C|C 0 (skipped)
    assert list(g.group_pair.values) == [
        "objective: A | A",
        "objective: A | B",
        "objective: A | C",
        "objective: B | C",
    ]
    assert list(g.n_pairs.values) == [3, 6, 3, 2]
    assert set(g.group_by.values) == {"objective"}
    assert list(g.group_a.values) == ["A", "A", "A", "B"] and list(g.group_b.values) == [
        "A",
        "B",
        "C",
        "C",
    ]
    ab = [(f, h) for f in ["a1", "a2", "a3"] for h in ["b1", "b2"]]
    np.testing.assert_allclose(
        g.sel(group_pair="objective: A | B").values, by_hand(sim, ab), rtol=1e-12
    )
    mapping = dict(zip(MODELS, ARCH))
    assert grouped_consistency(sim, by=mapping).sizes["group_pair"] == 3
    with pytest.raises(InputError, match="no coord size_class_a"):
        grouped_consistency(sim, by="size_class")


def test_anchor(rng):
    sim = make_sim(rng)
    got = anchor_consistency(sim, anchors=["b1", "c1"])
    assert got.dims == ("anchor", "dataset_a", "dataset_b")
    assert list(got.objective.values) == ["B", "C"]
    pairs = [("b1", m) for m in MODELS if m != "b1"]
    np.testing.assert_allclose(got.sel(anchor="b1").values, by_hand(sim, pairs), rtol=1e-12)
    np.testing.assert_allclose(
        got.sel(anchor="c1").values, consistency(sim, models_a=["c1"]).values
    )
    with pytest.raises(InputError, match="unknown models"):
        anchor_consistency(sim, anchors=["zz"])


def test_consistency_dataset_schema_and_tidy(rng, tmp_path):
    sims = [make_sim(rng).rename(None) for _ in range(2)]
    ds = xr.Dataset({"cka_linear": sims[0], "rsa_spearman": sims[1]})
    out = consistency_dataset(ds)
    assert out["consistency"].dims == ("measure", "group_pair", "dataset_a", "dataset_b")
    assert out["consistency_spearman"].dims == out["consistency"].dims
    assert out["anchor_consistency"].dims == ("measure", "anchor", "dataset_a", "dataset_b")
    assert list(out.measure.values) == ["cka_linear", "rsa_spearman"]
    assert out.group_pair.values[0] == "all" and out.n_pairs.values[0] == 15
    assert set(out.group_by.values) == {"all", "objective", "architecture_class"}
    for var in ("consistency", "consistency_spearman", "anchor_consistency"):
        diag = np.diagonal(out[var].values, axis1=-2, axis2=-1)
        np.testing.assert_array_equal(diag, 1.0)
    np.testing.assert_allclose(
        out["consistency"].sel(measure="rsa_spearman", group_pair="all").values,
        consistency(sims[1]).values,
    )
    path = tmp_path / "consistency.nc"
    out.to_netcdf(path, engine="scipy")  # netCDF3: the strictest format must take it too
    back = xr.load_dataset(path, engine="scipy")
    xr.testing.assert_allclose(back["consistency"], out["consistency"])
    tidy = to_tidy(out["consistency"])
    assert (
        len(tidy) == 2 * out.sizes["group_pair"] * 6
    )  # measures x groups x unordered dataset pairs
    assert {
        "measure",
        "group_pair",
        "group_by",
        "group_a",
        "group_b",
        "n_pairs",
        "dataset_a",
        "dataset_b",
        "consistency",
    } <= set(tidy.columns)
    assert (tidy.dataset_a != tidy.dataset_b).all()


def test_input_errors(rng):
    sim = make_sim(rng)
    with pytest.raises(InputError, match="method"):
        consistency(sim, "kendall")
    with pytest.raises(InputError, match="dims"):
        consistency(sim.isel(dataset=0))
    with pytest.raises(InputError, match="at least 2 model pairs"):
        consistency(sim, models_a=["a1"], models_b=["a2"])
