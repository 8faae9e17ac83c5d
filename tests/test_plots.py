"""Tests of repsim.plots: every figure function draws labelled axes from a fake run."""

from __future__ import annotations

import importlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from helpers_run import write_fake_run  # noqa: E402

from repsim import analysis as A  # noqa: E402
from repsim import behavior as B  # noqa: E402
from repsim import chapter as CH  # noqa: E402
from repsim import names as N  # noqa: E402
from repsim import plots as P  # noqa: E402
from repsim import stats as S  # noqa: E402

# the module: ``repsim.consistency`` as an attribute of the package is the function
C = importlib.import_module("repsim.consistency")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> CH.Run:
    return CH.load_run(
        write_fake_run(tmp_path_factory.mktemp("run"), n_per_objective=3, features=False)
    )


def _check(fig, caption: str | None = None) -> None:
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert axes, "figure has no data"
    for ax in axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() or ax.get_xticklabels() or ax.get_title()
    if caption:
        assert any(caption[:20] in t.get_text() for t in fig.texts)
    plt.close(fig)


def test_category_colours_are_stable_and_mix():
    assert P.category_color("Self-Supervised") == P.CATEGORY_COLORS["Self-Supervised"]
    assert P.category_color("Image-Text | Image-Text") == P.CATEGORY_COLORS["Image-Text"]
    assert P.category_color("a | b") == P.category_color("a | b")
    assert P.category_color("Image-Text | Supervised") not in P.CATEGORY_COLORS.values()
    assert P.category_color("unseen category") == P.category_color("unseen category")


def test_a_pair_of_two_categories_is_drawn_half_in_each_colour():
    """Points and legend marks of ``"A | B"``: half A's colour, half B's (the average of the two
    made ten objective pairs hard to tell apart); ``"A | A"`` is whole, in A's colour."""
    fig, ax = plt.subplots()
    sup, ssl = P.CATEGORY_COLORS["Supervised"], P.CATEGORY_COLORS["Self-Supervised"]
    first = P.pair_points(ax, [0.1, 0.2], [0.3, 0.4], "Supervised | Self-Supervised", s=10)
    whole = P.pair_points(ax, [0.5], [0.6], "Supervised | Supervised", s=10)
    second = [c for c in ax.collections if c.get_gid() == P.SECOND_HALF]
    assert len(ax.collections) == 3 and len(second) == 1
    colours = [matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in (first, second[0], whole)]
    assert colours == [sup, ssl, sup]
    np.testing.assert_array_equal(second[0].get_offsets(), first.get_offsets())
    (mixed, same) = P._handles(["Supervised | Self-Supervised", "Supervised | Supervised"])
    assert (mixed.get_fillstyle(), mixed.get_markerfacecolor(), mixed.get_markerfacecoloralt()) == (
        "left",
        sup,
        ssl,
    )
    assert (same.get_fillstyle(), same.get_markerfacecolor()) == ("full", sup)
    plt.close(fig)


def test_similarity_figures(run):
    da = run.similarity["cka_linear"]
    order = CH.domain_order(run.similarity)
    cap = run.caption("cka_linear")
    base = C.consistency_table(run.consistency, "cka_linear", "all")
    pairs = C.dataset_pair_table(da, order[0], order[-1])
    r = S.correlate(pairs[order[0]], pairs[order[-1]])
    _check(P.framework_figure(da, pairs, r, base, order[0], order[-1], caption=cap), cap)
    _check(P.clustered_matrices(da, order, caption=cap), cap)
    _check(P.mean_std_scatter(A.mean_std_across_datasets(da), caption=cap), cap)
    dpairs = [(order[0], order[1])]
    tables = {(a, b): C.dataset_pair_table(da, a, b) for a, b in dpairs}
    within = C.within_category_consistency(da, dpairs)
    _check(P.consistency_scatter(tables, within, caption=cap), cap)
    sim = run.similarity
    fig = P.measure_vs_measure(
        A.measure_pair_table(sim, "cka_linear", "mutual_knn_10", order[:2]),
        A.measure_agreement(sim, "cka_linear", "mutual_knn_10", "spearman", order[:2]),
        "cka_linear",
        "mutual_knn_10",
    )
    assert [ax.get_title().split(":")[0] for ax in fig.axes if ax.has_data()] == order[:2]
    _check(fig)


