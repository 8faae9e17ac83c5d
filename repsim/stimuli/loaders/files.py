"""Shared pieces of the file-based loaders: image extensions, header checks, split assignment,
the text files that come with a dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from repsim.stimuli.decode import MIN_SIDE, UnreadableImage, check_header
from repsim.stimuli.spec import DatasetSpec

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
VERIFY_LEVELS = ("none", "header", "full")


def read_utf8(path: Path, named: str, fix: str) -> str:
    """The text of a file that comes with a dataset (class names, a class map); one that is not
    UTF-8 is a DatasetError starting with ``named``, saying where it breaks, then ``fix``."""
    from repsim.errors import DatasetError

    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{named} is not UTF-8 text ({exc.reason} at byte {exc.start}); {fix}"
        ) from None


def verify_level(spec: DatasetSpec) -> str:
    level = spec.options.get("verify", "header")
    if level not in VERIFY_LEVELS:
        from repsim.errors import ConfigError

        raise ConfigError(
            f"dataset '{spec.id}': options.verify must be one of {VERIFY_LEVELS}, got {level!r}"
        )
    return level


def min_side(spec: DatasetSpec) -> int:
    return int(spec.options.get("min_side", MIN_SIDE))


def header_filter(
    spec: DatasetSpec, ids: Sequence[str], fetch: Callable[[int], bytes | Path]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Indices of items whose header reads as a usable image, and ``(id, reason)`` of the rest."""
    if verify_level(spec) == "none":
        return np.arange(len(ids)), []
    keep, skipped = [], []
    side = min_side(spec)
    for i, item_id in enumerate(ids):
        try:
            check_header(fetch(i), side)
            keep.append(i)
        except UnreadableImage as exc:
            skipped.append((item_id, str(exc)))
            log.warning("%s: skipping %s: %s", spec.id, item_id, exc)
        except OSError as exc:
            skipped.append((item_id, f"cannot read file ({exc})"))
    return np.asarray(keep, dtype=np.int64), skipped


def holdout_split(
    labels: np.ndarray, keys: Sequence[str], fraction: float, seed: int
) -> np.ndarray:
    """Deterministic stratified train/test split by sorted key; classes of one image stay in train."""
    split = np.full(len(labels), "train", dtype="<U5")
    rng = np.random.default_rng(seed)
    keys = np.asarray(keys, dtype=str)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(keys[members], kind="stable")]
        n_test = int(fraction * len(members))
        if n_test:
            split[rng.choice(members, size=n_test, replace=False)] = "test"
    return split
