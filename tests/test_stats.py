"""The controlled tests of repsim.stats on synthetic 45-model zoos with a known answer.

The synthetic zoo crosses 5 objectives (SimCLR and Barlow Twins both Self-Supervised, Random as a
control) x 3 architectures x 3 seeds, like the mini-zoo. Each model pair has a stable similarity
plus dataset-specific noise whose size is set per model by one factor: the factor that sets the
noise drives how consistent a category pair's similarities are across datasets.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from repsim import sentences as T
from repsim import stats
from repsim.consistency import grouped_consistency
from repsim.errors import InputError

OBJECTIVES = {
    "supervised": ("Supervised", "Cross-entropy"),
    "simclr": ("Self-Supervised", "SimCLR"),
    "barlow": ("Self-Supervised", "Barlow Twins"),
    "clip": ("Image-Text", "CLIP"),
    "random": ("Random", "Random init"),
}
ARCHS = {"cnn": "Convolutional", "mlp": "MLP", "vit": "Transformer"}
NOISE = {
    "objective": {"Cross-entropy": 0.3, "SimCLR": 0.02, "Barlow Twins": 0.06, "CLIP": 0.15},
    "architecture": {"Convolutional": 0.02, "MLP": 0.3, "Transformer": 0.12},
}
FAST = {"n_permutations": 199, "n_bootstrap": 49, "n_null": 9}


def make_zoo(seed: int, driver: str | None, n_datasets: int = 8, seed_coord: bool = False):
    """A (dataset, model_a, model_b) similarity Dataset whose consistency is driven by ``driver``."""
    rng = np.random.default_rng(seed)
    rows = [(a, o, s) for a in ARCHS for o in OBJECTIVES for s in range(3)]
    ids = [f"{a}-{o}-s{s}" for a, o, s in rows]
    objective = [OBJECTIVES[o][0] for _, o, _ in rows]
    method = [OBJECTIVES[o][1] for _, o, _ in rows]
    arch = [ARCHS[a] for a, _, _ in rows]
    if driver == "objective":
        sigma = np.array([NOISE["objective"].get(m, 0.2) for m in method])
    elif driver == "architecture":
        sigma = np.array([NOISE["architecture"][a] for a in arch])
    else:
        sigma = np.full(len(ids), 0.15)
    M = len(ids)
    base = rng.uniform(0.2, 0.8, (M, M))
    base = (base + base.T) / 2
    noise = rng.normal(size=(n_datasets, M, M)) * ((sigma[:, None] + sigma[None]) / 2)
    S = base[None] + noise
    S = (S + S.transpose(0, 2, 1)) / 2
    S[:, np.arange(M), np.arange(M)] = 1.0
    coords = {"dataset": [f"d{i}" for i in range(n_datasets)], "model_a": ids, "model_b": ids}
    for name, values in (
        ("objective", objective),
        ("method", method),
        ("architecture_class", arch),
    ):
        coords[f"{name}_a"] = ("model_a", values)
        coords[f"{name}_b"] = ("model_b", values)
    if seed_coord:
        coords["seed_a"] = ("model_a", [s + 10 for _, _, s in rows])
    return xr.Dataset({"cka_linear": (("dataset", "model_a", "model_b"), S)}, coords=coords)


@pytest.fixture(scope="module")
def objective_table() -> pd.DataFrame:
    return stats.controlled_tests(make_zoo(0, "objective"), seed=1, **FAST)


@pytest.fixture(scope="module")
def null_table() -> pd.DataFrame:
    return stats.controlled_tests(make_zoo(0, None), seed=1, **FAST)


def _row(table: pd.DataFrame, analysis: str, factor: str, view: str = "separate") -> pd.Series:
    sel = table[(table.analysis == analysis) & (table.factor == factor) & (table.view == view)]
    assert len(sel) == 1
    return sel.iloc[0]


@pytest.fixture
def uncorrected(monkeypatch):
    """Tests that fix the bootstrap draws to check what is read off them (tails, undefined
    draws, the redraw) take them as drawn; the bias correction has its own tests."""
    monkeypatch.setattr(
        stats, "bias_corrected_draws", lambda draws, estimate: (np.array(draws, float), 0.0)
    )


# ------------------------------------------------------------------------------------------ design
def test_design_splits_ssl_methods_and_marks_controls():
    d = stats.design_table(make_zoo(0, None))
    assert d.loc["cnn-simclr-s2", "objective"] == "SimCLR"
    assert d.loc["cnn-barlow-s0", "objective"] == "Barlow Twins"
    assert d.loc["cnn-barlow-s0", "objective_pooled"] == "Self-Supervised"
    assert d.loc["vit-supervised-s1", "objective"] == "Supervised"
    assert d.loc["mlp-clip-s1", "seed"] == 1
    assert d["control"].sum() == 9 and d.loc[d.control, "objective"].eq("Random").all()
    assert (d[~d.control].groupby("objective").size() == 9).all()


def test_design_prefers_a_seed_coord():
    d = stats.design_table(make_zoo(0, None, seed_coord=True))
    assert d.loc["mlp-clip-s1", "seed"] == 11


# -------------------------------------------------------------------------- category-pair engine
def test_a_model_without_a_seed_is_named_with_the_fix():
    """The error asked for "a seed_a coord", which a config cannot add, and said nothing of the
    metadata.seed a user had set."""
    sim = make_zoo(0, None)
    renamed = sim.assign_coords(model_a=[str(m).replace("-s", "-r") for m in sim.model_a.values])
    with pytest.raises(InputError, match="name them '<id>-s<N>' \\(metadata.seed is a note"):
        stats.design_table(renamed)


def test_engine_matches_grouped_consistency():
    """Mean consistency per category pair equals the mean over dataset pairs of consistency()."""
    sim = make_zoo(3, "objective", n_datasets=5)["cka_linear"]
    d = stats.design_table(sim)
    trained = d.index[~d.control]
    sub = sim.sel(model_a=trained, model_b=trained)
    ref = grouped_consistency(sub, by=dict(zip(trained, d.loc[trained, "objective"])))
    codes, levels = stats._codes(d.loc[trained, "objective"].tolist())
    pos = np.flatnonzero(~d.control.to_numpy())
    engine = stats._Engine(sim.values, pos, np.arange(5))
    mean, n = engine.means(codes, len(levels))
    iu = np.triu_indices(5, k=1)
    for k in range(ref.sizes["group_pair"]):
        a, b = str(ref.group_a.values[k]), str(ref.group_b.values[k])
        i, j = sorted((levels.index(a), levels.index(b)))
        assert n[i, j] == int(ref.n_pairs.values[k])
        expected = float(np.mean(ref.isel(group_pair=k).values[iu]))
        assert mean[i, j] == pytest.approx(expected, abs=1e-12)


def test_engine_with_repeated_models_and_datasets_by_hand():
    """Bootstrap samples: copies of one model are never paired, copies of one dataset never compared."""
    rng = np.random.default_rng(5)
    D, M = 4, 7
    S = rng.uniform(size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    idx = np.array([0, 0, 1, 2, 3, 3, 4, 5, 6])
    didx = np.array([0, 0, 1, 3])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1])  # the last model is left out
    engine = stats._Engine(S, idx, didx)
    mean, n = engine.means(labels, 2)
    for ca, cb in ((0, 0), (0, 1), (1, 1)):
        pairs = [
            (p, q)
            for p, q in combinations(range(idx.size), 2)
            if idx[p] != idx[q] and {labels[p], labels[q]} == {ca, cb}
        ]
        rs = []
        for x, y in combinations(range(didx.size), 2):
            if didx[x] == didx[y]:
                continue
            va = np.array([S[didx[x], idx[p], idx[q]] for p, q in pairs])
            vb = np.array([S[didx[y], idx[p], idx[q]] for p, q in pairs])
            rs.append(np.corrcoef(va, vb)[0, 1])
        assert n[ca, cb] == len(pairs)
        assert engine.n_dataset_pairs == len(rs) == 5
        assert mean[ca, cb] == pytest.approx(np.mean(rs), abs=1e-12)


def test_engine_gives_no_correlation_for_copies_of_one_model_pair():
    """A category pair whose model pairs are copies of one (the engine accepts repeated models)
    has constant similarities: r is undefined (raw sums left a rounding residue that the clip
    turned into values from -1 to 1)."""
    rng = np.random.default_rng(1)
    D, M = 5, 4
    S = rng.uniform(0.2, 0.9, size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    idx = np.array([0, 1, 1, 1, 2, 3])
    labels = np.array([0, 1, 1, 1, 1, 1])
    mean, n = stats._Engine(S, idx, np.arange(D)).means(labels, 2)
    assert np.isfinite(mean[0, 1]) and n[0, 1] == 5  # (0,1) three times, (0,2), (0,3)
    idx = np.array([0, 1, 1, 1])
    mean, n = stats._Engine(S, idx, np.arange(D)).means(np.array([0, 1, 1, 1]), 2)
    assert np.isnan(mean[0, 1]) and n[0, 1] == 3
    for seed in range(200):  # every draw of copies of one pair: no finite r
        S = np.random.default_rng(seed).uniform(size=(D, M, M))
        S = (S + S.transpose(0, 2, 1)) / 2
        mean, _ = stats._Engine(S, np.array([2, 3, 3, 3]), np.arange(D)).means(
            np.array([0, 1, 1, 1]), 2
        )
        assert np.isnan(mean[0, 1])


def test_a_dataset_pair_with_an_undefined_r_is_left_out_of_the_mean():
    """A category pair whose similarities are constant on one dataset has no r for that dataset's
    pairs: its mean consistency is that of the other dataset pairs, not undefined (one flat
    dataset would otherwise erase the category pair from the statistic)."""
    rng = np.random.default_rng(4)
    D, M = 4, 6
    S = rng.uniform(0.2, 0.9, size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    labels = np.array([0, 0, 0, 1, 1, 1])
    S[2][np.ix_(labels == 0, labels == 1)] = 0.5  # every 0 | 1 pair the same on dataset 2
    S[2][np.ix_(labels == 1, labels == 0)] = 0.5
    mean, n = stats._Engine(S, np.arange(M), np.arange(D)).means(labels, 2)
    pairs = [(p, q) for p, q in combinations(range(M), 2) if labels[p] != labels[q]]
    rs = [
        np.corrcoef([S[x, p, q] for p, q in pairs], [S[y, p, q] for p, q in pairs])[0, 1]
        for x, y in combinations(range(D), 2)
        if 2 not in (x, y)
    ]
    assert n[0, 1] == len(pairs) == 9 and len(rs) == 3
    assert mean[0, 1] == pytest.approx(np.mean(rs), abs=1e-12)
    assert np.isfinite(mean[0, 0]) and np.isfinite(mean[1, 1])  # the other pairs are untouched


# ---------------------------------------------------------------------- permutation within strata
def test_permutations_stay_within_strata():
    strata = np.repeat(["s0", "s1", "s2", "s3", "s4"], 4)[np.random.default_rng(0).permutation(20)]
    labels = np.arange(20)  # one label per model: any move across strata would show
    seen: list[np.ndarray] = []

    def record(perm: np.ndarray) -> float:
        seen.append(perm.copy())
        return float(perm[0])

    res = stats.stratified_permutation_test(labels, strata, record, n_resamples=300, rng=0)
    assert len(seen) > 300 and res.null_distribution.size == 300
    for perm in seen:
        for s in set(strata):
            members = np.flatnonzero(strata == s)
            assert sorted(perm[members]) == sorted(labels[members])
    assert any((perm != labels).any() for perm in seen)


def test_permutation_enumerates_small_designs_exactly():
    labels = np.array(["A", "B", "A", "B"])
    strata = np.array([0, 0, 1, 1])
    res = stats.stratified_permutation_test(
        labels, strata, lambda p: float((p == np.array(["A", "B", "A", "B"])).sum()), rng=0
    )
    assert sorted(res.null_distribution.tolist()) == [0.0, 2.0, 2.0, 4.0]  # all (2!)^2 labellings
    assert res.pvalue == pytest.approx(0.25)


def test_unequal_strata_are_refused():
    with pytest.raises(InputError, match="equal size"):
        stats.stratified_permutation_test([0, 1, 0], [0, 0, 1], lambda p: 0.0)


# -------------------------------------------------------------------------------- the analysis
def test_objective_driven_zoo_is_detected(objective_table):
    o = _row(objective_table, "factor", "objective")
    a = _row(objective_table, "factor", "architecture")
    d = _row(objective_table, "difference", "objective - architecture")
    # the observed statistic lies far outside its null (z > 5): p is the smallest reachable
    assert o["z"] > 5 and o["p_value"] <= 2 / 200
    assert a["p_value"] > 0.05
    assert d["ci_low"] > 0 and o["ci_low"] > 0
    assert d["estimate"] == pytest.approx(o["estimate"] - a["estimate"])
    sentence = stats.answer(objective_table)
    assert "objective explains" in sentence and "more than architecture does" in sentence
    assert "No evidence" not in sentence and "p = 0.005" in sentence
    # SimCLR pairs have the least noise: the most consistent category pair
    pairs = objective_table[
        (objective_table.analysis == "category_pair")
        & (objective_table.factor == "objective")
        & (objective_table.view == "separate")
    ]
    best = pairs.loc[pairs.estimate.idxmax()]
    assert (best.group_a, best.group_b) == ("SimCLR", "SimCLR")
    assert len(pairs) == 10 and (pairs.ci_low <= pairs.estimate).all()
    assert (pairs.estimate <= pairs.ci_high).all()


def test_factor_statistic_and_excess_sd_by_their_definitions(objective_table):
    """T_F is the variance (ddof 0) of the reported category-pair means; the excess SD is
    sign(d) sqrt(|d|) with d = T_F - mean of the null."""
    # min_pairs 50 leaves out the same-objective pairs (36 model pairs each), not the others (81)
    sparse = stats.controlled_tests(make_zoo(0, "objective"), seed=1, min_pairs=50, **FAST)
    for t in (objective_table, sparse):
        _check_factor_rows(t)
    n_obj = (sparse.analysis == "category_pair") & (sparse.factor == "objective")
    n_obj &= sparse.view == "separate"
    assert (sparse[n_obj].group_a != sparse[n_obj].group_b).all()
    assert _row(sparse, "factor", "objective").n_model_pairs == 6  # category pairs counted


def test_a_category_pair_with_exactly_min_pairs_model_pairs_counts():
    """min_pairs is the fewest model pairs a category pair needs: with 36, the same-objective
    pairs (36 model pairs each) are reported, enter T and are counted, as with 3."""
    at_floor = stats.controlled_tests(make_zoo(0, "objective"), seed=1, min_pairs=36, **FAST)
    _check_factor_rows(at_floor)
    pairs = at_floor[
        (at_floor.analysis == "category_pair")
        & (at_floor.factor == "objective")
        & (at_floor.view == "separate")
    ]
    assert len(pairs) == 10 and (pairs.group_a == pairs.group_b).sum() == 4
    assert _row(at_floor, "factor", "objective").n_model_pairs == 10


def _check_factor_rows(t: pd.DataFrame) -> None:
    for factor, view in (
        ("objective", "separate"),
        ("objective", "pooled"),
        ("architecture", "separate"),
    ):
        row = _row(t, "factor", factor, view)
        pairs = t[(t.analysis == "category_pair") & (t.factor == factor) & (t.view == view)]
        means = pairs.estimate.to_numpy()
        assert row.statistic == pytest.approx(((means - means.mean()) ** 2).mean(), rel=1e-9)
        d = row.statistic - row.null_mean
        assert row.estimate == pytest.approx(np.sign(d) * abs(d) ** 0.5, rel=1e-12)


def test_pooled_view_merges_self_supervised(objective_table):
    pooled = objective_table[
        (objective_table.view == "pooled")
        & (objective_table.analysis == "category_pair")
        & (objective_table.factor == "objective")
    ]
    assert len(pooled) == 6
    ssl = pooled[(pooled.group_a == "Self-Supervised") & (pooled.group_b == "Self-Supervised")]
    assert int(ssl.n_model_pairs.iloc[0]) == 18 * 17 // 2
    assert "SimCLR and Barlow Twins pooled" in stats.answer(objective_table, view="pooled")


def test_random_is_a_control_not_an_objective(objective_table):
    t = objective_table
    assert not t[(t.factor == "objective")][["group_a", "group_b"]].isin(["Random"]).any().any()
    ctrl = t[(t.factor == "control") & (t.view == "separate")]
    assert set(ctrl.group_a) | set(ctrl.group_b) >= {"Random"}
    assert len(ctrl) == 5  # Random with itself and with each of the 4 trained objectives
    assert (_row(t, "factor", "objective")["n_models"]) == 36


def test_seed_rows_and_spread(objective_table):
    """Seed rows leave one seed's models out (24 of the 36 trained models), so they estimate the
    category-pair mean itself; the spread is their jackknife standard error."""
    t = objective_table[objective_table.view == "separate"]
    seeds = t[t.analysis == "seed"]
    assert set(seeds.seed) == {0, 1, 2} and (seeds.n_models == 24).all()
    assert (t[t.analysis != "seed"].seed == -1).all()  # no row of another analysis reads as seed 0
    spread = t[t.analysis == "seed_spread"]
    assert len(spread) == 10
    for _, row in spread.iterrows():
        vals = seeds[(seeds.group_a == row.group_a) & (seeds.group_b == row.group_b)].estimate
        k = len(vals)
        jackknife = np.sqrt((k - 1) / k * ((vals - vals.mean()) ** 2).sum())
        assert k == 3 and row.estimate == pytest.approx(jackknife)
        assert row.seed_min == pytest.approx(vals.min()) and row.seed_max == pytest.approx(
            vals.max()
        )


def test_a_pair_undefined_without_some_seed_has_no_jackknife():
    """The jackknife needs the pair's mean with each seed left out: where some leave-one-out has
    too few model pairs, the spread is undefined (its seed rows and range are still given)."""
    sim = make_zoo(0, "objective")["cka_linear"]
    gone = ["cnn-clip-s0", "mlp-clip-s0", "cnn-clip-s1"]  # CLIP keeps 1, 2 and 3 models by seed
    sim = sim.drop_sel(model_a=gone, model_b=gone)
    prep = stats._prepare(sim, stats.CONTROLS, min_pairs=5)
    rows = pd.DataFrame(stats._seed_rows(prep, {}, "separate"))
    clip = rows[(rows.group_a == "Image-Text") & (rows.group_b == "Image-Text")]
    # without seed 0: 5 CLIP models, 10 pairs; without seed 1: 4, 6; without seed 2: 3, 3 (< 5)
    seeds = clip[clip.analysis == "seed"]
    assert sorted(seeds.seed) == [0, 1] and sorted(seeds.n_model_pairs) == [6, 10]
    spread = clip[clip.analysis == "seed_spread"].iloc[0]
    assert np.isnan(spread.estimate) and spread.n_models == 2
    assert (spread.seed_min, spread.seed_max) == (seeds.estimate.min(), seeds.estimate.max())
    others = rows[(rows.analysis == "seed_spread") & (rows.group_b != "Image-Text")]
    assert len(others) and np.isfinite(others.estimate).all()


def test_two_seeds_give_no_leave_one_seed_out_value():
    """With two seeds, one seed's models have no pair of one architecture and two seeds: no
    objective pair keeps its mix, so no seed row, no spread, and the chapter says why."""
    from repsim import analysis as A
    from repsim import sentences as T

    sim = make_zoo(0, "objective")
    two = [str(m) for m in sim.model_a.values if not str(m).endswith("-s2")]
    table = stats.controlled_tests(sim.sel(model_a=two, model_b=two), seed=1, **FAST)
    assert not table.analysis.isin(["seed", "seed_spread"]).any()
    assert len(table[table.analysis == "category_pair"])  # the rest is there
    spread = A.seed_spread_table(table, "cka_linear")
    assert spread.empty and "cannot be said on this run" in T.seed_spread_text(spread)
    full = A.seed_spread_table(stats.controlled_tests(sim, seed=1, **FAST), "cka_linear")
    assert len(full) == 10 and T.seed_spread_text(full) == ""
    pairs = full.set_index(["group_a", "group_b"])
    assert pairs.loc[("SimCLR", "SimCLR"), "seeds"] == 3
    assert np.isfinite(pairs["all seeds"]).all()


def test_architecture_pairs_are_the_same_in_both_views(objective_table):
    """Pooling SimCLR and Barlow Twins changes objective's categories only: architecture's
    category pairs are reported in both views, with the same numbers."""
    t = objective_table[
        (objective_table.analysis == "category_pair") & (objective_table.factor == "architecture")
    ]
    cols = ["group_a", "group_b", "estimate", "ci_low", "ci_high", "n_model_pairs"]
    separate, pooled = (t[t.view == v][cols].reset_index(drop=True) for v in stats.VIEWS)
    assert len(separate) == 6
    pd.testing.assert_frame_equal(separate, pooled)


def _weighted_r(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    mx, my = np.sum(w * x) / w.sum(), np.sum(w * y) / w.sum()
    cov = np.sum(w * (x - mx) * (y - my))
    return cov / np.sqrt(np.sum(w * (x - mx) ** 2) * np.sum(w * (y - my) ** 2))


def _seed_row_by_hand(S, design, group_a, group_b, seed, col="objective"):
    """A seed row written out: the pairs of the category pair among the trained models of the
    other seeds, each weighted by (its kind's share among the pair's pairs in the full design)
    / (its share among those left), kinds being (same architecture, same seed); the weighted
    Pearson r per dataset pair, averaged over dataset pairs. Returns (mean, number of pairs)."""
    import itertools

    ids = list(design.index)
    trained = [k for k, m in enumerate(ids) if not design.loc[m, "control"]]

    def pairs_of(models):
        out = []
        for i, j in itertools.combinations(models, 2):
            labels = sorted((design.loc[ids[i], col], design.loc[ids[j], col]))
            if labels == sorted((group_a, group_b)):
                a, b = design.loc[ids[i]], design.loc[ids[j]]
                out.append((i, j, (a.architecture == b.architecture, a.seed == b.seed)))
        return out

    full = pairs_of(trained)
    kept = pairs_of([k for k in trained if design.loc[ids[k], "seed"] != seed])
    share_full = {k: sum(p[2] == k for p in full) / len(full) for k in {p[2] for p in full}}
    share_kept = {k: sum(p[2] == k for p in kept) / len(kept) for k in {p[2] for p in kept}}
    ia = np.array([p[0] for p in kept])
    ib = np.array([p[1] for p in kept])
    w = np.array([share_full[p[2]] / share_kept[p[2]] for p in kept])
    rs = [
        _weighted_r(S[d1, ia, ib], S[d2, ia, ib], w)
        for d1, d2 in itertools.combinations(range(S.shape[0]), 2)
    ]
    return float(np.mean(rs)), len(kept)


def test_seed_rows_recompute_the_category_pair_mean_without_that_seed(objective_table):
    """A seed row is the category pair's mean consistency over the other seeds' models, each
    model pair weighted so that same/other architecture and seed keep their full-design shares
    (written out in float64 here), and each is near the full estimate."""
    sim = make_zoo(0, "objective")
    S = sim["cka_linear"].values
    design = stats.design_table(sim)
    t = objective_table[objective_table.view == "separate"]
    reweighted = 0
    for _, row in t[t.analysis == "seed"].iterrows():
        mean, n = _seed_row_by_hand(S, design, row.group_a, row.group_b, row.seed)
        assert row.estimate == pytest.approx(mean, abs=1e-12), (row.group_a, row.seed)
        assert row.n_model_pairs == n
        reweighted += row.group_a == row.group_b
    assert reweighted == 12  # 4 objectives with themselves x 3 seeds: weights other than 1
    full = t[t.analysis == "category_pair"].set_index(["group_a", "group_b"]).estimate
    loo = t[t.analysis == "seed"].groupby(["group_a", "group_b"]).estimate.mean()
    assert np.abs(loo - full.reindex(loo.index)).max() < 0.1


def test_leaving_a_seed_out_keeps_the_estimand():
    """Where a pair's similarity depends only on its category pair and its kind (same or other
    architecture and seed), on each dataset, every leave-one-seed-out value equals the full
    estimate: the weights give each kind its full share. Unweighted, a within-objective value
    moves (9 of 36 pairs share an architecture with three seeds, 3 of 15 with two)."""
    import itertools

    sim = make_zoo(0, "objective")["cka_linear"]
    design = stats.design_table(sim).loc[[str(m) for m in sim.model_a.values]]
    rng = np.random.default_rng(3)
    objectives = sorted(set(design.objective))
    values = rng.normal(size=(sim.sizes["dataset"], len(objectives), len(objectives), 2, 2))
    values[..., 1, :] += 1.0  # same-architecture pairs the more similar, as in a real zoo
    S = np.ones(sim.shape)
    for f, g in itertools.permutations(range(len(design)), 2):
        a, b = design.iloc[f], design.iloc[g]
        i, j = sorted((objectives.index(a.objective), objectives.index(b.objective)))
        kind = (int(a.architecture == b.architecture), int(a.seed == b.seed))
        S[:, f, g] = values[:, i, j, kind[0], kind[1]]
    table = stats.controlled_tests(sim.copy(data=S), seed=1, **FAST)
    t = table[table.view == "separate"]
    full = t[t.analysis == "category_pair"].set_index(["group_a", "group_b"]).estimate
    seeds = t[t.analysis == "seed"]
    assert len(seeds) == 30
    for _, row in seeds.iterrows():
        assert row.estimate == pytest.approx(full[(row.group_a, row.group_b)], abs=1e-9)
    # the same without weights: the within-objective values are other numbers
    ids = list(design.index)
    kept = [k for k in range(len(ids)) if design.iloc[k].seed != 0 and not design.iloc[k].control]
    clip = [k for k in kept if design.iloc[k].objective == "Image-Text"]
    ia, ib = np.array(list(itertools.combinations(clip, 2))).T
    plain = np.mean(
        [
            np.corrcoef(S[d1, ia, ib], S[d2, ia, ib])[0, 1]
            for d1, d2 in itertools.combinations(range(S.shape[0]), 2)
        ]
    )
    assert abs(plain - full[("Image-Text", "Image-Text")]) > 1e-3  # 0.0045: far outside 1e-9


def test_nothing_drives_consistency(null_table):
    o = _row(null_table, "factor", "objective")
    a = _row(null_table, "factor", "architecture")
    assert o["p_value"] > 0.05 and a["p_value"] > 0.05
    sentence = stats.answer(null_table)
    assert "no evidence that objective explains" in sentence
    assert stats.factor_sentence(o).startswith("No evidence that objective explains")


def test_architecture_driven_zoo_reads_the_other_way():
    # 699 resamples of 12 datasets: the expanded interval's raw alpha is then 0.0215, and a raw
    # bootstrap p of 0 is within Monte Carlo error of it up to 610 resamples
    table = stats.controlled_tests(
        make_zoo(2, "architecture", n_datasets=12), seed=1, **{**FAST, "n_bootstrap": 699}
    )
    a = _row(table, "factor", "architecture")
    o = _row(table, "factor", "objective")
    assert a["p_value"] <= 2 / 200 and o["p_value"] > 0.05
    assert "architecture explains" in stats.answer(table)
    assert stats.factor_sentence(a).startswith("Architecture explains")


def test_bootstrap_resamples_datasets_only(monkeypatch):
    """scipy's bootstrap gets the datasets (not dataset pairs, not seeds): the models stay fixed."""
    calls = []
    real = stats.bootstrap

    def spy(data, statistic, **kw):
        calls.append([np.asarray(x) for x in data])
        return real(data, statistic, **kw)

    monkeypatch.setattr(stats, "bootstrap", spy)
    sim = make_zoo(0, "objective", n_datasets=6)
    stats.controlled_tests(sim, n_permutations=19, n_bootstrap=9, n_null=4, min_datasets=3)
    (data,) = calls
    assert len(data) == 1
    np.testing.assert_array_equal(data[0], np.arange(6))  # 6 datasets, not 15 dataset pairs


