"""Tests of repsim.behavior against a direct computation with scipy.stats."""

from __future__ import annotations

from itertools import combinations, permutations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from repsim.behavior import (
    PAIR_COLUMNS,
    behavior_correlation,
    behavior_link_test,
    correlation_by_domain,
    pair_table,
)
from repsim.errors import InputError

MODELS = ["m0", "m1", "m2", "m3", "m4"]
DATASETS = ["flowers", "pets", "pcam", "dsprites"]
DOMAINS = ["single", "single", "specialized", "structured"]


def _inputs(rng):
    raw = rng.uniform(0, 1, size=(len(DATASETS), len(MODELS), len(MODELS)))
    sim = xr.DataArray(
        (raw + raw.transpose(0, 2, 1)) / 2,
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": DATASETS,
            "model_a": MODELS,
            "model_b": MODELS,
            "domain": ("dataset", DOMAINS),
        },
    )
    acc = xr.DataArray(
        rng.uniform(0.3, 0.9, size=(len(MODELS), len(DATASETS), 3)),
        dims=("model", "dataset", "seed"),
        coords={"model": MODELS, "dataset": DATASETS, "seed": [0, 1, 2]},
    )
    return sim, acc


def test_pair_table_rows_match_a_hand_computation(rng):
    sim, acc = _inputs(rng)
    table = pair_table(sim, acc)
    assert list(table.columns) == PAIR_COLUMNS
    assert len(table) == len(DATASETS) * 10  # 5 models -> 10 unordered pairs
    mean_acc = acc.mean("seed")
    row = table[(table.dataset == "pcam") & (table.model_a == "m1") & (table.model_b == "m3")]
    assert len(row) == 1
    a, b = (
        float(mean_acc.sel(model="m1", dataset="pcam")),
        float(mean_acc.sel(model="m3", dataset="pcam")),
    )
    assert row.similarity.item() == pytest.approx(
        float(sim.sel(dataset="pcam", model_a="m1", model_b="m3"))
    )
    assert row.gap.item() == pytest.approx(abs(a - b))
    assert row.better_accuracy.item() == pytest.approx(max(a, b))
    assert row.domain.item() == "specialized"
    assert not (table.model_a == table.model_b).any()


def test_correlations_equal_scipy_on_all_unordered_pairs(rng):
    sim, acc = _inputs(rng)
    out = behavior_correlation(sim, acc)
    assert list(out.dataset) == DATASETS
    mean_acc = acc.mean("seed")
    for _, row in out.iterrows():
        s, g = [], []
        for f, h in combinations(MODELS, 2):
            s.append(float(sim.sel(dataset=row.dataset, model_a=f, model_b=h)))
            g.append(
                abs(
                    float(
                        mean_acc.sel(model=f, dataset=row.dataset)
                        - mean_acc.sel(model=h, dataset=row.dataset)
                    )
                )
            )
        assert row.n_pairs == 10
        assert row.pearson_r == pytest.approx(stats.pearsonr(s, g)[0])
        assert row.spearman_r == pytest.approx(stats.spearmanr(s, g)[0])


def test_grouped_by_domain(rng):
    sim, acc = _inputs(rng)
    per = behavior_correlation(sim, acc)
    dom = correlation_by_domain(per).set_index("domain")
    single = per[per.domain == "single"]
    assert dom.loc["single", "n_datasets"] == 2
    assert dom.loc["single", "pearson_mean"] == pytest.approx(single.pearson_r.mean())
    assert dom.loc["single", "spearman_median"] == pytest.approx(single.spearman_r.median())
    assert set(dom.index) == set(DOMAINS)


def test_one_triangle_missing_models_and_undefined_r(rng):
    sim, acc = _inputs(rng)
    upper = sim.where(np.triu(np.ones((5, 5), bool), 1)[None])  # only f-before-g filled
    extra = acc.mean("seed").reindex(model=[*MODELS, "m_extra"], fill_value=0.5)
    extra.loc[{"model": "m2", "dataset": "pets"}] = np.nan
    table = pair_table(upper, extra)
    full = pair_table(sim, acc)
    assert "m_extra" not in set(table.model_a) | set(table.model_b)
    assert len(table) == len(full) - 4  # the four pets pairs with m2 are dropped
    merged = table.merge(full, on=["dataset", "model_a", "model_b"])
    np.testing.assert_allclose(merged.similarity_x, merged.similarity_y)
    const = acc.copy()
    const.loc[{"dataset": "pets"}] = 0.5  # every gap zero: r undefined
    out = behavior_correlation(sim, const).set_index("dataset")
    assert np.isnan(out.loc["pets", "pearson_r"]) and np.isfinite(out.loc["pcam", "pearson_r"])


