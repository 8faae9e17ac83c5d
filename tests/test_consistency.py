"""Consistency across datasets against hand computations with explicit pair lists."""

from __future__ import annotations

import math
import re
import warnings
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import pearsonr, spearmanr

import repsim
from repsim.consistency import (
    MIN_PAIRS,
    anchor_consistency,
    anchor_partner_consistency,
    consistency,
    consistency_dataset,
    grouped_consistency,
    partner_rank_sum_tests,
    to_tidy,
    transform_comparison,
    transform_similarity,
)
from repsim.errors import InputError, UndefinedDatasetWarning

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
    sim2.loc[{"dataset": "d2", "model_a": "b2", "model_b": "a3"}] = 99.0  # symmetric, as required
    np.testing.assert_allclose(consistency(sim2, models_a=theta, models_b=phi).values, got.values)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_nan_pairs_dropped_pairwise(rng, method):
    sim = make_sim(rng, nan_model="b2")
    with pytest.warns(RuntimeWarning, match="drops them pairwise"):
        got = consistency(sim, method)
    want = by_hand(sim, list(combinations(MODELS, 2)), method)
    np.testing.assert_allclose(got.values, want, rtol=1e-12)
    assert np.isfinite(got.values).all()


def test_a_dataset_with_no_defined_similarity_warns_as_undefined(rng):
    """A dataset every model failed on gets NaN consistency and nothing is computed over fewer
    pairs: its NaN-rule warning is an UndefinedDatasetWarning, which the book's chapters ignore
    (they name such a dataset; it leaked into chapter 4 as stderr). Some NaN pairs beside defined
    ones stay a plain RuntimeWarning, and "error" on RuntimeWarning still refuses both."""
    sim = make_sim(rng)
    sim.loc[{"dataset": DATASETS[2]}] = np.nan
    with pytest.warns(UndefinedDatasetWarning, match="drops them pairwise"):
        got = consistency(sim)
    assert (
        np.isnan(got.values[2]).all()
        and np.isfinite(np.delete(got.values, 2, 0)[:, [0, 1, 3]]).all()
    )
    mixed = make_sim(rng, nan_model="b2")  # b2 undefined on one dataset, and a whole dataset
    mixed.loc[{"dataset": DATASETS[2]}] = np.nan
    for partial in (make_sim(rng, nan_model="b2"), mixed):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            consistency(partial)
        assert [type(w.message) for w in seen] == [RuntimeWarning]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(UndefinedDatasetWarning):
            consistency(sim)


def test_models_with_unknown_category_are_not_a_category(rng):
    """model_metadata writes an unknown field as '' (text) or NaN (numbers); grouping by it put
    those models together as one category named '' or 'nan'. They are left out, with a warning,
    and the groups of the known models equal a hand computation over their pairs alone."""
    sim = make_sim(rng)
    size = ["s", "s", "", "l", "l", ""]  # a3 and c1 unknown
    sim = sim.assign_coords(size_class_a=("model_a", size), size_class_b=("model_b", size))
    with pytest.warns(RuntimeWarning, match="2 model\\(s\\) have no size_class.*a3, c1"):
        g = grouped_consistency(sim, by="size_class")
    # s = {a1, a2}, l = {b1, b2}: l|l and s|s have one pair each (skipped), l|s has four
    assert list(g.group_pair.values) == ["size_class: l | s"]
    assert list(g.n_pairs.values) == [4]
    ls_pairs = [(f, h) for f in ["a1", "a2"] for h in ["b1", "b2"]]
    np.testing.assert_allclose(
        g.sel(group_pair="size_class: l | s").values, by_hand(sim, ls_pairs), rtol=1e-12
    )
    params = [1.0, 1.0, np.nan, 2.0, 2.0, 2.0]
    sim = sim.assign_coords(params_m_a=("model_a", params), params_m_b=("model_b", params))
    with pytest.warns(RuntimeWarning, match="1 model\\(s\\) have no params_m.*a3"):
        g = grouped_consistency(sim, by="params_m")
    assert "nan" not in set(g.group_a.values) | set(g.group_b.values)
    with pytest.raises(InputError, match="anchor\\(s\\) a3 have no size_class"):
        with pytest.warns(RuntimeWarning):
            anchor_partner_consistency(sim, anchors=["a3"], by="size_class")


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
    with pytest.raises(InputError, match=r"got dims \('model_a', 'model_b'\); select"):
        consistency(sim.isel(dataset=0))
    with pytest.raises(InputError, match=r"got a Dataset of cka_linear; select one measure"):
        consistency(sim.to_dataset(name="cka_linear"))  # printed as a FrozenMapping repr
    with pytest.raises(InputError, match="at least 2 model pairs"):
        consistency(sim, models_a=["a1"], models_b=["a2"])


