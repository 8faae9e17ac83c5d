"""Figures of the book: functions that take xarray/pandas objects and return matplotlib figures.

One colour map for categories (:data:`CATEGORY_COLORS`) is used everywhere, so "Self-Supervised"
or "Structured" has the same colour in every chapter. A category pair ``"A | B"`` is drawn in its
category's colour when A == B; otherwise its points are half A's colour and half B's
(:func:`pair_points`), and its boxes and bars, which are labelled, a mix of the two.
"""

from __future__ import annotations

import hashlib
import logging
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from repsim.analysis import cluster_order
from repsim.consistency import category_labels, median_order
from repsim.names import DOMAINS, PAIR_SEP
from repsim.sentences import CLOSE_AGREEMENT, TRANSFORM_TOLERANCE, fmt, fmt_against
from repsim.stats import correlate

log = logging.getLogger(__name__)

CATEGORY_COLORS: dict[str, str] = {
    # objectives
    "Supervised": "#1f77b4",
    "Self-Supervised": "#d62728",
    "Image-Text": "#2ca02c",
    "Random": "#7f7f7f",
    # architecture classes
    "Convolutional": "#9467bd",
    "Transformer": "#ff7f0e",
    "MLP": "#8c564b",
    # dataset domains, in the order of repsim.names.DOMAINS
    **dict(zip(DOMAINS, ("#17becf", "#bcbd22", "#e377c2", "#393b79"))),
    # size classes
    "small": "#c6dbef",
    "medium": "#6baed6",
    "large": "#2171b5",
    "xlarge": "#08306b",
    # baseline
    "all": "#444444",
}
_FALLBACK = plt.get_cmap("tab20").colors
SIM_CMAP = "viridis"
CONS_CMAP = "magma"


def category_color(label: str) -> str:
    """Colour of a category or of a category pair ``"A | B"`` (stable across the book)."""
    label = str(label)
    if label in CATEGORY_COLORS:
        return CATEGORY_COLORS[label]
    if PAIR_SEP in label:
        a, b = label.split(PAIR_SEP, 1)
        if a == b:
            return category_color(a)
        mix = (np.array(to_rgb(category_color(a))) + np.array(to_rgb(category_color(b)))) / 2
        return to_hex(mix * 0.85)
    h = int(hashlib.md5(label.encode()).hexdigest(), 16)
    return to_hex(_FALLBACK[h % len(_FALLBACK)])


def add_caption(fig: Figure, caption: str | None, width: int | None = None) -> Figure:
    """Write a caption (run, models, datasets, measure) under everything else in the figure.

    The figure is laid out once first, so the caption goes below legends placed under the axes
    instead of over them; lines wrap at the figure's width.
    """
    if not caption:
        return fig
    fig.draw_without_rendering()
    w_in, h_in = fig.get_size_inches()
    bottom = min(0.0, fig.get_tightbbox().y0 / h_in)
    width = width or max(40, int(w_in * 13))
    fig.text(
        0.01,
        bottom - 0.012,
        textwrap.fill(caption, width),
        ha="left",
        va="top",
        fontsize=8,
        color="#333333",
        transform=fig.transFigure,
    )
    return fig


def _heatmap(
    ax,
    matrix: np.ndarray,
    labels: Sequence[str],
    vmin=None,
    vmax=None,
    cmap: str = SIM_CMAP,
    colors: Sequence[str] | None = None,
    ticks: bool = True,
    fontsize: float = 6,
):
    im = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    if ticks and len(labels) <= 40:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(len(labels)), labels, fontsize=fontsize)
        if colors is not None:
            for t, c in zip([*ax.get_xticklabels(), *ax.get_yticklabels()], [*colors, *colors]):
                t.set_color(c)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def _category_strip(ax, colors: Sequence[str], axis: str = "y") -> None:
    """Coloured ticks marking each model's category along one side of a heatmap."""
    n = len(colors)
    w, gap = 0.05 * n, 0.015 * n  # a fixed share of the axis, whatever the number of models
    for i, c in enumerate(colors):
        if axis == "y":
            ax.add_patch(
                plt.Rectangle((-0.5 - gap - w, i - 0.5), w, 1, color=c, clip_on=False, lw=0)
            )
        else:
            ax.add_patch(
                plt.Rectangle((i - 0.5, n - 0.5 + gap), 1, w, color=c, clip_on=False, lw=0)
            )


#: The all-pairs baseline is drawn as a square among the category pairs' circles.
ALL_MARKER = "s"
#: The colour of marks that show the study's own tests where the book does not vouch for them.
STUDY_MARK = "#888888"


#: The gid of the collection that draws the second halves of a category pair's markers.
SECOND_HALF = "second half"


def _halves(label: str) -> tuple[str, str | None]:
    """The colours of a point's two halves: a category pair ``"A | B"`` of two categories is half
    A's colour, half B's; anything else is one colour (None for the second half)."""
    label = str(label)
    if PAIR_SEP in label:
        a, b = label.split(PAIR_SEP, 1)
        if a != b:
            return category_color(a), category_color(b)
    return category_color(label), None