def test_table_input_and_xarray_form(rng):
    sim, acc = _inputs(rng)
    table = pair_table(sim, acc)
    from_table, from_arrays = behavior_correlation(table), behavior_correlation(sim, acc)
    pd.testing.assert_frame_equal(
        from_table.drop(columns="mean_accuracy"), from_arrays.drop(columns="mean_accuracy")
    )
    assert from_table["mean_accuracy"].isna().all()  # a pair table holds no single accuracies
    means = acc.mean("seed") if "seed" in acc.dims else acc
    for row in from_arrays.itertuples():
        want = float(np.mean(means.sel(dataset=row.dataset).values))
        assert row.mean_accuracy == pytest.approx(want, abs=1e-12)
    ds = behavior_correlation(table).set_index("dataset").to_xarray()
    assert ds["pearson_r"].dims == ("dataset",)


def test_a_dataset_without_accuracies_keeps_its_row(rng):
    """Probes all left out (near chance) on one dataset: its row stays, with no pairs and no r."""
    sim, acc = _inputs(rng)
    gone = str(sim.dataset.values[0])
    acc = acc.where(acc["dataset"] != gone)
    out = behavior_correlation(sim, acc).set_index("dataset")
    assert list(out.index) == list(map(str, sim.dataset.values))
    assert out.loc[gone, "n_pairs"] == 0 and np.isnan(out.loc[gone, "pearson_r"])
    assert np.isnan(out.loc[gone, "mean_accuracy"])
    assert out.drop(index=gone)["pearson_r"].notna().all()


def test_errors_say_what_to_do(rng):
    sim, acc = _inputs(rng)
    with pytest.raises(InputError, match="Select one measure"):
        pair_table(sim.expand_dims(measure=["cka"]), acc)
    with pytest.raises(InputError, match="dims"):
        pair_table(sim, acc.rename(model="net"))
    with pytest.raises(InputError, match="at least 2 models"):
        pair_table(sim, acc.assign_coords(model=["x0", "x1", "x2", "x3", "x4"]))
    per = behavior_correlation(sim.drop_vars("domain"), acc)
    with pytest.raises(InputError, match="domain"):
        correlation_by_domain(per)


# ------------------------------------------------------------------------------ probes near chance
def _acc(values: dict[tuple[str, str], list[float]]) -> xr.DataArray:
    models = sorted({m for m, _ in values})
    datasets = sorted({d for _, d in values})
    A = np.array([[values[(m, d)] for d in datasets] for m in models])
    return xr.DataArray(
        A, dims=("model", "dataset", "seed"), coords={"model": models, "dataset": datasets}
    )


