"""Tests of repsim.behavior against a direct computation with scipy.stats."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from repsim.behavior import (
    PAIR_COLUMNS,
    behavior_correlation,
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
        assert row.pearson_p == pytest.approx(stats.pearsonr(s, g)[1])


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
    pd.testing.assert_frame_equal(behavior_correlation(table), behavior_correlation(sim, acc))
    ds = behavior_correlation(table).set_index("dataset").to_xarray()
    assert ds["pearson_r"].dims == ("dataset",)


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
