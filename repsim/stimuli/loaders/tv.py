"""torchvision datasets from a local root folder; downloads only with ``options: {download: true}``.

``options.name`` is the torchvision class (``CIFAR10``, ``MNIST``, ``Flowers102``, ...). Its train
and test parts are built with ``train=True/False`` or ``split=...``, whichever the class takes;
``options.splits`` maps our split names to the class's (e.g. ``{test: val}``), and
``options.kwargs`` passes anything else to the constructor. A dataset with one part only (EuroSAT)
gets a stratified test part of ``options.test_fraction``.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
from PIL import Image

from repsim.errors import ConfigError, DatasetError
from repsim.stimuli.decode import UnreadableImage, to_rgb_array
from repsim.stimuli.loaders.files import holdout_split
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet, class_indices

log = logging.getLogger(__name__)

_LABEL_ATTRS = ("targets", "labels", "_labels", "y")


def _labels(ds, where: str) -> np.ndarray:
    """The class index of each item, from the dataset's label attribute where it has one, checked
    as class indices (a float 1.5 was cast to class 1, a label array per item raised a bare
    ValueError)."""
    for attr in _LABEL_ATTRS:
        value = getattr(ds, attr, None)
        if value is not None and len(value) == len(ds):
            labels = np.asarray(value)
            if labels.shape == (len(ds), 1):  # a column of labels
                labels = labels[:, 0]
            return class_indices(labels, where)
    for attr in ("samples", "_samples", "imgs"):
        value = getattr(ds, attr, None)
        if value is not None and len(value) == len(ds):
            return class_indices([s[1] for s in value], where)
    log.info("reading labels of %s item by item (no label attribute)", type(ds).__name__)
    return class_indices([ds[i][1] for i in range(len(ds))], where)


def _to_rgb(img) -> np.ndarray:
    if isinstance(img, Image.Image):
        return to_rgb_array(img)
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint8:
        arr = (
            np.clip(arr * (255 if arr.max(initial=0) <= 1 else 1), 0, 255).round().astype(np.uint8)
        )
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UnreadableImage(f"item of shape {arr.shape} is not an image")
    return arr


def _build(spec: DatasetSpec, cls, split: str):
    params = inspect.signature(cls).parameters
    kwargs = dict(spec.options.get("kwargs") or {})
    theirs = (spec.options.get("splits") or {}).get(split, split)
    if "train" in params:
        kwargs["train"] = theirs == "train"
    elif "split" in params:
        kwargs["split"] = theirs
    elif split == "test":
        return None  # one-part dataset: everything is train
    if "download" in params:
        kwargs["download"] = bool(spec.options.get("download", False))
    try:
        return cls(str(spec.root), **kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise DatasetError(
            f"dataset '{spec.id}': torchvision {cls.__name__} not found under {spec.root} ({exc}); set "
            "options: {download: true} and run once online, or place the files there as torchvision expects"
        ) from None
    except ValueError as exc:
        if split == "test":
            log.warning("%s: no test split (%s)", spec.id, exc)
            return None
        raise DatasetError(
            f"dataset '{spec.id}': {cls.__name__}: {exc}; fix options.splits"
        ) from None


def load(spec: DatasetSpec) -> StimulusSet:
    import torchvision.datasets as tvd

    name = spec.options.get("name")
    cls = getattr(tvd, str(name), None) if name else None
    if not inspect.isclass(cls):
        raise ConfigError(
            f"dataset '{spec.id}': options.name {name!r} is not a torchvision dataset class (e.g. CIFAR10, MNIST)"
        )
    parts = [(sp, ds) for sp in ("train", "test") if (ds := _build(spec, cls, sp)) is not None]
    ids, labels, split, refs = [], [], [], []
    for sp, ds in parts:
        lab = _labels(ds, f"dataset '{spec.id}': torchvision {cls.__name__} ({sp})")
        ids += [f"{spec.id}/{sp}/{i:07d}" for i in range(len(ds))]
        labels.append(lab)
        split += [sp] * len(ds)
        refs += [(ds, i) for i in range(len(ds))]
    classes = getattr(parts[0][1], "classes", None)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if len(parts) == 1 and spec.options.get("test_fraction"):
        # one-part datasets (EuroSAT, Caltech101, ...): hold out a stratified test part for probes
        split = holdout_split(
            all_labels, ids, float(spec.options["test_fraction"]), spec.seed
        ).tolist()
    n_classes = int(all_labels.max(initial=-1)) + 1
    class_names = (
        [str(c) for c in classes]
        if classes and len(classes) >= n_classes
        else [str(c) for c in range(n_classes)]
    )

    def reader(i: int) -> np.ndarray:
        ds, j = refs[i]
        try:
            return _to_rgb(ds[j][0])
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnreadableImage(f"corrupt item ({type(exc).__name__}: {exc})") from None

    return StimulusSet(
        spec.id,
        np.array(ids, dtype=str),
        all_labels,
        np.array(split, dtype=str),
        class_names,
        spec.domain,
        reader=reader,
    )
