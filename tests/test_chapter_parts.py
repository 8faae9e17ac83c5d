"""Chapters on small parts of a run (a chapter's ``models=`` / ``datasets=`` parameters): the
tables and sentences behind them on parts of 3 models, one model per objective, only untrained
controls, or 2-3 datasets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from repsim import analysis as A
from repsim import chapter as CH
from repsim import sentences as T


def _sim(objectives, n_datasets=4, seed=0, measures=("cka_linear",)) -> xr.Dataset:
    """A similarity dataset of models with the given objectives (ids m0, m1, ...)."""
    rng = np.random.default_rng(seed)
    n = len(objectives)
    ids = [f"m{i}" for i in range(n)]
    data = {}
    for name in measures:
        vals = rng.uniform(0.2, 0.9, size=(n_datasets, n, n))
        vals = (vals + vals.transpose(0, 2, 1)) / 2
        vals[:, np.arange(n), np.arange(n)] = 1.0
        data[name] = (("dataset", "model_a", "model_b"), vals)
    return xr.Dataset(
        data,
        coords={
            "dataset": [f"d{k}" for k in range(n_datasets)],
            "model_a": ids,
            "model_b": ids,
            "domain": ("dataset", ["Structured"] * n_datasets),
            "objective_a": ("model_a", list(objectives)),
            "objective_b": ("model_b", list(objectives)),
        },
    )


def test_split_consistency_of_one_model_per_objective_keeps_all_pairs_only():
    # a part of one model per objective: run_consistency drops the objective grouping, and the
    # train-split consistency of the robustness chapter raised InputError there
    sim = _sim(["Supervised", "Self-Supervised", "Image-Text", "Random"])
    held = sim["cka_linear"]
    variants = xr.Dataset({"held_out": held, "train": held * 0.9 + 0.05})
    cons = A.split_consistency(variants)
    assert set(cons.label) == {"all"} and len(cons) == 6  # 4 datasets: 6 dataset pairs
    summary = A.split_consistency_summary(cons)
    assert list(summary.index) == ["all"]
    assert isinstance(summary, pd.DataFrame)


def test_zoo_accuracy_text_of_untrained_controls_only():
    # a part of three untrained controls said "The 0 trained models were trained for [] epochs."
    models = pd.DataFrame(
        {"objective": ["Random"] * 3, "epochs": [0] * 3, "model": ["r0", "r1", "r2"]}
    )
    text = T.zoo_accuracy_text(models, None, "")
    assert "All 3 models shown are untrained controls" in text
    assert "[]" not in text and "0 trained" not in text
    one = T.zoo_accuracy_text(models.head(1), None, "")
    assert "The one model shown is an untrained control" in one
    two = T.zoo_accuracy_text(
        pd.DataFrame({"objective": ["Supervised"] * 2, "epochs": [20, 40], "model": ["a", "b"]}),
        None,
        "",
    )
    assert "The 2 trained models were trained for 20 or 40 epochs (by model)." in two
    # the table's cells hold a mean and a range over seeds only where a cell has several models
    cells = pd.DataFrame(
        {"objective": ["Supervised"] * 2, "epochs": [20] * 2, "model": ["a-s0", "b-s0"]}
    ).assign(method="Cross-entropy", architecture=["CNN", "MLP"])
    assert "one model per cell" in T.zoo_accuracy_text(cells, None, "")
    seeds = T.zoo_accuracy_text(cells.assign(architecture="CNN"), None, "")
    assert "mean over seeds, range in brackets" in seeds


def test_the_zoo_accuracy_caption_says_what_the_tables_cells_hold():
    """The caption's "one model per cell" and the table's cells come from one rule: a cell shows a
    range exactly when the caption says ranges are in brackets."""
    models = pd.DataFrame(
        {"method": "Cross-entropy", "architecture": ["CNN", "MLP"], "accuracy": [0.5, 0.6]}
    ).assign(objective="Supervised", epochs=20, model=["a-s0", "b-s0"])
    for frame, ranges in ((models, False), (models.assign(architecture="CNN"), True)):
        cells = "".join(A.zoo_accuracy_table(frame).to_numpy().ravel())
        caption = T.zoo_accuracy_text(frame, None, "")
        assert ("(" in cells) == ranges == (not A.one_model_per_zoo_cell(frame))
        assert ("range in brackets" in caption) == ranges != ("one model per cell" in caption)


def test_need_says_the_part_not_the_run_lacks_models_or_datasets():
    # chapter 12 on 3 of 45 models read "This needs at least 4 models and the run has 3"
    sim = _sim(["Supervised"] * 3 + ["Random"] * 3, n_datasets=4)
    run = CH.Run(path=Path("."), similarity=sim)
    part = CH.select_run(run, datasets=["d0", "d1"], models=["m0", "m1", "m2"])
    ch = CH.Chapter(run=part, sim=part.similarity, measure="cka_linear", category="objective")
    why = ch.need(min_models=4)
    assert "this chapter's part of the run (3 of 6 models and 2 of 4 datasets) has 3" in why
    assert "and the run has" not in why
    assert "of 4 datasets) has 2 (d0, d1)" in ch.need(min_datasets=3)
    assert "every dataset of this chapter's part of the run (3 of 6" in ch.need(min_domains=2)
    whole = CH.Chapter(run=run, sim=sim, measure="cka_linear", category="objective")
    assert "and the run has 6, so" in whole.need(min_models=7)


def test_heatmap_chapter_sentences_name_the_part():
    # chapter 7 on 3 datasets of three domains read "The run lacks dataset pairs of the same
    # domain or of different domains", and on 4 of 45 models "Not in this run: ..."
    nan = float("nan")
    cols = ["same domain", "different domains", "difference", "p"]
    no_same = pd.DataFrame([[nan, 0.3, nan, nan]], index=["all"], columns=cols)
    text = T.domain_contrast_text(no_same, "3 of 10 datasets")
    assert text.startswith(
        "No two datasets of this chapter's part of the run (3 of 10 datasets) share a domain, so"
    )
    one_domain = pd.DataFrame([[0.3, nan, nan, nan]], index=["all"], columns=cols)
    assert T.domain_contrast_text(one_domain).startswith("Every dataset of the run is of one")
    assert T.missing_group_pairs_text(["a"], "4 of 45 models") == (
        "Not in this chapter's part of the run (4 of 45 models), or with fewer than 3 model "
        "pairs there: `a`."
    )


def _partner_tests(n_pairs: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "anchor": ["a"],
            "partner_a": ["S"],
            "partner_b": ["T"],
            "statistic": [1.0],
            "p": [0.1],
            "p_threshold": [0.01],
            "significant": [False],
            "n": [n_pairs],
        }
    )


def test_partner_tests_text_on_three_datasets_does_not_call_p_values_too_small():
    # chapter 12 on 3 datasets: "its p-values are far too small (in a simulation with 3
    # datasets ... 0% of such tests gave p < 0.01, where a valid test gives 1%)"
    few = T.partner_tests_text(_partner_tests(3), 0.01)
    assert "simulation with 3 datasets" in few and "0% of such tests" in few
    assert "its p-values are far too small (" not in few
    assert "with so few dataset pairs, it can hardly give a small p at all" in few
    more = T.partner_tests_text(_partner_tests(6), 0.01)  # 4 datasets: 6% against 1%
    assert "its p-values are far too small (in a simulation with 4 datasets" in more


def test_consistency_pairs_of_one_objective_count_each_value_once():
    # 3 models of one objective: "Supervised | Supervised" holds every model pair, so chapters
    # 10 and 13 counted each consistency value twice ("over 90 values" for 45 dataset pairs)
    from repsim.consistency import consistency_dataset, consistency_pairs

    cons = consistency_dataset(_sim(["Supervised"] * 3, n_datasets=4), by=["objective"])
    assert "objective: Supervised | Supervised" in set(map(str, cons.group_pair.values))
    x, y = ("cka_linear", "consistency"), ("cka_linear", "consistency_spearman")
    pairs = consistency_pairs(cons, x, y, ("all", "objective"))
    assert list(pairs.label.unique()) == ["all"] and len(pairs) == 6
    # with two objectives, each category pair is a proper subset and stays
    mixed = consistency_dataset(_sim(["S", "S", "S", "T", "T", "T"], n_datasets=4))
    labels = set(consistency_pairs(mixed, x, y, ("all", "objective")).label)
    assert labels == {"all", "S | S", "S | T", "T | T"}


def test_within_between_text_says_what_the_models_shown_lack():
    # chapter 3 on 3 models of one objective read "The run has no model pairs of the same
    # objective and of different objective": the run had both, the part lacked different pairs
    nan = float("nan")
    one_objective = pd.DataFrame({"same category": [0.7, 0.8], "different category": [nan, nan]})
    text = T.within_between_text(one_objective, "objective")
    assert text.startswith("Every model shown has the same objective, so there are no model")
    assert "The run" not in text
    one_each = pd.DataFrame({"same category": [nan, nan], "different category": [0.5, 0.6]})
    assert T.within_between_text(one_each, "objective").startswith(
        "No two of the models shown have the same objective"
    )


def test_counts_of_one_read_in_the_singular():
    # "over 1 pairs" (chapter 13 on 2 chosen models), "1 dataset pairs chosen" (chapter 5 on 2
    # datasets), "median over 1 dataset pairs" (chapter 13 on 2 datasets)
    spread = pd.DataFrame({"pair": ["a~b"], "se": [0.01], "estimate": [0.5], "m": 50, "n": 100})
    assert "over 1 pair (spread over 20" in T.subsample_text(spread, 20, 100)
    table = pd.DataFrame({"all": [0.3], "S": [0.8], "T": [0.7]}, index=["d0 / d1"])
    assert "1 chosen dataset pair cannot order the categories of objective (the objective" in (
        T.scatter_text(table, "objective")
    )
    # no "architecture_classs", and no test promised for a field the controlled tests lack
    assert "categories of architecture_class (the architecture factor is tested" in (
        T.scatter_text(table, "architecture_class")
    )
    assert T.scatter_text(table, "size_class").endswith(
        "cannot order the categories of size_class."
    )
    agree = pd.DataFrame(
        {"dataset": ["d0", "d1"], "r": [0.99, 0.98], "mean_difference": [0.01, -0.01]}
    )
    summary = pd.DataFrame(
        {"held_out": [0.3], "train": [0.3], "difference": [0.0], "n": [1]}, index=["all"]
    )
    assert "(median over 1 dataset pair)" in T.train_split_text(
        agree, summary, "cka_linear", "objective"
    )


def test_framework_text_on_a_part_places_the_pair_among_the_parts_pairs():
    # chapter 1 on 3 of 10 datasets read "it lies above 0% of the run's 2 other dataset pairs"
    values = pd.Series([0.29, 0.42, 0.65])
    text = T.framework_text(990, "faces", "shapes", 0.29, values, "3 of 10 datasets")
    assert "of the 2 other dataset pairs of this chapter's part of the run (3 of 10 datasets; " in (
        text
    )
    assert ") (" not in text  # one bracket: the part, then the median
    assert "the run's" not in text and "this run's" not in text
    assert "of the run's 2 other dataset pairs" in T.framework_text(990, "a", "b", 0.29, values)


def test_partner_tests_text_when_each_anchor_has_one_partner_category():
    # chapter 12 on 3 Convolutional and 1 Transformer model, grouped by architecture_class:
    # every anchor's kept partners are of one category, so there are no tests at all; the
    # sentence blamed too few dataset pairs (there were 45)
    empty = _partner_tests(3).iloc[0:0]
    text = T.partner_tests_text(empty, 0.01)
    assert "partners in two categories with enough partner models each" in text
    assert "dataset pairs" not in text


def test_what_a_part_cannot_show_is_not_said_of_the_run():
    # chapter 0 on one model per objective: "the within-category comparison of the study cannot
    # be made on this run" (the run has 9 models per objective); chapter 12: "no rank-sum test
    # can be run on this run"
    summary = pd.DataFrame(
        {"group_by": ["all"], "label": ["all"], "median": [0.2], "q25": [0.0], "q75": [0.4]}
    )
    text = T.overview_text(summary.assign(n=45), "cka_linear", "objective")
    assert "cannot be made here." in text and "on this run" not in text
    untestable = pd.DataFrame({"p": [np.nan], "p_threshold": [0.01]})
    assert T.rank_sum_text(untestable, 0.01).endswith("no rank-sum test can be run here.")


def test_select_run_keeps_the_order_asked_for_and_names_its_part():
    """All datasets in another order are the whole run in that order (the chapter's figures
    follow it), with no part named; a part of the models gets its consistency recomputed, which
    says which part it is of."""
    from repsim.results import run_consistency

    sim = _sim(["Supervised"] * 3 + ["Image-Text"] * 3, n_datasets=4)
    run = CH.Run(path=Path("."), similarity=sim, consistency=run_consistency(sim)[0])
    whole = CH.select_run(run, datasets=["d3", "d2", "d1", "d0"])
    assert list(whole.similarity.dataset.values) == ["d3", "d2", "d1", "d0"]
    assert whole.selection == "" and whole.consistency is run.consistency
    part = CH.select_run(run, models=["m0", "m1", "m3", "m4"])
    assert part.selection == part.consistency.attrs["selection"] == "4 of 6 models"


def test_domain_order_puts_datasets_of_unknown_domain_last():
    sim = _sim(["Supervised"] * 3, n_datasets=4)
    sim = sim.assign_coords(domain=("dataset", ["", "Structured", "other", "Specialized"]))
    assert CH.domain_order(sim) == ["d3", "d1", "d0", "d2"]


def test_a_text_table_wraps_its_cells_and_keeps_its_text_whole():
    """The study-numbers page's sources table cut descriptions at 50 characters, then (whole)
    ran them behind a scroll bar, since number cells stay on one line: a text table carries the
    class the book's stylesheet wraps, and no index."""
    from html import unescape

    from repsim.chapter import TEXT_TABLE_CLASS, text_table

    long = "Pearson consistency of ImageNet-1k and Flowers-102 over all the study's model pairs"
    html = text_table(pd.DataFrame({"id": ["a"], "description": [long]})).to_html()
    shown = unescape(html.replace("<wbr>", ""))  # escaped, with break opportunities (below)
    assert f'class="{TEXT_TABLE_CLASS}"' in html and long in shown
    assert ">0<" not in html  # no index column
    css = (Path(__file__).resolve().parents[1] / "book" / "_static" / "repsim.css").read_text()
    rule = css.split("table.text-table td", 1)[1].split("}", 1)[0]
    assert "white-space: normal" in rule and TEXT_TABLE_CLASS.split()[-1] == "text-table"


