"""Tests of repsim.analysis on small hand-made and fake-run inputs."""

from __future__ import annotations

import importlib
import itertools
import logging
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers_run import write_fake_run, write_manifest_for

from repsim import analysis as A
from repsim import behavior as B
from repsim import chapter as CH
from repsim import names as N
from repsim import sentences as T
from repsim import stats as S
from repsim.errors import InputError, StoreError
from repsim.stats import keyed_rng

# the module: ``repsim.consistency`` as an attribute of the package is the function
C = importlib.import_module("repsim.consistency")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> CH.Run:
    return CH.load_run(
        write_fake_run(tmp_path_factory.mktemp("run"), n_per_objective=3, features=False)
    )


def _lin(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_load_run_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(StoreError, match="repsim run"):
        CH.load_run(tmp_path)


def test_load_run_and_caption(run):
    assert run.consistency is not None and run.probes is not None
    cap = run.caption("cka_linear")
    assert "fake-tiny" in cap and "12 models" in cap and "cka_linear" in cap


def test_caption_names_up_to_six_datasets_and_counts_more(run):
    """A caption lists the datasets by id up to six, and gives their number beyond (a list of
    23 datasets would be the whole caption); the run's name is similarity.nc's, before run.json's
    and the folder's."""
    from dataclasses import replace

    six = [f"d{i}" for i in range(6)]
    assert run.caption(datasets=six).endswith("datasets: d0, d1, d2, d3, d4, d5.")
    assert "datasets: 7 datasets." in run.caption(datasets=[*six, "d6"])
    renamed = replace(run, info={**run.info, "config": {"name": "from-run-json"}})
    assert renamed.name == run.similarity.attrs["run"] != "from-run-json"
    unnamed = replace(renamed, similarity=run.similarity.assign_attrs(run=""))
    assert unnamed.name == "from-run-json"
    assert replace(unnamed, info={}).name == run.path.name


def test_cluster_order_groups_blocks():
    block = np.kron(np.eye(2), np.ones((3, 3))) * 0.8 + 0.1
    np.fill_diagonal(block, 1.0)
    perm = np.array([0, 3, 1, 4, 2, 5])
    order = A.cluster_order(block[np.ix_(perm, perm)])
    groups = [perm[i] // 3 for i in order]
    assert groups in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])


def test_cluster_order_reads_an_undefined_similarity_as_unrelated():
    """A model the measure failed on (its row NaN) stopped chapter 3's per-dataset clustering
    with scipy's "must contain only finite values"; it is ordered as a model similar to none."""
    block = np.kron(np.eye(2), np.ones((3, 3))) * 0.8 + 0.1
    np.fill_diagonal(block, 1.0)
    with_nan = np.pad(block, ((0, 1), (0, 1)), constant_values=np.nan)
    order = A.cluster_order(with_nan)
    assert sorted(order) == list(range(7))
    np.testing.assert_array_equal(order, A.cluster_order(np.nan_to_num(with_nan, nan=0.0)))
    assert sorted(A.cluster_order(np.full((4, 4), np.nan))) == [0, 1, 2, 3]


def test_similarity_pairs_counts_and_labels(run):
    da = run.similarity["cka_linear"]
    t = C.similarity_pairs(da, "objective")
    n = da.sizes["model_a"]
    assert len(t) == da.sizes["dataset"] * n * (n - 1) // 2
    assert set(t.category_pair) >= {"Random | Supervised", "Self-Supervised | Self-Supervised"}
    assert N.pair_label("b", "a") == N.pair_label("a", "b") == "a | b"


def test_mean_std_is_zero_for_constant_pairs():
    m = np.array([[1.0, 0.5], [0.5, 1.0]])
    da = xr.DataArray(
        np.stack([m, m, m]),
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": list("xyz"),
            "model_a": ["p", "q"],
            "model_b": ["p", "q"],
            "objective_a": ("model_a", ["S", "S"]),
        },
    )
    t = A.mean_std_across_datasets(da)
    assert t["mean"].item() == pytest.approx(0.5) and t["std"].item() == pytest.approx(0.0)


def test_consistency_table_and_summary(run):
    tidy = C.consistency_table(run.consistency, "cka_linear", ["all", "objective"])
    n_d = run.similarity.sizes["dataset"]
    assert (tidy.groupby("group_pair").size() == n_d * (n_d - 1) // 2).all()
    assert "all" in set(tidy.label)
    obj = tidy[tidy.group_by == "objective"]
    order = C.median_order(obj)
    meds = obj.groupby("label").consistency.median()[order].values
    assert (np.diff(meds) <= 1e-12).all()
    assert list(C.consistency_summary(obj).label) == order
    sub = C.consistency_table(run.consistency, "cka_linear", "all", datasets=["shapes", "digits"])
    assert len(sub) == 1
    spread = C.grouping_spread(
        C.consistency_table(run.consistency, "cka_linear", ["all", "objective", "size_class"])
    )
    assert spread.group_by.iloc[0] == "objective"


def test_anchor_rank_sum_tests_are_exact_for_few_anchors():
    """3 against 3 anchors: the normal approximation gave p = 0.0495 for complete separation,
    whose exact p is 0.1 (the smallest these sizes allow); with 2 against 2 no test can reach a
    Bonferroni threshold, and the sentence says the comparison cannot be tested."""
    from scipy.stats import mannwhitneyu

    def tidy(n):
        return pd.DataFrame(
            [
                {"anchor": f"{c}{i}", "category": c, "consistency": mu + 0.01 * i}
                for c, mu in (("hi", 0.9), ("lo", 0.2))
                for i in range(n)
            ]
        )

    three = C.anchor_rank_sum_tests(tidy(3), alpha=0.05).iloc[0]
    assert three.p == pytest.approx(0.1) and three.p_min == pytest.approx(0.1)
    xa, xb = [0.9, 0.91, 0.92], [0.2, 0.21, 0.22]
    assert three.p == pytest.approx(mannwhitneyu(xa, xb, method="exact").pvalue)
    assert not three.significant
    # one small group is enough for the exact p (scipy's rule): 3 anchors against 12
    uneven = pd.DataFrame(
        [{"anchor": f"a{i}", "category": "a", "consistency": 0.9 + 0.01 * i} for i in range(3)]
        + [{"anchor": f"b{i}", "category": "b", "consistency": 0.5 + 0.01 * i} for i in range(12)]
    )
    got = C.anchor_rank_sum_tests(uneven, alpha=0.05).iloc[0].p
    xa, xb = [0.9 + 0.01 * i for i in range(3)], [0.5 + 0.01 * i for i in range(12)]
    assert got == pytest.approx(mannwhitneyu(xa, xb, method="exact").pvalue)
    text = T.rank_sum_text(C.anchor_rank_sum_tests(tidy(2), alpha=0.01), 0.01)
    assert text.startswith("No category comparison can be tested at the Bonferroni threshold")
    assert "smallest p an exact rank-sum test can give is 0.333" in text


def _brute_rank_sum(xa, xb) -> tuple[float, float]:
    """Two-sided p of the mid-rank sum over every split, by itertools, and its smallest value."""
    from scipy.stats import rankdata

    pooled = np.r_[xa, xb]
    ranks = rankdata(pooled)
    null = np.array(
        [ranks[list(c)].sum() for c in itertools.combinations(range(len(pooled)), len(xa))]
    )

    def p(t):
        return min(1.0, 2 * min((null >= t - 1e-9).mean(), (null <= t + 1e-9).mean()))

    return p(ranks[: len(xa)].sum()), min(p(t) for t in null)


@pytest.mark.parametrize(
    ("xa", "xb", "want"),
    [
        ([0.1, 0.2, 0.3], [0.4, 0.5, 0.5], 0.1),  # the normal approximation gave 0.0495
        ([0.1, 0.2, 0.3, 0.3], [0.4, 0.5, 0.6, 0.7], 0.0286),  # it gave 0.0209
        ([0.5, 0.5, 0.2, 0.3], [0.5, 0.6, 0.6, 0.9, 0.1], None),
    ],
)
def test_anchor_rank_sum_tests_are_exact_with_ties(xa, xb, want):
    """One tie anywhere sent the exact p back to the normal approximation without tie
    correction, which fell below the smallest p the design allows."""
    tidy = pd.DataFrame(
        [{"anchor": f"a{i}", "category": "a", "consistency": v} for i, v in enumerate(xa)]
        + [{"anchor": f"b{i}", "category": "b", "consistency": v} for i, v in enumerate(xb)]
    )
    row = C.anchor_rank_sum_tests(tidy, alpha=0.05).iloc[0]
    p, p_min = _brute_rank_sum(np.array(xa), np.array(xb))
    assert row.p == pytest.approx(p, abs=1e-12) and row.p_min == pytest.approx(p_min, abs=1e-12)
    assert row.p >= row.p_min
    if want is not None:
        assert row.p == pytest.approx(want, abs=5e-5)


def test_large_groups_with_ties_get_the_tie_correction():
    """Beyond the exact sizes, ties use the normal approximation with the tie correction
    (ranksums has none; without ties the two agree)."""
    from scipy.stats import mannwhitneyu, ranksums

    xa, xb = np.repeat([0.1, 0.2, 0.3], 4), np.repeat([0.2, 0.3, 0.4], 4)
    tidy = pd.DataFrame(
        [{"anchor": f"a{i}", "category": "a", "consistency": v} for i, v in enumerate(xa)]
        + [{"anchor": f"b{i}", "category": "b", "consistency": v} for i, v in enumerate(xb)]
    )
    row = C.anchor_rank_sum_tests(tidy).iloc[0]
    want = mannwhitneyu(xa, xb, method="asymptotic", use_continuity=False).pvalue
    assert row.p == pytest.approx(want, rel=1e-12) and row.p != pytest.approx(ranksums(xa, xb)[1])
    distinct = np.linspace(0, 1, 24)
    assert mannwhitneyu(
        distinct[:12], distinct[12:], method="asymptotic", use_continuity=False
    ).pvalue == pytest.approx(ranksums(distinct[:12], distinct[12:])[1], rel=1e-12)


def test_partner_rank_sum_tests_check_alpha():
    # the anchor chapter's alpha: above 1 every test was "significant"
    tidy = pd.DataFrame(
        {"anchor": "a", "partner": ["S", "T"], "dataset_a": "d0", "dataset_b": "d1",
         "consistency": [0.2, 0.3]}
    )  # fmt: skip
    for bad in (0, 1.01, 2, -0.1, "0.01", np.nan):
        with pytest.raises(InputError, match="alpha must be a number above 0 and at most 1"):
            C.partner_rank_sum_tests(tidy, alpha=bad)


def test_anchor_rank_sum_tests_bonferroni():
    rng = np.random.default_rng(0)
    rows = [
        {"anchor": f"{c}{i}", "category": c, "consistency": v}
        for c, mu in (("hi", 0.9), ("lo", 0.2), ("lo2", 0.21))
        for i in range(12)
        for v in mu + 0.02 * rng.normal(size=3)
    ]
    tidy = pd.DataFrame(rows)
    out = C.anchor_rank_sum_tests(tidy, alpha=0.01)
    assert len(out) == 3
    assert np.allclose(out.p_bonferroni, np.minimum(out.p * 3, 1))
    sig = {(r.group_a, r.group_b) for r in out[out.significant].itertuples()}
    assert ("hi", "lo") in sig and ("lo", "lo2") not in sig
    # the unit is the anchor (its median), and p is the two-sided normal approximation
    medians = tidy.groupby(["anchor", "category"], as_index=False).consistency.median()
    for unit, data, n in ((None, tidy, 36), ("anchor", medians, 12)):
        table = C.anchor_rank_sum_tests(tidy, unit=unit).set_index(["group_a", "group_b"])
        for (a, b), row in table.iterrows():
            xa = data.consistency[data.category == a].to_numpy()
            xb = data.consistency[data.category == b].to_numpy()
            assert row.n_a == row.n_b == n
            assert row.p == pytest.approx(_rank_sum_p(xa, xb), rel=1e-9)


def _rank_sum_p(xa: np.ndarray, xb: np.ndarray) -> float:
    """Two-sided p of the Wilcoxon rank-sum statistic by its normal approximation, by hand."""
    from math import erfc, sqrt

    n1, n2 = len(xa), len(xb)
    pooled = np.concatenate([xa, xb])
    ranks = np.array([1 + (pooled < v).sum() + ((pooled == v).sum() - 1) / 2 for v in pooled])
    mean, sd = n1 * (n1 + n2 + 1) / 2, sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    z = (ranks[:n1].sum() - mean) / sd
    return erfc(abs(z) / sqrt(2))


def test_anchor_table_has_categories(run):
    av = C.anchor_table(run.consistency, "cka_linear")
    assert set(av.category) == {"Supervised", "Self-Supervised", "Image-Text", "Random"}
    # distinct dataset pairs only: a dataset with itself (consistency 1) would raise the medians
    n_anchors, n_ds = av.anchor.nunique(), run.consistency.sizes["dataset_a"]
    assert len(av) == n_anchors * n_ds * (n_ds - 1) // 2
    assert (av.dataset_a != av.dataset_b).all()


def test_behavior_correlation_on_a_run_has_every_dataset(run):
    r = B.behavior_correlation(run.similarity["cka_linear"], run.probes)
    assert list(r.dataset) == list(map(str, run.similarity.dataset.values))
    assert r.pearson_r.notna().all() and list(r.columns) == B.CORRELATION_COLUMNS
    acc = run.probes["accuracy"].mean("seed")
    for row in r.itertuples():  # the mean over models of the seed-mean accuracy, by hand
        want = np.mean([acc.sel(model=m, dataset=row.dataset).item() for m in acc.model.values])
        assert row.mean_accuracy == pytest.approx(want, abs=1e-12)


def test_measure_agreement_self_is_one(run):
    agree = A.measure_agreement(run.similarity, "cka_linear", "cka_linear")
    assert np.allclose(agree.r, 1.0)


def test_domain_order(run):
    order = CH.domain_order(run.similarity)
    doms = [str(run.similarity["domain"].sel(dataset=d).values) for d in order]
    assert doms == sorted(doms, key=N.DOMAINS.index)


def test_stability_error_shrinks_with_n(rng):
    base = rng.normal(size=(400, 6))
    feats = {
        f"m{i}": np.tanh(base @ rng.normal(size=(6, 8))) + 0.3 * rng.normal(size=(400, 8))
        for i in range(3)
    }
    t = A.stability_vs_n(feats, [10, 50, 400], repeats=4, measure=_lin)
    err = t.groupby("n").abs_error.median()
    assert err[10] > err[50] > err[400] - 1e-12 and err[400] == pytest.approx(0.0)


def test_stability_draws_at_one_size_do_not_depend_on_the_other_sizes(rng):
    feats = {k: rng.normal(size=(120, 5)) for k in "abc"}
    alone = A.stability_vs_n(feats, [50], repeats=3, measure=_lin)
    with_other = A.stability_vs_n(feats, [20, 50], repeats=3, measure=_lin)
    pd.testing.assert_frame_equal(
        alone, with_other[with_other.n == 50].reset_index(drop=True), check_exact=True
    )


def test_stability_vs_n_uses_the_given_measure_from_4_stimuli_and_all_once():
    feats = {k: np.arange(12.0)[:, None] + i for i, k in enumerate("abc")}

    def rows(x, y):  # the number of stimuli it was given
        return float(len(x))

    t = A.stability_vs_n(feats, [3, 4, 12, 20], repeats=3, measure=rows)
    # sizes below 4 or above the 12 stimuli are not drawn; all 12 once (its draws are all alike)
    assert t.groupby("n").size().to_dict() == {4: 3 * 3, 12: 1 * 3}
    assert (t.similarity == t.n).all() and (t.full == 12.0).all()
    assert (t.abs_error == 12 - t.n).all()


def _engine_spy(monkeypatch) -> list:
    """The calls of the all-pairs engine from here on: (models, stimuli, measure) each."""
    import repsim.measures as RM

    real, seen = RM.similarity_matrix, []

    def spy(features, measure="cka_linear", **kw):
        seen.append((sorted(features), len(next(iter(features.values()))), measure))
        return real(features, measure, **kw)

    monkeypatch.setattr(RM, "similarity_matrix", spy)
    return seen


def _shared_features(rng) -> dict:
    """Five models of 60 stimuli that share a 4-dimensional signal (CKA well away from 0 and 1)."""
    base = rng.normal(size=(60, 4))
    return {f"m{i}": base @ rng.normal(size=(4, 7)) + rng.normal(size=(60, 7)) for i in range(5)}


def test_stability_vs_n_computes_each_subset_in_one_engine_call(rng, monkeypatch):
    """Pair by pair, chapter 13's stability figure on 45 models (990 pairs x 19 subsets) took
    174 s: the default measure now goes to the all-pairs engine once for all stimuli and once
    per subset, and gives the per-pair path's table."""
    seen, feats = _engine_spy(monkeypatch), _shared_features(rng)
    fast = A.stability_vs_n(feats, [8, 20, 60, 99], repeats=3, seed=3)
    assert seen == [(sorted(feats), n, "cka_linear") for n in [60, 8, 8, 8, 20, 20, 20, 60]]
    seen.clear()
    slow = A.stability_vs_n(feats, [8, 20, 60, 99], repeats=3, seed=3, measure=A._default_measure())
    assert not seen  # a callable is the per-pair path
    pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=0, atol=1e-10)
    assert len(fast) == 10 * 7 and fast[["similarity", "full"]].notna().all().all()
    # a registry name other than the default is the engine's too, and equals its function
    from repsim.measures import cka

    by_name = A.stability_vs_n(feats, [8, 20], repeats=2, measure="cka_linear_biased")
    by_function = A.stability_vs_n(
        feats, [8, 20], repeats=2, measure=lambda x, y: cka(x, y, unbiased=False)
    )
    pd.testing.assert_frame_equal(by_name, by_function, check_exact=False, rtol=0, atol=1e-10)