def test_chance_rule_by_hand():
    from repsim.behavior import probe_chance

    # chance on "ten" is 0.10, threshold 0.15 (margin 0.05)
    acc = _acc(
        {
            ("a", "ten"): [0.50, 0.52, 0.54],  # far above: kept
            ("b", "ten"): [0.16, 0.17, 0.18],  # mean 0.17, CI low 0.17 - 4.303 * 0.01 / sqrt 3
            ("c", "ten"): [0.30, 0.10, 0.20],  # mean 0.20, wide interval reaching below 0.15
            ("a", "two"): [0.56, 0.56, 0.56],  # chance 0.5, threshold 0.55: kept (0.56 > 0.55)
            ("b", "two"): [0.54, 0.54, 0.54],  # below the threshold: left out
            ("c", "two"): [0.90, 0.90, 0.90],
        }
    )
    t = probe_chance(acc, {"ten": 10, "two": 2}).set_index(["model", "dataset"])
    q = 0.975  # t quantile with 2 degrees of freedom in closed form: (2q - 1) / sqrt(2q(1 - q))
    half_b = (2 * q - 1) / np.sqrt(2 * q * (1 - q)) * 0.01 / np.sqrt(3)  # t * sd / sqrt(n)
    # scipy's t quantile is a numerical inverse (1.6e-10 off here, and it differs by release)
    assert t.loc[("b", "ten"), "ci_low"] == pytest.approx(0.17 - half_b, abs=1e-10)
    assert t.loc[("b", "ten"), "chance"] == pytest.approx(0.1)
    assert t.loc[("b", "ten"), "threshold"] == pytest.approx(0.15)
    near = t["near_chance"].to_dict()
    assert near == {
        ("a", "ten"): False,
        ("a", "two"): False,  # 0.56 > 0.55
        ("b", "ten"): True,  # CI low 0.1452 <= 0.15, though the mean 0.17 is above it
        ("b", "two"): True,  # 0.54 <= 0.55
        ("c", "ten"): True,  # CI low 0.20 - 0.248 < 0.15
        ("c", "two"): False,
    }
    # one seed: the accuracy itself against the threshold; unknown classes: kept
    one = probe_chance(acc.isel(seed=[0]), {"ten": 10})
    row = one[(one.model == "c") & (one.dataset == "ten")].iloc[0]
    assert row.ci_low == row.accuracy == pytest.approx(0.30) and not row.near_chance
    assert not one[one.dataset == "two"]["near_chance"].any()
    assert (one[one.dataset == "two"]["n_classes"] == 0).all()
    # at the threshold exactly ("does not exceed"): 1/4 + 0.25 = 0.5 in binary, no rounding
    edge = _acc({("a", "four"): [0.5], ("b", "four"): [0.5 + 2**-20]})
    flags = probe_chance(edge, {"four": 4}, margin=0.25).set_index("model")["near_chance"]
    assert flags.to_dict() == {"a": True, "b": False}


def test_near_chance_probes_leave_the_correlations():
    from repsim.behavior import (
        behavior_correlation,
        drop_near_chance,
        near_chance_text,
        probe_chance,
    )

    acc = _acc(
        {
            ("a", "ten"): [0.9, 0.9],
            ("b", "ten"): [0.6, 0.6],
            ("c", "ten"): [0.3, 0.3],
            ("d", "ten"): [0.11, 0.12],
        }
    )
    probes = xr.Dataset({"accuracy": acc})
    chance = probe_chance(probes, {"ten": 10})
    assert chance.set_index("model")["near_chance"].to_dict() == {
        "a": False,
        "b": False,
        "c": False,
        "d": True,
    }
    kept = drop_near_chance(probes, chance)
    assert np.isnan(kept["accuracy"].sel(model="d")).all()
    assert np.isfinite(kept["accuracy"].sel(model=["a", "b", "c"])).all()
    models = ["a", "b", "c", "d"]
    S = np.array([[[1, 0.9, 0.5, 0.2], [0.9, 1, 0.6, 0.3], [0.5, 0.6, 1, 0.4], [0.2, 0.3, 0.4, 1]]])
    sim = xr.DataArray(
        S,
        dims=("dataset", "model_a", "model_b"),
        coords={"dataset": ["ten"], "model_a": models, "model_b": models},
    )
    corr = behavior_correlation(sim, kept["accuracy"])
    assert int(corr["n_pairs"].iloc[0]) == 3  # pairs of a, b, c only
    gaps = [0.3, 0.6, 0.3]  # |a-b|, |a-c|, |b-c|
    expected = stats.pearsonr([0.9, 0.5, 0.6], gaps)[0]
    assert corr["pearson_r"].iloc[0] == pytest.approx(expected, abs=1e-12)
    text = near_chance_text(chance)
    assert "plus 0.05" in text and "ten (1 of 4 models; chance 0.10)" in text
    none_near = chance.assign(near_chance=False)
    assert near_chance_text(none_near).endswith("No probe of this run is that close to chance.")
    assert near_chance_text(none_near, selection="3 of 45 models").endswith(
        "No probe of this chapter's part of the run (3 of 45 models) is that close to chance."
    )


def _brute_p(r_of, n: int) -> tuple[float, float]:
    """Observed r and its two-sided p over all n! orderings of the models, by itertools."""
    null = np.array([r_of(np.array(o)) for o in permutations(range(n))])
    t = r_of(np.arange(n))
    return t, min(1.0, 2 * min((null >= t - 1e-12).mean(), (null <= t + 1e-12).mean()))