def test_consistency_figures(run):
    cons = run.consistency
    base = C.consistency_table(cons, "cka_linear", "all")
    tidy = C.consistency_table(cons, "cka_linear", "objective")
    fig = P.consistency_boxes(tidy, base, caption="boxes")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == C.median_order(tidy)
    _check(fig)
    doms = dict(
        zip(map(str, run.similarity.dataset.values), map(str, run.similarity.domain.values))
    )
    _check(
        P.consistency_heatmaps(
            C.consistency_matrices(cons, "cka_linear", ["all"], CH.domain_order(run.similarity)),
            doms,
        )
    )
    av = C.anchor_table(cons, "cka_linear")
    _check(P.anchor_boxes(av))
    summ = C.consistency_summary(tidy).set_index("label")["median"]
    both = summ.to_frame("x").join(summ.to_frame("y")).reset_index()
    _check(P.paired_measures(both, "x", "y"))


def test_behaviour_and_robustness_figures(run, rng):
    da = run.similarity["cka_linear"]
    tables = {d: B.pair_table(da.sel(dataset=[d]), run.probes) for d in ["shapes", "digits"]}
    corr = B.behavior_correlation(da, run.probes)
    _check(P.gap_scatter(tables, corr))
    _check(P.by_domain(corr))
    feats = {k: rng.normal(size=(40, 4)) for k in "abc"}

    def lin(x, y):
        return float(np.corrcoef((x @ x.T).ravel(), (y @ y.T).ravel())[0, 1])

    _check(P.stability_curve(A.stability_vs_n(feats, [10, 40], 2, measure=lin)))
    _check(P.subsample_errorbars(A.subsample_pairs(feats, 5, measure=lin)))


def test_stimulus_count_figures_leave_out_undefined_pairs(rng):
    """A pair whose similarity is undefined (NaN: a model whose features do not vary) is left
    out of the error-bar figure, as chapter 13's sentence says, not drawn as an empty slot; with
    every pair undefined the log axis of nothing was a ValueError."""
    feats = {k: rng.normal(size=(40, 4)) for k in "abc"}
    feats["flat"] = np.ones((40, 4))
    spread = A.subsample_pairs(feats, 5)
    fig = P.subsample_errorbars(spread)
    _check(fig)
    (bars,) = fig.axes[0].collections[:1]
    assert len(bars.get_segments()) == 3  # a~b, a~c, b~c: not the three pairs of flat
    _check(P.stability_curve(A.stability_vs_n(feats, [10, 40], 2)))
    none = {"a": feats["a"], "flat": feats["flat"]}
    for fig in (
        P.stability_curve(A.stability_vs_n(none, [10, 40], 2)),
        P.subsample_errorbars(A.subsample_pairs(none, 5)),
    ):
        assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["no pair defined"] * 2
    plt.close("all")


def _sim_with_gaps(n_models: int, rng):
    """A real-run-like similarity dataset: some metadata empty, few models per category."""
    import xarray as xr

    ids = [f"model-{i:02d}" for i in range(n_models)]
    objs = [("Supervised", "Self-Supervised", "Image-Text", "")[i % 4] for i in range(n_models)]
    vals = rng.uniform(0.1, 0.9, size=(3, n_models, n_models))
    vals = (vals + vals.transpose(0, 2, 1)) / 2
    return xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), vals)},
        coords={
            "dataset": ["a", "b", "c"],
            "model_a": ids,
            "model_b": ids,
            "domain": ("dataset", ["Structured", "Structured", "Specialized"]),
            "objective_a": ("model_a", objs),
            "objective_b": ("model_b", objs),
        },
    )


