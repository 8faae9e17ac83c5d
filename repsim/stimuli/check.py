"""``check_datasets``: what a config's datasets hold, before a run, and whether each can be read.

``repsim datasets --config X`` lists them (opening each reads the index and image headers);
``repsim datasets --config X --check`` also decodes every image, with a progress bar, and lists
each one that cannot be used with the reason (corrupt, truncated, too small, a dangling
symlink), exactly the items a run would skip and record in ``run.json``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from repsim.config import load_config, parse_config, select_ids
from repsim.errors import RepsimError
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.stimuli.open import open_dataset
from repsim.stimuli.spec import DatasetSpec, parse_datasets
from repsim.stimuli.subset import (
    PROBE_CLASSES_FIX,
    PROBE_SPLIT_FIX,
    missing_split,
    probe_split_problem,
    similarity_subset,
)

log = logging.getLogger(__name__)

HEADER = ("id", "domain", "classes", "subset", "train", "test", "skipped", "files")
#: characters of the reason in the files cell of a dataset whose files are present but invalid
#: (the note below the table gives the whole message, with its fix)
REASON_WIDTH = 64
_PARENTHESES = re.compile(r" ?\([^()]*\)")


def _format(rows: list[tuple[str, ...]], notes: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, *notes])


def _files_cell(spec: DatasetSpec, exc: Exception) -> str:
    """``absent``, or ``present, invalid: <reason>`` when every local file and folder the dataset
    names exists, so that a damaged file is not sent to be downloaded again."""
    paths = spec.data_paths()
    if not paths or any(path_problem(p, "file") == DOES_NOT_EXIST for p in paths.values()):
        return "absent"  # not a symlink loop or a FIFO: those are there, and invalid
    return f"present, invalid: {_short_reason(str(exc), paths.values())}"


def _short_reason(message: str, paths: Iterable[Path]) -> str:
    """The cause in ``message`` for a table cell: its last ``context: `` clause before the fix
    (after the first ``; ``), without details in parentheses or the folders above the data
    paths, cut to REASON_WIDTH. The row names the dataset; the note below has the whole message."""
    reason = message.split("; ")[0]
    while (shorter := _PARENTHESES.sub("", reason)) != reason:
        reason = shorter
    reason = reason.rsplit(": ", 1)[-1]
    for parent in sorted({str(Path(p).parent) for p in paths}, key=len, reverse=True):
        if parent not in ("", ".", "/"):
            reason = reason.replace(parent + "/", "")
    return reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 3] + "..."


def check_datasets(
    config: str | Path | Mapping[str, Any], *, decode: bool = False
) -> tuple[str, bool]:
    """A table of every dataset in a config (honouring ``select:``) and whether all can be read.

    Columns: id, domain, classes, images in the similarity subset, in the train and test splits,
    unreadable items skipped, and the files: ``present``, ``absent``, or ``present, invalid:``
    with the reason in short, so a damaged file is not taken for one to download. Below the
    table, each dataset that cannot be read gets a line saying why and how to get or fix its
    files, and (``decode``: every image decoded) each skipped item a line with its id and the
    reason. ``ok`` is False when a dataset cannot be read, lacks a split the config needs
    (:func:`repsim.stimuli.subset.missing_split`), cannot take the config's linear probes
    (:func:`repsim.stimuli.subset.probe_split_problem`) or, with ``decode``, holds an unusable
    item.
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
            files = _files_cell(spec, exc)
            rows.append((spec.id, spec.domain, classes, "-", "-", "-", "-", files))
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
        probe = probe_split_problem(spec.id, st.split, st.labels) if cfg.probe.enabled else None
        if probe is not None:  # what the run refuses before extracting, said here too
            ok = False
            kind, why = probe
            fix = PROBE_SPLIT_FIX if kind == "split" else PROBE_CLASSES_FIX
            notes.append(f"{spec.id}: linear probes cannot run: {why}{fix}")
        if st.skipped:
            ok = ok and not decode
            notes.append(
                f"{spec.id}: {len(st.skipped)} item(s) cannot be used and are skipped by a run:"
            )
            notes.extend(f"  {item}: {reason}" for item, reason in st.skipped)
    if not specs:  # a run refuses it, so the check does not pass it (as the models' check)
        notes.append(f"{cfg.path}: no datasets configured (add a 'datasets:' list)")
        ok = False
    if decode and ok and specs:
        notes.append(f"every image of the {len(specs)} dataset(s) decodes")
    return _format(rows, notes), ok