def pair_points(ax, x, y, label: str, s: float, alpha: float = 0.75, marker: str = "o", **kw):
    """Scatter the points of one category or category pair and return their collection.

    A pair ``"A | B"`` of two categories is drawn half in A's colour, half in B's: the average of
    the two colours (:func:`category_color`, kept for boxes and bars, which are labelled) made
    the ten pairs of four objectives hard to tell apart. The second halves are a collection of
    their own, with gid :data:`SECOND_HALF`."""
    from matplotlib.markers import MarkerStyle

    first, second = _halves(label)
    if second is None:
        return ax.scatter(x, y, s=s, alpha=alpha, color=first, marker=marker, lw=0, **kw)
    points = ax.scatter(
        x, y, s=s, alpha=alpha, color=first, marker=MarkerStyle(marker, "left"), lw=0, **kw
    )
    ax.scatter(
        x, y, s=s, alpha=alpha, color=second, marker=MarkerStyle(marker, "right"), lw=0,
        gid=SECOND_HALF, **kw,
    )  # fmt: skip
    return points


def _handles(labels: Sequence[str]) -> list:
    handles = []
    for lab in labels:
        first, second = _halves(lab)
        handles.append(
            plt.Line2D(
                [],
                [],
                marker=ALL_MARKER if lab == "all" else "o",
                ls="",
                color=first,
                markerfacecolor=first,
                markerfacecoloralt=second or first,
                fillstyle="left" if second else "full",
                markeredgewidth=0,
                markersize=7,
                label=lab,
            )
        )
    return handles


def _fig_legend(
    fig: Figure, labels: Sequence[str], title: str, loc: str = "outside upper center"
) -> None:
    """A legend above (or under) the panels (figures made with the constrained layout); above by
    default, so the caption under the figure never collides with it."""
    fig.legend(
        handles=_handles(labels),
        title=title,
        loc=loc,
        ncol=min(len(labels), 5),
        fontsize=7,
        title_fontsize=7,
    )


def _legend_for(ax, labels: Sequence[str], title: str | None = None, loc: str = "best", **kw):
    return ax.legend(
        handles=_handles(labels), title=title, loc=loc, fontsize=7, title_fontsize=7, **kw
    )


def _finish(
    fig: Figure, caption: str | None, legend_on: Any = None, pairs: Sequence[str] = ()
) -> Figure:
    """The tail every figure shares: an optional category-pair legend to the right of the axes
    ``legend_on``, a tight layout, and the caption."""
    if legend_on is not None:
        _legend_for(
            legend_on, pairs, title="category pair", loc="upper left", bbox_to_anchor=(1.02, 1)
        )
    fig.tight_layout()
    return add_caption(fig, caption)


# ------------------------------------------------------------------------------ framework figure
def framework_figure(
    da: xr.DataArray,
    pairs: pd.DataFrame,
    r: float,
    cons_all: pd.DataFrame,
    dataset_a: str,
    dataset_b: str,
    category: str = "objective",
    caption: str | None = None,
) -> Figure:
    """The study's framework on real numbers: two similarity matrices, their pair scatter, and the
    distribution of that correlation over all dataset pairs (the highlighted pair marked).

    ``pairs`` is :func:`repsim.consistency.dataset_pair_table` of the two datasets, ``r`` their
    consistency, ``cons_all`` :func:`repsim.consistency.consistency_table` of all model pairs."""
    fig = plt.figure(figsize=(9.5, 8.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 0.95])
    axes = [*top.subplots(1, 2), *bottom.subplots(1, 2, width_ratios=[1.6, 0.6])]
    a = da.sel(dataset=dataset_a).transpose("model_a", "model_b").values
    order = cluster_order(a)
    models = list(da.model_a.values[order])
    cats = list(category_labels(da, category)[order])
    for ax, ds in zip(axes[:2], (dataset_a, dataset_b)):
        m = da.sel(dataset=ds, model_a=models, model_b=models).values
        im = _heatmap(ax, m, models, 0, 1, ticks=False)
        _category_strip(ax, [category_color(c) for c in cats])
        ax.set_title(f"similarity on {ds}", fontsize=10)
        ax.set_xlabel(f"models (order: clustering on {dataset_a})", fontsize=8)
    top.colorbar(im, ax=axes[:2], shrink=0.8, label=str(da.name or "similarity"))
    _fig_legend(
        top, sorted(set(map(str, cats))), f"{category} (side strip)", loc="outside lower center"
    )
    ax = axes[2]
    for lab, g in pairs.groupby("category_pair"):
        pair_points(ax, g[dataset_a], g[dataset_b], lab, s=14, alpha=0.7)
    scatter_labels = sorted(set(map(str, pairs["category_pair"])))
    if scatter_labels:  # the points' colours are category pairs, not the strip's categories
        _fig_legend(bottom, scatter_labels, "model pair (scatter points)")
    ax.set_xlabel(f"pair similarity on {dataset_a}")
    ax.set_ylabel(f"pair similarity on {dataset_b}")
    ax.set_title(f"consistency of {dataset_a} and {dataset_b}: r = {fmt(r)}", fontsize=10)
    ax = axes[3]
    vals = cons_all["consistency"].dropna().values
    ax.boxplot(vals, widths=0.5)
    ax.scatter(
        np.full(len(vals), 1.0) + np.random.default_rng(0).uniform(-0.12, 0.12, len(vals)),
        vals,
        s=8,
        color="#777777",
        zorder=3,
    )
    ax.scatter([1], [r], color="#d62728", s=40, zorder=4, label=f"{dataset_a}-{dataset_b}")
    ax.set_xticks([1], ["all dataset\npairs"])
    ax.set_ylabel("consistency (Pearson r)")
    ax.legend(fontsize=7, loc="lower center")
    return add_caption(fig, caption)


