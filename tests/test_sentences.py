"""Tests of repsim.sentences: the chapters' conclusion sentences, their numbers and every branch."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from repsim import sentences as T
from repsim.errors import InputError


def test_framework_text_places_the_pair_among_all_pairs():
    values = pd.Series([0.1, 0.2, 0.3, np.nan, 0.9])
    text = T.framework_text(28, "a", "b", 0.25, values)
    # 2 of the 4 defined values lie below 0.25; their median is 0.25
    assert text == (
        "Over 28 model pairs, the consistency of **a** and **b** is r = **0.25**; it lies above "
        "50% of the run's 4 dataset pairs (median of all 4: 0.25; its place among this run's "
        "values, described, not tested)."
    )
    assert not T.untested_claims(text)
    # the checker sees such a placement: without its "described" it is flagged
    assert T.untested_claims(text.split(" (median")[0] + ".")
    assert T.framework_text(3, "a", "b", float("nan"), values).endswith("r = **undefined**.")
    assert T.framework_text(3, "a", "b", 0.5, pd.Series([0.4])).endswith("**0.50**.")
    # as in the book, the pair is one of the run's values: placed among the others, so the most
    # consistent pair lies above 100% of them (counting itself it could never say 100%)
    top = T.framework_text(28, "a", "b", 0.9, values)
    assert "it lies above 100% of the run's 3 other dataset pairs (median of all 4: 0.25;" in top


def test_framework_text_drops_only_the_pair_itself_and_places_among_two_values():
    values = pd.Series([0.1, 0.2, 0.3, 0.9])
    # 0.305 is not one of the values (0.3 is near it, not it): all 4 are others, 3 lie below
    text = T.framework_text(28, "a", "b", 0.305, values)
    assert "it lies above 75% of the run's 4 dataset pairs (median of all 4: 0.25;" in text
    # two values, the pair one of them: placed against the one other
    two = T.framework_text(28, "a", "b", 0.5, pd.Series([0.2, 0.5]))
    assert "it lies above 100% of the run's 1 other dataset pair (median of all 2: 0.35;" in two


def test_transfer_text_describes_the_spread_per_category_pair_without_ranking():
    table = pd.DataFrame(
        {
            "category_pair": ["A | A", "A | A", "A | B"],
            "mean": [0.5, 0.7, 0.4],
            "std": [0.1, 0.3, 0.05],
        }
    )
    by = table.groupby("category_pair")["std"].agg(["median", "count"]).sort_values("median")
    text = T.transfer_text(table, by)
    # medians over model pairs, each of its own column (it read as one "median pair" and its mean)
    assert text.startswith(
        "Over model pairs, the median standard deviation of a pair's similarity across datasets "
        "is **0.10** (the median of their mean similarities: 0.50)."
    )
    assert "from 0.05 (A | B) to 0.20 (A | A), described, not ranked" in text
    assert not T.untested_claims(text)
    assert "category pair" not in T.transfer_text(table, by.iloc[:1])


def test_transform_text_says_whether_consistency_moves():
    t = pd.DataFrame(
        {"none": [0.5, 0.6, 0.7], "arccos": [0.52, 0.6, 0.73], "tan": [0.5, 0.61, 0.7]}
    )
    text = T.transform_text(t)
    assert text.startswith("Over 3 dataset pairs, consistency changes with arccos at most 0.03")
    assert "arccos at most 0.03 (median 0.02; 0 of 3 by 0.05 or more)" in text
    assert "tan at most 0.01 (median 0.00; 0 of 3 by 0.05 or more)" in text
    assert text.endswith("practically unchanged.")
    moved = T.transform_text(t.assign(tan=[0.5, 0.7, 0.64]))
    assert "tan at most 0.10 (median 0.06; 2 of 3 by 0.05 or more)" in moved
    assert moved.endswith("some dataset pairs by 0.05 or more on this run.")
    # exactly at the tolerance counts as moved (the sentence says "or more")
    edge = T.transform_text(pd.DataFrame({"none": [0.5], "arccos": [0.75], "tan": [0.5]}), 0.25)
    assert "1 of 1 by 0.25 or more" in edge and edge.startswith("Over 1 dataset pair,")
    # pairs undefined under a transform are not counted in the denominator
    part = T.transform_text(t.assign(arccos=[0.52, np.nan, 0.73]))
    assert part.startswith("Over 2 dataset pairs,") and "0 of 2 by 0.05" in part
    for s in (text, moved, edge, part):
        assert not T.untested_claims(s)
    # a chapter's part: the verdict is of the part, not the run
    of_part = T.transform_text(t, selection="2 of 5 datasets")
    assert of_part.endswith(
        "leave the consistency of this chapter's part of the run (2 of 5 datasets) practically "
        "unchanged."
    )
    assert T.transform_text(t.assign(tan=[0.5, 0.7, 0.64]), selection="3 of 45 models").endswith(
        "or more on this chapter's part of the run (3 of 45 models)."
    )


def test_grouping_skip_text_each_reason():
    models = pd.DataFrame(
        {"objective": ["S", "T", "T"], "size_class": ["small"] * 3, "data_class": ["", "", ""]}
    )
    full = pd.DataFrame({"consistency": [0.5]})
    assert "not recorded" in T.grouping_skip_text("data_class", models, full)
    assert "not recorded" in T.grouping_skip_text("architecture_class", models, full)
    assert "same size_class (small)" in T.grouping_skip_text("size_class", models, full)
    empty = T.grouping_skip_text("objective", models, full.iloc[:0])
    assert "no category pair has 3 or more model pairs with known objective" in empty
    assert T.grouping_skip_text("objective", models, full) is None
    # a field recorded for some of the models is drawn (the others are its unknown category)
    some = models.assign(data_class=["toy", "", "real"])
    assert T.grouping_skip_text("data_class", some, full) is None


def test_grouping_spread_text_three_branches():
    two = pd.DataFrame(
        {"group_by": ["objective", "size_class"], "range": [0.4, 0.1], "n_pairs": [10, 3]}
    )
    assert T.grouping_spread_text(two) == (
        "Range of the category-pair medians: objective 0.40 over 10 category pairs, size_class "
        "0.10 over 3 category pairs. The ranges are described, not compared: a grouping with more "
        "category pairs spreads more by chance alone, and the groupings' category pairs share "
        "models and datasets."
    )
    with_control = two.assign(range_trained=[0.25, 0.1], n_trained=[6, 3])
    assert T.grouping_spread_text(with_control).startswith(
        "Range of the category-pair medians: objective 0.40 over 10 category pairs (0.25 over the "
        "6 without the untrained control), size_class 0.10 over 3 category pairs. "
    )
    assert "Only **objective** has two or more" in T.grouping_spread_text(two.iloc[:1])
    assert "cannot be compared" in T.grouping_spread_text(two.iloc[:0])


def test_measure_texts_of_the_local_global_chapter():
    agree = pd.DataFrame(
        {"dataset": ["x", "y", "x"], "r": [0.9, 0.5, np.nan], "measure": ["m1", "m1", "m2"]}
    )
    text = T.measure_agreement_text(agree, "cka")
    assert "median Spearman **0.70** (minimum 0.50, on y with m1)" in text
    assert "No dataset" in T.measure_agreement_text(agree.iloc[2:], "cka")
    first = {"top": "A | B", "runner_up": "A | A", "estimate": 0.4, "ci_low": 0.1,
             "ci_high": 0.6, "n_datasets": 9, "confidence_level": 0.975, "n_comparisons": 2}  # fmt: skip
    tied = {**first, "top": "A | A", "runner_up": "A | B", "estimate": 0.2, "ci_low": -0.1}
    text = T.top_pair_text({"m1": first, "m2": tied}, "objective")
    assert text == (
        "Category pair with the highest median consistency under each measure (not the same "
        "under every measure), and its gap to the next pair: m1: **A | B**, ahead of the next, "
        "A | A, by 0.40 (95% simultaneous CI 0.10 to 0.60); m2: **A | A**, not told apart from "
        "the next, A | B (gap 0.20, 95% simultaneous CI -0.10 to 0.60). Each interval resamples "
        "the 9 datasets with the models and both pairs fixed; with 2 measures each interval is "
        "at 97.5% (Bonferroni), so both cover together at 95%."
    )
    assert not T.untested_claims(text)
    alone = {**first, "confidence_level": 0.95, "n_comparisons": 1}
    text = T.top_pair_text({"m1": alone}, "objective")
    assert "(the same under every measure)" in text and "by 0.40 (95% CI 0.10 to 0.60)." in text
    assert "Bonferroni" not in text
    behind = {**first, "ci_low": -0.3, "ci_high": -0.05}  # the resamples put the next ahead
    assert "**A | B** by the median, but the next, A | A, is ahead in the resamples" in (
        T.top_pair_text({"m1": behind}, "objective")
    )
    touching = {**first, "ci_low": 0.0}  # 0 is not excluded
    assert "not told apart" in T.top_pair_text({"m1": touching}, "objective")
    assert "not told apart" in T.top_pair_text({"m1": {**behind, "ci_high": 0.0}}, "objective")
    none = {**first, "ci_low": np.nan, "ci_high": np.nan, "n_datasets": 5}
    text = T.top_pair_text({"m1": none}, "objective")
    assert "**A | B**, 0.40 above the next, A | A (not tested: no interval, 5 datasets" in text
    assert "Each interval" not in text
    for gaps in ({"m1": behind}, {"m1": touching}, {"m1": none}):
        assert not T.untested_claims(T.top_pair_text(gaps, "objective"))
    assert "Fewer than two objective pairs" in T.top_pair_text({}, "objective")
    pairs = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "y": [0.2, 0.1, 0.5, 0.3]})
    r = stats.pearsonr(pairs.x, pairs.y)[0]
    head = (
        f"knn against cka: over 4 values, Pearson r = **{r:.2f}** (described: the values share "
        "datasets and models); "
    )
    up = {"estimate": 0.1, "ci_low": 0.02, "ci_high": 0.2, "n_datasets": 5}
    assert T.local_global_text(pairs, "knn", "cka", up) == head + (
        "knn gives the higher consistency (median over dataset pairs of the difference knn minus "
        "cka in the consistency of all model pairs 0.10, 95% CI 0.02 to 0.20 with the 5 datasets "
        "resampled and the models fixed)."
    )
    three = T.local_global_text(
        pairs, "knn", "cka", {**up, "n_comparisons": 3, "confidence_level": 1 - 0.05 / 3}
    )
    assert "0.10, 95% simultaneous CI 0.02 to 0.20 with" in three
    assert (
        "fixed; one of 3 measures set against cka here, so each interval is at 98.3% "
        "(Bonferroni) and all 3 cover together at 95%)." in three
    )
    assert not T.untested_claims(three)
    two = T.local_global_text(
        pairs, "knn", "cka", {**up, "n_comparisons": 2, "confidence_level": 0.975}
    )
    assert "0.10, 95% simultaneous CI 0.02 to 0.20 with" in two
    assert "one of 2 measures set against cka here, so each interval is at 97.5%" in two
    down = {**up, "estimate": -0.1, "ci_low": -0.2, "ci_high": -0.01}
    assert "gives the lower consistency" in T.local_global_text(pairs, "knn", "cka", down)
    across = {**up, "ci_low": -0.05}
    assert "no evidence that either measure gives the higher" in T.local_global_text(
        pairs, "knn", "cka", across
    )
    none = {**up, "ci_low": np.nan, "ci_high": np.nan}
    assert "not tested: no interval (5 datasets, fewer than the 8" in T.local_global_text(
        pairs, "knn", "cka", none
    )
    for touching in ({**up, "ci_low": 0.0}, {**down, "ci_high": 0.0}):  # 0 is not excluded
        text = T.local_global_text(pairs, "knn", "cka", touching)
        assert "no evidence that either measure gives the higher" in text
    half = {**up, "ci_high": np.nan}  # one end undefined is no interval either
    assert "not tested: no interval" in T.local_global_text(pairs, "knn", "cka", half)
    # an end that excludes 0 is printed so that it does (0.004 as 0.00 contradicted "higher")
    near = {**up, "estimate": 0.007, "ci_low": 0.004, "ci_high": 0.0099}
    text = T.local_global_text(pairs, "knn", "cka", near)
    assert "gives the higher consistency" in text and "95% CI 0.004 to 0.01 " in text
    for d in (up, down, across, none):
        assert not T.untested_claims(T.local_global_text(pairs, "knn", "cka", d))


def test_platonic_text_branches():
    medians = pd.DataFrame(
        {"cka": [0.6, 0.4, 0.2, np.nan], "knn": [0.1, 0.5, 0.3, 0.9]},
        index=["A | A", "A | B", "B | B", "C | C"],
    )
    gap = {"estimate": 0.2, "ci_low": -0.1, "ci_high": 0.4, "n_datasets": 9,
           "confidence_level": 0.975, "n_comparisons": 2}  # fmt: skip
    gaps = {
        "cka": {**gap, "top": "A | A", "runner_up": "A | B"},
        "knn": {**gap, "top": "C | C", "runner_up": "A | B", "ci_low": 0.05},
    }
    text = T.platonic_text(medians, "cka", "knn", "objective", gaps)
    rho = stats.spearmanr([0.6, 0.4, 0.2], [0.1, 0.5, 0.3])[0]
    assert text == (
        "The objective pair with the highest median consistency under cka is **A | A**, not told "
        "apart from the next, A | B (gap 0.20, 95% simultaneous CI -0.10 to 0.40); under knn it "
        "is **C | C**, ahead of the next, A | B, by 0.20 (95% simultaneous CI 0.05 to 0.40). "
        "Each interval resamples the 9 datasets with the models and both pairs fixed; with 2 "
        "measures each interval is at 97.5% (Bonferroni), so both cover together at 95%. Over "
        f"the 3 pairs the two measures' medians have Spearman **{rho:.2f}** (described, not "
        "tested: the medians share datasets and models, so no p-value or interval is attached)."
    )
    two = T.platonic_text(medians.iloc[:2], "cka", "knn", "objective", gaps)
    assert "Spearman" not in two and two.endswith("cover together at 95%.")
    assert not T.untested_claims(text) and not T.untested_claims(two)
    assert "Fewer than two" in T.platonic_text(medians.iloc[:1], "cka", "knn", "objective", gaps)
    assert "Fewer than two" in T.platonic_text(medians[["knn"]], "cka", "knn", "objective", gaps)
    assert "Fewer than two" in T.platonic_text(medians, "cka", "knn", "objective", {})


def _stab(columns: dict) -> pd.DataFrame:
    """A table of stability_vs_n's columns with the given n and abs_error: pairs a~b and a~c
    in turn, all-stimuli value 0.5."""
    t = pd.DataFrame(columns)
    pairs = ["a~b", "a~c"] * len(t)
    return t.assign(pair=pairs[: len(t)], full=0.5, similarity=0.5 + t["abs_error"])


def test_robustness_texts():
    stab = _stab({"n": [8, 8, 16, 16], "abs_error": [0.1, 0.2, 0.01, 0.02]})
    assert "falls below 0.02 from **n = 16** on" in T.stability_text(stab, 40, "cells", 0.02)
    assert "is not below 0.001 at the largest subset size tried below it (n = 16)" in (
        T.stability_text(stab, 40, "cells", 0.001)
    )
    # the reference size itself has error 0 by construction: it must not make "from n on" true
    with_all = pd.concat([stab, _stab({"n": [40], "abs_error": [0.0]})])
    assert "at the largest subset size tried below it (n = 16)" in T.stability_text(
        with_all, 40, "cells", 0.001
    )
    only_all = _stab({"n": [40], "abs_error": [0.0]})
    # said without a comparison the book's rule would flag ("smaller than" was flagged)
    none = T.stability_text(only_all, 40, "cells", 0.02)
    assert "No subset size under the 40 stimuli" in none and not T.untested_claims(none)
    # "from n on" holds for every larger n: a dip below the tolerance that rises again is not it
    bumpy = _stab({"n": [8, 16, 32, 64], "abs_error": [0.01, 0.05, 0.04, 0.01]})
    assert "from **n = 64** on" in T.stability_text(bumpy, 500, "cells", 0.02)
    # an error equal to the tolerance is not below it
    at = _stab({"n": [8, 8, 16, 16], "abs_error": [0.25, 0.25, 0.125, 0.125]})
    assert "falls below 0.25 from **n = 16** on" in T.stability_text(at, 40, "cells", 0.25)
    spread = pd.DataFrame(
        {"pair": ["a~b", "a~c", "b~c"], "se": [0.01, 0.03, 0.02], "estimate": [0.2, 0.5, 0.8]}
    ).assign(m=50, n=100)
    assert T.subsample_text(spread, 20, 100) == (
        "Standard error of pair similarity over 3 pairs (spread over 20 random halves of 100 "
        "stimuli): median **0.020**, largest 0.030 (a~c)."
    )


def test_subsample_text_says_when_halves_are_too_small_to_separate_the_pairs():
    """Chapter 13 at max_stimuli 8 showed halves of 4 stimuli with SEs near 0.6 and said nothing
    of how little they tell: with a root-mean-square SE at or above the SD of the estimates
    across pairs, the sentence says the halves cannot separate the pairs, with the numbers."""
    spread = pd.DataFrame(
        {"pair": ["a~b", "a~c", "b~c"], "estimate": [0.25, 0.5, 0.75], "se": [0.5, 0.7, 0.6]}
    ).assign(m=4, n=8)
    text = T.subsample_text(spread, 20, 8)
    rms = math.sqrt((0.25 + 0.49 + 0.36) / 3)
    assert text == (
        "Standard error of pair similarity over 3 pairs (spread over 20 random halves of 8 "
        "stimuli): median **0.600**, largest 0.700 (a~c). Halves of 4 stimuli are **too small to "
        f"separate the pairs**: their standard errors (root mean square {rms:.3f}) are "
        f"{rms / 0.25:.1f} times the standard deviation of the all-stimuli estimates across the 3 "
        "pairs (0.250), so the differences between pairs are within the noise of one estimate; "
        "larger halves need more stimuli (max_stimuli, where the dataset has them)."
    )
    assert not T.untested_claims(text)
    # at the rule's edge (ratio 1) the ratio is shown as reached, never as 0.9 or 1.1
    edge = spread.assign(se=0.25)
    assert "are 1.0 times the standard deviation" in T.subsample_text(edge, 20, 8)
    # under it, or with one pair (no spread across pairs), the first sentence alone
    assert "too small" not in T.subsample_text(spread.assign(se=0.2), 20, 8)
    assert "too small" not in T.subsample_text(spread.iloc[:1], 20, 8)


def test_robustness_texts_count_and_name_the_pairs_left_undefined():
    """With the all-pairs engine, a model whose features do not vary over the stimuli gives NaN
    (the per-pair cka raised): the sentences printed "nan", ranked the rest as if they were all,
    and the figures left those pairs out unsaid. They now count and name them, by model when a
    model has no pair defined, and say what leaves them out."""
    nan = float("nan")
    pairs = ["a~b", "a~c", "b~c", "a~d", "b~d", "c~d"]  # d: the same vector for every stimulus
    stab = pd.DataFrame(
        [
            {"n": n, "repeat": r, "pair": p, "full": 0.5}
            for n, r in [(8, 0), (8, 1), (16, 0), (16, 1), (40, 0)]
            for p in pairs
        ]
    )
    stab["similarity"] = 0.5 + stab["n"].map({8: 0.1, 16: 0.01, 40: 0.0})
    stab.loc[stab.pair.str.endswith("~d"), ["full", "similarity"]] = nan
    stab.loc[(stab.pair == "b~c") & (stab.n == 8) & (stab.repeat == 1), "similarity"] = nan
    stab["abs_error"] = (stab["similarity"] - stab["full"]).abs()
    text = T.stability_text(stab, 40, "cells", 0.02)
    assert text == (
        "With 40 stimuli of cells as the reference, the median absolute error falls below 0.02 "
        "from **n = 16** on. The similarity is **undefined for 4 of the 6 model pairs** (for "
        "CKA: a model without usable variance over those stimuli): 3 on all 40 stimuli (every "
        "pair of d); 1 on some subsets only, at n = 8 (b~c); their undefined values are left "
        "out of the median errors and of the figure."
    )
    # every pair undefined: nothing said of how many stimuli suffice (it said "from n = 8 on")
    flat = stab.assign(similarity=nan, full=nan, abs_error=nan)
    text_flat = T.stability_text(flat, 40, "cells", 0.02)
    assert text_flat == (
        "On the subsets tried under the 40 stimuli of cells no pair has a defined similarity, so "
        "nothing is said about how many stimuli suffice. The similarity is **undefined for all 6 "
        "model pairs** (for CKA: a model without usable variance over those stimuli): 6 on all "
        "40 stimuli (every pair of a, every pair of b, every pair of c and every pair of d); "
        "their undefined values are left out of the median errors and of the figure."
    )
    spread = pd.DataFrame(
        {
            "pair": pairs,
            "estimate": [0.25, 0.5, 0.75, nan, nan, nan],
            "se": [0.01, 0.03, nan, nan, nan, nan],
        }
    ).assign(m=20, n=40)
    text_spread = T.subsample_text(spread, 10, 40)
    assert text_spread == (
        "Standard error of pair similarity over 2 pairs (spread over 10 random halves of 40 "
        "stimuli): median **0.020**, largest 0.030 (a~c). The similarity is **undefined for 4 "
        "of the 6 model pairs** (for CKA: a model without usable variance over those stimuli): "
        "3 on all 40 stimuli (every pair of d); 1 on one or more of the 10 halves only (b~c); "
        "they are left out of the standard errors here and of the figure."
    )
    one = spread.iloc[[3]]
    assert T.subsample_text(one, 10, 40) == (
        "No pair has a standard error over 10 random halves of 40 stimuli. The similarity is "
        "**undefined for the one model pair** (for CKA: a model without usable variance over "
        "those stimuli): 1 on all 40 stimuli (a~d); they are left out of the standard errors "
        "here and of the figure."
    )
    for said in (text, text_flat, text_spread):
        assert not re.search(r"\bnan\b", said, re.I) and not T.untested_claims(said)
    # none undefined: the sentences as before
    assert "undefined" not in T.stability_text(stab[~stab.pair.isin(pairs[2:])], 40, "cells", 0.02)
    assert "undefined" not in T.subsample_text(spread.iloc[:2], 10, 40)
    # many pairs: a model with none defined by name, the others up to 12 and how many more
    every = [f"m{i:02d}~m{j:02d}" for i in range(16) for j in range(i + 1, 16)]
    bad = [p for p in every if "m15" in p] + [f"m{i:02d}~m{i + 1:02d}" for i in range(13)]
    assert T._pair_names(bad, every) == (
        "every pair of m15, " + ", ".join(f"m{i:02d}~m{i + 1:02d}" for i in range(12))
        + " and 1 more"
    )  # fmt: skip


@pytest.mark.parametrize("tolerance", [0, -0.02, float("nan"), "0.02", True])
def test_robustness_tolerances_are_positive_numbers(tolerance):
    """A tolerance of 0 or below made a true sentence about nothing (no error is below 0: "not
    below 0 at the largest subset size"; every pair "moves by 0 or more")."""
    stab = _stab({"n": [8, 16], "abs_error": [0.1, 0.01]})
    table = pd.DataFrame({"none": [0.5], "arccos": [0.52], "tan": [0.5]})
    with pytest.raises(InputError, match=re.escape(f"above 0; got {tolerance!r}.")):
        T.stability_text(stab, 40, "cells", tolerance)
    with pytest.raises(InputError, match="tolerance must be a finite number above 0"):
        T.transform_text(table, tolerance)
    assert "from **n = 16** on" in T.stability_text(stab, 40, "cells", np.float32(0.02))


def test_fixed_design_and_controlled_notices():
    models = pd.DataFrame(
        {"data_class": ["toy"] * 3, "size_class": ["small", "small", "large"], "training_data": ""}
    )
    assert (
        T.fixed_design_text(models)
        == "Held fixed across the models of this run: **data_class** = toy."
    )
    assert "nothing recorded" in T.fixed_design_text(models.drop(columns="data_class"))
    # one value among the models that record it is not held fixed when another model lacks it
    partly = models.assign(data_class=["toy", "toy", None])
    assert "nothing recorded" in T.fixed_design_text(partly)
    assert T.fixed_design_text(models, selection="3 of 45 models").startswith(
        "Held fixed across the models of this chapter's part of the run (3 of 45 models): "
    )
    sized = models.assign(size_class="small", params_m=[0.1394, 0.2357, 0.4311])
    assert T.fixed_design_text(sized) == (
        "Held fixed across the models of this run: **data_class** = toy, **size_class** = small "
        "(a label: the models have 0.14M to 0.43M parameters)."
    )
    assert T.fixed_design_text(sized.assign(params_m=0.2)).endswith("**size_class** = small.")
    assert T.no_controlled_table_text("too few seeds") == "No table: too few seeds."
    assert T.missing_group_pairs_text(["a", "b"]) == (
        "Not in this run, or with fewer than 3 model pairs there: `a`, `b`."
    )


def test_run_text_names_run_size_and_choices(tmp_path):
    run = SimpleNamespace(
        name="r1", path=tmp_path / "folder", measures=["cka_linear", "rsa"], selection=""
    )
    ch = SimpleNamespace(
        run=run,
        models=pd.DataFrame(index=["m0", "m1", "m2"]),
        datasets=["a", "b"],
        measure="cka_linear",
        category="objective",
    )
    assert T.run_text(ch) == (
        "Run **r1** (run folder `folder`): 3 models, 2 datasets, measures cka_linear, rsa; main "
        "measure **cka_linear**, models grouped by **objective**."
    )
    run.selection = "3 of 5 models"
    assert "3 models, 2 datasets (this chapter's part of the run: 3 of 5 models), measures" in (
        T.run_text(ch)
    )


@pytest.mark.parametrize(
    "x, want", [(0.123, "0.12"), (float("nan"), "undefined"), (None, "undefined")]
)
def test_fmt(x, want):
    assert T.fmt(x) == want


def test_untested_claims_flags_rankings_without_a_test_beside_them():
    bare = "Random models keep their similarity ordering best (0.72). Faces is a dataset."
    assert T.untested_claims(bare) == ["Random models keep their similarity ordering best (0.72)."]
    assert T.untested_claims("Pairs of A are more consistent than pairs of B (p = 0.01).") == []
    assert T.untested_claims("A differs most (95% CI 0.1 to 0.3).") == []
    assert T.untested_claims("A has the highest median; described, not tested.") == []
    # the disclaimer must be in the same sentence as the ranking
    assert len(T.untested_claims("A has the highest median. Described, not tested.")) == 1
    # rank correlation and rank order are names of methods, not rankings
    assert T.untested_claims("Rank agreement is 0.9, in rank order.") == []
    # a sentence may start with a lower-case measure name, or be the next output of a chapter;
    # a number's decimal point and an abbreviation end nothing
    masked = "A is 0.5 (p = 0.01). cka_rbf_0.2 is the more consistent one for 3 of 5."
    assert T.untested_claims(masked) == ["cka_rbf_0.2 is the more consistent one for 3 of 5."]
    assert len(T.untested_claims("A, p = 0.2 (described)\nB ranks first")) == 1
    assert T.untested_claims("A, e.g. B, is the best (95% CI 0.1 to 0.2).") == []


def test_untested_claims_catch_comparatives_with_than():
    """ "higher ... than", "agrees closely" and "systematically" rank too; "the lower end of an
    interval" does not, and a simulation beside a claim backs it."""
    assert T.untested_claims("SimCLR gives higher consistency than Supervised.") != []
    assert T.untested_claims("It is systematically lower on train images.") != []
    assert T.untested_claims("The train split agrees closely with the test split.") != []
    assert T.untested_claims("A probe is left out when the lower end of its interval is low.") == []
    backed = "Such tests reject more than 1% (30% in a simulation with 10 datasets)."
    assert T.untested_claims(backed) == []


def test_untested_prose_claims_read_blocks_attributions_and_questions():
    prose = (
        "Pairs of self-supervised models keep their\nsimilarity structure best.\n\n"
        "The study found that\n\n- self-supervised pairs are more consistent than others;\n\n"
        "Which objective is the most consistent in this run?\n\n"
        "```python\nbest = table.max()  # the best row\n```\n"
    )
    assert T.untested_prose_claims(prose) == [
        "Pairs of self-supervised models keep their similarity structure best."
    ]


def test_the_hand_written_prose_makes_no_untested_claim():
    """The chapters' and lessons' Markdown cells and the intro: a sentence that ranks or compares
    states its test, says it only describes, or quotes the study (only computed sentences were
    checked; chapter 5 called its pairs the run's most consistent without either). The methods
    page is left out: its comparisons are of formulas ("much larger than their sum")."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pages = {"book/intro.md": (root / "book" / "intro.md").read_text()}
    for path in [
        *sorted(root.glob("notebooks/*.ipynb")),
        *sorted(root.glob("book/course/*.ipynb")),
    ]:
        cells = json.loads(path.read_text())["cells"]
        pages[str(path.relative_to(root))] = "\n\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
        )
    assert len(pages) > 20
    claims = {name: T.untested_prose_claims(text) for name, text in pages.items()}
    assert not {k: v for k, v in claims.items() if v}


def test_domain_contrast_text_is_worded_by_the_permutation_test():
    row = {
        "same domain": 0.2,
        "different domains": 0.5,
        "difference": -0.3,
        "p": 0.01,
        "same-domain pairs": 12,
        "datasets": 10,
        "permutations": 9999,
    }
    table = pd.DataFrame([row], index=pd.Index(["all"], name="group_pair"))
    text = T.domain_contrast_text(table)
    assert text == (
        "Over all model pairs, datasets of the same domain are less consistent with each other "
        "than datasets of different domains (median 0.20 over 12 dataset pairs within a domain, "
        "0.50 across domains; domain labels permuted over the 10 datasets with these models held fixed, p = 0.01)."
    )
    more = T.domain_contrast_text(table.assign(**{"same domain": 0.8}))
    assert "are more consistent" in more
    # where the within-domain pairs come from, and the rows the sentence does not word
    rows = pd.DataFrame(
        [{**row, "main domain": "Structured", "main domain pairs": 10}] * 2,
        index=pd.Index(["all", "SSL | SSL"], name="group_pair"),
    )
    told = T.domain_contrast_text(rows)
    assert "12 dataset pairs within a domain (10 of them within Structured)" in told
    assert (
        "Most within-domain pairs are Structured pairs: this speaks mainly for that domain." in told
    )
    assert "the other row of the table is shown, not worded" in told
    every = T.domain_contrast_text(rows.assign(**{"main domain pairs": 12}))
    assert "12 dataset pairs within a domain (all within Structured)" in every
    # a domain with half of them is not the main one: 1 of 2 named one domain of a tie
    for n_main in (6, 1):
        tie = T.domain_contrast_text(rows.assign(**{"main domain pairs": n_main}))
        assert "12 dataset pairs within a domain, " in tie and "Structured" not in tie
    # "most ... pairs" needs two or more within-domain pairs
    pair = {**row, "main domain": "Structured"}
    for n, most in ((1, False), (2, True)):
        t = pd.DataFrame(
            [{**pair, "same-domain pairs": n, "main domain pairs": n}],
            index=pd.Index(["all"], name="group_pair"),
        )
        assert (
            "Most within-domain pairs are Structured pairs" in T.domain_contrast_text(t)
        ) == most
    assert not T.untested_claims(told)
    null = T.domain_contrast_text(table.assign(p=0.3))
    assert null.startswith("Over all model pairs, no evidence that datasets of the same domain")
    assert "p = 0.30" in null
    untestable = T.domain_contrast_text(table.assign(p=np.nan))
    assert "nothing to test" in untestable
    # random relabellings (10! orderings > 9999): a p within 0.008 of 0.05 is not settled
    near = table.assign(p=0.045, exact=False, **{"smallest p": 0.0002})
    settled = T.domain_contrast_text(near)
    assert "is not settled by 9999 random relabellings" in settled
    assert T.domain_contrast_text(near.assign(exact=True)).startswith(
        "Over all model pairs, datasets of the same domain are less consistent"
    )
    for t in (text, more, null, untestable, settled):
        assert not T.untested_claims(t)


def _accuracy_permutation(statistic: float) -> dict:
    """A behavior_link_test result of 9,999 joint permutations of 45 models' accuracies, p = 0.003."""
    return {
        "statistic": statistic,
        "p_value": 0.003,
        "p_min": 0.0002,
        "n_permutations": 9999,
        "exact": False,
        "n_models": 45,
    }


def test_behaviour_text_is_worded_by_the_model_permutation():
    corr = pd.DataFrame(
        {"dataset": list("abcdefgh"), "domain": ["D"] * 8, "pearson_r": [-0.5] * 7 + [0.2]}
    )
    test = _accuracy_permutation(-0.41)
    text = T.behaviour_text(corr, test)
    assert text.startswith(
        "Similarity and accuracy gap are negatively correlated (similar representations, "
        "similar accuracy) on **7 of 8** datasets (mean r = -0.41), more negative than random "
        "pairings of the same models give (the 45 models' accuracies permuted jointly over the "
        "datasets in 9,999 random orderings, two-sided p = 0.003)."
    )
    none = T.behaviour_text(corr, {**test, "p_value": 0.4})
    assert "no evidence that the link differs from random pairings" in none
    settled = T.behaviour_text(corr, {**test, "p_value": 0.055})
    assert "is not settled: p = 0.06 is within Monte Carlo error" in settled
    assert settled.count("9,999") == 1 and "in 9,999 random orderings" in settled
    floor = T.behaviour_text(corr, {**test, "p_value": 0.33, "p_min": 0.33, "exact": True})
    assert "cannot be tested at alpha = 0.05" in floor
    assert "per domain" not in text  # one domain: nothing to list per domain
    described = T.behaviour_text(corr)
    assert "described for these models, not tested" in described and "sign test" not in described
    for t in (text, none, settled, floor, described):
        assert not T.untested_claims(t)


def _relabelling(statistic: float) -> dict:
    """A within_between_test result of 9,999 random relabellings with p = 0.0004."""
    return {
        "statistic": statistic,
        "p_value": 0.0004,
        "p_min": 0.0002,
        "n_permutations": 9999,
        "exact": False,
        "permuted": "freely over the 12 models",
    }


def test_within_between_text_is_worded_by_the_model_relabelling():
    table = pd.DataFrame({"same category": [0.1] * 10, "different category": [0.5] * 10})
    test = _relabelling(-0.4)
    text = T.within_between_text(table, "objective", test)
    assert text.startswith("On **0 of 10** datasets")
    assert "difference is -0.40, less than random groupings of the same models give" in text
    assert "two-sided p < 0.001" in text and "in 9,999 random relabellings" in text
    settled = T.within_between_text(table, "objective", {**test, "p_value": 0.052})
    assert "is not settled: p = " in settled and "within Monte Carlo error" in settled
    # no relabelling gave a statistic: no count of zero draws
    none = T.within_between_text(
        table, "objective", {**test, "p_value": float("nan"), "n_permutations": 0}
    )
    assert "cannot be tested" in none and " 0 random" not in none and "all 0" not in none
    assert settled.count("9,999") == 1 and "in 9,999 random relabellings" in settled
    exact = T.within_between_text(table, "objective", {**test, "p_value": 0.052, "exact": True})
    assert "no evidence that this differs" in exact
    for t in (text, settled, exact):
        assert not T.untested_claims(t)


def test_within_between_text_on_one_dataset_neither_counts_nor_averages_datasets():
    """Chapter 3 on one dataset said "On **1 of 1** dataset ...; averaged over the datasets the
    difference is ...": one dataset has no count of datasets and no average over them."""
    one = pd.DataFrame(
        {"same category": [0.8], "different category": [0.5]}, index=pd.Index(["faces"])
    )
    text = T.within_between_text(one, "objective", _relabelling(0.3))
    assert text == (
        "On faces, the one dataset, models of the same objective are more similar to each other "
        "(median) than models of different objective (difference of the medians 0.30); that "
        "difference is more than random groupings of the same models give (objective labels "
        "permuted freely over the 12 models in 9,999 random relabellings, the dataset fixed, "
        "two-sided p < 0.001)."
    )
    # beside a dataset without pairs of both kinds (every model failed on it)
    two = pd.concat(
        [
            one,
            pd.DataFrame(
                {"same category": [np.nan], "different category": [np.nan]}, index=["cells"]
            ),
        ]
    )
    lost = T.within_between_text(two, "objective", {**_relabelling(0.3), "p_value": 0.4})
    assert lost.startswith("On faces, the one dataset with defined pairs of both kinds, models")
    assert lost.endswith(
        "(difference of the medians 0.30): no evidence that this differs from random groupings "
        "of the same models (objective labels permuted freely over the 12 models in 9,999 random "
        "relabellings, the dataset fixed, two-sided p = 0.40)."
    )
    for t in (text, lost, T.within_between_text(one, "objective")):
        assert "averaged" not in t and "1 of 1" not in t and not T.untested_claims(t)


def test_scatter_text_describes_the_groups_without_ranking_them():
    tab = pd.DataFrame(
        {"all": [0.5, 0.3], "S": [0.9, 0.7], "T": [0.1, 0.3]}, index=["a / b", "a / c"]
    )
    text = T.scatter_text(tab, "objective")
    assert "Mean consistency within one objective: S 0.80, T 0.20." in text
    assert "described, not ranked: 2 chosen dataset pairs" in text and not T.untested_claims(text)


def test_overview_text_lists_the_same_category_medians_of_its_own_grouping():
    summary = pd.DataFrame(
        {
            "group_by": ["all", "objective", "objective", "objective", "architecture"],
            "label": ["all", "SSL | SSL", "Random | Random", "Random | SSL", "CNN | CNN"],
            "median": [0.5, 0.61, 0.2, 0.1, 0.9],
        }
    )
    text = T.overview_text(summary, "cka", "objective")
    # two same-objective pairs (the pair of two objectives and the other grouping left out)
    assert text == (
        "With cka, the all-pairs median consistency is **0.50**. Median consistency of model pairs "
        "that share the objective: SSL 0.61, Random (untrained control) 0.20 (medians over "
        "dataset pairs, described here, not tested against each other)."
    )
    one = T.overview_text(summary.drop(index=2), "cka", "objective")
    assert one == (
        "With cka, the all-pairs median consistency is **0.50**. Only **SSL** has at least 3 "
        "model pairs within one objective (median 0.61), so categories cannot be ranked against "
        "each other."
    )
    gap = {"top": "SSL | SSL", "runner_up": "Random | Random", "estimate": 0.41,
           "ci_low": 0.2, "ci_high": 0.5, "n_datasets": 9}  # fmt: skip
    tested = T.overview_text(summary, "cka", "objective", gap=gap)
    assert tested == (
        "With cka, the all-pairs median consistency is **0.50**. Median consistency of model "
        "pairs that share the objective: SSL 0.61, Random (untrained control) 0.20 (medians over "
        "dataset pairs). The first is **SSL | SSL**, ahead of the next, Random | Random, by 0.41 "
        "(95% CI 0.20 to 0.50). The interval resamples the 9 datasets with the models and both "
        "pairs fixed."
    )
    for t in (text, one, tested):
        assert not T.untested_claims(t)


def test_pearson_spearman_text_words_three_values():
    pairs = pd.DataFrame({"x": [0.1, 0.5, 0.3, np.nan], "y": [0.2, 0.6, 0.1, 0.4]})
    r = stats.pearsonr([0.1, 0.5, 0.3], [0.2, 0.6, 0.1])[0]
    text = T.pearson_spearman_text(pairs, "objective")
    assert text.startswith(
        f"Across the 3 consistency values (dataset pairs x category pairs), Spearman follows "
        f"Pearson with r = **{r:.2f}**."
    )
    assert T.pearson_spearman_text(pairs.iloc[1:], "objective").startswith("Too few")


def test_pearson_spearman_text_names_the_test_of_the_chapter_s_grouping():
    """Chapter 13 grouped by another field pointed to 'the test of the objective factor'
    whatever its category parameter was: the factor named is the grouping's own, and a field
    the controlled tests do not vary is said to be untested there."""
    pairs = pd.DataFrame({"x": [0.1, 0.5, 0.3, 0.7], "y": [0.2, 0.6, 0.1, 0.8]})
    obj = T.pearson_spearman_text(pairs, "objective")
    assert "(whether the objective factor explains consistency is tested in the " in obj
    arch = T.pearson_spearman_text(pairs, "architecture_class")
    assert "(whether the architecture factor explains consistency is tested" in arch
    assert "objective factor" not in arch
    size = T.pearson_spearman_text(pairs, "size_class")
    assert "objective factor" not in size and "is tested in" not in size
    assert size.endswith(
        "ranks first is not tested here; the controlled-experiment chapter tests the objective "
        "and architecture factors, not size_class."
    )
    for text in (obj, arch, size):
        assert not T.untested_claims(text)
    assert T.tested_factor("architecture_class") == "architecture"
    assert T.tested_factor("data_class") is None


def test_within_between_text_counts_strictly_more_similar_datasets_and_words_a_small_positive_mean():
    # differences 0.3, 0 (a tie is not "more similar") and -0.1
    table = pd.DataFrame({"same category": [0.6, 0.4, 0.2], "different category": [0.3, 0.4, 0.3]})
    test = _relabelling(0.07)
    text = T.within_between_text(table, "objective", test)
    assert text.startswith("On **1 of 3** datasets, models of the same objective")
    assert "difference is 0.07, more than random groupings of the same models give" in text
    assert not T.untested_claims(text)


def test_domain_contrast_text_reads_a_table_without_exact_as_random_relabellings():
    row = {
        "same domain": 0.2,
        "different domains": 0.5,
        "p": 0.045,
        "smallest p": 0.0002,
        "same-domain pairs": 12,
        "datasets": 10,
        "permutations": 9999,
    }
    table = pd.DataFrame([row], index=pd.Index(["all"], name="group_pair"))
    # no "exact" column: the permutations are taken as random, so p = 0.045 is within Monte Carlo
    # error of 0.05 (it read as below 0.05 had a missing column meant an exact test)
    assert "is not settled by 9999 random relabellings" in T.domain_contrast_text(table)


def test_behaviour_text_counts_strictly_negative_r_and_words_a_small_positive_mean():
    corr = pd.DataFrame(
        {"dataset": list("abcd"), "domain": ["D"] * 4, "pearson_r": [-0.5, 0.0, 0.5, 0.8]}
    )
    test = _accuracy_permutation(0.2)
    text = T.behaviour_text(corr, test)
    # r = 0 is not a negative correlation: one of four
    assert (
        "similar accuracy) on **1 of 4** datasets (mean r = 0.20), more positive than random"
    ) in text
    assert not T.untested_claims(text)


def test_overview_text_names_a_category_with_spaces_whole():
    # "A | A" is split on the separator itself: split as a pattern, " | " matched every space
    # and the category "ImageNet21k + ImageNet1k" was listed as "ImageNet21k"
    name = "ImageNet21k + ImageNet1k"
    summary = pd.DataFrame(
        {
            "group_by": ["all", "training_data", "training_data"],
            "label": ["all", f"{name} | {name}", "LAION | LAION"],
            "median": [0.5, 0.61, 0.2],
        }
    )
    text = T.overview_text(summary, "cka", "training_data")
    assert "share the training_data: ImageNet21k + ImageNet1k 0.61, LAION 0.20 (medians" in text


def test_architecture_mix_text_names_only_categories_above_both_parts_with_a_level_gap():
    parts = ["all", "same architecture", "across architectures", "similarity same"]
    mix = pd.DataFrame(
        [
            [0.8, 0.5, 0.3, 0.9, 0.5],  # above both parts, pairs of one architecture more alike
            [0.6, 0.7, 0.2, 0.9, 0.5],  # above the cross-architecture part only
            [0.5, 0.5, 0.1, 0.9, 0.5],  # equal to a part is not above it
            [0.8, 0.3, 0.2, 0.5, 0.5],  # above both, but no gap in similarity between the kinds
        ],
        columns=[*parts, "similarity across"],
        index=["A", "B", "C", "D"],
    )
    text = T.architecture_mix_text(mix)
    assert " For A, the consistency of all pairs lies above both of its parts" in text
    assert "For A and" not in text and not T.untested_claims(text)


def test_probe_protocol_text_names_each_change_from_the_study():
    import json

    def run(opts):
        return SimpleNamespace(probes=SimpleNamespace(attrs={"probe": json.dumps(opts)}))

    assert T.probe_protocol_text(SimpleNamespace(probes=None)) == "This run has no probes."
    study = {"batch_size": 1024, "shared_search": False, "epochs": 20, "seeds": [0, 1, 2]}
    assert T.probe_protocol_text(run(study)).endswith("held-out test split), unchanged.")
    assert T.probe_protocol_text(run({})).endswith(", unchanged.")
    changed = {**study, "batch_size": 256, "epochs": 5, "lrs": [0.5, 0.1]}
    changed["wds"] = [10.0**k for k in range(-7, 1)]  # 8 values
    text = T.probe_protocol_text(run(changed))
    assert text.endswith(
        ", with these changes: `batch_size` 256 (the study: 1024), because the embedded sets "
        "have 1-2k train images, and batches of 1024 would give about two optimiser steps per "
        "epoch, which underfits; `epochs` 5 (the study: 20), because fewer epochs keep a small "
        "run fast; `lrs` [0.5, 0.1] (the study: 0.1, 0.01, 0.001, 0.0001), because with so few "
        "steps the study's learning rates (0.1 down to 0.0001) underfit, so larger ones are "
        "searched; `wds` 8 values (the study: 64 values from 1e-06 to 10), because a shorter "
        "weight-decay grid keeps a small run fast."
    )
    six = T.probe_protocol_text(run({"wds": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "seeds": [0]}))
    assert "`seeds` [0] (the study: 0, 1, 2), because fewer seeds" in six
    assert "`wds` [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] (the study: 64 values" in six
    seven = T.probe_protocol_text(run({"wds": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]}))
    assert "`wds` 7 values (the study: 64 values" in seven