def _with_undefined_models(rng, n: int = 40) -> dict[str, np.ndarray]:
    """Three ordinary models, one whose features are the same vector for every stimulus (CKA
    undefined everywhere) and one that is 0 but on stimuli 0 and 1 (undefined on a subset
    without both: unbiased HSIC drops the kernel's diagonal, which holds a lone stimulus)."""
    base = rng.normal(size=(n, 4))
    feats = {f"m{i}": base @ rng.normal(size=(4, 6)) + rng.normal(size=(n, 6)) for i in range(3)}
    feats["flat"] = np.ones((n, 6))
    feats["sparse"] = np.zeros((n, 6))
    feats["sparse"][:2] = rng.normal(size=(2, 6))
    return feats


def test_stimulus_subsets_keep_undefined_pairs_as_nan_without_a_warning(rng, caplog):
    """With the engine, a model whose features do not vary over a subset gave NaN with a
    RuntimeWarning (and a logged warning on the chapter's stderr) per subset, where the per-pair
    cka raised. Both paths now give NaN there, quietly, and undefined_pairs lists those pairs
    for chapter 13's sentences: on all stimuli, or on some subsets only."""
    import warnings

    feats = _with_undefined_models(rng)
    flat = ["m0~flat", "m1~flat", "m2~flat", "flat~sparse"]
    some = ["m0~sparse", "m1~sparse", "m2~sparse"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stab = A.stability_vs_n(feats, [8, 16, 40], repeats=3)
        spread = A.subsample_pairs(feats, n_draws=10)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    slow = A.stability_vs_n(feats, [8, 16, 40], repeats=3, measure=A._default_measure())
    pd.testing.assert_frame_equal(stab, slow, check_exact=False, rtol=0, atol=1e-10)
    slow = A.subsample_pairs(feats, n_draws=10, measure=A._default_measure())
    pd.testing.assert_frame_equal(spread, slow, check_exact=False, rtol=0, atol=1e-10)
    gone = A.undefined_pairs(stab, "full", "similarity")
    assert gone == {"all": flat, "some": some, "pairs": list(stab.pair.unique())}
    assert len(gone["pairs"]) == 10
    assert stab.loc[stab.pair.isin(flat), ["similarity", "full", "abs_error"]].isna().all().all()
    # the sparse model is undefined on the subsets without both stimuli 0 and 1, and only there
    for row in stab[stab.pair.isin(some)].itertuples():
        idx = keyed_rng(0, row.n)  # the draws of stability_vs_n, in order
        draws = [idx.choice(40, size=row.n, replace=False) for _ in range(row.repeat + 1)]
        assert np.isnan(row.similarity) == (not {0, 1} <= set(draws[-1]))
    assert stab.loc[stab.pair.isin(some), "similarity"].isna().any()
    assert stab.loc[~stab.pair.isin(flat), "full"].notna().all()
    assert A.undefined_pairs(spread, "estimate", "se") == {
        "all": flat, "some": some, "pairs": list(spread.pair)
    }  # fmt: skip


def test_subsample_pairs_draws_distinct_stimuli(rng):
    n = 60
    feats = {k: np.hstack([np.arange(n)[:, None], rng.normal(size=(n, 5))]) for k in "abc"}
    seen = []

    def spy(x, y):  # column 0 holds the stimulus index: record which stimuli each call got
        seen.append(x[:, 0].copy())
        return _lin(x[:, 1:], y[:, 1:])

    t = A.subsample_pairs(feats, n_draws=8, measure=spy)
    subsets = [s for s in seen if len(s) < n]
    assert len(t) == 3 and len(subsets) == 3 * 8
    assert all(len(s) == 30 and len(np.unique(s)) == 30 for s in subsets)  # no duplicate rows
    assert (t.m == 30).all() and (t.n == n).all()
    np.testing.assert_allclose(t["se"], t["std"])  # m = n/2: the factor sqrt(m/(n-m)) is 1
    assert (t["std"] > 0).all() and (t.q05 <= t.q95).all()
    # the spread over subsets, recomputed from the recorded subsets: the sample SD (n - 1)
    import statistics

    first = [
        _lin(feats["a"][s.astype(int), 1:], feats["b"][s.astype(int), 1:]) for s in subsets[:8]
    ]
    assert t["std"].iloc[0] == pytest.approx(statistics.stdev(first), rel=1e-12)
    assert t["mean"].iloc[0] == pytest.approx(statistics.fmean(first), rel=1e-12)
    # the 5% and 95% quantiles (linear interpolation) of the recorded values
    cuts = statistics.quantiles(first, n=20, method="inclusive")
    assert t["q05"].iloc[0] == pytest.approx(cuts[0], rel=1e-12)
    assert t["q95"].iloc[0] == pytest.approx(cuts[-1], rel=1e-12)
    t3 = A.subsample_pairs(feats, n_draws=4, fraction=0.75, measure=_lin)
    np.testing.assert_allclose(t3["se"], t3["std"] * np.sqrt(45 / 15))
    with pytest.raises(InputError, match="fraction"):
        A.subsample_pairs(feats, fraction=1.0, measure=_lin)
    # the chapter's n_draws: 0 raised an IndexError, 1 gave a NaN spread
    for bad in (0, 1, 2.0, True):
        with pytest.raises(InputError, match=f"n_draws must be an integer >= 2; got {bad!r}"):
            A.subsample_pairs(feats, n_draws=bad, measure=_lin)
    assert len(A.subsample_pairs(feats, n_draws=np.int64(2), measure=_lin)) == 3


def test_subsample_pairs_computes_each_subset_in_one_engine_call(rng, monkeypatch):
    """Pair by pair, chapter 13's halves of 45 models (990 pairs x 21 subsets) took 400 s of a
    cell's 600: the default measure now goes to the all-pairs engine once per subset (and once
    for all stimuli), on the models the pairs name, and gives the per-pair path's table."""
    seen, feats = _engine_spy(monkeypatch), _shared_features(rng)
    for pairs in (None, [("m3", "m1"), ("m0", "m3")]):
        seen.clear()
        fast = A.subsample_pairs(feats, n_draws=6, seed=3, pairs=pairs)
        slow = A.subsample_pairs(
            feats, n_draws=6, seed=3, pairs=pairs, measure=A._default_measure()
        )
        pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=0, atol=1e-10)
        assert len(fast) == (10 if pairs is None else 2)
        named = sorted(feats) if pairs is None else ["m0", "m1", "m3"]
        assert seen == [(named, 60, "cka_linear")] + [(named, 30, "cka_linear")] * 6


def test_subsample_pairs_takes_a_measure_by_its_registry_name(rng):
    """A registry name is computed by the engine and equals the measure's own function."""
    from repsim.measures import cka, rsa

    feats = {k: rng.normal(size=(40, 6)) for k in "abc"}
    for name, fn in (
        ("cka_linear_biased", lambda x, y: cka(x, y, unbiased=False)),
        ("rsa_spearman", lambda x, y: rsa(x, y, compare="spearman")),
    ):
        by_name = A.subsample_pairs(feats, n_draws=4, measure=name)
        by_function = A.subsample_pairs(feats, n_draws=4, measure=fn)
        pd.testing.assert_frame_equal(by_name, by_function, check_exact=False, rtol=0, atol=1e-10)


def test_subsample_separation_sets_the_noise_against_the_spread_across_pairs(rng):
    """Halves separate the pairs while the root-mean-square SE stays under the SD of the
    estimates across pairs (what is left of that SD is the spread of the true values)."""
    table = pd.DataFrame(
        {"estimate": [0.25, 0.5, 0.75, np.nan], "se": [0.25, 0.25, 0.25, 0.1], "m": 4, "n": 8}
    )
    sep = A.subsample_separation(table)  # var 0.0625 across pairs; mean se^2 0.0625: ratio 1
    assert sep == {
        "m": 4, "n": 8, "pairs": 3, "rms_se": 0.25, "sd": 0.25, "ratio": 1.0, "separates": False
    }  # fmt: skip
    table["se"] = [0.1, 0.2, 0.2, 0.1]
    sep = A.subsample_separation(table)
    assert sep["rms_se"] == pytest.approx(math.sqrt((0.01 + 0.04 + 0.04) / 3), rel=1e-12)
    assert sep["ratio"] == pytest.approx(sep["rms_se"] / 0.25, rel=1e-12) and sep["separates"]
    assert A.subsample_separation(table.iloc[[0, 3]]) is None  # one finite pair: no spread
    assert A.subsample_separation(table.assign(estimate=0.5)) is None  # nothing to separate
    # the chapter's case: halves of 4 stimuli cannot separate pairs that halves of 200 can
    base = rng.normal(size=(400, 3))
    feats = {
        f"m{i}": base @ rng.normal(size=(3, 6)) + i * rng.normal(size=(400, 6)) for i in range(5)
    }
    few = A.subsample_pairs({k: v[:8] for k, v in feats.items()}, n_draws=20)
    assert not A.subsample_separation(few)["separates"]
    assert A.subsample_separation(A.subsample_pairs(feats, n_draws=20))["separates"]


def test_chapter_counts_are_checked(rng):
    # the robustness chapter's repeats and per_category gave an empty table or no models
    feats = {k: rng.normal(size=(20, 3)) for k in "ab"}
    with pytest.raises(InputError, match="repeats must be an integer >= 1; got 0"):
        A.stability_vs_n(feats, [8, 20], repeats=0, measure=_lin)
    assert len(A.stability_vs_n(feats, [8, 20], repeats=1, measure=_lin)) == 2
    mt = pd.DataFrame({"objective": ["a", "b"]}, index=["m1", "m2"])
    with pytest.raises(InputError, match="per_category must be an integer >= 1; got 0"):
        A.pick_models(mt, 0)
    with pytest.raises(InputError, match=r"per_category must be an integer >= 1; got 1\.5"):
        A.pick_models(mt, 1.5)
    assert A.pick_models(mt, 1) == ["m1", "m2"]


def test_resampling_with_replacement_biases_unbiased_cka():
    """Why subsample_pairs draws without replacement: for independent features (true CKA 0),
    unbiased CKA on with-replacement resamples is far above 0, on distinct subsets it is not."""
    from repsim.measures import cka

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 50)), rng.normal(size=(200, 50))
    boot = [cka(x[i], y[i]) for i in (rng.integers(0, 200, 200) for _ in range(10))]
    sub = A.subsample_pairs({"x": x, "y": y}, n_draws=10, fraction=0.5)
    assert np.mean(boot) > 0.1
    assert abs(sub["mean"].iloc[0]) < 0.02


def test_pick_models():
    mt = pd.DataFrame({"objective": ["a", "a", "a", "b"]}, index=["m1", "m2", "m3", "m4"])
    assert A.pick_models(mt, 2) == ["m1", "m2", "m4"]
    # by id whatever the config's order, and unknown categories are not picked
    shuffled = pd.DataFrame(
        {"objective": ["a", "unknown", "a", "b", "a", ""]},
        index=["m3", "u1", "m2", "m4", "m1", "u2"],
    )
    assert A.pick_models(shuffled, 2) == ["m1", "m2", "m4"]
    # categories in alphabetical order whatever order the config lists them in; two of each
    # by default
    b_first = pd.DataFrame({"objective": ["b", "b", "b", "a"]}, index=["m5", "m6", "m7", "m8"])
    assert A.pick_models(b_first) == ["m8", "m5", "m6"]


# ------------------------------------------------------- degenerate runs (seen on real pipeline runs)
def _small_sim(objectives, n_datasets=3, domains=None, seed=0) -> xr.Dataset:
    """A similarity dataset like a real run's: empty metadata strings where fields are unknown."""
    rng = np.random.default_rng(seed)
    n = len(objectives)
    ids = [f"m{i}" for i in range(n)]
    vals = rng.uniform(0.2, 0.9, size=(n_datasets, n, n))
    vals = (vals + vals.transpose(0, 2, 1)) / 2
    vals[:, np.arange(n), np.arange(n)] = 1.0
    dsets = [f"d{k}" for k in range(n_datasets)]
    return xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), vals)},
        coords={
            "dataset": dsets,
            "model_a": ids,
            "model_b": ids,
            "domain": ("dataset", domains or ["Structured"] * n_datasets),
            "objective_a": ("model_a", list(objectives)),
            "objective_b": ("model_b", list(objectives)),
            "data_class_a": ("model_a", [""] * n),
            "data_class_b": ("model_b", [""] * n),
        },
        attrs={"run": "small"},
    )


def _small_cons() -> xr.Dataset:
    """consistency.nc of a 3-model run: a category pair with 2 model pairs, an unknown grouping."""
    gp = ["all", "objective: Self-Supervised | Supervised", "data_class:  | "]
    m = np.array([[1.0, 0.5, -0.2], [0.5, 1.0, 0.8], [-0.2, 0.8, 1.0]])
    return xr.Dataset(
        {
            "consistency": (
                ("measure", "group_pair", "dataset_a", "dataset_b"),
                np.stack([m, -np.sign(m), m])[None],
            )
        },
        coords={
            "measure": ["cka_linear"],
            "group_pair": gp,
            "dataset_a": ["a", "b", "c"],
            "dataset_b": ["a", "b", "c"],
            "group_by": ("group_pair", ["all", "objective", "data_class"]),
            "group_a": ("group_pair", ["all", "Self-Supervised", ""]),
            "group_b": ("group_pair", ["all", "Supervised", ""]),
            "n_pairs": ("group_pair", [3, 2, 3]),
        },
    )


