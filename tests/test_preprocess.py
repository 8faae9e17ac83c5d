"""Batched tensor preprocessing matches each model's own PIL transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from repsim.errors import ConfigError, InputError
from repsim.preprocess import pil_transform, preprocess_batch, resized_size
from repsim.zoo import ModelSpec, load_model
from repsim.zoo.spec import MAX_IMAGE_SIDE, PreprocessSpec
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


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_resized_pixels_are_whole_uint8_values_like_pil(interp: str) -> None:
    """After the resize, pixels are rounded and clamped to 0..255 as PIL writes them: a black
    third stays 0, a white third 255, and bicubic's overshoot at the stripes' edges is cut."""
    img = np.zeros((1, 40, 40, 3), dtype=np.uint8)
    img[:, :, 14:26:3] = 255  # stripes between a black and a white third
    img[:, :, 27:] = 255
    spec = PreprocessSpec(24, 24, (0.0,) * 3, (1.0,) * 3, interp)
    raw = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(0, 3, 1, 2).float(),
        size=(24, 24),
        mode=interp,
        antialias=True,
    )
    if interp == "bicubic":
        assert raw.max() > 255.5 and raw.min() < -0.5  # there is an overshoot to cut
    pixels = preprocess_batch(img, spec).numpy() * 255.0
    whole = np.rint(pixels)
    np.testing.assert_allclose(pixels, whole, rtol=0, atol=1e-3)
    assert whole.min() == 0 and whole.max() == 255
    assert (whole[..., :, :6] == 0).all() and (whole[..., :, -6:] == 255).all()


def test_a_crop_larger_than_the_resized_image_is_padded_like_pil(rng: np.random.Generator) -> None:
    """30x41 resized to 20x27, then a 29 crop: 4 rows of padding above and 5 below, 1 column
    each side, black before normalisation, as torchvision's CenterCrop pads."""
    spec = PreprocessSpec(20, 29, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    imgs = rng.integers(30, 226, size=(2, 30, 41, 3), dtype=np.uint8)
    ours = preprocess_batch(imgs, spec)
    ref = torch.stack([pil_transform(spec)(Image.fromarray(im)) for im in imgs])
    assert ours.shape == ref.shape == (2, 3, 29, 29)
    fill = (-torch.tensor(spec.mean) / torch.tensor(spec.std)).view(1, 3, 1, 1)
    padded = torch.isclose(ours, fill.expand_as(ours), atol=1e-5)
    assert torch.equal(padded, torch.isclose(ref, fill.expand_as(ref), atol=1e-5))
    rows, cols = padded.all(dim=(0, 1, 3)), padded.all(dim=(0, 1, 2))
    assert rows.tolist() == [True] * 4 + [False] * 20 + [True] * 5
    assert cols.tolist() == [True] + [False] * 27 + [True]
    inside = (slice(None), slice(None), slice(4, 24), slice(1, 28))
    assert (ours[inside] - ref[inside]).abs().mul(0.229).mean() < 3 / 255


def test_nearest_picks_the_pixels_pil_picks(rng: np.random.Generator) -> None:
    """``interpolation: nearest`` (no antialiasing): the same source pixels as PIL's NEAREST."""
    spec = PreprocessSpec(24, 24, (0.5,) * 3, (0.25,) * 3, "nearest")
    imgs = rng.integers(0, 256, size=(2, 45, 60, 3), dtype=np.uint8)
    ours = preprocess_batch(imgs, spec)
    ref = torch.stack([pil_transform(spec)(Image.fromarray(im)) for im in imgs])
    assert ours.shape == ref.shape == (2, 3, 24, 24)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-5)