def test_study_overlap_and_stimuli_split_texts():
    from repsim.reference import study_models

    study = list(study_models())
    n = len(study)

    def run(models, info=None, selection=""):
        sim = SimpleNamespace(model_a=SimpleNamespace(values=np.array(models)))
        return SimpleNamespace(similarity=sim, info=info or {}, selection=selection)

    assert T.study_overlap_text(run(["x", "y"])).startswith(
        f"None of the 2 models of this run is one of the study's {n}, so its numbers are not "
        "comparable"
    )
    assert T.study_overlap_text(run(study[:3])) == (
        f"All 3 models of this run are among the study's {n}."
    )
    assert T.study_overlap_text(run([*study[:1], "x"])).startswith(
        f"1 of the 2 models of this run is among the study's {n}; numbers over all of these"
    )
    assert T.study_overlap_text(run([*study[:2], "x"])).startswith(
        f"2 of the 3 models of this run are among the study's {n}; numbers over all of these"
    )
    # a chapter's part: what it says is of the part, not the run
    part = run([*study[:1], "x"], selection="2 of 45 models")
    assert T.study_overlap_text(part).startswith(
        "1 of the models of this chapter's part of the run (2 of 45 models) is among"
    )
    assert T.study_overlap_text(run(["x", "y"], selection="2 of 45 models")).startswith(
        "None of the models of this chapter's part of the run (2 of 45 models) is one of"
    )
    assert T.study_overlap_text(run(study[:2], selection="2 of 45 models")).startswith(
        "All models of this chapter's part of the run (2 of 45 models) are among"
    )
    # a part of the datasets only: the model count is said once, by the sentence
    assert T.study_overlap_text(run(["x", "y"], selection="3 of 10 datasets")).startswith(
        "None of the 2 models of this chapter's part of the run (3 of 10 datasets) is one of"
    )
    assert "split of its similarity stimuli is unknown" in T.stimuli_split_text(run([]))
    test = run([], {"config": {"stimuli": {"split": "test"}}})
    assert "the held-out **test** split" in T.stimuli_split_text(test)
    for info in ({"config": {"stimuli": {}}}, {"config": "odd"}, {"name": "r"}):
        assert "the **train** split of each dataset, as in the study" in T.stimuli_split_text(
            run([], info)
        )