def test_consistency_table_drops_two_point_and_unknown_pairs():
    tidy = C.consistency_table(_small_cons(), "cka_linear", ["all", *N.CATEGORY_FIELDS])
    assert set(tidy.group_pair) == {"all"}
    keep = C.consistency_table(_small_cons(), "cka_linear", "objective", min_pairs=2)
    assert set(keep.label) == {"Self-Supervised | Supervised"}
    empty = C.consistency_table(_small_cons(), "cka_linear", "size_class")
    assert empty.empty and "consistency" in empty.columns
    assert C.consistency_summary(empty).empty and C.grouping_spread(empty).empty


@pytest.mark.parametrize("min_pairs", [1, 0, 2.5])
def test_consistency_tables_refuse_fewer_than_two_pairs(min_pairs):
    """A consistency over one model pair is undefined; min_pairs 1 or 0 let such groups in as NaN
    columns and rows, and 2.5 was read as 3: each is refused by name."""
    da = _small_sim(["S", "S", "T", "T", "T"], n_datasets=2)["cka_linear"]
    da = da.assign_coords(
        architecture_class_a=("model_a", ["a", "b"] * 2 + ["a"]),
        architecture_class_b=("model_b", ["a", "b"] * 2 + ["a"]),
    )
    calls = [
        lambda: C.consistency_table(_small_cons(), "cka_linear", "objective", min_pairs=min_pairs),
        lambda: C.within_category_consistency(da, [("d0", "d1")], min_pairs=min_pairs),
        lambda: C.architecture_mix(da, min_pairs=min_pairs),
    ]
    for call in calls:
        with pytest.raises(InputError, match=f"min_pairs must be an integer >= 2; got {min_pairs}"):
            call()


def test_grouping_spread_needs_two_category_pairs(run):
    tidy = C.consistency_table(run.consistency, "cka_linear", ["all", "objective", "data_class"])
    spread = C.grouping_spread(tidy)
    assert list(spread.group_by) == ["objective"]  # data_class has one category pair only
    import statistics

    medians = [
        statistics.median(v.tolist())
        for _, v in tidy[tidy.group_by == "objective"].groupby("group_pair").consistency
    ]
    row = spread.iloc[0]
    assert row.n_pairs == len(medians) >= 2
    assert row["range"] == pytest.approx(max(medians) - min(medians), abs=1e-12)
    assert row["std"] == pytest.approx(statistics.stdev(medians), rel=1e-12)  # sample SD
    # without the untrained control's category pairs (labels naming "Random")
    trained = [
        statistics.median(v.tolist())
        for pair, v in tidy[tidy.group_by == "objective"].groupby("group_pair").consistency
        if "Random" not in pair
    ]
    assert row.n_trained == len(trained) < row.n_pairs
    assert row.range_trained == pytest.approx(max(trained) - min(trained), abs=1e-12)


def test_overview_text_without_same_category_pairs():
    tidy = C.consistency_table(_small_cons(), "cka_linear", ["all", *N.CATEGORY_FIELDS])
    text = T.overview_text(C.consistency_summary(tidy), "cka_linear", "objective")
    assert "0.50" in text and "cannot be made" in text and "agrees" not in text


def _answer_rows(p_obj: float, p_arch: float, ci: tuple[float, float]) -> pd.DataFrame:
    base = {"measure": "cka_linear", "n_datasets": 6, "n_models": 12, "confidence_level": 0.95}
    rows = []
    for view in ("separate", "pooled"):
        rows += [
            {**base, "view": view, "analysis": "factor", "factor": "objective", "p_value": p_obj},
            {
                **base,
                "view": view,
                "analysis": "factor",
                "factor": "architecture",
                "p_value": p_arch,
            },
            {
                **base,
                "view": view,
                "analysis": "difference",
                "factor": "objective - architecture",
                "estimate": sum(ci) / 2,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "p_value": 0.5,
            },
        ]
    return pd.DataFrame(rows)


def test_overview_text_makes_no_untested_claims(run):
    tidy = C.consistency_table(run.consistency, "cka_linear", ["all", *N.CATEGORY_FIELDS])
    summary = C.consistency_summary(tidy)
    text = T.overview_text(summary, "cka_linear", "objective")
    assert "not tested against each other" in text
    for word in ("agrees", "differs", "strongest", "most consistent", "spread most"):
        assert word not in text
    # the controlled tests word the answer: evidence only with p < 0.05 and an interval above 0
    yes = T.overview_text(summary, "cka_linear", "objective", _answer_rows(0.001, 0.4, (0.05, 0.2)))
    assert "objective explains the consistency of pairwise similarity across datasets more" in yes
    assert "95% CI 0.05 to 0.20" in yes and "pooled" in yes
    no = T.overview_text(summary, "cka_linear", "objective", _answer_rows(0.001, 0.4, (-0.1, 0.2)))
    assert "no evidence that objective explains" in no.lower()
    why = T.overview_text(summary, "cka_linear", "objective", None, "not crossed")
    assert "not tested here: not crossed" in why


def test_controlled_tests_of_a_run_without_them(run):
    table, reason = A.controlled_tests(run)
    assert table is None and "controlled_tests.csv" in reason


def test_unknown_metadata_is_one_label():
    sim = _small_sim(["Supervised", "", "Supervised"])
    assert list(C.category_labels(sim, "objective")) == ["Supervised", N.UNKNOWN, "Supervised"]
    assert set(C.category_labels(sim, "size_class")) == {N.UNKNOWN}
    counts = A.count_table(CH.model_table(sim), "objective", "architecture_class")
    assert counts.values.sum() == 3 and N.UNKNOWN in counts.columns
    assert not N.is_known("") and not N.is_known(float("nan")) and N.is_known("MLP")


def test_measure_agreement_of_two_models_has_one_row_per_dataset():
    sim = _small_sim(["a", "b"], n_datasets=3, domains=["Natural", "Natural", "Structured"])
    sim = sim.assign_coords(dataset=["d2", "d0", "d1"])  # the run's order, not sorted
    agree = A.measure_agreement(sim, "cka_linear", "cka_linear")
    # one model pair per dataset: no correlation, but each dataset's row and domain
    assert list(agree.dataset) == ["d2", "d0", "d1"]
    assert list(agree.domain) == ["Natural", "Natural", "Structured"] and agree.r.isna().all()


def test_within_between_without_same_category_pairs():
    sim = _small_sim(["Supervised", "Self-Supervised", "Image-Text"])
    table = A.within_between(sim["cka_linear"], "objective")
    assert table["same category"].isna().all() and table["different category"].notna().all()
    assert "skipped" in T.within_between_text(table, "objective")
    sim2 = _small_sim(["S", "S", "T", "T"])
    da = sim2["cka_linear"]
    test = A.within_between_test(da, "objective")
    # 4 models in 2 + 2: each of the 3 groupings is 8 of the 24 orderings, p >= 2 x 8/24
    assert test["exact"] and test["p_min"] == pytest.approx(2 / 3)
    text = T.within_between_text(A.within_between(da), "objective", test)
    assert "of 3** datasets" in text and "cannot be tested at alpha = 0.05" in text
    assert "permuted freely over the 4 models" in text and not T.untested_claims(text)
    assert "described for these models, not tested" in T.within_between_text(
        A.within_between(da), "objective"
    )


def _relabelled(da: xr.DataArray, labels) -> xr.DataArray:
    return da.assign_coords(objective_a=("model_a", list(labels)))


def _brute_within_between_p(da: xr.DataArray, relabellings) -> tuple[float, float]:
    """Two-sided p over ``relabellings`` (the observed one among them), each scored by the
    within_between table itself: the statistic is the mean of its per-dataset differences."""

    def score(labels) -> float:
        t = A.within_between(_relabelled(da, labels), "objective")
        return float((t["same category"] - t["different category"]).mean())

    observed = score(da["objective_a"].values)
    null = np.array([score(lab) for lab in relabellings])
    return observed, min(
        1.0, 2 * min((null >= observed - 1e-12).mean(), (null <= observed + 1e-12).mean())
    )


def test_within_between_test_matches_enumeration_by_hand():
    """Free relabelling of 6 models: the 90 distinct groupings of a, a, b, b, c, c (each 8 of the
    720 orderings scipy enumerates), scored by A.within_between, give the same p."""
    da = _small_sim(["a", "a", "b", "b", "c", "c"], n_datasets=4, seed=5)["cka_linear"]
    test = A.within_between_test(da, "objective")
    groupings = set(itertools.permutations(["a", "a", "b", "b", "c", "c"]))
    observed, p = _brute_within_between_p(da, groupings)
    assert test["exact"] and test["n_permutations"] == 720
    assert test["statistic"] == pytest.approx(observed, abs=1e-12)
    assert test["p_value"] == pytest.approx(p, abs=1e-12)


def _crossed_zoo(seed: int, effect: float) -> xr.DataArray:
    """2 objectives x 2 architectures x 2 seeds (ids ``-s<N>``); same-objective pairs are
    ``effect`` more similar, same-architecture pairs 0.3 more."""
    rng = np.random.default_rng(seed)
    design = [(o, a, s) for o in "PQ" for a in ("CNN", "ViT") for s in (0, 1)]
    ids = [f"{a.lower()}-{o}-s{s}" for o, a, s in design]
    obj = np.array([o for o, _, _ in design])
    arch = np.array([a for _, a, _ in design])
    base = 0.3 + effect * (obj[:, None] == obj[None]) + 0.3 * (arch[:, None] == arch[None])
    vals = base + rng.normal(0, 0.05, size=(5, 8, 8))
    vals = (vals + vals.transpose(0, 2, 1)) / 2
    return xr.DataArray(
        vals,
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": [f"d{k}" for k in range(5)],
            "model_a": ids,
            "model_b": ids,
            "objective_a": ("model_a", obj),
            "architecture_class_a": ("model_a", arch),
        },
        name="cka_linear",
    )


@pytest.mark.parametrize("effect", [0.0, 0.2])
def test_within_between_test_permutes_within_the_design_strata(effect):
    """In a crossed zoo the objective was assigned within architecture x seed: the 16 relabellings
    that swap P and Q inside some of the 4 strata are the null (a free shuffle would also move
    objectives across architectures, which are more alike)."""
    da = _crossed_zoo(1, effect)
    test = A.within_between_test(da, "objective")
    assert test["permuted"] == "within architecture x seed over the 8 models"
    assert test["exact"] and test["n_permutations"] == 16
    obj = da["objective_a"].values
    relabellings = []
    for flips in itertools.product([False, True], repeat=4):
        lab = obj.copy()
        for stratum, flip in enumerate(flips):  # ids: strata (CNN,0) (CNN,1) (ViT,0) (ViT,1)
            pos = [stratum, 4 + stratum]  # P and Q member of the stratum
            if flip:
                lab[pos] = lab[pos[::-1]]
        relabellings.append(lab)
    observed, p = _brute_within_between_p(da, relabellings)
    assert test["statistic"] == pytest.approx(observed, abs=1e-12)
    assert test["p_value"] == pytest.approx(p, abs=1e-12)
    # the design floor, 2 x 2/16: an 8-model zoo cannot reach 0.05, and says so
    assert test["p_min"] == pytest.approx(0.25)
    text = T.within_between_text(A.within_between(da), "objective", test)
    assert "cannot be tested at alpha = 0.05" in text


def test_within_between_test_strata_need_two_or_more_of_equal_size():
    da = _crossed_zoo(1, 0.0)
    ids = [str(m) for m in da.model_a.values]
    # one seed: the 2 strata (CNN, ViT) of a P and a Q model each; the 2 x 2 swaps are the null
    s0 = [m for m in ids if m.endswith("-s0")]
    two = A.within_between_test(da.sel(model_a=s0, model_b=s0), "objective")
    assert two["permuted"] == "within architecture x seed over the 4 models"
    assert two["exact"] and two["n_permutations"] == 4
    # a model missing: strata of 2, 2, 2 and 1 are no design, so the labels move freely (7!)
    some = ids[:-1]
    free = A.within_between_test(da.sel(model_a=some, model_b=some), "objective")
    assert free["permuted"] == "freely over the 7 models" and free["n_permutations"] == 5040


def test_within_between_test_skips_an_undefined_pair_on_one_dataset():
    """A pair undefined on one dataset leaves that dataset's medians over its other pairs (as the
    within_between table computes them), not undefined."""
    da = _small_sim(["a", "a", "b", "b", "c", "c"], n_datasets=4, seed=5)["cka_linear"].copy()
    da[0, 0, 1] = da[0, 1, 0] = np.nan  # a same-category pair, on the first dataset
    test = A.within_between_test(da, "objective")
    t = A.within_between(da, "objective")
    by_hand = float((t["same category"] - t["different category"]).mean())
    assert np.isfinite(t.iloc[0]).all()
    assert test["statistic"] == pytest.approx(by_hand, abs=1e-12)
    # no same-category pair defined on the first dataset: the mean is over the other three
    for i, j in ((0, 1), (2, 3), (4, 5)):
        da[0, i, j] = da[0, j, i] = np.nan
    test = A.within_between_test(da, "objective")
    t = A.within_between(da, "objective")
    assert np.isnan(t.iloc[0]["same category"])
    diffs = (t["same category"] - t["different category"]).iloc[1:]
    assert test["statistic"] == pytest.approx(float(diffs.sum() / 3), abs=1e-12)


def test_a_fixed_grouping_is_not_a_category_effect():
    """Stable pair similarities and labels that mean nothing: every dataset puts the same-label
    pairs below the rest, so the sign test over datasets gave p = 0.002, "less often than
    chance"; relabelling the models finds no evidence."""
    rng = np.random.default_rng(7)
    n, labels = 12, np.repeat(["a", "b", "c"], 4)
    stable = rng.uniform(0.2, 0.9, size=(n, n))
    vals = (stable + stable.T)[None] / 2 + rng.normal(0, 0.01, size=(10, n, n))
    vals = (vals + vals.transpose(0, 2, 1)) / 2
    ids = [f"m{i}" for i in range(n)]
    da = xr.DataArray(
        vals,
        dims=("dataset", "model_a", "model_b"),
        coords={"dataset": [f"d{k}" for k in range(10)], "model_a": ids, "model_b": ids},
    ).assign_coords(objective_a=("model_a", labels))
    table = A.within_between(da, "objective")
    diff = table["same category"] - table["different category"]
    assert (diff < 0).all()  # 0 of 10 datasets, which a sign test calls p = 0.002
    test = A.within_between_test(da, "objective", n_resamples=1999)
    assert test["p_value"] > 0.2 and not test["exact"]
    text = T.within_between_text(table, "objective", test)
    assert "no evidence that this differs from random groupings" in text


def test_pick_dataset_pairs_spans_the_range():
    da = _small_sim(["a", "a", "b", "b", "c"], n_datasets=5)["cka_linear"]
    pairs = A.pick_dataset_pairs(da, 3)
    assert len(pairs) == 3 and len(set(pairs)) == 3
    vec = C.pair_vectors(da)
    r = [S.correlate(vec[a], vec[b]) for a, b in pairs]
    assert r[0] == max(
        S.correlate(vec[a], vec[b]) for a, b in itertools.combinations(da.dataset.values, 2)
    )
    assert r[0] >= r[1] >= r[2]
    # the least consistent and, of the 10 pairs ranked from most consistent, the 6th (index 10 // 2)
    every = sorted(
        (S.correlate(vec[a], vec[b]) for a, b in itertools.combinations(da.dataset.values, 2)),
        reverse=True,
    )
    assert r[2] == every[-1] and r[1] == every[5]
    assert A.pick_dataset_pairs(da.isel(dataset=[0, 1]), 3) == [("d0", "d1")]
    # a dataset whose pair similarities are constant has no consistency with any other: its
    # pairs are not "the least consistent" (NaN was ranked as -inf and picked last)
    flat = da.copy(data=da.values.copy())
    flat.values[2] = 0.5
    picked = A.pick_dataset_pairs(flat, 3)
    assert len(picked) == 3 and all("d2" not in p for p in picked)
    r = [S.correlate(vec[a], vec[b]) for a, b in picked]
    assert r[0] >= r[1] >= r[2]