def test_factor_permutations_keep_the_other_factor_and_the_seed(monkeypatch):
    """Objective labels move only among models of one architecture and seed, and the reverse."""
    calls = []
    real = stats.stratified_permutation_test

    def spy(labels, strata, statistic, **kw):
        calls.append(np.asarray(strata))
        return real(labels, strata, statistic, **kw)

    monkeypatch.setattr(stats, "stratified_permutation_test", spy)
    sim = make_zoo(0, "objective", n_datasets=5)
    stats.controlled_tests(sim, n_permutations=19, n_bootstrap=9, n_null=4, min_datasets=3)
    design = stats.design_table(sim)
    trained = design[~design["control"]].reset_index(drop=True)  # 4 objectives x 3 archs x 3 seeds
    # the first three test the data as observed: objective (separate, pooled), architecture
    for strata, kept, size in zip(
        calls[:3], ("architecture", "architecture", "objective"), (4, 4, 3)
    ):
        assert strata.size == len(trained) == 36
        groups = trained.groupby(strata)
        assert groups.ngroups == 36 // size and (groups.size() == size).all()
        assert groups[[kept, "seed"]].nunique().eq(1).all().all()


def test_bias_corrected_draws_by_hand():
    """Each draw minus twice (mean of the finite draws - estimate); NaN draws stay NaN; nothing
    to correct without a finite draw or a defined estimate."""
    draws, bias = stats.bias_corrected_draws([1.0, 2.0, np.nan, 3.0, 6.0], 2.0)
    assert bias == 1.0
    np.testing.assert_array_equal(draws, [-1.0, 0.0, np.nan, 1.0, 4.0])
    for raw, estimate in (([np.nan, np.nan], 0.5), ([1.0, 2.0], np.nan), ([], 0.0)):
        same, bias = stats.bias_corrected_draws(raw, estimate)
        np.testing.assert_array_equal(same, raw)
        assert np.isnan(bias)