def test_measure_agreement_names_the_measures_it_compares():
    """'the other measures' read as every measure of the run; the chapter compares some (mutual
    kNN, the least alike, is in the next chapter), so the sentence names them."""
    agree = pd.DataFrame(
        {
            "dataset": ["a", "b", "a", "b"],
            "measure": ["cka_rbf_0.2", "cka_rbf_0.2", "rsa_spearman", "rsa_spearman"],
            "r": [0.9, 0.8, 0.95, 0.7],
        }
    )
    text = T.measure_agreement_text(agree, "cka_linear")
    assert text.startswith("Rank agreement of cka_linear with cka_rbf_0.2 and rsa_spearman over")
    assert "(minimum 0.70, on b with rsa_spearman)" in text


def test_panels_text_says_which_datasets_a_figure_shows_when_not_all():
    """Chapters 10 and 11 drew 3 panels of a run's 6 datasets and said so only in the caption."""
    order = ["a", "b", "c", "d"]
    assert T.panels_text(order, order) == ""
    assert T.panels_text(["a", "c"], order, "probed datasets") == (
        "The panels show 2 of the 4 probed datasets (a and c), taken in turn from each domain."
    )


def test_panels_text_names_the_datasets_that_cannot_be_drawn():
    """Chapters 10 and 11 drew a dataset every model failed on as an empty panel titled
    "Spearman nan": it is left out and named, and "taken in turn from each domain" is said only
    when the panel count left out drawable datasets."""
    order = ["a", "b", "c", "d"]
    assert T.panels_text(["a", "b", "d"], order, undefined=["c"]) == (
        "The panels show 3 of the 4 datasets (a, b and d); c has no defined similarity and is "
        "not drawn."
    )
    assert T.panels_text(["a"], order, undefined=["d", "c"], why="no defined rsa") == (
        "The panels show 1 of the 4 datasets (a), taken in turn from each domain; c and d have "
        "no defined rsa and are not drawn."
    )
    assert T.panels_text([], ["c"], undefined=["c"]) == (
        "No panel is drawn: c has no defined similarity."
    )


