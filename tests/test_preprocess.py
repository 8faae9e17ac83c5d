"""Batched tensor preprocessing matches each model's own PIL transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from repsim.preprocess import pil_transform, preprocess_batch, resized_size
from repsim.zoo import ModelSpec, load_model
from repsim.zoo.spec import PreprocessSpec
from repsim.zoo.taps import FeatureExtractor


def _images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Smooth random images (natural-image-like spectra) so resizing is meaningful."""
    small = rng.integers(0, 256, size=(n, h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    t = torch.from_numpy(small).permute(0, 3, 1, 2).float()
    t = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.normal(0, 8, size=t.shape)).float()
    return (t + noise).clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_resized_size_follows_torchvision_rule() -> None:
    spec = PreprocessSpec(256, 224, (0.5,) * 3, (0.5,) * 3)
    assert resized_size(300, 400, spec) == (256, 341)
    assert resized_size(400, 300, spec) == (341, 256)
    squash = PreprocessSpec(224, 224, (0.5,) * 3, (0.5,) * 3, resize_mode="squash")
    assert resized_size(300, 400, squash) == (224, 224)


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_pixels_close_to_pil(rng: np.random.Generator, interp: str) -> None:
    spec = PreprocessSpec(64, 56, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interp)
    imgs = _images(rng, 3, 90, 120)
    ours = preprocess_batch(imgs, spec)
    ref = torch.stack([pil_transform(spec)(Image.fromarray(im)) for im in imgs])
    assert ours.shape == ref.shape == (3, 3, 56, 56)
    # within a couple of uint8 steps (antialiasing kernels differ slightly from PIL's)
    assert (ours - ref).abs().mul(0.229).mean() < 1.5 / 255


@pytest.mark.parametrize(
    "entry",
    [
        {
            "id": "rn18",
            "loader": "torchvision",
            "identifier": "resnet18",
            "layer": "avgpool",
            "token": "pooled",
        },
        {
            "id": "vit",
            "loader": "timm",
            "identifier": "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
            "layer": "norm",
            "token": "cls",
        },
    ],
    ids=["resnet18", "vit_tiny"],
)
def test_features_match_pil_path(rng: np.random.Generator, entry: dict) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(**entry)
    loaded = load_model(spec, pretrained=False)
    ex = FeatureExtractor(loaded, spec)
    imgs = _images(rng, 4, 240, 320)
    with torch.no_grad():
        ours = ex(preprocess_batch(imgs, loaded.preprocess))
        tf = pil_transform(loaded.preprocess)
        ref = ex(torch.stack([tf(Image.fromarray(im)) for im in imgs]))
    cos = torch.nn.functional.cosine_similarity(ours, ref, dim=1)
    assert cos.min() >= 0.999, cos


def test_list_of_sizes(rng: np.random.Generator) -> None:
    spec = PreprocessSpec(32, 32, (0.5,) * 3, (0.5,) * 3)
    out = preprocess_batch([_images(rng, 1, 40, 60)[0], _images(rng, 1, 64, 48)[0]], spec)
    assert out.shape == (2, 3, 32, 32)
