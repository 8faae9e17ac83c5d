"""The book's figures draw the numbers they are given: each figure's images, points, colour
scales and printed r values read back from its artists and compared with the run's data,
computed again here (test_plots checks that they are labelled and laid out)."""

from __future__ import annotations

import importlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from repsim import analysis as A  # noqa: E402
from repsim import behavior as B  # noqa: E402
from repsim import chapter as CH  # noqa: E402
from repsim import plots as P  # noqa: E402
from repsim.names import DOMAINS  # noqa: E402

C = importlib.import_module("repsim.consistency")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.images]


def _strip_colors(ax, axis: str) -> list[str]:
    """The category strip along ``axis``, in model order (the rectangles outside the image)."""
    rects = [p for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle)]
    if axis == "y":
        side = sorted((r for r in rects if r.get_x() < -0.5), key=lambda r: r.get_y())
    else:
        side = sorted((r for r in rects if r.get_x() >= -0.5), key=lambda r: r.get_x())
    return [matplotlib.colors.to_hex(r.get_facecolor()) for r in side]


def _points(ax) -> np.ndarray:
    """Every scatter point of ``ax``, rows sorted, as (x, y) (a category pair's second halves are
    the same points again)."""
    xy = np.concatenate(
        [c.get_offsets() for c in ax.collections if len(c.get_offsets()) and not _second(c)]
    )
    return xy[np.lexsort((xy[:, 1], xy[:, 0]))]


def _second(collection) -> bool:
    return collection.get_gid() == P.SECOND_HALF


def _sorted_rows(x, y) -> np.ndarray:
    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    return xy[np.lexsort((xy[:, 1], xy[:, 0]))]


def _r(x, y) -> str:
    return f"{scipy_stats.pearsonr(x, y)[0]:.2f}"


def test_each_clustered_matrix_is_its_dataset_reordered_on_both_axes(fake_run):
    da = fake_run.similarity["cka_linear"]
    datasets = CH.domain_order(fake_run.similarity)[:3]
    fig = P.clustered_matrices(da, datasets)
    for ax, ds in zip(_panels(fig), datasets, strict=True):
        m = da.sel(dataset=ds).transpose("model_a", "model_b")
        order = A.cluster_order(m.values)
        image = ax.images[0]
        np.testing.assert_array_equal(image.get_array(), m.values[np.ix_(order, order)])
        assert image.get_clim() == (0, 1)  # one scale for every panel
        cats = [str(c) for c in m["objective_a"].values[order]]
        expected = [P.category_color(c) for c in cats]
        assert _strip_colors(ax, "y") == _strip_colors(ax, "x") == expected


def test_common_order_panels_keep_one_model_order_and_the_std_its_own_scale(fake_run):
    da = fake_run.similarity["cka_linear"]
    datasets = CH.domain_order(fake_run.similarity)[:3]
    order = [str(m) for m in A.common_model_order(da)]
    mean, std = A.mean_std_matrices(da)
    fig = P.matrices_common_order(da, datasets, order, mean, std)
    panels = _panels(fig)
    expected = [da.sel(dataset=ds) for ds in datasets] + [mean, std]
    assert len(panels) == len(expected)
    by_id = {str(m): i for i, m in enumerate(da.model_a.values)}
    idx = [by_id[m] for m in order]
    for ax, src in zip(panels, expected, strict=True):
        values = src.transpose("model_a", "model_b").values[np.ix_(idx, idx)]
        np.testing.assert_array_equal(ax.images[0].get_array(), values)
        colors = [P.category_color(str(c)) for c in da["objective_a"].values[idx]]
        assert _strip_colors(ax, "y") == colors
    assert [ax.images[0].get_clim() for ax in panels[:-1]] == [(0, 1)] * (len(panels) - 1)
    assert panels[-1].images[0].get_clim() == (0, float(np.nanmax(std.values)))


def test_common_order_of_one_dataset_draws_its_panel_alone(fake_run):
    # one dataset has no spread across datasets: its std panel was drawn blank (all NaN) and its
    # mean panel was the dataset again (chapter 3 says why they are left out: spread_skip)
    da = fake_run.similarity["cka_linear"].isel(dataset=[0])
    order = [str(m) for m in A.common_model_order(da)]
    fig = P.matrices_common_order(da, [str(da.dataset.values[0])], order, None, None)
    (panel,) = _panels(fig)
    assert panel.get_title().startswith(str(da.dataset.values[0]))
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert [ax.get_ylabel() for ax in colorbars] == ["cka_linear"]


def test_mean_std_scatter_puts_each_pair_at_its_mean_and_std(fake_run):
    table = A.mean_std_across_datasets(fake_run.similarity["cka_linear"])
    ax = P.mean_std_scatter(table).axes[0]
    np.testing.assert_array_equal(_points(ax), _sorted_rows(table["mean"], table["std"]))


