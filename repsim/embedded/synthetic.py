"""Procedural and structured embedded sets: digits, shifted digits, shapes, gratings, glyphs.

Each set has known factors of variation, written per image into ``attributes`` so that
captions for the mini-zoo's image-text models can be generated from them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFont
from sklearn.datasets import load_digits

from repsim.embedded._common import (
    BACKGROUNDS,
    PALETTE,
    SIZE,
    EmbeddedSet,
    position_name,
    random_crop,
    resize,
)

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SS = 4  # supersampling factor for antialiased drawing


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    img = (d.images / 16.0 * 255).round().astype(np.uint8)  # (1797, 8, 8)
    return img, d.target


def digits(seed: int = 3) -> EmbeddedSet:
    """scikit-learn's 8x8 handwritten digits, upsampled to 32x32 grey RGB (MNIST-like)."""
    del seed  # no randomness apart from the split
    img, target = _digit_images()
    big = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.Resampling.BICUBIC))
            for im in img
        ]
    )
    images = np.repeat(big[..., None], 3, axis=-1)
    attrs = [{"digit": DIGIT_NAMES[t], "colour": "white", "background": "black"} for t in target]
    return EmbeddedSet("digits", images, target, DIGIT_NAMES, attrs)


def digits_wild(seed: int = 4) -> EmbeddedSet:
    """Domain-shifted digits: rotated, sometimes inverted, coloured, pasted on natural textures."""
    rng = np.random.default_rng(seed)
    img, target = _digit_images()
    backgrounds = {
        "brick": skimage.data.brick(),
        "grass": skimage.data.grass(),
        "gravel": skimage.data.gravel(),
        "cat": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
    }
    bg_names = list(backgrounds)
    colours = list(PALETTE)
    images, attrs = [], []
    for im, t in zip(img, target):
        angle = float(rng.uniform(-45, 45))
        scale = float(rng.uniform(0.6, 1.0))
        side = int(round(SIZE * scale))
        glyph = Image.fromarray(im).resize((side, side), Image.Resampling.BICUBIC)
        glyph = glyph.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
        mask = np.zeros((SIZE, SIZE), np.float32)
        ox, oy = (int(rng.integers(0, SIZE - side + 1)) for _ in range(2))
        mask[oy : oy + side, ox : ox + side] = np.asarray(glyph, np.float32) / 255
        bg_name = bg_names[int(rng.integers(len(bg_names)))]
        patch, _ = random_crop(rng, backgrounds[bg_name], 32, 160)
        bg = resize(patch).astype(np.float32) * 0.7  # darken so the digit stays visible
        colour = colours[int(rng.integers(len(colours)))]
        fg = np.array(PALETTE[colour], np.float32)
        inverted = bool(rng.random() < 0.25)
        if inverted:  # dark digit on a brightened background
            bg, fg = 255 - bg * 0.5, fg * 0.25
        out = bg * (1 - mask[..., None]) + fg * mask[..., None]
        images.append(np.clip(out, 0, 255).round().astype(np.uint8))
        attrs.append(
            {
                "digit": DIGIT_NAMES[t],
                "colour": colour,
                "background": bg_name,
                "rotation": round(angle, 1),
                "scale": round(scale, 2),
                "inverted": inverted,
                "position": position_name((ox + side / 2) / SIZE, (oy + side / 2) / SIZE),
            }
        )
    return EmbeddedSet("digits_wild", np.stack(images), target, DIGIT_NAMES, attrs)