def test_bias_correction_removes_the_bias_of_a_plug_in_variance():
    """The plug-in variance of n values (ddof 0) is biased by -var / n, and the bootstrap
    reproduces it: its draws average (n - 1) / n of the estimate. So the bias found is -var0 / n
    and the corrected draws centre on var0 (n + 1) / n, near the unbiased (n / (n - 1)) var0; a
    correction of the wrong sign would centre them on var0 (n - 3) / n."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=10)
    var0 = x.var()
    boots = x[rng.integers(0, 10, (400_000, 10))].var(axis=1)  # bias's MC error: 0.6%
    draws, bias = stats.bias_corrected_draws(boots, var0)
    assert bias == pytest.approx(-var0 / 10, rel=0.05)
    assert np.mean(draws) == pytest.approx(var0 * 11 / 10, rel=0.01)


def test_factor_and_difference_intervals_are_bias_corrected(monkeypatch):
    """controlled_tests corrects the draws of the three excess SDs and the two differences about
    the estimates it reports: each row's bias is the mean of its draws minus its estimate, its
    interval the percentile interval of the draws minus twice that, and the difference p is read
    off the same draws (so interval and p still agree); category-pair means are left as drawn."""
    calls, real = [], stats.bias_corrected_draws

    def spy(draws, estimate):
        out = real(draws, estimate)
        calls.append((np.array(draws, float), estimate, out))
        return out

    monkeypatch.setattr(stats, "bias_corrected_draws", spy)
    D = 10
    table = stats.controlled_tests(make_zoo(2, "objective", n_datasets=D), **FAST)
    assert len(calls) == 5
    rows = table[table.analysis.isin(["factor", "difference"])]
    assert len(rows) == 6  # architecture in both views
    for row in rows.itertuples():
        (raw, _, (shifted, bias)), *others = [c for c in calls if c[1] == row.estimate]
        assert all(o[2][1] == bias for o in others)
        finite = raw[np.isfinite(raw)]
        assert row.bias == bias == pytest.approx(finite.mean() - row.estimate)
        assert bias != 0.0
        low, high, n = stats.percentile_interval(raw - 2 * bias, 0.95, n_units=D)
        assert (row.ci_low, row.ci_high, row.n_bootstrap) == (low, high, n)
        if row.analysis == "difference":
            assert row.p_value == stats.bootstrap_p(raw - 2 * bias, D)[0]
    pairs = table[table.analysis == "category_pair"]
    assert pairs["bias"].isna().all() and len(pairs) > 0


def test_difference_p_is_two_sided(monkeypatch, uncorrected):
    """The p of objective minus architecture is twice the smaller tail of its bootstrap
    distribution (with 3 of 100 resamples at or below zero, 0.06), put on the expanded scale of
    5 datasets: the p whose t quantile with 4 degrees of freedom is the normal quantile of 0.06
    shrunk by sqrt(4 / 5)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    real = stats.bootstrap

    def fixed_distribution(data, statistic, **kw):
        res = real(data, statistic, **kw)
        k = np.atleast_2d(res.bootstrap_distribution).shape[0]
        tail = np.tile(np.r_[-np.ones(3), np.ones(97)], (k, 1))
        return SimpleNamespace(
            bootstrap_distribution=tail, confidence_interval=res.confidence_interval
        )

    monkeypatch.setattr(stats, "bootstrap", fixed_distribution)
    sim = make_zoo(0, "objective", n_datasets=5)
    table = stats.controlled_tests(
        sim, n_permutations=19, n_bootstrap=100, n_null=4, min_datasets=3
    )
    diff = table[table.analysis == "difference"]
    expanded = 2 * student_t.sf(norm.isf(0.03) * math.sqrt(4 / 5), 4)
    assert len(diff) == 2 and np.allclose(diff.p_value, expanded) and expanded > 0.16


def test_intervals_rest_on_the_draws_that_leave_the_estimate_defined(monkeypatch, uncorrected):
    """Undefined draws (NaN) are left out of every interval and counted out of n_bootstrap; the
    interval is the percentile interval of the others (scipy's would be NaN)."""
    real = stats.bootstrap
    defined = np.linspace(0.0, 1.0, 90)

    def with_undefined_draws(data, statistic, **kw):
        res = real(data, statistic, **kw)
        k = np.atleast_2d(res.bootstrap_distribution).shape[0]
        draws = np.tile(np.r_[np.full(10, np.nan), defined], (k, 1))
        return SimpleNamespace(bootstrap_distribution=draws, confidence_interval=None)

    monkeypatch.setattr(stats, "bootstrap", with_undefined_draws)
    sim = make_zoo(0, "objective", n_datasets=5)
    table = stats.controlled_tests(
        sim, n_permutations=19, n_bootstrap=100, n_null=4, min_datasets=3
    )
    boot = table[table.analysis.isin(["factor", "difference", "category_pair"])]
    assert len(boot) > 10
    # ceil(90 x (1 - level) / 2) at the expanded level of 5 datasets (0.998): the extreme draws
    c = math.ceil(90 * (1 - stats.expanded_level(0.95, 5)) / 2)
    assert (
        c == 1 and np.allclose(boot.ci_low, defined[0]) and np.allclose(boot.ci_high, defined[-1])
    )
    assert (boot.n_bootstrap == 90).all()


def test_few_datasets_give_intervals_without_a_warning():
    """With 3 datasets, 1 draw in 9 holds one dataset and no dataset pair: those draws are left
    out quietly, the others still give an interval."""
    import warnings

    from scipy.stats import DegenerateDataWarning

    sim = make_zoo(0, "objective", n_datasets=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDataWarning)
        table = stats.controlled_tests(
            sim, n_permutations=19, n_bootstrap=49, n_null=4, seed=3, min_datasets=3
        )
    factor = table[table.analysis == "factor"]
    assert factor.ci_low.notna().all() and factor.ci_high.notna().all()
    assert (factor.n_bootstrap < 49).all() and (factor.n_bootstrap > 30).all()


def test_monte_carlo_undecided_by_the_binomial_band():
    # the two-sided p is twice a tail share: at p = alpha its SE is sqrt(alpha (2 - alpha) / n);
    # 79 resamples at alpha 0.05 give a band of 2.576 * sqrt(0.0975 / 79) = 0.0905
    assert stats.monte_carlo_undecided(0.0506, 79, 0.05)
    assert stats.monte_carlo_undecided(0.0, 79, 0.05)  # 0 of 79 draws: 0.975^79 = 14% at p 0.05
    assert stats.monte_carlo_undecided(0.14, 79, 0.05)
    assert not stats.monte_carlo_undecided(0.141, 79, 0.05)
    # 999 resamples: 0.0254; the headline's 0.088 is settled, 0.07 is not
    assert not stats.monte_carlo_undecided(0.088, 999, 0.05)
    assert stats.monte_carlo_undecided(0.07, 999, 0.05)
    assert not stats.monte_carlo_undecided(0.0, 999, 0.05)
    # p = 0 is settled from 2.576^2 * 0.0975 / 0.05^2 = 258.8 resamples up
    assert stats.monte_carlo_undecided(0.0, 258, 0.05)
    assert not stats.monte_carlo_undecided(0.0, 259, 0.05)
    assert not stats.monte_carlo_undecided(np.nan, 79, 0.05)
    assert not stats.monte_carlo_undecided(0.05, 0, 0.05)


def test_difference_sentence_says_when_the_bootstrap_cannot_settle_it():
    """The embedded headline's bootstrap p was 0.0506 from 79 resamples: one seed in 8 gave an
    interval above 0 and the opposite verdict. Within Monte Carlo error of alpha the sentence
    says so, where the permutation tests leave the bootstrap to decide."""
    o = {"p_value": 0.001, "factor": "objective"}
    a = {"p_value": 0.001, "factor": "architecture"}
    d = {"estimate": 0.02, "ci_low": -0.006, "ci_high": 0.12, "p_value": 0.0506,
         "n_bootstrap": 79.0, "confidence_level": 0.95}  # fmt: skip
    text = stats.difference_sentence(d, o, a)
    assert text.startswith(
        "Whether objective explains the consistency of pairwise similarity across datasets more "
        "than architecture does, or the reverse, is not settled by 79 bootstrap resamples: their "
        "two-sided p (0.051) is within Monte Carlo error of alpha = 0.05"
    ), text
    d.update(ci_low=0.003, p_value=0.025)  # an interval above 0 is not settled either
    assert "is not settled by 79" in stats.difference_sentence(d, o, a)
    d.update(ci_low=-0.006, p_value=0.088, n_bootstrap=999.0)
    assert stats.difference_sentence(d, o, a).startswith("No evidence")
    # with its datasets known, the p is on the expanded scale and is checked on the raw one: at
    # 10 datasets an expanded p of 0.023 is a raw 0.004, within the raw band around 0.0171
    # (+-0.0150 at 999 draws), though outside the band around 0.05 the raw rule would use
    d.update(ci_low=0.003, p_value=stats._expanded_p(0.004, 10), n_datasets=10.0)
    assert not stats.monte_carlo_undecided(d["p_value"], 999, 0.05)
    assert "is not settled by 999" in stats.difference_sentence(d, o, a)
    d.pop("n_datasets")
    assert stats.difference_sentence(d, o, a).startswith("Objective explains")
    # neither permutation test below alpha: no verdict hangs on the bootstrap
    o["p_value"] = a["p_value"] = 0.5
    d.update(p_value=0.0506, n_bootstrap=79.0)
    assert stats.difference_sentence(d, o, a).startswith("No evidence")


@pytest.mark.parametrize(("driver", "extended"), [("objective", True), (None, False)])
def test_a_bootstrap_near_alpha_gets_more_resamples(driver, extended, monkeypatch):
    """With n_bootstrap_max, a measure whose difference p is undecided after n_bootstrap is
    resampled afresh with n_bootstrap_max (the draws that asked for more are not reused: no
    optional stopping); a decided one keeps its table, bit for bit."""
    sizes, real = [], stats.bootstrap

    def spy(data, statistic, **kw):
        sizes.append((kw["n_resamples"], kw.get("bootstrap_result")))
        return real(data, statistic, **kw)

    monkeypatch.setattr(stats, "bootstrap", spy)
    sim = make_zoo(4, driver, n_datasets=10)
    kw = {"n_permutations": 49, "n_null": 4, "seed": 7, "n_bootstrap": 19}
    short = stats.controlled_tests(sim, **kw)
    sizes.clear()
    more = stats.controlled_tests(sim, n_bootstrap_max=999, **kw)
    d_short = _row(short, "difference", "objective - architecture")
    d_more = _row(more, "difference", "objective - architecture")
    assert stats.bootstrap_undecided(d_short.p_value, d_short.n_bootstrap, 0.05, 10) is extended
    if extended:  # 999 fresh draws, of which the finite ones count
        assert sizes == [(19, None), (999, None)]
        assert d_short.n_bootstrap == 19 and 990 <= d_more.n_bootstrap <= 999
        assert not stats.bootstrap_undecided(d_more.p_value, d_more.n_bootstrap, 0.05, 10)
        perm = short.analysis == "factor"
        pd.testing.assert_series_equal(short[perm].p_value, more[perm].p_value)
    else:
        assert sizes == [(19, None)]
        pd.testing.assert_frame_equal(short, more)


@pytest.mark.parametrize("undecided_view", stats.VIEWS)
def test_either_view_s_undecided_difference_asks_for_the_redraw(undecided_view, monkeypatch):
    """The book words both views: one of them too close to alpha to tell is enough to redraw."""
    sizes, real = [], stats.bootstrap

    def spy(data, statistic, **kw):
        sizes.append(kw["n_resamples"])
        return real(data, statistic, **kw)

    views = iter(stats.VIEWS)  # asked once per view, in this order

    def one_view_undecided(*args):
        return next(views) == undecided_view

    monkeypatch.setattr(stats, "bootstrap", spy)
    monkeypatch.setattr(stats, "bootstrap_undecided", one_view_undecided)
    kw = {"n_permutations": 19, "n_null": 2, "seed": 0, "n_bootstrap": 19}
    stats.controlled_tests(make_zoo(0, "objective", n_datasets=8), n_bootstrap_max=39, **kw)
    assert sizes == [19, 39]


def test_the_redraw_is_decided_on_the_raw_scale(monkeypatch, uncorrected):
    """999 draws of 10 datasets with 2 at or below 0: a raw p of 0.004, expanded 0.023. The raw
    rule (band 0.0171 +- 0.0150) cannot tell its side of alpha, so the measure is redrawn; the
    expanded p read with the raw rule's band around 0.05 would have looked settled."""
    sizes, real = [], stats.bootstrap

    def fixed(data, statistic, **kw):
        res = real(
            data, statistic, n_resamples=2, **{k: v for k, v in kw.items() if k != "n_resamples"}
        )
        n, k = kw["n_resamples"], np.atleast_2d(res.bootstrap_distribution).shape[0]
        sizes.append(n)
        row = np.r_[-np.ones(2), np.ones(n - 2)]
        return SimpleNamespace(bootstrap_distribution=np.tile(row, (k, 1)))

    monkeypatch.setattr(stats, "bootstrap", fixed)
    kw = {"n_permutations": 19, "n_null": 2, "seed": 0, "n_bootstrap": 999}
    table = stats.controlled_tests(
        make_zoo(0, "objective", n_datasets=10), n_bootstrap_max=1999, **kw
    )
    assert sizes == [999, 1999]
    d = _row(table, "difference", "objective - architecture")
    assert d.n_bootstrap == 1999 and d.p_value == pytest.approx(stats._expanded_p(4 / 1999, 10))


@pytest.mark.parametrize(
    "raw, undecided, as_is", [(0.001, False, True), (0.003, True, True), (0.03, True, False)]
)
def test_bootstrap_undecided_reads_p_and_alpha_on_the_raw_scale(raw, undecided, as_is):
    """999 draws of 10 datasets: the binomial band is that of the raw share (0.0171 +- 0.0150
    about the raw alpha), so an expanded p is taken back to its raw p first. Read as it is, the
    expanded p of a raw 0.001 (0.012) would fall inside the band, and that of 0.03 (0.070)
    outside it."""
    p = stats._expanded_p(raw, 10)
    raw_alpha = 1 - stats.expanded_level(0.95, 10)
    assert stats.monte_carlo_undecided(raw, 999, raw_alpha) == undecided  # the rule, by hand
    assert stats.bootstrap_undecided(p, 999, 0.05, 10) == undecided
    assert stats.monte_carlo_undecided(p, 999, raw_alpha) == as_is  # the expanded p as it is


