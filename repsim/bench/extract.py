"""``repsim bench extract``: whole extraction path vs forward-only, same process and batch size.

The whole path is decoded uint8 stimuli -> per-model preprocessing -> forward -> feature store
(:func:`repsim.extract.extract_features`); the baseline is the forward pass alone on tensors
already preprocessed and staged on the device. Their ratio says how much of the model's speed
the pipeline keeps (target on a GPU: >= 0.9).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from typing import Any

import numpy as np
import torch

from repsim.device import resolve_device
from repsim.extract import PRECISIONS, _Runner, extract_features
from repsim.preprocess import preprocess_batch
from repsim.store import FeatureStore
from repsim.zoo import ModelSpec, load_model

log = logging.getLogger(__name__)

MODELS = {
    "resnet50": ModelSpec("resnet50", "timm", "resnet50"),
    "vit_base_patch16_224": ModelSpec("vit_base_patch16_224", "timm", "vit_base_patch16_224", layer="norm", token="cls"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_only(runner: _Runner, staged: list[torch.Tensor], device: torch.device) -> float:
    """Seconds for the forward passes alone on preprocessed, device-resident batches."""
    ex = runner.extractor
    with torch.inference_mode():
        ex(staged[0])  # warm-up
        _sync(device)
        start = time.perf_counter()
        for x in staged:
            with runner.autocast():  # the extraction's precision (extract.precision)
                ex(x)
        _sync(device)
    return time.perf_counter() - start


def run(
    models: list[str] | None = None,
    *,
    n_images: int = 128,
    batch_size: int = 32,
    image_size: int = 256,
    device: str | None = None,
    precision: str = "float32",
) -> dict[str, Any]:
    """Images/s of the whole path and of forward-only for each model; returns a results dict.

    ``precision`` is ``extract.precision`` (float32, the study's; bfloat16 or float16 autocast).
    """
    dev = resolve_device(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, image_size, image_size * 5 // 4, 3), dtype=np.uint8)
    ids = [f"img{i:06d}" for i in range(n_images)]
    results: dict[str, Any] = {
        "device": str(dev),
        "n_images": n_images,
        "batch_size": batch_size,
        "precision": precision,
        "models": {},
    }
    for name in models or list(MODELS):
        spec = MODELS[name]
        torch.manual_seed(0)
        loaded = load_model(spec, pretrained=False, device=dev)
        runner = _Runner(loaded, spec, dev, precision)
        staged = [
            preprocess_batch(images[i : i + batch_size], loaded.preprocess, dev)
            for i in range(0, n_images, batch_size)
        ]
        if dev.type == "cuda":
            staged = [x.contiguous(memory_format=torch.channels_last) for x in staged]
        fwd = _forward_only(runner, staged, dev)
        del staged
        with tempfile.TemporaryDirectory() as tmp:
            store = FeatureStore(f"{tmp}/bench.zarr")
            runner(images[:batch_size])  # warm-up, like the baseline
            _sync(dev)
            start = time.perf_counter()
            extract_features(spec, images, ids, store, "bench", loaded=loaded, batch_size=batch_size,
                             chunk_batches=8, device=dev, progress=False, precision=precision)
            _sync(dev)
            whole = time.perf_counter() - start
        row = {"forward_img_s": n_images / fwd, "whole_img_s": n_images / whole, "ratio": fwd / whole}
        results["models"][name] = row
        log.info("%s: whole %.1f img/s, forward-only %.1f img/s, ratio %.2f", name, row["whole_img_s"], row["forward_img_s"], row["ratio"])
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="repsim bench extract", description=__doc__)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--n-images", type=int, default=None, help="default: 2048 on CUDA, 64 on CPU")
    p.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 32 on CPU")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=list(PRECISIONS), default="float32", help="extract.precision")
    args = p.parse_args(argv)
    cuda = resolve_device(args.device).type == "cuda"
    res = run(
        args.models,
        n_images=args.n_images or (2048 if cuda else 64),
        batch_size=args.batch_size or (256 if cuda else 32),
        device=args.device,
        precision=args.precision,
    )
    lines = [f"extract benchmark on {res['device']} ({res['n_images']} images, batch {res['batch_size']}, {res['precision']})",
             f"{'model':<24}{'whole img/s':>14}{'forward img/s':>16}{'ratio':>8}"]
    for name, row in res["models"].items():
        lines.append(f"{name:<24}{row['whole_img_s']:>14.1f}{row['forward_img_s']:>16.1f}{row['ratio']:>8.2f}")
    print("\n".join(lines))  # the benchmark's report is its output
    return 0
