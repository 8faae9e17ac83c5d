"""The simulations behind the book's rules on dataset pairs (repsim.simulations): they behave as
their model says, and the numbers the methods page and the code quote are the ones they compute."""

from pathlib import Path

import pytest

from repsim import simulations as S
from repsim.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_rank_sum_over_dataset_pairs_is_valid_only_without_dataset_effects():
    # no dataset effect: the pairs are independent and the test keeps its level (1% within
    # Monte Carlo error of 2000 draws); with dataset effects it rejects far too often
    assert S.pair_test_false_positive_rate(10, dataset_sd=0.0) < 0.02
    rates = [S.pair_test_false_positive_rate(10, dataset_sd=s) for s in (0.25, 1.0)]
    assert 0.03 < rates[0] < rates[1] and rates[1] > 0.2


def test_bootstrap_coverage_falls_with_few_datasets():
    few = S.bootstrap_coverage(3, n_draws=300, expanded=False)
    many = S.bootstrap_coverage(10, n_draws=300, expanded=False)
    assert few < 0.7 < 0.85 < many <= 1.0


def test_pair_values_by_their_model():
    import numpy as np

    v = S.pair_values(np.random.default_rng(0), 4000, 4, dataset_sd=1.0, pair_sd=0.0)
    # pairs (0, 1) and (0, 2) share dataset 0: covariance dataset_sd^2, variance 2 dataset_sd^2
    c = np.cov(v[:, 0], v[:, 1])
    assert c[0, 0] == pytest.approx(2.0, rel=0.1) and c[0, 1] == pytest.approx(1.0, rel=0.1)
    assert np.corrcoef(v[:, 0], v[:, 5])[0, 1] == pytest.approx(0.0, abs=0.05)  # (0,1), (2,3)


def test_the_quoted_numbers_are_the_computed_ones():
    """methods.md and stats.MIN_BOOTSTRAP_DATASETS's comment quote these runs of the defaults."""
    coverage = [f"{S.bootstrap_coverage(n, expanded=False):.0%}" for n in (3, 5, 8, 10)]
    expanded = [f"{S.bootstrap_coverage(n):.0%}" for n in (5, 8, 10, 23)]
    rates = [S.pair_test_false_positive_rate(10, dataset_sd=s) for s in (1.0, 0.25, 0.0)]
    methods = " ".join((ROOT / "book" / "methods.md").read_text().split())
    assert (
        f"covered the true median in {coverage[0]} of 1,000 draws at 3 datasets, {coverage[1]} "
        f"at 5, {coverage[2]} at 8 and {coverage[3]} at 10" in methods
    )
    assert (
        f"covered {expanded[0]} at 5 datasets, {expanded[1]} at 8, {expanded[2]} at 10 and "
        f"{expanded[3]} at 23" in methods
    )
    assert (
        f"{rates[0]:.0%} of such tests gave $p < 0.01$, where a valid test gives 1% "
        f"({rates[1]:.0%} when datasets shift their pairs a quarter as much; {rates[2]:.1%} when "
        "they do not shift them)" in methods
    )
    stats_source = " ".join((ROOT / "repsim" / "stats.py").read_text().replace("#:", "").split())
    assert (
        f"over the truth in {coverage[0]} of draws at 3 datasets, {coverage[1]} at 5, "
        f"{coverage[2]} at 8 and {coverage[3]} at 10. The expanded interval the package reports "
        f"(:func:`expanded_level`) covers {expanded[0]} at 5 and {expanded[1]} at 8" in stats_source
    )


def test_the_top_pair_is_said_to_be_ahead_of_a_tied_next_within_a_two_sided_level():
    """The first category pair and the next are chosen on the data their gap's interval comes
    from: with the pairs tied, an order is claimed in no more draws than a two-sided 95%
    interval allows; with a real lead it is claimed; below the bootstrap's minimum number of
    datasets there is no interval and no claim."""
    tied = S.top_pair_false_claims(10, n_draws=200)
    assert tied["intervals"] == tied["draws"] == 200 and tied["claimed"] <= 0.05
    assert S.top_pair_false_claims(10, n_tied=4, n_draws=100)["claimed"] <= 0.05
    assert S.top_pair_false_claims(10, lead=6.0, n_draws=50)["claimed"] >= 0.95
    few = S.top_pair_false_claims(4, n_draws=5)
    assert few == {"claimed": 0.0, "draws": 5, "intervals": 0}
    with pytest.raises(InputError, match="n_tied"):
        S.top_pair_false_claims(10, n_tied=1)