def test_a_consistency_of_two_model_pairs_says_it_is_one_whatever_the_data(rng):
    """Two model pairs give r = +-1 on random similarities: computed (the study's rule) but said,
    in a warning to a caller and in consistency.nc's attributes to a reader of the file."""
    sim = make_sim(rng)
    with pytest.warns(RuntimeWarning, match=r"over 2 model pairs is \+-1 whatever"):
        r = consistency(sim, models_a=["a1"], models_b=["a2", "b1"])
    off = r.values[~np.eye(len(DATASETS), dtype=bool)]
    np.testing.assert_allclose(np.abs(off), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # three pairs: no warning
        consistency(sim, models_a=["a1"], models_b=["a2", "b1", "b2"])
    cons = consistency_dataset(sim.to_dataset(name="cka_linear"), by=("objective",))
    for var in ("consistency", "consistency_spearman"):
        assert cons[var].attrs["min_pairs"] == 3
        assert "+-1 whatever the data" in cons[var].attrs["note"]


# ------------------------------------------------- the study's appendix transforms and anchor design
def test_transform_similarity_against_hand_values():
    sim = xr.DataArray(
        np.array([[[1.0, 0.5], [0.5, 1.0000001]]]),
        dims=("dataset", "model_a", "model_b"),
        coords={"dataset": ["d"], "model_a": ["p", "q"], "model_b": ["p", "q"]},
    )
    arc = transform_similarity(sim, "arccos").values[0]
    tan = transform_similarity(sim, "tan").values[0]
    assert arc[0, 1] == pytest.approx(math.pi / 3, rel=1e-15)  # cos(pi/3) = 1/2
    assert arc[1, 1] == 0.0  # clipped to 1 before arccos, not NaN
    assert tan[0, 1] == pytest.approx(math.sin(0.5) / math.cos(0.5), rel=1e-15)
    assert transform_similarity(sim, None) is sim
    with pytest.raises(InputError, match="transform"):
        transform_similarity(sim, "log")


@pytest.mark.parametrize("transform", ["arccos", "tan"])
def test_consistency_of_transformed_similarity_by_hand(rng, transform):
    sim = make_sim(rng)
    fn = math.acos if transform == "arccos" else math.tan
    pairs = list(combinations(MODELS, 2))
    want = np.eye(len(DATASETS))
    for i, j in combinations(range(len(DATASETS)), 2):
        a = [fn(float(sim.isel(dataset=i).sel(model_a=f, model_b=g))) for f, g in pairs]
        b = [fn(float(sim.isel(dataset=j).sel(model_a=f, model_b=g))) for f, g in pairs]
        want[i, j] = want[j, i] = pearsonr(a, b)[0]
    got = consistency(sim, transform=transform)
    np.testing.assert_allclose(got.values, want, rtol=1e-12)
    table = transform_comparison(sim)
    assert list(table.columns) == ["dataset_a", "dataset_b", "none", "arccos", "tan"]
    row = table[(table.dataset_a == "d0") & (table.dataset_b == "d2")].iloc[0]
    assert row[transform] == pytest.approx(want[0, 2], rel=1e-12)
    assert row["none"] == pytest.approx(by_hand(sim, pairs)[0, 2], rel=1e-12)


def _anchor_sim(rng):
    models = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "c1"]
    obj = ["A", "A", "A", "A", "B", "B", "B", "C"]
    M, D = len(models), 5
    S = rng.uniform(size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    return xr.DataArray(
        S,
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": [f"d{i}" for i in range(D)],
            "model_a": models,
            "model_b": models,
            "objective_a": ("model_a", obj),
            "objective_b": ("model_b", obj),
        },
    )


def test_anchor_partner_consistency_by_hand(rng):
    sim = _anchor_sim(rng)
    out = anchor_partner_consistency(sim, ["a1", "b1"], "objective")
    # a1: partners A = a2..a4 (the anchor itself excluded), B = b1..b3; C has one model: skipped
    assert list(out.anchor_partner.values) == ["a1 | A", "a1 | B", "b1 | A", "b1 | B"]
    assert list(out.n_pairs.values) == [3, 3, 4, 2]
    assert list(out.anchor_category.values) == ["A", "A", "B", "B"]
    want = by_hand(sim, [("a1", "b1"), ("a1", "b2"), ("a1", "b3")])
    np.testing.assert_allclose(out.sel(anchor_partner="a1 | B").values, want, rtol=1e-12)
    want = by_hand(sim, [("b1", "a1"), ("b1", "a2"), ("b1", "a3"), ("b1", "a4")])
    np.testing.assert_allclose(out.sel(anchor_partner="b1 | A").values, want, rtol=1e-12)
    tidy = to_tidy(out)
    assert len(tidy) == 4 * 10 and {"anchor", "partner", "anchor_category"} <= set(tidy.columns)
    with pytest.raises(InputError, match="unknown models"):
        anchor_partner_consistency(sim, ["zz"])