def _zoo(ids: list[str], objective: list[str], arch: list[str]) -> xr.DataArray:
    """A similarity array's model axis with the coords the design is read from."""
    return xr.DataArray(
        np.zeros(len(ids)),
        dims=["model_a"],
        coords={
            "model_a": ids,
            "objective_a": ("model_a", objective),
            "architecture_class_a": ("model_a", arch),
        },
    )


def test_the_zoo_design_counts_the_runs_own_seeds():
    """The controlled chapter said "three seeds each" whatever seeds the run selected."""
    cells = [
        (o, a, s) for o in ("Supervised", "Image-Text") for a in ("cnn", "mlp") for s in (0, 1)
    ]
    cells += [("Random", "cnn", 0)]
    zoo = _zoo(
        [f"{a}-{o}-s{s}" for o, a, s in cells],
        [o for o, _, _ in cells],
        [{"cnn": "Convolutional", "mlp": "MLP"}[a] for _, a, _ in cells],
    )
    assert T.zoo_design_text(zoo) == (
        "This run has 9 models: 8 trained, crossing 2 objectives (Supervised and Image-Text) with "
        "2 architecture classes (Convolutional and MLP), 2 seeds in each cell (seeds 0 and 1), "
        "and 1 untrained control (Random)."
    )
    part = zoo.isel(model_a=[0, 1, 2, 4])  # Supervised cnn s0, s1, mlp s0; Image-Text cnn s0
    assert T.zoo_design_text(part, selection="4 of 9 models") == (
        "This chapter's part of the run (4 of 9 models) has 4 models: 4 trained, crossing 2 "
        "objectives (Supervised and Image-Text) with 2 architecture classes (Convolutional and "
        "MLP), 1 to 2 seeds per cell, 3 of the 4 cells present (seeds 0 and 1)."
    )
    unseeded = _zoo(["a", "b"], ["Supervised"] * 2, ["MLP"] * 2)
    assert T.zoo_design_text(unseeded) == (
        "This run has 2 models, not a design of objective x architecture x seed that this "
        "chapter can count; the test section below says what it lacks."
    )