@pytest.mark.parametrize("n_models", [3, 45])
def test_similarity_figures_on_sparse_metadata(n_models, rng):
    da = _sim_with_gaps(n_models, rng)["cka_linear"]
    fig = P.clustered_matrices(da, ["a", "b", "c"], caption="sparse")
    assert all(not ax.get_xticklabels() for ax in fig.axes if ax.get_label() != "<colorbar>")
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "" not in legend and (N.UNKNOWN in legend) == (n_models >= 4)
    _check(fig)
    fig = P.consistency_scatter(
        {("a", "b"): C.dataset_pair_table(da, "a", "b")},
        C.within_category_consistency(da, [("a", "b")]),
    )
    texts = [fig.axes[0].get_title(), *(t.get_text() for t in fig.axes[0].texts)]
    assert "r = " in texts[0] and not any("nan" in t for t in texts)
    assert all(N.UNKNOWN not in t for t in texts)
    _check(fig)
    base = pd.DataFrame({"consistency": []})
    pairs = C.dataset_pair_table(da, "a", "c")
    _check(P.framework_figure(da, pairs, S.correlate(pairs["a"], pairs["c"]), base, "a", "c"))


def test_study_figures_of_issue_14(run):
    """Fig. 2 (common order, mean and std), Fig. 3b/c, Fig. 4, App. D, E, F, Spearman."""
    from repsim.consistency import (
        anchor_partner_consistency,
        partner_rank_sum_tests,
        to_tidy,
        transform_comparison,
    )

    sim, cons = run.similarity, run.consistency
    da = sim["cka_linear"]
    datasets = CH.domain_order(sim)
    order = A.common_model_order(da)
    mean, std = A.mean_std_matrices(da)
    fig = P.matrices_common_order(da, datasets, order, mean, std, caption="common")
    titles = [ax.get_title() for ax in fig.axes]
    assert "mean across datasets" in titles and "std across datasets" in titles
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 2
    _check(fig, "common")
    means = A.measure_means(sim, ["cka_linear", "cka_rbf_0.4", "rsa_spearman"])
    fig = P.measure_mean_scatter(means, "cka_linear", ["cka_rbf_0.4", "rsa_spearman"])
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "mean cka_rbf_0.4 across datasets",
        "mean rsa_spearman across datasets",
    ]
    _check(fig)
    emb = A.model_embedding(da, "mds", seed=42)
    _check(P.model_map(emb, title="MDS", caption="seed 42"), "seed 42")
    tables = {t or "none": A.mean_std_across_datasets(da, transform=t) for t in (None, "tan")}
    _check(P.transformed_mean_std(tables, "cka_linear"))
    _check(P.transform_consistency(transform_comparison(da)))
    pairs = C.consistency_pairs(
        cons, ("cka_linear", "consistency"), ("cka_linear", "consistency_spearman")
    )
    _check(P.consistency_agreement(pairs, "Pearson", "Spearman", title="robustness"))
    anchors = [str(m) for m in da.model_a.values[::3]]
    part = anchor_partner_consistency(da, anchors)
    tests = partner_rank_sum_tests(part)
    fig = P.anchor_partner_boxes(to_tidy(part), tests)
    assert {ax.get_title().split("\n")[0] for ax in fig.axes if ax.has_data()} == set(anchors)
    _check(fig)


def test_point_labels_of_nearby_points_do_not_overlap():
    fig, ax = plt.subplots(figsize=(4, 3))
    xs, ys = [0.5, 0.501, 0.502, 0.9], [0.5, 0.501, 0.499, 0.1]
    labels = ["Random | Random", "Self-Supervised | Self-Supervised", "Supervised", "far"]
    ax.scatter(xs, ys)
    fig.tight_layout()
    texts = P.point_labels(ax, xs, ys, labels)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert [t.get_text() for t in texts] == labels
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # an isolated point keeps the first place: right of and above the point
    assert texts[-1].xy == (0.9, 0.1) and texts[-1].xyann == (4, 3)
    plt.close(fig)