def _r_with_models_reordered(sim, mean_acc, dataset, order, method=stats.pearsonr) -> float:
    """scipy's r over the unordered pairs, model i taking the accuracy of model order[i]."""
    a = mean_acc.sel(dataset=dataset).values[order]
    s, g = [], []
    for i, j in combinations(range(len(MODELS)), 2):
        s.append(float(sim.sel(dataset=dataset).values[i, j]))
        g.append(abs(a[i] - a[j]))
    return float(method(s, g)[0])


MANTEL = ["pearson_mantel_p", "spearman_mantel_p"]


def test_mantel_p_matches_enumeration_by_hand(rng):
    """The pairs share models, so a p over pairs as if independent is too small: each r's p
    permutes the models (all 5! = 120 orderings here), as scipy-by-hand does."""
    sim, acc = _inputs(rng)
    out = behavior_correlation(sim, acc).set_index("dataset")
    mean_acc = acc.mean("seed")
    for dataset in DATASETS:
        for method, col in ((stats.pearsonr, "pearson"), (stats.spearmanr, "spearman")):
            t, p = _brute_p(
                lambda o, d=dataset, m=method: _r_with_models_reordered(sim, mean_acc, d, o, m), 5
            )
            assert out.loc[dataset, f"{col}_r"] == pytest.approx(t, abs=1e-12)
            assert out.loc[dataset, f"{col}_mantel_p"] == pytest.approx(p, abs=1e-12)
    r_only = behavior_correlation(sim, acc, n_resamples=0).set_index("dataset")
    pd.testing.assert_frame_equal(r_only.drop(columns=MANTEL), out.drop(columns=MANTEL))
    assert r_only[MANTEL].isna().all().all()


def test_behavior_link_test_permutes_models_jointly_by_hand(rng):
    """One ordering of the models for every dataset; the statistic is the mean Pearson r."""
    sim, acc = _inputs(rng)
    mean_acc = acc.mean("seed")

    def mean_r(order):
        return np.mean([_r_with_models_reordered(sim, mean_acc, d, order) for d in DATASETS])

    t, p = _brute_p(mean_r, 5)
    test = behavior_link_test(sim, acc)
    assert test["exact"] and test["n_permutations"] == 120 and test["n_datasets"] == 4
    assert test["statistic"] == pytest.approx(t, abs=1e-12)
    assert test["p_value"] == pytest.approx(p, abs=1e-12)
    assert test["statistic"] == pytest.approx(behavior_correlation(sim, acc).pearson_r.mean())
    # the same from a pair table
    from_table = behavior_link_test(pair_table(sim, acc))
    assert from_table["p_value"] == pytest.approx(p, abs=1e-12)


def test_fixed_models_on_many_datasets_are_not_a_link():
    """Accuracy profiles unrelated to similarity, but both stable over datasets: every dataset
    gives the same sign of r, which a sign test over the 10 datasets calls p = 0.002; permuting
    the models finds no evidence."""
    rng = np.random.default_rng(2)
    m, n_ds = 12, 10
    models, datasets = [f"m{i}" for i in range(m)], [f"d{k}" for k in range(n_ds)]
    stable = rng.uniform(0.2, 0.9, size=(m, m))
    raw = (stable + stable.T)[None] / 2 + rng.normal(0, 0.01, size=(n_ds, m, m))
    sim = xr.DataArray(
        (raw + raw.transpose(0, 2, 1)) / 2,
        dims=("dataset", "model_a", "model_b"),
        coords={"dataset": datasets, "model_a": models, "model_b": models},
    )
    acc = xr.DataArray(
        rng.uniform(0.3, 0.9, size=(m, 1)) + rng.normal(0, 0.01, size=(m, n_ds)),
        dims=("model", "dataset"),
        coords={"model": models, "dataset": datasets},
    )
    corr = behavior_correlation(sim, acc, n_resamples=99)
    assert (corr.pearson_r > 0).all() or (corr.pearson_r < 0).all()
    test = behavior_link_test(sim, acc, n_resamples=999)
    assert test["p_value"] > 0.2