def _shape_polygon(shape: str) -> np.ndarray:
    """Unit-radius outline of a shape as (K, 2) points centred on 0."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    if shape == "circle":
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.8
    if shape == "triangle":
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), -np.sin(a)], 1)
    if shape == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), -r * np.sin(a)], 1)
    if shape == "cross":
        w = 0.33
        return np.array(
            [
                [-w, -1],
                [w, -1],
                [w, -w],
                [1, -w],
                [1, w],
                [w, w],
                [w, 1],
                [-w, 1],
                [-w, w],
                [-1, w],
                [-1, -w],
                [-w, -w],
            ]
        )
    if shape == "heart":
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return np.stack([x, -y], 1) / 17
    raise ValueError(shape)


SHAPES = ["square", "circle", "triangle", "star", "cross", "heart"]
SCALES = {"small": 0.18, "medium": 0.27, "large": 0.36}


def shapes(seed: int = 5, n: int = 3000) -> EmbeddedSet:
    """dSprites-like sprites: shape (the label), size, rotation, position, colour, background."""
    rng = np.random.default_rng(seed)
    images, labels, attrs = [], [], []
    colours, bgs, scales = list(PALETTE), list(BACKGROUNDS), list(SCALES)
    for i in range(n):
        c = i % len(SHAPES)
        colour = colours[int(rng.integers(len(colours)))]
        bg = bgs[int(rng.integers(len(bgs)))]
        size = scales[int(rng.integers(len(scales)))]
        radius = SCALES[size] * SIZE
        angle = float(rng.uniform(0, 360))
        x, y = (float(rng.uniform(radius, SIZE - radius)) for _ in range(2))
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (_shape_polygon(SHAPES[c]) @ rot.T * radius + [x, y]) * SS
        canvas = Image.new("RGB", (SIZE * SS, SIZE * SS), BACKGROUNDS[bg])
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=PALETTE[colour])
        images.append(np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.BOX)))
        labels.append(c)
        attrs.append(
            {
                "shape": SHAPES[c],
                "colour": colour,
                "background": bg,
                "size": size,
                "orientation": round(angle, 1),
                "x": round(x / SIZE, 3),
                "y": round(y / SIZE, 3),
                "position": position_name(x / SIZE, y / SIZE),
            }
        )
    return EmbeddedSet("shapes", np.stack(images), np.array(labels), SHAPES, attrs)


ORIENTATIONS = [0, 30, 60, 90, 120, 150]
FREQUENCIES = {"low": 2.0, "medium": 4.0, "high": 7.0}  # cycles per image


def gratings(seed: int = 6, per_class: int = 100) -> EmbeddedSet:
    """Sinusoidal gratings; class = orientation x spatial frequency (18 classes).

    Phase, contrast, the two colours and a small orientation jitter vary within a class.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE
    colours = list(PALETTE)
    images, labels, attrs = [], [], []
    names = [f"{o}deg_{fname}" for o in ORIENTATIONS for fname in FREQUENCIES]
    for c in range(len(names)):
        o, fname = ORIENTATIONS[c // len(FREQUENCIES)], list(FREQUENCIES)[c % len(FREQUENCIES)]
        for _ in range(per_class):
            theta = np.deg2rad(o + rng.uniform(-5, 5))
            freq = FREQUENCIES[fname] * rng.uniform(0.9, 1.1)
            phase = rng.uniform(0, 2 * np.pi)
            contrast = rng.uniform(0.4, 1.0)
            u = xx * np.cos(theta) + yy * np.sin(theta)
            wave = 0.5 + 0.5 * contrast * np.sin(2 * np.pi * freq * u + phase)
            c1, c2 = rng.choice(len(colours), size=2, replace=False)
            col1, col2 = np.array(PALETTE[colours[c1]]), np.array(PALETTE[colours[c2]])
            img = wave[..., None] * col1 + (1 - wave[..., None]) * col2
            images.append(np.clip(img, 0, 255).round().astype(np.uint8))
            labels.append(c)
            attrs.append(
                {
                    "orientation": o,
                    "frequency": fname,
                    "colour": colours[c1],
                    "background": colours[c2],
                    "contrast": round(float(contrast), 2),
                }
            )
    return EmbeddedSet("gratings", np.stack(images), np.array(labels), names, attrs)


FONTS = [
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
]
LETTERS = [chr(ord("A") + i) for i in range(26)]


def glyphs(seed: int = 7, per_class: int = 80) -> EmbeddedSet:
    """Upper-case letters rendered with matplotlib's bundled fonts; font, size, rotation, colour vary."""
    rng = np.random.default_rng(seed)
    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}
    colours, bgs = list(PALETTE), list(BACKGROUNDS)
    images, labels, attrs = [], [], []
    big = SIZE * SS
    for c, letter in enumerate(LETTERS):
        for _ in range(per_class):
            font_name = FONTS[int(rng.integers(len(FONTS)))]
            px = int(rng.integers(14, 27)) * SS
            key = (font_name, px)
            if key not in fonts:
                fonts[key] = ImageFont.truetype(str(font_dir / font_name), px)
            colour = colours[int(rng.integers(len(colours)))]
            bg = bgs[int(rng.integers(len(bgs)))]
            angle = float(rng.uniform(-30, 30))
            layer = Image.new("L", (big, big), 0)
            draw = ImageDraw.Draw(layer)
            dx, dy = (float(rng.uniform(-3, 3)) * SS for _ in range(2))
            draw.text((big / 2 + dx, big / 2 + dy), letter, font=fonts[key], fill=255, anchor="mm")
            layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC)
            mask = (
                np.asarray(layer.resize((SIZE, SIZE), Image.Resampling.BOX), np.float32)[..., None]
                / 255
            )
            img = (
                np.array(BACKGROUNDS[bg], np.float32) * (1 - mask)
                + np.array(PALETTE[colour], np.float32) * mask
            )
            images.append(img.round().astype(np.uint8))
            labels.append(c)
            attrs.append(
                {
                    "letter": letter,
                    "font": font_name.removesuffix(".ttf"),
                    "size": px // SS,
                    "rotation": round(angle, 1),
                    "colour": colour,
                    "background": bg,
                }
            )
    return EmbeddedSet("glyphs", np.stack(images), np.array(labels), LETTERS, attrs)
