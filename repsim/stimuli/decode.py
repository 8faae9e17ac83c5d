"""Image decoding to RGB uint8, with the per-case decisions on unusual input.

- grayscale, palette, CMYK, YCbCr, LAB, HSV: converted to RGB.
- alpha (RGBA, LA, PA, P with transparency): the alpha channel is dropped, as the study's loaders
  (``PIL.Image.convert("RGB")``) did, so features match theirs.
- 16-bit and 32-bit integer images: scaled to 8 bit by their bit depth (not clipped; negative
  values of a signed 32-bit image are 0); float images: [0, 1] data is scaled by 255, anything
  else is clipped to [0, 255].
- corrupt or truncated files: :class:`UnreadableImage` (the loaders skip and record the item).
- images with a side below ``min_side`` pixels: :class:`UnreadableImage` (skip and record);
  set ``options: {min_side: 1}`` on a dataset to keep them.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

MIN_SIDE = 8


class UnreadableImage(Exception):
    """One item cannot be used; the message is the reason recorded in ``StimulusSet.skipped``."""


def _open(source: bytes | str | Path) -> Image.Image:
    if isinstance(source, (str, Path)) and Path(source).is_symlink() and not Path(source).exists():
        raise UnreadableImage(
            f"dangling symlink to {Path(source).readlink()} (the target does not exist)"
        )
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise UnreadableImage(f"not a readable image ({type(exc).__name__}: {exc})") from None


def check_header(source: bytes | str | Path, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """Read only the header: the (width, height) of a usable image, else UnreadableImage."""
    with _open(source) as im:
        w, h = im.size
    if min(w, h) < min_side:
        raise UnreadableImage(
            f"image is {w}x{h} px, below min_side={min_side} (set options.min_side to keep it)"
        )
    return w, h


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an (H, W, 3) uint8 array."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
            arr = arr * 255 if np.nanmax(arr, initial=0) <= 1.0 else arr
            arr = np.nan_to_num(arr)  # NaN to 0; the clip below bounds the rest
        else:
            top = int(arr.max(initial=0))
            bits = 16 if (mode.startswith("I;16") or top <= 65535) else 32
            arr = (
                arr.astype(np.float64) / ((1 << bits) - 1) * 255
                if top > 255 or mode.startswith("I;16")
                else arr
            )
        # clipped before the cast, which would wrap a value outside 0..255 (-5 to 251)
        gray = np.clip(np.asarray(arr).round(), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def decode_image(source: bytes | str | Path, min_side: int = MIN_SIDE) -> np.ndarray:
    """Fully decode one image file or byte string to (H, W, 3) uint8, or raise UnreadableImage."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # some library switched it on; we want truncation reported
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    im = _open(source)
    try:
        w, h = im.size
        if min(w, h) < min_side:
            raise UnreadableImage(
                f"image is {w}x{h} px, below min_side={min_side} (set options.min_side to keep it)"
            )
        im.load()
        return to_rgb_array(im)
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    finally:
        im.close()