def test_within_category_consistency_skips_small_groups():
    da = _small_sim(["S", "S", "T", "T", "T"], n_datasets=2)["cka_linear"]
    tab = C.within_category_consistency(da, [("d0", "d1")])
    assert list(tab.columns) == ["all", "T"]  # S has one pair within it
    assert "Only **T**" in T.scatter_text(tab, "objective")
    assert "no group r" in T.scatter_text(tab[["all"]], "objective")


def test_chapter_need_says_why(tmp_path):
    sim = _small_sim(["S", "T"], n_datasets=1)
    sim.to_netcdf(tmp_path / "similarity.nc", engine="scipy")
    write_manifest_for(tmp_path)
    ch = CH.open_chapter(tmp_path)
    assert ch.measure == "cka_linear" and ch.category == "objective" and ch.notes == ()
    assert "no consistency.nc" in ch.need("consistency")
    assert "no probes.nc" in ch.need("probes")
    assert "kept no features" in ch.need("features")
    assert "at least 2 datasets" in ch.need(min_datasets=2)
    assert "at least 3 models" in ch.need(min_models=3)
    assert "every dataset of the run is Structured" in ch.need(min_domains=2)
    assert ch.need() is None
    with pytest.raises(Exception, match="unknown need"):
        ch.need("nonsense")


def test_chapter_need_counts_the_figures_it_skips(tmp_path):
    """Chapter 13 skips two figures for one reason (its train-split section): the sentence said
    "this figure is skipped" of both."""
    sim = _small_sim(["S", "T"], n_datasets=1)
    sim.to_netcdf(tmp_path / "similarity.nc", engine="scipy")
    write_manifest_for(tmp_path)
    ch = CH.open_chapter(tmp_path)
    assert ch.need("features").endswith("(features.zarr), so this figure is skipped.")
    for why in (
        ch.need("features", figures=2),
        ch.need(min_datasets=2, figures=2),
        ch.need(min_models=3, figures=2),
        ch.need(min_domains=2, figures=2),
    ):
        assert why.endswith(", so these two figures are skipped."), why
    assert ch.need("probes", figures=3).endswith(", so these three figures are skipped.")
    assert ch.need("probes", what="this table").endswith("its config), so this table is skipped.")
    assert ch.need(figures=2) is None
    with pytest.raises(InputError, match="figures must be an integer >= 1; got 0"):
        ch.need("features", figures=0)


def test_chapter_need_counts_only_datasets_with_a_defined_similarity(tmp_path):
    """A dataset every model failed on (all its similarities NaN) adds nothing to a mean, a
    spread or a dataset pair, but need() counted it: two datasets, one of them undefined, passed
    min_datasets=2, and a second domain held only by it passed min_domains=2."""
    sim = _small_sim(["S", "T", "S"], n_datasets=3, domains=["Structured", "Natural", "Natural"])
    sim["cka_linear"].loc[{"dataset": "d1"}] = np.nan
    sim["cka_linear"].loc[{"dataset": "d2"}] = np.nan
    sim.to_netcdf(tmp_path / "similarity.nc", engine="scipy")
    write_manifest_for(tmp_path)
    ch = CH.open_chapter(tmp_path)
    assert ch.need(min_datasets=2) == (
        "This needs at least 2 datasets with a defined cka_linear and the run has 1 (d0; d1 and "
        "d2 have no defined cka_linear), so this figure is skipped."
    )
    assert ch.need(min_domains=2) == (
        "This compares domain categories and every dataset with a defined cka_linear of the "
        "run is Structured, so this figure is skipped."
    )
    assert ch.need(min_datasets=1, min_domains=1) is None
    # one of two datasets defined: the same count as analysis.defined_datasets gives
    part = CH.open_chapter(tmp_path, datasets=["d0", "d1"])
    assert A.defined_datasets(part.da) == ["d0"]
    assert "has 1 (d0; d1 has no defined cka_linear)" in part.need(min_datasets=2)
    # one model has no pair to be undefined: its datasets count (said by min_models)
    assert CH.open_chapter(tmp_path, models=["m0"]).need(min_datasets=3, min_models=1) is None
    none = CH.open_chapter(tmp_path, datasets=["d1", "d2"])
    assert none.need() == (
        "This needs a dataset with a defined cka_linear and this chapter's part of the run "
        "(2 of 3 datasets) has 0 (d1 and d2 have no defined cka_linear), so this figure is "
        "skipped."
    )


def test_chapter_parameters_the_run_lacks(tmp_path, monkeypatch):
    # a measure or category the run lacks is an error naming what it has (a typo must not render
    # another measure's chapter); only the chapters' defaults fall back, and the chapter says so
    sim = _small_sim(["S", "T", "T"], n_datasets=1)
    sim = sim.assign(rsa=sim["cka_linear"] ** 2)
    sim.to_netcdf(tmp_path / "similarity.nc", engine="scipy")
    write_manifest_for(tmp_path)
    with pytest.raises(
        InputError,
        match="measure 'cka_linaer' is not in this run; its measures are cka_linear, rsa: give",
    ):
        CH.open_chapter(tmp_path, measure="cka_linaer")
    with pytest.raises(
        InputError,
        match="category 'size_class' is not a model field of this run; its fields are "
        "objective, data_class: give",
    ):
        CH.open_chapter(tmp_path, category="size_class")
    # a model field the consistency is not grouped by: its chapters' consistency tables were
    # empty and their sentences blamed too few model pairs (category=method)
    with pytest.raises(
        InputError,
        match="category 'model' is a model field, but consistency is grouped only by the fields "
        r"of repsim\.names\.CATEGORY_FIELDS; its fields are objective, data_class: give",
    ):
        CH.open_chapter(tmp_path, category="model")
    ch = CH.open_chapter(tmp_path, measure="rsa", category="data_class")
    assert (ch.measure, ch.category, ch.notes) == ("rsa", "data_class", ())
    # the measures set against the main one: the main one is said to be so, not missing (the
    # chapters said the run had no mutual_knn_10 when it was the main measure)
    assert ch.other_measures(["rsa", "cka_linear", "nope"], "X") == (["cka_linear"], None)
    assert ch.other_measures(["rsa", "nope"], "this chapter") == (
        [],
        "Nothing to set against rsa (rsa is this chapter's main measure; this run has no nope), "
        "so this chapter is skipped.",
    )
    # an empty list of measures to compare (a parameter set to []) read "against rsa ()"
    assert ch.other_measures([], "this table") == (
        [],
        "Nothing to set against rsa (no other measure was named), so this table is skipped.",
    )
    # chosen dataset pairs the chapter cannot draw: a sentence, not a traceback that said the
    # run lacked a dataset the chapter's datasets parameter had left out
    assert ch.dataset_pair_skip([("d0", "d9")], "dataset_pairs") == (
        "dataset_pairs names d9, which this run does not have (its datasets: d0), so this "
        "figure is skipped."
    )
    assert "pairs d0 with itself" in ch.dataset_pair_skip([("d0", "d0")], "dataset_a / dataset_b")
    assert ch.dataset_pair_skip([], "dataset_pairs") is None
    assert ch.dataset_skip(["d9", "d0", "d9"], "dataset", "this section") == (
        "dataset names d9, which this run does not have (its datasets: d0), so this section is "
        "skipped."
    )
    assert ch.dataset_skip(["d0"], "dataset") is None
    other = tmp_path / "other"
    other.mkdir()
    sim[["rsa"]].drop_vars(["objective_a", "objective_b"]).to_netcdf(
        other / "similarity.nc", engine="scipy"
    )
    write_manifest_for(other)
    shown: list[str] = []
    monkeypatch.setattr(CH, "say", shown.append)
    _, _, _, da, _, _, measure, category = CH.setup(other)
    assert (measure, category, da.name) == ("rsa", "data_class", "rsa")
    assert shown == [  # the chapter says what it shows instead
        "This run has no cka_linear; the chapter shows rsa, the run's first measure.",
        "The models of this run have no objective; the chapter groups them by data_class.",
    ]


def test_measure_parameters_are_measure_names():
    # chapters leave out measures the run lacks; a misspelt name would be left out unsaid
    CH.check_measure_names(
        compare_measures=["cka_rbf_0.4", "rsa_spearman"], knn_measure="mutual_knn_10"
    )
    with pytest.raises(
        InputError,
        match="the chapter's local_measures parameter: unknown measure 'rsa_spearmann'; valid "
        "names: cka_linear",
    ):
        CH.check_measure_names(
            knn_measure="mutual_knn_10", local_measures=["cka_rbf_0.2", "rsa_spearmann"]
        )
    with pytest.raises(InputError, match="knn_measure parameter: unknown measure 'mutual_kn_10'"):
        CH.check_measure_names(knn_measure="mutual_kn_10")


def test_rank_sum_text_with_untestable_groups():
    tidy = pd.DataFrame(
        {"anchor": ["a", "b", "c"], "category": ["S", "T", "T"], "consistency": [0.1, 0.5, 0.6]}
    )
    tests = C.anchor_rank_sum_tests(tidy)
    assert tests.p.isna().all()
    assert "No two categories" in T.rank_sum_text(tests, 0.01)


def test_rank_sum_text_says_which_comparisons_cannot_reach_the_threshold():
    """2 anchors against 8 cannot go below p = 2 / C(10, 2) = 0.044, above the Bonferroni
    threshold 0.01 / 3: such a comparison was counted among the tested, not significant ones."""
    rows = [("a", 0.9 + 0.01 * i) for i in range(2)]
    rows += [("b", 0.5 + 0.01 * i) for i in range(8)] + [("c", 0.1 + 0.01 * i) for i in range(8)]
    tidy = pd.DataFrame(
        [{"anchor": f"{c}{i}", "category": c, "consistency": v} for i, (c, v) in enumerate(rows)]
    )
    tests = C.anchor_rank_sum_tests(tidy, alpha=0.01)
    text = T.rank_sum_text(tests, 0.01)
    assert text.startswith("1 of 1 testable category comparisons are significant")
    assert "the datasets are not resampled, so the comparisons hold for these datasets)" in text
    assert (
        "(2 more cannot be tested: with so few anchors the smallest p an exact rank-sum test can "
        "give, 0.0444, is not below 0.00333: a vs b and a vs c)"
    ) in text


def test_rank_sum_text_a_smallest_p_at_the_threshold_cannot_reach_it():
    """p < threshold is significant, so a comparison whose smallest p equals the threshold is
    untestable, as is one of a table without p_min (none is then counted as unreachable)."""
    tests = pd.DataFrame(
        {
            "group_a": ["a", "a"],
            "group_b": ["b", "c"],
            "median_a": [0.9, 0.9],
            "median_b": [0.5, 0.1],
            "p": [0.05, 0.001],
            "p_bonferroni": [0.1, 0.002],
            "p_threshold": [0.005, 0.005],
            "p_min": [0.005, 0.0001],
            "significant": [False, True],
        }
    )
    text = T.rank_sum_text(tests, 0.01)
    assert text.startswith("1 of 1 testable category comparisons are significant")
    assert "(1 more cannot be tested: with so few anchors the smallest p an exact" in text
    assert "give, 0.005, is not below 0.005: a vs b)" in text
    floor = T.rank_sum_text(tests.assign(p_min=0.005), 0.01)
    assert floor.startswith("No category comparison can be tested at the Bonferroni threshold")
    bare = T.rank_sum_text(tests.drop(columns="p_min"), 0.01)
    assert bare.startswith("1 of 2 testable category comparisons are significant")
    assert "cannot be tested" not in bare
    # the chapter shows the table only where the sentence can count a testable comparison
    assert list(C.reachable_rank_sums(tests).group_b) == ["c"]
    assert C.reachable_rank_sums(tests.assign(p_min=0.005)).empty
    assert list(C.reachable_rank_sums(tests.drop(columns="p_min")).group_b) == ["b", "c"]
    assert C.reachable_rank_sums(tests.assign(p=np.nan)).empty


def test_defined_rows_keep_what_the_sentence_speaks_of():
    table = pd.DataFrame(
        {"same": [0.5, np.nan, 0.2], "across": [0.4, 0.3, np.nan], "pairs": [3, 0, 1]},
        index=["x", "y", "z"],
    )
    assert list(A.defined_rows(table, ["same", "across"]).index) == ["x"]
    assert list(A.defined_rows(table, ["across"]).index) == ["x", "y"]
    assert A.defined_rows(table.iloc[1:], ["same", "across"]).empty


def test_spread_over_domains_and_domain_contrast():
    order = ["a1", "a2", "a3", "b1", "c1"]
    doms = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}
    assert A.spread_over_domains(order, doms, 3) == ["a1", "b1", "c1"]
    assert A.spread_over_domains(order, doms, 10) == order
    for bad in (0, -1, 2.5):  # a chapter's max_panels: no panel at all, or a float taken as 3
        with pytest.raises(InputError, match=f"max_panels must be an integer >= 1; got {bad!r}"):
            A.spread_over_domains(order, doms, bad)
    tidy = pd.DataFrame(
        {
            "group_pair": "all",
            "dataset_a": ["a1", "a1"],
            "dataset_b": ["a2", "b1"],
            "consistency": [0.9, 0.3],
        }
    )
    table = A.domain_contrast(tidy, doms)
    # (a2, b1) has no value: of the 3 labellings of a1, a2, b1 (one B), B at a1 leaves no
    # same-domain pair and has no statistic; the other two give +0.6 and -0.6, so p = 1
    assert table.loc["all", "same domain"] == 0.9 and table.loc["all", "p"] == 1.0
    # and no labelling can give less: the design cannot test, which is not "no evidence"
    assert "cannot be tested on this run" in T.domain_contrast_text(table)
    one = A.domain_contrast(tidy.iloc[:1], doms)
    assert "cannot be compared" in T.domain_contrast_text(one)
    # one row per group pair, in the order of the tidy table (not sorted)
    rows = pd.concat([tidy.assign(group_pair=g) for g in ("all", "SSL | SSL", "Image-Text | SSL")])
    assert list(A.domain_contrast(rows, doms).index) == ["all", "SSL | SSL", "Image-Text | SSL"]


def test_domain_contrast_on_a_design_too_small_to_test_says_so():
    doms = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    pairs = [("a1", "a2"), ("a1", "b1"), ("a1", "b2"), ("a2", "b1"), ("a2", "b2"), ("b1", "b2")]
    tidy = pd.DataFrame(
        {
            "group_pair": "all",
            "dataset_a": [a for a, _ in pairs],
            "dataset_b": [b for _, b in pairs],
            "consistency": [0.9 if doms[a] == doms[b] else 0.1 for a, b in pairs],
        }
    )
    table = A.domain_contrast(tidy, doms)
    assert table.loc["all", "smallest p"] == pytest.approx(2 / 3)
    text = T.domain_contrast_text(table)
    assert "cannot be tested on this run" in text and "no evidence" not in text
    assert "gives p below 0.67" in text and not T.untested_claims(text)
    # which domain the within-domain pairs come from: here one each, so neither holds most
    assert table.loc["all", "same-domain pairs"] == 2 and table.loc["all", "main domain pairs"] == 1
    assert "Most within-domain pairs" not in text
    doms3 = {**doms, "b3": "B"}
    tidy3 = pd.concat(
        [
            tidy,
            pd.DataFrame(
                {
                    "group_pair": "all",
                    "dataset_a": ["a1", "a2", "b1", "b2"],
                    "dataset_b": ["b3"] * 4,
                    "consistency": [0.1, 0.1, 0.9, 0.9],
                }
            ),
        ]
    )
    table3 = A.domain_contrast(tidy3, doms3)  # B: b1-b2, b1-b3, b2-b3; A: a1-a2
    assert (table3.loc["all", "main domain"], table3.loc["all", "main domain pairs"]) == ("B", 3)
    assert "(3 of them within B)" in T.domain_contrast_text(table3)