def test_by_domain_labels_of_datasets_with_close_values_do_not_overlap():
    """Two datasets of one domain with nearly equal r (faces and digits_wild in the built book)
    used to get their names printed on top of each other."""
    corr = pd.DataFrame(
        {
            "dataset": ["faces", "digits_wild", "shapes", "textures", "digits"],
            "domain": ["Natural (single-domain)"] * 2 + ["Structured"] * 3,
            "pearson_r": [-0.585, -0.588, -0.41, -0.81, -0.83],
        }
    )
    fig = P.by_domain(corr)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    texts = [t for t in ax.texts if t.get_text() in set(corr["dataset"])]
    assert sorted(t.get_text() for t in texts) == sorted(corr["dataset"])
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


def test_consistency_scatter_puts_the_within_category_r_where_the_points_are_not():
    """The within-category r labels sat in the lower right even where points crowded it (shapes
    vs gratings in the built book); they go to the corner with the fewest points."""
    rng = np.random.default_rng(0)
    n = 200
    a = rng.uniform(0.5, 1.0, n)  # points fill the right half, low on b: lower right crowded
    b = rng.uniform(0.0, 0.4, n)
    cats = ["Random | Random", "Supervised | Supervised"]
    w = pd.DataFrame({"a": a, "b": b, "category_pair": [cats[i % 2] for i in range(n)]})
    corr = pd.DataFrame({"all": [0.5], "Random": [0.4], "Supervised": [0.6]}, index=["a / b"])
    fig = P.consistency_scatter({("a", "b"): w}, corr)
    ax = fig.axes[0]
    texts = [t for t in ax.texts if ": r = " in t.get_text()]
    assert len(texts) == 2
    renderer = fig.canvas.get_renderer()
    inv = ax.transData.inverted()
    for t in texts:
        box = t.get_window_extent(renderer)
        (x0, y0), (x1, y1) = inv.transform([(box.x0, box.y0), (box.x1, box.y1)])
        under = (a >= x0) & (a <= x1) & (b >= y0) & (b <= y1)
        assert not under.any(), f"{t.get_text()!r} is drawn over {int(under.sum())} points"
    plt.close(fig)


def test_framework_scatter_colours_have_a_legend(run):
    """The framework's scatter is coloured by category pair, but its only legend named the side
    strips' categories: the mixed colours (brown, purple) of the scatter could not be decoded."""
    da = run.similarity["cka_linear"]
    ds = [str(d) for d in da.dataset.values]
    pairs = C.dataset_pair_table(da, ds[0], ds[1])
    base = pd.DataFrame({"consistency": [0.1, 0.5]})
    fig = P.framework_figure(da, pairs, S.correlate(pairs[ds[0]], pairs[ds[1]]), base, ds[0], ds[1])
    shown = {t.get_text() for sub in fig.subfigs for leg in sub.legends for t in leg.get_texts()}
    assert set(map(str, pairs["category_pair"])) <= shown
    plt.close(fig)


def test_consistency_agreement_tick_labels_do_not_run_into_each_other():
    """Consistency from -0.8 to 1 put eight x tick labels (-0.75 ... 1.00) on an axes the legend
    squeezes to about 3 inches; they touched ('-0.75-0.50-0.25') in the local/global chapter."""
    x = np.linspace(-0.78, 0.99, 60)
    cats = ["Image-Text", "Random", "Self-Supervised", "Supervised"]
    labels = ["all", *(N.pair_label(a, b) for a in cats for b in cats if a <= b)]
    table = pd.DataFrame(
        {
            "x": x,
            "y": 0.9 * x[::-1],
            "label": [labels[i % len(labels)] for i in range(60)],
        }
    )
    fig = P.consistency_agreement(table, "global", "local")
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    boxes = [
        t.get_window_extent(renderer)
        for t, v in zip(ax.get_xticklabels(), ax.get_xticks())
        if t.get_text() and lo <= v <= hi
    ]
    boxes.sort(key=lambda b: b.x0)
    gaps = [b.x0 - a.x1 for a, b in zip(boxes, boxes[1:])]
    assert min(gaps) > 4, f"x tick labels {min(gaps):.1f} px apart"
    plt.close(fig)


