"""The zoo's manifest (``manifest.csv``) and config fragment (``models.yaml``), written from one table.

Both files are derived from the same rows, so the weights, the manifest and the config cannot
drift apart; retraining a subset (``--only``) replaces those rows and keeps the others.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from repsim.errors import ConfigError
from repsim.minizoo.archs import ARCHS

COLUMNS = (
    "id",
    "objective",
    "method",
    "architecture",
    "identifier",
    "seed",
    "training_data",
    "n_train",
    "epochs",
    "steps",
    "lr",
    "final_loss",
    "probe_acc",
    "head_acc",
    "train_s",
    "params",
    "embed_dim",
    "weights",
    "sha256",
)
_ORDER_OBJ = ("supervised", "simclr", "barlow", "clip", "random")
#: ``heldout.csv``: per model and embedded set, the ridge probe within that set (held-out split).
HELDOUT_COLUMNS = ("id", "dataset", "n_classes", "n_train", "n_test", "probe_acc", "sha256")


#: columns every table of a zoo has (``manifest.csv`` and ``heldout.csv``): without them a file
#: is not one of them, whatever its name
_KEY_COLUMNS = ("id", "sha256")


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of an existing manifest or held-out table (empty when there is none).

    A file whose header lacks the key columns (a garbled or foreign file) is a ConfigError that
    says so, rather than a zoo without models."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:  # a BOM is no column
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in _KEY_COLUMNS if c not in header]
    if header and missing:
        raise ConfigError(
            f"{path} is not a zoo table: its header lacks the columns {missing} (it starts "
            f"{', '.join(map(repr, header[:3]))}); restore it, or retrain the zoo into a new "
            "--out folder"
        )
    return rows


def sort_key(row: Mapping[str, Any]) -> tuple:
    arch, obj, seed = str(row["id"]).rsplit("-", 2)
    archs = list(ARCHS)
    number = seed[1:]  # s2 before s10
    return (
        archs.index(arch) if arch in archs else 99,
        _ORDER_OBJ.index(obj) if obj in _ORDER_OBJ else 99,
        (0, int(number), "") if number.isdigit() else (1, 0, seed),
    )


def merge_rows(
    old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``old`` rows with those of the same id replaced by ``new``; sorted by arch, objective, seed."""
    rows = {str(r["id"]): dict(r) for r in old}
    rows.update({str(r["id"]): dict(r) for r in new})
    return sorted(rows.values(), key=sort_key)


def write_manifest(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``manifest.csv`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def merge_heldout(
    old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``old`` per-dataset rows with every row of a model in ``new`` replaced; model order as the manifest."""
    new = [dict(r) for r in new]
    replaced = {str(r["id"]) for r in new}
    rows = [dict(r) for r in old if str(r["id"]) not in replaced] + new
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(str(r["dataset"]), i)
    return sorted(rows, key=lambda r: (sort_key(r), first[str(r["dataset"])]))


def write_heldout(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``heldout.csv`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=HELDOUT_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def model_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """The config entry (``models:`` item) of one manifest row."""
    arch = str(row["identifier"])
    meta = ARCHS[arch][2]
    return {
        "id": str(row["id"]),
        "loader": "minizoo",
        "identifier": arch,
        "weights": str(row["weights"]),
        "layer": None,
        "token": "none",
        "metadata": {
            "objective": str(row["objective"]),
            "method": str(row["method"]),
            "architecture_class": meta["architecture_class"],
            "architecture": meta["architecture"],
            "training_data": str(row["training_data"]),
            "data_class": "Embedded",
            "size_class": "small",
            "params_m": round(int(row["params"]) / 1e6, 4),
            "embed_dim": int(row["embed_dim"]),
            "seed": int(row["seed"]),
        },
    }


def write_models_yaml(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the ``models:`` config fragment that the embedded config includes."""
    path = Path(path)
    header = (
        "# The mini-zoo, generated by `repsim minizoo train` from manifest.csv; do not edit by hand.\n"
        "# Weights paths are relative to this file.\n"
    )
    body = yaml.safe_dump({"models": [model_entry(r) for r in rows]}, sort_keys=False, width=120)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + body)
    tmp.replace(path)
    return path