def test_an_earlier_version_s_table_is_refused_not_read_on_another_scale(tmp_path):
    """A controlled_tests.csv without the interval column holds plain percentile intervals and a
    raw bootstrap p; read as expanded, a settled verdict could turn unsettled (and the reverse)."""
    from repsim.analysis import controlled_tests as run_tests

    table = stats.controlled_tests(make_zoo(0, "objective", n_datasets=8), **FAST)
    assert (table["interval"] == "expanded").all()
    stats.save(table.drop(columns="interval"), tmp_path)
    with pytest.raises(InputError, match="written by an earlier version of repsim.*rerun"):
        stats.load(tmp_path)
    none, why = run_tests(SimpleNamespace(path=tmp_path, info={}, selection=""))
    assert none is None and "earlier version" in why
    # format 1 (expanded intervals, seed rows within one seed's models) is refused too
    stats.save(table.drop(columns="format"), tmp_path)
    with pytest.raises(InputError, match="written by an earlier version of repsim.*rerun"):
        stats.load(tmp_path)
    # format 2 (no bias correction: intervals of the excess SDs shifted up) is refused too
    stats.save(table.drop(columns="bias").assign(format=2), tmp_path)
    with pytest.raises(InputError, match="written by an earlier version of repsim.*rerun"):
        stats.load(tmp_path)
    # format 3 (seed rows over another mix of same- and cross-architecture pairs) too
    stats.save(table.assign(format=3), tmp_path)
    with pytest.raises(InputError, match="written by an earlier version of repsim.*rerun"):
        stats.load(tmp_path)
    stats.save(table, tmp_path)
    loaded = stats.load(tmp_path)
    assert len(loaded) == len(table) and loaded["bias"].dtype == float
    np.testing.assert_array_equal(loaded["bias"], table["bias"])


def test_deterministic_with_a_fixed_seed():
    sim = make_zoo(4, "objective", n_datasets=5)
    kw = {"n_permutations": 49, "n_bootstrap": 19, "n_null": 4, "min_datasets": 3}
    first = stats.controlled_tests(sim, seed=7, **kw)
    pd.testing.assert_frame_equal(first, stats.controlled_tests(sim, seed=7, **kw))
    other = stats.controlled_tests(sim, seed=8, **kw)
    assert not np.allclose(first.ci_low.fillna(0), other.ci_low.fillna(0))


def test_a_measures_rows_do_not_depend_on_the_other_measures_tested():
    sim = make_zoo(4, "objective", n_datasets=5)
    sim["cka_rbf"] = sim["cka_linear"] ** 2
    kw = {"n_permutations": 49, "n_bootstrap": 19, "n_null": 4, "seed": 7}
    alone = stats.controlled_tests(sim, ["cka_rbf"], **kw)
    after = stats.controlled_tests(sim, ["cka_linear", "cka_rbf"], **kw)
    after = after[after.measure == "cka_rbf"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, after)


def test_the_table_does_not_depend_on_the_order_of_models_or_datasets():
    # A config lists models and datasets in any order; similarity.nc keeps that order. The
    # permutations, the bootstrap draws and the sums must not follow it (to the bit).
    sim = make_zoo(4, "objective", n_datasets=5)
    kw = {"n_permutations": 49, "n_bootstrap": 19, "n_null": 4, "seed": 7}
    first = stats.controlled_tests(sim, **kw)
    models = list(np.random.default_rng(0).permutation(sim.model_a.values))
    datasets = list(sim.dataset.values[::-1])
    shuffled = sim.sel(dataset=datasets, model_a=models, model_b=models)
    pd.testing.assert_frame_equal(first, stats.controlled_tests(shuffled, **kw), check_exact=True)


def test_the_default_measure_does_not_depend_on_the_order_of_measures():
    sim = make_zoo(4, "objective", n_datasets=5).rename({"cka_linear": "rsa_spearman"})
    sim["mutual_knn_10"] = sim["rsa_spearman"] ** 2
    kw = {"n_permutations": 19, "n_bootstrap": 9, "n_null": 4}
    one = stats.controlled_tests(sim, **kw)
    other = stats.controlled_tests(sim[["mutual_knn_10", "rsa_spearman"]], **kw)
    pd.testing.assert_frame_equal(one, other, check_exact=True)


def test_keyed_rng_is_fixed_by_seed_and_keys():
    draw = lambda *key: stats.keyed_rng(*key).integers(1 << 30, size=4).tolist()  # noqa: E731
    assert draw(0, "cka_linear") == draw(0, "cka_linear")
    assert draw(0, "cka_linear") != draw(0, "cka_rbf") != draw(1, "cka_rbf")
    assert draw(0, 50) != draw(0, 20)


def test_table_columns_and_file_round_trip(objective_table, tmp_path):
    assert list(objective_table.columns) == list(stats.COLUMNS)
    path = stats.save(objective_table, tmp_path)
    assert path.name == stats.FILENAME
    back = stats.load(tmp_path)
    pd.testing.assert_frame_equal(back, objective_table, check_dtype=False)


def test_a_category_named_like_a_number_reads_back_as_text(objective_table, tmp_path):
    """Categories named "1", "2", ... (all of a table's groups) were read back as numbers, never
    equal to their names."""
    pairs = objective_table[objective_table["analysis"] == "category_pair"]
    names = sorted(set(pairs["group_a"]) | set(pairs["group_b"]))
    numbered = pairs.replace(
        {c: {n: str(k) for k, n in enumerate(names)} for c in ("group_a", "group_b")}
    )
    stats.save(numbered, tmp_path)
    back = stats.load(tmp_path)
    assert back["group_a"].tolist() == numbered["group_a"].tolist()
    assert set(back["group_b"]) <= {str(k) for k in range(len(names))}


# ------------------------------------------------------------------------------------ refusals
def test_unbalanced_zoo_is_refused_with_advice():
    sim = make_zoo(0, None).drop_sel(model_a=["cnn-clip-s0"], model_b=["cnn-clip-s0"])
    with pytest.raises(InputError, match="crossed design"):
        stats.controlled_tests(sim, **FAST)


@pytest.mark.parametrize("factor", ["architecture", "objective"])
def test_a_factor_with_one_level_among_trained_models_is_refused(factor):
    """One architecture (or one trained objective, Random aside) leaves the factor nothing to
    explain: refused by name, not reported as a test of a single category."""
    sim = make_zoo(0, None)
    if factor == "architecture":
        sim = sim.assign_coords(
            architecture_class_a=("model_a", ["Convolutional"] * sim.sizes["model_a"]),
            architecture_class_b=("model_b", ["Convolutional"] * sim.sizes["model_b"]),
        )
    else:
        keep = [m for m in sim.model_a.values if "-clip-" in str(m) or "-random-" in str(m)]
        sim = sim.sel(model_a=keep, model_b=keep)
    with pytest.raises(InputError, match=f"at least 2 levels of {factor} among trained models"):
        stats.controlled_tests(sim, **FAST)


def test_model_b_must_hold_the_models_of_model_a():
    """Positions of model_a are paired with those of model_b: another model in model_b would
    pair the wrong similarities without a word."""
    sim = make_zoo(0, None)
    ids = list(sim.model_b.values)
    other = sim.assign_coords(model_b=[*ids[:-1], "cnn-other-s9"])
    with pytest.raises(InputError, match=r"model_a and model_b .*\['cnn-other-s9'"):
        stats.controlled_tests(other, **FAST)


def test_nan_similarities_are_refused():
    sim = make_zoo(0, None)
    sim["cka_linear"][1, 3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        stats.controlled_tests(sim, **FAST)


def test_a_dataset_without_a_defined_similarity_is_named_not_its_models():
    """A dataset every model failed on was refused as "similarities of models [the first five]
    are NaN on some dataset; drop them": every model is undefined there, dropping models cannot
    help, and the book printed that sentence as why the controlled tests were not run."""
    sim = make_zoo(0, None)
    sim["cka_linear"][2] = np.nan
    dataset = str(sim.dataset.values[2])
    with pytest.raises(InputError) as err:
        stats.controlled_tests(sim, **FAST)
    assert str(err.value) == (
        f"{dataset} has no defined similarity (no model pair has one there) and the controlled "
        "tests need every pair's similarity on every dataset; drop that dataset "
        f"(sim.drop_sel(dataset=['{dataset}'])) before the controlled tests"
    )
    sim["cka_linear"][1, 3, 4] = np.nan  # and one pair elsewhere: its models are named
    with pytest.raises(InputError, match="similarities of models .* are NaN on some dataset"):
        stats.controlled_tests(sim, **FAST)


def test_unknown_measure_is_refused():
    with pytest.raises(InputError, match="rsa_spearman"):
        stats.controlled_tests(make_zoo(0, None), ["rsa_spearman"], **FAST)


# ------------------------------------------------------------------------------------ sentences
@pytest.mark.parametrize(
    ("p", "text"),
    [(0.0001, "p < 0.001"), (0.0031, "p = 0.003"), (0.412, "p = 0.41"), (np.nan, "p undefined")],
)
def test_format_p(p, text):
    assert stats.format_p(p) == text


def test_difference_sentence_needs_both_tests():
    o = {"p_value": 0.2, "factor": "objective"}
    a = {"p_value": 0.5, "factor": "architecture"}
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "confidence_level": 0.95}
    # an interval above 0 is not enough when objective's own test finds nothing, and the
    # sentence says why beside an interval that excludes 0
    text = stats.difference_sentence(d, o, a)
    assert text.startswith("No evidence") and text.endswith(
        "; the interval lies above 0, but objective's own permutation p is not below alpha)."
    )
    below = {**d, "ci_low": -0.2, "ci_high": -0.01}
    assert stats.difference_sentence(below, o, a).endswith(
        "; the interval lies below 0, but architecture's own permutation p is not below alpha)."
    )
    o["p_value"] = 0.001
    text = stats.difference_sentence(d, o, a)
    assert text.startswith("Objective explains") and "95% CI 0.01 to 0.20" in text


def test_difference_sentence_reads_the_architecture_side_as_the_objective_side():
    """The mirror of the objective's answer: an interval below 0 with architecture's own p below
    alpha says architecture explains more; a p at alpha is not below it; an interval that
    touches 0 does not exclude it; and an architecture p within Monte Carlo error of alpha
    leaves the answer unsettled only when the interval is below 0."""
    o = {"p_value": 0.5, "factor": "objective", "n_permutations": 999.0}
    a = {"p_value": 0.001, "factor": "architecture", "n_permutations": 999.0}
    d = {"estimate": -0.1, "ci_low": -0.2, "ci_high": -0.01, "p_value": 0.001,
         "n_bootstrap": 999.0, "confidence_level": 0.95}  # fmt: skip
    assert stats.difference_sentence(d, o, a).startswith(
        "Architecture explains the consistency of pairwise similarity across datasets more than "
        "objective does for these models (difference in excess SD -0.10, 95% CI -0.20 to -0.01"
    )
    at_alpha = {**a, "p_value": 0.05, "p_min": 0.002, "n_permutations": 720.0}  # enumerated
    for other in (at_alpha, a):
        touching = d if other is not a else {**d, "ci_high": 0.0}
        assert stats.difference_sentence(touching, o, other).startswith("No evidence")
    near = {**a, "p_value": 0.047}
    assert "is not settled: the interval excludes 0, but architecture's own permutation p" in (
        stats.difference_sentence(d, o, near)
    )
    above = {**d, "estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2}
    for interval in (above, {**d, "ci_high": 0.0}):
        assert stats.difference_sentence(interval, o, near).startswith("No evidence")
    # a bias-corrected interval says so (its centre is the estimate minus the bias)
    text = stats.difference_sentence({**d, "bias": 0.02}, o, a)
    assert "(difference in excess SD -0.10, bias-corrected 95% CI -0.20 to -0.01, datasets" in text


def _headline_rows(measure: str, objective_p: float) -> list[dict]:
    """The factor and difference rows of one measure (separate view) that answer() reads."""
    base = {"measure": measure, "view": "separate", "n_datasets": 8, "n_models": 36,
            "n_permutations": 999.0, "n_bootstrap": 999.0, "confidence_level": 0.95}  # fmt: skip
    return [
        {**base, "analysis": "factor", "factor": "objective", "p_value": objective_p},
        {**base, "analysis": "factor", "factor": "architecture", "p_value": 0.5},
        {
            **base,
            "analysis": "difference",
            "factor": "objective - architecture",
            "estimate": 0.1,
            "ci_low": 0.01,
            "ci_high": 0.2,
            "p_value": 0.0,
            "n_bootstrap": 9999.0,
        },  # fmt: skip
    ]


def test_answer_words_the_measure_asked_for():
    """Each measure is answered from its own rows (the first in the table by default), with its
    datasets and models; a measure without rows is refused by name."""
    table = pd.DataFrame(_headline_rows("cka_linear", 0.001) + _headline_rows("cka_rbf", 0.3))
    first = stats.answer(table)
    assert first.startswith(
        "With cka_linear on 8 datasets and 36 trained models, objective explains the "
        "consistency of pairwise similarity across datasets more than architecture does"
    )
    assert first == stats.answer(table, "cka_linear")
    assert stats.answer(table, "cka_rbf").startswith(
        "With cka_rbf on 8 datasets and 36 trained models, no evidence that objective"
    )
    with pytest.raises(InputError, match="no rows for measure 'rsa'"):
        stats.answer(table, "rsa")


def test_answer_names_its_view_when_the_table_has_both():
    """The overview gave the separate view's sentence without saying that SimCLR and Barlow Twins
    are two objectives in it, then a "secondary view" pooling them: each now says which it is;
    a table of one view (no pooled rows) says nothing of either."""
    separate = _headline_rows("cka_linear", 0.001)
    pooled = [{**r, "view": "pooled"} for r in separate]
    both = pd.DataFrame(separate + pooled)
    assert stats.answer(both).startswith(
        "With cka_linear on 8 datasets and 36 trained models (SimCLR and Barlow Twins as two "
        "objectives), objective explains"
    )
    assert stats.answer(both, view="pooled").startswith(
        "With cka_linear on 8 datasets and 36 trained models (SimCLR and Barlow Twins pooled as "
        "Self-Supervised), objective explains"
    )
    text = T.controlled_answer(both)
    assert "as two objectives), " in text and "Secondary view: with cka_linear" in text
    assert "two objectives" not in stats.answer(pd.DataFrame(separate))


def test_difference_sentence_says_when_its_interval_is_coarse():
    """An interval from few bootstrap resamples is quoted with their number; one from the
    default count (or a row without the column) is not."""
    o = {"p_value": 0.001, "factor": "objective"}
    a = {"p_value": 0.5, "factor": "architecture"}
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "confidence_level": 0.95}
    assert "bootstrap resamples" not in stats.difference_sentence(d, o, a)
    d["n_bootstrap"] = stats.COARSE_BOOTSTRAP
    assert "bootstrap resamples" not in stats.difference_sentence(d, o, a)
    d["n_bootstrap"] = 79.0
    text = stats.difference_sentence(d, o, a)
    assert (
        "95% CI 0.01 to 0.20 from 79 bootstrap resamples of the datasets with these models held "
        "fixed, so its ends are approximate" in text
    )


def test_coarse_interval_says_how_far_short_of_its_level_it_is():
    """79 resamples at 10 datasets: the interval's ends are the extreme draws, which hold 2 / 79
    of the draws beyond them, 0.0253, whose expanded p (alpha of the nominal scale) is written
    out here from scipy; the sentence gives the level it reaches (at 23 datasets: the 2nd
    draws from each end, 93.1%). A table without n_datasets is on the plain
    scale, where 79 draws fall short by less than half a point and nothing is added; nor
    199 at 10 datasets (94.5%)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    def reached(c, n, units):
        z = norm.isf(c / n) / np.sqrt(units / (units - 1))
        return 1 - 2 * student_t.sf(z, units - 1)

    assert stats.tail_level(79, 0.95, 10) == pytest.approx(reached(1, 79, 10), abs=1e-12)
    assert stats.tail_level(79, 0.95, 10) == pytest.approx(0.9371, abs=1e-4)
    assert stats.tail_level(199, 0.95, 10) == pytest.approx(reached(2, 199, 10), abs=1e-12)
    assert stats.tail_level(999, 0.95) == pytest.approx(1 - 50 / 999, abs=1e-12)  # the 25th
    assert stats.tail_level(79, 0.95) == pytest.approx(1 - 4 / 79, abs=1e-12)  # the 2nd
    # the order statistics percentile_interval takes: c - 1 draws outside each end
    for n, units in ((79, 10), (199, 10), (999, 23)):
        lo, hi, _ = stats.percentile_interval(np.arange(n, dtype=float), 0.95, n_units=units)
        c = int(lo) + 1
        assert n - 1 - hi == c - 1
        assert stats.tail_level(n, 0.95, units) == pytest.approx(reached(c, n, units), abs=1e-12)
    o = {"p_value": 0.001, "factor": "objective"}
    a = {"p_value": 0.5, "factor": "architecture"}
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "confidence_level": 0.95}
    d.update(n_bootstrap=79.0, n_datasets=10.0)
    # the label carries the level reached, not the nominal 95% it falls short of
    assert (
        "CI 0.01 to 0.20, about a 93.7% interval rather than the nominal 95%: from 79 bootstrap "
        "resamples of the datasets with these models held fixed, its ends are the extreme draws;"
        in stats.difference_sentence(d, o, a)
    )
    assert "95% CI" not in stats.difference_sentence(d, o, a)
    d.update(n_datasets=23.0)
    assert "about a 93.1% interval rather than the nominal 95%" in stats.difference_sentence(
        d, o, a
    )
    assert "its ends are the 2nd draws from each end;" in stats.difference_sentence(d, o, a)
    d.update(n_bootstrap=199.0, n_datasets=10.0)  # the 2nd draws: 0.9451, within half a point
    assert "so its ends are approximate;" in stats.difference_sentence(d, o, a)
    d.update(n_bootstrap=79.0, n_datasets=float("nan"))
    assert "so its ends are approximate;" in stats.difference_sentence(d, o, a)
    d.update(n_bootstrap=999.0, n_datasets=10.0)  # 0.9485: within half a point, not coarse
    assert "approximate" not in stats.difference_sentence(d, o, a)


def test_format_mean_range() -> None:
    from repsim.stats import format_mean_range

    assert format_mean_range([0.5, 0.6, 0.7]) == "0.600 (0.500-0.700)"
    assert format_mean_range([0.25]) == "0.250"
    assert format_mean_range([]) == "-"


# --------------------------------------------------------- tests with datasets as the unit


def _pairs_table(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame(
        [(a, b, v) for (a, b), v in values.items()],
        columns=["dataset_a", "dataset_b", "consistency"],
    )


def _brute_force_domain_p(values, domains) -> float:
    """Two-sided p of the median difference over every distinct relabelling, by enumeration."""
    names = sorted(domains)
    labels = [domains[d] for d in names]

    def stat(lab):
        same = [v for (a, b), v in values.items() if lab[a] == lab[b]]
        diff = [v for (a, b), v in values.items() if lab[a] != lab[b]]
        return np.median(same) - np.median(diff) if same and diff else None

    observed = stat(domains)
    null = []
    for perm in set(permutations(labels)):
        t = stat(dict(zip(names, perm)))
        if t is not None:
            null.append(t)
    null = np.array(null)
    greater = (null >= observed - 1e-12).mean()
    less = (null <= observed + 1e-12).mean()
    _brute_force_domain_p.undefined = len(set(permutations(labels))) - len(null)
    return min(1.0, 2 * min(greater, less))


def test_domain_permutation_test_matches_enumeration_by_hand():
    rng = np.random.default_rng(3)
    domains = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C"}
    values = {
        (a, b): (0.8 if domains[a] == domains[b] else 0.3) + rng.normal(0, 0.1)
        for a, b in combinations(sorted(domains), 2)
    }
    res = stats.domain_permutation_test(_pairs_table(values), domains)
    want = _brute_force_domain_p(values, domains)
    assert res["p_value"] == pytest.approx(want, abs=1e-12)
    assert res["p_value"] < 0.1 and res["difference"] > 0.3  # 6!/(3!2!1!) = 60 labellings
    assert res["n_same_pairs"] == 4 and res["n_different_pairs"] == 11 and res["n_datasets"] == 6
    # missing pairs (every dataset keeps one): 8 of the 60 relabellings leave no pair within a
    # domain and drop out of the null, rather than counting as less extreme
    keep = [("a1", "c1"), ("a2", "a3"), ("a3", "b2"), ("a3", "c1"), ("b1", "b2"), ("b1", "c1")]
    sparse = {pair: values[pair] for pair in keep}
    res = stats.domain_permutation_test(_pairs_table(sparse), domains)
    assert res["p_value"] == pytest.approx(_brute_force_domain_p(sparse, domains), abs=1e-12)
    assert _brute_force_domain_p.undefined == 8


def test_domain_permutation_test_refuses_several_rows_for_one_dataset_pair():
    """Two group pairs in one table: one of each pair's values would stand for it, unsaid."""
    one = _pairs_table({("a", "b"): 0.1, ("a", "c"): 0.2, ("b", "c"): 0.3})
    two = pd.concat([one, one.assign(consistency=[0.9, 0.8, 0.7])], ignore_index=True)
    domains = {"a": "x", "b": "x", "c": "y"}
    assert np.isfinite(stats.domain_permutation_test(one, domains)["difference"])
    with pytest.raises(InputError, match=r"dataset pairs \[\('a', 'b'\), .* several rows"):
        stats.domain_permutation_test(two, domains)


def test_domain_permutation_test_monte_carlo_is_seeded_and_untestable_is_nan():
    names = [f"d{i}" for i in range(10)]
    domains = {d: "AB"[i % 2] for i, d in enumerate(names)}
    rng = np.random.default_rng(0)
    values = {(a, b): rng.uniform() for a, b in combinations(names, 2)}
    table = _pairs_table(values)
    one = stats.domain_permutation_test(table, domains, n_resamples=199, rng=1)
    assert one == stats.domain_permutation_test(table, domains, n_resamples=199, rng=1)
    assert one["n_permutations"] == 199 and one["p_value"] >= 2 / 200  # (k + 1) / (n + 1)
    single = stats.domain_permutation_test(table, {d: "A" for d in names})
    assert np.isnan(single["p_value"]) and single["n_different_pairs"] == 0
    with pytest.raises(InputError, match="no domain for datasets"):
        stats.domain_permutation_test(table, {})


def test_dataset_resample_rows_by_hand():
    table = _pairs_table({("x", "y"): 0.1, ("x", "z"): 0.2, ("y", "z"): 0.3})
    names, rows = stats._pair_rows(table)
    assert names == ["x", "y", "z"]
    # x drawn twice: both copies pair with y; the pair of x with its own copy has no row
    assert sorted(stats._RowSampler(rows)(np.array([0, 0, 1])).tolist()) == [0, 0]
    assert stats._RowSampler(rows)(np.array([2, 2, 2])).size == 0
    assert sorted(stats._RowSampler(rows)(np.array([2, 1, 0])).tolist()) == [0, 1, 2]
    # a row of a dataset with itself (not a dataset pair) is never drawn, even for x drawn twice
    with_self = pd.concat([table, _pairs_table({("x", "x"): 1.0})], ignore_index=True)
    names, rows = stats._pair_rows(with_self)
    assert names == ["x", "y", "z"] and sorted(rows) == [(0, 1), (0, 2), (1, 2)]
    assert sorted(stats._RowSampler(rows)(np.array([0, 0, 1])).tolist()) == [0, 0]


def test_dataset_resample_rows_against_a_loop_over_the_draws_pairs():
    """The array form of a resample gives the rows a plain loop over the draw's pairs gives, in
    the same order: several rows per pair, pairs without rows, datasets drawn several times."""
    rng = np.random.default_rng(3)
    names = [f"d{i}" for i in range(7)]
    records = []
    for a, b in combinations(names, 2):
        for _ in range(rng.integers(0, 3)):  # 0, 1 or 2 rows (group pairs) per dataset pair
            a_, b_ = (a, b) if rng.random() < 0.5 else (b, a)
            records.append((a_, b_, rng.random()))
    table = pd.DataFrame(records, columns=["dataset_a", "dataset_b", "consistency"])
    names, rows = stats._pair_rows(table)

    def by_loop(draw):
        out = []
        for p in range(len(draw)):
            for q in range(p + 1, len(draw)):
                key = (min(draw[p], draw[q]), max(draw[p], draw[q]))
                out.extend(rows.get(key, []))
        return out

    for _ in range(200):
        draw = rng.integers(0, len(names), size=len(names))
        assert stats._RowSampler(rows)(draw).tolist() == by_loop(draw.tolist())
    assert stats._RowSampler(rows)(np.array([3, 3, 3])).size == 0
    assert stats._RowSampler({})(np.array([0, 1])).size == 0


def test_dataset_bootstrap_of_one_column_equals_the_table_statistic():
    """``column=`` hands the statistic the column's values: same estimate, draws and interval as
    the statistic of the table, including draws left undefined (one dataset only)."""
    rng = np.random.default_rng(4)
    for n in (8, 3):  # at 3 datasets, a ninth of the draws hold one dataset only
        names = [f"d{i}" for i in range(n)]
        table = _pairs_table({(a, b): rng.normal() for a, b in combinations(names, 2)})
        kw = {"n_resamples": 499, "rng": 7, "min_datasets": 3}
        of_table = stats.dataset_bootstrap(table, lambda t: float(np.median(t.consistency)), **kw)
        of_column = stats.dataset_bootstrap(
            table, lambda v: float(np.median(v)), column="consistency", **kw
        )
        assert of_column == of_table and np.isfinite(of_table["ci_low"])
    assert of_table["n_bootstrap"] < 499


def test_dataset_bootstrap_interval_and_its_edges():
    names = [f"d{i}" for i in range(8)]
    table = _pairs_table({(a, b): 0.5 for a, b in combinations(names, 2)})
    const = stats.dataset_bootstrap(table, lambda t: t.consistency.mean(), n_resamples=99)
    assert const["ci_low"] == const["ci_high"] == const["estimate"] == 0.5
    assert const["n_datasets"] == 8 and const["n_bootstrap"] == 99
    # one dataset carries every high value: the interval spans what leaving it out or doubling
    # it gives, and contains the estimate
    table["consistency"] = (table.dataset_a == "d0").astype(float)  # d0 sorts first: always a
    mean = lambda t: t.consistency.mean()  # noqa: E731
    res = stats.dataset_bootstrap(table, mean, n_resamples=199, rng=2)
    assert res == stats.dataset_bootstrap(table, mean, n_resamples=199, rng=2)
    assert res["estimate"] == pytest.approx(7 / 28)
    assert res["ci_low"] < res["estimate"] < res["ci_high"]
    assert res["ci_low"] >= 0 and res["ci_high"] <= 1
    two = stats.dataset_bootstrap(table.iloc[:1], mean)
    assert np.isnan(two["ci_low"]) and two["n_bootstrap"] == 0


def test_dataset_bootstrap_interval_is_the_expanded_one(monkeypatch):
    """Its ends are the order statistics of the expanded level of its 8 datasets (0.989: the 3rd
    of 500 draws from each end), not of the plain 95% (the 13th)."""
    real = stats.bootstrap
    draws = np.random.default_rng(0).permutation(np.arange(500.0))

    def fixed(data, statistic, **kw):
        res = real(data, statistic, **kw)
        return SimpleNamespace(
            bootstrap_distribution=draws, confidence_interval=res.confidence_interval
        )

    monkeypatch.setattr(stats, "bootstrap", fixed)
    names = [f"d{i}" for i in range(8)]
    table = _pairs_table({(a, b): 0.1 * i for i, (a, b) in enumerate(combinations(names, 2))})
    res = stats.dataset_bootstrap(table, lambda t: t.consistency.mean(), n_resamples=500)
    c = math.ceil(500 * (1 - stats.expanded_level(0.95, 8)) / 2)
    assert c == 3 and (res["ci_low"], res["ci_high"]) == (2.0, 497.0)


def test_dataset_bootstrap_resamples_datasets_not_pairs(monkeypatch):
    calls = []
    real = stats.bootstrap

    def spy(data, statistic, **kw):
        calls.append([np.asarray(x) for x in data])
        return real(data, statistic, **kw)

    monkeypatch.setattr(stats, "bootstrap", spy)
    names = [f"d{i}" for i in range(6)]
    table = _pairs_table({(a, b): 0.1 * i for i, (a, b) in enumerate(combinations(names, 2))})
    stats.dataset_bootstrap(table, lambda t: t.consistency.median(), n_resamples=9, min_datasets=3)
    (data,) = calls
    np.testing.assert_array_equal(data[0], np.arange(6))  # 6 datasets, not 15 dataset pairs


def test_sign_test_against_the_binomial_formula():
    from math import comb

    for k, n in [(9, 10), (3, 3), (4, 8)]:
        tail = sum(comb(n, i) for i in range(max(k, n - k), n + 1)) / 2**n
        assert stats.sign_test(k, n - k) == pytest.approx(min(1.0, 2 * tail))
    assert np.isnan(stats.sign_test(0, 0))


#: an objective factor row of a controlled-tests table from 999 random labellings
FACTOR_ROW = {
    "factor": "objective",
    "n_permutations": 999.0,
    "estimate": 0.2,
    "ci_low": 0.12,
    "ci_high": 0.26,
    "n_bootstrap": 999.0,
    "confidence_level": 0.95,
}


