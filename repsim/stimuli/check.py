"""``check_datasets``: what a config's datasets hold, before a run, and whether each can be read.

``repsim datasets --config X`` lists them (opening each reads the index and image headers);
``repsim datasets --config X --check`` also decodes every image, with a progress bar, and lists
each one that cannot be used with the reason (corrupt, truncated, too small, a dangling
symlink), exactly the items a run would skip and record in ``run.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repsim.config import load_config, parse_config, select_ids
from repsim.errors import RepsimError
from repsim.stimuli.open import open_dataset
from repsim.stimuli.spec import parse_datasets
from repsim.stimuli.subset import missing_split, similarity_subset

log = logging.getLogger(__name__)

HEADER = ("id", "domain", "classes", "subset", "train", "test", "skipped", "files")


def _format(rows: list[tuple[str, ...]], notes: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, *notes])


def check_datasets(
    config: str | Path | Mapping[str, Any], *, decode: bool = False
) -> tuple[str, bool]:
    """A table of every dataset in a config (honouring ``select:``) and whether all can be read.

    Columns: id, domain, classes, images in the similarity subset, in the train and test splits,
    unreadable items skipped, and whether the files are present. Below the table, each dataset
    that cannot be read gets a line saying why and how to get its files, and (``decode``: every
    image decoded) each skipped item a line with its id and the reason. ``ok`` is False when a
    dataset cannot be read, has no train images or, with ``decode``, holds an unusable item.
    """
    raw = config if isinstance(config, Mapping) else load_config(config)
    cfg = parse_config(raw)
    specs = parse_datasets(cfg.datasets, cfg.stimuli.to_dict())
    specs = select_ids(specs, cfg.select.datasets, "datasets", cfg.path)
    rows: list[tuple[str, ...]] = [HEADER]
    notes: list[str] = []
    ok = True
    for spec in specs:
        try:
            st = open_dataset(spec)
            if decode:
                st = st.verify(progress=True)
        except RepsimError as exc:
            ok = False
            classes = str(spec.n_classes) if spec.n_classes else "?"
            rows.append((spec.id, spec.domain, classes, "-", "-", "-", "-", "absent"))
            notes.append(f"{spec.id}: {exc}")
            continue
        subset = similarity_subset(st, spec.max_images, spec.per_class, spec.seed, spec.split)
        n_train = int((st.split == "train").sum())
        n_test = int((st.split == "test").sum())
        rows.append(
            (
                spec.id,
                spec.domain,
                str(st.n_classes),
                str(len(subset)),
                str(n_train),
                str(n_test),
                str(len(st.skipped)),
                "present",
            )
        )
        problem = missing_split(st, spec.split, spec)
        if problem:
            ok = False
            notes.append(f"{spec.id}: {problem}")
        if st.skipped:
            ok = ok and not decode
            notes.append(
                f"{spec.id}: {len(st.skipped)} item(s) cannot be used and are skipped by a run:"
            )
            notes.extend(f"  {item}: {reason}" for item, reason in st.skipped)
    if not specs:
        notes.append(f"{cfg.path}: no datasets configured (add a 'datasets:' list)")
    if decode and ok and specs:
        notes.append(f"every image of the {len(specs)} dataset(s) decodes")
    return _format(rows, notes), ok
