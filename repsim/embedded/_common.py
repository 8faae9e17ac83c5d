"""Helpers shared by the embedded-set generators: resizing, colours, splits and a byte-stable writer.

Every generator returns an :class:`EmbeddedSet`; :func:`write_npz` stores it so that running the
generator twice on the same machine gives byte-identical files (fixed zip timestamps, no pickles).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32
TEST_FRACTION = 0.2

# Named colours so captions can say "a red square"; values are sRGB uint8.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "magenta": (210, 50, 190),
    "cyan": (40, 200, 210),
    "orange": (240, 140, 30),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark grey": (60, 60, 60),
    "light grey": (190, 190, 190),
    "navy": (20, 20, 70),
}


@dataclass
class EmbeddedSet:
    """One generated stimulus set before it is written to disk."""

    name: str
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    attributes: list[dict]
    groups: np.ndarray | None = None  # items sharing a group go to the same split (no leakage)
    split: np.ndarray = field(default=None)  # filled by finalize()
    ids: np.ndarray = field(default=None)


def position_name(x: float, y: float) -> str:
    """Coarse words for a position in [0, 1]^2 (x right, y down), for captions."""
    col = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "centre")
    row = "top" if y < 1 / 3 else ("bottom" if y > 2 / 3 else "middle")
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def resize(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize an (H, W) or (H, W, 3) uint8 array to (size, size, 3) with an antialiasing filter."""
    pil = Image.fromarray(img)
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def random_crop(
    rng: np.random.Generator, img: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, dict]:
    """A square crop with side in [lo, hi] (bounded by the image) at a random place."""
    h, w = img.shape[:2]
    side = int(rng.integers(lo, min(hi, h, w) + 1))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    return img[y : y + side, x : x + side], {"crop_side": side, "crop_x": x, "crop_y": y}


def stratified_split(labels: np.ndarray, groups: np.ndarray | None, seed: int) -> np.ndarray:
    """Assign ~20% of each class (by group when given) to "test", the rest to "train"."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype="<U5")
    units = groups if groups is not None else np.arange(len(labels))
    for c in np.unique(labels):
        members = np.unique(units[labels == c])
        n_test = max(1, int(round(TEST_FRACTION * len(members))))
        test_units = rng.choice(members, size=n_test, replace=False)
        split[(labels == c) & np.isin(units, test_units)] = "test"
    return split


def finalize(ds: EmbeddedSet, seed: int) -> EmbeddedSet:
    """Check shapes, add the split and stable ids ``<name>/<split>/<index>``."""
    n = len(ds.labels)
    assert ds.images.shape == (n, SIZE, SIZE, 3) and ds.images.dtype == np.uint8, ds.name
    assert len(ds.attributes) == n
    ds.labels = np.asarray(ds.labels, dtype=np.int64)
    ds.split = stratified_split(ds.labels, ds.groups, seed)
    ds.ids = np.array([f"{ds.name}/{s}/{i:05d}" for i, s in enumerate(ds.split)])
    return ds


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_npz(ds: EmbeddedSet, path: Path) -> Path:
    """Write a compressed ``.npz`` whose bytes depend only on the arrays (fixed zip timestamps)."""
    arrays = {
        "images": ds.images,
        "labels": ds.labels,
        "split": ds.split.astype("<U5"),
        "ids": ds.ids.astype(str),
        "class_names": np.array(ds.class_names, dtype=str),
        "attributes": np.array(json.dumps(ds.attributes, sort_keys=True, separators=(",", ":"))),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npz.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(arr), compresslevel=9)
    tmp.replace(path)
    return path