def test_a_lower_triangle_reads_as_the_upper(rng):
    """pair_table reads {f, g} from whichever triangle holds it."""
    sim, acc = _inputs(rng)
    lower = sim.where(np.tril(np.ones((5, 5), bool), -1)[None])
    pd.testing.assert_frame_equal(pair_table(lower, acc), pair_table(sim, acc))


def test_a_model_missing_on_a_dataset_is_not_permuted_there(rng):
    """A model left out as near chance on one dataset takes no part in that dataset's Mantel test:
    its p is the p of the same test without the model."""
    sim, acc = _inputs(rng)
    missing = acc.copy()
    missing.loc[{"model": "m2", "dataset": "pets"}] = np.nan
    with_nan = behavior_correlation(sim, missing).set_index("dataset").loc["pets"]
    keep = [m for m in MODELS if m != "m2"]
    dropped = (
        behavior_correlation(sim.sel(model_a=keep, model_b=keep), acc.sel(model=keep))
        .set_index("dataset")
        .loc["pets"]
    )
    assert with_nan.n_pairs == dropped.n_pairs == 6
    assert with_nan.pearson_r == pytest.approx(dropped.pearson_r, abs=1e-12)
    assert with_nan.pearson_mantel_p == pytest.approx(dropped.pearson_mantel_p, abs=1e-12)


# -- mutation audit (behavior): each test below kills a change that no other test noticed --------
def test_mean_accuracy_counts_only_the_models_of_the_similarity(rng):
    """An accuracy array with an extra model (probed, but not in the similarity array): the
    dataset's mean_accuracy is over the models that enter the pairs, computed here by hand;
    averaging over every model of the accuracy array let the outsider (accuracy 0) pull it down."""
    sim, acc = _inputs(rng)
    extra = xr.zeros_like(acc.isel(model=[0])).assign_coords(model=["outsider"])
    wide = xr.concat([acc, extra], dim="model")
    out = behavior_correlation(sim, wide, n_resamples=0)
    pd.testing.assert_frame_equal(out, behavior_correlation(sim, acc, n_resamples=0))
    for row in out.itertuples():
        want = np.mean([acc.sel(model=m, dataset=row.dataset).values.mean() for m in MODELS])
        assert row.mean_accuracy == pytest.approx(want, abs=1e-12)


def test_domains_follow_the_datasets_when_the_arrays_differ_in_order(rng):
    """The domain coord read from an array whose datasets are in another order (or a superset) is
    selected by dataset name: read positionally, pcam was labelled 'single' and flowers
    'structured' when only the accuracy array, in reverse order, carried domains."""
    sim, acc = _inputs(rng)
    domain = dict(zip(DATASETS, DOMAINS))
    rev = acc.isel(dataset=slice(None, None, -1))
    rev = rev.assign_coords(domain=("dataset", [domain[d] for d in rev.dataset.values]))
    for s, a in ((sim.drop_vars("domain"), rev), (sim, acc.isel(dataset=[3, 1]))):
        table = pair_table(s, a)
        assert (table["domain"] == table["dataset"].map(domain)).all()
        out = behavior_correlation(s, a, n_resamples=0)
        assert list(out["domain"]) == [domain[d] for d in out["dataset"]]


def test_correlation_by_domain_counts_only_datasets_with_a_defined_r():
    """n_datasets counts the datasets whose Pearson r is defined (the ones the mean uses); counting
    rows, a domain with an undefined r claimed 2 datasets for a mean over 1."""
    per = pd.DataFrame(
        {
            "dataset": ["a", "b", "c"],
            "domain": ["nat", "nat", "spec"],
            "pearson_r": [-0.4, np.nan, 0.2],
            "spearman_r": [-0.3, np.nan, 0.1],
        }
    )
    out = correlation_by_domain(per).set_index("domain")
    assert out.loc["nat", "n_datasets"] == 1 and out.loc["spec", "n_datasets"] == 1
    assert out.loc["nat", "pearson_mean"] == pytest.approx(-0.4)