def test_a_text_table_breaks_its_ids_after_slashes_not_mid_word():
    """The sources table's ids have no spaces, and ``overflow-wrap: anywhere`` let the browser
    size their column to a few letters ("consisten" / "cy/cka_lin"): each "/" and "_" of a text
    cell is followed by a <wbr> (not copied with the text), the cells are HTML-escaped, and the
    stylesheet breaks a word only where one alone overflows."""
    from repsim.chapter import text_table

    ident = "consistency/cka_linear/all/ImageNet-Flowers"
    table = pd.DataFrame({"id": [ident, "b"], "study": [0.71, np.nan], "note": ["x < y & z", "ok"]})
    html = text_table(table).to_html()
    cells = re.findall(r"<td [^>]*>(.*?)</td>", html)
    assert cells[0] == "consistency/<wbr>cka_<wbr>linear/<wbr>all/<wbr>ImageNet-Flowers"
    assert cells[0].replace("<wbr>", "") == ident
    assert cells[1:3] == ["0.710", "x &lt; y &amp; z"] and cells[4] == "NaN"
    css = (Path(__file__).resolve().parents[1] / "book" / "_static" / "repsim.css").read_text()
    rule = css.split("table.text-table td", 1)[1].split("}", 1)[0]
    assert "overflow-wrap: break-word" in rule and "anywhere" not in rule


