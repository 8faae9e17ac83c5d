"""Batched, resumable feature extraction of one model on one dataset into the feature store.

Images arrive decoded (uint8, shared by all models of a run) as an array or as a callable
``load_images(indices)``. Per chunk of rows: a prefetch thread loads the next batches (pinned
memory on CUDA), the model's transform runs as batched tensor ops on the device, the forward
runs in the config's ``extract.precision`` (float32 as in the study; bfloat16 or float16 under
autocast, channels_last on CUDA), and the L2-normalised features of the chunk are written and
flagged done. A rerun skips done chunks, so a killed run
resumes where it stopped and produces the same rows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from repsim.device import device_name, resolve_device
from repsim.errors import ConfigError, InputError, StoreError
from repsim.preprocess import preprocess_batch
from repsim.runinfo import package_versions
from repsim.store import FeatureStore, check_ids
from repsim.zoo import LoadedModel, ModelSpec, load_model
from repsim.zoo.taps import FeatureExtractor

log = logging.getLogger(__name__)

Images = np.ndarray | Sequence[np.ndarray] | Callable[[np.ndarray], Any]
#: ``extract.precision`` values and the autocast dtype of each (None: plain float32, the study's)
PRECISIONS: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DEFAULT_PRECISION = "float32"


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ConfigError listing them.

    Checked when a config is read, so a typo fails before any model is loaded.
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(
            f"extract.precision {precision!r} is not one of {', '.join(PRECISIONS)}; "
            f"use {DEFAULT_PRECISION} (the study's) unless you have measured what the others do"
        )
    return precision


def _loader(images: Images, n: int) -> Callable[[np.ndarray], Any]:
    if callable(images):
        return images
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be uint8 (n, H, W, 3), got {images.shape} {images.dtype}")
        if len(images) != n:
            raise InputError(f"{len(images)} images but {n} ids; they must be aligned")
        return lambda idx: images[idx]
    if len(images) != n:
        raise InputError(f"{len(images)} images but {n} ids; they must be aligned")
    return lambda idx: [images[i] for i in idx]


def _prefetch(batches: list[np.ndarray], load: Callable[[np.ndarray], Any], pin: bool, depth: int = 2) -> Iterator[Any]:
    """Load batches in a background thread, ``depth`` ahead (pinned on CUDA)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for idx in batches:
                if stop.is_set():
                    return
                imgs = load(idx)
                if pin and isinstance(imgs, np.ndarray):
                    imgs = torch.from_numpy(np.ascontiguousarray(imgs)).pin_memory()
                q.put((None, imgs))
        except BaseException as exc:  # handed to the consumer
            q.put((exc, None))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        for _ in batches:
            exc, imgs = q.get()
            if exc is not None:
                raise exc
            yield imgs
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