_NORM = ((0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("name", ["resize", "crop"])
def test_a_side_from_1_to_the_largest_is_taken_and_any_other_refused(name: str) -> None:
    """Both bounds are inclusive; a bool (YAML's ``yes``) or a float is no number of pixels."""
    for side in (1, MAX_IMAGE_SIDE):
        spec = PreprocessSpec(
            **{"resize": 224, "crop": 224, name: side}, mean=_NORM[0], std=_NORM[1]
        )
        assert getattr(spec, name) == side
    for side in (0, MAX_IMAGE_SIDE + 1, True, 224.0):
        with pytest.raises(
            ConfigError, match=f"{name} must be a whole number of pixels from 1 to {MAX_IMAGE_SIDE}"
        ):
            PreprocessSpec(**{"resize": 224, "crop": 224, name: side}, mean=_NORM[0], std=_NORM[1])


def test_an_unknown_interpolation_or_resize_mode_is_refused_with_the_choices() -> None:
    spec = PreprocessSpec(224, 224, *_NORM)
    with pytest.raises(
        ConfigError,
        match=r"interpolation 'lanczos' is not one of \('bilinear', 'bicubic', 'nearest'\)",
    ):
        spec.replace(interpolation="lanczos")
    with pytest.raises(
        ConfigError, match=r"resize_mode 'crop' is not one of \('shortest', 'squash'\)"
    ):
        spec.replace(resize_mode="crop")


def test_replace_reads_yaml_numbers_as_whole_pixels_and_float_channels() -> None:
    """YAML reads ``2.56e2`` as a float and ``[0, 1, 0.5]`` as ints: the overrides come out as the
    same transform as the one written with whole pixels and float channels."""
    spec = PreprocessSpec(224, 224, *_NORM).replace(resize=2.56e2, crop=224.0, mean=[0, 1, 0.5])
    assert spec == PreprocessSpec(256, 224, (0.0, 1.0, 0.5), _NORM[1])
    assert type(spec.resize) is int and type(spec.crop) is int
    assert [type(v) for v in spec.mean] == [float] * 3 and isinstance(spec.mean, tuple)
    with pytest.raises(ConfigError, match="crop must be a whole number of pixels"):
        spec.replace(crop=224.5)  # not truncated to 224
    assert spec.replace() == spec and spec.replace(interpolation="nearest").resize == 256


@pytest.mark.parametrize(
    "images, got",
    [
        (np.zeros((2, 16, 16, 3), np.float32), r"\(2, 16, 16, 3\) torch.float32"),
        (np.zeros((2, 16, 16, 4), np.uint8), r"\(2, 16, 16, 4\) torch.uint8"),
        (np.zeros((16, 16, 3), np.uint8), r"\(16, 16, 3\) torch.uint8"),
    ],
    ids=["float", "rgba", "one-image-not-a-batch"],
)
def test_images_that_are_not_a_uint8_rgb_batch_are_refused_by_shape_and_dtype(
    images: np.ndarray, got: str
) -> None:
    """Float pixels would be read as 0..255 values, a 4th channel or a missing batch axis would
    be read as colours: each is refused, naming what was given."""
    spec = PreprocessSpec(16, 16, *_NORM)
    with pytest.raises(InputError, match=rf"images must be uint8 \(n, H, W, 3\), got {got}"):
        preprocess_batch(images, spec)


def test_an_empty_list_of_images_is_refused() -> None:
    with pytest.raises(InputError, match="no images to preprocess"):
        preprocess_batch([], PreprocessSpec(16, 16, *_NORM))


@pytest.mark.parametrize("crop", [28, 29])
@pytest.mark.parametrize("shape", [(20, 59), (20, 62), (59, 20), (62, 20)])
def test_a_crop_larger_than_the_short_side_only_pads_that_side_like_pil(
    rng: np.random.Generator, shape: tuple[int, int], crop: int
) -> None:
    """Resized to a short side of 20, cropped to 28 or 29: padded across the short side only
    (4 and 4, or 4 and 5 pixels), cut from the long side where torchvision's CenterCrop cuts
    (round((long - crop) / 2) from the start, rounding half to even)."""
    spec = PreprocessSpec(20, crop, (0.5,) * 3, (0.25,) * 3, "nearest")
    imgs = rng.integers(0, 256, size=(2, *shape, 3), dtype=np.uint8)
    ours = preprocess_batch(imgs, spec)
    ref = torch.stack([pil_transform(spec)(Image.fromarray(im)) for im in imgs])
    assert ours.shape == ref.shape == (2, 3, crop, crop)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-5)
    fill = -0.5 / 0.25
    short_axis = 2 if shape[0] < shape[1] else 3
    edge = ours.select(short_axis, 0), ours.select(short_axis, crop - 1)
    assert all(bool((e == fill).all()) for e in edge)


def test_squash_resizes_both_sides_to_the_size_like_torchvision(rng: np.random.Generator) -> None:
    """``resize_mode: squash``: both sides to ``resize`` (the aspect ratio is not kept), then the
    crop; the same pixels as torchvision's own Resize((r, r)) and CenterCrop, in both paths."""
    from torchvision import transforms as T

    spec = PreprocessSpec(24, 20, (0.5,) * 3, (0.25,) * 3, "nearest", resize_mode="squash")
    imgs = rng.integers(0, 256, size=(2, 30, 72, 3), dtype=np.uint8)
    ref_tf = T.Compose(
        [
            T.Resize((24, 24), interpolation=T.InterpolationMode.NEAREST),
            T.CenterCrop(20),
            T.ToTensor(),
            T.Normalize((0.5,) * 3, (0.25,) * 3),
        ]
    )
    ref = torch.stack([ref_tf(Image.fromarray(im)) for im in imgs])
    ours = preprocess_batch(imgs, spec)
    pil = torch.stack([pil_transform(spec)(Image.fromarray(im)) for im in imgs])
    assert ours.shape == ref.shape == pil.shape == (2, 3, 20, 20)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(pil.numpy(), ref.numpy(), rtol=0, atol=1e-5)
