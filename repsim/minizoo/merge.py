"""Merge zoo folders trained side by side into one zoo (``repsim minizoo merge``).

Two training processes must never share an ``--out`` folder (each rewrites its manifest), so a
retraining on two cores ends with two folders. Merging copies every model of the sources into the
target, replacing rows of the same id, and refuses what would make a zoo the tests reject: a file
its manifest does not describe, a model without held-out rows, one id trained twice differently,
and trained models of more than one budget or objective setting.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from repsim.argtypes import Parser
from repsim.errors import ConfigError
from repsim.minizoo.manifest import (
    merge_heldout,
    merge_rows,
    read_manifest,
    write_heldout,
    write_manifest,
    write_models_yaml,
)
from repsim.minizoo.objectives import objective_key
from repsim.minizoo.train import recorded_recipe
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.runfolder import (
    check_output_path,
    check_path_option,
    describe_output_error,
    sha256_file,
)

HELDOUT = "heldout.csv"


def _source_models(src: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The manifest rows of ``src`` with their held-out rows, each file checked against its row."""
    problem = path_problem(src, "folder")  # a link loop was a RuntimeError traceback
    if problem not in (None, DOES_NOT_EXIST):
        raise ConfigError(f"zoo folder {src} {problem}; name the --out folders of trainings")
    rows = read_manifest(src / "manifest.csv")
    if not rows:
        raise ConfigError(f"{src / 'manifest.csv'} is missing or empty; is {src} a zoo folder?")
    held = read_manifest(src / HELDOUT)
    for row in rows:
        path = src / row["weights"]
        if not path.exists():
            raise ConfigError(f"{row['id']}: {path} is missing; retrain it or drop its row")
        if sha256_file(path) != row["sha256"]:
            raise ConfigError(
                f"{row['id']}: {path.name} in {src} does not match its manifest row (SHA-256 "
                f"differs); retrain it with `repsim minizoo train --out {src} --only {row['id']}`"
            )
        mine = [h for h in held if h["id"] == row["id"]]
        if not mine or any(h["sha256"] != row["sha256"] for h in mine):
            raise ConfigError(
                f"{row['id']}: {src / HELDOUT} has no rows for this file; run "
                f"`repsim minizoo evaluate --zoo {src}` first"
            )
    return rows, held


def _recipe(path: Path, method: str) -> str:
    """The objective settings and optimiser a file records, as one comparable string."""
    key = objective_key(method)
    if key is None:
        raise ConfigError(f"{path.name}: its manifest row names an unknown method {method!r}")
    return json.dumps(recorded_recipe(path, key), sort_keys=True)


def _check_one_recipe(rows: list[dict[str, Any]], files: dict[str, Path]) -> None:
    """Refuse a merged zoo whose trained models differ in budget, or one objective in settings
    (``files``: each model's weights file, where it is before the copy)."""
    # rows written before the lr column existed were trained with the default 2e-3
    budgets = {
        (int(r["epochs"]), int(r["steps"]), float(r["lr"] or 2e-3))
        for r in rows
        if r["objective"] != "Random"
    }
    if len(budgets) > 1:
        raise ConfigError(
            f"the merged zoo would mix training budgets (epochs, steps, lr) {sorted(budgets)}; "
            "every objective gets the same budget, so retrain the odd ones out or merge elsewhere"
        )
    by_method: dict[str, set[str]] = {}
    for r in rows:
        by_method.setdefault(r["method"], set()).add(_recipe(files[r["id"]], r["method"]))
    mixed = {m: sorted(v) for m, v in by_method.items() if len(v) > 1}
    if mixed:
        raise ConfigError(
            f"the merged zoo would train one objective with different settings: {mixed}; every "
            "architecture and seed of an objective gets the same, so retrain the odd ones out"
        )


def merge_zoos(sources: list[str | Path], into: str | Path) -> list[str]:
    """Copy every model of ``sources`` into the zoo ``into``; returns the ids merged.

    Every check runs before anything is written; weights are copied atomically, then the
    manifest, ``models.yaml`` and ``heldout.csv`` of ``into`` are rewritten from the merged rows.
    """
    into = Path(into)
    new_rows: dict[str, tuple[Path, dict[str, str]]] = {}
    new_held: list[dict[str, str]] = []
    for src in map(Path, sources):
        rows, held = _source_models(src)  # first: resolve() raised RuntimeError on a link loop
        if src.resolve() == into.resolve():
            raise ConfigError(f"{src} is the target folder; name only the folders to merge in")
        for row in rows:
            seen = new_rows.get(row["id"])
            if seen and seen[1]["sha256"] != row["sha256"]:
                raise ConfigError(
                    f"{row['id']} is in both {seen[0]} and {src} with different weights; "
                    "keep one of them"
                )
            new_rows[row["id"]] = (src, row)
        new_held += [h for h in held if h["id"] in {r["id"] for r in rows}]
    old_rows = read_manifest(into / "manifest.csv")
    rows = merge_rows(old_rows, [row for _, row in new_rows.values()])
    # a model taken from a source is judged by the source's file; the others by the target's
    files = {r["id"]: into / r["weights"] for r in old_rows}
    files.update({r["id"]: src / r["weights"] for src, r in new_rows.values()})
    for r in rows:
        path = files[r["id"]]
        if r["id"] in new_rows:
            continue
        # a model the merge keeps must be the file its row describes, as a source's must
        if not path.exists() or sha256_file(path) != r["sha256"]:
            raise ConfigError(
                f"{r['id']}: {path} in the target zoo is missing or does not match its manifest "
                f"row (SHA-256); retrain it with `repsim minizoo train --out {into} --only {r['id']}`"
            )
    _check_one_recipe(rows, files)
    into.mkdir(parents=True, exist_ok=True)
    for src, row in new_rows.values():
        tmp = into / (row["weights"] + ".tmp")
        try:
            shutil.copyfile(src / row["weights"], tmp)
            tmp.replace(into / row["weights"])
        finally:  # a full disk left a partial .tmp file in the zoo
            tmp.unlink(missing_ok=True)
    write_manifest(rows, into / "manifest.csv")
    write_models_yaml(rows, into / "models.yaml")
    write_heldout(merge_heldout(read_manifest(into / HELDOUT), new_held), into / HELDOUT)
    return sorted(new_rows)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="repsim minizoo merge",
        description="Merge zoo folders trained side by side into one zoo (weights, manifest.csv, "
        "models.yaml, heldout.csv).",
    )
    p.add_argument("sources", nargs="+", help="zoo folders to merge in (their --out folders)")
    p.add_argument("--into", required=True, help="the zoo to merge into, e.g. data/minizoo")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``repsim minizoo merge``."""
    args = build_parser().parse_args(argv)
    for source in args.sources:
        check_path_option(source, "a zoo folder to merge", "read")
    check_output_path(args.into, "--into", "folder")
    try:
        before = {r["id"]: r["sha256"] for r in read_manifest(Path(args.into) / "manifest.csv")}
        ids = merge_zoos(args.sources, args.into)
    except OSError as exc:  # unreadable source, full disk, no permission: name it, no traceback
        raise ConfigError(describe_output_error(exc, args.into, "--into")) from exc
    after = {r["id"]: r["sha256"] for r in read_manifest(Path(args.into) / "manifest.csv")}
    print(f"merged {len(ids)} models into {args.into} (now {len(after)}): {', '.join(ids)}")
    replaced = [i for i in ids if i in before and before[i] != after[i]]
    if replaced:  # retraining replaces on purpose, but the user should see what was there
        print(f"replaced {len(replaced)} with other weights: {', '.join(replaced)}")
    return 0