def test_anchor_boxes_show_no_consistency_tick_above_one(run):
    """The significance bars stack above the boxes; the y axis then ticked 1.5, a consistency
    (a correlation) no reader should see, and each star sat across its own bar."""
    from repsim.consistency import anchor_partner_consistency, partner_rank_sum_tests, to_tidy

    da = run.similarity["cka_linear"]
    part = anchor_partner_consistency(da, [str(m) for m in da.model_a.values[::3]])
    tests = partner_rank_sum_tests(part)
    tests["significant"] = True  # every pair gets a bar: the tallest stack
    fig = P.anchor_partner_boxes(to_tidy(part), tests)
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.has_data():
            lo, hi = ax.get_ylim()
            shown = [t for t in ax.get_yticks() if lo <= t <= hi]
            assert shown and max(shown) <= 1.0
            stars = [t for t in ax.texts if t.get_text() == "*"]
            bars = [ln for ln in ax.lines if len(ln.get_ydata()) == 4]
            assert len(stars) == len(bars) > 0
            for star, bar in zip(stars, bars):
                assert star.get_position()[1] >= max(bar.get_ydata())
                # the study's count, not a test the book stands behind: grey, and said so
                assert star.get_color() == bar.get_color() == P.STUDY_MARK
    assert (
        "the study's rank-sum test, a count and not evidence"
        in fig.legends[0].get_title().get_text()
    )
    plt.close(fig)


def test_anchor_boxes_keep_45_names_readable_at_page_width():
    # the embedded run draws 45 anchors: as vertical boxes their names were 6 pt, rotated, in a
    # 12-inch figure shrunk to the page (about 4 px high). Horizontal boxes keep the figure at the
    # page's width and give each name its own row.
    rng = np.random.default_rng(0)
    anchors = [f"cnn-model-{i:02d}-s{i % 3}" for i in range(45)]
    tidy = pd.DataFrame(
        [
            {"anchor": a, "category": ("A", "B", "C")[i % 3], "consistency": v}
            for i, a in enumerate(anchors)
            for v in rng.normal(i / 60, 0.1, size=20)
        ]
    )
    fig = P.anchor_boxes(tidy)
    fig.canvas.draw()
    assert fig.get_figwidth() <= 7.5
    ax = fig.axes[0]
    labels = ax.get_yticklabels()
    assert len(labels) == 45 and min(t.get_fontsize() for t in labels) >= 7
    assert labels[-1].get_text() == tidy.groupby("anchor")["consistency"].median().idxmax()
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.y0)
    gaps = [b.y0 - a.y1 for a, b in zip(boxes, boxes[1:])]
    assert min(gaps) >= 0, f"anchor names overlap by {-min(gaps):.1f} px"
    plt.close(fig)


def test_the_legend_draws_each_pair_with_the_marker_of_its_points():
    """The local-global figure drew the all-pairs baseline as grey squares and its legend as a
    circle: each legend entry now has the marker and colour of its points."""
    table = pd.DataFrame(
        {"x": [0.1, 0.2, 0.3, 0.4], "y": [0.2, 0.1, 0.4, 0.3], "label": ["all", "A | A"] * 2}
    )
    fig = P.consistency_agreement(table, "global", "local")
    ax = fig.axes[0]
    drawn = {}
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets):
            label = table.set_index("x").loc[offsets[0][0], "label"]
            drawn[label] = coll.get_paths()[0].vertices.shape[0]
    legend = ax.get_legend() or fig.legends[0]
    markers = {h.get_label(): h.get_marker() for h in legend.legend_handles}
    assert markers == {"all": "s", "A | A": "o"}
    # a square path has 4 corners (+ closing), a circle many more vertices
    assert drawn["all"] < 8 < drawn["A | A"]