def test_one_dataset_has_no_spread_across_datasets_to_draw():
    """Chapter 3 on one dataset drew a "mean across datasets" panel that was that dataset again
    and a blank "std across datasets" panel, and said nothing: the chapter says why they are not
    drawn, of its part of the run or of the run."""
    sim = _sim(["Supervised"] * 3 + ["Random"] * 3, n_datasets=4)
    run = CH.Run(path=Path("."), similarity=sim)
    part = CH.select_run(run, datasets=["d2"])
    ch = CH.Chapter(run=part, sim=part.similarity, measure="cka_linear", category="objective")
    assert ch.spread_skip("the mean and standard-deviation panels") == (
        "This chapter's part of the run (1 of 4 datasets) has one dataset (d2): there is no mean "
        "or spread across datasets, so the figure leaves out the mean and standard-deviation "
        "panels."
    )
    one = sim.isel(dataset=[0])
    alone = CH.Chapter(
        run=CH.Run(path=Path("."), similarity=one), sim=one, measure="cka_linear", category="c"
    )
    assert alone.spread_skip("the std panel").startswith("This run has one dataset (d0): ")
    assert alone.spread_skip("the std panel").endswith("so the figure leaves out the std panel.")
    two = CH.select_run(run, datasets=["d0", "d3"])
    ch2 = CH.Chapter(run=two, sim=two.similarity, measure="cka_linear", category="objective")
    assert ch2.spread_skip("the mean and standard-deviation panels") is None


