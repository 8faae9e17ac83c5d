"""The training objectives of the mini-zoo, each a module holding its own heads.

An objective turns a batch into a scalar loss through the shared encoder. Heads (classifier,
projectors, text tower) exist only for training: the representation the study compares is the
encoder output. Every objective sees the same images, steps and optimiser; only the loss differs.

Registered keys (the ``<objective>`` in a model id ``<arch>-<objective>-s<seed>``):
``supervised`` (cross-entropy), ``simclr`` (NT-Xent), ``barlow`` (Barlow Twins), ``clip``
(symmetric image-text InfoNCE) and ``random`` (no training: the initialisation control).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from repsim.errors import ConfigError
from repsim.minizoo.augment import STRONG_CROP_SCALE, normalize, strong_view, to_unit, weak_view
from repsim.minizoo.captions import TextTower


@dataclass
class Batch:
    """uint8 images ``(b, 3, 32, 32)``, joint labels ``(b,)`` and caption tokens ``(b, L)``."""

    images: torch.Tensor
    labels: torch.Tensor
    tokens: torch.Tensor


@dataclass(frozen=True)
class ObjectiveInfo:
    """Facts about an objective, in the study's vocabulary (they go into manifest and config)."""

    key: str
    objective: str
    method: str
    trains: bool = True


def _projector(d_in: int, hidden: int, d_out: int, out_bn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(d_in, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, d_out, bias=not out_bn),
    ]
    if out_bn:
        layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


class Objective(nn.Module):
    """Base class: ``loss(encoder, batch, gen)`` returns the scalar training loss.

    ``hparams`` holds the objective's own settings (head sizes, loss constants). Every weights file
    records them, so ``repsim minizoo train --resume`` retrains a model whose objective has changed
    since, as it does for a changed budget or architecture.
    """

    info: ObjectiveInfo
    hparams: ClassVar[dict[str, Any]] = {}

    def loss(self, encoder: nn.Module, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class Supervised(Objective):
    """Cross-entropy of a linear head over the joint label space, on weakly augmented images."""

    info = ObjectiveInfo("supervised", "Supervised", "Cross-entropy")

    def __init__(self, embed_dim: int, n_classes: int, **_: object) -> None:
        super().__init__()
        self.head = nn.Linear(embed_dim, n_classes)

    def loss(self, encoder: nn.Module, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        x = normalize(weak_view(to_unit(batch.images), gen))
        return F.cross_entropy(self.head(encoder(x)), batch.labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over the 2b views of a batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    b = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(logits, targets)


class SimCLR(Objective):
    """Contrastive: two strong views of each image, NT-Xent on a projector's output."""

    info = ObjectiveInfo("simclr", "Self-Supervised", "SimCLR")
    hparams: ClassVar[dict[str, Any]] = {
        "proj_hidden": 256,
        "proj_dim": 64,
        "temperature": 0.2,
        "crop_scale": list(STRONG_CROP_SCALE),
    }

    def __init__(self, embed_dim: int, **_: object) -> None:
        super().__init__()
        h = self.hparams
        self.projector = _projector(embed_dim, h["proj_hidden"], h["proj_dim"])
        self.temperature = h["temperature"]

    def loss(self, encoder: nn.Module, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        x = to_unit(batch.images)
        crop = tuple(self.hparams["crop_scale"])
        views = normalize(torch.cat([strong_view(x, gen, crop), strong_view(x, gen, crop)]))
        z1, z2 = self.projector(encoder(views)).chunk(2)
        return nt_xent(z1, z2, self.temperature)


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Barlow Twins: push the cross-correlation of batch-standardised embeddings to identity."""
    b = z1.shape[0]
    c = z1.T @ z2 / b
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


class BarlowTwins(Objective):
    """Non-contrastive: redundancy reduction between two strong views (no negatives)."""

    info = ObjectiveInfo("barlow", "Self-Supervised", "Barlow Twins")
    # the off-diagonal weight is off_diagonal_scale / proj_dim
    hparams: ClassVar[dict[str, Any]] = {
        "proj_dim": 256,
        "off_diagonal_scale": 1.0,
        "crop_scale": list(STRONG_CROP_SCALE),
    }

    def __init__(self, embed_dim: int, **_: object) -> None:
        super().__init__()
        proj_dim = self.hparams["proj_dim"]
        # the final affine-free BatchNorm standardises each dimension over the batch
        self.projector = _projector(embed_dim, proj_dim, proj_dim, out_bn=True)
        self.lambd = self.hparams["off_diagonal_scale"] / proj_dim

    def loss(self, encoder: nn.Module, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        x = to_unit(batch.images)
        crop = tuple(self.hparams["crop_scale"])
        v1, v2 = strong_view(x, gen, crop), strong_view(x, gen, crop)
        # each view through the projector separately, so each gets its own batch statistics
        h1, h2 = encoder(normalize(torch.cat([v1, v2]))).chunk(2)
        return (
            barlow_twins(self.projector(h1), self.projector(h2), self.lambd)
            / self.projector[0].out_features
        )


class CLIP(Objective):
    """Image-text contrastive: symmetric InfoNCE between image and caption embeddings.

    Images whose captions are identical are all positives of each other (soft targets), so
    a batch with several plain "zero" digits does not push apart images it cannot tell apart.
    """

    info = ObjectiveInfo("clip", "Image-Text", "CLIP")
    hparams: ClassVar[dict[str, Any]] = {
        "out_dim": 64,
        "init_temperature": 0.07,
        "max_logit_scale": 100.0,
    }

    def __init__(self, embed_dim: int, vocab_size: int, max_len: int, **_: object) -> None:
        super().__init__()
        out_dim = self.hparams["out_dim"]
        self.image_proj = nn.Linear(embed_dim, out_dim, bias=False)
        self.text = TextTower(vocab_size, max_len, out_dim=out_dim)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1 / self.hparams["init_temperature"]))
        )

    def loss(self, encoder: nn.Module, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        x = normalize(weak_view(to_unit(batch.images), gen))
        img = F.normalize(self.image_proj(encoder(x)), dim=1)
        txt = F.normalize(self.text(batch.tokens), dim=1)
        scale = self.logit_scale.clamp(max=math.log(self.hparams["max_logit_scale"])).exp()
        return clip_infonce(img, txt, batch.tokens, scale)


def clip_infonce(
    img: torch.Tensor, txt: torch.Tensor, tokens: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE of unit image and caption embeddings at logit ``scale``; every
    caption identical to an image's own (same ``tokens``) is one of its positives, weighted
    equally (soft targets), in both directions."""
    logits = scale * img @ txt.T
    same = (tokens.unsqueeze(1) == tokens.unsqueeze(0)).all(-1).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


class RandomInit(Objective):
    """The control: the seeded initialisation, never trained."""

    info = ObjectiveInfo("random", "Random", "Random init", trains=False)

    def __init__(self, embed_dim: int, **_: object) -> None:
        super().__init__()


OBJECTIVES: dict[str, type[Objective]] = {
    cls.info.key: cls for cls in (Supervised, SimCLR, BarlowTwins, CLIP, RandomInit)
}


def objective_key(method: str) -> str | None:
    """The registered key of the objective a manifest's ``method`` column names (None if none)."""
    return next((k for k, cls in OBJECTIVES.items() if cls.info.method == method), None)


def build_objective(key: str, **kwargs: object) -> Objective:
    """The objective ``key`` with its heads sized by ``kwargs`` (embed_dim, n_classes, vocab_size, max_len)."""
    if key not in OBJECTIVES:
        raise ConfigError(f"unknown mini-zoo objective {key!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[key](**kwargs)
