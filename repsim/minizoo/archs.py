"""The mini-zoo's three architecture families, sized alike so that only the objective varies.

Each encoder takes normalised ``(n, 3, 32, 32)`` float images and returns an ``(n, embed_dim)``
embedding: the representation the study compares (for self-supervised objectives the backbone output,
before any projector). Hyperparameters live in :data:`ARCHS` so that the weight files can carry them
as metadata and the loader can rebuild the module without guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from repsim.config import did_you_mean
from repsim.errors import ModelError

#: Fixed input normalisation of every mini-zoo model (applied to images scaled to [0, 1]).
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.25, 0.25, 0.25)
IMG_SIZE = 32


class SmallCNN(nn.Module):
    """3x3 conv blocks (BN, ReLU) with a stride-2 stem, 2x2 max-pools, and global average pooling.

    The stride-2 stem (as in ResNets) makes the CNN about ten times cheaper on a CPU than a
    full-resolution first layer, which is what lets the whole zoo retrain in minutes.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128), pools: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            stride = 2 if i == 0 else 1
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if i < pools:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.embed_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class MLP(nn.Module):
    """Flattened pixels through Linear-BN-ReLU blocks; the last hidden layer is the embedding."""

    def __init__(self, hidden: tuple[int, ...] = (128, 128, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = 3 * IMG_SIZE * IMG_SIZE
        for d_out in hidden:
            layers += [
                nn.Linear(d_in, d_out, bias=False),
                nn.BatchNorm1d(d_out),
                nn.ReLU(inplace=True),
            ]
            d_in = d_out
        self.net = nn.Sequential(*layers)
        self.embed_dim = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _vit(
    embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, patch_size: int
) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    # num_classes=0: forward() returns the class token after the final norm (the study's ViT feature)
    return VisionTransformer(
        img_size=IMG_SIZE,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        num_classes=0,
        global_pool="token",
    )


#: name -> (builder, keyword arguments, architecture metadata). The name is the config's ``identifier``.
ARCHS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], dict[str, str]]] = {
    "cnn": (
        SmallCNN,
        {"widths": (32, 64, 128, 128), "pools": 2},
        {"architecture_class": "Convolutional", "architecture": "SmallCNN"},
    ),
    # patch 4 (64 patches), as ViTs for 32-pixel images use: with patch 8 (16 patches) a letter of
    # `glyphs` falls into one or two patches, and even at 20 epochs the supervised, Barlow Twins and
    # CLIP ViTs stayed near chance there (0.07 against 0.09) while the CNN reached 0.72.
    "vit": (
        _vit,
        {"embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0, "patch_size": 4},
        {"architecture_class": "Transformer", "architecture": "ViT-64d4/4"},
    ),
    "mlp": (
        MLP,
        {"hidden": (128, 128, 128)},
        {"architecture_class": "MLP", "architecture": "MLP"},
    ),
}


def build_arch(name: str, **overrides: Any) -> nn.Module:
    """Build the encoder ``name`` with its registered hyperparameters (``overrides`` replace some).

    The module gets an ``embed_dim`` attribute, the width of the embedding it returns.
    """
    _check_name(name)
    builder, kwargs, _ = ARCHS[name]
    module = builder(**{**kwargs, **overrides})
    if not hasattr(module, "embed_dim"):
        module.embed_dim = module.num_features  # timm ViT
    return module


def arch_kwargs(name: str) -> dict[str, Any]:
    """The registered hyperparameters of ``name`` (a copy)."""
    _check_name(name)
    return dict(ARCHS[name][1])


def _check_name(name: str) -> None:
    """ModelError for a name the mini-zoo lacks, with the closest one it has: a config's
    ``identifier:`` is read here."""
    if name not in ARCHS:
        raise ModelError(
            f"unknown mini-zoo architecture {name!r}{did_you_mean(name, ARCHS)}; choose one of "
            f"{sorted(ARCHS)}"
        )


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
