"""The stages of a run, each a function of files written by the stage before it.

Every stage checks its record first (:class:`repsim.cache.StageCache`) and returns at once when its
inputs are unchanged *and* its output's content still hashes to the recorded value, so the same
graph serves a first run, a resumed run, a no-op rerun and a run over a damaged cache. A stage's
key includes the content hashes of what it reads (the stimulus table, the feature groups), so a
recomputed upstream file that came out different recomputes everything after it, and one that came
out the same recomputes nothing. Outputs are written atomically through :class:`RunFolder`; a
record is written only after its output is complete. Each task that redoes cached work says so
and why in one log line.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from repsim.cache import StageCache, stage_key
from repsim.plan import RunPlan, file_fingerprint
from repsim.runfolder import RunFolder

log = logging.getLogger(__name__)


def _fixed_threads(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a stage with the config's ``threads`` torch threads, when it sets them.

    Float reductions depend on how work is split across threads; fixing the count makes an
    in-process run and a run on worker processes agree bit for bit.
    """

    @functools.wraps(func)
    def wrapper(plan: RunPlan, *args: Any, **kwargs: Any) -> Any:
        if not plan.threads:
            return func(plan, *args, **kwargs)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(plan.threads)
        try:
            return func(plan, *args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


def _redo(stage: str, name: str, why: str) -> str | None:
    """Log one line when cached work is redone (not for work never done); the reason or None."""
    if why == "not done yet":
        return None
    log.info("%s %s recomputed: %s", stage, name, why)
    return why


# ----------------------------------------------------------------------------- keys
def stimuli_key(plan: RunPlan, ds: Any) -> str:
    return stage_key("stimuli", ds, plan.stimuli)


def features_key(plan: RunPlan, model: Any, ds: Any, stimuli_sha: str | None = None) -> str:
    """Inputs of one feature group: the model spec and weights, the stimulus table's content."""
    return stage_key(
        "features",
        model,
        file_fingerprint(getattr(model, "weights", None)),
        stimuli_key(plan, ds),
        stimuli_sha,
        plan.probes_enabled,
        plan.extract.get("keep_raw", False),
        plan.extract.get("pretrained", True),
        plan.extract.get("precision", "float32"),
    )


def feature_hashes(plan: RunPlan, ds: Any, run_dir: Path) -> dict[str, str | None]:
    """Content hash of each model's feature group on ``ds``, as recorded when it was sealed."""
    cache = StageCache(run_dir)
    return {m.id: cache.info("features", f"{ds.id}/{m.id}").get("sha256") for m in plan.models}


def similarity_key(plan: RunPlan, ds: Any, run_dir: Path, stimuli_sha: str | None = None) -> str:
    return stage_key(
        "similarity", feature_hashes(plan, ds, run_dir), stimuli_sha, plan.measures, plan.similarity
    )


def probe_key(
    plan: RunPlan, model: Any, ds: Any, run_dir: Path, stimuli_sha: str | None = None
) -> str:
    sha = StageCache(run_dir).info("features", f"{ds.id}/{model.id}").get("sha256")
    return stage_key("probe", sha, stimuli_sha, plan.probe)


# ----------------------------------------------------------------------------- stimuli
def stimuli_path(run_dir: Path, ds: Any) -> Path:
    return RunFolder(run_dir).stimuli(ds.id)


def run_stimuli(plan: RunPlan, ds: Any, run_dir: Path) -> dict[str, Any]:
    """Write the stimulus table (ids, labels, split, in_similarity) of one dataset, once per run."""
    from repsim.stimuli import stimulus_table

    folder = RunFolder(run_dir)
    cache, key, path = StageCache(folder), stimuli_key(plan, ds), folder.stimuli(ds.id)
    ok, why = cache.check("stimuli", ds.id, key, path)
    if ok:
        return {**cache.info("stimuli", ds.id), "seconds": 0.0, "cached": True, "redone": None}
    redone = _redo("stimuli", ds.id, why)
    t0 = time.perf_counter()
    table = stimulus_table(ds)  # the spec carries the subset rules (max_images, per_class, seed)
    sha = folder.write_text(path, table.to_csv(index=False))
    skipped = [list(map(str, s)) for s in table.attrs.get("skipped", [])]
    info = {
        "n_total": int(len(table)),
        "n_similarity": int(table["in_similarity"].sum()),
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
        "sha256": sha,
    }
    cache.mark_done("stimuli", ds.id, key, **info)
    return {**info, "cached": False, "redone": redone}


def read_stimuli(run_dir: Path, ds: Any) -> pd.DataFrame:
    table = pd.read_csv(stimuli_path(run_dir, ds), dtype={"id": str})
    table["in_similarity"] = table["in_similarity"].astype(bool)
    return table


def extraction_ids(plan: RunPlan, table: pd.DataFrame) -> np.ndarray:
    """Similarity stimuli always; the whole train and test splits too when probes are on."""
    rows = table if plan.probes_enabled else table[table["in_similarity"]]
    return rows["id"].to_numpy(dtype=str)


# ----------------------------------------------------------------------------- features
class LazyImages:
    """Images of one dataset decoded on demand, for datasets too large to hold decoded in memory.

    Picklable (it holds the spec and row positions, not the data), so a worker process opens the
    dataset itself; extraction calls it with batch indices, as it would slice a decoded array.
    """

    def __init__(self, ds: Any, positions: np.ndarray):
        self.ds, self.positions, self._stimset = ds, positions, None

    def __call__(self, indices: np.ndarray) -> Any:
        if self._stimset is None:
            from repsim.stimuli import open_dataset

            self._stimset = open_dataset(self.ds)
        return self._stimset.load_images(self.positions[np.asarray(indices)])

    def __getstate__(self) -> dict[str, Any]:
        return {"ds": self.ds, "positions": self.positions, "_stimset": None}


@dataclass
class Decoded:
    """A dataset's decoded images (or a :class:`LazyImages`), with the time decoding took."""

    images: Any
    n: int
    seconds: float

    def status(self) -> dict[str, Any]:
        """What the run reports about this decode task (the images stay with the workers)."""
        return {"n": self.n, "seconds": self.seconds, "lazy": isinstance(self.images, LazyImages)}


def decode_status(decoded: Decoded) -> dict[str, Any]:
    return decoded.status()


def decode_images(plan: RunPlan, ds: Any, run_dir: Path, ids: np.ndarray) -> Any:
    """Decode a dataset's images once (uint8), to be shared by every model's extraction.

    Above ``extract.max_decoded`` images (default 20,000: about 4 GB at 224 px) holding them decoded
    would exhaust memory, so each model's extraction decodes them on demand instead.
    """
    from repsim.stimuli import open_dataset

    stimset = open_dataset(ds)
    index = pd.Series(np.arange(len(stimset.ids)), index=np.asarray(stimset.ids, dtype=str))
    positions = index.reindex(ids)
    if positions.isna().any():
        from repsim.errors import DatasetError

        bad = list(positions[positions.isna()].index[:5])
        raise DatasetError(
            f"dataset {ds.id}: stimulus ids {bad} of the run's stimulus table are no longer in the data; "
            f"the dataset changed since the table was written — delete {stimuli_path(run_dir, ds)} to redo it"
        )
    positions = positions.to_numpy(dtype=int)
    if len(positions) > int(plan.extract.get("max_decoded", 20000)):
        log.info(
            "%s: %d images, decoded per model on demand (extract.max_decoded)",
            ds.id,
            len(positions),
        )
        return LazyImages(ds, positions)
    return stimset.load_images(positions)


def decode_task(plan: RunPlan, ds: Any, run_dir: Path, ids: np.ndarray) -> Decoded:
    """:func:`decode_images`, timed (the run reports decode time separately from extraction)."""
    t0 = time.perf_counter()
    images = decode_images(plan, ds, run_dir, ids)
    return Decoded(images, int(len(ids)), time.perf_counter() - t0)


_LAST_MODEL: dict[str, Any] = {}


def _loaded_model(spec: Any, device: str, pretrained: bool = True) -> Any:
    """Keep the last model in memory: consecutive datasets of one model reuse it."""
    from repsim.zoo import load_model

    key = stage_key(spec, device, pretrained)
    if key not in _LAST_MODEL:
        _LAST_MODEL.clear()
        _LAST_MODEL[key] = load_model(spec, pretrained=pretrained, device=device)
    return _LAST_MODEL[key]


def check_features(
    plan: RunPlan, model: Any, ds: Any, run_dir: Path, stimuli_sha: str | None
) -> tuple[bool, str]:
    """Whether the feature group of ``model`` on ``ds`` can be reused: same inputs, same content.

    Reads the whole group to hash it: a deleted chunk, a flipped byte or a damaged ``zarr.json``
    all make it differ from the hash recorded when the group was sealed.
    """
    from repsim.store import FeatureStore

    folder = RunFolder(run_dir)
    store = FeatureStore(folder.features)
    key = features_key(plan, model, ds, stimuli_sha)
    return StageCache(folder).check(
        "features", f"{ds.id}/{model.id}", key, content_hash=lambda: store.checksum(ds.id, model.id)
    )


@_fixed_threads
def run_features(
    plan: RunPlan,
    model: Any,
    ds: Any,
    run_dir: Path,
    images: Any,
    ids: np.ndarray,
    device: str,
    stimuli_sha: str | None = None,
    why: str = "not done yet",
) -> dict[str, Any]:
    """Extract one model's features on one dataset into the run's feature store, then seal them.

    Called only for groups that :func:`check_features` found unusable (``why``). A group left
    half-written by an interrupted extraction with the same inputs resumes from its last complete
    chunk; anything else there (other inputs, damaged content) is deleted and extracted again.
    """
    from repsim.errors import StoreError
    from repsim.extract import extract_features
    from repsim.store import FeatureStore

    name = f"{ds.id}/{model.id}"
    folder = RunFolder(run_dir)
    cache, key = StageCache(folder), features_key(plan, model, ds, stimuli_sha)
    store = FeatureStore(folder.features)
    images = images.images if isinstance(images, Decoded) else images
    redone = _redo("features", name, why)
    t0 = time.perf_counter()
    try:
        sealed = "sha256" in store.attrs(ds.id, model.id)
    except StoreError:
        sealed = True  # missing or unreadable: nothing to resume
    resume = cache.info("features-started", name).get("key") == key and not sealed
    cache.mark_done("features-started", name, key)

    def extract(overwrite: bool) -> dict[str, Any]:
        return extract_features(
            model,
            images,
            ids,
            store,
            ds.id,
            loaded=_loaded_model(model, device, bool(plan.extract.get("pretrained", True))),
            batch_size=int(plan.extract.get("batch_size", 256)),
            device=device,
            keep_raw=bool(plan.extract.get("keep_raw", False)),
            overwrite=overwrite,
            precision=str(plan.extract.get("precision", "float32")),
        )

    try:
        stats = extract(overwrite=not resume)
    except StoreError:
        if not resume:
            raise
        stats = extract(overwrite=True)  # the partial group does not fit these inputs
    if resume:
        try:
            store.read(ds.id, model.id)
        except StoreError as exc:  # a chunk of the partial group was damaged: start over
            log.info("features %s recomputed from scratch: %s", name, exc)
            stats = extract(overwrite=True)
    sha = store.seal(ds.id, model.id)
    computed = int(stats.get("computed", 0))
    info = {
        "n": int(len(ids)),
        "computed": computed,
        "seconds": time.perf_counter() - t0,
        "extract_seconds": float(stats.get("seconds", 0.0)),
        "sha256": sha,
    }
    cache.mark_done("features", name, key, **info)
    return {**info, "cached": False, "redone": redone}


# ----------------------------------------------------------------------------- similarity
def similarity_part_path(run_dir: Path, ds: Any) -> Path:
    return RunFolder(run_dir).similarity_part(ds.id)


@_fixed_threads
def run_similarity(
    plan: RunPlan,
    ds: Any,
    run_dir: Path,
    device: str,
    stimuli_sha: str | None = None,
    *_upstream: Any,
) -> dict[str, Any]:
    """All measures for all model pairs on one dataset's similarity stimuli."""
    from repsim.measures import similarity_matrices
    from repsim.store import FeatureStore

    folder = RunFolder(run_dir)
    cache, path = StageCache(folder), folder.similarity_part(ds.id)
    key = similarity_key(plan, ds, run_dir, stimuli_sha)
    ok, why = cache.check("similarity", ds.id, key, path)
    if ok:
        return {"part": str(path), "seconds": 0.0, "cached": True, "redone": None}
    redone = _redo("similarity", ds.id, why)
    t0 = time.perf_counter()
    table = read_stimuli(run_dir, ds)
    ids = table.loc[table["in_similarity"], "id"].to_numpy(dtype=str)
    store = FeatureStore(folder.features)
    features = {m.id: store.read(ds.id, m.id, ids)[1] for m in plan.models}
    # A fixed budget (not "half the free memory") keeps the blocking, and so the last bits of
    # every number, the same from run to run and from one scheduler to another.
    options = {"memory_budget_gb": 40.0 if device.startswith("cuda") else 6.0, **plan.similarity}
    sims = similarity_matrices(features, plan.measures, device=device, **options)
    sha = folder.write_netcdf(sims, path)
    seconds = time.perf_counter() - t0
    cache.mark_done("similarity", ds.id, key, n=int(len(ids)), seconds=seconds, sha256=sha)
    return {"part": str(path), "seconds": seconds, "cached": False, "redone": redone}


# ----------------------------------------------------------------------------- probes
def probe_part_path(run_dir: Path, ds: Any, model: Any) -> Path:
    return RunFolder(run_dir).probe_part(ds.id, model.id)


@_fixed_threads
def run_probe(
    plan: RunPlan,
    model: Any,
    ds: Any,
    run_dir: Path,
    device: str,
    stimuli_sha: str | None = None,
    *_upstream: Any,
) -> dict[str, Any]:
    """Linear probe of one model on one dataset (train split -> test split)."""
    from repsim.probe import linear_probe
    from repsim.store import FeatureStore

    name = f"{ds.id}/{model.id}"
    folder = RunFolder(run_dir)
    cache, path = StageCache(folder), folder.probe_part(ds.id, model.id)
    key = probe_key(plan, model, ds, run_dir, stimuli_sha)
    ok, why = cache.check("probes", name, key, path)
    if ok:
        return {**json.loads(path.read_text()), "seconds": 0.0, "cached": True, "redone": None}
    redone = _redo("probe", name, why)
    t0 = time.perf_counter()
    table = read_stimuli(run_dir, ds)
    store = FeatureStore(folder.features)
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    _, x_train = store.read(ds.id, model.id, train["id"].to_numpy(dtype=str))
    _, x_test = store.read(ds.id, model.id, test["id"].to_numpy(dtype=str))
    options = {k: v for k, v in plan.probe.items() if k != "enabled"}
    result = linear_probe(
        x_train,
        train["label"].to_numpy(),
        x_test,
        test["label"].to_numpy(),
        device=device,
        **options,
    )
    out = {
        "accuracy": [float(a) for a in result.accuracy],
        "balanced_accuracy": [float(a) for a in result.balanced_accuracy],
        "seeds": [int(s) for s in result.seeds],
        "lr": [float(v) for v in np.atleast_1d(result.lr)],
        "wd": [float(v) for v in np.atleast_1d(result.wd)],
    }
    sha = folder.write_text(path, json.dumps(out))
    seconds = time.perf_counter() - t0
    cache.mark_done("probes", name, key, seconds=seconds, sha256=sha)
    return {**out, "seconds": seconds, "cached": False, "redone": redone}


def read_similarity_parts(plan: RunPlan, run_dir: Path) -> list[xr.Dataset]:
    folder = RunFolder(run_dir)
    return [xr.load_dataset(folder.similarity_part(ds.id)) for ds in plan.datasets]