# ----------------------------------------------------------------------------- similarity matrices
def clustered_matrices(
    da: xr.DataArray,
    datasets: Sequence[str],
    category: str = "objective",
    ncols: int = 3,
    caption: str | None = None,
) -> Figure:
    """Similarity matrix per dataset, each ordered by its own average-linkage clustering."""
    n = len(datasets)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.0 * ncols + 1, 3.1 * nrows + 0.8),
        squeeze=False,
        layout="constrained",
    )
    im = None
    for ax, ds in zip(axes.flat, datasets):
        m = da.sel(dataset=ds).transpose("model_a", "model_b")
        order = cluster_order(m.values)
        cats = category_labels(m, category)[order]
        im = _heatmap(
            ax, m.values[np.ix_(order, order)], list(m.model_a.values[order]), 0, 1, ticks=False
        )
        _category_strip(ax, [category_color(c) for c in cats])
        _category_strip(ax, [category_color(c) for c in cats], axis="x")
        dom = str(m["domain"].values) if "domain" in m.coords else ""
        ax.set_title(f"{ds}\n{dom}", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.6, label=str(da.name or "similarity"))
    _fig_legend(fig, sorted(set(category_labels(da, category))), f"{category} (side strips)")
    return add_caption(fig, caption)


def mean_std_scatter(table: pd.DataFrame, caption: str | None = None, title: str = "") -> Figure:
    """Mean against standard deviation over datasets of each model pair's similarity."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for lab, g in table.groupby("category_pair"):
        pair_points(ax, g["mean"], g["std"], lab, s=16)
    ax.set_xlabel("mean pair similarity across datasets")
    ax.set_ylabel("standard deviation across datasets")
    ax.set_title(title, fontsize=10)
    return _finish(fig, caption, legend_on=ax, pairs=sorted(set(map(str, table["category_pair"]))))


def matrices_common_order(
    da: xr.DataArray,
    datasets: Sequence[str],
    order: Sequence[str],
    mean: xr.DataArray | None,
    std: xr.DataArray | None,
    category: str = "objective",
    ncols: int = 4,
    caption: str | None = None,
) -> Figure:
    """The study's Fig. 2: one similarity matrix per dataset, all in ONE model order (so a model
    sits on the same row in every panel), then the mean and standard-deviation matrices across
    datasets, the standard deviation on its own colour scale. ``mean`` and ``std`` None: the
    dataset panels alone (one dataset has no spread across datasets: :meth:`Chapter.spread_skip
    <repsim.chapter.Chapter.spread_skip>`)."""
    order = [str(m) for m in order]
    panels = [
        *datasets,
        *(["mean"] if mean is not None else []),
        *(["std"] if std is not None else []),
    ]
    ncols = len(panels) if len(panels) <= ncols + 1 else ncols  # 5 panels: one row
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.8 * ncols + 1.4, 2.9 * nrows + 0.9),
        squeeze=False,
        layout="constrained",
    )
    cats = category_labels(da.sel(model_a=order), category)
    colors = [category_color(c) for c in cats]
    im = im_std = None
    for ax, p in zip(axes.flat, panels):
        if p == "std":
            m = std.sel(model_a=order, model_b=order).values
            top = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
            im_std = _heatmap(ax, m, order, 0, max(top, 1e-6), cmap="cividis", ticks=False)
            ax.set_title("std across datasets", fontsize=9)
        else:
            src = mean if p == "mean" else da.sel(dataset=p)
            im = _heatmap(
                ax, src.sel(model_a=order, model_b=order).values, order, 0, 1, ticks=False
            )
            dom = (
                str(da["domain"].sel(dataset=p).values)
                if p != "mean" and "domain" in da.coords
                else ""
            )
            ax.set_title("mean across datasets" if p == "mean" else f"{p}\n{dom}", fontsize=9)
        _category_strip(ax, colors)
        _category_strip(ax, colors, axis="x")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    with_mean = " (panels and mean)" if mean is not None else ""
    fig.colorbar(im, ax=axes, shrink=0.5, label=f"{da.name or 'similarity'}{with_mean}")
    if im_std is not None:
        fig.colorbar(im_std, ax=axes, shrink=0.5, label="standard deviation across datasets")
    _fig_legend(fig, sorted(set(cats)), f"{category} (side strips; models grouped by it)")
    return add_caption(fig, caption)


def measure_mean_scatter(
    table: pd.DataFrame, x: str, ys: Sequence[str], caption: str | None = None
) -> Figure:
    """Each model pair's mean similarity across datasets under one measure against others (linear
    CKA against RBF CKA and against RSA), coloured by category pair, with Pearson and Spearman r
    per panel."""
    ys = [y for y in ys if y in table]
    fig, axes = plt.subplots(1, len(ys), figsize=(3.9 * len(ys) + 1.8, 3.7), squeeze=False)
    labels = sorted(set(table["category_pair"]))
    for ax, y in zip(axes.flat, ys):
        for lab, g in table.groupby("category_pair"):
            pair_points(ax, g[x], g[y], lab, s=14)
        r = correlate(table[x], table[y])
        rho = correlate(table[x], table[y], "spearman")
        ax.set_title(f"Pearson r = {fmt(r)}, Spearman = {fmt(rho)}", fontsize=9)
        ax.set_xlabel(f"mean {x} across datasets")
        ax.set_ylabel(f"mean {y} across datasets")
    return _finish(fig, caption, legend_on=axes.flat[-1], pairs=labels)


def model_map(emb: pd.DataFrame, title: str = "", caption: str | None = None) -> Figure:
    """A model map after the study's (which embeds each dataset's 1 - similarity with t-SNE): a
    2-D embedding of 1 - mean similarity across datasets (t-SNE or MDS, from
    :func:`repsim.analysis.model_embedding`), one point per model coloured by its category and
    labelled with its id."""
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    for cat, g in emb.groupby("category"):
        ax.scatter(
            g["x"],
            g["y"],
            s=45,
            color=category_color(cat),
            label=cat,
            alpha=0.85,
            edgecolor="white",
            lw=0.5,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("embedding dimension 1")
    ax.set_ylabel("embedding dimension 2")
    ax.set_title(title, fontsize=10)
    ax.legend(
        fontsize=7, title="category", title_fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left"
    )
    if len(emb) <= 40:
        fig.tight_layout()
        point_labels(ax, emb["x"], emb["y"], emb["model"], color="#333333")
    return _finish(fig, caption)


def transformed_mean_std(
    tables: Mapping[str, pd.DataFrame], measure: str = "similarity", caption: str | None = None
) -> Figure:
    """The study's appendix on values near the upper bound: mean against standard deviation
    across datasets of each pair's similarity, one panel per transform (e.g. none, tan, arccos)."""
    k = len(tables)
    fig, axes = plt.subplots(1, k, figsize=(3.7 * k + 1.8, 3.6), squeeze=False)
    labels: set[str] = set()
    for ax, (name, t) in zip(axes.flat, tables.items()):
        for lab, g in t.groupby("category_pair"):
            pair_points(ax, g["mean"], g["std"], lab, s=14, alpha=0.7)
            labels.add(lab)
        f = measure if name in ("none", "", None) else f"{name}({measure})"
        ax.set_xlabel(f"mean {f}", fontsize=8)
        ax.set_ylabel(f"std {f}", fontsize=8)
        r = correlate(t["mean"], t["std"], "spearman")
        ax.set_title(f"{name}: Spearman(mean, std) = {fmt(r)}", fontsize=9)
    return _finish(fig, caption, legend_on=axes.flat[-1], pairs=sorted(labels))


def transform_consistency(table: pd.DataFrame, caption: str | None = None) -> Figure:
    """Consistency of each dataset pair with transformed similarities (y) against untransformed
    (x), one panel per transform: points on the diagonal mean the transform changes nothing."""
    others = [c for c in table.columns if c not in ("dataset_a", "dataset_b", "none")]
    fig, axes = plt.subplots(1, len(others), figsize=(3.7 * len(others), 3.6), squeeze=False)
    for ax, name in zip(axes.flat, others):
        ax.scatter(table["none"], table[name], s=22, color="#1f77b4", alpha=0.8)
        _identity(ax, table[["none", name]].values)
        d = np.nanmax(np.abs(table[name] - table["none"])) if len(table) else np.nan
        # beside the chapter's sentence that counts changes of TRANSFORM_TOLERANCE or more
        ax.set_title(f"{name}: largest change {fmt_against(d, TRANSFORM_TOLERANCE)}", fontsize=9)
        ax.set_xlabel("consistency, similarity as is")
        ax.set_ylabel(f"consistency, {name}(similarity)")
    if len(table) <= 12:  # few dataset pairs: name them
        fig.tight_layout()
        names = table["dataset_a"] + "-" + table["dataset_b"]
        for ax, name in zip(axes.flat, others):
            point_labels(ax, table["none"], table[name], names)
    return _finish(fig, caption)


def consistency_agreement(
    table: pd.DataFrame, xlabel: str, ylabel: str, title: str = "", caption: str | None = None
) -> Figure:
    """One consistency value per (category pair, dataset pair) under two settings (x, y): local
    against global measure, Spearman against Pearson. Coloured by category pair (the all-pairs
    baseline in grey), identity line dotted, agreement over all points in the title."""
    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    labels = sorted(set(table["label"]), key=lambda s: (s != "all", s))
    for lab in labels:
        g = table[table["label"] == lab]
        pair_points(
            ax,
            g["x"],
            g["y"],
            lab,
            s=18 if lab != "all" else 26,
            marker="o" if lab != "all" else ALL_MARKER,
        )
    _identity(ax, table[["x", "y"]].values)
    r = correlate(table["x"], table["y"])
    # the legend leaves the axes ~3 inches: 8 ticks from -0.75 to 1.00 ran into each other
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(
        f"{title}\nPearson r over {len(table.dropna(subset=['x', 'y']))} values = {fmt(r)}".strip(),
        fontsize=9,
    )
    return _finish(fig, caption, legend_on=ax, pairs=labels)


def _identity(ax, values: np.ndarray) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v):
        lo, hi = float(v.min()), float(v.max())
        ax.plot([lo, hi], [lo, hi], ls=":", color="#999999", lw=1)


def _emptiest_corner(ax, xs, ys, height: float, width: float = 0.5):
    """The corner of ``ax`` whose block of ``width`` x ``height`` (axes fractions) covers the
    fewest of the points: (x, y, ha, va, step) for text lines stacked away from the edge (step
    +1 upwards from the bottom, -1 downwards from the top). Lower right wins ties."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    fx = (x - x_lo) / ((x_hi - x_lo) or 1.0)
    fy = (y - y_lo) / ((y_hi - y_lo) or 1.0)
    corners = [  # (x, y, ha, va, step, points under the block)
        (0.98, 0.03, "right", "bottom", 1, (fx > 1 - width) & (fy < height)),
        (0.02, 0.97, "left", "top", -1, (fx < width) & (fy > 1 - height)),
        (0.98, 0.97, "right", "top", -1, (fx > 1 - width) & (fy > 1 - height)),
        (0.02, 0.03, "left", "bottom", 1, (fx < width) & (fy < height)),
    ]
    best = min(corners, key=lambda c: int(c[5].sum()))
    return best[:5]


def consistency_scatter(
    tables: Mapping[tuple[str, str], pd.DataFrame],
    correlations: pd.DataFrame,
    caption: str | None = None,
) -> Figure:
    """Pair similarities on dataset B against A, coloured by category pair, with r per panel.

    ``tables``: per dataset pair (A, B), :func:`repsim.consistency.dataset_pair_table`;
    ``correlations``: :func:`repsim.consistency.within_category_consistency` of the same pairs
    (the panel title gives ``all``, the coloured labels the within-category r)."""
    k = len(tables)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.7), squeeze=False)
    labels: set[str] = set()
    for ax, ((a, b), w) in zip(axes.flat, tables.items()):
        for lab, g in w.groupby("category_pair"):
            pair_points(ax, g[a], g[b], lab, s=14)
            labels.add(lab)
        lo, hi = np.nanmin(w[[a, b]].values), np.nanmax(w[[a, b]].values)
        ax.plot([lo, hi], [lo, hi], ls=":", color="#999999", lw=1)
        row = correlations.loc[f"{a} / {b}"]
        within = [(c, row[c]) for c in correlations.columns if c != "all"]
        x0, y0, ha, va, step = _emptiest_corner(ax, w[a], w[b], height=0.03 + 0.075 * len(within))
        for k, (cat, r_in) in enumerate(within):  # within-category r, one line each, in its colour
            ax.text(
                x0,
                y0 + step * 0.075 * k,
                f"{cat}: r = {fmt(r_in)}",
                transform=ax.transAxes,
                ha=ha,
                va=va,
                fontsize=7,
                color=category_color(cat),
                bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 0.5},
            )
        ax.set_title(f"{a} vs {b}: r = {fmt(row['all'])}", fontsize=9)
        ax.set_xlabel(f"similarity on {a}")
        ax.set_ylabel(f"similarity on {b}")
    return _finish(fig, caption, legend_on=axes.flat[-1], pairs=sorted(labels))


def consistency_boxes(
    tidy: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    caption: str | None = None,
    title: str = "",
) -> Figure:
    """Consistency over dataset pairs per category pair, sorted by median, with the all-pairs
    interquartile band behind them."""
    order = median_order(tidy)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(order) + 2), 4.4))
    if baseline is not None and len(baseline):
        q1, med, q3 = np.nanpercentile(baseline["consistency"], [25, 50, 75])
        ax.axhspan(q1, q3, color="#bbbbbb", alpha=0.45, label="all pairs (IQR)")
        ax.axhline(med, color="#444444", lw=1, ls="--", label="all pairs (median)")
    data = [tidy.loc[tidy.label == lab, "consistency"].dropna().values for lab in order]
    bp = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=False)
    for patch, lab in zip(bp["boxes"], order):
        patch.set_facecolor(category_color(lab))
        patch.set_alpha(0.8)
    rng = np.random.default_rng(0)
    for i, vals in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(vals)), vals, s=5, color="k", alpha=0.4)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("consistency across dataset pairs (Pearson r)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return _finish(fig, caption)


def consistency_heatmaps(
    matrices: xr.DataArray,
    domains: Mapping[str, str] | None = None,
    caption: str | None = None,
) -> Figure:
    """Dataset x dataset consistency for some group pairs, datasets in the matrices' order
    (:func:`repsim.consistency.consistency_matrices`, ordered by domain in the book)."""
    group_pairs = [str(g) for g in matrices.group_pair.values]
    order = [str(d) for d in matrices.dataset_a.values]
    k = len(group_pairs)
    n = len(order)
    fig, axes = plt.subplots(1, k, figsize=(3.3 * k + 1, 4.2), squeeze=False, layout="constrained")
    im = None
    colors = [category_color(domains[d]) for d in order] if domains else None
    for ax, gp in zip(axes.flat, group_pairs):
        m = matrices.sel(group_pair=gp).transpose("dataset_a", "dataset_b").values
        im = _heatmap(ax, m, list(order), -1, 1, cmap="RdBu_r", colors=colors, fontsize=7)
        if colors:
            _category_strip(ax, colors)
            ax.tick_params(axis="y", pad=14)  # room for the domain strip
        if n <= 8:  # few datasets: print the values
            for i, j in np.ndindex(m.shape):
                if i != j and np.isfinite(m[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if abs(m[i, j]) > 0.6 else "black",
                    )
        off = m[~np.eye(len(order), dtype=bool)]
        ax.set_title(f"{gp}\nmedian off-diagonal {np.nanmedian(off):.2f}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="consistency (Pearson r)")
    if domains:
        _fig_legend(
            fig,
            [d for d in DOMAINS if d in set(domains.values())],
            "dataset domain (strip and tick colour)",
        )
    return add_caption(fig, caption)


# ------------------------------------------------------------------------------------- behaviour
def gap_scatter(
    tables: Mapping[str, pd.DataFrame],
    correlations: pd.DataFrame,
    ncols: int = 3,
    caption: str | None = None,
) -> Figure:
    """Pair similarity against absolute accuracy gap per dataset, coloured by the better model's
    accuracy, with Pearson r in each panel.

    ``tables``: per dataset, :func:`repsim.behavior.pair_table`; ``correlations``:
    :func:`repsim.behavior.behavior_correlation` (its ``pearson_r`` goes in the titles). Each
    title counts the models its panel draws: a probe near chance leaves its model out of that
    dataset's panel only, so the caption's count is not every panel's."""
    r_of = correlations.set_index("dataset")["pearson_r"]
    n = len(tables)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols + 1, 3.0 * nrows), squeeze=False, layout="constrained"
    )
    sc = None
    for ax, (ds, t) in zip(axes.flat, tables.items()):
        sc = ax.scatter(
            t["similarity"], t["gap"], c=t["better_accuracy"], s=9, cmap="plasma", vmin=0, vmax=1
        )
        dom = t["domain"].iloc[0] if len(t) else ""
        k = len(set(t["model_a"]) | set(t["model_b"]))
        ax.set_title(f"{ds} ({dom})\n{k} models, r = {fmt(r_of[ds])}", fontsize=8)
        ax.set_xlabel("pair similarity", fontsize=8)
        ax.set_ylabel("|accuracy gap|", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(sc, ax=axes, shrink=0.7, label="accuracy of the better model")
    return add_caption(fig, caption)


def by_domain(
    table: pd.DataFrame,
    value: str = "pearson_r",
    ylabel: str = "Pearson r",
    caption: str | None = None,
    title: str = "",
) -> Figure:
    """Per-dataset values grouped by domain category: boxes with the datasets as points."""
    doms = [d for d in DOMAINS if d in set(table["domain"])] + sorted(
        set(table["domain"]) - set(DOMAINS)
    )
    fig, ax = plt.subplots(figsize=(1.8 * len(doms) + 2.5, 4.6))
    xs, ys, names = [], [], []
    box_width = 0.4
    for i, d in enumerate(doms, start=1):
        g = table[table.domain == d]
        ax.boxplot(g[value].dropna().values, positions=[i], widths=box_width, showfliers=False)
        ax.scatter(np.full(len(g), i), g[value], color=category_color(d), s=30, zorder=3)
        xs += [float(i)] * len(g)
        ys += [float(v) for v in g[value]]
        names += [str(n) for n in g["dataset"]]
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set_xticks(range(1, len(doms) + 1), [d.replace(" (", "\n(") for d in doms], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    # labels beside the box, not across it; datasets with close values: labels apart
    lo, hi = ax.get_xlim()
    points_per_unit = ax.get_window_extent().width * 72 / fig.dpi / (hi - lo)
    point_labels(ax, xs, ys, names, fontsize=7, min_dx=(box_width / 2 + 0.04) * points_per_unit)
    return _finish(fig, caption)


# ------------------------------------------------------------------------- measures and robustness
def measure_vs_measure(
    table: pd.DataFrame,
    agreement: pd.DataFrame,
    measure_x: str,
    measure_y: str,
    caption: str | None = None,
) -> Figure:
    """Pair similarity under one measure against another, one panel per dataset.

    ``table``: :func:`repsim.analysis.measure_pair_table` of the datasets to show;
    ``agreement``: :func:`repsim.analysis.measure_agreement` (Spearman; its r in the titles)."""
    datasets = list(dict.fromkeys(table["dataset"]))
    r_of = agreement.set_index("dataset")["r"]
    k = len(datasets)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.5), squeeze=False)
    labels: set[str] = set()
    for ax, ds in zip(axes.flat, datasets):
        t = table[table["dataset"] == ds]
        for lab in sorted(set(t.category_pair)):
            g = t[t.category_pair == lab]
            pair_points(ax, g.x, g.y, lab, s=12, alpha=0.7)
            labels.add(lab)
        ax.set_title(f"{ds}: Spearman {fmt(r_of[ds])}", fontsize=9)  # NaN: 'undefined'
        ax.set_xlabel(measure_x)
        ax.set_ylabel(measure_y)
    return _finish(fig, caption, legend_on=axes.flat[-1], pairs=sorted(labels))


