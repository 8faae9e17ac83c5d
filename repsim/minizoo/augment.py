"""Batched image augmentations as tensor ops, driven by an explicit ``torch.Generator``.

Every random draw comes from the generator passed in, so a seed fixes the augmentations and the
zoo retrains to the same weights. Images are float tensors in [0, 1] of shape ``(n, 3, H, W)``;
normalisation with the zoo's fixed mean/std happens after augmentation (:func:`normalize`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from repsim.minizoo.archs import MEAN, STD

_GRAY = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


def resized_crop(
    x: torch.Tensor,
    gen: torch.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Random resized crop (and horizontal flip) of every image, as one ``grid_sample`` call."""
    n = x.shape[0]
    area = _uniform(n, *scale, gen)
    aspect = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen))
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    strength: float = 0.4,
    p: float = 0.8,
    p_gray: float = 0.2,
) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter (with probability ``p``), then grayscale."""
    n = x.shape[0]
    apply = (torch.rand(n, generator=gen) < p).float().view(n, 1, 1, 1)
    weights = torch.tensor(_GRAY).view(1, 3, 1, 1)

    def factor() -> torch.Tensor:
        f = _uniform(n, 1 - strength, 1 + strength, gen).view(n, 1, 1, 1)
        return apply * f + (1 - apply)

    x = x * factor()
    gray = (x * weights).sum(1, keepdim=True)
    mean = gray.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    gray = (x * weights).sum(1, keepdim=True)
    x = (x - gray) * factor() + gray
    to_gray = (torch.rand(n, generator=gen) < p_gray).float().view(n, 1, 1, 1)
    gray = (x * weights).sum(1, keepdim=True)
    x = to_gray * gray + (1 - to_gray) * x
    return x.clamp(0.0, 1.0)


#: the crop area range of :func:`strong_view` (the objectives that use it record it in ``hparams``).
#: 0.8 to 1, not the 0.35 to 1 the zoo was first trained with: on 32x32 letters and digits a crop of
#: a third of the image often cuts away the shape that is the class, and the Barlow Twins ViT stayed
#: near chance on those sets (data/minizoo/README.md, "What was tried")
STRONG_CROP_SCALE = (0.8, 1.0)


def strong_view(
    x: torch.Tensor, gen: torch.Generator, crop_scale: tuple[float, float] = STRONG_CROP_SCALE
) -> torch.Tensor:
    """A SimCLR-style view: resized crop (area ``crop_scale``), flip, colour jitter, random grayscale."""
    return color_jitter(resized_crop(x, gen, scale=crop_scale), gen)


def weak_view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A mild crop only: keeps colour, orientation and layout, which labels and captions describe."""
    return resized_crop(x, gen, scale=(0.7, 1.0), ratio=(0.9, 1.1), flip=False)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Apply the zoo's fixed mean/std to images in [0, 1]."""
    mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(n, 3, H, W)`` images to float32 in [0, 1]."""
    return images.float().div_(255.0)
