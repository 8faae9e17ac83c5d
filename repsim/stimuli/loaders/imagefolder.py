"""Image folders: ``PATH/<split>/<class>/...`` or ``PATH/<class>/...`` (one subfolder per class).

Split folders: ``train`` and ``test`` (``val`` is taken as test when there is no ``test``);
``options.splits`` maps them explicitly, e.g. ``{train: training, test: validation}``. Without
split folders, or with a train folder and no test one, every image is train, unless
``options.test_fraction`` holds out a stratified part (a test folder, when there is one, wins).
Class indices follow the sorted class folder names over all splits; an empty class folder keeps
its index (and is reported), so labels agree between splits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from repsim.errors import DatasetError
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.stimuli.decode import decode_image
from repsim.stimuli.loaders.files import IMAGE_EXTS, header_filter, holdout_split, min_side
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet


def _split_dirs(root: Path, spec: DatasetSpec) -> dict[str, Path] | None:
    mapping = spec.options.get("splits")
    if mapping:
        return {ours: root / theirs for ours, theirs in mapping.items()}
    if (root / "train").is_dir():
        out = {"train": root / "train"}
        for name in ("test", "val"):
            if (root / name).is_dir():
                out["test"] = root / name
                break
        return out
    return None


def _images_under(folder: Path, dataset_id: str) -> list[Path]:
    """Image files under ``folder``, dangling symlinks included (they are skipped and listed later
    with the reason, never dropped silently). A subfolder that cannot be listed (no read
    permission) is a DatasetError: ``Path.rglob`` passes over it without a word, which dropped a
    whole class. Symlinked folders are not followed, as with ``rglob``."""

    def refuse(exc: OSError) -> None:
        from repsim.runfolder import describe_os_error

        raise DatasetError(
            f"dataset '{dataset_id}': cannot list the images of {exc.filename}: "
            f"{describe_os_error(exc, exc.filename, 'read')}"
        ) from exc

    found = []
    for top, _, names in os.walk(folder, onerror=refuse):
        for name in names:
            p = Path(top) / name
            if p.suffix.lower() in IMAGE_EXTS and (
                p.is_file() or (p.is_symlink() and not p.exists())
            ):
                found.append(p)
    return sorted(found)


def _text(name: str) -> str:
    """A file or folder name as text for ids and tables: bytes that are not valid UTF-8 (which
    Python carries as surrogates that no file, table or zarr store can encode) as ``\\xff``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def list_folder(
    spec: DatasetSpec, root: Path, class_dirs: dict[str, list[Path]] | None = None
) -> tuple[list[str], list[Path], list[int], list[str], list[str]]:
    """(class_names, files, labels, splits, ids) of an image-folder tree."""
    splits = _split_dirs(root, spec)
    split_roots = splits or {"train": root}
    for ours, folder in split_roots.items():
        if ours not in ("train", "test"):
            raise DatasetError(
                f"dataset '{spec.id}': options.splits keys must be 'train'/'test', got {ours!r}"
            )
        if not folder.is_dir():
            raise DatasetError(
                f"dataset '{spec.id}': split folder {folder} is missing; fix options.splits or the layout"
            )
    if class_dirs is None:
        names = sorted({d.name for f in split_roots.values() for d in f.iterdir() if d.is_dir()})
        class_dirs = {_text(n): [n] for n in names}
    class_names = list(class_dirs)
    files, labels, split, ids = [], [], [], []
    for ours, folder in split_roots.items():
        for c, name in enumerate(class_names):
            for sub in class_dirs[name]:
                d = folder / sub
                if not d.is_dir():
                    continue
                for f in _images_under(d, spec.id):
                    files.append(f)
                    labels.append(c)
                    split.append(ours)
                    ids.append(f"{spec.id}/{ours}/{_text(f.relative_to(folder).as_posix())}")
    if "test" not in split_roots and spec.options.get("test_fraction"):  # train/ only, or flat
        split = holdout_split(
            np.array(labels), ids, float(spec.options["test_fraction"]), spec.seed
        ).tolist()
        ids = [i.replace(f"{spec.id}/train/", f"{spec.id}/{s}/", 1) for i, s in zip(ids, split)]
    return class_names, files, labels, split, ids


def make_stimset(
    spec: DatasetSpec,
    class_names: list[str],
    files: list[Path],
    labels: list[int],
    split: list[str],
    ids: list[str],
) -> StimulusSet:
    keep, skipped = header_filter(spec, ids, lambda i: files[i])
    kept_files = [files[i] for i in keep]
    side = min_side(spec)
    return StimulusSet(
        dataset_id=spec.id,
        ids=np.array(ids, dtype=str)[keep] if ids else np.array([], dtype=str),
        labels=np.array(labels, dtype=np.int64)[keep] if labels else np.array([], dtype=np.int64),
        split=np.array(split, dtype=str)[keep] if split else np.array([], dtype=str),
        class_names=class_names,
        domain=spec.domain,
        skipped=skipped,
        reader=lambda i: decode_image(kept_files[i], side),
    )


def load(spec: DatasetSpec) -> StimulusSet:
    root = spec.path
    problem = DOES_NOT_EXIST if root is None else path_problem(root, "folder")
    if problem is not None:
        raise DatasetError(
            f"dataset '{spec.id}': image folder {root} {problem}; put one subfolder per class there "
            "(optionally under train/ and test/) or fix 'path'"
        )
    return make_stimset(spec, *list_folder(spec, root))
