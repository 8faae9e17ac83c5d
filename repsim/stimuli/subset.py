"""Stratified similarity subsets and the stimulus table, as in the study.

The similarity analysis uses the train split, as the study did, or the test split when the config
says ``stimuli: {split: test}`` (images no model of a zoo trained on, e.g. the mini-zoo); above
``max_images`` images it takes, per class, min(n_c, ceil(max_images / C)) images without
replacement (C = classes present in that split), or ``per_class`` images when set (ImageNet: 10). Items are sorted by id before sampling,
so the subset depends only on the ids, never on the order a loader streamed them in.

Same rule, sizes and seed as the study, not the same images: the study seeded numpy's global
generator once and drew its datasets one after another (ImageNet with Python's ``random``), while
each dataset here has its own generator from the seed. A run of the study's design therefore
measures similarity on other stimuli of the same datasets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from repsim.errors import DatasetError
from repsim.stimuli.spec import LOADER_OPTIONS, DatasetSpec
from repsim.stimuli.stimset import StimulusSet

TABLE_COLUMNS = ["id", "label", "split", "in_similarity"]


def similarity_subset(
    stimset: StimulusSet,
    max_images: int = 10000,
    per_class: int | None = None,
    seed: int = 42,
    split: str = "train",
    counts: Mapping[Any, int] | None = None,
) -> np.ndarray:
    """Ids (sorted) of the images of ``split`` used for similarity.

    ``counts``, in place of the cap: how many images to draw of each class (classes it leaves
    out: none), with the same generator; the train-split variant of the robustness chapter draws
    the held-out subset's class counts from the train split so.
    """
    train = np.flatnonzero(stimset.split == split)
    order = train[np.argsort(stimset.ids[train], kind="stable")]
    ids, labels = stimset.ids[order], stimset.labels[order]
    if counts is None and per_class is None and len(ids) <= max_images:
        return ids
    classes = np.unique(labels)
    k = per_class if per_class is not None else math.ceil(max_images / max(len(classes), 1))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        k_c = k if counts is None else counts.get(c, 0)
        members = ids[labels == c]
        if len(members) <= k_c:
            chosen.append(members)
        elif k_c:
            chosen.append(rng.choice(members, size=k_c, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else ids[:0]


def missing_split(stimset: StimulusSet, split: str, spec: DatasetSpec | None = None) -> str | None:
    """Why ``split`` cannot give a similarity subset (it holds no images) and the fixes, or None.

    Said by the check and the run alike: otherwise an empty split surfaces only later, as a
    subset too small for the measures ("raise stimuli.max_images"), which cannot help.
    """
    if (stimset.split == split).any():
        return None
    if stimset.skipped and not len(stimset):  # every item unreadable: not a split layout problem
        item, reason = stimset.skipped[0]
        return (
            f"dataset '{stimset.dataset_id}' has no usable images: all {len(stimset.skipped)} "
            f"items could not be read and were skipped (the first, {item}: {reason}); repair or "
            "replace the files (`repsim datasets --config CONFIG --check` lists each)"
        )
    other = "test" if split == "train" else "train"
    what = (
        f"dataset '{stimset.dataset_id}' has no {split} images (all {len(stimset)} are {other}) "
        f"while stimuli.split is {split}"
    )
    if split == "train":
        return f"{what}; check the split layout, or set stimuli.split: test"
    if spec is not None and "test_fraction" in LOADER_OPTIONS.get(spec.loader, ()):
        return (
            f"{what}; hold out a part with options.test_fraction (e.g. 0.2), name its test "
            "split with options.splits (e.g. {train: train, test: validation}), "
            "or set stimuli.split: train"
        )
    return f"{what}; add test images to the dataset, or set stimuli.split: train"


#: the fixes of the probe checks on the datasets (the run's and ``repsim datasets --check``'s)
PROBE_SPLIT_FIX = (
    ". Hold out a test part (imagefolder and torchvision: options: {test_fraction: 0.2}), give "
    "the split folders (options: {splits: ...}), or turn probes off (probe: {enabled: false})."
)
PROBE_CLASSES_FIX = (
    ". Give those datasets train images of every class they test, leave them out (select: "
    "{datasets: [...]}), or turn probes off (probe: {enabled: false})."
)


def probe_split_problem(dataset_id: str, split: Any, labels: Any) -> tuple[str, str] | None:
    """Why linear probes cannot be fitted and scored on a dataset with these per-item ``split``
    and ``labels``: ``("split", why)`` without a train or a test split, ``("classes", why)`` with
    fewer than 2 classes in its train split or test classes its train split lacks; else None.

    One rule for ``repsim datasets --check`` and the run (which refuses before any extraction):
    the check passed datasets the run then refused.
    """
    split, labels = np.asarray(split, dtype=str), np.asarray(labels)
    lacking = [s for s in ("train", "test") if not (split == s).any()]
    if lacking:
        return "split", f"{dataset_id} has no {' or '.join(lacking)} images"
    train = set(labels[split == "train"].tolist())
    unseen = sorted(set(labels[split == "test"].tolist()) - train)
    if len(train) < 2:
        return (
            "classes",
            f"{dataset_id} has {len(train)} class in its train split (a probe needs 2)",
        )
    if unseen:
        return "classes", (
            f"{dataset_id} has test images of {len(unseen)} class(es) its train split lacks "
            f"(class indices {', '.join(str(u) for u in unseen[:10])})"
        )
    return None


def stimulus_table(
    spec_or_stimset: DatasetSpec | StimulusSet,
    max_images: int | None = None,
    per_class: int | None = None,
    seed: int | None = None,
    verify: bool | str = True,
    progress: bool = False,
    split: str | None = None,
    known_unreadable: Sequence[Sequence[str]] | None = None,
) -> pd.DataFrame:
    """One row per usable item, sorted by id: ``id, label, split, in_similarity``.

    Given a spec, the dataset is opened and the spec's subset rules apply unless overridden.
    ``verify`` decodes images once before the table is made, so that every row can be read later:
    ``True``/``"all"`` every item (train and test splits, as probes read them all),
    ``"similarity"`` only the similarity subset (redrawn without the failures), ``False`` none.
    Items that fail are skipped and listed in ``table.attrs["skipped"]`` with the reason, for the
    run record; ``table.attrs["unreadable"]`` those that failed the verification of every item.
    ``known_unreadable``: that list from an earlier table of the same data, made by the same
    code: the verification of every item drops them without decoding anything
    (:meth:`StimulusSet.verify`'s ``known``). ``table.attrs["class_names"]`` holds the class
    names.
    """
    if isinstance(spec_or_stimset, DatasetSpec):
        from repsim.stimuli.open import open_dataset

        spec = spec_or_stimset
        stimset = open_dataset(spec)
        max_images = spec.max_images if max_images is None else max_images
        per_class = spec.per_class if per_class is None else per_class
        seed = spec.seed if seed is None else seed
        split = spec.split if split is None else split
    else:
        spec, stimset = None, spec_or_stimset
    max_images = 10000 if max_images is None else max_images
    seed = 42 if seed is None else seed
    split = "train" if split is None else split
    unreadable: list = []
    if verify is True or verify == "all":
        before = len(stimset.skipped)
        stimset = stimset.verify(progress=progress, known=known_unreadable)
        unreadable = list(stimset.skipped[before:])
    problem = missing_split(stimset, split, spec)
    if problem:
        raise DatasetError(problem)
    subset = similarity_subset(stimset, max_images, per_class, seed, split)
    if verify == "similarity":
        for _ in range(10):  # each round removes unreadable picks; a handful of rounds suffices
            n_before = len(stimset)
            stimset = stimset.verify(stimset.indices_of(subset))
            if len(stimset) == n_before:
                break
            subset = similarity_subset(stimset, max_images, per_class, seed, split)
    order = np.argsort(stimset.ids, kind="stable")
    table = pd.DataFrame(
        {
            "id": stimset.ids[order],
            "label": stimset.labels[order],
            "split": stimset.split[order],
            "in_similarity": np.isin(stimset.ids[order], subset),
        }
    )
    table.attrs["skipped"] = list(stimset.skipped)
    table.attrs["unreadable"] = unreadable
    table.attrs["class_names"] = list(stimset.class_names)
    table.attrs["dataset"] = stimset.dataset_id
    return table