class _Runner:
    """Preprocess + forward + normalise one batch on the device."""

    def __init__(
        self,
        loaded: LoadedModel,
        spec: ModelSpec,
        device: torch.device,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        self.device = device
        self.preprocess = loaded.preprocess
        self.cuda = device.type == "cuda"
        self.precision = check_precision(precision)
        module = loaded.module.to(device).eval()
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
        loaded.module = module
        self.extractor = FeatureExtractor(loaded, spec)

    def autocast(self) -> AbstractContextManager:
        """The forward's precision context: nothing for float32, else autocast to that dtype."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def __call__(self, imgs: Any) -> tuple[np.ndarray, np.ndarray]:
        x = preprocess_batch(imgs, self.preprocess, self.device)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            raw = self.extractor(x)
        raw = raw.float()
        normed = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return normed.cpu().numpy(), raw.cpu().numpy()


def extract_features(
    spec: ModelSpec,
    images: Images,
    ids: Sequence[str],
    store: FeatureStore,
    dataset_id: str,
    *,
    loaded: LoadedModel | None = None,
    pretrained: bool = True,
    batch_size: int = 64,
    chunk_batches: int = 16,
    device: str | torch.device | None = None,
    keep_raw: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    precision: str = DEFAULT_PRECISION,
) -> dict[str, Any]:
    """Extract ``spec``'s features of ``images`` into ``store`` under ``(dataset_id, spec.id)``.

    Parameters
    ----------
    images
        uint8 ``(n, H, W, 3)`` array, a list of ``(H, W, 3)`` arrays, or ``load_images(indices)``
        returning either, aligned with ``ids``.
    ids
        Unique stimulus ids; rows of the store are keyed by them.
    loaded
        An already built model (else ``load_model(spec, pretrained=pretrained)``).
    chunk_batches
        Batches per stored chunk: the unit of resumption.
    precision
        ``float32`` (the study's; plain float32 forward), ``bfloat16`` or ``float16`` (autocast
        on the device); stored in the group's attributes.

    Returns a summary dict (``status`` "done" or "skipped", ``n``, ``seconds``, ``img_per_s``).
    """
    check_precision(precision)
    ids = check_ids(ids)
    n = len(ids)
    if n == 0:
        raise InputError(f"no stimuli for dataset {dataset_id!r}")
    load = _loader(images, n)
    if overwrite:
        store.delete(dataset_id, spec.id)
    writer = store.writer(dataset_id, spec.id, ids)
    if writer is not None and writer.complete:
        log.debug("%s on %s: features already stored", spec.id, dataset_id)
        return {"model": spec.id, "dataset": dataset_id, "status": "skipped", "n": n}
    if writer is not None and writer.keep_raw != keep_raw:
        raise StoreError(f"{spec.id} on {dataset_id}: resuming with keep_raw={keep_raw} but the group was created with {writer.keep_raw}")
    dev = resolve_device(device)
    loaded = loaded if loaded is not None else load_model(spec, pretrained=pretrained, device=dev)
    runner = _Runner(loaded, spec, dev, precision)  # validates the layer before any work
    chunk_rows = batch_size * chunk_batches
    if writer is not None:
        chunk_rows = writer.chunk_rows
    n_chunks = -(-n // chunk_rows)
    pending = writer.pending_chunks() if writer is not None else list(range(n_chunks))
    todo = sum(min(chunk_rows, n - c * chunk_rows) for c in pending)
    attrs = {
        "spec": spec.to_dict(),
        "pretrained_cfg": loaded.pretrained_cfg,
        "layer": runner.extractor.layer,
        "token": runner.extractor.token,
        "versions": package_versions(),
        "device": device_name(dev),
        "precision": precision if PRECISIONS[precision] is None else f"{precision} (autocast)",
        "batch_size": batch_size,
    }
    start = time.perf_counter()
    bar = tqdm(total=todo, unit="img", desc=f"{spec.id} | {dataset_id}", disable=not progress, leave=False, delay=2.0)
    try:
        for chunk in pending:
            rows = np.arange(chunk * chunk_rows, min((chunk + 1) * chunk_rows, n))
            batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
            normed, raw = [], []
            for imgs in _prefetch(batches, load, pin=dev.type == "cuda"):
                a, b = runner(imgs)
                normed.append(a)
                raw.append(b)
                bar.update(len(a))
            feats = np.concatenate(normed)
            if writer is None:
                writer = store.create(
                    dataset_id, spec.id, ids, feats.shape[1], chunk_rows=chunk_rows, attrs=attrs, keep_raw=keep_raw
                )
            writer.write_chunk(chunk, feats, np.concatenate(raw) if keep_raw else None)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    rate = todo / seconds if seconds > 0 else float("nan")
    log.debug("%s on %s: %d images in %.1f s (%.1f img/s)", spec.id, dataset_id, todo, seconds, rate)
    return {"model": spec.id, "dataset": dataset_id, "status": "done", "n": n, "computed": todo, "seconds": seconds, "img_per_s": rate}