def test_a_table_of_numbers_wraps_only_its_long_text():
    """Chapter 2's tables of the study's values beside the run's scrolled sideways: their basis
    column is prose, and every cell of a table of numbers stays on one line. With
    ``wrap="long"`` the cells of a column of long text carry the class the stylesheet wraps;
    numbers and short labels do not."""
    from repsim.chapter import LONG_TEXT, TEXT_CELL_CLASS, text_table
    from repsim.errors import InputError

    basis = "45 models, 990 pairs; 0 of them are the study's models, so no verdict is given"
    assert len(basis) > LONG_TEXT
    table = pd.DataFrame(
        {"measure": ["cka_linear", "cka_rbf_0.4"], "study": ["0.70", "-0.52"],
         "this run": ["-0.4125", np.nan], "basis": [basis, "short"]},
        index=[24, 25],
    )  # fmt: skip
    html = text_table(table, wrap="long").to_html()
    cells = re.findall(r"<td ([^>]*)>([^<]*)</td>", html)
    wrapped = {text.strip() for attrs, text in cells if TEXT_CELL_CLASS in attrs}
    assert wrapped == {basis, "short"}  # the whole column, numbers nowhere
    assert 'class="dataframe"' in html and ">24<" not in html  # no index
    assert "-0.4125" in html and "NaN" in html and "0.70" in html
    css = (Path(__file__).resolve().parents[1] / "book" / "_static" / "repsim.css").read_text()
    rule = css.split(f"table.dataframe td.{TEXT_CELL_CLASS}", 1)[1].split("}", 1)[0]
    assert "white-space: normal" in rule
    with pytest.raises(InputError, match="wrap must be 'all' or 'long'"):
        text_table(table, wrap="numbers")