def _ranksum_p_by_hand(a, b):
    """Two-sided rank-sum p from the normal approximation, ranks counted by hand (no ties)."""
    pooled = sorted([*a, *b])
    w = sum(pooled.index(x) + 1 for x in a)
    n1, n2 = len(a), len(b)
    z = (w - n1 * (n1 + n2 + 1) / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return math.erfc(abs(z) / math.sqrt(2))


def test_partner_rank_sum_tests_bonferroni_by_hand():
    pairs = [(f"d{i}", f"e{i}") for i in range(8)]
    vals = {  # anchor x: partner P far above Q and R; anchor y: all alike
        ("x", "P"): [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97],
        ("x", "Q"): [0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, np.nan],
        ("x", "R"): [0.20, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27],
        ("y", "P"): [0.50, 0.41, 0.62, 0.33, 0.54, 0.45, 0.66, 0.37],
        ("y", "Q"): [0.51, 0.42, 0.63, 0.34, 0.55, 0.46, 0.67, 0.38],
        ("y", "R"): [0.52, 0.43, 0.64, 0.35, 0.56, 0.47, 0.68, 0.39],
    }
    rows = [
        {
            "anchor": a,
            "anchor_category": "K",
            "partner": p,
            "dataset_a": da,
            "dataset_b": db,
            "consistency": v,
        }
        for (a, p), vs in vals.items()
        for (da, db), v in zip(pairs, vs)
    ]
    out = partner_rank_sum_tests(pd.DataFrame(rows), alpha=0.01)
    assert len(out) == 6 and (out.p_threshold == 0.01 / 6).all()
    xpq = out[(out.anchor == "x") & (out.partner_a == "P") & (out.partner_b == "Q")].iloc[0]
    assert xpq.n == 7  # the dataset pair missing for Q is dropped from P too
    p = _ranksum_p_by_hand(vals["x", "P"][:7], vals["x", "Q"][:7])
    assert xpq.p == pytest.approx(p, rel=1e-9)
    assert xpq.p_bonferroni == pytest.approx(min(6 * p, 1.0), rel=1e-9)
    assert xpq.significant == (p < 0.01 / 6)
    assert not out[out.anchor == "y"].significant.any()
    # 7 against 7 fully separated: p < 0.01 alone, but not after the correction for 6 tests
    assert xpq.p < 0.01 and not xpq.significant
    sig = out[out.significant]
    assert list(zip(sig.anchor, sig.partner_a, sig.partner_b)) == [("x", "P", "R")]  # 8 against 8


# --------------------------------------------------------------------- tidy tables of the book
def test_similarity_pairs_and_dataset_pair_table_by_hand(rng):
    from repsim.consistency import dataset_pair_table, similarity_pairs

    sim = make_sim(rng)
    t = similarity_pairs(sim)
    pairs = list(combinations(MODELS, 2))
    assert len(t) == len(DATASETS) * len(pairs)
    row = t[(t.dataset == "d2") & (t.model_a == "a1") & (t.model_b == "b2")].iloc[0]
    assert row.similarity == float(sim.sel(dataset="d2", model_a="a1", model_b="b2"))
    assert row.category_pair == "A | B" and row.domain == "spec"
    wide = dataset_pair_table(sim, "d0", "d3").set_index(["model_a", "model_b"])
    for f, g in pairs:
        for d in ("d0", "d3"):
            assert wide.loc[(f, g), d] == float(sim.sel(dataset=d, model_a=f, model_b=g))
    # a chapter's dataset parameters: a raw KeyError, and a reshaping error for the same one twice
    with pytest.raises(
        InputError, match="dataset\\(s\\) 'd9' not in this run; its datasets are d0"
    ):
        dataset_pair_table(sim, "d0", "d9")
    with pytest.raises(InputError, match="dataset\\(s\\) 'd0' given more than once"):
        dataset_pair_table(sim, "d0", "d0")


def test_run_summary_leaves_out_the_category_pairs_of_two_model_pairs(rng):
    """B | C has 2 model pairs: its r is +-1 whatever the data, so the end-of-run summary leaves
    it out as the book does (consistency.nc keeps it)."""
    from repsim.results import consistency_overview

    cons = consistency_dataset(make_sim(rng).to_dataset(), by=("objective",))
    assert "objective: B | C" in [str(g) for g in cons.group_pair.values]
    overview = consistency_overview(cons)
    assert list(overview["models"]) == [
        "all",
        "objective: A | A",
        "objective: A | B",
        "objective: A | C",
    ]


def test_within_category_consistency_by_hand(rng):
    from repsim.consistency import within_category_consistency

    sim = make_sim(rng)
    tab = within_category_consistency(sim, [("d0", "d1"), ("d1", "d3")], min_pairs=3)
    assert list(tab.index) == ["d0 / d1", "d1 / d3"] and list(tab.columns) == ["all", "A"]
    everything = by_hand(sim, list(combinations(MODELS, 2)))
    within_a = by_hand(sim, list(combinations(["a1", "a2", "a3"], 2)))
    assert tab.loc["d1 / d3", "all"] == pytest.approx(everything[1, 3], abs=1e-12)
    assert tab.loc["d0 / d1", "A"] == pytest.approx(within_a[0, 1], abs=1e-12)


def test_consistency_table_summary_and_medians_by_hand(rng):
    from repsim.consistency import (
        category_pair_medians,
        category_pair_table,
        consistency_matrices,
        consistency_summary,
        consistency_table,
    )

    sim = make_sim(rng)
    cons = consistency_dataset(sim.to_dataset(), by=("objective",))
    tidy = consistency_table(cons, "cka_linear", ["all", "objective"], min_pairs=3)
    # A | A has 3 model pairs, A | B 6, A | C 3, B | C 2 (left out), B | B 1 (not in the file)
    assert set(tidy.label) == {"all", "A | A", "A | B", "A | C"}
    ab = by_hand(sim, [(f, g) for f in ("a1", "a2", "a3") for g in ("b1", "b2")])
    iu = np.triu_indices(len(DATASETS), 1)
    got = tidy[tidy.label == "A | B"].set_index(["dataset_a", "dataset_b"])["consistency"]
    want = {(DATASETS[i], DATASETS[j]): ab[i, j] for i, j in zip(*iu)}
    assert got.to_dict() == pytest.approx(want, abs=1e-12)
    summary = consistency_summary(tidy).set_index("label")
    assert summary.loc["A | B", "median"] == pytest.approx(np.median(ab[iu]), abs=1e-12)
    assert summary.loc["A | B", "q25"] == pytest.approx(np.percentile(ab[iu], 25), abs=1e-12)
    assert summary.loc["A | B", "n"] == len(iu[0])
    medians = category_pair_medians(cons, ["cka_linear", "not_a_measure"], "objective")
    assert list(medians.columns) == ["cka_linear"] and list(medians.index) == [
        "A | A",
        "A | B",
        "A | C",
    ]
    assert medians.loc["A | B", "cka_linear"] == pytest.approx(np.median(ab[iu]), abs=1e-12)
    # the rows the medians are taken of (a figure of them names their datasets)
    rows = category_pair_table(cons, ["cka_linear", "not_a_measure"], "objective")
    assert set(rows["measure"]) == {"cka_linear"}
    assert rows.drop(columns="measure").equals(consistency_table(cons, "cka_linear", "objective"))
    m = consistency_matrices(cons, "cka_linear", ["objective: A | B"], ["d3", "d0"])
    assert m.sel(group_pair="objective: A | B").values[0, 1] == pytest.approx(ab[3, 0], abs=1e-12)


def test_a_constant_similarity_vector_has_no_consistency():
    """Pair similarities that are one value on a dataset have no correlation with another
    dataset's. The mean of equal floats is often one ulp off, which left r = -6e-17 (a believable
    0) instead of NaN; scipy's pearsonr and repsim.stats.correlate say NaN."""
    m = ["p", "q", "r"]
    S = np.ones((3, 3, 3))
    S[0][~np.eye(3, dtype=bool)] = 0.1
    S[1] = [[1, 0.2, 0.5], [0.2, 1, 0.9], [0.5, 0.9, 1]]
    S[2] = [[1, 0.3, 0.4], [0.3, 1, 0.8], [0.4, 0.8, 1]]
    sim = xr.DataArray(
        S, dims=("dataset", "model_a", "model_b"),
        coords={"dataset": ["d0", "d1", "d2"], "model_a": m, "model_b": m},
    )  # fmt: skip
    for method in ("pearson", "spearman"):
        c = consistency(sim, method).values
        assert np.isnan(c[0, 1]) and np.isnan(c[0, 2]) and np.isnan(c[0, 0])
        assert np.isfinite(c[1, 2]) and c[1, 1] == c[2, 2] == 1.0
    S[1, 0, 1] = S[1, 1, 0] = np.nan  # the pairwise-NaN path
    with pytest.warns(RuntimeWarning, match="drops them pairwise"):
        assert np.isnan(consistency(sim.copy(data=S)).values[0, 2])


def test_a_category_mapping_leaves_unknown_models_out(rng):
    """The anchors chapter passes a mapping in which missing metadata reads 'unknown'; it became a
    category (pairs 'A | unknown', an 'unknown' partner category), where a coord's '' does not."""
    sim = make_sim(rng)
    mapping = dict(zip(MODELS, ["A", "A", "A", "unknown", "", "nan"]))
    with pytest.warns(RuntimeWarning, match="3 model\\(s\\) have no category in the mapping"):
        g = grouped_consistency(sim, mapping)
    assert list(g.group_pair.values) == ["group: A | A"]
    with pytest.warns(RuntimeWarning):
        p = anchor_partner_consistency(sim, ["a1"], mapping, min_pairs=2)
    assert all("unknown" not in str(v) for v in p.anchor_partner.values)


def test_anchor_rank_sum_tests_leave_out_unknown_and_count_only_tests_that_ran():
    from repsim.consistency import anchor_rank_sum_tests

    tidy = pd.DataFrame(
        {
            "anchor": ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4", "u1", "u2", "c1"],
            "category": ["A"] * 4 + ["B"] * 4 + ["unknown"] * 2 + ["C"],
            "consistency": [0.9, 0.91, 0.92, 0.93, 0.1, 0.11, 0.12, 0.13, 0.5, 0.6, 0.4],
        }
    )
    out = anchor_rank_sum_tests(tidy).set_index(["group_a", "group_b"])
    assert "unknown" not in set(out.index.get_level_values(0)) | set(out.index.get_level_values(1))
    assert len(out) == 3 and out.p.notna().sum() == 1  # A-B runs; C has one anchor
    p = out.loc[("A", "B"), "p"]
    assert out.loc[("A", "B"), "p_bonferroni"] == pytest.approx(p)  # one test ran: factor 1
    assert (out.p_threshold == 0.01).all()


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_dropping_nan_pairs_never_leaves_fewer_than_min_pairs(method):
    """A dataset with 2 finite model pairs of 10 gave r = +-1 with the others, counted as 10 pairs
    (n_pairs) by the book's MIN_PAIRS filter; now NaN. One with 3 is correlated over those 3."""
    rng = np.random.default_rng(1)
    m = [f"m{i}" for i in range(5)]
    S = rng.uniform(size=(4, 5, 5))
    S = (S + S.transpose(0, 2, 1)) / 2
    for i in (0, 1):  # d1: only (m2, m3) and (m3, m4) finite
        S[1, i, :] = S[1, :, i] = np.nan
    S[1, 2, 4] = S[1, 4, 2] = np.nan
    S[2, 0, :] = S[2, :, 0] = np.nan  # d2: the 6 pairs of m1..m4
    S[2, 1, 2] = S[2, 2, 1] = S[2, 1, 3] = S[2, 3, 1] = S[2, 1, 4] = S[2, 4, 1] = np.nan  # 3 left
    sim = xr.DataArray(
        S, dims=("dataset", "model_a", "model_b"),
        coords={"dataset": ["d0", "d1", "d2", "d3"], "model_a": m, "model_b": m},
    )  # fmt: skip
    with pytest.warns(RuntimeWarning, match="drops them pairwise"):
        c = consistency(sim, method)
    assert c.attrs["n_pairs"] == 10 >= MIN_PAIRS
    assert np.isnan(c.values[1]).all() and np.isnan(c.values[:, 1]).all()
    left = [(2, 3), (2, 4), (3, 4)]
    corr = pearsonr if method == "pearson" else spearmanr
    for other in (0, 3):
        want = corr([S[2, i, j] for i, j in left], [S[other, i, j] for i, j in left])[0]
        assert c.values[2, other] == pytest.approx(want, abs=1e-12)
    assert np.isfinite(c.values[np.ix_([0, 2, 3], [0, 2, 3])]).all()


def test_anchor_consistency_counts_each_anchors_partners(rng):
    # Theta = {anchor}, Phi = all models: the anchor is paired with every other model once
    sim = make_sim(rng)
    assert anchor_consistency(sim).attrs["n_pairs"] == len(MODELS) - 1


def test_consistency_summary_quartiles_by_hand():
    from repsim.consistency import consistency_summary

    values = [0.9, 0.1, 0.4, np.nan, 0.2, 0.3]  # NaN dropped: 0.1 0.2 0.3 0.4 0.9
    tidy = pd.DataFrame({"group_by": "objective", "label": "A | B", "consistency": values})
    row = consistency_summary(tidy).iloc[0]
    assert row["median"] == pytest.approx(0.3)
    assert row["q25"] == pytest.approx(0.2)
    assert row["q75"] == pytest.approx(0.4)
    assert row["n"] == 5


# -- mutation audit (consistency): each test below kills a change that no other test noticed -----
@pytest.mark.parametrize("min_pairs", [0, 1, 2.5, "3", True])
def test_anchor_partner_min_pairs_is_a_count_of_two_or_more(rng, min_pairs):
    """One partner is one model pair: its similarity vector has no correlation across datasets.
    A min_pairs below 2 was taken as 2 without a word (chapter 12's min_partners = 1 drew the
    figure of 2), and 2.5 as 3; each is now refused by name."""
    sim = _anchor_sim(rng)
    with pytest.raises(
        InputError, match=re.escape(f"min_pairs must be an integer >= 2; got {min_pairs!r}")
    ):
        anchor_partner_consistency(sim, ["a1", "b1"], "objective", min_pairs=min_pairs)


def test_anchor_partner_cells_need_min_pairs_partners(rng):
    sim = _anchor_sim(rng)
    out = anchor_partner_consistency(sim, ["a1", "b1"], "objective", min_pairs=2)
    assert list(out.anchor_partner.values) == ["a1 | A", "a1 | B", "b1 | A", "b1 | B"]
    assert (out.n_pairs.values >= 2).all()


def test_partner_rank_sum_tests_need_two_shared_dataset_pairs():
    """A partner pair sharing one dataset pair (the others NaN in one of them) has no rank-sum
    test: statistic and p are NaN, and it is not counted in the Bonferroni factor (the tests that
    ran, not the rows). With one value per side allowed, ranksums gave those pairs a p of one point
    against one; counting rows, the factor was 3 for the one test that ran."""
    rows = []
    for k in range(6):
        for p, v in (
            ("P", 0.9 + 0.01 * k),
            ("Q", 0.1 + 0.01 * k),
            ("R", 0.5 if k == 0 else np.nan),
        ):
            rows.append(
                {"anchor": "x", "partner": p, "dataset_a": f"d{k}", "dataset_b": "e",
                 "consistency": v}
            )  # fmt: skip
    out = partner_rank_sum_tests(pd.DataFrame(rows)).set_index(["partner_a", "partner_b"])
    assert list(out.n) == [6, 1, 1]  # P-Q, P-R, Q-R
    for pair in (("P", "R"), ("Q", "R")):
        assert np.isnan(out.loc[pair, "p"]) and np.isnan(out.loc[pair, "statistic"])
    p = _ranksum_p_by_hand([0.9 + 0.01 * k for k in range(6)], [0.1 + 0.01 * k for k in range(6)])
    assert out.loc[("P", "Q"), "p"] == pytest.approx(p, rel=1e-9)
    assert out.loc[("P", "Q"), "p_bonferroni"] == pytest.approx(p, rel=1e-9)  # one test ran
    assert (out.p_threshold == 0.01).all()


def test_partner_rank_sum_bonferroni_is_capped_and_strict():
    """p * number of tests is capped at 1 (it is a probability: uncapped, these alike
    partners got p_bonferroni above 2), and significance is p_bonferroni < alpha strictly: at
    alpha = 1 a capped p of 1 is not significant (with <= every test was)."""
    pairs = [(f"d{i}", f"e{i}") for i in range(8)]
    vals = {
        ("y", "P"): [0.50, 0.41, 0.62, 0.33, 0.54, 0.45, 0.66, 0.37],
        ("y", "Q"): [0.51, 0.42, 0.63, 0.34, 0.55, 0.46, 0.67, 0.38],
        ("y", "R"): [0.52, 0.43, 0.64, 0.35, 0.56, 0.47, 0.68, 0.39],
    }
    rows = [
        {"anchor": a, "partner": p, "dataset_a": da, "dataset_b": db, "consistency": v}
        for (a, p), vs in vals.items()
        for (da, db), v in zip(pairs, vs)
    ]
    out = partner_rank_sum_tests(pd.DataFrame(rows), alpha=1.0)
    assert len(out) == 3 and (out.p * 3 > 1).all()
    assert (out.p_bonferroni == 1.0).all()
    assert not out.significant.any()


def test_architecture_mix_uses_a_kind_of_pair_with_exactly_min_pairs():
    """Objective A has 3 model pairs (a1, a3 same architecture; the other 2 across): at
    min_pairs=3 its 'all' consistency is the mean over dataset pairs of the Pearson r over those 3
    pairs, computed by hand; '<=' in the pair-count rule made it NaN. Categories with fewer pairs
    (same/across of A, B with 1 pair, C with none) are NaN."""
    from repsim.consistency import architecture_mix

    sim = make_sim(rng=np.random.default_rng(5))
    mix = architecture_mix(sim, min_pairs=3)
    assert list(mix.index) == ["A", "B", "C"]
    r = by_hand(sim, [("a1", "a2"), ("a1", "a3"), ("a2", "a3")])
    assert mix.loc["A", "all"] == pytest.approx(np.mean(r[np.triu_indices(4, k=1)]), abs=1e-12)
    assert mix.loc["A", ["pairs same", "pairs across"]].tolist() == [1, 2]
    assert np.isnan(mix.loc["A", "same architecture"]) and np.isnan(
        mix.loc["A", "across architectures"]
    )
    assert (
        mix.loc[["B", "C"], ["all", "same architecture", "across architectures"]].isna().all().all()
    )


def test_architecture_mix_never_pairs_two_unknown_architectures_as_same():
    """Two models without architecture metadata both read 'unknown': equal labels, but not one
    architecture. Such a pair is neither same nor across (dropping the 'known' mask counted
    (a1, a2) below as a same-architecture pair)."""
    from repsim.consistency import architecture_mix

    sim = make_sim(rng=np.random.default_rng(5))
    arch = ["", "", "cnn", "vit", "cnn", "vit"]
    sim = sim.assign_coords(
        architecture_class_a=("model_a", arch), architecture_class_b=("model_b", arch)
    )
    mix = architecture_mix(sim, min_pairs=2)
    assert mix.loc["A", ["pairs same", "pairs across"]].tolist() == [0, 0]
    assert mix.loc["B", ["pairs same", "pairs across"]].tolist() == [0, 1]
    assert np.isnan(mix.loc["A", "similarity same"])


def _two_groups(xa, xb):
    return pd.DataFrame(
        [{"anchor": f"a{i}", "category": "a", "consistency": v} for i, v in enumerate(xa)]
        + [{"anchor": f"b{i}", "category": "b", "consistency": v} for i, v in enumerate(xb)]
    )


@pytest.mark.parametrize(("na", "nb"), [(8, 8), (8, 20), (9, 9)])
def test_anchor_rank_sum_p_at_and_beyond_the_exact_sizes(na, nb):
    """Two fully separated groups without ties. At a group of 8 (EXACT_RANK_SUM_MAX, inclusive)
    p is exact: the most extreme of the C(na + nb, na) splits, p = 2 / C (by enumeration for
    8 v 8; by scipy's exact Mann-Whitney for 8 v 20, beyond the enumeration's 200,000 splits, which
    reading every group as tied sent to the normal approximation). At 9 v 9 p is the normal
    approximation (ranksums) and p_min is still 2 / C(18, 9) (it was 1 / C)."""
    from scipy.stats import ranksums

    from repsim.consistency import anchor_rank_sum_tests

    xa = 0.9 + 0.001 * np.arange(na)
    xb = 0.1 + 0.001 * np.arange(nb)
    row = anchor_rank_sum_tests(_two_groups(xa, xb), alpha=0.05).iloc[0]
    smallest = 2 / math.comb(na + nb, na)
    assert row.p_min == pytest.approx(smallest, rel=1e-12)
    if min(na, nb) <= 8:
        assert row.p == pytest.approx(smallest, rel=1e-9)
    else:
        assert row.p == pytest.approx(ranksums(xa, xb)[1], rel=1e-12) and row.p > 2 * smallest


def test_consistency_refuses_model_b_in_another_order(rng):
    """model_b listing the models in another order than model_a: the pair mask is built on
    model_a's order, so the values read would be those of other pairs. It must raise."""
    sim = make_sim(rng)
    shuffled = sim.isel(model_b=[1, 0, 2, 3, 4, 5])
    with pytest.raises(InputError, match="same models in the same order"):
        consistency(shuffled)


def test_a_nan_self_similarity_alone_is_not_warned_about(rng):
    """The NaN rule concerns model pairs (i < j): a NaN on the diagonal (a self-similarity, which
    consistency never reads) is not a dropped pair, so no RuntimeWarning; counting the diagonal
    warned of 'model-pair similarities' that were none."""
    import warnings

    sim = make_sim(rng)
    S = sim.values.copy()
    S[:, 2, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = consistency(sim.copy(data=S))
    np.testing.assert_allclose(got.values, by_hand(sim, list(combinations(MODELS, 2))), rtol=1e-12)


def test_consistency_of_affinely_related_datasets_is_at_most_one():
    """Dataset d1's pair similarities are an affine function of d0's: r = 1 exactly, but the
    centred-sum formula rounds it to 1 + 4e-16 for these values. Consistency is a correlation and
    is clipped to [-1, 1] (unclipped, 1.0000000000000004 reached consistency.nc)."""
    rng = np.random.default_rng(0)
    M = 7
    x = rng.uniform(size=M * (M - 1) // 2)
    a, b = rng.uniform(0.1, 3), rng.uniform(-0.5, 0.5)
    S = np.ones((3, M, M))
    iu = np.triu_indices(M, k=1)
    for k, v in enumerate((x, a * x + b, rng.uniform(size=x.size))):
        S[k][iu] = v
        S[k].T[iu] = v
    m = [f"m{i}" for i in range(M)]
    sim = xr.DataArray(
        S, dims=("dataset", "model_a", "model_b"),
        coords={"dataset": ["d0", "d1", "d2"], "model_a": m, "model_b": m},
    )  # fmt: skip
    c = consistency(sim).values
    assert (np.abs(c) <= 1.0).all()
    assert c[0, 1] == pytest.approx(1.0, abs=1e-15) and c[0, 2] == pytest.approx(
        pearsonr(x, S[2][iu])[0], abs=1e-12
    )


# -- mutation audit (consistency), continued: each test kills a change no other test noticed ----
def test_consistency_nc_holds_spearman_and_pearson_anchor_variables_as_named(rng):
    """consistency.nc's ``consistency_spearman`` is the Spearman consistency (all pairs and each
    category pair) and ``anchor_consistency`` the Pearson one; computing either with the other
    method went unnoticed (the schema test compares only the Pearson variable)."""
    sim = make_sim(rng)
    out = consistency_dataset(sim.to_dataset(), by=("objective",)).sel(measure="cka_linear")
    spearman = out["consistency_spearman"]
    np.testing.assert_allclose(
        spearman.sel(group_pair="all").values, consistency(sim, "spearman").values, rtol=1e-12
    )
    grouped = grouped_consistency(sim, "objective", "spearman")
    for gp in grouped.group_pair.values:
        np.testing.assert_allclose(
            spearman.sel(group_pair=gp).values, grouped.sel(group_pair=gp).values, rtol=1e-12
        )
    pairs = list(combinations(MODELS, 2))
    assert not np.allclose(by_hand(sim, pairs, "spearman"), by_hand(sim, pairs))  # can tell
    np.testing.assert_allclose(
        out["anchor_consistency"].values, anchor_consistency(sim, method="pearson").values
    )
    anchor = [("a1", m) for m in MODELS if m != "a1"]
    np.testing.assert_allclose(
        out["anchor_consistency"].sel(anchor="a1").values, by_hand(sim, anchor), rtol=1e-12
    )


def test_transformed_similarity_says_which_transform():
    sim = xr.DataArray(
        np.full((1, 2, 2), 0.5),
        dims=("dataset", "model_a", "model_b"),
        coords={"dataset": ["d"], "model_a": ["p", "q"], "model_b": ["p", "q"]},
    )
    for t in ("arccos", "tan"):
        assert transform_similarity(sim, t).attrs["transform"] == t
    assert "transform" not in sim.attrs


def test_defined_groupings_names_each_undefined_grouping_and_skips_unrecorded_keys(rng):
    """A grouping with one model per category has no category pair of 2 model pairs: skipped,
    with the reason; a key the models do not record is neither usable nor skipped (without the
    rule it was listed as skipped, 'no coord', among what the run's summary says it left out)."""
    from repsim.consistency import defined_groupings

    sim = make_sim(rng)
    sim = sim.assign_coords(unique_a=("model_a", MODELS), unique_b=("model_b", MODELS))
    usable, skipped = defined_groupings(
        sim.to_dataset(), keys=("objective", "unique", "size", "architecture_class")
    )
    assert usable == ["objective", "architecture_class"]
    assert len(skipped) == 1 and skipped[0].startswith("consistency by unique: no unique")


def test_architecture_mix_leaves_an_undefined_dataset_pair_out_of_the_mean():
    """Objective A's three pairs have one similarity on d1: every r with d1 is undefined, and its
    'all' consistency is the mean of the other three dataset pairs' r (np.mean gave NaN)."""
    from repsim.consistency import architecture_mix

    sim = make_sim(rng=np.random.default_rng(5))
    S = sim.values.copy()
    for f, g in [(0, 1), (0, 2), (1, 2)]:  # a1, a2, a3
        S[1, f, g] = S[1, g, f] = 0.5
    sim = sim.copy(data=S)
    mix = architecture_mix(sim, min_pairs=3)
    r = by_hand(sim.isel(dataset=[0, 2, 3]), [("a1", "a2"), ("a1", "a3"), ("a2", "a3")])
    assert mix.loc["A", "all"] == pytest.approx(r[np.triu_indices(3, k=1)].mean(), abs=1e-12)


def test_consistency_summary_leaves_out_a_label_without_a_defined_value():
    from repsim.consistency import consistency_summary

    tidy = pd.DataFrame(
        {
            "group_by": "objective",
            "label": ["A | A", "A | A", "A | B", "A | B"],
            "consistency": [0.5, 0.7, np.nan, np.nan],
        }
    )
    out = consistency_summary(tidy)
    assert out["label"].tolist() == ["A | A"] and out["n"].tolist() == [2]


def test_anchor_table_reads_missing_anchor_metadata_as_unknown(rng):
    """An anchor whose objective was not recorded ('') is of kind 'unknown' in the table, the
    value the rank-sum tests leave out; kept as '' it would read as a category of its own."""
    from repsim.consistency import anchor_table

    obj = ["A", "", "A", "B", "B", "C"]
    sim = make_sim(rng).assign_coords(objective_a=("model_a", obj), objective_b=("model_b", obj))
    table = anchor_table(consistency_dataset(sim.to_dataset(), by=()), "cka_linear")
    kinds = table.drop_duplicates("anchor").set_index("anchor")["category"]
    assert kinds.to_dict() == {
        "a1": "A",
        "a2": "unknown",
        "a3": "A",
        "b1": "B",
        "b2": "B",
        "c1": "C",
    }


def test_a_model_named_twice_is_refused(rng):
    """A model listed twice (two runs' arrays concatenated) would add its pairs twice and pair
    it with its own copy at similarity 1; refused by name (no test gave one: the check could go)."""
    sim = make_sim(rng)
    twice = sim.isel(model_a=[0, 1, 2, 3, 4, 5, 0], model_b=[0, 1, 2, 3, 4, 5, 0])
    with pytest.raises(InputError, match=r"unique, but \['a1'\] occur more than once"):
        consistency(twice)


def test_one_model_id_given_as_a_string_is_a_set_of_one(rng):
    """``models_a="a1"`` is the model a1, not the models 'a' and '1'."""
    sim = make_sim(rng)
    xr.testing.assert_identical(consistency(sim, models_a="a1"), consistency(sim, models_a=["a1"]))
    xr.testing.assert_identical(anchor_consistency(sim, "a1"), anchor_consistency(sim, ["a1"]))


def test_dataset_coords_are_carried_on_both_dataset_dims(rng):
    """As documented: the dataset's domain is on dataset_a as domain_a and on dataset_b as
    domain_b, so a consistency matrix can be labelled on both axes without the run."""
    out = consistency(make_sim(rng))
    assert out["domain_a"].dims == ("dataset_a",) and out["domain_b"].dims == ("dataset_b",)
    assert list(out["domain_b"].values) == ["nat", "nat", "spec", "struct"]


def test_categories_from_a_plain_coord_or_a_complete_mapping(rng):
    """Categories come from ``<by>_a`` on model_a, or from a coord named ``<by>`` there; a
    mapping that lacks a model is refused by name (without the check: a bare KeyError)."""
    sim = make_sim(rng)
    plain = sim.drop_vars(["objective_a", "objective_b"]).assign_coords(objective=("model_a", OBJ))
    xr.testing.assert_identical(
        grouped_consistency(plain, "objective"), grouped_consistency(sim, "objective")
    )
    with pytest.raises(InputError, match=r"mapping has no category for 1 model\(s\) .*: c1; give"):
        grouped_consistency(sim, dict(zip(MODELS[:-1], OBJ)))
