"""The loaded form of a dataset: aligned ids, labels and splits, and lazy image access."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from repsim.config import SPLITS
from repsim.errors import DatasetError
from repsim.stimuli.decode import UnreadableImage

log = logging.getLogger(__name__)

Reader = Callable[[int], np.ndarray]


@dataclass
class StimulusSet:
    """Items of one dataset, in a stable order, with arrays aligned item by item.

    ``reader(i)`` decodes item ``i`` to an (H, W, 3) uint8 array. ``images`` holds all images
    in memory instead when the source is already an array (the embedded sets).
    ``skipped`` lists ``(id, reason)`` of every item that could not be used: nothing is dropped
    silently, and the run record copies this list.
    """

    dataset_id: str
    ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    domain: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reader: Reader | None = None
    images: np.ndarray | None = None
    attributes: list[dict] | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=str)
        where = f"dataset '{self.dataset_id}'"
        self.labels = class_indices(self.labels, where)
        self.split = np.asarray(self.split, dtype=str)
        self.class_names = [str(c) for c in self.class_names]
        n = len(self.ids)
        if len(self.labels) != n or len(self.split) != n:
            raise DatasetError(
                f"{where}: ids, labels and split differ in length ({n}, {len(self.labels)}, {len(self.split)})"
            )
        if self.images is not None and len(self.images) != n:
            raise DatasetError(
                f"{where}: {len(self.images)} images for {n} ids; regenerate the file"
            )
        if self.attributes is not None and len(self.attributes) != n:
            raise DatasetError(f"{where}: {len(self.attributes)} attribute records for {n} ids")
        uniq, counts = np.unique(self.ids, return_counts=True)
        if len(uniq) != n:
            dups = uniq[counts > 1][:5].tolist()
            raise DatasetError(
                f"{where}: duplicate stimulus ids {dups}; ids must be unique (fix the file names or keys)"
            )
        bad = sorted(set(np.unique(self.split).tolist()) - set(SPLITS))
        if bad:
            raise DatasetError(f"{where}: unknown split values {bad}; use 'train' or 'test'")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DatasetError(
                f"{where}: labels must lie in [0, {len(self.class_names)}) for {len(self.class_names)} class names"
            )
        if self.images is None and self.reader is None:
            raise DatasetError(f"{where}: no image source (reader or images)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def counts(self, split: str | None = None) -> np.ndarray:
        """Images per class (all splits, or one split)."""
        labels = self.labels if split is None else self.labels[self.split == split]
        return np.bincount(labels, minlength=self.n_classes)

    def indices_of(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Positions of the given ids; DatasetError naming the first unknown id."""
        order = np.argsort(self.ids)
        ids = np.asarray(ids, dtype=str)
        pos = np.searchsorted(self.ids, ids, sorter=order)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        found = order[pos] if len(order) else np.zeros(0, dtype=np.int64)
        missing = ~(self.ids[found] == ids) if len(order) else np.ones(len(ids), bool)
        if missing.any():
            raise DatasetError(
                f"dataset '{self.dataset_id}': stimulus id {str(ids[missing][0])!r} is not in the dataset; "
                "the stimulus table was written for other data (delete RUN/stimuli to rebuild it)"
            )
        return found.astype(np.int64)

    def _read(self, i: int) -> np.ndarray:
        if self.images is not None:
            return self.images[i]
        try:
            return self.reader(int(i))
        except UnreadableImage as exc:
            raise DatasetError(
                f"dataset '{self.dataset_id}': cannot decode {self.ids[i]}: {exc}. "
                "Call StimulusSet.verify() first, or set options: {verify: full} on the dataset, "
                "to skip unreadable items when the dataset is opened"
            ) from None

    def load_images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Decoded RGB uint8 images: an (n, H, W, 3) array when sizes agree, else a list."""
        idx = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            return self.images[idx]
        out = [self._read(i) for i in idx]
        if out and all(im.shape == out[0].shape for im in out):
            return np.stack(out)
        return out

    def take(self, indices: Sequence[int] | np.ndarray) -> StimulusSet:
        """A new StimulusSet with only the given items (same reader, same skipped list)."""
        idx = np.asarray(indices, dtype=np.int64)
        base = self

        def reader(i: int) -> np.ndarray:
            return base.reader(int(idx[i]))

        return StimulusSet(
            dataset_id=self.dataset_id,
            ids=self.ids[idx],
            labels=self.labels[idx],
            split=self.split[idx],
            class_names=self.class_names,
            domain=self.domain,
            skipped=list(self.skipped),
            reader=reader if self.reader is not None else None,
            images=self.images[idx] if self.images is not None else None,
            attributes=[self.attributes[i] for i in idx] if self.attributes is not None else None,
        )

    def verify(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        progress: bool = False,
        known: Sequence[Sequence[str]] | None = None,
    ) -> StimulusSet:
        """Decode the given items (all by default); return the set without those that fail.

        Failures are appended to ``skipped`` with the reason and logged, never dropped silently.
        Decoding runs on a few threads (PIL releases the GIL); ``progress`` shows a tqdm bar.
        The result does not depend on the thread count: items are judged one by one, in order.

        ``known``: the failures, ``(id, reason)``, of an earlier verification of the same data
        by the same code: those items are dropped as a decode would drop them, and nothing is
        decoded (a new similarity subset decoded every image of the dataset again).
        """
        if self.images is not None:
            return self
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if known is not None:
            reasons = {str(k[0]): str(k[1]) for k in known}
            judged = [reasons.get(str(self.ids[i])) for i in idx]
        else:
            judged = _decode_errors(self.reader, idx, self.dataset_id, progress)
        bad: list[int] = []
        for i, reason in zip(idx, judged):
            if reason is not None:
                bad.append(int(i))
                self.skipped.append((str(self.ids[i]), reason))
                log.warning("%s: skipping %s: %s", self.dataset_id, self.ids[i], reason)
        if not bad:
            return self
        keep = np.setdiff1d(np.arange(len(self)), bad)
        return self.take(keep)


def class_indices(labels: Any, where: str) -> np.ndarray:
    """Labels as int64 class indices; float labels only when every value is whole (the cast would
    truncate 1.7 to 1 without a word), whichever loader or caller built them."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DatasetError(
            f"{where}: labels must hold one class index per image, got an array of shape "
            f"{labels.shape}; flatten them (labels.reshape(-1)) or fix the file"
        )
    if labels.dtype.kind not in "iuf":
        example = f" (e.g. {labels[0]!r})" if len(labels) else ""
        raise DatasetError(
            f"{where}: labels are {labels.dtype}{example}, not class indices; store the index of "
            "each image's class as an integer and the names in class_names"
        )
    if labels.dtype.kind == "f":
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if len(bad):
            raise DatasetError(
                f"{where}: labels are {labels.dtype} with values that are not whole numbers (e.g. "
                f"{bad[0]}); labels are class indices: store them as integers"
            )
    return labels.astype(np.int64)


def _decode_errors(reader: Reader, idx: np.ndarray, name: str, progress: bool) -> list[str | None]:
    """For each index: None when the item decodes, else the reason it cannot be used."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    def one(i: int) -> str | None:
        try:
            reader(int(i))
        except UnreadableImage as exc:
            return str(exc)
        except OSError as exc:  # the file vanished or cannot be opened
            return f"cannot read file ({type(exc).__name__}: {exc})"
        return None

    workers = max(1, min(8, os.cpu_count() or 1))
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(idx), desc=f"{name}: decoding", unit="img", disable=not progress, leave=False
        ) as bar,
    ):
        out = []
        for reason in pool.map(one, idx.tolist()):
            out.append(reason)
            bar.update(1)
    return out
