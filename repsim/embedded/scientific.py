"""Specialised, scientific-looking embedded sets: fluorescence-like cells and spectrograms.

They stand in for the study's "Specialized" category (microscopy, remote sensing, medical): image
statistics far from natural photographs, classes defined by domain-specific structure.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from scipy import ndimage

from repsim.embedded._common import SIZE, EmbeddedSet

CELL_CLASSES = ["round", "elongated", "dividing", "multinucleate", "clustered"]
STAINS = {"green": (0.2, 1.0, 0.3), "red": (1.0, 0.25, 0.2), "blue": (0.3, 0.5, 1.0)}


def _blob(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / rx
    v = (-(xx - cx) * s + (yy - cy) * c) / ry
    return np.exp(-((u**2 + v**2) ** 2))  # flat-topped blob


def cells(seed: int = 8, per_class: int = 400) -> EmbeddedSet:
    """Procedural fluorescence-microscopy-like cells; class = morphology (5 classes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    stains = list(STAINS)
    images, labels, attrs = [], [], []
    for c, kind in enumerate(CELL_CLASSES):
        for _ in range(per_class):
            cy, cx = rng.uniform(11, 21, size=2)
            angle = rng.uniform(0, np.pi)
            r = rng.uniform(5, 8)
            if kind == "round":
                body = _blob(yy, xx, cy, cx, r, r * rng.uniform(0.9, 1.1), angle)
                nuclei = [(cy, cx)]
            elif kind == "elongated":
                body = _blob(yy, xx, cy, cx, r * 0.5, r * 1.6, angle)
                nuclei = [(cy, cx)]
            elif kind == "dividing":
                d = r * 0.8
                p1 = (cy + d * np.sin(angle), cx + d * np.cos(angle))
                p2 = (cy - d * np.sin(angle), cx - d * np.cos(angle))
                body = np.maximum(
                    _blob(yy, xx, *p1, r * 0.75, r * 0.75, 0),
                    _blob(yy, xx, *p2, r * 0.75, r * 0.75, 0),
                )
                nuclei = [p1, p2]
            elif kind == "multinucleate":
                body = _blob(yy, xx, cy, cx, r * 1.2, r * 1.4, angle)
                k = int(rng.integers(3, 5))
                a = angle + np.arange(k) * 2 * np.pi / k
                nuclei = [(cy + 0.55 * r * np.sin(t), cx + 0.55 * r * np.cos(t)) for t in a]
            else:  # clustered: several small cells
                k = int(rng.integers(4, 7))
                pts = rng.uniform(6, 26, size=(k, 2))
                body = np.max([_blob(yy, xx, p[0], p[1], 2.6, 2.6, 0) for p in pts], axis=0)
                nuclei = [tuple(p) for p in pts]
            nuc_r = 1.3 if kind == "clustered" else rng.uniform(1.8, 2.6)
            nucleus = np.max([_blob(yy, xx, p[0], p[1], nuc_r, nuc_r, 0) for p in nuclei], axis=0)
            texture = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), 1.0)
            signal = 0.55 * body * (1 + 0.4 * texture) + 0.45 * nucleus
            signal = (
                ndimage.gaussian_filter(signal, 0.6) + rng.normal(0, 0.04, size=(SIZE, SIZE)) + 0.05
            )
            stain = stains[int(rng.integers(len(stains)))]
            rgb = np.clip(signal, 0, 1)[..., None] * np.array(STAINS[stain])
            nucleus_rgb = np.clip(nucleus, 0, 1)[..., None] * np.array([0.15, 0.2, 0.9]) * 0.6
            img = np.clip(rgb + nucleus_rgb, 0, 1)
            images.append((img * 255).round().astype(np.uint8))
            labels.append(c)
            attrs.append(
                {
                    "morphology": kind,
                    "stain": stain,
                    "nuclei": len(nuclei),
                    "orientation": round(float(np.rad2deg(angle)), 1),
                    "size": round(float(r), 2),
                }
            )
    return EmbeddedSet("cells", np.stack(images), np.array(labels), CELL_CLASSES, attrs)


SPECTRO_CLASSES = ["tone", "chirp_up", "chirp_down", "harmonic_stack", "pulse_train", "noise_burst"]
COLORMAPS = ["viridis", "magma", "inferno", "plasma"]


def spectrograms(seed: int = 9, per_class: int = 300) -> EmbeddedSet:
    """Spectrogram-like time-frequency images (rows: frequency, columns: time); class = signal type."""
    rng = np.random.default_rng(seed)
    f = np.arange(SIZE, dtype=np.float64)[:, None][::-1]  # low frequencies at the bottom
    t = np.arange(SIZE, dtype=np.float64)[None, :]
    images, labels, attrs = [], [], []
    for c, kind in enumerate(SPECTRO_CLASSES):
        for _ in range(per_class):
            f0 = rng.uniform(5, 26)
            width = rng.uniform(0.8, 1.6)
            onset, dur = int(rng.integers(0, 10)), int(rng.integers(16, 32))
            on = ((t >= onset) & (t < onset + dur)).astype(float)
            if kind == "tone":
                s = np.exp(-((f - f0) ** 2) / (2 * width**2)) * on
            elif kind in ("chirp_up", "chirp_down"):
                slope = rng.uniform(0.4, 0.9) * (1 if kind == "chirp_up" else -1)
                start = rng.uniform(3, 12) if slope > 0 else rng.uniform(20, 29)
                track = start + slope * (t - onset)
                s = np.exp(-((f - track) ** 2) / (2 * width**2)) * on
            elif kind == "harmonic_stack":
                f0 = rng.uniform(3, 7)
                s = (
                    sum(np.exp(-((f - k * f0) ** 2) / (2 * width**2)) / k**0.5 for k in range(1, 6))
                    * on
                )
            elif kind == "pulse_train":
                period = int(rng.integers(4, 8))
                pulses = ((t - onset) % period < 2).astype(float) * on
                band = np.exp(-((f - f0) ** 2) / (2 * (4 * width) ** 2))
                s = band * pulses
            else:
                lo, hi = sorted(rng.uniform(2, 30, size=2))
                s = ((f >= lo) & (f <= hi + 4)) * on * rng.uniform(0.5, 1.0, size=(SIZE, SIZE))
            noise = rng.uniform(0.05, 0.25)
            s = np.clip(s + rng.exponential(noise, size=(SIZE, SIZE)), 0, None)
            s = np.log1p(4 * s) / np.log1p(4 * max(s.max(), 1e-6))
            cmap = COLORMAPS[int(rng.integers(len(COLORMAPS)))]
            rgb = colormaps[cmap](s)[..., :3]
            images.append((rgb * 255).round().astype(np.uint8))
            labels.append(c)
            attrs.append(
                {
                    "signal": kind,
                    "colormap": cmap,
                    "frequency": round(float(f0), 1),
                    "onset": onset,
                    "duration": dur,
                    "noise": round(float(noise), 3),
                }
            )
    return EmbeddedSet("spectrograms", np.stack(images), np.array(labels), SPECTRO_CLASSES, attrs)