def test_behaviour_text_mean_r_is_not_shown_as_zero_beside_a_sign():
    corr = pd.DataFrame({"dataset": ["x", "y"], "domain": ["D", "D"], "pearson_r": [-0.2, 0.192]})
    text = T.behaviour_text(corr)
    assert "negatively correlated" in text and "(mean r = -0.004" in text


def test_fmt_against_in_scientific_notation_keeps_the_side():
    thr = 0.01 / 48  # 0.000208333: a Bonferroni threshold
    assert T.fmt_against(0.0002079, thr, 1, "e") == "2.08e-04"
    assert T.fmt_against(0.00021, thr, 1, "e") == "2.1e-04"
    assert T.fmt_against(5e-08, thr, 1, "e") == "5.0e-08"
    assert T.fmt_against(0.00020004, 0.01 / 50, 1, "e") == "2.0004e-04"  # above 2e-04


def test_fmt_against_a_value_within_float_rounding_of_its_threshold():
    """A value a few ulps below the threshold needs all 17 digits to show below it (16
    decimals fell short and it was shown as the threshold, which the verdict counts as
    reached); one a few ulps above it is shown on it, as reached."""
    assert T.fmt_against(0.15 - 0.1, 0.05) == "0.04999999999999999"
    assert T.fmt_against(0.55 - 0.5, 0.05) == "0.05"
    assert T.fmt_against(0.05, 0.05) == "0.05"