def test_behaviour_text_handles_nan_and_one_domain():
    corr = pd.DataFrame({"dataset": ["x", "y"], "domain": ["D", "D"], "pearson_r": [-0.5, np.nan]})
    text = T.behaviour_text(corr)
    assert "1 of 1" in text and "strongest" not in text
    two = pd.DataFrame(
        {"dataset": ["x", "y", "z"], "domain": ["D", "D", "E"], "pearson_r": [-0.5, -0.3, 0.1]}
    )
    text = T.behaviour_text(two)
    assert "D -0.40 (2 datasets); E 0.10 (1 dataset)" in text
    assert "not ranked" in text and "E rests on one dataset" in text and "strongest" not in text
    assert "nothing to summarise" in T.behaviour_text(corr.assign(pearson_r=np.nan))
    assert T.fmt(float("nan")) == "undefined"


def test_read_features_skips_missing_models(tmp_path):
    run_dir = write_fake_run(tmp_path / "r", n_per_objective=1)
    r = CH.load_run(run_dir)
    ids = list(map(str, r.similarity.model_a.values))
    feats = A.read_features(r, "shapes", [*ids[:2], "not-a-model"])
    assert list(feats) == ids[:2]
    assert A.read_features(r, "shapes", [ids[0], "not-a-model"]) is None
    small = A.read_features(r, "shapes", ids[:2], max_rows=10)
    assert all(len(f) == 10 for f in small.values())
    assert np.allclose(small[ids[1]], A.read_features(r, "shapes", ids[:2], max_rows=10)[ids[1]])
    # the robustness chapter's dataset parameter: it said the store lacked the models' features
    with pytest.raises(InputError, match="dataset\\(s\\) 'shapez' not in this run; its datasets"):
        A.read_features(r, "shapez", ids[:2])
    with pytest.raises(InputError, match="max_rows must be an integer >= 4; got 0"):
        A.read_features(r, "shapes", ids[:2], max_rows=0)  # the chapter's max_stimuli


def test_stimulus_features_say_why_chapter_13_draws_nothing(tmp_path):
    """Chapter 13's own parameters at their edges: a dataset the chapter does not show was a
    traceback saying the run lacked it (also when the run has it), one model picked
    (per_category 1, one category) was 'the feature store lacks features', a max_stimuli of 0
    was an error about max_rows, and 5 stimuli an error about a fraction the chapter does not
    take. Each is now a sentence, or an error naming the chapter's parameter."""
    run_dir = write_fake_run(tmp_path / "r", n_per_objective=2)
    ch = CH.open_chapter(run_dir)
    order = ", ".join(ch.order)
    assert A.stimulus_features(ch, "nope", 2, 500)[1:] == (
        None,
        f"dataset names nope, which this run does not have (its datasets: {order}), so the "
        "section on the number of stimuli is skipped.",
    )
    part = CH.open_chapter(run_dir, datasets=["shapes", "flowers"])
    _, feats, skip = A.stimulus_features(part, "digits", 2, 500)
    assert feats is None and skip.startswith(
        "dataset names digits, which this chapter's part of the run (2 of 6 datasets) does not "
        "have (its datasets: "
    )
    one = CH.open_chapter(run_dir, category="data_class")  # every fake model: one data_class
    first = str(one.models.sort_index().index[0])
    _, feats, skip = A.stimulus_features(one, None, 1, 500)
    assert feats is None and skip == (
        f"per_category = 1 picks 1 model ({first}): the models shown have 1 known data_class, "
        "and its figures need a model pair, so the section on the number of stimuli is skipped "
        "(a per_category of 2 or more picks a pair)."
    )
    assert "lacks features" not in skip
    with pytest.raises(InputError, match="max_stimuli must be an integer >= 4; got 0"):
        A.stimulus_features(ch, None, 2, 0)
    dataset, feats, skip = A.stimulus_features(ch, None, 2, 5)
    assert skip is None and dataset == ch.order[0] and len(feats) == 8
    assert {len(f) for f in feats.values()} == {5}
    assert A.stimulus_sizes(5) == [5] and A.stimulus_sizes(100) == [8, 16, 32, 64, 100]
    assert A.subsample_skip(5) == (
        "Random halves of the 5 stimuli hold 2, fewer than the 4 that unbiased CKA needs, so "
        "the spread over halves is skipped."
    )
    with pytest.raises(InputError, match="gives subsets of 2"):  # the rule the skip words
        A.subsample_pairs(feats, n_draws=2)
    assert A.subsample_skip(7) is None and A.subsample_skip(6) is not None
    stab = A.stability_vs_n(feats, A.stimulus_sizes(5), repeats=2)
    assert "so there is no figure of the error" in T.stability_text(stab, 5, dataset, 0.02)
    # every model of each category when per_category exceeds each category's count
    _, feats, _ = A.stimulus_features(ch, None, 100, 20)
    assert len(feats) == 8
    said = T.stimulus_sample_text(feats, dataset, 100, ch.categories())
    assert said.startswith("The figures below use every model with a known objective, 8 in all (")
    _, feats, _ = A.stimulus_features(ch, None, 1, 20)
    said = T.stimulus_sample_text(feats, dataset, 1, ch.categories())
    assert said.startswith("The figures below use the first model of each objective by id, 4 in")
    assert said.endswith(f"on 20 similarity stimuli of {dataset}.")


def test_read_features_keeps_the_similarity_subset(tiny_run):
    """The store holds train images for the probes too; the robustness chapter read them all,
    so its curves described another pool of images than the run's similarity."""
    import pandas as pd

    r = CH.load_run(tiny_run)
    ids = list(map(str, r.similarity.model_a.values))[:2]
    feats = A.read_features(r, "faces", ids)
    table = pd.read_csv(tiny_run / "stimuli" / "faces.csv")
    n_sim = int(table["in_similarity"].sum())
    assert n_sim < len(table) and all(len(f) == n_sim for f in feats.values())
    store = r.feature_store()
    sim_ids = table.loc[table["in_similarity"], "id"].tolist()
    _, direct = store.read("faces", ids[0], ids=sorted(sim_ids))
    got, direct = feats[ids[0]], np.asarray(direct)
    assert got.shape == direct.shape  # the same rows, whatever their order
    assert np.array_equal(np.sort(got, axis=0), np.sort(direct, axis=0))


# ------------------------------------------------------------ the study's figures 2-4 and appendices
def _blocks_sim(n_datasets: int = 3, seed: int = 0, k: int = 3) -> xr.DataArray:
    """Two objectives of k models each forming two similarity blocks, with noise per dataset."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i + 1}" for i in range(k)] + [f"t{i + 1}" for i in range(k)]
    obj = ["S"] * k + ["T"] * k
    base = np.kron(np.eye(2), np.full((k, k), 0.6)) + 0.2
    vals = []
    for _ in range(n_datasets):
        m = base + rng.uniform(-0.05, 0.05, size=base.shape)
        m = (m + m.T) / 2
        np.fill_diagonal(m, 1.0)
        vals.append(m)
    return _objective_sim(vals, ids, obj)


def _objective_sim(matrices: list[np.ndarray], ids: list[str], obj: list[str]) -> xr.DataArray:
    """Similarity matrices of one dataset each (d0, d1, ...) as cka_linear, models with objectives."""
    return xr.DataArray(
        np.stack(matrices),
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": [f"d{i}" for i in range(len(matrices))],
            "model_a": ids,
            "model_b": ids,
            "objective_a": ("model_a", obj),
            "objective_b": ("model_b", obj),
        },
        name="cka_linear",
        attrs={"measure": "cka_linear"},
    )


def test_mean_std_matrices_by_hand():
    da = _blocks_sim()
    mean, std = A.mean_std_matrices(da)
    v = da.values
    np.testing.assert_allclose(mean.values, v.sum(0) / 3, rtol=1e-12)
    np.testing.assert_allclose(
        std.values, np.sqrt(((v - v.sum(0) / 3) ** 2).sum(0) / 2), rtol=1e-12, atol=1e-15
    )
    assert list(mean.objective_a.values) == ["S", "S", "S", "T", "T", "T"]
    m_arc, _ = A.mean_std_matrices(da, "arccos")
    assert m_arc.values[0, 1] == pytest.approx(sum(math.acos(x) for x in v[:, 0, 1]) / 3)
    t = A.mean_std_across_datasets(da, transform="tan")
    row = t[(t.model_a == "s1") & (t.model_b == "t2")].iloc[0]
    tans = [math.tan(x) for x in v[:, 0, 4]]
    assert row["mean"] == pytest.approx(sum(tans) / 3)
    assert row["std"] == pytest.approx(math.sqrt(sum((x - sum(tans) / 3) ** 2 for x in tans) / 2))


def test_common_model_order_groups_by_category_then_cluster():
    da = _blocks_sim()
    perm = ["t2", "s1", "t1", "s3", "t3", "s2"]
    order = A.common_model_order(da.sel(model_a=perm, model_b=perm))
    assert sorted(order[:3]) == ["s1", "s2", "s3"] and sorted(order[3:]) == ["t1", "t2", "t3"]
    mixed = da.assign_coords(objective_a=("model_a", ["S", "T", "S", "T", "S", "T"]))
    order = A.common_model_order(mixed)  # within one category, clustering keeps s* and t* apart
    assert [m[0] for m in order[:3]] in (["s", "s", "t"], ["t", "s", "s"])


def test_measure_means_by_hand():
    da = _blocks_sim()
    sim = xr.Dataset({"cka_linear": da, "rsa_spearman": da * 0.5})
    t = A.measure_means(sim, ["cka_linear", "rsa_spearman", "not_there"])
    assert list(t.columns) == ["model_a", "model_b", "category_pair", "cka_linear", "rsa_spearman"]
    row = t[(t.model_a == "s2") & (t.model_b == "t3")].iloc[0]
    assert row["cka_linear"] == pytest.approx(da.values[:, 1, 5].sum() / 3)
    assert row["rsa_spearman"] == pytest.approx(row["cka_linear"] / 2)
    with pytest.raises(InputError, match="none of"):
        A.measure_means(sim, ["nope"])


@pytest.mark.parametrize("method", ["tsne", "mds"])
def test_model_embedding_separates_blocks_and_is_seeded(method):
    k = 10
    da = _blocks_sim(k=k)
    emb = A.model_embedding(da, method, seed=42)
    again = A.model_embedding(da, method, seed=42)
    np.testing.assert_array_equal(emb[["x", "y"]].values, again[["x", "y"]].values)
    xy = emb[["x", "y"]].values
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    within = max(d[:k, :k].max(), d[k:, k:].max())
    assert d[:k, k:].min() > within  # every cross-block distance beats every within-block one
    assert list(emb.category) == ["S"] * k + ["T"] * k
    small = A.model_embedding(_blocks_sim(k=2), method)  # 4 models: perplexity lowered to 3
    assert len(small) == 4 and np.isfinite(small[["x", "y"]].values).all()
    # the caption names the perplexity used, not the one asked for (chapter 3 said 5 for any zoo)
    if method == "tsne":
        assert emb.attrs["method"] == "scikit-learn t-SNE (perplexity 5, random init)"
        assert small.attrs["method"] == "scikit-learn t-SNE (perplexity 3, random init)"
    else:
        assert small.attrs["method"] == "scikit-learn metric MDS"
    with pytest.raises(InputError, match="method"):
        A.model_embedding(da, "umap")


def test_model_embedding_says_what_it_embeds_for_one_dataset_and_several():
    """Chapter 3's model-map title said "1 - mean cka_linear across datasets" on one dataset,
    where the map is of that dataset's 1 - similarity."""
    da = _blocks_sim(n_datasets=3)
    assert A.model_embedding(da, "mds").attrs["dissimilarity"] == (
        "1 - mean cka_linear across 3 datasets"
    )
    one = A.model_embedding(da.isel(dataset=[1]), "mds")
    assert one.attrs["dissimilarity"] == "1 - cka_linear on d1"


def test_a_dataset_with_no_defined_similarity_is_not_counted_as_one_used():
    """Chapter 4's title said "across 10 datasets" where one dataset's similarities were all
    NaN and every mean and spread came from 9 (and the model map's "across 3 datasets" was of
    2): defined_datasets counts those a pair has a value on, a model with itself no pair."""
    many = _blocks_sim(n_datasets=3).copy()
    many.loc[{"dataset": "d2"}] = np.nan
    assert A.model_embedding(many, "mds").attrs["dissimilarity"] == (
        "1 - mean cka_linear across 2 datasets"
    )
    many.loc[{"dataset": "d1"}] = np.nan
    assert A.model_embedding(many, "mds").attrs["dissimilarity"] == "1 - cka_linear on d0"

    da = _blocks_sim(n_datasets=4).copy()
    n = da.sizes["model_a"]
    da.loc[{"dataset": "d1"}] = np.nan  # every model failed on d1
    diagonal = np.full((n, n), np.nan)
    np.fill_diagonal(diagonal, 1.0)
    da.loc[{"dataset": "d3"}] = diagonal  # only a model with itself
    one_pair = np.full((n, n), np.nan)
    one_pair[0, 1] = one_pair[1, 0] = 0.4
    da.loc[{"dataset": "d2"}] = one_pair
    assert A.defined_datasets(da) == ["d0", "d2"]
    # a Dataset: a dataset defined under any of its measures, in the run's order
    other = da.copy().rename("rsa_spearman")
    other.loc[{"dataset": "d1"}] = 0.5
    both = xr.Dataset({"cka_linear": da, "rsa_spearman": other})
    assert A.defined_datasets(both) == ["d0", "d1", "d2"]
    # the mean and spread a chapter counts them for skip the undefined ones
    table = A.mean_std_across_datasets(da)
    first = table[
        (table.model_a == str(da.model_a.values[0])) & (table.model_b == str(da.model_a.values[1]))
    ]
    vals = da.isel(model_a=0, model_b=1).sel(dataset=["d0", "d2"]).values
    assert first["mean"].item() == pytest.approx(vals.mean(), abs=1e-12)
    assert first["std"].item() == pytest.approx(np.std(vals, ddof=1), abs=1e-12)


def test_consistency_pairs_match_consistency_table(run):
    t = C.consistency_pairs(
        run.consistency,
        ("cka_linear", "consistency"),
        ("mutual_knn_10", "consistency_spearman"),
        ("all", "objective"),
    )
    x = C.consistency_table(run.consistency, "cka_linear", ("all", "objective"))
    y = C.consistency_table(
        run.consistency, "mutual_knn_10", ("all", "objective"), "consistency_spearman"
    )
    assert len(t) == len(x) == len(y)
    np.testing.assert_allclose(t["x"].values, x["consistency"].values)
    np.testing.assert_allclose(t["y"].values, y["consistency"].values)
    assert "all" in set(t.label)
    with pytest.raises(InputError, match="no consistency"):
        C.consistency_pairs(run.consistency, ("nope", "consistency"), ("cka_linear", "consistency"))


