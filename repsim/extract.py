"""Chunk-major, resumable feature extraction: each image decoded once, every model run on it.

The rows of a dataset are cut into chunks of ``batch_size * chunk_batches`` (the feature store's
unit of resumption). Each chunk is decoded **once**, batch by batch, by a pool of decode threads
(PIL releases the GIL while it decodes; pinned memory on CUDA), and every model of the call then
runs on that decoded chunk: its own transform as batched tensor ops on the device
(:func:`repsim.preprocess.preprocess_batch`), the forward in the config's ``extract.precision``
(float32 as in the study; bfloat16 or float16 under autocast; channels_last on CUDA and for
convolutional networks on a CPU, :func:`use_channels_last`), L2 normalisation, and the chunk's
rows written and flagged done in that model's group. The next chunk is decoded while the models
run on this one, so at most two decoded chunks are in memory. A batch or a chunk larger than the
dataset is the whole dataset.

Models are built before the first image is decoded (a bad layer or weights file fails first) and
stay resident on the device while their sizes, added up in the call's order, fit
:func:`model_memory_budget`; the models after that are released after each chunk and built again
for the next one, in the same fixed order. A model alone in the call stays resident whatever its
size: letting it go would make room for nothing. A model that fails (``errors="collect"``) leaves
the pass; the others go on. A rerun skips every model's done chunks, so a killed extraction
resumes where it stopped and produces the same rows; a partial group written in other chunks,
batches or precision, from another model spec, on another device or with other numerical
packages is extracted again whole.

One model is the same call with one spec (:func:`extract_features`): a per-model run and a
chunk-major run compute every batch with the same rows, the same ops, the same bits.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from repsim.device import (
    DEFAULT_PRECISION,
    EXTRACT_PRECISIONS,
    check_precision,
    device_name,
    resolve_device,
)
from repsim.errors import InputError, ModelError, StoreError
from repsim.preprocess import preprocess_batch
from repsim.runinfo import package_versions
from repsim.store import FeatureStore, FeatureWriter, check_ids
from repsim.zoo import LoadedModel, ModelSpec, load_model
from repsim.zoo.taps import FeatureExtractor

log = logging.getLogger(__name__)

Images = np.ndarray | Sequence[np.ndarray] | Callable[[np.ndarray], Any]
#: share of the device's memory that resident models may take (the rest: activations, images)
MODEL_MEMORY_SHARE = {"cuda": 0.5, "cpu": 0.25}
MAX_DECODE_WORKERS = 16


def decode_workers() -> int:
    """Decode threads: one per core this process may use, less one for the forward (1 to 16)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DECODE_WORKERS, cores - 1))


def model_memory_budget(device: torch.device) -> int:
    """Bytes of parameters and buffers that may stay resident: half a GPU, a quarter of the RAM.

    A fixed share of the total (not of what is free now) keeps the choice of resident models the
    same from one run to the next; it changes only speed, never a feature.
    """
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 16 * 2**30
    return int(MODEL_MEMORY_SHARE.get(device.type, 0.25) * total)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _loader(images: Images, n: int) -> Callable[[np.ndarray], Any]:
    if callable(images):
        return images
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(
                f"images must be uint8 (n, H, W, 3), got {images.shape} {images.dtype}"
            )
        if len(images) != n:
            raise InputError(f"{len(images)} images but {n} ids; they must be aligned")
        return lambda idx: images[idx]
    if len(images) != n:
        raise InputError(f"{len(images)} images but {n} ids; they must be aligned")
    return lambda idx: [images[i] for i in idx]


