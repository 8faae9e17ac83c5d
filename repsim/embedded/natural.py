"""Embedded sets cut from photographs that ship inside scikit-image and scikit-learn.

No download happens: the source images are files inside the installed wheels. Licences are listed
in ``data/embedded/README.md``.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from sklearn.datasets import load_sample_image

from repsim.embedded._common import EmbeddedSet, random_crop, resize

PHOTOS = {
    "astronaut": lambda: skimage.data.astronaut(),
    "cat": lambda: skimage.data.chelsea(),
    "coffee": lambda: skimage.data.coffee(),
    "rocket": lambda: skimage.data.rocket(),
    "deep_field": lambda: skimage.data.hubble_deep_field(),
    "temple": lambda: load_sample_image("china.jpg"),
    "flower": lambda: load_sample_image("flower.jpg"),
}
TEXTURES = {
    "brick": skimage.data.brick,
    "grass": skimage.data.grass,
    "gravel": skimage.data.gravel,
    "moon": skimage.data.moon,
    "coins": skimage.data.coins,
}


def _augment(rng: np.random.Generator, patch: np.ndarray, rotate: bool) -> tuple[np.ndarray, dict]:
    attrs: dict = {}
    if rotate:
        k = int(rng.integers(0, 4))
        patch = np.rot90(patch, k)
        attrs["rotation"] = 90 * k
    flip = bool(rng.integers(0, 2))
    if flip:
        patch = patch[:, ::-1]
    attrs["flipped"] = flip
    return np.ascontiguousarray(patch), attrs


def photo_patches(seed: int = 0, per_class: int = 300) -> EmbeddedSet:
    """Crops of seven colour photographs; the class is the source photograph (multi-domain)."""
    rng = np.random.default_rng(seed)
    images, labels, attrs = [], [], []
    for c, (name, load) in enumerate(PHOTOS.items()):
        photo = load()
        for _ in range(per_class):
            patch, a = random_crop(rng, photo, 48, 192)
            patch, b = _augment(rng, patch, rotate=False)
            img = resize(patch)
            images.append(img)
            labels.append(c)
            attrs.append(
                {"source": name, **a, **b, "brightness": round(float(img.mean()) / 255, 3)}
            )
    return EmbeddedSet("photo_patches", np.stack(images), np.array(labels), list(PHOTOS), attrs)


def textures(seed: int = 1, per_class: int = 300) -> EmbeddedSet:
    """Grey-level texture crops (brick, grass, gravel, moon surface, coins), DTD-like."""
    rng = np.random.default_rng(seed)
    images, labels, attrs = [], [], []
    for c, (name, load) in enumerate(TEXTURES.items()):
        tex = load()
        for _ in range(per_class):
            patch, a = random_crop(rng, tex, 32, 128)
            patch, b = _augment(rng, patch, rotate=True)
            img = resize(patch)
            images.append(img)
            labels.append(c)
            attrs.append({"texture": name, "colour": "grey", **a, **b})
    return EmbeddedSet("textures", np.stack(images), np.array(labels), list(TEXTURES), attrs)


def faces(seed: int = 2, variants: int = 5) -> EmbeddedSet:
    """Faces vs non-face backgrounds from scikit-image's 200-image LFW subset.

    The source has only 200 images, so each is shown in ``variants`` views (identity, mirror,
    small shifted crops). All views of one source image share a split, so test images are unseen.
    """
    rng = np.random.default_rng(seed)
    src = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)  # (200, 25, 25)
    up = np.stack([resize(im, 36) for im in src])  # room for +-2 px shifts
    images, labels, attrs, groups = [], [], [], []
    for i, im in enumerate(up):
        for v in range(variants):
            dy, dx = (2, 2) if v < 2 else (int(rng.integers(0, 5)), int(rng.integers(0, 5)))
            crop = im[dy : dy + 32, dx : dx + 32]
            mirror = v == 1 or (v >= 2 and bool(rng.integers(0, 2)))
            if mirror:
                crop = crop[:, ::-1]
            images.append(np.ascontiguousarray(crop))
            labels.append(0 if i < 100 else 1)
            groups.append(i)
            attrs.append(
                {"source_index": i, "flipped": mirror, "shift": [dx - 2, dy - 2], "colour": "grey"}
            )
    return EmbeddedSet(
        "faces",
        np.stack(images),
        np.array(labels),
        ["face", "background"],
        attrs,
        groups=np.array(groups),
    )
