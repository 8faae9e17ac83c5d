"""The simulations behind the book's rules on dataset pairs (repsim.simulations): they behave as
their model says, and the numbers the methods page and the code quote are the ones they compute."""

from pathlib import Path

import pytest

from repsim import simulations as S

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
