"""The mini-zoo's tables in markdown, for the training log and the zoo's README: accuracies per
(method, architecture) from the manifest and from ``heldout.csv``.

Apart from :mod:`repsim.minizoo.manifest`, which the model loader reads: a run's cache keys cover
the code the loader imports (:func:`repsim.fingerprint.code_fingerprint`), and a change to how a
table is printed must not redo the features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from repsim.minizoo.manifest import sort_key
from repsim.stats import format_mean_range


def summary_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """A markdown table: mean (and range over seeds) of held-out accuracies per (method, architecture)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["method"]), str(r["identifier"])), []).append(r)

    lines = [
        "| method | arch | seeds | probe acc, mean (range) | head acc | final loss | train s (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, arch), rs in sorted(groups.items(), key=lambda kv: sort_key(kv[1][0])):
        probe = [float(r["probe_acc"]) for r in rs]
        head = [float(r["head_acc"]) for r in rs if str(r.get("head_acc", "")) != ""]
        loss = [float(r["final_loss"]) for r in rs if str(r.get("final_loss", "")) != ""]
        secs = sum(float(r["train_s"]) for r in rs) / len(rs)
        lines.append(
            f"| {method} | {arch} | {len(rs)} | {format_mean_range(probe)} | {format_mean_range(head)} | {format_mean_range(loss)} | {secs:.0f} |"
        )
    return "\n".join(lines)


def heldout_markdown(
    manifest: Iterable[Mapping[str, Any]], heldout: Iterable[Mapping[str, Any]]
) -> str:
    """A markdown table: per (method, architecture), the mean over seeds of the within-dataset
    probe accuracy on each embedded set, with chance (1 / classes) as the last row."""
    method = {str(r["id"]): (str(r["method"]), str(r["identifier"])) for r in manifest}
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    classes: dict[str, int] = {}
    first: dict[tuple[str, str], str] = {}
    for r in heldout:
        key = method[str(r["id"])]
        first.setdefault(key, str(r["id"]))
        classes[str(r["dataset"])] = int(r["n_classes"])
        cells.setdefault(key, {}).setdefault(str(r["dataset"]), []).append(float(r["probe_acc"]))
    datasets = list(classes)
    lines = [
        "| method | arch | " + " | ".join(datasets) + " |",
        "|---|---|" + "---|" * len(datasets),
    ]
    for key in sorted(cells, key=lambda k: sort_key({"id": first[k]})):
        values = [cells[key].get(d, []) for d in datasets]
        row = [f"{sum(v) / len(v):.3f}" if v else "-" for v in values]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(row) + " |")
    lines.append("| chance | | " + " | ".join(f"{1 / classes[d]:.3f}" for d in datasets) + " |")
    return "\n".join(lines)
