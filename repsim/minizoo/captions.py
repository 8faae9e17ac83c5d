"""Captions for the image-text objective, their word tokenizer, and the small text tower.

A caption says what a person would see: the class, the dataset, and each image's recorded
attributes in words, e.g. ``"a photo of star from shapes, cyan colour, navy background, small
size, top left position, rotated 180 degrees"``. Continuous attributes are binned into words
(terciles within the dataset, angles to 30 degrees) so the vocabulary stays small and closed;
bookkeeping attributes that are not visible (crop offsets, source indices) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

#: attributes that record how an image was made rather than what it shows
HIDDEN_KEYS = frozenset(
    {"source_index", "crop_x", "crop_y", "crop_side", "x", "y", "shift", "onset"}
)
ANGLE_KEYS = frozenset({"rotation", "orientation"})
_LEVELS = ("low", "medium", "high")
_TOKEN = re.compile(r"[A-Za-z0-9]+")


def _words(value: Any) -> str:
    return str(value).replace("_", " ")


def _tercile_edges(values: Sequence[float]) -> tuple[float, float]:
    q = np.quantile(np.asarray(values, dtype=float), [1 / 3, 2 / 3])
    return float(q[0]), float(q[1])


def _phrase(key: str, value: Any, edges: Mapping[str, tuple[float, float]]) -> str | None:
    if key in HIDDEN_KEYS or value is None or isinstance(value, (list, tuple, dict)):
        return None
    name = _words(key)
    if isinstance(value, bool):
        return name if value else f"not {name}"
    if isinstance(value, str):
        return f"{_words(value)} {name}"
    if key in ANGLE_KEYS:
        return f"rotated {int(round(float(value) / 30.0)) * 30 % 360} degrees"
    if key in edges:
        lo, hi = edges[key]
        return f"{_LEVELS[int(value > lo) + int(value > hi)]} {name}"
    return f"{name} {_words(value)}"


def make_captions(
    dataset: str,
    class_names: Sequence[str],
    labels: Sequence[int],
    attributes: Sequence[Mapping[str, Any]] | None,
) -> list[str]:
    """One caption per image of one dataset: ``"a photo of <class> from <dataset>, <attributes>"``.

    Numeric attributes with more than five distinct values are binned into dataset terciles,
    so that a caption uses words a small closed vocabulary can hold.
    """
    attributes = attributes if attributes is not None else [{} for _ in labels]
    numeric: dict[str, list[float]] = {}
    for attrs in attributes:
        for key, value in attrs.items():
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and key not in ANGLE_KEYS
            ):
                numeric.setdefault(key, []).append(float(value))
    edges = {k: _tercile_edges(v) for k, v in numeric.items() if len(set(v)) > 5}
    captions = []
    for label, attrs in zip(labels, attributes):
        phrases = [p for k in sorted(attrs) if (p := _phrase(k, attrs[k], edges))]
        head = f"a photo of {_words(class_names[int(label)])} from {_words(dataset)}"
        captions.append(", ".join([head, *phrases]))
    return captions


class Tokenizer:
    """A closed word vocabulary built from the training captions (0 = padding, 1 = unknown)."""

    def __init__(self, captions: Sequence[str], max_len: int = 40) -> None:
        words = sorted({w for c in captions for w in _TOKEN.findall(c)})
        self.vocab = {w: i + 2 for i, w in enumerate(words)}
        longest = max((len(_TOKEN.findall(c)) for c in captions), default=1)
        self.max_len = min(max_len, max(longest, 1))

    def __len__(self) -> int:
        return len(self.vocab) + 2

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Token ids ``(n, max_len)`` int64, right-padded with 0 and truncated to ``max_len``."""
        out = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for i, caption in enumerate(captions):
            ids = [self.vocab.get(w, 1) for w in _TOKEN.findall(caption)][: self.max_len]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


class TextTower(nn.Module):
    """A two-layer pre-norm transformer over word tokens, mean-pooled over non-padding positions.

    Word order matters in the captions ("red star on a blue background"), so a bag of words
    would not do; a transformer this small costs little next to the image tower.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        out_dim: int = 64,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == 0
        h = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        h = self.blocks(h, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.proj(self.norm(pooled))