def test_partner_tests_text_names_threshold_and_significant_pairs():
    tests = pd.DataFrame(
        {
            "anchor": ["x", "x"],
            "anchor_category": ["K", "K"],
            "partner_a": ["P", "P"],
            "partner_b": ["Q", "R"],
            "n": [8, 8],
            "median_a": [0.9, 0.9],
            "median_b": [0.1, 0.8],
            "statistic": [3.0, 0.5],
            "p": [0.001, 0.6],
            "p_bonferroni": [0.002, 1.0],
            "p_threshold": [0.005, 0.005],
            "significant": [True, False],
        }
    )
    text = T.partner_tests_text(tests, 0.01)
    assert text.startswith("In the study's test, 1 of 2 comparisons")
    assert "p < 0.005" in text and "anchor x: P > Q." in text
    assert "not evidence of a difference" in text and "significant" not in text
    # the false-positive rate is simulated for the datasets the 8 dataset pairs come from (5),
    # not quoted from a simulation of another design
    from repsim.simulations import pair_test_false_positive_rate

    rate = pair_test_false_positive_rate(5, alpha=0.01)
    assert (
        f"in a simulation with 5 datasets, no difference between the partner categories and each "
        f"dataset shifting its pairs as much as they vary otherwise, {rate:.0%} of such tests gave "
        "p < 0.01, where a valid test gives 1%"
    ) in text
    assert "as the study reads them, not as findings of this run" in text
    # the direction follows the rank-sum statistic, not the column order
    flipped = tests.assign(statistic=[-3.0, 0.5], median_a=[0.1, 0.9], median_b=[0.9, 0.8])
    assert "anchor x: Q > P." in T.partner_tests_text(flipped, 0.01)
    assert "no rank-sum test" in T.partner_tests_text(tests.assign(p=np.nan), 0.01)
    assert "the partner category with the higher consistency first" in text
    # one comparison, of 6 dataset pairs: they come from 4 datasets (4 * 3 / 2 = 6)
    one = T.partner_tests_text(tests.iloc[:1].assign(n=6), 0.01)
    assert one.startswith("In the study's test, 1 of 1 comparisons")
    assert "p < 0.005 for each test" in one and "in a simulation with 4 datasets," in one


def test_pearson_spearman_text_is_descriptive():
    pairs = pd.DataFrame(
        {"label": ["a", "a", "b", "b"], "x": [0.1, 0.4, 0.6, 0.9], "y": [0.2, 0.3, 0.7, 0.8]}
    )
    table = A.pearson_spearman_table(pairs)
    assert table.loc["a", "median Pearson"] == 0.25 and table.loc["b", "median Spearman"] == 0.75
    text = T.pearson_spearman_text(pairs, "objective")
    r = np.corrcoef(pairs.x, pairs.y)[0, 1]
    assert f"r = **{T.fmt(r)}**" in text and "not tested" in text and "p-value" in text
    assert "Too few" in T.pearson_spearman_text(pairs.iloc[:2], "objective")


def test_controlled_rows_show_counts_as_integers():
    """controlled_tests.csv leaves a count empty on the rows of other analyses, so pandas reads
    it as float; the book showed '999.0' permutations beside a NaN column."""
    tests = pd.DataFrame(
        {
            "measure": ["cka_linear"] * 2,
            "view": ["separate"] * 2,
            "analysis": ["factor", "difference"],
            "factor": ["objective", "objective - architecture"],
            "estimate": [0.2, 0.02],
            "bias": [0.01, 0.005],
            "ci_low": [0.1, -0.01],
            "ci_high": [0.3, 0.06],
            "p_value": [0.001, 0.25],
            "z": [9.3, np.nan],
            "n_permutations": [999.0, np.nan],
            "n_bootstrap": [np.nan, 79.0],
        }
    )
    factor = A.controlled_rows(tests, "cka_linear", "factor")
    difference = A.controlled_rows(tests, "cka_linear", "difference")
    assert factor["n_permutations"].tolist() == [999]
    assert factor["n_permutations"].dtype.kind == "i"
    assert difference["n_bootstrap"].dtype.kind == "i"
    assert "n_bootstrap" not in factor and "n_permutations" not in difference
    # no z: the permutation null is skewed, and a z of 9 read as a normal z overstates p by far
    assert "z" not in factor
    # beside the estimate, the bias its interval is corrected for (the interval is not about it)
    assert (
        list(factor.columns[2:5]) == list(difference.columns[2:5]) == ["estimate", "bias", "ci_low"]
    )


def test_the_chapters_factor_sentence_keeps_the_coarse_bootstrap_caveat():
    """The chapter words each factor from its row; the display columns leave out n_bootstrap, so
    the sentence lost 'from 79 bootstrap resamples, so its ends are approximate'."""
    from repsim import sentences as T
    from repsim import stats

    base = {"measure": "cka_linear", "n_datasets": 10, "n_models": 36, "confidence_level": 0.95}
    rows = []
    for view in ("separate", "pooled"):
        for factor, p in (("objective", 0.002), ("architecture", 0.3)):
            rows.append(
                {**base, "view": view, "analysis": "factor", "factor": factor, "estimate": 0.2,
                 "ci_low": 0.12, "ci_high": 0.26, "p_value": p, "p_min": 0.001,
                 "n_permutations": 999, "n_bootstrap": 79, "n_model_pairs": 10}
            )  # fmt: skip
        rows.append(
            {**base, "view": view, "analysis": "difference", "factor": "objective - architecture",
             "estimate": 0.02, "ci_low": -0.02, "ci_high": 0.07, "p_value": 0.4, "n_bootstrap": 79}
        )  # fmt: skip
    tests = pd.DataFrame(rows)
    (row, _) = [
        r for _, r in A.controlled_rows(tests, "cka_linear", "factor", display=False).iterrows()
    ]
    assert (
        "CI 0.12 to 0.26, about a 93.7% interval rather than the nominal 95%: from 79 bootstrap "
        "resamples of the datasets with these models held fixed, its ends"
        in stats.factor_sentence(row)
    )
    # a measure the tests were not run on: the answer says which measure it shows
    answer = T.controlled_answer(tests, "", "rsa_spearman")
    assert answer.startswith(
        "The controlled tests were computed for cka_linear, not for rsa_spearman; this section "
        "shows them for cka_linear. With cka_linear on 10 datasets"
    )
    assert "computed for" not in T.controlled_answer(tests, "", "cka_linear")


def test_study_beside_run_keeps_the_run_columns_when_no_row_has_a_run_value():
    """The study-numbers chapter dropped the run's value and basis columns of a table whose rows
    have no run value (24 rows of NaN beside a basis column squeezed to a letter a line, before
    the page wrapped its text), so its tables changed shape from run to run: they are kept, the
    value said as "none" and the basis saying why; counts were shown as 64.0."""
    base = {
        "measure": ["cka_linear"] * 2,
        "models": ["all"] * 2,
        "dataset_a": ["imagenet-subset-10k"] * 2,
        "dataset_b": ["wds/vtab/flowers", "wds/vtab/pcam"],
        "domain": [""] * 2,
        "study": [0.71, 0.46],
        "run": [np.nan, np.nan],
        "tolerance": [0.05, 0.05],
        "status": ["not in run"] * 2,
        "run_basis": ["dataset imagenet-subset-10k, wds/vtab/flowers not in the run"] * 2,
    }
    consistency = pd.DataFrame({**base, "quantity": ["consistency"] * 2})
    counts = pd.DataFrame(
        {**base, "study": [64.0, 23.0], "run": [45.0, 10.0], "quantity": ["models"] * 2}
    )
    out = A.study_beside_run(pd.concat([consistency, counts]), "consistency")
    assert list(out.columns) == [
        "measure",
        "models",
        "dataset A",
        "dataset B",
        A.STUDY_LABEL,
        "this run",
        "status",
        "basis of this run's value",
    ]
    assert out["this run"].tolist() == [A.NO_RUN_VALUE] * 2 == ["none"] * 2
    assert out["basis of this run's value"].tolist() == base["run_basis"]
    assert not out.isna().any().any()
    out = A.study_beside_run(pd.concat([consistency, counts]), "models")
    assert out["this run"].tolist() == [45, 10] and out[A.STUDY_LABEL].dtype.kind == "i"
    # rows with and without a value: "none" beside the values, not NaN
    mixed = consistency.assign(run=[0.5, np.nan], status=["other models", "not in run"])
    out = A.study_beside_run(mixed, "consistency")
    assert out["this run"].tolist() == ["0.500", "none"]


def test_rank_sum_display_keeps_small_p_values_readable():
    """The anchors chapter showed its 48 rank-sum tests rounded to 4 decimals (p = 5e-08 as 0.0)
    in 12 columns, the right ones cut off by the page."""
    tests = pd.DataFrame(
        {
            "anchor": ["cnn-clip-s0"] * 2,
            "anchor_category": ["Image-Text"] * 2,
            "partner_a": ["Image-Text"] * 2,
            "partner_b": ["Random", "Supervised"],
            "n": [45, 45],
            "median_a": [0.846241, 0.846241],
            "median_b": [0.134203, 0.008132],
            "statistic": [5.451083, 2.28776],
            "p": [5.00641e-08, 0.0221515],
            "p_bonferroni": [2.4e-06, 1.0],
            "p_threshold": [0.000208, 0.000208],
            "significant": [True, False],
        }
    )
    out = A.rank_sum_display(tests)
    assert "p_threshold" not in out and "anchor_category" not in out and "n" in out
    assert out["p"].tolist() == ["5.0e-08", "2.2e-02"]
    assert out["median A"].tolist() == [0.85, 0.85]
    assert list(out.columns[-4:]) == ["z", "p", "p Bonferroni", "below thr."]
    # the anchor and first partner category label the rows, printed once per block on a page
    assert list(out.index.names) == ["anchor", "partners A"] and "anchor" not in out
    html = out.to_html()
    assert html.count("cnn-clip-s0") == 1 and 'rowspan="2"' in html


def test_the_study_s_anchor_models_when_the_run_has_them():
    """The study's appendix fixes six anchors; a run of its design uses them, any other run the
    first models of each category, and the caption says which."""
    from pathlib import Path

    import yaml

    from repsim.analysis import STUDY_ANCHORS, anchor_models

    paper = yaml.safe_load(
        (Path(__file__).parents[1] / "data" / "configs" / "paper_models.yaml").read_text()
    )
    ids = {m["id"] for m in paper["models"]}
    assert set(STUDY_ANCHORS) <= ids and len(STUDY_ANCHORS) == 6
    models = pd.DataFrame(
        {"objective": ["a", "b", "a", "b", "a", "b", "c", "c"]},
        index=[*STUDY_ANCHORS, "m1", "m2"],
    )
    assert anchor_models(models) == (list(STUDY_ANCHORS), "the study's six")
    # a run of exactly the six
    assert anchor_models(models.iloc[:6]) == (list(STUDY_ANCHORS), "the study's six")
    chosen, how = anchor_models(models.drop("resnet50"))
    assert how == "the first 2 of each objective"
    assert chosen == [
        "OpenCLIP_RN50_openai",
        "dinov2-vit-large-p14",
        "OpenCLIP_ViT-L-14_openai",
        "simclr-rn50",
        "m1",
        "m2",
    ]


def test_page_tables_never_round_a_p_value_across_alpha():
    """round(3) showed p = 0.0496 as 0.050 in a table under a sentence reading it as below 0.05."""
    table = pd.DataFrame({"median": [0.12345, 0.5, 0.25], "p_value": [0.0496, 0.0004, np.nan]})
    out = A.page_table(table)
    assert out["p_value"].tolist() == ["0.0496", "< 0.001", "undefined"]
    assert out["median"].tolist() == [0.123, 0.5, 0.25]


def test_chapter_category_boxes_draw_or_say_why(tmp_path, monkeypatch):
    """One box figure per grouping that has category pairs to show, the sentence saying why for
    any other (chapters 6 and 9 had a loop each, with two different rules), in the given order."""
    import matplotlib.pyplot as plt

    from repsim import plots as P

    write_fake_run(tmp_path / "run", features=False, probes=False)
    ch = CH.open_chapter(tmp_path / "run")
    events: list[str] = []
    monkeypatch.setattr(CH, "say", lambda text: events.append(text))

    def show(fig):
        events.append(f"figure {fig.texts[0].get_text() if fig.texts else ''}")
        plt.close(fig)

    monkeypatch.setattr(P, "show", show)
    drawn = ch.category_boxes(["data_class", "objective", "size_class"], note="Descriptive.")
    assert drawn == ["objective", "size_class"]
    assert len(events) == 3
    assert "same data_class (embedded)" in events[0]
    assert all(e.startswith("figure") for e in events[1:])


def test_chapter_category_boxes_caption_counts_the_datasets_drawn(tmp_path, monkeypatch):
    """The category boxes (chapters 0, 6 and 9) were captioned with the chapter's datasets; a
    dataset whose consistency with every other is undefined (its similarities constant) adds no
    point, so the caption names the datasets drawn and says which one is left out."""
    import matplotlib.pyplot as plt

    from repsim import plots as P

    write_fake_run(tmp_path / "run", features=False, probes=False)
    ch = CH.open_chapter(tmp_path / "run")
    cons = ch.run.consistency
    for dim in ("dataset_a", "dataset_b"):  # no dataset pair of counts has a consistency
        cons["consistency"].loc[{dim: "counts"}] = np.nan
    captions: list[str] = []
    monkeypatch.setattr(CH, "say", lambda text: None)

    def show(fig):
        captions.append(" ".join(fig.texts[-1].get_text().split()))
        plt.close(fig)

    monkeypatch.setattr(P, "show", show)
    assert ch.category_boxes(["objective"], note="Descriptive.") == ["objective"]
    drawn = [d for d in ch.datasets if d != "counts"]
    assert captions == [
        f"Run 'fake-tiny'; {ch.sim.sizes['model_a']} models; datasets: {', '.join(drawn)}; "
        "measure: cka_linear. 1 of the 6 datasets (counts) has no dataset pair with a defined "
        "consistency: not drawn. Descriptive."
    ]


def test_chapter_drawn_caption_names_the_datasets_a_figure_draws(tmp_path):
    """One caption for every figure that draws some of the chapter's datasets: the chosen
    dataset pairs of chapter 5 (three pairs of four datasets were captioned "10 datasets"), or
    a table's rows with defined values (a dataset pair per row, as in chapters 7, 10, 12, 13)."""
    write_fake_run(tmp_path / "run", features=False, probes=False)
    ch = CH.open_chapter(tmp_path / "run")
    assert ch.order == ["objects", "shapes", "flowers", "textures", "counts", "digits"]
    head = f"Run 'fake-tiny'; {ch.sim.sizes['model_a']} models; datasets: "
    picked = {d for pair in [("digits", "flowers"), ("textures", "flowers")] for d in pair}
    assert ch.drawn_caption(picked, why="no panel among the dataset pairs shown") == (
        f"{head}flowers, textures, digits; measure: cka_linear. 3 of the 6 datasets (shapes, "
        "objects and counts) have no panel among the dataset pairs shown."
    )
    pairs = pd.DataFrame(
        {
            "dataset_a": ["flowers", "objects", "textures", "objects"],
            "dataset_b": ["objects", "textures", "digits", "counts"],
            "x": [0.1, 0.2, np.nan, 0.3],
            "y": [0.1, 0.2, 0.5, np.nan],
        }
    )
    cap = ch.drawn_caption(pairs, ["x", "y"], measure="cka_linear vs rsa_spearman", extra="E.")
    assert cap == (
        f"{head}objects, flowers, textures; measure: cka_linear vs rsa_spearman. 3 of the 6 "
        "datasets (shapes, digits and counts) have no dataset pair with a defined consistency: "
        "not drawn. E."
    )
    everything = ch.drawn_caption(ch.datasets)
    assert everything == f"{head}{', '.join(ch.datasets)}; measure: cka_linear."


def test_chapter_drawn_caption_lists_the_datasets_in_the_caption_s_order(tmp_path):
    """drawn_caption listed a figure's datasets in domain order where Chapter.caption (the
    caption of the figure beside it) lists the chapter's order: the run's, or the order the
    datasets parameter gives."""
    write_fake_run(tmp_path / "run", features=False, probes=False)
    ch = CH.open_chapter(tmp_path / "run")
    assert ch.datasets != ch.order  # the fake run's order is not its domain order
    assert ch.drawn_caption(ch.datasets) == ch.caption
    picked = ["counts", "shapes", "digits", "objects"]
    part = CH.open_chapter(tmp_path / "run", datasets=picked)
    assert part.datasets == picked and part.drawn_caption(set(picked)) == part.caption
    assert part.drawn_caption({"digits", "shapes"}, why="no panel").startswith(
        f"Run 'fake-tiny'; {ch.sim.sizes['model_a']} models; datasets: shapes, digits; "
    )
    assert part.drawn_caption({"digits", "shapes"}, why="no panel").endswith(
        "2 of the 4 datasets (counts and objects) have no panel."
    )


def test_chapter_domain_boxes_caption_counts_the_datasets_drawn(tmp_path, monkeypatch):
    """Chapter 8's per-domain figure on 9 untrained models (most probes near chance, r undefined
    on most datasets) had a caption counting the chapter's datasets, not the few it drew."""
    import matplotlib.pyplot as plt

    from repsim import plots as P

    write_fake_run(tmp_path / "run", features=False)
    ch = CH.open_chapter(tmp_path / "run")
    corr = B.behavior_correlation(ch.da, ch.run.probes, n_resamples=0)
    assert corr["pearson_r"].notna().all() and len(corr) == 6
    undefined = ["objects", "digits", "counts"]  # as if their probes were all near chance
    corr.loc[corr["dataset"].isin(undefined), "pearson_r"] = np.nan
    events: list[str] = []
    monkeypatch.setattr(CH, "say", lambda text: events.append(text))

    def show(fig):
        (ax,) = fig.axes
        drawn = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
        events.append(f"{len(drawn)} points; {fig.texts[-1].get_text()}")
        plt.close(fig)

    monkeypatch.setattr(P, "show", show)
    label = "Pearson r"
    drawn = ch.domain_boxes(corr, "pearson_r", label, "title")
    assert drawn == [d for d in ch.datasets if d not in undefined]
    (event,) = events
    caption = " ".join(event.split())
    assert caption.startswith(f"3 points; Run 'fake-tiny'; {ch.sim.sizes['model_a']} models; ")
    assert f"datasets: {', '.join(drawn)};" in caption
    assert (
        "3 of the 6 datasets (objects, digits and counts) have no defined Pearson r: not "
        in caption
    )
    events.clear()
    corr.loc[corr["dataset"].isin(["objects", "digits"]), "pearson_r"] = 0.2
    ch.domain_boxes(corr, "pearson_r", label, "title")
    assert "1 of the 6 datasets (counts) has no defined Pearson r: not drawn." in " ".join(
        events[0].split()
    )
    # fewer than two domains with a defined r: the sentence says so, no figure
    events.clear()
    one = corr.assign(pearson_r=np.where(corr["dataset"] == "flowers", 0.1, np.nan))
    assert ch.domain_boxes(one, "pearson_r", label, "title") == []
    assert events == [
        "Pearson r is defined on 1 of the 6 datasets (flowers, Natural (single-domain)), so "
        "there are not two domains to set side by side and this figure is skipped."
    ]


def test_scale_difference_is_over_the_all_pairs_rows():
    """The local/global difference is the median over dataset pairs of the all-model-pairs
    consistency: category-pair rows (drawn in the figure) reuse the same models and, pooled in,
    weighed each category by its number of pairs."""
    import itertools

    ds = [f"d{i}" for i in range(9)]
    rows = []
    for k, (a, b) in enumerate(itertools.combinations(ds, 2)):
        rows.append({"label": "all", "group_by": "all", "dataset_a": a, "dataset_b": b,
                     "x": 0.5, "y": 0.5 + 0.01 * (k % 5)})  # fmt: skip
        for cat in ("A | A", "A | B", "B | B"):
            rows.append({"label": cat, "group_by": "objective", "dataset_a": a, "dataset_b": b,
                         "x": 0.5, "y": 0.9})  # fmt: skip
    pairs = pd.DataFrame(rows)
    res = A.scale_difference(pairs, n_resamples=199)
    everything = pairs.y - pairs.x
    assert res["estimate"] == pytest.approx(np.median(everything[pairs.label == "all"]))
    assert res["estimate"] != pytest.approx(np.median(everything))
    assert res["ci_high"] <= 0.04 + 1e-12


def test_scale_difference_intervals_cover_together_when_several_measures_are_compared():
    """Chapter 10 sets three measures against linear CKA, each with a 95% interval: one of three
    excluding 0 by chance is about 1 in 7. Each interval is now at 1 - 0.05 / 3 (Bonferroni)."""
    rng = np.random.default_rng(5)
    ds = [f"d{i}" for i in range(9)]
    rows = [
        {"label": "all", "dataset_a": a, "dataset_b": b, "x": 0.5, "y": 0.5 + rng.normal(0, 0.05)}
        for a, b in itertools.combinations(ds, 2)
    ]
    pairs = pd.DataFrame(rows)
    one = A.scale_difference(pairs, n_resamples=1999)
    three = A.scale_difference(pairs, n_resamples=1999, n_comparisons=3)
    assert one["confidence_level"] == 0.95 and one["n_comparisons"] == 1
    assert three["confidence_level"] == pytest.approx(1 - 0.05 / 3) and three["n_comparisons"] == 3
    by_hand = S.dataset_bootstrap(
        pairs, lambda t: float(np.median(t.y - t.x)), n_resamples=1999,
        confidence_level=1 - 0.05 / 3,
    )  # fmt: skip
    for key in ("estimate", "ci_low", "ci_high", "n_bootstrap"):
        assert three[key] == pytest.approx(by_hand[key], abs=1e-15), key
    assert three["ci_low"] < one["ci_low"] and three["ci_high"] > one["ci_high"]
    # by default about 25 draws lie beyond each end of the (expanded) interval
    tail = (1 - S.expanded_level(1 - 0.05 / 3, 9)) / 2
    assert A.scale_difference(pairs, n_comparisons=3)["n_bootstrap"] == math.ceil(25 / tail)
    assert A.scale_difference(pairs)["n_bootstrap"] == max(
        999, math.ceil(25 / ((1 - S.expanded_level(0.95, 9)) / 2))
    )
    # sized so from the fewest datasets an interval is drawn for (8) on
    eight = pairs[pairs.dataset_a.isin(ds[:8]) & pairs.dataset_b.isin(ds[:8])]
    tail8 = (1 - S.expanded_level(0.95, 8)) / 2
    assert A.scale_difference(eight)["n_bootstrap"] == max(999, math.ceil(25 / tail8)) > 999
    # at least 999, however wide the tails of a lower level
    assert math.ceil(25 / ((1 - S.expanded_level(0.8, 9)) / 2)) < 999
    assert A.scale_difference(pairs, confidence_level=0.8)["n_bootstrap"] == 999
    # too few datasets for an interval: none, and no resamples sized for one (2 divided by 0)
    for n in (2, 3, 5):
        few = pairs[pairs.dataset_a.isin(ds[:n]) & pairs.dataset_b.isin(ds[:n])]
        res = A.scale_difference(few, n_comparisons=3)
        assert np.isnan(res["ci_low"]) and res["n_datasets"] == n and res["n_bootstrap"] == 0
    for bad in (0, 1.5, "3"):
        with pytest.raises(InputError, match="n_comparisons"):
            A.scale_difference(pairs, n_comparisons=bad)


def _sim_of_two_objectives(
    rng, n_datasets: int, noise_a: float, noise_b: float, noise_ab: float | None = None
) -> xr.Dataset:
    """Similarity of 4 models of objective A and 4 of B on ``n_datasets`` datasets: each
    objective's within pairs follow a fixed pattern plus noise of its own size, so the smaller
    noise gives the more consistent category pair; the pairs across objectives are noise, or
    the pattern plus ``noise_ab``."""
    ids = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
    obj = ["A"] * 4 + ["B"] * 4
    M = len(ids)
    pattern = rng.uniform(0.2, 0.8, size=(M, M))
    sims = []
    for _ in range(n_datasets):
        s = rng.uniform(0, 1, size=(M, M))
        s[:4, :4] = pattern[:4, :4] + noise_a * rng.normal(size=(4, 4))
        s[4:, 4:] = pattern[4:, 4:] + noise_b * rng.normal(size=(4, 4))
        if noise_ab is not None:
            s[:4, 4:] = pattern[:4, 4:] + noise_ab * rng.normal(size=(4, 4))
            s[4:, :4] = s[:4, 4:].T
        s = (s + s.T) / 2
        np.fill_diagonal(s, 1.0)
        sims.append(s)
    return _objective_sim(sims, ids, obj).to_dataset()


def _median_consistency_by_hand(sim: xr.Dataset, models: list[str]) -> float:
    """Median over dataset pairs of Pearson r between the similarities of the model pairs within
    ``models`` (a loop over dataset pairs)."""
    s = sim["cka_linear"]
    pairs = list(itertools.combinations(models, 2))
    vec = np.array(
        [[float(s[d].sel(model_a=a, model_b=b)) for a, b in pairs] for d in range(len(s.dataset))]
    )
    rs = [np.corrcoef(vec[i], vec[j])[0, 1] for i, j in itertools.combinations(range(len(vec)), 2)]
    return float(np.median(rs))


def test_top_pair_gaps_against_a_table_bootstrap_and_by_hand():
    """The gap between the most consistent category pair and the next: its value by hand, its
    interval the same as a bootstrap over the plain table of the two pairs (datasets resampled)."""
    rng = np.random.default_rng(11)
    sim = _sim_of_two_objectives(rng, 9, noise_a=0.02, noise_b=0.3)
    cons = C.consistency_dataset(sim, by=("objective",))
    gaps = A.top_pair_gaps(cons, ["cka_linear", "not_there"], "objective", n_resamples=999)
    assert list(gaps) == ["cka_linear"]
    g = gaps["cka_linear"]
    assert (g["top"], g["runner_up"]) == ("A | A", "B | B")  # A | B: noise, below both
    by_hand = _median_consistency_by_hand(sim, ["a0", "a1", "a2", "a3"]) - (
        _median_consistency_by_hand(sim, ["b0", "b1", "b2", "b3"])
    )
    assert g["estimate"] == pytest.approx(by_hand, abs=1e-12)
    table = C.consistency_table(cons, "cka_linear", "objective")
    two = table[table.label.isin(["A | A", "B | B"])].reset_index(drop=True)

    def gap(t: pd.DataFrame) -> float:
        return float(
            t[t.label == "A | A"].consistency.median() - t[t.label == "B | B"].consistency.median()
        )

    plain = S.dataset_bootstrap(two, gap, n_resamples=999)
    for key in ("estimate", "ci_low", "ci_high", "n_bootstrap", "n_datasets"):
        assert g[key] == pytest.approx(plain[key], abs=1e-12), key
    assert g["ci_low"] > 0  # A | A is first by far more than the datasets' chance
    assert g["confidence_level"] == 0.95 and g["n_comparisons"] == 1
    # by default sized as scale_difference's: about 25 draws beyond each end of the interval
    tail = (1 - S.expanded_level(0.95, 9)) / 2
    sized = A.top_pair_gaps(cons, ["cka_linear"], "objective")["cka_linear"]
    assert sized["n_bootstrap"] == max(999, math.ceil(25 / tail)) > 999
    text = T.top_pair_text(gaps, "objective")
    assert "cka_linear: **A | A**, ahead of the next, B | B, by" in text
    assert not T.untested_claims(text)


def test_top_pair_gaps_when_the_first_is_not_told_apart():
    """Two objectives as consistent as each other: the interval of the gap covers 0, and with two
    measures each interval is at the Bonferroni level (wider than alone)."""
    rng = np.random.default_rng(12)
    sim = _sim_of_two_objectives(rng, 9, noise_a=0.15, noise_b=0.15)
    two_measures = xr.merge([sim, sim.rename(cka_linear="rsa")])
    two_measures["rsa"].attrs["measure"] = "rsa"
    cons = C.consistency_dataset(two_measures, by=("objective",))
    alone = A.top_pair_gaps(cons, ["cka_linear"], "objective", n_resamples=999)["cka_linear"]
    gaps = A.top_pair_gaps(cons, ["cka_linear", "rsa"], "objective", n_resamples=999)
    g = gaps["cka_linear"]
    assert g["ci_low"] < 0 < g["ci_high"]
    assert g["confidence_level"] == pytest.approx(0.975) and g["n_comparisons"] == 2
    assert g["ci_low"] <= alone["ci_low"] and g["ci_high"] >= alone["ci_high"]
    text = T.top_pair_text(gaps, "objective")
    assert f"**{g['top']}**, not told apart from the next, {g['runner_up']} (gap" in text
    assert "95% simultaneous CI" in text and "each interval is at 97.5% (Bonferroni)" in text
    assert "(the same under every measure)" in text and not T.untested_claims(text)
    # among the pairs of one objective only (the across pair A | B left out)
    within = A.top_pair_gaps(cons, ["cka_linear"], "objective", n_resamples=99, same_only=True)
    assert {within["cka_linear"]["top"], within["cka_linear"]["runner_up"]} == {"A | A", "B | B"}
    sim = _sim_of_two_objectives(rng, 9, noise_a=0.3, noise_b=0.3, noise_ab=0.01)
    across = C.consistency_dataset(sim, by=("objective",))
    assert (
        A.top_pair_gaps(across, ["cka_linear"], "objective", n_resamples=99)["cka_linear"]["top"]
        == "A | B"
    )
    within = A.top_pair_gaps(across, ["cka_linear"], "objective", n_resamples=99, same_only=True)
    assert {within["cka_linear"]["top"], within["cka_linear"]["runner_up"]} == {"A | A", "B | B"}
    # too few datasets for an interval: not tested, said so
    few = C.consistency_dataset(_sim_of_two_objectives(rng, 4, 0.02, 0.3), by=("objective",))
    g4 = A.top_pair_gaps(few, ["cka_linear"], "objective")["cka_linear"]
    assert np.isnan(g4["ci_low"]) and g4["n_bootstrap"] == 0
    text = T.top_pair_text({"cka_linear": g4}, "objective")
    assert "not tested: no interval, 4 datasets, fewer than" in text
    assert "Each interval" not in text and not T.untested_claims(text)