def test_the_quoted_top_pair_rate_is_the_computed_one():
    rate = S.top_pair_false_claims(23, n_draws=400)["claimed"]
    methods = " ".join((ROOT / "book" / "methods.md").read_text().split())
    assert f"ordered them in {rate:.1%} of 400 simulated runs of 23 datasets" in methods


# ------------------------------------------------------------------ the headline's own coverage
def _crossed_zoo(n_datasets: int = 8):
    """2 objectives x 2 architectures x 2 seeds, similarities random around a fixed pattern."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(5)
    rows = [(o, a, s) for o in ("sup", "clip") for a in ("cnn", "vit") for s in range(2)]
    ids = [f"{a}-{o}-s{s}" for o, a, s in rows]
    M = len(ids)
    S = rng.uniform(0.3, 0.7, (M, M))[None] + 0.1 * rng.normal(size=(n_datasets, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    S[:, np.arange(M), np.arange(M)] = 1.0
    objective = ["Supervised" if o == "sup" else "Image-Text" for o, _, _ in rows]
    arch = ["Convolutional" if a == "cnn" else "Transformer" for _, a, _ in rows]
    return xr.DataArray(
        S,
        name="cka_linear",
        dims=("dataset", "model_a", "model_b"),
        coords={
            "dataset": [f"d{i}" for i in range(n_datasets)],
            "model_a": ids,
            "model_b": ids,
            "objective_a": ("model_a", objective),
            "objective_b": ("model_b", objective),
            "architecture_class_a": ("model_a", arch),
            "architecture_class_b": ("model_b", arch),
        },
    )


def test_fitted_datasets_vary_as_the_run_s_do():
    """Many drawn datasets have the run's mean similarity matrix and the run's covariance of
    pair similarities over datasets; each is symmetric and keeps the self-similarity of 1."""
    import numpy as np

    sim = _crossed_zoo()
    drawn = S.fitted_datasets(sim, 20_000, np.random.default_rng(0))
    assert drawn.sizes["dataset"] == 20_000
    assert list(drawn.dataset.values[:3]) == ["sim0", "sim1", "sim2"]
    assert list(drawn.model_a.values) == list(sim.model_a.values)
    assert list(drawn.objective_a.values) == list(sim.objective_a.values)
    X = drawn.values
    np.testing.assert_array_equal(X, X.transpose(0, 2, 1))
    assert (X[:, np.arange(8), np.arange(8)] == 1.0).all()
    iu = np.triu_indices(8, k=1)
    run, new = sim.values[:, iu[0], iu[1]], X[:, iu[0], iu[1]]
    np.testing.assert_allclose(new.mean(0), run.mean(0), atol=0.01)
    np.testing.assert_allclose(np.cov(new.T), np.cov(run.T), atol=0.001)
    # one dataset has no spread to fit
    with pytest.raises(InputError, match="needs 2 or more datasets; got 1"):
        S.fitted_datasets(sim.isel(dataset=[0]), 5, np.random.default_rng(0))


def test_headline_coverage_is_controlled_tests_on_each_draw():
    """Each draw's rows are controlled_tests' objective - architecture and factor rows on the
    datasets drawn for it (with the options given, its seed the draw's; architecture once, its
    two views being the same), the truth is the mean estimate of the truth draws, and covered
    says whether the interval holds it."""
    import numpy as np

    from repsim.stats import controlled_tests, keyed_rng

    sim = _crossed_zoo()
    options = {"n_permutations": 19, "n_bootstrap": 19, "n_null": 3}
    table = S.headline_coverage(
        sim, n_draws=3, options=options, truth_datasets=10, truth_draws=3, seed=4
    )
    assert list(table["draw"]) == [0] * 5 + [1] * 5 + [2] * 5
    diff = "objective - architecture"
    assert list(zip(table["factor"], table["view"]))[:5] == [
        ("objective", "separate"),
        ("architecture", "separate"),
        (diff, "separate"),
        ("objective", "pooled"),
        (diff, "pooled"),
    ]

    def row_of(datasets, factor=diff, view="separate", **kw):
        t = controlled_tests(datasets.to_dataset(), ["cka_linear"], **kw)
        return t[(t.factor == factor) & (t.view == view)].iloc[0]

    truths = [
        row_of(
            S.fitted_datasets(sim, 10, keyed_rng(4, "truth", k)),
            n_permutations=999,
            n_bootstrap=0,
            min_datasets=11,
        ).estimate
        for k in range(3)
    ]
    got = table[(table.view == "separate") & (table.factor == diff)].set_index("draw")
    assert got["truth"].iloc[0] == np.mean(truths) != np.median(truths)
    assert got["truth_se"].iloc[0] == np.std(truths, ddof=1) / np.sqrt(3)
    for k in range(3):
        want = row_of(S.fitted_datasets(sim, 8, keyed_rng(4, "draw", k)), **options, seed=k)
        row = got.loc[k]
        assert (row.estimate, row.ci_low, row.ci_high) == (want.estimate, want.ci_low, want.ci_high)
        assert row.bias == want.bias and np.isfinite(row.bias)
        assert row.covered == (want.ci_low <= np.mean(truths) <= want.ci_high)
    # a factor's rows the same way: the objective's excess SD with SimCLR and Barlow pooled
    pooled = table[(table.view == "pooled") & (table.factor == "objective")].set_index("draw")
    want = row_of(
        S.fitted_datasets(sim, 8, keyed_rng(4, "draw", 2)), "objective", "pooled", **options, seed=2
    )
    assert (pooled.loc[2].estimate, pooled.loc[2].ci_low) == (want.estimate, want.ci_low)
    with pytest.raises(Exception, match="not given below 8 datasets"):
        S.headline_coverage(sim, 7, n_draws=1, options=options)


def test_coverage_summary_by_hand():
    import pandas as pd

    table = pd.DataFrame(
        {
            "factor": ["objective - architecture"] * 4 + ["objective"],
            "view": ["separate"] * 5,
            "estimate": [0.1, 0.2, 0.3, 0.6, 0.05],
            "ci_low": [0.0, 0.25, -0.1, 0.0, 0.0],
            "ci_high": [0.2, 0.4, 0.15, 0.12, 0.1],
            "bias": [0.05, 0.0, -0.1, 0.01, 0.05],
            "truth": [0.2] * 5,
            "truth_se": [0.01] * 5,
        }
    )
    table["covered"] = (table.ci_low <= table.truth) & (table.truth <= table.ci_high)
    summary = S.coverage_summary(table)
    one = summary.loc[("objective", "separate")]  # one row per (factor, view)
    # missed below by [0, 0.1]; without the correction [0.1, 0.2], which holds 0.2
    assert one["draws"] == 1 and one["covered"] == 0 and one["uncorrected_covered"] == 1
    row = summary.loc[("objective - architecture", "separate")]
    assert row["draws"] == 4 and row["covered"] == 0.25  # only [0, 0.2] holds 0.2 (an end)
    assert row["missed_above"] == 0.25 and row["missed_below"] == 0.5
    assert row["bias"] == pytest.approx(0.3 - 0.2) and row["width"] == pytest.approx(0.18)
    assert row["truth"] == 0.2 and row["truth_se"] == 0.01
    assert row["estimate_sd"] == pytest.approx(pd.Series([0.1, 0.2, 0.3, 0.6]).std())
    # without the correction (ci + 2 bias): [0.1, 0.3], [0.25, 0.4], [-0.3, -0.05], [0.02, 0.14]
    assert row["uncorrected_covered"] == 0.25 and row["uncorrected_missed_above"] == 0.25
    assert row["uncorrected_missed_below"] == 0.5
    assert row["bootstrap_bias"] == pytest.approx(-0.01)


def test_headline_coverage_defaults_to_the_run_s_options(monkeypatch):
    """Without options, each draw's intervals are computed with the options ``repsim run`` uses,
    the draw's number as their seed, and the truth with 999 permutations and no bootstrap."""
    from repsim.results import CONTROLLED_TESTS_OPTIONS

    seen = []

    def intervals(sim, options):
        seen.append((sim.sizes["dataset"], dict(options)))
        return {("objective - architecture", "separate"): (0.0, -1.0, 1.0, 0.0)}

    monkeypatch.setattr(S, "_intervals", intervals)
    table = S.headline_coverage(_crossed_zoo(), n_draws=2, truth_datasets=10, truth_draws=2)
    exact = {"n_permutations": 999, "n_bootstrap": 0, "min_datasets": 11}
    runs = {**CONTROLLED_TESTS_OPTIONS}
    assert seen == [(10, exact), (10, exact), (8, {**runs, "seed": 0}), (8, {**runs, "seed": 1})]
    assert list(table["covered"]) == [True, True]
