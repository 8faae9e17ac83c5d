"""The mini-zoo's training data: the union of the embedded stimulus sets, with a joint label space.

Every model of the zoo sees the same images in the same order (for a given seed): the train splits
of all embedded sets (``data/embedded/*.npz``), labelled by ``(dataset, class)`` pairs, each with
a generated caption. The test splits are held out for the accuracies in the manifest. The study
drew its similarity stimuli from train splits (images from, or like, the training distribution);
the default run (``data/configs/embedded.yaml``) draws them from the test splits, images no model
of the mini-zoo trained on, and ``stimuli: {split: train}`` gives the study's variant.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repsim.errors import DatasetError
from repsim.minizoo.captions import make_captions
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.stimuli.loaders.embedded import read_npz

log = logging.getLogger(__name__)


@dataclass
class ZooData:
    """Images ``(n, 3, 32, 32)`` uint8 with joint labels, captions and the train/test split."""

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    is_train: torch.Tensor
    class_names: list[str]
    datasets: list[str]

    def subset(self, train: bool) -> ZooData:
        """The train (``True``) or held-out test (``False``) part."""
        mask = self.is_train if train else ~self.is_train
        idx = torch.nonzero(mask).flatten()
        return ZooData(
            images=self.images[idx],
            labels=self.labels[idx],
            captions=[self.captions[i] for i in idx.tolist()],
            is_train=self.is_train[idx],
            class_names=self.class_names,
            datasets=self.datasets,
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def description(self) -> str:
        """The ``training_data`` string of the manifest."""
        return "embedded:" + "+".join(self.datasets) + " (train splits)"


def check_data_dir(embedded_dir: str | Path) -> None:
    """DatasetError unless ``embedded_dir`` is a folder (of embedded sets): a set's own file or a
    missing folder is named as such, before a command creates its output folder."""
    root = Path(embedded_dir)
    if root.is_file():  # one set named by its file: said, not "no sets under it"
        raise DatasetError(
            f"{root} is a file; the embedded sets are read from the folder that holds them: give "
            f"{root.parent}" + (f" with --datasets {root.stem}" if root.suffix == ".npz" else "")
        )
    problem = path_problem(root, "folder")  # a link loop was said not to exist
    if problem is not None:
        raise DatasetError(
            f"folder of embedded sets {root} {problem}; generate them with "
            "`python -m repsim.embedded`, or give the folder that holds the *.npz files"
        )


def zoo_data_paths(embedded_dir: str | Path, datasets: list[str] | None = None) -> list[Path]:
    """The files of the embedded sets under ``embedded_dir`` (every ``*.npz``, sorted, or those
    named), each a readable file: DatasetError naming the first that is not, before a command
    creates its output folder (an unknown ``--datasets`` name left an empty one)."""
    root = Path(embedded_dir)
    check_data_dir(root)
    paths = (
        sorted(root.glob("*.npz")) if datasets is None else [root / f"{d}.npz" for d in datasets]
    )
    if not paths:
        raise DatasetError(
            f"no embedded sets (*.npz) under {root}; generate them with `python -m repsim.embedded`"
        )
    for path in paths:
        problem = path_problem(path, "file")
        if problem is not None:
            there = sorted(p.stem for p in root.glob("*.npz"))
            named = f"; the sets there are {', '.join(there)}" if problem == DOES_NOT_EXIST else ""
            raise DatasetError(
                f"embedded set {path} {problem}; generate it with `python -m repsim.embedded`"
                + (named if there else "")
            )
    return paths


def load_zoo_data(embedded_dir: str | Path, datasets: list[str] | None = None) -> ZooData:
    """Read the embedded sets under ``embedded_dir`` (all ``*.npz``, sorted, or those named).

    Labels are offset per dataset so that ``(dataset, class)`` pairs form one label space;
    class names become ``"<dataset>/<class>"``.
    """
    images, labels, captions, is_train, class_names, names = [], [], [], [], [], []
    for path in zoo_data_paths(embedded_dir, datasets):
        d = read_npz(path, "embedded set ")
        missing = {"images", "labels", "split", "class_names"} - set(d)
        if missing:
            raise DatasetError(
                f"embedded set {path} lacks keys {sorted(missing)}; regenerate it with "
                "`python -m repsim.embedded`"
            )
        name = path.stem
        classes = [str(c) for c in d["class_names"]]
        attrs = json.loads(str(d["attributes"])) if "attributes" in d else None
        if d["images"].shape[1:] != (32, 32, 3):
            raise DatasetError(
                f"embedded set {path}: images have shape {d['images'].shape[1:]}, expected "
                "(32, 32, 3); regenerate it with `python -m repsim.embedded`"
            )
        images.append(torch.from_numpy(np.ascontiguousarray(d["images"].transpose(0, 3, 1, 2))))
        labels.append(torch.from_numpy(d["labels"].astype(np.int64)) + len(class_names))
        captions += make_captions(name, classes, d["labels"].tolist(), attrs)
        is_train.append(torch.from_numpy(d["split"] == "train"))
        class_names += [f"{name}/{c}" for c in classes]
        names.append(name)
    data = ZooData(
        images=torch.cat(images),
        labels=torch.cat(labels),
        captions=captions,
        is_train=torch.cat(is_train),
        class_names=class_names,
        datasets=names,
    )
    log.info(
        "mini-zoo data: %d images (%d train) from %d sets, %d classes",
        len(data),
        int(data.is_train.sum()),
        len(names),
        len(class_names),
    )
    return data


def synthetic_npz(path: str | Path, n: int = 96, n_classes: int = 3, seed: int = 0) -> Path:
    """Write a small embedded-format set of coloured squares (for tests and dry runs).

    Class ``k`` draws a square of colour ``k`` at a random place; attributes record colour,
    size and position, so captions and every objective have something to learn.
    """
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue", "yellow", "cyan", "magenta"]
    rgb = np.array(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
        np.uint8,
    )
    images = (rng.integers(0, 60, size=(n, 32, 32, 3))).astype(np.uint8)
    labels = np.arange(n) % n_classes
    attributes = []
    for i, k in enumerate(labels):
        size = int(rng.integers(6, 16))
        x, y = rng.integers(0, 32 - size, size=2)
        images[i, y : y + size, x : x + size] = rgb[k % len(rgb)]
        attributes.append(
            {"colour": colours[k % len(colours)], "size": size, "x": int(x), "y": int(y)}
        )
    split = np.where(np.arange(n) % 4 == 3, "test", "train")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        images=images,
        labels=labels.astype(np.int64),
        split=split,
        ids=np.array([f"{path.stem}-{i}" for i in range(n)]),
        class_names=np.array([f"class{k}" for k in range(n_classes)]),
        attributes=np.array(json.dumps(attributes)),
    )
    return path
