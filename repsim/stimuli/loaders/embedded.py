"""Loader for the embedded ``.npz`` stimulus sets (see :mod:`repsim.embedded`)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from repsim.errors import DatasetError
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet

REQUIRED = ("images", "labels", "split", "ids", "class_names")


def read_npz(path: Path, context: str = "") -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file, or a DatasetError ``CONTEXT PATH is not a readable .npz
    (why)``. numpy's own messages mislead here: a file that is not a zip archive (a text file
    named ``.npz``) is tried as a pickle and reported as needing ``allow_pickle``, which no
    embedded set needs and repsim never sets (a pickle can run code)."""
    try:
        with open(path, "rb") as fh:
            is_zip = zipfile.is_zipfile(fh)
        if is_zip:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        why = "it is not a zip archive, which every .npz is"
    except Exception as exc:  # noqa: BLE001 - damage shows as zlib, zip, tokenize, value errors ...
        why = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            why = "it holds object arrays, which only pickle loads, and repsim loads no pickles"
    raise DatasetError(
        f"{context}{path} is not a readable .npz ({why}); regenerate it with "
        "`python -m repsim.embedded`"
    )


def load(spec: DatasetSpec) -> StimulusSet:
    """Read an embedded set fully into memory (a few MB)."""
    path = spec.path
    problem = DOES_NOT_EXIST if path is None else path_problem(path, "file")
    if problem is not None:
        raise DatasetError(
            f"dataset '{spec.id}': embedded file {path} {problem}; regenerate it with "
            "`python -m repsim.embedded` or fix 'path' in the config"
        )
    data = read_npz(path, f"dataset '{spec.id}': ")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DatasetError(
            f"dataset '{spec.id}': {path} lacks keys {missing}; regenerate it with `python -m repsim.embedded`"
        )
    images = data["images"]
    regenerate = "regenerate it with `python -m repsim.embedded`"
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        # the shape without parentheses: `repsim datasets` cuts them from the reason it shows
        shape = "x".join(map(str, images.shape)) or "() (one value)"
        raise DatasetError(
            f"dataset '{spec.id}': {path} holds images of shape {shape}, dtype {images.dtype}; "
            f"an embedded set's images must be (N, H, W, 3) uint8 (RGB): {regenerate}"
        )
    if images.shape[0] and 0 in images.shape[1:3]:
        raise DatasetError(
            f"dataset '{spec.id}': {path} holds images of {images.shape[1]}x{images.shape[2]} "
            "pixels; an image needs at least one pixel: regenerate the file"
        )
    attributes = None
    if "attributes" in data:
        try:
            attributes = json.loads(str(data["attributes"]))
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"dataset '{spec.id}': {path}: 'attributes' is not valid JSON ({exc}); store it as "
                "json.dumps(records), one record per image, or leave the entry out"
            ) from None
    try:
        return StimulusSet(
            dataset_id=spec.id,
            ids=data["ids"],
            labels=data["labels"],
            split=data["split"],
            class_names=data["class_names"].tolist(),
            domain=spec.domain,
            images=images,
            attributes=attributes,
        )
    except DatasetError as exc:  # its checks name the dataset, not the file or the fix
        raise DatasetError(f"{exc}; in {path}: {regenerate}") from None