def test_measure_mean_scatter_plots_x_against_each_y_with_both_correlations(fake_run):
    sim = fake_run.similarity
    means = A.measure_means(sim, ["cka_linear", "cka_rbf_0.4", "rsa_spearman"])
    fig = P.measure_mean_scatter(means, "cka_linear", ["cka_rbf_0.4", "rsa_spearman"])
    for ax, y in zip(fig.axes, ["cka_rbf_0.4", "rsa_spearman"], strict=True):
        x_values, y_values = means["cka_linear"], means[y]
        np.testing.assert_array_equal(_points(ax), _sorted_rows(x_values, y_values))
        rho = scipy_stats.spearmanr(x_values, y_values)[0]
        assert ax.get_title() == f"Pearson r = {_r(x_values, y_values)}, Spearman = {rho:.2f}"


def test_consistency_scatter_plots_b_against_a_in_category_colours(fake_run):
    da = fake_run.similarity["cka_linear"]
    order = CH.domain_order(fake_run.similarity)
    pairs = [(order[0], order[1]), (order[1], order[-1])]
    tables = {(a, b): C.dataset_pair_table(da, a, b) for a, b in pairs}
    within = C.within_category_consistency(da, pairs)
    fig = P.consistency_scatter(tables, within)
    for ax, ((a, b), w) in zip(fig.axes, tables.items(), strict=True):
        assert (ax.get_xlabel(), ax.get_ylabel()) == (f"similarity on {a}", f"similarity on {b}")
        np.testing.assert_array_equal(_points(ax), _sorted_rows(w[a], w[b]))
        for collection in ax.collections:  # a category pair's points, half in each category's
            colour = matplotlib.colors.to_hex(collection.get_facecolor()[0])  # colour
            x = collection.get_offsets()[:, 0]
            labels = set(w.loc[w[a].isin(x), "category_pair"])
            assert len(labels) == 1
            first, second = labels.pop().split(" | ")
            assert colour == P.category_color(second if _second(collection) else first)
        assert ax.get_title() == f"{a} vs {b}: r = {_r(w[a], w[b])}"
        for text in ax.texts:  # the within-category r, each in its category's colour
            category = text.get_text().split(": r = ")[0]
            assert matplotlib.colors.to_hex(text.get_color()) == P.category_color(category)
            assert text.get_text() == f"{category}: r = {within.loc[f'{a} / {b}', category]:.2f}"


def test_consistency_boxes_follow_the_median_order_over_the_all_pairs_quartiles(fake_run):
    cons = fake_run.consistency
    base = C.consistency_table(cons, "cka_linear", "all")
    tidy = C.consistency_table(cons, "cka_linear", "objective")
    ax = P.consistency_boxes(tidy, base).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    medians = tidy.dropna(subset=["consistency"]).groupby("label")["consistency"].median()
    assert labels == C.median_order(tidy)
    assert np.all(np.diff(medians[labels].values) <= 0)  # highest median first
    points = _points(ax)
    for i, label in enumerate(labels, start=1):  # each box's dataset pairs, as its points
        drawn = np.sort(points[np.abs(points[:, 0] - i) < 0.2, 1])
        expected = np.sort(tidy.loc[tidy.label == label, "consistency"].dropna().values)
        np.testing.assert_array_equal(drawn, expected)
    band = next(p for p in ax.patches if p.get_label() == "all pairs (IQR)")
    q1, q3 = np.percentile(base["consistency"].dropna(), [25, 75])
    assert band.get_y() == pytest.approx(q1) and band.get_y() + band.get_height() == pytest.approx(
        q3
    )


def test_consistency_heatmaps_draw_each_group_pairs_matrix_on_minus_one_to_one(fake_run):
    datasets = CH.domain_order(fake_run.similarity)
    mats = C.consistency_matrices(fake_run.consistency, "cka_linear", ["all"], datasets)
    fig = P.consistency_heatmaps(mats)
    (ax,) = _panels(fig)
    m = mats.sel(group_pair=str(mats.group_pair.values[0]))
    np.testing.assert_array_equal(
        ax.images[0].get_array(), m.transpose("dataset_a", "dataset_b").values
    )
    assert ax.images[0].get_clim() == (-1, 1)
    off = m.values[~np.eye(len(datasets), dtype=bool)]
    assert ax.get_title().endswith(f"median off-diagonal {np.nanmedian(off):.2f}")


def test_gap_scatter_plots_the_gap_against_similarity_coloured_by_accuracy(fake_run):
    da = fake_run.similarity["cka_linear"]
    datasets = ["shapes", "digits"]
    tables = {d: B.pair_table(da.sel(dataset=[d]), fake_run.probes) for d in datasets}
    corr = B.behavior_correlation(da, fake_run.probes)
    fig = P.gap_scatter(tables, corr)
    for ax, ds in zip(_scatter_axes(fig), datasets, strict=True):
        t = tables[ds]
        (points,) = ax.collections
        np.testing.assert_array_equal(points.get_offsets(), t[["similarity", "gap"]].values)
        np.testing.assert_array_equal(points.get_array(), t["better_accuracy"].values)
        assert points.get_clim() == (0, 1)
        assert ax.get_title().endswith(f"r = {_r(t['similarity'], t['gap'])}")