def test_transform_changes_just_under_the_tolerance_do_not_show_on_it():
    """'arccos at most 0.05 (median 0.05; 0 of 1 by 0.05 or more)': a change of 0.0499 showed
    as the tolerance beside the count that says none reached it."""
    t = pd.DataFrame({"none": [0.5], "arccos": [0.5499], "tan": [0.5]})
    text = T.transform_text(t)
    assert "arccos at most 0.0499 (median 0.0499; 0 of 1 by 0.05 or more)" in text
    assert text.endswith("practically unchanged.")
    at = T.transform_text(t.assign(arccos=[0.55]))  # at the tolerance: moved, shown on it
    assert "arccos at most 0.05 (median 0.05; 1 of 1 by 0.05 or more)" in at


def test_transform_figure_shows_its_largest_change_against_the_sentences_tolerance():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from repsim import plots as P

    table = pd.DataFrame(
        {
            "dataset_a": ["a", "a"],
            "dataset_b": ["b", "c"],
            "none": [0.5, 0.6],
            "arccos": [0.5499, 0.6],
        }
    )
    fig = P.transform_consistency(table)
    assert fig.axes[0].get_title() == "arccos: largest change 0.0499"
    plt.close(fig)


def test_study_measures_text_names_each_row_s_measure_whatever_the_chapter_s_measure():
    """Chapter 2 took a measure parameter and computed its behaviour rows with cka_linear
    without a word: the sentence names each kind of row's measure, from the comparison, and says
    the parameter changes none of them."""
    comparison = pd.DataFrame(
        {
            "quantity": ["consistency", "consistency", "behavior_r", "n_models"],
            "measure": ["cka_linear", "cka_rbf_0.4", "cka_linear", ""],
        }
    )
    text = T.study_measures_text(comparison, "rsa_spearman")
    assert (
        "the consistency of dataset pairs with cka_linear and cka_rbf_0.4; the "
        "similarity-behaviour correlations with cka_linear." in text
    )
    assert "The chapter's measure parameter (rsa_spearman) changes none of them" in text
    assert not T.untested_claims(text)
    assert T.study_measures_text(comparison.iloc[3:], "cka_linear") == ""