def test_too_few_random_permutations_are_not_blamed_on_the_design():
    """19 random permutations cannot give p < 0.05 (1 / 20 at best, p_min as controlled_tests
    writes it): the sentence said "the design's 19 labellings", sending the reader to a larger
    zoo instead of to more permutations. An enumerated design (p_min above 1 / (n + 1)) is."""
    few = {**FACTOR_ROW, "p_value": 0.05, "p_min": 0.05, "n_permutations": 19.0}
    text = stats.factor_sentence(few)
    assert "cannot be tested at alpha = 0.05" in text and "design" not in text
    assert "19 random permutations give p >= 0.05 at best (too few: rerun" in text
    no_floor = {k: v for k, v in few.items() if k != "p_min"}  # a table before p_min: 1 / (n + 1)
    assert "19 random permutations give p >= 0.05" in stats.factor_sentence(no_floor)
    enumerated = {**few, "p_value": 0.25, "p_min": 0.125, "n_permutations": 16.0}
    assert "the design's 16 labellings give p >= 0.125" in stats.factor_sentence(enumerated)
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "confidence_level": 0.95}
    arch = {**few, "factor": "architecture", "p_value": 0.4}
    both = stats.difference_sentence(d, few, arch)
    assert "cannot be tested" in both and both.count("19 random permutations give") == 2


def test_factor_sentence_says_when_p_is_the_permutation_floor():
    """With 999 permutations and none beyond the observed value, p = 1/1000 is the smallest the
    test can give; the book printed 'p = 0.001' as if it were measured to that precision."""
    row = {**FACTOR_ROW, "p_value": 0.001}
    text = stats.factor_sentence(row)
    assert "p = 0.001, the smallest 999 permutations can give" in text
    assert "smallest" not in stats.factor_sentence({**row, "p_value": 0.004})


def test_difference_sentence_says_when_a_factor_p_is_the_permutation_floor():
    """The headline answer quotes both factors' permutation p-values; one at 1/(n+1) says so, as
    the factor sentence does, and one above it does not."""
    o = {"p_value": 0.01, "factor": "objective", "n_permutations": 99.0}
    a = {"p_value": 0.37, "factor": "architecture", "n_permutations": 99.0}
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "confidence_level": 0.95}
    text = stats.difference_sentence(d, o, a)
    assert (
        "objective p = 0.01, the smallest 99 permutations can give, architecture p = 0.37" in text
    )
    assert text.count("smallest") == 1


def test_a_factor_p_within_monte_carlo_error_is_not_settled():
    """A permutation p from random labellings near alpha (0.047 of 999: band 2.576 x
    sqrt(0.05 x 0.95 / 999) = 0.018) was worded as a finding; an enumerated one is exact."""
    row = {**FACTOR_ROW, "p_value": 0.047, "p_min": 0.001}
    text = stats.factor_sentence(row)
    assert text.startswith(
        "Whether objective explains the consistency of pairwise similarity across datasets "
        "beyond random grouping is not settled by 999 random labellings: permutation p = 0.047"
    )
    assert stats.factor_sentence({**row, "p_value": 0.03}).startswith("Objective explains")
    # every labelling enumerated (p_min above 1/(n+1)): no Monte Carlo error
    exact = {**row, "p_min": 0.002, "n_permutations": 720.0}
    assert stats.factor_sentence(exact).startswith("Objective explains")
    assert not T.untested_claims(text)
    # the headline: the interval excludes 0, the verdict then hangs on objective's p
    a = {"p_value": 0.5, "factor": "architecture", "n_permutations": 999.0}
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "p_value": 0.001,
         "n_bootstrap": 999.0, "confidence_level": 0.95}  # fmt: skip
    head = stats.difference_sentence(d, row, a)
    assert "is not settled: the interval excludes 0, but objective's own permutation p" in head
    assert stats.difference_sentence(d, exact, a).startswith("Objective explains")
    # an interval that includes 0 does not hang on it
    assert stats.difference_sentence({**d, "ci_low": -0.01, "p_value": 0.2}, row, a).startswith(
        "No evidence"
    )


def test_monte_carlo_band_of_a_one_sided_p():
    # one-sided: SE sqrt(alpha (1 - alpha) / n); 999 permutations: 2.576 x 0.00690 = 0.0178
    assert stats.monte_carlo_undecided(0.067, 999, 0.05, two_sided=False)
    assert not stats.monte_carlo_undecided(0.068, 999, 0.05, two_sided=False)
    assert stats.monte_carlo_undecided(0.068, 999, 0.05)  # two-sided band: 0.0254


# ------------------------------------------------------------- defects found by an audit (session 29)
def test_bootstrap_excess_sd_is_centred_on_its_estimate_without_an_effect():
    """With no effect, the dataset-resampled draws of a factor's excess SD lie on both sides of the
    estimate. (Resampling seeds too, with copies of a model split across categories in the
    replicate's null, put 79-94% of draws above it; with copies kept together, seed resampling
    pulled every draw below the estimate on the embedded run: the interval would be shifted.)"""
    sim = make_zoo(0, None)
    prep = stats._prepare(sim["cka_linear"], stats.CONTROLS, 3)
    tdesign = prep.design[prep.trained]
    labelsets = {
        ("objective", "separate"): stats._codes(tdesign["objective"].tolist()),
        ("objective", "pooled"): stats._codes(tdesign["objective_pooled"].tolist()),
        ("architecture", "separate"): stats._codes(tdesign["architecture"].tolist()),
    }
    rng = np.random.default_rng(0)
    D = prep.S.shape[0]
    point, names = stats._replicate(prep, np.arange(D), labelsets, 19, rng)
    for key in (("excess", "objective", "separate"), ("excess", "architecture", "separate")):
        k = names.index(key)
        draws = [
            stats._replicate(prep, rng.integers(0, D, D), labelsets, 19, rng)[0][k]
            for _ in range(40)
        ]
        above = np.mean(np.asarray(draws) > point[k])
        assert 0.2 < above < 0.8, (key, above)


def test_percentile_interval_excludes_zero_exactly_when_the_bootstrap_p_is_below_alpha():
    """The difference sentence reads the interval and the table reports the two-sided bootstrap
    p; with interpolated percentiles they disagreed (79 draws, two at or below 0: CI 0.09 to 0.49
    and p = 0.0506)."""
    draws = np.r_[-0.1, 0.0, np.linspace(0.09, 0.6, 77)]
    low, _, n = stats.percentile_interval(draws, 0.95)
    assert n == 79 and low == 0.0  # 2 x 2 / 79 = 0.0506: not below 0.05, so 0 is not excluded
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(5, 400))
        d = np.round(rng.normal(rng.uniform(-1, 3), 1, n), int(rng.integers(1, 3)))  # with ties
        level = float(rng.choice([0.9, 0.95, 0.99]))
        low, high, _ = stats.percentile_interval(d, level)
        p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
        assert (low > 0 or high < 0) == (p < round(1 - level, 10)), (n, level, p, low, high)
        assert low <= high


def test_expanded_interval_of_a_mean_is_student_s_t_interval():
    """What the expansion is for: over 10 normal values, the bootstrap distribution of the mean
    is narrower than the sampling distribution (plug-in SD) and has normal tails, so the plain
    95% percentile interval is about 0.82 of the t interval's width; the expanded one matches it."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(0)
    x = rng.normal(size=10)
    means = x[rng.integers(0, 10, (400_000, 10))].mean(axis=1)
    t_low, t_high = student_t.interval(0.95, 9, loc=x.mean(), scale=x.std(ddof=1) / math.sqrt(10))
    low, high, _ = stats.percentile_interval(means, 0.95, n_units=10)
    plain_low, plain_high, _ = stats.percentile_interval(means, 0.95)
    assert (high - low) / (t_high - t_low) == pytest.approx(1.0, abs=0.03)
    assert (plain_high - plain_low) / (t_high - t_low) < 0.85
    assert stats.expanded_level(0.95, 10) == pytest.approx(0.98290, abs=5e-5)  # by hand: 2.3846
    with pytest.raises(InputError, match="2 or more units"):
        stats.expanded_level(0.95, 1)


def test_expanded_bootstrap_p_agrees_with_the_expanded_interval_and_its_monte_carlo_check():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        n, units = int(rng.integers(5, 400)), int(rng.integers(3, 30))
        d = np.round(rng.normal(rng.uniform(-1, 4), 1, n), int(rng.integers(1, 3)))  # with ties
        level = float(rng.choice([0.9, 0.95, 0.99]))
        low, high, _ = stats.percentile_interval(d, level, n_units=units)
        p, _ = stats.bootstrap_p(d, units)
        raw, _ = stats.bootstrap_p(d)
        assert (low > 0 or high < 0) == (p < round(1 - level, 12)), (n, units, level, p, low, high)
        assert p >= raw - 1e-12  # the expansion only ever widens
    # a level whose n (1 - level) / 2 lands a hair above a whole number: the ends come from the
    # p itself, so the two still agree (an absolute fudge on that product let them differ)
    draws = np.r_[-np.ones(8), np.ones(992)]
    level = 1 - stats._expanded_p(0.016 + 1e-12, 10)
    low, _, _ = stats.percentile_interval(draws, level, n_units=10)
    p, _ = stats.bootstrap_p(draws, 10)
    assert (low > 0) == (p < round(1 - level, 12))
    for units in (1, 0, float("nan")):
        with pytest.raises(InputError, match="2 or more units"):
            stats.bootstrap_p(draws, units)
    assert 0 < stats.bootstrap_p(draws, 2)[0] < 1  # 2 units are the fewest that expand
    # 0 of B draws beyond 0 at 10 datasets: the raw alpha is 0.0171, settled from 770 draws on
    assert stats.bootstrap_undecided(0.0, 769, 0.05, 10)
    assert not stats.bootstrap_undecided(0.0, 771, 0.05, 10)
    assert not stats.monte_carlo_undecided(0.0, 769, 0.05)  # the raw scale's band differs
    # from 2 units on, as bootstrap_p: at 2 units the raw alpha is 4e-72, which no count of
    # draws tells apart from a raw p of 0 (on the raw scale 9999 draws would)
    assert stats.bootstrap_undecided(0.0, 9999, 0.05, 2)
    assert not stats.monte_carlo_undecided(0.0, 9999, 0.05)
    assert not stats.bootstrap_undecided(1.0, 79, 0.05, 8)  # p = 1 is never near alpha
    # raw p 0.004 is within the raw band (0.0171 +- 0.0150 at 999 draws), though its expanded p
    # is outside the band around 0.05 that the expanded scale would wrongly use
    p, _ = stats.bootstrap_p(np.r_[-np.ones(2), np.ones(998)], 10)
    assert p < 0.05 - 2.576 * math.sqrt(0.05 * 1.95 / 999) and stats.bootstrap_undecided(
        p, 999, 0.05, 10
    )


def test_bootstrap_p_rests_on_the_defined_draws():
    """Undefined draws (NaN, inf) are left out of the p and of the count it rests on, as out of
    the interval; a list is read as its array. Of the 4 defined draws 1 is at or below 0: raw p
    2 x 1/4, put on the expanded scale of 5 units by hand."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    draws = [0.3, -0.1, np.nan, 0.2, np.inf, 0.5]
    assert stats.bootstrap_p(draws) == (0.5, 4)
    p, n = stats.bootstrap_p(draws, 5)
    assert n == 4 and p == pytest.approx(2 * student_t.sf(norm.isf(0.25) / math.sqrt(5 / 4), 4))
    assert np.isnan(stats.bootstrap_p([np.nan])[0]) and stats.bootstrap_p([np.nan])[1] == 0


def test_percentile_interval_by_the_textbook_order_statistic():
    draws = np.random.default_rng(3).permutation(np.arange(999.0))
    assert stats.percentile_interval(draws, 0.95)[:2] == (24.0, 974.0)  # the 25th from each end
    assert stats.percentile_interval(np.arange(79.0), 0.95)[:2] == (1.0, 77.0)
    assert stats.percentile_interval(list(draws), 0.95) == (24.0, 974.0, 999)  # a plain list


def test_an_undefined_statistic_gets_no_p_and_no_claim():
    """scipy compares the null with a NaN statistic as False and returned the smallest p; the
    sentence then said the factor explains consistency."""
    table = stats.controlled_tests(make_zoo(0, "objective", n_datasets=4), min_pairs=1000, **FAST)
    factor = table[table.analysis == "factor"]
    assert factor.statistic.isna().all() and factor.p_value.isna().all()
    text = stats.factor_sentence(factor.iloc[0])
    assert text.startswith("Whether objective explains") and "cannot be tested" in text
    assert "statistic is undefined" in text
    assert "cannot be tested" in stats.answer(table)
    bare = {"factor": "objective", "p_value": np.nan}  # a row without its counts
    assert "statistic is undefined" in stats.factor_sentence(bare)


def test_a_nan_self_similarity_does_not_reach_the_sums():
    sim = make_zoo(0, "objective", n_datasets=4)
    kw = {"n_permutations": 19, "n_bootstrap": 9, "n_null": 4, "seed": 2}
    clean = stats.controlled_tests(sim, **kw)
    sim["cka_linear"][:, 3, 3] = np.nan
    pd.testing.assert_frame_equal(clean, stats.controlled_tests(sim, **kw))


def test_p_from_null_against_scipy_and_by_enumeration():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(4)
    x = rng.normal(size=12)
    res = permutation_test(
        (x[:6], x[6:]), lambda a, b: np.mean(a) - np.mean(b), n_resamples=99, rng=1,
        alternative="greater", vectorized=False,
    )  # fmt: skip
    p, p_min = stats.p_from_null(res.statistic, res.null_distribution, exact=False)
    assert p == pytest.approx(res.pvalue) and p_min == pytest.approx(1 / 100)
    null = np.array([0.1, 0.5, 0.5, 0.2, np.nan, 0.3])  # a NaN labelling is left out of the null
    assert stats.p_from_null(0.5, null, exact=True) == (0.4, 0.4)
    assert stats.p_from_null(0.3, null, exact=True)[0] == pytest.approx(0.6)
    assert np.isnan(stats.p_from_null(np.nan, null, exact=True)[0])
    # at 0 the 100-ulp band is 0 wide: a null value equal to the statistic still reaches it
    assert stats.p_from_null(0.0, np.array([0.0, 0.0, 1.0]), exact=True) == (1.0, 1 / 3)
    two_sided = stats.p_from_null(0.0, [0.0, 0.0, -1.0, 1.0], exact=True, alternative="two-sided")
    assert two_sided == (1.0, 0.5)  # 3 of 4 reach 0 on each side


def test_p_from_null_counts_values_within_100_ulp_of_the_statistic_as_reached():
    """On both tails and at any scale: 50 ulp from T reaches it, 300 ulp does not."""
    eps, t = np.finfo(float).eps, 1e3
    near_below, far_below = t * (1 - 50 * eps), t * (1 - 300 * eps)
    assert stats.p_from_null(t, [near_below, far_below, 0.0], exact=True)[0] == 1 / 3
    near_above, far_above = t * (1 + 50 * eps), t * (1 + 300 * eps)
    null = [near_above, far_above, 2e3, 3e3]  # all 4 at or above T, 1 of 4 reaches it from above
    assert stats.p_from_null(t, null, exact=True, alternative="two-sided")[0] == 2 * 1 / 4


