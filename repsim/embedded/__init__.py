"""Generators of the embedded offline stimulus sets under ``data/embedded/``.

The sets let the whole pipeline (and the mini-zoo) run offline on a laptop CPU. Each is 32x32 RGB
uint8 with labels, a train/test split, stable ids and per-image ``attributes`` (the factors a
caption can mention). ``python -m repsim.embedded`` regenerates every file; the output depends
only on the seeds below and the installed packages, and is byte-identical on rerun.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from repsim.embedded import natural, scientific, synthetic
from repsim.embedded._common import EmbeddedSet, finalize, write_npz

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "embedded"
SPLIT_SEED = 42


@dataclass(frozen=True)
class Generator:
    """How to build one embedded set, and which of the study's domain categories it stands for."""

    name: str
    build: Callable[[], EmbeddedSet]
    domain: str
    description: str


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in [
        Generator(
            "photo_patches",
            natural.photo_patches,
            "Natural (multi-domain)",
            "crops of 7 photographs; class = source photo",
        ),
        Generator(
            "faces",
            natural.faces,
            "Natural (single-domain)",
            "LFW faces vs non-face backgrounds (scikit-image subset)",
        ),
        Generator(
            "digits_wild",
            synthetic.digits_wild,
            "Natural (single-domain)",
            "digits rotated, coloured, inverted, on natural textures (SVHN-like)",
        ),
        Generator(
            "cells",
            scientific.cells,
            "Specialized",
            "procedural fluorescence-like cells; class = morphology",
        ),
        Generator(
            "spectrograms",
            scientific.spectrograms,
            "Specialized",
            "time-frequency images; class = signal type",
        ),
        Generator(
            "digits", synthetic.digits, "Structured", "scikit-learn handwritten digits, upsampled"
        ),
        Generator(
            "shapes",
            synthetic.shapes,
            "Structured",
            "dSprites-like shapes with size, rotation, position, colour",
        ),
        Generator(
            "gratings",
            synthetic.gratings,
            "Structured",
            "sinusoidal gratings; class = orientation x frequency",
        ),
        Generator(
            "glyphs",
            synthetic.glyphs,
            "Structured",
            "letters A-Z in 12 fonts, sizes, rotations, colours",
        ),
        Generator(
            "textures", natural.textures, "Structured", "grey-level texture crops (DTD-like)"
        ),
    ]
}


def build(name: str) -> EmbeddedSet:
    """Build one set in memory (with split and ids), without writing it."""
    return finalize(GENERATORS[name].build(), SPLIT_SEED)


def generate(names: list[str] | None = None, out_dir: str | Path = DEFAULT_DIR) -> list[Path]:
    """Regenerate the named sets (all by default) as ``<out_dir>/<name>.npz``."""
    paths = []
    for name in names or list(GENERATORS):
        ds = build(name)
        path = write_npz(ds, Path(out_dir) / f"{name}.npz")
        log.info("wrote %s: %d images, %d classes", path, len(ds.labels), len(ds.class_names))
        paths.append(path)
    return paths


__all__ = ["GENERATORS", "Generator", "EmbeddedSet", "build", "generate", "DEFAULT_DIR"]