def use_channels_last(module: torch.nn.Module, device: torch.device) -> bool:
    """Whether the forward runs in channels_last memory format: always on CUDA; on a CPU only for
    convolutional networks (two or more Conv2d layers), which it speeds up (the mini-zoo CNN 1.5x,
    ResNet-18 1.1x), while a ViT, whose one convolution is its patch embedding, and an MLP get
    slower (0.85x, 0.75x; measured on a 2-core AMD EPYC, one thread)."""
    if device.type == "cuda":
        return True
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())
    return convs >= 2


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
        self.channels_last = use_channels_last(module, device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        loaded.module = module
        self.extractor = FeatureExtractor(loaded, spec)

    def autocast(self) -> AbstractContextManager:
        """The forward's precision context: nothing for float32, else autocast to that dtype."""
        dtype = EXTRACT_PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def __call__(self, imgs: Any) -> tuple[np.ndarray, np.ndarray]:
        x = preprocess_batch(imgs, self.preprocess, self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            raw = self.extractor(x)
        raw = raw.float()
        normed = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return normed.cpu().numpy(), raw.cpu().numpy()


@dataclass
class _Job:
    """One model's part of a chunk-major pass."""

    spec: ModelSpec
    writer: FeatureWriter | None = None
    pending: set[int] = field(default_factory=set)
    loaded: LoadedModel | None = None
    runner: _Runner | None = None
    attrs: dict[str, Any] | None = None
    resident: bool = True
    computed: int = 0
    seconds: float = 0.0
    status: str = "done"
    error: BaseException | None = None


class _Decoder:
    """Decodes the batches of a chunk on a thread pool; counts images and decode seconds."""

    def __init__(self, load: Callable[[np.ndarray], Any], workers: int, pin: bool) -> None:
        self.load, self.pin = load, pin
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="repsim-decode")
        self.images = 0
        self.seconds = 0.0  # decode work, summed over the threads
        self.wait = 0.0  # time the forward waited for decoded images

    def _one(self, idx: np.ndarray) -> tuple[Any, float]:
        t0 = time.perf_counter()
        imgs = self.load(idx)
        if self.pin and isinstance(imgs, np.ndarray):
            imgs = torch.from_numpy(np.ascontiguousarray(imgs)).pin_memory()
        return imgs, time.perf_counter() - t0

    def submit(self, batches: list[np.ndarray]) -> list[tuple[int, Future]]:
        return [(len(idx), self.pool.submit(self._one, idx)) for idx in batches]

    def collect(self, futures: list[tuple[int, Future]]) -> list[Any]:
        out = []
        for n, fut in futures:
            t0 = time.perf_counter()
            imgs, seconds = fut.result()
            self.wait += time.perf_counter() - t0
            self.seconds += seconds
            self.images += n
            out.append(imgs)
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def extract_models(
    specs: Sequence[ModelSpec],
    images: Images,
    ids: Sequence[str],
    store: FeatureStore,
    dataset_id: str,
    *,
    load: Callable[[ModelSpec], LoadedModel] | None = None,
    pretrained: bool = True,
    batch_size: int = 64,
    chunk_batches: int = 16,
    device: str | torch.device | None = None,
    keep_raw: bool = False,
    overwrite: bool | Collection[str] = False,
    progress: bool = True,
    precision: str = DEFAULT_PRECISION,
    workers: int | None = None,
    memory_budget: int | None = None,
    errors: str = "raise",
) -> dict[str, Any]:
    """Extract the features of every model in ``specs`` on one dataset, decoding each image once.

    Parameters
    ----------
    specs
        The models, in the fixed order in which they run on each chunk (and are made resident).
    images
        uint8 ``(n, H, W, 3)`` array, a list of ``(H, W, 3)`` arrays, or ``load_images(indices)``
        returning either, aligned with ``ids``; called once per batch of rows.
    ids
        Unique stimulus ids; rows of the store are keyed by them.
    load
        ``load(spec) -> LoadedModel`` (default: :func:`repsim.zoo.load_model` on the device).
    batch_size
        Images per forward pass; one larger than the dataset is the whole dataset.
    chunk_batches
        Batches per stored chunk: the unit of decoding and of resumption (at most the dataset).
    overwrite
        True (all models) or the ids of the models whose stored features are deleted first.
    workers
        Decode threads (default :func:`decode_workers`).
    memory_budget
        Bytes of models kept resident (default :func:`model_memory_budget`; a model alone with
        work stays resident anyway).
    errors
        ``raise``: the first failure of a model ends the call; ``collect``: a failing model
        leaves the pass, its exception is returned under ``models`` and the others go on. A
        failure to decode always ends the call (every model needs the image).

    Returns ``{"models": {id: stats or exception}, "n", "decoded", "decode_seconds",
    "decode_wait_seconds", "seconds", "workers"}``; ``decoded`` counts the images decoded,
    at most one per row; per model ``seconds`` is its own preprocess, forward and write time.
    """
    check_precision(precision)
    if errors not in ("raise", "collect"):
        raise InputError(f"errors must be 'raise' or 'collect', got {errors!r}")
    ids = check_ids(ids)
    n = len(ids)
    if n == 0:
        raise InputError(f"no stimuli for dataset {dataset_id!r}")
    model_ids = [s.id for s in specs]
    if len(set(model_ids)) != len(model_ids):
        raise InputError(f"model ids must be unique in one extraction, got {model_ids}")
    if isinstance(overwrite, str):  # one id, not the ids it contains as substrings
        overwrite = (overwrite,)
    read = _loader(images, n)
    dev = resolve_device(device)
    if load is None:

        def load(spec: ModelSpec) -> LoadedModel:
            return load_model(spec, pretrained=pretrained, device=dev)

    batch_size, chunk_rows = _chunking(batch_size, chunk_batches, n)
    n_chunks = -(-n // chunk_rows)
    budget = model_memory_budget(dev) if memory_budget is None else int(memory_budget)
    start = time.perf_counter()
    jobs = [_Job(spec) for spec in specs]

    def fail(job: _Job, exc: Exception) -> None:  # an interrupt is never caught to come here
        if errors == "raise":
            raise exc
        log.error("%s on %s: %s: %s", job.spec.id, dataset_id, type(exc).__name__, exc)
        job.status, job.error = "failed", exc
        _release(job, dev)

    for job in jobs:  # open or resume each model's group, before any image is decoded
        try:
            _open_group(
                job,
                store,
                dataset_id,
                ids,
                overwrite,
                keep_raw,
                chunk_rows,
                n_chunks,
                precision,
                batch_size,
                dev,
            )
        except Exception as exc:  # noqa: BLE001 - one model's failure (errors="collect")
            fail(job, exc)
    resident = 0
    # a model alone makes room for nothing by being let go: it is built once, whatever its size
    alone = sum(job.status == "done" and bool(job.pending) for job in jobs) == 1
    for job in jobs:  # build the models with work: a bad layer fails before any decoding
        if job.status != "done" or not job.pending:
            continue
        try:
            size = _build(job, load, dev, precision, batch_size)
        except Exception as exc:  # noqa: BLE001
            fail(job, exc)
            continue
        job.resident = alone or resident + size <= budget
        resident += size if job.resident else 0
        if not job.resident:
            log.info(
                "%s: %.2f GB of models resident (budget %.2f GB); %s is built for each chunk",
                dataset_id,
                resident / 1e9,
                budget / 1e9,
                job.spec.id,
            )
            _release(job, dev)
    chunks = sorted(set().union(*(j.pending for j in jobs if j.status == "done")))
    todo = sum(min(chunk_rows, n - c * chunk_rows) for c in chunks)
    decoder = _Decoder(read, workers or decode_workers(), pin=dev.type == "cuda")
    label = (
        f"{dataset_id}: {jobs[0].spec.id}"
        if len(jobs) == 1
        else f"{dataset_id}: {len(jobs)} models"
    )
    bar = tqdm(total=todo, unit="img", desc=label, disable=not progress, leave=False, delay=2.0)
    try:
        ahead = decoder.submit(_batches(chunks[0], chunk_rows, n, batch_size)) if chunks else []
        for k, chunk in enumerate(chunks):
            current = ahead
            if k + 1 < len(chunks):  # the next chunk decodes while the models run on this one
                ahead = decoder.submit(_batches(chunks[k + 1], chunk_rows, n, batch_size))
            batches = decoder.collect(current)
            for job in jobs:
                if job.status != "done" or chunk not in job.pending:
                    continue
                try:
                    _run_chunk(
                        job,
                        chunk,
                        batches,
                        store,
                        dataset_id,
                        ids,
                        keep_raw,
                        chunk_rows,
                        load,
                        dev,
                        precision,
                        batch_size,
                    )
                except Exception as exc:  # noqa: BLE001
                    fail(job, exc)
                    continue
                if not job.resident:
                    _release(job, dev)
            del batches
            bar.update(min(chunk_rows, n - chunk * chunk_rows))
    finally:
        bar.close()
        decoder.close()
    seconds = time.perf_counter() - start
    models: dict[str, Any] = {}
    for job in jobs:
        job.loaded, job.runner = None, None  # resident models stay where they are (the caller's)
        if job.error is not None:
            models[job.spec.id] = job.error
            continue
        rate = job.computed / job.seconds if job.seconds > 0 else float("nan")
        models[job.spec.id] = {
            "model": job.spec.id,
            "dataset": dataset_id,
            "status": job.status,
            "n": n,
            "computed": job.computed,
            "seconds": job.seconds,
            "img_per_s": rate,
        }
    log.debug(
        "%s: %d models, %d images decoded in %.1f s of decode threads (%.1f s waited), %.1f s in all",
        dataset_id,
        len(jobs),
        decoder.images,
        decoder.seconds,
        decoder.wait,
        seconds,
    )
    return {
        "dataset": dataset_id,
        "models": models,
        "n": n,
        "decoded": decoder.images,
        "decode_seconds": decoder.seconds,
        "decode_wait_seconds": decoder.wait,
        "seconds": seconds,
        "workers": decoder.workers,
    }


def _chunking(batch_size: int, chunk_batches: int, n: int) -> tuple[int, int]:
    """The batch size and chunk rows for ``n`` rows, each at most ``n``: a batch larger than the
    dataset is the dataset (the same rows, so the same features), and the store never sizes a
    chunk, which it allocates whole, beyond the rows there are."""
    for name, value in (("batch_size", batch_size), ("chunk_batches", chunk_batches)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    batch_size = min(int(batch_size), n)
    return batch_size, min(batch_size * int(chunk_batches), n)


def _batches(chunk: int, chunk_rows: int, n: int, batch_size: int) -> list[np.ndarray]:
    rows = np.arange(chunk * chunk_rows, min((chunk + 1) * chunk_rows, n))
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def _open_group(
    job: _Job,
    store: FeatureStore,
    dataset_id: str,
    ids: list[str],
    overwrite: bool | Collection[str],
    keep_raw: bool,
    chunk_rows: int,
    n_chunks: int,
    precision: str,
    batch_size: int,
    dev: torch.device,
) -> None:
    """Find what is left to do for one model: its group's pending chunks (all, if none)."""
    spec = job.spec
    if overwrite is True or (not isinstance(overwrite, bool) and spec.id in overwrite):
        store.delete(dataset_id, spec.id)
    writer = store.writer(dataset_id, spec.id, ids)
    if writer is not None and writer.complete:
        log.debug("%s on %s: features already stored", spec.id, dataset_id)
        job.status = "skipped"
        return
    if writer is not None and writer.keep_raw != keep_raw:
        raise StoreError(
            f"{spec.id} on {dataset_id}: resuming with keep_raw={keep_raw} but the group was created with {writer.keep_raw}"
        )
    changed = (
        "" if writer is None else _changed(writer, spec, dev, chunk_rows, precision, batch_size)
    )
    if changed:
        # its chunks are not this pass's chunks, or its bits not this pass's bits
        log.info(
            "%s on %s: partial features were stored with another %s; extracting again",
            spec.id,
            dataset_id,
            changed,
        )
        store.delete(dataset_id, spec.id)
        writer = None
    job.writer = writer
    job.pending = set(writer.pending_chunks()) if writer is not None else set(range(n_chunks))


def _changed(
    writer: FeatureWriter,
    spec: ModelSpec,
    dev: torch.device,
    chunk_rows: int,
    precision: str,
    batch_size: int,
) -> str:
    """What a partial group was written with that this pass changes ('' if nothing): rows per
    chunk, batch size, precision, the model spec (its metadata aside: labels, not numbers), the
    device or the numerical packages. Each gives other rows or other bits, and a group resumed
    under them would mix two extractions under the attributes of the first. (The weights'
    content is not in the attributes: the pipeline's stage key fingerprints it.)"""
    attrs = writer.group.attrs
    now = {
        "chunk_rows": chunk_rows,
        "batch_size": batch_size,
        "precision": _precision_attr(precision),
        "model spec": _numbers_spec(spec.to_dict()),
        "device": device_name(dev),
        "package versions": package_versions(),
    }
    stored = {
        **{key: attrs.get(key, now[key]) for key in ("batch_size", "precision", "device")},
        "chunk_rows": writer.chunk_rows,
        "model spec": _numbers_spec(attrs.get("spec", spec.to_dict())),
        "package versions": attrs.get("versions", now["package versions"]),
    }
    return ", ".join(
        key if isinstance(now[key], dict) else f"{key} ({stored[key]!r}, this pass {now[key]!r})"
        for key in now
        if _json(stored[key]) != _json(now[key])
    )


def _numbers_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's fields that make its features (all but ``metadata``)."""
    return {key: value for key, value in spec.items() if key != "metadata"}


def _json(value: Any) -> str:
    """``value`` as the store's attributes keep it (JSON: tuples become lists), for comparison."""
    return json.dumps(value, sort_keys=True, default=str)


def _precision_attr(precision: str) -> str:
    """A group's ``precision`` attribute: the name, and whether the forward ran under autocast."""
    return precision if EXTRACT_PRECISIONS[precision] is None else f"{precision} (autocast)"


def _build(
    job: _Job,
    load: Callable[[ModelSpec], LoadedModel],
    dev: torch.device,
    precision: str,
    batch_size: int,
) -> int:
    """Build one model's runner on the device (and its group's attributes); its size in bytes."""
    job.loaded = load(job.spec)
    job.runner = _Runner(job.loaded, job.spec, dev, precision)  # validates the layer
    if job.attrs is None:
        job.attrs = {
            "spec": job.spec.to_dict(),
            "pretrained_cfg": job.loaded.pretrained_cfg,
            "layer": job.runner.extractor.layer,
            "token": job.runner.extractor.token,
            "versions": package_versions(),
            "device": device_name(dev),
            "precision": _precision_attr(precision),
            "batch_size": batch_size,
        }
    return module_bytes(job.loaded.module)


def _release(job: _Job, dev: torch.device) -> None:
    """Let a model go from the device (a cached LoadedModel keeps it in host memory)."""
    if job.loaded is not None and dev.type == "cuda":
        job.loaded.module.to("cpu")
    job.loaded, job.runner = None, None


def _run_chunk(
    job: _Job,
    chunk: int,
    batches: list[Any],
    store: FeatureStore,
    dataset_id: str,
    ids: list[str],
    keep_raw: bool,
    chunk_rows: int,
    load: Callable[[ModelSpec], LoadedModel],
    dev: torch.device,
    precision: str,
    batch_size: int,
) -> None:
    """One model on one decoded chunk: features of every batch, written, chunk flagged done."""
    if job.runner is None:
        _build(job, load, dev, precision, batch_size)
    t0 = time.perf_counter()
    normed, raw = [], []
    for imgs in batches:
        a, b = job.runner(imgs)
        normed.append(a)
        raw.append(b)
    feats = np.concatenate(normed)
    _check_finite(feats, job.spec.id, dataset_id, ids[chunk * chunk_rows :], precision)
    if job.writer is None:
        job.writer = store.create(
            dataset_id,
            job.spec.id,
            ids,
            feats.shape[1],
            chunk_rows=chunk_rows,
            attrs=job.attrs,
            keep_raw=keep_raw,
        )
    job.writer.write_chunk(chunk, feats, np.concatenate(raw) if keep_raw else None)
    job.pending.discard(chunk)
    job.computed += len(feats)
    job.seconds += time.perf_counter() - t0


def _check_finite(
    feats: np.ndarray, model: str, dataset: str, ids: Sequence[str], precision: str
) -> None:
    """ModelError when a model gives NaN or inf features: never written, since the store marks
    missing rows with NaN (a NaN feature would read as a missing chunk, and be kept)."""
    bad = np.flatnonzero(~np.isfinite(feats).all(axis=1))
    if bad.size == 0:
        return
    overflow = "" if precision == "float32" else f", an overflow in {precision} (try float32)"
    raise ModelError(
        f"model {model!r} gives NaN or infinite features for {bad.size} of {len(feats)} images of "
        f"dataset {dataset!r} (first {ids[int(bad[0])]!r}); they come from the model: NaN in its "
        f"weights, a preprocess that divides by 0 (std: 0){overflow}; check the weights file "
        "and preprocess: in the config"
    )


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
    workers: int | None = None,
) -> dict[str, Any]:
    """Extract ``spec``'s features of ``images`` into ``store`` under ``(dataset_id, spec.id)``.

    :func:`extract_models` with one model (the same code: per-model extraction of several models
    decodes every image once per model, chunk-major extraction once).

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

    Returns a summary dict (``status`` "done" or "skipped", ``n``, ``computed``, ``seconds`` (wall),
    ``img_per_s``, ``decoded``, ``decode_seconds``).
    """
    load = None if loaded is None else (lambda _spec: loaded)
    out = extract_models(
        [spec],
        images,
        ids,
        store,
        dataset_id,
        load=load,
        pretrained=pretrained,
        batch_size=batch_size,
        chunk_batches=chunk_batches,
        device=device,
        keep_raw=keep_raw,
        overwrite=overwrite,
        progress=progress,
        precision=precision,
        workers=workers,
    )
    stats = out["models"][spec.id]
    if stats["status"] == "skipped":
        return {
            "model": spec.id,
            "dataset": dataset_id,
            "status": "skipped",
            "n": stats["n"],
            "decoded": 0,
        }
    seconds = out["seconds"]
    return {
        **stats,
        "seconds": seconds,
        "img_per_s": stats["computed"] / seconds if seconds > 0 else float("nan"),
        "decoded": out["decoded"],
        "decode_seconds": out["decode_seconds"],
    }