def _no_pair_defined(fig: Figure, caption: str | None) -> Figure:
    """The stimulus-count figures when the measure is undefined for every pair (the sentences
    say which): empty axes that say so, not a log axis of nothing (a ValueError)."""
    for ax in fig.axes:
        ax.text(0.5, 0.5, "no pair defined", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, caption)


def stability_curve(table: pd.DataFrame, caption: str | None = None) -> Figure:
    """Absolute deviation from the all-stimuli value against the number of stimuli, over the
    values that are defined (:func:`repsim.sentences.stability_text` names the pairs left out)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    table = table.dropna(subset=["abs_error"])
    if table.empty:  # every pair undefined: nothing to draw on a log axis
        return _no_pair_defined(fig, caption)
    g = table.groupby("n")["abs_error"]
    med, q90 = g.median(), g.quantile(0.9)
    axes[0].plot(med.index, med.values, marker="o", label="median over pairs and repeats")
    axes[0].fill_between(med.index, 0, q90.values, alpha=0.25, label="0 to 90th percentile")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("number of stimuli n")
    axes[0].set_ylabel("|similarity(n) - similarity(all)|")
    axes[0].legend(fontsize=7)
    for _pair, p in table.groupby("pair"):
        m = p.groupby("n")["similarity"].mean()
        axes[1].plot(m.index, m.values, lw=0.8, alpha=0.7)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("number of stimuli n")
    axes[1].set_ylabel("mean pair similarity over repeats")
    axes[1].set_title("one line per model pair", fontsize=9)
    return _finish(fig, caption)


def subsample_errorbars(table: pd.DataFrame, caption: str | None = None) -> Figure:
    """Each pair's similarity on all stimuli with the 5-95% range over random subsets drawn
    without replacement (:func:`repsim.analysis.subsample_pairs`), sorted by the estimate. A
    pair undefined on all stimuli or on a subset is left out, as
    :func:`repsim.sentences.subsample_text` says, not drawn as an empty slot."""
    m, n = int(table["m"].iloc[0]), int(table["n"].iloc[0])
    defined = np.isfinite(table["estimate"]) & np.isfinite(table["se"])
    t = table[defined].sort_values("estimate").reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    if t.empty:
        return _no_pair_defined(fig, caption)
    x = np.arange(len(t))
    axes[0].vlines(
        x,
        t["q05"],
        t["q95"],
        lw=1.2,
        color="#1f77b4",
        label=f"5-95% over subsets of {m} of {n} stimuli",
    )
    axes[0].scatter(x, t["estimate"], s=9, color="k", zorder=3, label="all stimuli")
    axes[0].legend(fontsize=7)
    axes[0].set_xlabel("model pair (sorted by similarity)")
    axes[0].set_ylabel("similarity")
    axes[1].hist(t["se"], bins=15, color="#1f77b4")
    axes[1].set_xlabel("standard error (delete-d jackknife)")
    axes[1].set_ylabel("number of pairs")
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no tick at 0.5
    return _finish(fig, caption)


def anchor_partner_boxes(
    tidy: pd.DataFrame,
    tests: pd.DataFrame | None = None,
    ncols: int = 3,
    caption: str | None = None,
) -> Figure:
    """The study's anchor figure: one panel per anchor model, one box per partner category (the
    consistency of the anchor's similarities to that category's models over dataset pairs), with
    a bar and star over each pair of boxes that differs after Bonferroni correction."""
    anchors = list(dict.fromkeys(tidy["anchor"]))
    parts = sorted(set(tidy["partner"]))
    ncols = min(ncols, len(anchors))
    nrows = int(np.ceil(len(anchors) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.3 * ncols + 0.4, 3.0 * nrows + 0.7),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, a in zip(axes.flat, anchors):
        g = tidy[tidy["anchor"] == a]
        here = [p for p in parts if p in set(g["partner"])]
        data = [g.loc[g.partner == p, "consistency"].dropna().values for p in here]
        bp = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=False)
        for patch, p in zip(bp["boxes"], here):
            patch.set_facecolor(category_color(p))
            patch.set_alpha(0.85)
        ax.set_xticks(range(1, len(here) + 1), here, rotation=30, ha="right", fontsize=7)
        cat = str(g["anchor_category"].iloc[0]) if "anchor_category" in g else ""
        ax.set_title(f"{a}\n({cat})", fontsize=8, color=category_color(cat))
        if tests is not None and len(tests):
            sig = tests[(tests.anchor == a) & tests.significant.astype(bool)]
            top = max((np.max(d) for d in data if len(d)), default=1.0)
            for k, r in enumerate(sig.itertuples()):
                i, j = here.index(r.partner_a) + 1, here.index(r.partner_b) + 1
                y = top + 0.2 * (k + 1)  # one level per bar, its star above it, below the next
                # grey: the study's count, which treats dataset pairs as independent, not a
                # test this book stands behind (the legend and the chapter say so)
                ax.plot([i, i, j, j], [y - 0.04, y, y, y - 0.04], color=STUDY_MARK, lw=0.8)
                ax.text((i + j) / 2, y, "*", ha="center", va="bottom", fontsize=9, color=STUDY_MARK)
                ax.set_ylim(top=max(ax.get_ylim()[1], y + 0.15))
        # consistency is a correlation: no tick above 1 where the bars and stars sit
        ax.set_yticks([t for t in (-1.0, -0.5, 0.0, 0.5, 1.0) if t >= ax.get_ylim()[0] - 1e-9])
    for ax in axes[:, 0]:
        ax.set_ylabel("consistency (Pearson r)", fontsize=8)
    for ax in list(axes.flat)[len(anchors) :]:
        ax.axis("off")
    title = "partner category (box colour); panel title: the anchor (its category)"
    if tests is not None and len(tests):
        title += "\ngrey bars and *: the study's rank-sum test, a count and not evidence"
    _fig_legend(fig, parts, title)
    return add_caption(fig, caption)


def anchor_boxes(tidy: pd.DataFrame, caption: str | None = None, title: str = "") -> Figure:
    """Anchor consistency over dataset pairs, one horizontal box per anchor (highest median on
    top), coloured by its category. Horizontal, so that every anchor's name stays readable at the
    page's width however many anchors there are (the figure grows in height instead)."""
    med = tidy.groupby("anchor")["consistency"].median().sort_values(ascending=True)
    cat = tidy.groupby("anchor")["category"].first()
    fig, ax = plt.subplots(figsize=(7.0, max(3.5, 0.2 * len(med) + 1.4)))
    data = [tidy.loc[tidy.anchor == a, "consistency"].dropna().values for a in med.index]
    bp = ax.boxplot(data, patch_artist=True, showfliers=False, widths=0.7, orientation="horizontal")
    for patch, a in zip(bp["boxes"], med.index):
        patch.set_facecolor(category_color(cat[a]))
    ax.set_yticks(range(1, len(med) + 1), med.index, fontsize=7)
    ax.set_ylim(0.4, len(med) + 0.6)
    ax.set_xlabel("anchor consistency (Pearson r)")
    ax.set_ylabel("anchor model (sorted by median)")
    ax.set_title(title, fontsize=10)
    _legend_for(
        ax, sorted(set(cat)), title="anchor category", loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    return _finish(fig, caption)


def paired_measures(
    values: pd.DataFrame, x: str, y: str, caption: str | None = None, title: str = ""
) -> Figure:
    """Category-pair median consistency under two measures (e.g. CKA against mutual kNN)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    for _, row in values.iterrows():
        pair_points(ax, row[x], row[y], row["label"], s=40, alpha=1.0)
    lo = np.nanmin(values[[x, y]].values)
    hi = np.nanmax(values[[x, y]].values)
    ax.plot([lo, hi], [lo, hi], ls=":", color="#999999")
    ax.set_xlabel(f"median consistency, {x}")
    ax.set_ylabel(f"median consistency, {y}")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    point_labels(ax, values[x], values[y], values["label"])
    return _finish(fig, caption)


#: Where a point's label may sit, in points from the point, tried in this order.
_LABEL_OFFSETS = [(4, 3), (4, -9), (-4, 3), (-4, -9), (4, 10), (4, -16), (-4, 10), (-4, -16)]


def point_labels(
    ax,
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    fontsize=6,
    color=None,
    min_dx: float = 0.0,
):
    """Label each point at the first offset (:data:`_LABEL_OFFSETS`) where its text overlaps no
    label placed before it, so labels of nearby points stay readable. ``min_dx`` (points) keeps
    every label at least that far to the side of its point, clear of a box drawn around the
    points. Call it once the axes' limits and layout are final: it measures the labels on the
    canvas."""
    renderer = ax.figure.canvas.get_renderer()
    offsets = [(np.sign(ox) * max(abs(ox), min_dx), oy) for ox, oy in _LABEL_OFFSETS]

    def annotate(label, point, offset):
        ha = "left" if offset[0] >= 0 else "right"
        t = ax.annotate(
            str(label),
            point,
            xytext=offset,
            textcoords="offset points",
            fontsize=fontsize,
            ha=ha,
            color=color,
        )
        return t, t.get_window_extent(renderer)

    placed: list[Any] = []
    texts = []
    for px, py, label in zip(xs, ys, labels):
        if not (np.isfinite(px) and np.isfinite(py)):
            continue
        for offset in offsets:
            t, box = annotate(label, (px, py), offset)
            if not any(box.overlaps(b) for b in placed):
                break
            t.remove()
        else:  # no free place near the point: keep the first one
            t, box = annotate(label, (px, py), offsets[0])
        placed.append(box)
        texts.append(t)
    return texts


def show(fig: Figure) -> None:
    """Display a figure now (in a notebook) and close it, so figures and sentences drawn in one
    loop keep their order."""
    from IPython.display import display

    display(fig)
    plt.close(fig)


# ------------------------------------------------------------------ train split against held-out
def split_scatter(
    pairs: pd.DataFrame,
    agreement: pd.DataFrame,
    measure: str = "cka_linear",
    caption: str | None = None,
    columns: int = 5,
) -> Figure:
    """Pair similarity on the train split (y) against held-out images (x), one small panel per
    dataset, coloured by category pair, identity line dotted, Pearson r over pairs in the title.

    ``pairs``: :func:`repsim.analysis.split_pair_table`; ``agreement``:
    :func:`repsim.analysis.split_agreement` of it."""
    datasets = list(dict.fromkeys(pairs["dataset"]))
    r_of = agreement.set_index("dataset")["r"]
    ncols = max(1, min(columns, len(datasets)))
    nrows = -(-len(datasets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.5 * ncols + 1.6, 2.5 * nrows), squeeze=False)
    labels: set[str] = set()
    for ax, ds in zip(axes.flat, datasets):
        t = pairs[pairs["dataset"] == ds]
        for lab in sorted(set(t.category_pair)):
            g = t[t.category_pair == lab]
            pair_points(ax, g["held_out"], g["train"], lab, s=8, alpha=0.7)
            labels.add(lab)
        _identity(ax, t[["held_out", "train"]].values)
        # beside the sentence that reads each r against the threshold of close agreement
        ax.set_title(f"{ds}: r = {fmt_against(r_of.get(ds, np.nan), CLOSE_AGREEMENT)}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"{measure}, held-out images", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{measure}, train images", fontsize=8)
    return _finish(fig, caption, legend_on=axes.flat[ncols - 1], pairs=sorted(labels))


def split_consistency_scatter(
    cons: pd.DataFrame, measure: str = "cka_linear", caption: str | None = None
) -> Figure:
    """Consistency per (category pair, dataset pair) on train images (y) against held-out images
    (x): :func:`consistency_agreement` of :func:`repsim.analysis.split_consistency`."""
    return consistency_agreement(
        cons.rename(columns={"held_out": "x", "train": "y"}),
        "consistency, held-out images",
        "consistency, train images",
        title=f"{measure}: train split against held-out",
        caption=caption,
    )