def test_two_sided_p_from_null_and_its_floor_by_hand():
    null = np.array([-0.4, -0.1, 0.0, 0.2, 0.2, np.nan, 0.5])  # six defined labellings
    # 0.2 is reached by 3 of 6 upward and 5 of 6 downward: 2 x 3/6
    assert stats.p_from_null(0.2, null, exact=True, alternative="two-sided") == (1.0, 2 / 6)
    assert stats.p_from_null(0.5, null, exact=True, alternative="two-sided")[0] == 2 / 6
    assert stats.p_from_null(-0.4, null, exact=True, alternative="two-sided")[0] == 2 / 6
    # random orderings: the observed one is added to both tails, (k + 1) / (n + 1)
    assert stats.p_from_null(0.5, null, exact=False, alternative="two-sided") == (4 / 7, 2 / 7)
    # a floor set by the lower end: -0.4 is reached by 1 of 5 downward, 0.5 by 2 of 5 upward;
    # 0.2 by 4 of 5 upward and 3 of 5 downward: twice 3/5, capped at 1
    skewed = np.array([-0.4, 0.2, 0.2, 0.5, 0.5])
    assert stats.p_from_null(0.2, skewed, exact=True, alternative="two-sided") == (1.0, 2 / 5)
    with pytest.raises(InputError, match="alternative"):
        stats.p_from_null(0.5, null, exact=True, alternative="less")


@pytest.mark.parametrize("exact", [True, False])
def test_p_from_null_without_a_defined_labelling_is_undefined_and_takes_a_list(exact):
    """No defined null value: no p and no floor (not the 1 / (0 + 1) of an empty count). A plain
    list is read as the array it holds."""
    for empty in ([], [np.nan, np.nan]):
        p, p_min = stats.p_from_null(0.3, empty, exact=exact)
        assert np.isnan(p) and np.isnan(p_min)
    null = [0.1, 0.3, np.nan, 0.5, 0.2]
    assert stats.p_from_null(0.3, null, exact=exact) == stats.p_from_null(
        0.3, np.array(null), exact=exact
    )
    assert stats.p_from_null(0.3, null, exact=exact)[0] == (2 / 4 if exact else 3 / 5)


def _brute_force_unit_test(statistic, n, strata=None):
    """Two-sided p and its floor over every ordering of ``n`` units (with ``strata``: those that
    move units only within their stratum), by itertools."""
    orders = list(permutations(range(n)))
    if strata is not None:
        orders = [o for o in orders if all(strata[u] == strata[i] for i, u in enumerate(o))]
    null = np.array([statistic(np.array(o)) for o in orders])
    null = null[np.isfinite(null)]
    t = statistic(np.arange(n))

    def p(v):
        return min(1.0, 2 * min((null >= v - 1e-12).mean(), (null <= v + 1e-12).mean()))

    return p(t), min(p(v) for v in null)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_permutation_test_matches_enumeration_by_hand(seed):
    """A Mantel test (one matrix's models reordered) over 5 models: 120 orderings, all of them."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(5, 5))
    b = a + rng.normal(scale=1.0, size=(5, 5))
    a, b = a + a.T, b + b.T
    iu = np.triu_indices(5, k=1)

    def r(order):
        return float(np.corrcoef(a[iu], b[np.ix_(order, order)][iu])[0, 1])

    res = stats.unit_permutation_test(r, 5, n_resamples=999)
    p, p_min = _brute_force_unit_test(r, 5)
    assert res["exact"] and res["n_permutations"] == 120
    assert res["statistic"] == pytest.approx(r(np.arange(5)), abs=1e-15)
    assert res["p_value"] == pytest.approx(p, abs=1e-12)
    assert res["p_min"] == pytest.approx(p_min, abs=1e-12)
    random = stats.unit_permutation_test(r, 5, n_resamples=99, rng=3)
    assert not random["exact"] and random["p_min"] == pytest.approx(2 / 100)
    assert random == stats.unit_permutation_test(r, 5, n_resamples=99, rng=3)


def test_one_unit_has_a_statistic_and_no_p():
    """One dataset or one model leaves nothing to permute: the statistic, no p (scipy refuses a
    sample of one)."""
    res = stats.unit_permutation_test(lambda order: float(order.size), 1)
    assert res == {
        "statistic": 1.0,
        "p_value": pytest.approx(np.nan, nan_ok=True),
        "p_min": pytest.approx(np.nan, nan_ok=True),
        "n_permutations": 0,
        "exact": True,
    }


def test_unit_permutation_within_strata_matches_enumeration_by_hand():
    """6 models in three strata of 2: the 8 orderings that keep every model in its stratum, all
    of them (exact), or random ones when fewer are allowed; strata of unequal size are refused."""
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=6), np.array([0, 1, 0, 1, 1, 0])
    strata = np.array(["a", "a", "b", "b", "c", "c"])

    def diff(order):
        lab = labels[order]
        return float(x[lab == 1].mean() - x[lab == 0].mean())

    res = stats.unit_permutation_test(diff, 6, n_resamples=99, strata=strata)
    p, p_min = _brute_force_unit_test(diff, 6, strata)
    assert res["exact"] and res["n_permutations"] == 8
    assert res["p_value"] == pytest.approx(p, abs=1e-12) and res["p_min"] == pytest.approx(p_min)
    assert not stats.unit_permutation_test(diff, 6, n_resamples=7, strata=strata)["exact"]
    with pytest.raises(InputError, match="strata of equal size"):
        stats.unit_permutation_test(diff, 6, strata=np.array(list("aaabbc")))


def test_a_domain_split_too_small_to_test_says_its_floor():
    """4 datasets in 2 + 2: the 3 splits appear 8 times each in the 24 orderings, so even the
    clearest separation has two-sided p = 2 x 8/24; the sentence said "no evidence"."""
    domains = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    values = {(a, b): 0.9 if domains[a] == domains[b] else 0.1 for a, b in combinations(domains, 2)}
    res = stats.domain_permutation_test(_pairs_table(values), domains)
    assert res["p_value"] == pytest.approx(2 / 3) and res["p_min"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("zoo_seed", [0, 1, 2])
def test_renamed_labellings_give_the_same_statistic(zoo_seed):
    """Swapping the two objectives in every stratum gives the same T in exact arithmetic, but
    column-order rounding put the swap of the observed labelling 1e-14 below it, beyond the
    100-ulp tie rule: with similarities near 0.9 (CKA's usual range) the 2 x 2 x 2 design gave
    p_min = 0.0625, below the 2/16 its 16 labellings allow, and every p was short by 1/16."""
    sim = make_zoo(zoo_seed, "objective", n_datasets=3)
    keep = [m for m in sim.model_a.values if m.split("-")[0] in ("cnn", "mlp")]
    keep = [m for m in keep if m.split("-")[1] in ("supervised", "clip") and m[-1] in "01"]
    sim = sim.sel(model_a=keep, model_b=keep)
    sim["cka_linear"] = 0.9 + 0.05 * sim["cka_linear"]
    table = stats.controlled_tests(
        sim, ["cka_linear"], n_permutations=999, n_bootstrap=9, n_null=3, min_datasets=3
    )
    factor = table[(table.analysis == "factor") & (table.view == "separate")]
    assert np.allclose(factor.p_min, 0.125)
    # every partition is counted twice (a labelling and its swap): p is a multiple of 2/16
    assert np.allclose(factor.p_value * 8, np.round(factor.p_value * 8))


def test_renaming_by_first_appearance():
    renamed = stats._renamed_by_first_appearance
    assert renamed(np.array([2, 0, 2, 1, -1, 0])).tolist() == [0, 1, 0, 2, -1, 1]
    assert renamed(np.array([1, 0, 1, 0])).tolist() == renamed(np.array([0, 1, 0, 1])).tolist()


@pytest.mark.parametrize("n_permutations", [16, 999])
def test_a_design_too_small_to_reject_says_so(n_permutations):
    """2 objectives x 2 architectures x 2 seeds: each factor has 2^4 = 16 labellings, so no p can
    go below 2/16 = 0.125 (a labelling and its swap give the same T); the sentence said 'no
    evidence' as if the test could have found one. Asked for exactly 16 permutations, scipy
    enumerates them too: they are the design's labellings, not 16 random ones."""
    sim = make_zoo(0, "objective", n_datasets=5)
    keep = [m for m in sim.model_a.values if m.split("-")[0] in ("cnn", "mlp")]
    keep = [m for m in keep if m.split("-")[1] in ("supervised", "clip") and m[-1] in "01"]
    sim = sim.sel(model_a=keep, model_b=keep)
    design = stats.design_table(sim)
    assert stats.n_labellings(stats._strata(design, "objective", design["seed"].to_numpy())) == 16
    table = stats.controlled_tests(
        sim, n_permutations=n_permutations, n_bootstrap=19, n_null=15, seed=0
    )
    factor = table[(table.analysis == "factor") & (table.view == "separate")]
    assert (factor.n_permutations == 16).all() and np.allclose(factor.p_min, 0.125)
    assert (factor.p_value >= 0.125).all()
    assert "the design's 16 labellings give p >= 0.125 at best" in stats.factor_sentence(
        factor.iloc[0]
    )
    assert "cannot be tested at alpha = 0.05" in stats.answer(table)


def test_format_p_never_rounds_across_alpha():
    assert stats.format_p(0.0496) == "p = 0.0496"  # below 0.05, and the sentence says so
    assert stats.format_p(0.0504) == "p = 0.05"  # not below: p = alpha is not significant
    assert stats.format_p(0.0096, alpha=0.01) == "p = 0.0096"
    assert stats.format_p(0.0496, alpha=0.01) == "p = 0.05"
    # as close to alpha as a Bonferroni-multiplied p can fall: still not rounded onto it
    assert stats.format_p(0.0499999996) == "p = 0.0499999996"


def test_format_p_below_a_small_alpha_says_which_side():
    # a Bonferroni threshold of 0.05 / 100: "p < 0.001" said nothing about p against it
    assert stats.format_p(0.0004, alpha=0.0005) == "p = 0.0004"
    assert stats.format_p(0.0006, alpha=0.0005) == "p = 0.0006"
    assert stats.format_p(0.000499996, alpha=0.0005) == "p = 0.000499996"
    assert stats.format_p(0.0000002, alpha=0.0005) == "p = 2e-07"
    assert stats.format_p(0.0004) == "p < 0.001"  # alpha 0.05: the floor says enough


def test_difference_sentence_refuses_an_alpha_its_interval_does_not_answer():
    o = {"p_value": 0.001, "factor": "objective", "n_permutations": 999.0}
    a = {"p_value": 0.3, "factor": "architecture", "n_permutations": 999.0}
    d = {"estimate": 0.1, "ci_low": 0.01, "ci_high": 0.2, "confidence_level": 0.95}
    with pytest.raises(InputError, match="95% bootstrap interval, which answers at alpha = 0.05"):
        stats.difference_sentence(d, o, a, alpha=0.01)
    assert stats.difference_sentence(d, o, a).startswith("Objective explains")


def test_keyed_rng_keys_are_not_padded_with_zeros():
    draw = lambda *key: stats.keyed_rng(*key).integers(1 << 30, size=4).tolist()  # noqa: E731
    assert draw(0) != draw(0, 0)
    assert draw(7, "m") != draw(7, "m", 0)
    assert draw(7, "") != draw(7)


def test_an_interval_end_that_excludes_zero_never_prints_as_zero():
    """A sentence claims a difference when its interval excludes 0; the interval it prints must
    show that (0.004 printed as 0.00 read as an interval touching 0 beside the claim)."""
    assert stats.format_interval(0.12, 0.3) == "0.12 to 0.30"
    assert stats.format_interval(0.0041, 0.25) == "0.004 to 0.25"
    assert stats.format_interval(-0.0041, -0.00004) == "-0.004 to -0.00004"
    assert stats.format_interval(0.0, 3e-7) == "0.00 to 3.0e-07"
    assert stats.format_interval(float("nan"), 0.2) == "nan to 0.20"
    o = {"p_value": 0.001, "factor": "objective", "n_permutations": 999.0}
    a = {"p_value": 0.4, "factor": "architecture", "n_permutations": 999.0}
    d = {"estimate": 0.12, "ci_low": 0.0041, "ci_high": 0.25, "confidence_level": 0.95}
    text = stats.difference_sentence(d, o, a)
    assert text.startswith("Objective explains") and "95% CI 0.004 to 0.25" in text
    text = stats.difference_sentence({**d, "ci_low": -0.0041}, o, a)
    assert text.startswith("No evidence") and "95% CI -0.004 to 0.25" in text


def test_too_few_datasets_give_no_interval_and_the_sentence_says_why():
    """Over 3 datasets a nominal 95% bootstrap interval covered the truth in about half of the
    simulated draws (80% at 5): below MIN_BOOTSTRAP_DATASETS no interval is given, and the
    headline says the run cannot test the difference instead of "no evidence"."""
    assert stats.MIN_BOOTSTRAP_DATASETS == 8
    for n, given in ((7, False), (8, True)):
        names = [f"d{i}" for i in range(n)]
        rng = np.random.default_rng(n)
        table = _pairs_table({pair: float(rng.normal()) for pair in combinations(names, 2)})
        res = stats.dataset_bootstrap(table, lambda t: t.consistency.median(), n_resamples=49)
        assert np.isfinite(res["ci_low"]) == given and (res["n_bootstrap"] > 0) == given
    sim = make_zoo(0, "objective", n_datasets=7)
    table = stats.controlled_tests(sim, seed=1, **FAST)
    boot = table[table.analysis.isin(["factor", "difference", "category_pair"])]
    assert boot.ci_low.isna().all() and boot.ci_high.isna().all()
    text = stats.answer(table)
    assert "cannot be tested on this run" in text and "No evidence" not in text
    assert "7 datasets, fewer than the 8 a bootstrap interval over datasets needs" in text


# -- mutation audit (session 35): each test below kills a change that no other test noticed ------
def test_spread_is_undefined_with_fewer_than_two_category_pairs():
    # T is the variance over category pairs with enough model pairs: one pair has no spread to test
    mean = np.array([[0.5, 0.7], [0.7, 0.2]])
    assert stats._spread(mean, np.full((2, 2), 3), 2) == pytest.approx(np.var([0.5, 0.7, 0.2]))
    only_one = np.array([[3, 1], [1, 1]])  # A | A has 3 model pairs, the others too few
    assert np.isnan(stats._spread(mean, only_one, 2))
    # exactly min_pairs model pairs is enough (B | B, with 1, is not)
    at_the_floor = np.array([[2, 2], [2, 1]])
    assert stats._spread(mean, at_the_floor, 2) == pytest.approx(np.var([0.5, 0.7]))


def test_null_mean_and_sd_are_those_of_the_permutation_null(monkeypatch):
    # null_sd is the sample SD (ddof 1) of the permutation null that the p-value is read from
    nulls = []
    original = stats.stratified_permutation_test

    def spy(labels, strata, statistic, **kw):
        res = original(labels, strata, statistic, **kw)
        if kw["n_resamples"] == FAST["n_permutations"]:  # the three factor tests, in order
            nulls.append(np.asarray(res.null_distribution, dtype=float))
        return res

    monkeypatch.setattr(stats, "stratified_permutation_test", spy)
    t = stats.controlled_tests(make_zoo(0, "objective"), seed=1, **FAST)
    tests = [("objective", "separate"), ("objective", "pooled"), ("architecture", "separate")]
    assert len(nulls) == len(tests)
    for (factor, view), null in zip(tests, nulls):
        null = null[np.isfinite(null)]
        row = _row(t, "factor", factor, view)
        assert row.null_mean == pytest.approx(null.mean(), rel=1e-12)
        assert row.null_sd == pytest.approx(null.std(ddof=1), rel=1e-12)


def _replicate_inputs(n_datasets=5):
    sim = make_zoo(0, "objective", n_datasets=n_datasets)["cka_linear"]
    prep = stats._prepare(sim, stats.CONTROLS, stats.MIN_PAIRS)
    tdesign = prep.design[prep.trained]
    views = [("objective", "separate"), ("objective", "pooled"), ("architecture", "separate")]
    labelsets = {
        (f, v): stats._codes(tdesign[stats._label_column(f, v)].tolist()) for f, v in views
    }
    return prep, views, labelsets


def test_a_bootstrap_replicate_takes_its_null_mean_as_the_table_does(monkeypatch):
    """Each resample's excess SD is its T minus the mean of the defined values of its own small
    null, as the reported estimate is of the full one: the bias correction compares the two, so
    another location (a median) would shift every corrected interval."""
    prep, views, labelsets = _replicate_inputs()
    seen = []
    original = stats._spread

    def skewed(mean, n, min_pairs):  # a null with an undefined value and a far one
        out = original(mean, n, min_pairs)
        if np.ndim(out) == 0:
            return out
        out = out.copy()
        out[1], out[2] = np.nan, out[2] + 1.0
        seen.append(out)
        return out

    monkeypatch.setattr(stats, "_spread", skewed)
    values, names = stats._replicate(prep, np.arange(5), labelsets, 9, np.random.default_rng(0))
    assert len(seen) == len(views) and all(out.size == 10 for out in seen)
    for (factor, view), out in zip(views, seen):
        d = out[0] - np.mean(out[1:][np.isfinite(out[1:])])
        want = np.sign(d) * np.sqrt(abs(d))
        assert values[names.index(("excess", factor, view))] == pytest.approx(want, rel=1e-12)


def test_a_bootstrap_replicates_t_and_null_are_the_permutation_tests_statistic():
    """A replicate takes T and its null in one pass over all models with the controls left out;
    each value is the statistic the permutation test computes one labelling at a time over the
    trained models (:func:`stats._factor_stat`), for the labellings the replicate drew."""
    prep, views, labelsets = _replicate_inputs()
    tpos = np.flatnonzero(prep.trained)
    tdesign = prep.design.iloc[tpos]
    didx = np.array([0, 0, 2, 3, 4])  # a resample with a repeated dataset
    drawn = []
    original = stats._labellings_within_strata

    def spy(labels, strata, n, rng):
        out = original(labels, strata, n, rng)
        drawn.append(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stats, "_labellings_within_strata", spy)
        values, names = stats._replicate(prep, didx, labelsets, 9, np.random.default_rng(0))
    engine = stats._Engine(prep.S, tpos, didx)
    for (factor, view), rows in zip(views, drawn):
        codes, levels = labelsets[(factor, view)]
        stat = stats._factor_stat(engine, codes, len(levels), prep.min_pairs)
        t, null = stat(codes), np.array([stat(row) for row in rows])
        assert rows.shape == (9, tpos.size) and np.isfinite(null).all()
        d = t - null.mean()
        want = np.sign(d) * np.sqrt(abs(d))
        assert values[names.index(("excess", factor, view))] == pytest.approx(want, rel=1e-9)
        strata = stats._strata(tdesign, factor, tdesign["seed"].to_numpy())
        for key in set(strata):  # every stratum keeps its labels
            members = strata == key
            assert (np.sort(rows[:, members], axis=1) == np.sort(codes[members])).all()


def test_engine_means_of_a_stack_are_each_labellings_by_hand():
    """A (B, m) stack of labellings gives each labelling's means and counts (the bootstrap's null
    draws take one pass), checked against np.corrcoef over the model pairs, copies of a model
    never paired and copies of a dataset never compared."""
    rng = np.random.default_rng(11)
    D, M, K = 5, 8, 3
    S = rng.uniform(size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    idx, didx = np.array([0, 1, 2, 3, 3, 4, 5, 6, 7]), np.array([0, 1, 1, 2, 4])
    base = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1])
    stack = np.array([rng.permutation(base) for _ in range(6)])
    engine = stats._Engine(S, idx, didx)
    mean, n = engine.means(stack, K)
    assert mean.shape == n.shape == (6, K, K)
    for labels, got, count in zip(stack, mean, n):
        for ca, cb in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
            pairs = [
                (p, q)
                for p, q in combinations(range(idx.size), 2)
                if idx[p] != idx[q] and sorted((labels[p], labels[q])) == [ca, cb]
            ]
            assert count[ca, cb] == len(pairs)
            if len(pairs) < 2:  # no correlation over fewer than two pairs
                assert np.isnan(got[ca, cb])
                continue
            values = [[S[x, idx[p], idx[q]] for p, q in pairs] for x in didx]
            rs = [
                np.corrcoef(values[x1], values[x2])[0, 1]
                for x1, x2 in combinations(range(didx.size), 2)
                if didx[x1] != didx[x2]
            ]
            assert got[ca, cb] == pytest.approx(np.mean(rs), abs=1e-12)
        one_mean, one_n = engine.means(labels, K)  # one labelling alone: the same
        np.testing.assert_allclose(one_mean, got, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(one_n, count)


def test_relabellings_within_strata_keep_every_strata_labels_and_cover_them():
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    strata = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])  # 4! x 4! = 576 labellings
    draws = stats._labellings_within_strata(labels, strata, 480, np.random.default_rng(2))
    assert draws.shape == (480, 8)
    for members in (slice(0, 4), slice(4, 8)):
        assert (np.sort(draws[:, members], axis=1) == [0, 1, 2, 3]).all()
    # random draws: each label reaches each place about a quarter of the time (120 +- 9.5)
    for place in range(8):
        counts = np.bincount(draws[:, place], minlength=4)
        assert (np.abs(counts - 120) < 45).all(), counts
    again = stats._labellings_within_strata(labels, strata, 480, np.random.default_rng(2))
    np.testing.assert_array_equal(draws, again)
    # as few labellings as asked for or fewer: every one, the observed among them
    small = np.array([0, 1, 0, 1, 1, 0])
    by = np.array([0, 0, 1, 1, 2, 2])  # 2 x 2 x 2 = 8 orderings
    every = stats._labellings_within_strata(small, by, 8, np.random.default_rng(0))
    assert every.shape == (stats.n_labellings(by), 6) == (8, 6)
    assert {tuple(r) for r in every} == {
        (a, 1 - a, b, 1 - b, 1 - c, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)
    }
    assert (every == small).all(axis=1).any()