@pytest.mark.parametrize(("margin", "level"), [(1.0, 0.95), (1.5, 0.95), (-0.1, 0.95), (0.05, 1.0)])
def test_probe_chance_refuses_a_margin_or_level_out_of_range(margin, level):
    """A margin of 1 or more above chance marks every probe near chance (accuracy cannot exceed
    1); it must raise, as a negative margin or a confidence level of 1 does."""
    from repsim.behavior import probe_chance

    acc = _acc({("m", "d"): [0.8, 0.9, 0.85]})
    with pytest.raises(InputError, match="margin must be in"):
        probe_chance(acc, {"d": 10}, margin=margin, confidence_level=level)


def test_a_dataset_of_unknown_class_count_is_kept_whatever_its_accuracy():
    """No class count for a dataset: chance is unknown (NaN, threshold NaN) and the probe is kept
    even at accuracy 0.02; reading unknown chance as 0 marked it near chance (0.02 <= 0 + 0.05)."""
    from repsim.behavior import probe_chance

    acc = _acc({("m", "d"): [0.01, 0.02, 0.03], ("m", "e"): [0.01, 0.02, 0.03]})
    out = probe_chance(acc, {"e": 10}).set_index("dataset")
    assert np.isnan(out.loc["d", "chance"]) and np.isnan(out.loc["d", "threshold"])
    assert out.loc["d", "n_classes"] == 0 and not out.loc["d", "near_chance"]
    assert out.loc["e", "near_chance"]  # 10 classes: 0.02 is below chance


def test_probe_chance_uses_the_finite_seeds_only():
    """A seed whose probe failed (NaN): the interval is over the other seeds, by hand here;
    unfiltered, the NaN made accuracy and ci NaN and the probe passed as not near chance."""
    from repsim.behavior import probe_chance

    acc = _acc({("m", "d"): [0.11, np.nan, 0.13]})
    row = probe_chance(acc, {"d": 10}).iloc[0]
    half = stats.t.ppf(0.975, 1) * np.std([0.11, 0.13], ddof=1) / np.sqrt(2)
    assert row.n_seeds == 2 and row.accuracy == pytest.approx(0.12)
    assert row.ci_low == pytest.approx(0.12 - half) and row.near_chance


# -- mutation audit (behaviour), continued: each test kills a change no other test noticed -----
def test_one_model_shared_by_similarity_and_accuracy_is_refused(rng):
    """One shared model has no pair: refused by name (a floor of 1 returned an empty table)."""
    sim, acc = _inputs(rng)
    one = acc.assign_coords(model=["m0", "x1", "x2", "x3", "x4"])
    with pytest.raises(InputError, match="found 1 models"):
        pair_table(sim, one)


def test_behavior_link_counts_the_datasets_with_a_defined_r(rng):
    """Every gap 0 on pets: its r is undefined, so the link rests on 3 datasets, and its
    statistic is the mean of the other three r's."""
    sim, acc = _inputs(rng)
    acc.loc[{"dataset": "pets"}] = 0.5
    test = behavior_link_test(sim, acc, n_resamples=99)
    per = behavior_correlation(sim, acc, n_resamples=0).set_index("dataset")["pearson_r"]
    assert test["n_datasets"] == 3 and np.isnan(per["pets"])
    assert test["statistic"] == pytest.approx(per.drop("pets").mean(), abs=1e-12)


def test_near_chance_probes_lose_their_balanced_accuracy_too():
    from repsim.behavior import drop_near_chance, probe_chance

    acc = _acc({("a", "ten"): [0.9, 0.9], ("d", "ten"): [0.11, 0.12]})
    probes = xr.Dataset({"accuracy": acc, "balanced_accuracy": acc - 0.01})
    kept = drop_near_chance(probes, probe_chance(probes, {"ten": 10}))
    for var in ("accuracy", "balanced_accuracy"):
        assert np.isnan(kept[var].sel(model="d")).all()
        assert np.isfinite(kept[var].sel(model="a")).all()


def test_near_chance_text_says_which_datasets_have_no_class_count():
    from repsim.behavior import near_chance_text, probe_chance

    acc = _acc({("m", "d"): [0.5], ("m", "e"): [0.5]})
    text = near_chance_text(probe_chance(acc, {"e": 10}))
    assert "The number of classes is unknown for d: kept." in text
    assert "unknown" not in near_chance_text(probe_chance(acc, {"d": 4, "e": 10}))
