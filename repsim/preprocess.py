"""Per-model inference transforms as batched tensor ops on decoded uint8 images.

A dataset is decoded once into uint8 ``(n, H, W, 3)`` arrays shared by every model; each model's
own transform (resize the shorter side with antialiasing, centre crop, normalise) then runs as
a few tensor ops on the whole batch, on the GPU when there is one, instead of a PIL pipeline
per image per model. Values are clamped and rounded after the resize, as PIL does when it
writes uint8 pixels, so features match the model's PIL transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from repsim.errors import InputError
from repsim.zoo.spec import PreprocessSpec

_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}


def resized_size(h: int, w: int, spec: PreprocessSpec) -> tuple[int, int]:
    """Output (h, w) of the resize step (torchvision's rule for an int size)."""
    if spec.resize_mode == "squash":
        return spec.resize, spec.resize
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(spec.resize * long / short)
    return (spec.resize, new_long) if h <= w else (new_long, spec.resize)


def _resize(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    mode = _MODES[interpolation]
    kwargs = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(x, size=size, mode=mode, **kwargs)
    return out.clamp_(0, 255).round_()


def _center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < crop or w < crop:
        pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = x.shape[-2:]
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    return x[..., top : top + crop, left : left + crop]


def to_tensor_batch(
    images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 ``(n, H, W, 3)`` -> float32 ``(n, 3, H, W)`` in [0, 255] on ``device``."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise InputError(f"images must be uint8 (n, H, W, 3), got {tuple(t.shape)} {t.dtype}")
    return t.to(device, non_blocking=True).permute(0, 3, 1, 2).float()


def preprocess_batch(
    images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    spec: PreprocessSpec,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Apply ``spec`` to uint8 images: a ``(n, H, W, 3)`` batch or a list of ``(H, W, 3)`` images.

    Returns a normalised float32 ``(n, 3, crop, crop)`` tensor on ``device``.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("no images to preprocess")
        return torch.cat([preprocess_batch(np.asarray(im)[None], spec, device) for im in images])
    x = to_tensor_batch(images, device)
    x = _resize(x, resized_size(x.shape[-2], x.shape[-1], spec), spec.interpolation)
    x = _center_crop(x, spec.crop)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1) * 255.0
    return ((x - mean) / std).contiguous()


def pil_transform(spec: PreprocessSpec):  # noqa: ANN201 - torchvision Compose
    """The equivalent torchvision PIL transform (for tests and for users who want PIL)."""
    from torchvision import transforms as T

    interp = T.InterpolationMode(spec.interpolation)
    size = (spec.resize, spec.resize) if spec.resize_mode == "squash" else spec.resize
    return T.Compose(
        [
            T.Resize(size, interpolation=interp),
            T.CenterCrop(spec.crop),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )
