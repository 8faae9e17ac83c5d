"""``repsim bench extract``: decode-once (chunk-major) extraction against the per-model path.

:func:`decode_once` extracts several small random-init models from one set of JPEG files, twice
in one process: per model (:func:`repsim.extract.extract_features` for each model, which decodes
every image once per model) and chunk-major (:func:`repsim.extract.extract_models`, which
decodes each image once and runs every model on it). It reports how many images each path
decoded, their throughput (dataset images per second with all models), the ratio chunk-major /
per-model, and that both wrote the same features bit for bit.

:func:`run` compares the whole path (decoded uint8 stimuli -> per-model preprocessing -> forward
-> feature store) with the forward pass alone on tensors already preprocessed and staged on the
device; the ratio says how much of the model's speed the pipeline keeps (target on a GPU: >= 0.9).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from repsim.argtypes import DEVICE_HELP, Parser, at_least
from repsim.device import EXTRACT_PRECISIONS, resolve_device
from repsim.extract import (
    _chunking,
    _Runner,
    decode_workers,
    extract_features,
    extract_models,
)
from repsim.preprocess import preprocess_batch
from repsim.store import FeatureStore
from repsim.zoo import ModelSpec, load_model

log = logging.getLogger(__name__)

MODELS = {
    "resnet50": ModelSpec("resnet50", "timm", "resnet50"),
    "vit_base_patch16_224": ModelSpec(
        "vit_base_patch16_224", "timm", "vit_base_patch16_224", layer="norm", token="cls"
    ),
}


#: small random-init models of the decode-once benchmark, each with its own preprocessing
SMALL_MODELS = {
    "resnet18": ModelSpec(
        "resnet18",
        "torchvision",
        "resnet18",
        layer="avgpool",
        token="pooled",
        preprocess={"resize": 73, "crop": 64},
    ),
    "mobilenet_v3_small": ModelSpec(
        "mobilenet_v3_small",
        "torchvision",
        "mobilenet_v3_small",
        layer="avgpool",
        token="pooled",
        preprocess={"resize": 80, "crop": 72, "interpolation": "bicubic"},
    ),
    "shufflenet_v2_x0_5": ModelSpec(
        "shufflenet_v2_x0_5",
        "torchvision",
        "shufflenet_v2_x0_5",
        layer="conv5",
        token="pooled",
        preprocess={"resize": 64, "crop": 64},
    ),
    "squeezenet1_1": ModelSpec(
        "squeezenet1_1",
        "torchvision",
        "squeezenet1_1",
        layer="features",
        token="pooled",
        preprocess={"resize": 64, "crop": 64, "resize_mode": "squash"},
    ),
}


def jpeg_files(
    n_images: int, height: int, width: int, seed: int = 0, quality: int = 90
) -> list[bytes]:
    """``n_images`` JPEG files of smooth random pictures (they compress like photographs, not noise)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    files = []
    for _ in range(n_images):
        small = rng.integers(
            0, 256, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8
        )
        big = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
        noisy = np.clip(
            big.astype(np.int16) + rng.integers(-12, 13, size=big.shape), 0, 255
        ).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=quality)
        files.append(buf.getvalue())
    return files


class CountingDecoder:
    """``load_images(indices)`` over JPEG files: decodes with repsim's decoder and counts images."""

    def __init__(self, files: list[bytes]) -> None:
        import threading

        self.files, self.count, self._lock = files, 0, threading.Lock()

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        from repsim.stimuli.decode import decode_image

        out = np.stack([decode_image(self.files[int(i)]) for i in indices])
        with self._lock:
            self.count += len(indices)
        return out


def decode_once(
    models: Sequence[str | ModelSpec] | None = None,
    *,
    n_images: int = 192,
    batch_size: int = 32,
    chunk_batches: int = 2,
    image_size: int = 375,
    device: str | None = None,
    precision: str = "float32",
    workers: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Chunk-major against per-model extraction of ``models`` on the same JPEG files, one process.

    ``models``: names of :data:`SMALL_MODELS` (default: all four) or any specs (random-init);
    ``image_size``: the JPEG files' height (width 4/3 of it, like a photograph).

    Both paths run the same code (:func:`repsim.extract.extract_models`; per model = one model per
    call), the same batches and the same decode threads; only the number of decodes differs.
    Each path runs ``repeats`` times, alternating which goes first; seconds are the fastest run
    of each (all are kept). Returns decode counts, seconds, throughput (dataset images/s, all
    models), the ratio and whether the features are equal bit for bit.
    """
    dev = resolve_device(device)
    specs = [
        m if isinstance(m, ModelSpec) else SMALL_MODELS[m] for m in models or list(SMALL_MODELS)
    ]
    names = [s.id for s in specs]
    files = jpeg_files(n_images, image_size, image_size * 4 // 3)
    ids = [f"img{i:06d}" for i in range(n_images)]
    built = {}
    for i, spec in enumerate(specs):
        built[spec.id] = load_model(spec, pretrained=False, device=dev, seed=i)
        _Runner(built[spec.id], spec, dev, precision)(
            CountingDecoder(files)(np.arange(min(batch_size, n_images)))
        )
    workers = workers or decode_workers()
    kw = {
        "batch_size": batch_size,
        "chunk_batches": chunk_batches,
        "device": dev,
        "progress": False,
        "precision": precision,
        "workers": workers,
    }
    times: dict[str, list[float]] = {"per_model": [], "chunk_major": []}
    counts: dict[str, int] = {}
    equal = True
    for rep in range(repeats):  # alternating which path goes first: a busy machine hurts both alike
        with tempfile.TemporaryDirectory() as tmp:
            stores = {p: FeatureStore(f"{tmp}/{p}.zarr") for p in times}
            for path in (
                ("per_model", "chunk_major") if rep % 2 == 0 else ("chunk_major", "per_model")
            ):
                load = CountingDecoder(files)
                _sync(dev)
                start = time.perf_counter()
                if path == "per_model":
                    for spec in specs:
                        extract_features(
                            spec, load, ids, stores[path], "bench", loaded=built[spec.id], **kw
                        )
                else:
                    out = extract_models(
                        specs, load, ids, stores[path], "bench", load=lambda s: built[s.id], **kw
                    )
                _sync(dev)
                times[path].append(time.perf_counter() - start)
                counts[path] = load.count
            equal = equal and all(
                np.array_equal(
                    stores["per_model"].read("bench", s.id)[1],
                    stores["chunk_major"].read("bench", s.id)[1],
                )
                for s in specs
            )
    per_s, cm_s = min(times["per_model"]), min(times["chunk_major"])
    single = CountingDecoder(files)
    start = time.perf_counter()
    for i in range(0, n_images, batch_size):
        single(np.arange(i, min(i + batch_size, n_images)))
    decode_img_s = n_images / (time.perf_counter() - start)
    # the batch and chunk extraction used (each capped at the dataset), not the ones asked for
    batch_rows, chunk_rows = _chunking(batch_size, chunk_batches, n_images)
    result = {
        "device": str(dev),
        "models": names,
        "n_images": n_images,
        "image_size": [image_size, image_size * 4 // 3],
        "batch_size": batch_rows,
        "chunk_rows": chunk_rows,
        "workers": workers,
        "precision": precision,
        "decode_one_thread_img_s": decode_img_s,
        "repeats": repeats,
        "per_model": {
            "decoded": counts["per_model"],
            "seconds": per_s,
            "img_s": n_images / per_s,
            "all_seconds": times["per_model"],
        },
        "chunk_major": {
            "decoded": counts["chunk_major"],
            "all_seconds": times["chunk_major"],
            "seconds": cm_s,
            "img_s": n_images / cm_s,
            "decode_seconds": out["decode_seconds"],
            "decode_wait_seconds": out["decode_wait_seconds"],
            "model_seconds": {m: r["seconds"] for m, r in out["models"].items()},
        },
        "ratio": per_s / cm_s,
        "features_equal": equal,
    }
    log.info(
        "decode once: %d vs %d decodes, ratio %.2f",
        counts["chunk_major"],
        counts["per_model"],
        result["ratio"],
    )
    return result


def format_decode_once(res: dict[str, Any]) -> str:
    """The decode-once result as the lines ``repsim bench extract`` prints."""
    h, w = res["image_size"]
    per, cm = res["per_model"], res["chunk_major"]
    return "\n".join(
        [
            f"decode-once extraction on {res['device']}: {len(res['models'])} models ({', '.join(res['models'])}), "
            f"{res['n_images']} JPEG images {w}x{h}, batch {res['batch_size']}, chunks of {res['chunk_rows']}, "
            f"{res['workers']} decode thread(s), {res['precision']}, fastest of {res['repeats']} runs each",
            f"{'path':<14}{'decodes':>9}{'seconds':>10}{'images/s':>10}",
            f"{'per-model':<14}{per['decoded']:>9}{per['seconds']:>10.2f}{per['img_s']:>10.1f}",
            f"{'chunk-major':<14}{cm['decoded']:>9}{cm['seconds']:>10.2f}{cm['img_s']:>10.1f}",
            f"ratio chunk-major / per-model: {res['ratio']:.2f}x; decodes per image: "
            f"{cm['decoded'] / res['n_images']:g} vs {per['decoded'] / res['n_images']:g}; "
            f"features identical: {res['features_equal']}",
            f"chunk-major: {cm['decode_seconds']:.2f} s of decoding on the threads, the models waited "
            f"{cm['decode_wait_seconds']:.2f} s for it; one thread decodes {res['decode_one_thread_img_s']:.0f} img/s",
        ]
    )


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
    images = rng.integers(
        0, 256, size=(n_images, image_size, image_size * 5 // 4, 3), dtype=np.uint8
    )
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
        if runner.channels_last:  # the layout extraction gives this model's input
            staged = [x.contiguous(memory_format=torch.channels_last) for x in staged]
        fwd = _forward_only(runner, staged, dev)
        del staged
        with tempfile.TemporaryDirectory() as tmp:
            store = FeatureStore(f"{tmp}/bench.zarr")
            runner(images[:batch_size])  # warm-up, like the baseline
            _sync(dev)
            start = time.perf_counter()
            extract_features(
                spec,
                images,
                ids,
                store,
                "bench",
                loaded=loaded,
                batch_size=batch_size,
                chunk_batches=8,
                device=dev,
                progress=False,
                precision=precision,
            )
            _sync(dev)
            whole = time.perf_counter() - start
        row = {
            "forward_img_s": n_images / fwd,
            "whole_img_s": n_images / whole,
            "ratio": fwd / whole,
        }
        results["models"][name] = row
        log.info(
            "%s: whole %.1f img/s, forward-only %.1f img/s, ratio %.2f",
            name,
            row["whole_img_s"],
            row["forward_img_s"],
            row["ratio"],
        )
    return results


def build_parser() -> Parser:
    """The options of ``repsim bench extract`` (``bench all --set extract.KEY`` is checked
    against them too)."""
    p = Parser(prog="repsim bench extract", description=__doc__)
    p.add_argument(
        "--small-models",
        nargs="+",
        choices=list(SMALL_MODELS),
        default=list(SMALL_MODELS),
        help="models of the decode-once comparison",
    )
    p.add_argument(
        "--decode-images",
        type=at_least(1),
        default=None,
        help="decode-once images (default: 2048 on CUDA, 192 on CPU)",
    )
    p.add_argument(
        "--repeats", type=at_least(1), default=3, help="runs of each path (the fastest counts)"
    )
    p.add_argument(
        "--forward",
        action="store_true",
        help="also compare the whole path with forward-only (--models)",
    )
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument(
        "--n-images", type=at_least(1), default=None, help="default: 2048 on CUDA, 64 on CPU"
    )
    p.add_argument(
        "--batch-size", type=at_least(1), default=None, help="default: 256 on CUDA, 32 on CPU"
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument(
        "--precision", choices=list(EXTRACT_PRECISIONS), default="float32", help="extract.precision"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cuda = resolve_device(args.device).type == "cuda"
    once = decode_once(
        args.small_models,
        n_images=args.decode_images or (2048 if cuda else 192),
        batch_size=args.batch_size or (256 if cuda else 32),
        chunk_batches=4 if cuda else 2,
        device=args.device,
        precision=args.precision,
        repeats=args.repeats,
    )
    lines = [format_decode_once(once)]
    if args.forward:
        res = run(
            args.models,
            n_images=args.n_images or (2048 if cuda else 64),
            batch_size=args.batch_size or (256 if cuda else 32),
            device=args.device,
            precision=args.precision,
        )
        lines += [
            "",
            f"extract benchmark on {res['device']} ({res['n_images']} images, batch {res['batch_size']}, {res['precision']})",
            f"{'model':<24}{'whole img/s':>14}{'forward img/s':>16}{'ratio':>8}",
        ]
        for name, row in res["models"].items():
            lines.append(
                f"{name:<24}{row['whole_img_s']:>14.1f}{row['forward_img_s']:>16.1f}{row['ratio']:>8.2f}"
            )
    print("\n".join(lines))  # the benchmark's report is its output
    return 0 if once["features_equal"] and once["chunk_major"]["decoded"] == once["n_images"] else 1
