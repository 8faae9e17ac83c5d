"""The mini-zoo's training recipe against its formulas written out: the augmentations and input
scaling, the training loop (batches, learning-rate schedule, optimiser, seeds) and each
objective's composition of views, heads and loss.

The shipped weights are what this recipe trains; a change here changes every trained model
without any test of the zoo's files noticing (they record hyperparameters, not code). The
augmentation tests replay the generator's draws in the order the module makes them and compute
the result pixel by pixel in float64, so a changed draw, range or formula fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from repsim.minizoo.archs import MEAN, STD, build_arch
from repsim.minizoo.augment import (
    STRONG_CROP_SCALE,
    color_jitter,
    normalize,
    resized_crop,
    strong_view,
    to_unit,
    weak_view,
)
from repsim.minizoo.data import ZooData
from repsim.minizoo.objectives import Batch, Objective, ObjectiveInfo
from repsim.minizoo.train import Budget, train_model

GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's grayscale


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> np.ndarray:
    return torch.rand(n, generator=gen).double().numpy() * (high - low) + low


def _bilinear(img: np.ndarray, py: float, px: float) -> np.ndarray:
    """``img`` (c, H, W) at pixel coordinates (py, px), clipped to the pixel centres (what
    reflection padding gives within half a pixel of the edge, where a crop's samples can fall)."""
    h, w = img.shape[1:]
    py, px = min(max(py, 0.0), h - 1.0), min(max(px, 0.0), w - 1.0)
    y0, x0 = int(math.floor(py)), int(math.floor(px))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    fy, fx = py - y0, px - x0
    top = img[:, y0, x0] * (1 - fx) + img[:, y0, x1] * fx
    bottom = img[:, y1, x0] * (1 - fx) + img[:, y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _crop_written_out(
    x: torch.Tensor, seed: int, scale: tuple, ratio: tuple, flip: bool
) -> np.ndarray:
    """A random resized crop, one output pixel at a time: the box of area ``scale`` and aspect
    ``ratio`` (log-uniform) of the image, at a uniform place inside it, mirrored with
    probability 1/2, sampled bilinearly at the output's pixel centres."""
    gen = torch.Generator().manual_seed(seed)
    n, _, size, _ = x.shape
    area = _uniform(gen, n, *scale)
    aspect = np.exp(_uniform(gen, n, math.log(ratio[0]), math.log(ratio[1])))
    half_w = np.minimum(np.sqrt(area * aspect), 1.0)  # half-widths in [-1, 1] coordinates
    half_h = np.minimum(np.sqrt(area / aspect), 1.0)
    cx = (2 * torch.rand(n, generator=gen).double().numpy() - 1) * (1 - half_w)
    cy = (2 * torch.rand(n, generator=gen).double().numpy() - 1) * (1 - half_h)
    mirror = torch.rand(n, generator=gen).numpy() < 0.5 if flip else np.zeros(n, bool)
    src = x.double().numpy()
    out = np.empty_like(src)
    centres = (2 * np.arange(size) + 1) / size - 1  # output pixel centres in [-1, 1]
    for i in range(n):
        for r, v in enumerate(centres):
            for c, u in enumerate(centres):
                sx = cx[i] + half_w[i] * (-u if mirror[i] else u)
                sy = cy[i] + half_h[i] * v
                # [-1, 1] to pixel coordinates (pixel k's centre at k)
                out[i, :, r, c] = _bilinear(
                    src[i], ((sy + 1) * size - 1) / 2, ((sx + 1) * size - 1) / 2
                )
    return out


@pytest.mark.parametrize(
    "scale, ratio, flip",
    [
        (STRONG_CROP_SCALE, (3 / 4, 4 / 3), True),  # strong_view's crop: boxes wider than the image
        ((0.7, 1.0), (0.9, 1.1), False),  # weak_view's
        ((0.1, 0.3), (1 / 2, 2), True),  # small boxes that reach every edge
    ],
)
def test_resized_crop_samples_the_drawn_box(scale, ratio, flip) -> None:
    x = _images(96, seed=1, size=8)
    got = resized_crop(x, torch.Generator().manual_seed(7), scale=scale, ratio=ratio, flip=flip)
    want = _crop_written_out(x, 7, scale, ratio, flip)
    assert got.dtype == torch.float32 and got.shape == x.shape
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=2e-6)


def test_a_crop_of_the_whole_image_is_the_image_or_its_mirror() -> None:
    x = _images(4, seed=2)
    whole = resized_crop(x, torch.Generator(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    torch.testing.assert_close(whole, x, rtol=0, atol=1e-6)
    gen = torch.Generator().manual_seed(3)
    mirrored = resized_crop(x, gen, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)
    gen = torch.Generator().manual_seed(3)
    torch.rand(4 * 4, generator=gen)  # area, aspect, cx, cy
    flips = torch.rand(4, generator=gen) < 0.5
    assert 0 < int(flips.sum()) < 4  # the seed gives both cases
    for i in range(4):
        torch.testing.assert_close(
            mirrored[i], x[i].flip(-1) if flips[i] else x[i], rtol=0, atol=1e-6
        )


def _luma(img: np.ndarray) -> np.ndarray:
    return sum(w * img[c] for c, w in enumerate(GRAY))


def _jitter_written_out(
    x: torch.Tensor, seed: int, strength: float, p: float, p_gray: float
) -> np.ndarray:
    """Colour jitter image by image: with probability ``p`` a brightness factor, a contrast factor
    about the mean luma and a saturation factor about each pixel's luma, each uniform in
    ``1 +- strength``; then grayscale (luma in every channel) with probability ``p_gray``;
    clipped to [0, 1] at the end."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    apply = torch.rand(n, generator=gen).numpy() < p
    brightness, contrast, saturation = (
        _uniform(gen, n, 1 - strength, 1 + strength) for _ in range(3)
    )
    gray = torch.rand(n, generator=gen).numpy() < p_gray
    out = x.double().numpy().copy()
    for i in range(n):
        img = out[i]
        if apply[i]:
            img = img * brightness[i]
            mean = _luma(img).mean()
            img = (img - mean) * contrast[i] + mean
            img = (img - _luma(img)) * saturation[i] + _luma(img)
        if gray[i]:
            img = np.broadcast_to(_luma(img), img.shape)
        out[i] = np.clip(img, 0.0, 1.0)
    return out


@pytest.mark.parametrize("strength, p, p_gray", [(0.4, 0.8, 0.2), (0.9, 0.5, 0.5)])
def test_color_jitter_is_its_formula_written_out(strength, p, p_gray) -> None:
    x = _images(64, seed=4, size=6)
    got = color_jitter(x, torch.Generator().manual_seed(11), strength=strength, p=p, p_gray=p_gray)
    want = _jitter_written_out(x, 11, strength, p, p_gray)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=2e-6)
    # the draws give every case: jittered or not, grayscale or not, and clipped values
    assert 0 < int((got == 0).sum() + (got == 1).sum())
    assert bool((got[:, 0] == got[:, 1]).all(dim=(1, 2)).any())
    assert not bool((got[:, 0] == got[:, 1]).all(dim=(1, 2)).all())


def test_the_views_chain_their_parts_from_one_generator() -> None:
    """strong_view is the strong crop then the jitter, weak_view a mild crop without a flip,
    each drawing from the generator in that order (the zoo's training replays these draws)."""
    x = _images(16, seed=5)
    gen_a, gen_b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    want = color_jitter(resized_crop(x, gen_b, scale=STRONG_CROP_SCALE), gen_b)
    torch.testing.assert_close(strong_view(x, gen_a), want, rtol=0, atol=0)
    gen_a, gen_b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    want = resized_crop(x, gen_b, scale=(0.7, 1.0), ratio=(0.9, 1.1), flip=False)
    torch.testing.assert_close(weak_view(x, gen_a), want, rtol=0, atol=0)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_inputs_are_scaled_to_unit_then_standardised_by_the_zoo_constants() -> None:
    images = torch.arange(256, dtype=torch.uint8).repeat(3, 1).reshape(1, 3, 16, 16)
    unit = to_unit(images)
    assert unit.dtype == torch.float32 and float(unit.min()) == 0.0 and float(unit.max()) == 1.0
    want = (images.double() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1).double()) / torch.tensor(
        STD
    ).view(1, 3, 1, 1).double()
    torch.testing.assert_close(normalize(unit).double(), want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------- the training loop
class _Recorder(Objective):
    """An objective that records what the loop hands it and returns the step number as loss
    (with zero gradient, so the optimiser's weight decay alone moves the weights)."""

    info = ObjectiveInfo("recorder", "Recorder", "Recorder")

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 1)  # a head the optimiser must train with the encoder
        self.batches: list[list[int]] = []
        self.generators: list[torch.Generator] = []
        self.first_gen_state: torch.Tensor | None = None
        self.initial: dict[str, torch.Tensor] | None = None

    def loss(self, encoder: nn.Module, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        if self.initial is None:
            self.initial = {k: v.clone() for k, v in encoder.state_dict().items()}
            self.first_gen_state = gen.get_state().clone()
        assert encoder.training and self.training
        self.batches.append(batch.labels.tolist())
        self.generators.append(gen)
        out = encoder(normalize(to_unit(batch.images)))
        return out.sum() * 0 + self.head.weight.sum() * 0 + float(len(self.batches))


def _data(n: int) -> ZooData:
    """``n`` random images whose labels are their row numbers (so a batch names its rows)."""
    gen = torch.Generator().manual_seed(0)
    return ZooData(
        images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
        labels=torch.arange(n),
        captions=[""] * n,
        is_train=torch.ones(n, dtype=torch.bool),
        class_names=[f"x/{i}" for i in range(n)],
        datasets=["x"],
    )


def _lr_written_out(step: int, total: int, warmup: float, lr: float) -> float:
    """Linear warm-up over the first ``int(warmup * total)`` steps (at least one), reaching ``lr``
    at its last step, then a half cosine from ``lr`` towards 0 over the rest."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


def test_train_model_batches_schedule_and_seeds_are_the_recipe(monkeypatch) -> None:
    """Every epoch a fresh permutation from the order generator (seeded with the seed), cut into
    whole batches (the rest dropped); AdamW with the budget's weight decay over encoder and head
    at the scheduled learning rate; one augmentation generator seeded ``10000 + seed``; the
    encoder initialised under ``torch.manual_seed(seed)``; the last epoch's mean loss."""
    from repsim.minizoo import train as train_module

    recorder = _Recorder()
    monkeypatch.setattr(train_module, "build_objective", lambda key, **_: recorder)
    seen: list[tuple[float, float, set[int]]] = []

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            group = self.param_groups[0]
            seen.append((group["lr"], group["weight_decay"], {id(p) for p in group["params"]}))
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    seed, n = 3, 30
    budget = Budget(epochs=3, batch_size=8, lr=0.01, weight_decay=0.07, warmup=0.25)
    encoder, obj, facts = train_model(
        "mlp", "recorder", seed, _data(n), torch.zeros(n, 2, dtype=torch.long), 3, budget
    )
    steps_per_epoch, total = n // 8, 3 * (n // 8)
    assert facts == {"epochs": 3, "steps": total, "lr": 0.01, "final_loss": 8.0}  # mean of 7, 8, 9

    order = torch.Generator().manual_seed(seed)
    want = []
    for _ in range(budget.epochs):
        perm = torch.randperm(n, generator=order).tolist()
        want += [perm[i * 8 : (i + 1) * 8] for i in range(steps_per_epoch)]
    assert recorder.batches == want

    lrs = [lr for lr, _, _ in seen]
    np.testing.assert_allclose(lrs, [_lr_written_out(s, total, 0.25, 0.01) for s in range(total)])
    assert lrs[0] == pytest.approx(0.005) and lrs[1] == pytest.approx(0.01) == lrs[2]
    assert all(b < a for a, b in zip(lrs[2:], lrs[3:]))
    assert {wd for _, wd, _ in seen} == {0.07}
    trained = {id(p) for p in [*encoder.parameters(), *obj.parameters()]}
    assert all(params == trained for _, _, params in seen)
    assert id(recorder.head.weight) in trained

    assert len({id(g) for g in recorder.generators}) == 1
    assert torch.equal(
        recorder.first_gen_state, torch.Generator().manual_seed(10_000 + seed).get_state()
    )
    torch.manual_seed(seed)
    fresh = build_arch("mlp").state_dict()
    assert recorder.initial.keys() == fresh.keys()
    for key, value in fresh.items():
        assert torch.equal(recorder.initial[key], value), key
    assert not encoder.training and not any(m.training for m in obj.modules())


def test_the_untrained_control_is_the_seeded_initialisation_in_eval_mode() -> None:
    n = 20
    encoder, obj, facts = train_model(
        "mlp", "random", 5, _data(n), torch.zeros(n, 2, dtype=torch.long), 3, Budget()
    )
    assert facts == {"epochs": 0, "steps": 0, "lr": "", "final_loss": ""}
    assert not encoder.training and not any(m.training for m in obj.modules())
    torch.manual_seed(5)
    for key, value in build_arch("mlp").state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key


def test_models_are_trained_seed_by_seed_and_only_selects_by_id() -> None:
    """Seed-major, so a run cut off holds every (architecture, objective) cell of its first
    seeds; ``--only`` keeps the ids its patterns match, and says so when none does."""
    from repsim.errors import ConfigError
    from repsim.minizoo.train import _select

    jobs = _select(["cnn", "mlp"], ["simclr", "clip"], [0, 1], None)
    assert jobs == [
        ("cnn", "simclr", 0),
        ("cnn", "clip", 0),
        ("mlp", "simclr", 0),
        ("mlp", "clip", 0),
        ("cnn", "simclr", 1),
        ("cnn", "clip", 1),
        ("mlp", "simclr", 1),
        ("mlp", "clip", 1),
    ]
    only = _select(["cnn", "mlp"], ["simclr", "clip"], [0, 1], ["*-clip-s1", "cnn-simclr-s0"])
    assert only == [("cnn", "simclr", 0), ("cnn", "clip", 1), ("mlp", "clip", 1)]
    with pytest.raises(ConfigError, match="matches no model id; ids look like cnn-simclr-s0"):
        _select(["cnn"], ["simclr"], [0], ["vit-*"])


def test_the_head_accuracy_is_measured_on_the_held_out_images(tmp_path, monkeypatch) -> None:
    """The manifest's head_acc: the supervised head on the stored encoder's embeddings of the
    test part, not the images it trained on."""
    from repsim.minizoo import train as train_module
    from repsim.minizoo.captions import Tokenizer
    from repsim.minizoo.data import load_zoo_data, synthetic_npz
    from repsim.minizoo.evaluate import embed, head_accuracy
    from repsim.minizoo.weights import load_encoder

    synthetic_npz(tmp_path / "data" / "squares.npz", n=96, n_classes=3, seed=0)
    data = load_zoo_data(tmp_path / "data")
    train, test = data.subset(True), data.subset(False)
    calls = []

    def recording(head, z, y):
        calls.append((head, z, y))
        return head_accuracy(head, z, y)

    monkeypatch.setattr(train_module, "head_accuracy", recording)
    budget = Budget(epochs=1, batch_size=32)
    row = train_module.build_one(
        "mlp", "supervised", 0, train, test, Tokenizer(train.captions), budget, tmp_path / "zoo"
    )
    ((head, z, y),) = calls
    assert torch.equal(y, test.labels) and len(test) == 24
    stored, _ = load_encoder(tmp_path / "zoo" / "mlp-supervised-s0.safetensors")
    torch.testing.assert_close(z, embed(stored, test.images), rtol=0, atol=0)
    assert row["head_acc"] == round(head_accuracy(head, z, y), 4)
    # the row's sizes are the stored encoder's, and so are the config entry's
    from repsim.minizoo.manifest import model_entry

    n = sum(p.numel() for p in stored.parameters())
    assert row["params"] == n and row["embed_dim"] == stored.embed_dim == 128
    assert model_entry(row)["metadata"]["params_m"] == round(n / 1e6, 4) != round(n / 1e6, 2)


# ------------------------------------------------------------------ the objectives' compositions
def _batch(n: int = 12) -> Batch:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    tokens = torch.tensor([[2, 3, 0], [4, 0, 0], [2, 3, 0]] * (n // 3))  # repeated captions
    return Batch(images, torch.arange(n) % 3, tokens)


def _heads(key: str, encoder: nn.Module) -> Objective:
    from repsim.minizoo.objectives import build_objective

    return build_objective(key, embed_dim=encoder.embed_dim, n_classes=3, vocab_size=5, max_len=3)


@pytest.mark.parametrize("key", ["supervised", "simclr", "barlow", "clip"])
def test_each_objective_is_its_views_heads_and_loss(key: str) -> None:
    """Supervised: cross-entropy of the head on a weak view. SimCLR: NT-Xent of the projector on
    two strong views. Barlow Twins: its loss on the two views projected separately, the
    off-diagonal weighted 1/proj_dim, divided by proj_dim. CLIP: soft-target InfoNCE of the
    projected image against the caption tower on a weak view, the logit scale capped at 100.
    The views are drawn from the generator in this order."""
    from repsim.minizoo.objectives import barlow_twins, clip_infonce, nt_xent

    torch.manual_seed(0)
    encoder = build_arch("mlp")
    obj = _heads(key, encoder)
    batch = _batch()
    if key == "clip":
        with torch.no_grad():
            obj.logit_scale.fill_(math.log(250.0))  # above the cap
    got = obj.loss(encoder, batch, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    x = to_unit(batch.images)
    h = obj.hparams
    if key == "supervised":
        logits = obj.head(encoder(normalize(weak_view(x, gen))))
        want = torch.nn.functional.cross_entropy(logits, batch.labels)
    elif key == "simclr":
        crop = tuple(h["crop_scale"])
        v1, v2 = strong_view(x, gen, crop), strong_view(x, gen, crop)
        z1, z2 = obj.projector(encoder(normalize(torch.cat([v1, v2])))).chunk(2)
        want = nt_xent(z1, z2, h["temperature"])
    elif key == "barlow":
        crop = tuple(h["crop_scale"])
        v1, v2 = strong_view(x, gen, crop), strong_view(x, gen, crop)
        h1, h2 = encoder(normalize(torch.cat([v1, v2]))).chunk(2)
        lambd = h["off_diagonal_scale"] / h["proj_dim"]
        want = barlow_twins(obj.projector(h1), obj.projector(h2), lambd) / h["proj_dim"]
    else:
        img = torch.nn.functional.normalize(
            obj.image_proj(encoder(normalize(weak_view(x, gen)))), dim=1
        )
        txt = torch.nn.functional.normalize(obj.text(batch.tokens), dim=1)
        want = clip_infonce(img, txt, batch.tokens, torch.tensor(h["max_logit_scale"]))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key, out_bn", [("simclr", False), ("barlow", True)])
def test_projectors_are_linear_batchnorm_relu_linear(key: str, out_bn: bool) -> None:
    """SimCLR's and Barlow Twins' projector heads; Barlow Twins' ends in an affine-free
    BatchNorm, the batch standardisation its cross-correlation assumes."""
    encoder = build_arch("mlp")
    projector = _heads(key, encoder).projector
    h = _heads(key, encoder).hparams
    hidden, out = (h["proj_hidden"], h["proj_dim"]) if key == "simclr" else (h["proj_dim"],) * 2
    kinds = ["Linear", "BatchNorm1d", "ReLU", "Linear"] + (["BatchNorm1d"] if out_bn else [])
    assert [type(m).__name__ for m in projector] == kinds
    first, last = projector[0], projector[3]
    assert (first.in_features, first.out_features, first.bias) == (encoder.embed_dim, hidden, None)
    assert (last.in_features, last.out_features) == (hidden, out)
    assert (last.bias is None) == out_bn
    if out_bn:
        assert not projector[4].affine