def test_model_map_text_says_what_the_map_embeds():
    """Chapter 3 described its model map as 1 - the mean similarity across datasets, also on
    one dataset and over a dataset with no defined similarity."""

    def emb(*used: str) -> pd.DataFrame:
        out = pd.DataFrame({"model": ["a", "b", "c"]})
        out.attrs.update(measure="cka_linear", datasets=list(used))
        return out

    head = "The distance between two models in this map is 1 - their"
    assert T.model_map_text(emb("faces"), ["faces"]) == (
        f"{head} cka_linear on faces, the chapter's one dataset: there is no mean across datasets."
    )
    assert T.model_map_text(emb("faces"), ["faces", "cells", "digits"]) == (
        f"{head} cka_linear on faces, the only one of the 3 datasets with a defined cka_linear: "
        "there is no mean across datasets."
    )
    assert T.model_map_text(emb("faces", "digits"), ["faces", "digits"]) == (
        f"{head} mean cka_linear across the 2 datasets."
    )
    assert T.model_map_text(emb("faces", "digits"), ["faces", "cells", "digits"]) == (
        f"{head} mean cka_linear across 2 of the 3 datasets (cells has no defined cka_linear)."
    )


def test_study_grouping_text_says_the_category_parameter_does_not_regroup_the_study_s_rows():
    """Chapter 2 took a category parameter and grouped its rows by objective, unsaid."""
    from repsim.reference import STUDY_GROUPING

    assert STUDY_GROUPING == "objective" and T.study_grouping_text("objective") == ""
    assert T.study_grouping_text("architecture_class") == (
        "The model groups of these rows (their models column) are the study's published "
        "grouping, by objective; the chapter's category (architecture_class) does not change "
        "them, since the study published no numbers per architecture_class."
    )