def test_a_constant_null_gives_no_z(monkeypatch):
    """Every labelling with the same T (null SD 0) leaves z undefined, not infinite (or a
    division by zero that stopped the run)."""
    original = stats.stratified_permutation_test

    def flat(labels, strata, statistic, **kw):
        res = original(labels, strata, statistic, **kw)
        null = np.zeros_like(np.asarray(res.null_distribution, dtype=float))
        return SimpleNamespace(statistic=res.statistic, null_distribution=null)

    monkeypatch.setattr(stats, "stratified_permutation_test", flat)
    t = stats.controlled_tests(make_zoo(0, "objective", n_datasets=4), seed=1, **FAST)
    rows = t[t.analysis == "factor"]
    assert len(rows) == 4 and (rows.null_sd == 0).all() and (rows.statistic > 0).all()
    assert rows.z.isna().all()


def test_labellings_with_an_undefined_statistic_are_left_out_of_the_null(monkeypatch):
    """A permuted labelling whose T is undefined (NaN) is not part of the null: the null mean and
    SD (and so the excess SD) are those of the defined values, and n_permutations counts them."""
    original = stats.stratified_permutation_test

    def some_undefined(labels, strata, statistic, **kw):
        res = original(labels, strata, statistic, **kw)
        null = np.asarray(res.null_distribution, dtype=float).copy()
        null[::4] = np.nan  # 50 of the 199 permutations
        return SimpleNamespace(statistic=res.statistic, pvalue=res.pvalue, null_distribution=null)

    monkeypatch.setattr(stats, "stratified_permutation_test", some_undefined)
    t = stats.controlled_tests(make_zoo(0, "objective", n_datasets=4), seed=1, **FAST)
    for factor in ("objective", "architecture"):
        row = _row(t, "factor", factor)
        assert row.n_permutations == 149
        assert np.isfinite([row.null_mean, row.null_sd, row.z, row.estimate]).all()
        d = row.statistic - row.null_mean
        assert row.estimate == pytest.approx(np.sign(d) * abs(d) ** 0.5, rel=1e-12)


def test_dataset_bootstrap_never_gives_an_interval_below_three_datasets():
    # "never fewer than 3", whatever min_datasets says: two datasets have one pair to resample
    table = _pairs_table({("d0", "d1"): 0.4})
    res = stats.dataset_bootstrap(table, lambda t: t.consistency.mean(), min_datasets=0)
    assert res["estimate"] == 0.4
    assert np.isnan(res["ci_low"]) and np.isnan(res["ci_high"]) and res["n_bootstrap"] == 0


def test_controlled_tests_need_three_datasets():
    with pytest.raises(InputError, match="at least 3 datasets"):
        stats.controlled_tests(make_zoo(0, "objective", n_datasets=2), seed=1, **FAST)


def test_correlation_needs_min_points_finite_pairs():
    # two points always give r = +-1: undefined under the default min_points = 3
    assert all(np.isnan(stats.correlation_test([1.0, 2.0], [3.0, 5.0])))
    assert np.isnan(stats.correlate([1.0, 2.0, np.nan], [3.0, 5.0, 4.0]))
    assert stats.correlate([1.0, 2.0, 4.0], [3.0, 5.0, 9.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlate_equals_scipy_with_ties_and_gaps(method):
    """correlate's centred-sum r (fast enough to permute) against scipy's, in float64."""
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(11)
    x = np.round(rng.normal(size=200), 1)  # ties
    y = 0.5 * x + rng.normal(size=200)
    x[[3, 50]] = np.nan
    y[7] = np.inf
    ok = np.isfinite(x) & np.isfinite(y)
    want = (pearsonr if method == "pearson" else spearmanr)(x[ok], y[ok])
    assert stats.correlate(x, y, method) == pytest.approx(want[0], abs=1e-14)
    r, p = stats.correlation_test(x, y, method)
    assert r == stats.correlate(x, y, method) and p == pytest.approx(want[1], rel=1e-9)
    assert np.isnan(stats.correlate(x, np.ones(200), method))  # constant side: undefined
    with pytest.raises(InputError, match="method"):
        stats.correlate(x, y, "kendall")


def test_boundaries_of_the_permutation_rules():
    """Each comparison at its edge (found by mutation testing: < and <= were interchangeable)."""
    # n_labellings: k! per stratum of k, not k
    assert stats.n_labellings(["a", "a", "a", "b", "b"]) == 3 * 2 * 1 * 2 * 1
    # a p equal to alpha is not below it; a floor equal to alpha cannot test
    base = {"p_value": 0.05, "p_min": 0.001, "n_permutations": 720, "exact": True}
    assert stats.permutation_verdict(base) == "not below"
    assert stats.permutation_verdict({**base, "p_value": 0.2, "p_min": 0.05}) == "untestable"
    row = {"factor": "objective", "p_value": 0.05, "p_min": 2 / 720, "n_permutations": 720.0}
    assert stats.factor_sentence(row).startswith("No evidence")
    # every ordering enumerated when n! equals n_resamples
    assert stats.unit_permutation_test(lambda o: float(o[0]), 3, n_resamples=6)["exact"]
    assert not stats.unit_permutation_test(lambda o: float(o[0]), 3, n_resamples=5)["exact"]
    # a null value equal to the statistic but for the last bits counts as reached (100 ulp)
    t = 0.3
    null = np.array([t * (1 - 4e-16), 0.1, 0.2, 0.25])
    assert stats.p_from_null(t, null, exact=True) == (0.25, 0.25)
    # bootstrap draws exactly at 0 count in both tails
    assert stats.bootstrap_p(np.array([0.0, 0.0, 1.0, 2.0]))[0] == 1.0
    assert stats.bootstrap_p(np.array([-2.0, -1.0, 0.0, 0.0]))[0] == 1.0  # and from below
    assert stats.bootstrap_p(np.array([0.0, 1.0, 2.0, 3.0]))[0] == 0.5


def test_relabellings_within_strata_are_uniform_over_the_joint_orders():
    """Every within-stratum labelling equally likely, jointly over the strata (per-place counts
    alone pass a sampler that draws only rotations): a chi-square test over the 36 labellings of
    two strata of three, from 35,000 random draws (35 per call: fewer than 36, so drawn)."""
    from scipy.stats import chisquare

    labels = np.array([0, 1, 2, 0, 1, 2])
    strata = np.array([0, 0, 0, 1, 1, 1])
    rng = np.random.default_rng(8)
    draws = np.vstack(
        [stats._labellings_within_strata(labels, strata, 35, rng) for _ in range(1000)]
    )
    codes = (draws[:, :3] @ [9, 3, 1]) * 27 + draws[:, 3:] @ [9, 3, 1]
    _, counts = np.unique(codes, return_counts=True)
    assert counts.size == 36
    assert chisquare(counts).pvalue > 1e-3


def test_format_on_side_and_within_keep_the_verdicts_side():
    from repsim.reference import format_within

    below = lambda v: v < 0.05  # noqa: E731
    assert stats.format_on_side(0.0496, below) == "0.0496"
    assert stats.format_on_side(0.0504, below) == "0.05"  # on alpha: not below, as p >= alpha
    assert stats.format_on_side(0.00021, lambda v: v < 0.000208, 1, "e") == "2.1e-04"
    assert format_within(0.7504, 0.70, 0.05) == "0.7504"  # outside: never on the edge
    assert format_within(0.7496, 0.70, 0.05) == "0.750"  # within: the edge is within
    assert format_within(0.6496, 0.70, 0.05) == "0.6496"
    assert format_within(0.75, 0.70, 0.05) == "0.750"  # 0.70 + 0.05 is 0.75 +- 1 ulp
    assert stats.format_estimate(-0.0) == "0.00"  # an exact zero has no sign
    # values that need all 17 significant digits to stay off alpha (16 decimals fell short and
    # the fallback printed them on it: "p = 0.05", "p = 0.0002", "p = 0.10")
    assert stats.format_p(0.15 - 0.1) == "p = 0.04999999999999999"
    assert stats.format_p(0.00019999999999999998, 0.0002) == "p = 0.00019999999999999998"
    assert stats.format_p(np.nextafter(0.1, 0), 0.1) == "p = 0.09999999999999999"