def test_gap_scatter_titles_count_the_models_each_panel_draws(fake_run):
    """A near-chance probe leaves its model out of that dataset's panel only: the caption's count
    of the chapter's models (45) was read as every panel's where glyphs drew 32."""
    da = fake_run.similarity["cka_linear"]
    models = [str(m) for m in da.model_a.values]
    probes = fake_run.probes.copy()
    probes["accuracy"] = probes["accuracy"].where(
        ~(probes["model"].isin(models[:2]) & (probes["dataset"] == "digits"))
    )
    tables = {d: B.pair_table(da.sel(dataset=[d]), probes) for d in ("shapes", "digits")}
    fig = P.gap_scatter(tables, B.behavior_correlation(da, probes))
    titles = [ax.get_title() for ax in _scatter_axes(fig)]
    assert [t.splitlines()[1].split(",")[0] for t in titles] == [
        f"{len(models)} models",
        f"{len(models) - 2} models",
    ]
    assert len(tables["digits"]) == (len(models) - 2) * (len(models) - 3) // 2


def _scatter_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.collections]


def test_by_domain_puts_each_dataset_in_its_domains_column_and_names_it(fake_run):
    corr = B.behavior_correlation(fake_run.similarity["cka_linear"], fake_run.probes)
    ax = P.by_domain(corr).axes[0]
    columns = [d for d in DOMAINS if d in set(corr["domain"])]
    for i, domain in enumerate(columns, start=1):
        rows = corr[corr["domain"] == domain]
        drawn = next(
            c.get_offsets()
            for c in ax.collections
            if len(c.get_offsets()) and (c.get_offsets()[:, 0] == i).all()
        )
        np.testing.assert_array_equal(drawn[:, 1], rows["pearson_r"].values)
    # each name beside its own point
    renderer = ax.figure.canvas.get_renderer()
    for text in ax.texts:
        row = corr[corr["dataset"] == text.get_text()].iloc[0]
        column = columns.index(row["domain"]) + 1
        assert text.xy == pytest.approx((column, row["pearson_r"]))
        # beside its domain's box, not across it (the boxes are 0.4 wide)
        box = text.get_window_extent(renderer).transformed(ax.transData.inverted())
        assert box.x0 > column + 0.2 or box.x1 < column - 0.2


def test_measure_vs_measure_plots_y_against_x_with_each_datasets_agreement(fake_run):
    # the fake run's measures rank the pairs alike; a noisy one agrees differently per dataset
    sim = fake_run.similarity.copy()
    noise = np.random.default_rng(0).normal(0, 0.1, sim["cka_linear"].shape)
    sim["mutual_knn_10"] = sim["cka_linear"] + (noise + noise.transpose(0, 2, 1))
    datasets = CH.domain_order(sim)[:2]
    table = A.measure_pair_table(sim, "cka_linear", "mutual_knn_10", datasets)
    agreement = A.measure_agreement(sim, "cka_linear", "mutual_knn_10", "spearman", datasets)
    assert agreement["r"].round(2).nunique() == 2
    fig = P.measure_vs_measure(table, agreement, "cka_linear", "mutual_knn_10")
    for ax, ds in zip(_scatter_axes(fig), datasets, strict=True):
        t = table[table["dataset"] == ds]
        np.testing.assert_array_equal(_points(ax), _sorted_rows(t["x"], t["y"]))
        x = sim["cka_linear"].sel(dataset=ds).values
        y = sim["mutual_knn_10"].sel(dataset=ds).values
        upper = np.triu_indices_from(x, k=1)
        rho = scipy_stats.spearmanr(x[upper], y[upper])[0]
        assert ax.get_title() == f"{ds}: Spearman {rho:.2f}"
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("cka_linear", "mutual_knn_10")


def test_measure_vs_measure_says_an_undefined_agreement_in_words(fake_run):
    """A panel whose agreement is undefined (no pair with both measures defined) was titled
    "Spearman nan"."""
    sim = fake_run.similarity.copy(deep=True)
    datasets = CH.domain_order(sim)[:2]
    sim["mutual_knn_10"].loc[{"dataset": datasets[1]}] = np.nan
    table = A.measure_pair_table(sim, "cka_linear", "mutual_knn_10", datasets)
    agreement = A.measure_agreement(sim, "cka_linear", "mutual_knn_10", "spearman", datasets)
    fig = P.measure_vs_measure(table, agreement, "cka_linear", "mutual_knn_10")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[1] == f"{datasets[1]}: Spearman undefined", titles
