"""Tests of repsim.sentences: the chapters' conclusion sentences, their numbers and every branch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from repsim import sentences as T


def test_framework_text_places_the_pair_among_all_pairs():
    values = pd.Series([0.1, 0.2, 0.3, np.nan, 0.9])
    text = T.framework_text(28, "a", "b", 0.25, values)
    # 2 of the 4 defined values lie below 0.25; their median is 0.25
    assert text == (
        "Over 28 model pairs, the consistency of **a** and **b** is r = **0.25**; 50% of the "
        "run's 4 dataset pairs are less consistent (median 0.25)."
    )
    assert T.framework_text(3, "a", "b", float("nan"), values).endswith("r = **undefined**.")
    assert T.framework_text(3, "a", "b", 0.5, pd.Series([0.4])).endswith("**0.50**.")


def test_transfer_text_names_the_steadiest_pair():
    table = pd.DataFrame(
        {
            "category_pair": ["A | A", "A | A", "A | B"],
            "mean": [0.5, 0.7, 0.4],
            "std": [0.1, 0.3, 0.05],
        }
    )
    by = table.groupby("category_pair")["std"].agg(["median", "count"]).sort_values("median")
    text = T.transfer_text(table, by)
    assert "standard deviation of **0.10**" in text and "mean similarity is 0.50" in text
    assert "steadiest category pair is **A | B** (0.05), the least steady **A | A** (0.20)" in text
    assert "steadiest" not in T.transfer_text(table, by.iloc[:1])


def test_transform_text_says_whether_consistency_moves():
    t = pd.DataFrame({"none": [0.5, 0.6], "arccos": [0.52, 0.6], "tan": [0.5, 0.61]})
    text = T.transform_text(t)
    assert "largest change of consistency is 0.02 with arccos and 0.01 with tan" in text
    assert text.endswith("practically unchanged.")
    assert T.transform_text(t.assign(tan=[0.5, 0.7])).endswith("noticeably on this run.")


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


def test_grouping_spread_text_three_branches():
    two = pd.DataFrame({"group_by": ["objective", "size_class"], "range": [0.4, 0.1]})
    assert T.grouping_spread_text(two) == (
        "The medians of the category pairs differ most when models are grouped by **objective** "
        "(range 0.40) and least by **size_class** (0.10)."
    )
    assert "Only **objective** has two or more" in T.grouping_spread_text(two.iloc[:1])
    assert "cannot be compared" in T.grouping_spread_text(two.iloc[:0])


def test_measure_texts_of_the_local_global_chapter():
    agree = pd.DataFrame(
        {"dataset": ["x", "y", "x"], "r": [0.9, 0.5, np.nan], "measure": ["m1", "m1", "m2"]}
    )
    text = T.measure_agreement_text(agree, "cka")
    assert "median Spearman **0.70** (lowest 0.50, on y with m1)" in text
    assert "No dataset" in T.measure_agreement_text(agree.iloc[2:], "cka")
    medians = pd.DataFrame({"m1": [0.2, 0.6], "m2": [0.3, 0.1]}, index=["A | A", "A | B"])
    text = T.top_pair_text(medians, "objective")
    assert "m1: **A | B**, m2: **A | A**" in text and "disagree" in text
    assert "the same under every measure" in T.top_pair_text(medians[["m1"]], "objective")
    assert "Fewer than two objective pairs" in T.top_pair_text(medians.iloc[:1], "objective")
    pairs = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "y": [0.2, 0.1, 0.5, 0.3]})
    r = stats.pearsonr(pairs.x, pairs.y)[0]
    assert T.local_global_text(pairs, "knn", "cka") == (
        f"knn against cka: over 4 values, Pearson r = **{r:.2f}**; the local measure is the "
        "more consistent one for 2 of them."
    )


def test_platonic_text_branches():
    medians = pd.DataFrame(
        {"cka": [0.6, 0.4, 0.2, np.nan], "knn": [0.1, 0.5, 0.3, 0.9]},
        index=["A | A", "A | B", "B | B", "C | C"],
    )
    text = T.platonic_text(medians, "cka", "knn", "objective")
    rho = stats.spearmanr([0.6, 0.4, 0.2], [0.1, 0.5, 0.3])[0]
    assert text == (
        "The most consistent objective pair is **A | A** under cka and **C | C** under knn; the "
        f"ranking of the 3 pairs agrees between the two measures with Spearman **{rho:.2f}**."
    )
    two = T.platonic_text(medians.iloc[:2], "cka", "knn", "objective")
    assert "Spearman" not in two and two.endswith("under knn.")
    assert "Fewer than two" in T.platonic_text(medians.iloc[:1], "cka", "knn", "objective")
    assert "Fewer than two" in T.platonic_text(medians[["knn"]], "cka", "knn", "objective")


def test_robustness_texts():
    stab = pd.DataFrame({"n": [8, 8, 16, 16], "abs_error": [0.1, 0.2, 0.01, 0.02]})
    assert "falls below 0.02 from **n = 16** on" in T.stability_text(stab, 40, "cells", 0.02)
    assert "from no subset size tried on" in T.stability_text(stab, 40, "cells", 0.001)
    spread = pd.DataFrame({"pair": ["a~b", "a~c", "b~c"], "se": [0.01, 0.03, 0.02]})
    assert T.subsample_text(spread, 20, 100) == (
        "Standard error of pair similarity over 3 pairs (spread over 20 random halves of 100 "
        "stimuli): median **0.020**, largest 0.030 (a~c)."
    )


def test_fixed_design_and_controlled_notices():
    models = pd.DataFrame(
        {"data_class": ["toy"] * 3, "size_class": ["small", "small", "large"], "training_data": ""}
    )
    assert (
        T.fixed_design_text(models) == "Held fixed across this run's models: **data_class** = toy."
    )
    assert "nothing recorded" in T.fixed_design_text(models.drop(columns="data_class"))
    assert T.no_boxes_text("objective") == (
        "Grouped by *objective*, fewer than two category pairs have 3 or more model pairs: "
        "no figure."
    )
    assert T.no_controlled_table_text("too few seeds") == "No table: too few seeds."
    assert T.missing_group_pairs_text(["a", "b"]) == (
        "Not in this run (or fewer than 3 model pairs): `a`, `b`."
    )


def test_run_text_names_run_size_and_choices(tmp_path):
    run = SimpleNamespace(name="r1", path=tmp_path / "folder", measures=["cka_linear", "rsa"])
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


@pytest.mark.parametrize(
    "x, want", [(0.123, "0.12"), (float("nan"), "undefined"), (None, "undefined")]
)
def test_fmt(x, want):
    assert T.fmt(x) == want
