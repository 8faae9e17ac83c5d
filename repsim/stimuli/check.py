"""``check_datasets``: what a config's datasets hold, before a run, and whether each can be read."""

from __future__ import annotations

import logging
from pathlib import Path

from repsim.config import load_config
from repsim.errors import RepsimError
from repsim.stimuli.open import open_dataset
from repsim.stimuli.spec import parse_datasets
from repsim.stimuli.subset import similarity_subset

log = logging.getLogger(__name__)

HEADER = ("id", "domain", "classes", "subset", "train", "test", "skipped", "files")


def _format(rows: list[tuple[str, ...]], notes: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, *notes])


def check_datasets(config_path: str | Path) -> tuple[str, bool]:
    """A table of every dataset in a config and whether all of them can be read.

    Columns: id, domain, classes, images in the similarity subset, in the train and test splits,
    unreadable items skipped, and whether the files are present. Below the table, each dataset
    that cannot be read gets a line saying why and how to get its files.
    """
    cfg = load_config(config_path)
    specs = parse_datasets(cfg.get("datasets"), cfg.get("stimuli") or {})
    rows: list[tuple[str, ...]] = [HEADER]
    notes: list[str] = []
    ok = True
    for spec in specs:
        try:
            st = open_dataset(spec)
        except RepsimError as exc:
            ok = False
            classes = str(spec.n_classes) if spec.n_classes else "?"
            rows.append((spec.id, spec.domain, classes, "-", "-", "-", "-", "absent"))
            notes.append(f"{spec.id}: {exc}")
            continue
        subset = similarity_subset(st, spec.max_images, spec.per_class, spec.seed)
        n_train = int((st.split == "train").sum())
        n_test = int((st.split == "test").sum())
        rows.append(
            (spec.id, spec.domain, str(st.n_classes), str(len(subset)), str(n_train), str(n_test),
             str(len(st.skipped)), "present")
        )
        if n_train == 0:
            ok = False
            notes.append(f"{spec.id}: no train images, so no similarity subset; check the split layout")
    if not specs:
        notes.append(f"{config_path}: no datasets configured (add a 'datasets:' list)")
    return _format(rows, notes), ok