def test_architecture_mix_splits_within_objective_consistency():
    """Within one objective, same-architecture pairs alike on both datasets (high level) and
    cross-architecture pairs less alike (low level), each with consistency near 0: pooled, the
    level gap alone makes the consistency high (Simpson). The split is recomputed by hand."""
    rng = np.random.default_rng(3)
    archs = ["cnn", "vit", "mlp"]
    ids = [f"{a}-{o}-s{s}" for o in ("sup", "ssl") for a in archs for s in range(3)]
    M, D = len(ids), 4
    arch = np.array([i.split("-")[0] for i in ids])
    obj = np.array(["Supervised" if "-sup-" in i else "Self-Supervised" for i in ids])
    level = np.where(arch[:, None] == arch[None], 0.85, 0.55)
    S = level[None] + 0.05 * rng.normal(size=(D, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    S[:, np.arange(M), np.arange(M)] = 1.0
    da = xr.DataArray(
        S,
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": [f"d{k}" for k in range(D)],
            "model_a": ids,
            "model_b": ids,
            "objective_a": ("model_a", obj),
            "objective_b": ("model_b", obj),
            "architecture_class_a": ("model_a", arch),
            "architecture_class_b": ("model_b", arch),
        },
    )
    mix = C.architecture_mix(da)
    ia, ib = np.triu_indices(M, k=1)
    for cat, row in mix.iterrows():
        within = (obj[ia] == cat) & (obj[ib] == cat)
        same = within & (arch[ia] == arch[ib])
        for column, mask in (("all", within), ("same architecture", same),
                             ("across architectures", within & ~same)):  # fmt: skip
            v = S[:, ia[mask], ib[mask]]
            rs = [np.corrcoef(v[a], v[b])[0, 1] for a, b in itertools.combinations(range(D), 2)]
            assert row[column] == pytest.approx(np.mean(rs), abs=1e-12), (cat, column)
        assert row["pairs same"] == same.sum() == 9 and row["pairs across"] == 27
        assert row["similarity same"] == pytest.approx(S[:, ia[same], ib[same]].mean())
    assert (mix["all"] > mix[["same architecture", "across architectures"]].max(axis=1) + 0.3).all()
    text = T.architecture_mix_text(mix)
    assert "Self-Supervised and Supervised, the consistency of all pairs lies above both" in text
    assert "Simpson's paradox" in text and not T.untested_claims(text)
    assert "cannot be split" in T.architecture_mix_text(mix.iloc[:0])


def _pair_consistency_by_hand(sim: xr.DataArray, a: str, b: str) -> float:
    """Pearson r between two datasets' upper-triangle model-pair similarities, in float64."""
    iu = np.triu_indices(sim.sizes["model_a"], k=1)
    x = sim.sel(dataset=a).transpose("model_a", "model_b").values[iu]
    y = sim.sel(dataset=b).transpose("model_a", "model_b").values[iu]
    return float(np.corrcoef(x, y)[0, 1])


def test_a_chapter_of_some_models_shows_their_consistency(tmp_path):
    """Consistency correlates model-pair similarities across datasets, so a chapter given
    ``models=`` must show the consistency of those models' pairs, not the whole run's (chapters
    read consistency.nc, computed over every model of the run, and printed it for the subset)."""
    path = write_fake_run(tmp_path / "run", n_per_objective=3, features=False)
    whole = CH.load_run(path)
    keep = [str(m) for m in whole.similarity.model_a.values[::2]]  # 6 of 12
    ch = CH.open_chapter(path, models=keep)
    assert list(ch.sim.model_a.values) == keep and ch.run.selection == "6 of 12 models"
    cons = ch.run.consistency["consistency"].sel(measure="cka_linear", group_pair="all")
    full = whole.consistency["consistency"].sel(measure="cka_linear", group_pair="all")
    sim = whole.similarity["cka_linear"].sel(model_a=keep, model_b=keep)
    gaps = []
    for a, b in itertools.combinations([str(d) for d in sim.dataset.values], 2):
        want = _pair_consistency_by_hand(sim, a, b)
        assert float(cons.sel(dataset_a=a, dataset_b=b)) == pytest.approx(want, abs=1e-12)
        gaps.append(abs(want - float(full.sel(dataset_a=a, dataset_b=b))))
    assert max(gaps) > 0.01  # the whole run's numbers are not the subset's
    # the grouped rows and the anchors are the subset's as well
    n_obj = ch.run.consistency["n_pairs"].sel(group_pair=ch.run.consistency.group_pair.values[1])
    assert int(n_obj) < int(whole.consistency["n_pairs"].isel(group_pair=1))
    assert list(ch.run.consistency.anchor.values) == keep
    # probes of the same models; tables built from the chapter's run follow it
    assert list(ch.run.probes.model.values) == keep
    assert set(C.anchor_table(ch.run.consistency, "cka_linear")["anchor"]) <= set(keep)


def test_a_chapter_of_some_datasets_keeps_their_pairs_and_drops_the_rest(tmp_path):
    path = write_fake_run(tmp_path / "run", n_per_objective=2, features=False)
    whole = CH.load_run(path)
    keep = ["digits", "shapes", "flowers"]
    ch = CH.open_chapter(path, datasets=keep)
    assert ch.datasets == keep and ch.run.selection == "3 of 6 datasets"
    got = ch.run.consistency["consistency"]
    assert list(got.dataset_a.values) == keep == list(got.dataset_b.values)
    want = whole.consistency["consistency"].sel(dataset_a=keep, dataset_b=keep)
    np.testing.assert_array_equal(got.values, want.values)  # values do not depend on the others
    anchors = C.anchor_table(ch.run.consistency, "cka_linear")
    assert set(anchors["dataset_a"]) | set(anchors["dataset_b"]) <= set(keep)
    assert list(ch.run.probes.dataset.values) == keep


def test_a_chapter_of_part_of_a_run_does_not_show_the_whole_runs_tests(tmp_path):
    path = write_fake_run(tmp_path / "run", n_per_objective=2, features=False)
    S.save(pd.DataFrame(columns=S.COLUMNS), path)
    write_manifest_for(path)
    assert CH.open_chapter(path).run.selection == ""
    assert A.controlled_tests(CH.open_chapter(path).run)[0] is not None
    models = [str(m) for m in CH.load_run(path).similarity.model_a.values[:4]]
    for kw in ({"models": models}, {"datasets": ["digits", "counts"]}):
        run = CH.open_chapter(path, **kw).run
        tests, reason = A.controlled_tests(run)
        assert tests is None
        assert run.selection in reason and "not recomputed" in reason
        assert "not tested here" in T.controlled_answer(tests, reason)


def test_a_chapter_of_two_models_says_consistency_needs_three(tmp_path):
    path = write_fake_run(tmp_path / "run", n_per_objective=2, features=False)
    models = [str(m) for m in CH.load_run(path).similarity.model_a.values[:2]]
    ch = CH.open_chapter(path, models=models)
    assert ch.run.consistency is None
    why = ch.need("consistency")
    assert "at least 3 models" in why and "keeps 2" in why and "2 of " in why
    # a run that wrote no consistency.nc says so, whatever part of it a chapter shows
    (path / "consistency.nc").unlink()
    write_manifest_for(path)
    assert "no consistency.nc" in CH.open_chapter(path, models=models + ["sel-con-0"]).need(
        "consistency"
    )


def test_a_chapters_selection_names_what_it_cannot_find(tmp_path):
    path = write_fake_run(tmp_path / "run", n_per_objective=2, features=False)
    with pytest.raises(InputError, match=r"'nope'.* not in this run; its models are sup-"):
        CH.open_chapter(path, models=["sup-con-0", "nope"])
    with pytest.raises(InputError, match="'digits' given more than once"):
        CH.open_chapter(path, datasets=["digits", "counts", "digits"])
    with pytest.raises(InputError, match="empty list"):
        CH.open_chapter(path, models=[])
    with pytest.raises(InputError, match=r"not a list; papermill's -p passes strings.*-y"):
        CH.open_chapter(path, models='["sup-con-0", "sup-tra-1"]')  # papermill -p of a list
    ch = CH.open_chapter(path, datasets="digits")  # one id as a string, not its letters
    assert ch.datasets == ["digits"]
    same = CH.open_chapter(path, models=list(CH.load_run(path).similarity.model_a.values[::-1]))
    assert same.run.selection == ""  # every model, another order: the whole run


def test_same_category_share_splits_a_factors_spread_by_same_and_cross_pairs():
    """Means 0.8, 0.6, 0.7 for pairs of one category and 0.3, 0.2, 0.4 for pairs of two: grand
    mean 0.5, between-group sum of squares 3 * 0.2^2 * 2 = 0.24 of a total 0.28, so 6/7; the other
    factor's rows, the pooled view and a control row are not read."""
    pairs = [("a", "a", 0.8), ("b", "b", 0.6), ("c", "c", 0.7)]
    pairs += [("a", "b", 0.3), ("a", "c", 0.2), ("b", "c", 0.4)]
    base = {"measure": "cka_linear", "analysis": "category_pair", "ci_low": 0.0, "ci_high": 1.0}
    rows = [
        {**base, "view": "separate", "factor": "objective", "group_a": a, "group_b": b,
         "estimate": m, "n_model_pairs": 9}
        for a, b, m in pairs
    ]  # fmt: skip
    rows += [
        {**rows[0], "factor": "architecture", "estimate": 0.1},
        {**rows[3], "view": "pooled", "estimate": 0.9},
        {**rows[3], "factor": "control", "group_b": "Random", "estimate": 0.0},
    ]
    tests = pd.DataFrame(rows)
    got = A.same_category_share(tests, "cka_linear", "objective")
    assert got["share"] == pytest.approx(6 / 7, abs=1e-12)
    assert got["same_mean"] == pytest.approx(0.7) and got["cross_mean"] == pytest.approx(0.3)
    assert (got["n_same"], got["n_cross"]) == (3, 3)
    assert A.same_category_share(tests, "cka_linear", "architecture") == {}  # one kind only
    text = T.same_category_share_text({"objective": got, "architecture": {}})
    assert text.startswith(
        "Share of each factor's spread of category-pair means that lies between pairs of one "
        "category and pairs of two: objective 86% (pairs of one objective 0.70 on average over 3 "
        "category pairs, of two 0.30 over 3) (described, not tested)."
    )
    assert T.same_category_share_text({"objective": {}}) == ""


def test_design_and_sources_tables_say_what_each_count_is_and_show_whole_numbers(repo_root):
    """The study-numbers page's design table had four rows reading "all" (64, 2016, 23, 253) with
    no column saying models, model pairs, datasets or dataset pairs; its sources table showed
    counts as 2016.00 and cut descriptions at 50 characters."""
    from repsim import reference as R

    study = R.load_study_numbers()
    design = study[study["quantity"].isin(R.COUNTS)]
    comparison = pd.DataFrame(
        {
            "quantity": design["quantity"],
            "measure": "",
            "models": design["models"],
            "dataset_a": "",
            "dataset_b": "",
            "domain": design["domain"],
            "study": design["value"],
            "run": np.nan,
            "status": "not in run",
            "run_basis": "",
        }
    )
    out = A.study_beside_run(comparison, list(R.COUNTS))
    assert out.columns[0] == "count"
    want = {"n_models": "models", "n_model_pairs": "model pairs", "n_datasets": "datasets"}
    for q, words in want.items():
        assert set(out.loc[design["quantity"] == q, "count"]) == {words}
    assert out.set_index("count").loc["model pairs", A.STUDY_LABEL] == 2016
    consistency = A.study_beside_run(comparison.assign(quantity="consistency"), "consistency")
    assert "count" not in consistency.columns
    sources = A.study_sources(study)
    assert list(sources.columns) == ["id", A.STUDY_LABEL, "description", "location"]
    by_id = sources.set_index("id")[A.STUDY_LABEL]
    assert by_id["design/n_model_pairs/all"] == "2016"
    assert by_id["consistency/cka_linear/Image-Text/ImageNet-Flowers"] == "0.70"  # as published
    more = study.assign(value=study["value"].where(study["id"] != study["id"].iloc[0], 0.725))
    assert A.study_sources(more)[A.STUDY_LABEL].iloc[0] == "0.725"  # never rounded off
    assert (sources["description"] == study["description"].to_numpy()).all()


def test_page_tables_never_show_a_signed_value_as_zero_nor_a_mantel_p_across_alpha():
    """Interval ends of 0.0004 and -0.0004 showed as 0.0 and -0.0 (0.000, -0.000) beside a
    sentence whose interval excludes 0; the behaviour table's Mantel p of 0.0496 as 0.050 and
    an r of -0.0004, counted as negative, as -0.000."""
    table = pd.DataFrame(
        {
            "estimate": [0.03, 0.0],
            "ci_low": [0.0004, -0.2],
            "ci_high": [0.2, -0.0004],
            "difference": [0.0004, np.nan],
            "pearson_r": [-0.0004, 0.5],
            "pearson_mantel_p": [0.0496, 0.0004],
            "n_pairs": [10, 10],
        }
    )
    out = A.page_table(table)
    assert out["ci_low"].tolist() == ["0.0004", "-0.200"]
    assert out["ci_high"].tolist() == ["0.200", "-0.0004"]
    assert out["estimate"].tolist() == ["0.030", "0.000"]
    assert out["difference"].iloc[0] == "0.0004" and pd.isna(out["difference"].iloc[1])
    assert out["pearson_r"].tolist() == ["-0.0004", "0.500"]
    assert out["pearson_mantel_p"].tolist() == ["0.0496", "< 0.001"]
    assert out["n_pairs"].tolist() == [10, 10]
    near = A.page_table(pd.DataFrame({"r": [0.8996, 0.9]}), against={"r": 0.9})
    assert near["r"].tolist() == ["0.8996", "0.900"]


def test_the_behaviour_chapter_shows_its_table_through_page_table():
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "08_behaviour.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "display(A.page_table(corr.set_index" in code and ".round(3)" not in code


def test_rank_sum_tables_show_each_p_on_the_side_of_its_threshold():
    """A p of 0.00499 below 0.01 / 2 showed as 5.0e-03, the threshold, beside 'below thr.' True
    (and its Bonferroni p of 0.00998 as 1.0e-02, alpha itself)."""
    tests = pd.DataFrame(
        {
            "group_a": ["A", "A"],
            "group_b": ["B", "C"],
            "n_a": [3, 3],
            "n_b": [3, 3],
            "median_a": [0.5, 0.5],
            "median_b": [0.2, 0.4],
            "statistic": [2.9, 0.5],
            "p": [0.00499, 0.5],
            "p_min": [0.001, 0.001],
        }
    )
    tests["p_bonferroni"] = np.minimum(tests["p"] * 2, 1.0)
    tests["p_threshold"] = 0.01 / 2
    tests["significant"] = tests["p_bonferroni"] < 0.01
    out = A.rank_sum_display(tests, alpha=0.01)
    assert out["p"].tolist() == ["4.99e-03", "5.0e-01"]
    assert out["p Bonferroni"].tolist() == ["9.98e-03", "1.0e+00"]
    assert out["below thr."].tolist() == [True, False]
    # the verdict is p m < alpha: at a float tie with p < alpha / m (m = 43) it is False, and
    # p is shown at or above the threshold, not as 2.3e-04 below it
    tie = pd.concat([tests.iloc[[1]]] * 43, ignore_index=True)
    tie.loc[0, "p"] = 0.0002325581395348837
    tie["p_bonferroni"] = np.minimum(tie["p"] * 43, 1.0)
    tie["significant"] = tie["p_bonferroni"] < 0.01
    assert tie.loc[0, "p"] < 0.01 / 43 and not tie.loc[0, "significant"]
    shown = A.rank_sum_display(tie, alpha=0.01)["p"].iloc[0]
    assert float(shown) * 43 >= 0.01, shown


def _comparison(run: float, status: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "quantity": ["consistency"],
            "measure": ["cka_linear"],
            "models": ["all"],
            "dataset_a": ["a"],
            "dataset_b": ["b"],
            "domain": [""],
            "study": [0.70],
            "run": [run],
            "difference": [run - 0.70],
            "tolerance": [0.05],
            "status": [status],
            "run_basis": ["basis"],
        }
    )


def test_study_tables_show_a_run_value_on_the_side_of_its_tolerance():
    """Chapter 2 rounds its table to 3 decimals: a run value of 0.7504, outside 0.70 +- 0.05,
    showed as 0.750, on the tolerance's edge, beside 'outside tolerance'."""
    out = A.study_beside_run(_comparison(0.7504, "outside tolerance"), "consistency").round(3)
    assert out["this run"].tolist() == ["0.7504"]
    assert out[A.STUDY_LABEL].tolist() == ["0.70"]  # as published, as the sources table shows it
    inside = A.study_beside_run(_comparison(0.7496, "within tolerance"), "consistency").round(3)
    assert inside["this run"].tolist() == ["0.750"]  # on the edge: within, as the status says
    other = A.study_beside_run(_comparison(0.7504, "other models"), "consistency").round(3)
    assert other["this run"].tolist() == ["0.750"]  # no verdict: three decimals