def _part_sim() -> xr.Dataset:
    """4 models (not the study's) on two of the study's datasets: the all-pairs consistency of
    the two can be computed, with no verdict."""
    rng = np.random.default_rng(0)
    ids = ["m0", "m1", "m2", "m3"]
    vals = rng.uniform(0.2, 0.9, size=(2, 4, 4))
    vals = (vals + vals.transpose(0, 2, 1)) / 2
    vals[:, range(4), range(4)] = 1.0
    objectives = ["Supervised", "Supervised", "Image-Text", "Image-Text"]
    return xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), vals)},
        coords={
            "dataset": ["imagenet-subset-10k", "wds/vtab/flowers"],
            "model_a": ids,
            "model_b": ids,
            "objective_a": ("model_a", objectives),
            "objective_b": ("model_b", objectives),
        },
        attrs={"run": "part"},
    )


def test_a_chapter_s_part_of_a_run_is_named_in_one_place(tmp_path, monkeypatch):
    """ "this part of the run" and "this part's" were spelled in reference.py (a row's basis),
    analysis.py (chapter 2's column labels and status) and the comparison summary: the words
    for a part are sentences.PART (and shown()), which every one of them uses."""
    import ast
    from pathlib import Path

    import repsim
    from repsim import analysis, reference
    from repsim.chapter import Run

    root = Path(repsim.__file__).parent
    spelled = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.search(r"this part\b|part of it\b", node.value, re.I):
                    spelled.add(str(path.relative_to(root)))
    assert spelled == {"sentences.py"}
    # each use follows the one spelling
    part = "4 of 9 models"
    run = Run(path=tmp_path, similarity=_part_sim(), selection=part)
    monkeypatch.setattr(T, "PART", "the chosen part")
    table = reference.compare(run)
    assert "the design of the chosen part of the run" in set(table["run_basis"])
    shown = analysis.study_beside_run(table, "consistency")
    assert {"the chosen part of the run", "basis of the chosen part's value"} <= set(shown.columns)
    assert "not in the chosen part" in set(shown["status"])
    said = reference.summary(table)
    assert said.startswith(f"Run 'part', this chapter's part of the run ({part}), against")
    assert "The chosen part shares 0 of its 4 models with the study" in said
