"""The stages of a run, each a function of files written by the stage before it.

Every stage checks its cache marker first (:mod:`repsim.cache`) and returns at once when its output
is up to date, so the same graph serves a first run, a resumed run and a no-op rerun. Outputs are
written atomically; a marker is written only after its output is complete.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from repsim.cache import StageCache, atomic_write_text, stage_key
from repsim.plan import RunPlan, file_fingerprint

log = logging.getLogger(__name__)

FEATURES = "features.zarr"


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


# ----------------------------------------------------------------------------- keys
def stimuli_key(plan: RunPlan, ds: Any) -> str:
    return stage_key("stimuli", ds, plan.stimuli)


def features_key(plan: RunPlan, model: Any, ds: Any) -> str:
    return stage_key(
        "features", model, file_fingerprint(getattr(model, "weights", None)), stimuli_key(plan, ds),
        plan.probes_enabled, plan.extract.get("keep_raw", False), plan.extract.get("pretrained", True),
    )


def similarity_key(plan: RunPlan, ds: Any) -> str:
    feats = [features_key(plan, m, ds) for m in plan.models]
    return stage_key("similarity", feats, plan.measures, plan.similarity)


def probe_key(plan: RunPlan, model: Any, ds: Any) -> str:
    return stage_key("probe", features_key(plan, model, ds), plan.probe)


# ----------------------------------------------------------------------------- stimuli
def stimuli_path(run_dir: Path, ds: Any) -> Path:
    return run_dir / "stimuli" / f"{ds.id.replace('/', '__')}.csv"


def run_stimuli(plan: RunPlan, ds: Any, run_dir: Path) -> dict[str, Any]:
    """Write the stimulus table (ids, labels, split, in_similarity) of one dataset, once per run."""
    from repsim.stimuli import stimulus_table

    cache, key, path = StageCache(run_dir), stimuli_key(plan, ds), stimuli_path(run_dir, ds)
    if cache.is_done("stimuli", ds.id, key) and path.is_file():
        return cache.info("stimuli", ds.id)
    t0 = time.perf_counter()
    table = stimulus_table(ds)  # the spec carries the subset rules (max_images, per_class, seed)
    atomic_write_text(path, table.to_csv(index=False))
    skipped = [list(map(str, s)) for s in table.attrs.get("skipped", [])]
    info = {
        "n_total": int(len(table)),
        "n_similarity": int(table["in_similarity"].sum()),
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
    }
    cache.mark_done("stimuli", ds.id, key, **info)
    return info


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
        log.info("%s: %d images, decoded per model on demand (extract.max_decoded)", ds.id, len(positions))
        return LazyImages(ds, positions)
    return stimset.load_images(positions)


_LAST_MODEL: dict[str, Any] = {}


def _loaded_model(spec: Any, device: str, pretrained: bool = True) -> Any:
    """Keep the last model in memory: consecutive datasets of one model reuse it."""
    from repsim.zoo import load_model

    key = stage_key(spec, device, pretrained)
    if key not in _LAST_MODEL:
        _LAST_MODEL.clear()
        _LAST_MODEL[key] = load_model(spec, pretrained=pretrained, device=device)
    return _LAST_MODEL[key]


@_fixed_threads
def run_features(
    plan: RunPlan, model: Any, ds: Any, run_dir: Path, images: Any, ids: np.ndarray, device: str
) -> dict[str, Any]:
    """Extract one model's features on one dataset into the run's feature store."""
    from repsim.extract import extract_features
    from repsim.store import FeatureStore

    name = f"{ds.id}/{model.id}"
    cache, key = StageCache(run_dir), features_key(plan, model, ds)
    store = FeatureStore(run_dir / FEATURES)
    if cache.is_done("features", name, key) and store.has(ds.id, model.id):
        return cache.info("features", name)
    t0 = time.perf_counter()
    # A partial group from an interrupted extraction with the same inputs resumes; anything else
    # found there (other weights, other stimuli) is stale and is recomputed.
    resume = cache.info("features-started", name).get("key") == key
    cache.mark_done("features-started", name, key)
    extract_features(
        model,
        images,
        ids,
        store,
        ds.id,
        loaded=_loaded_model(model, device, bool(plan.extract.get("pretrained", True))),
        batch_size=int(plan.extract.get("batch_size", 256)),
        device=device,
        keep_raw=bool(plan.extract.get("keep_raw", False)),
        overwrite=not resume,
    )
    info = {"n": int(len(ids)), "seconds": time.perf_counter() - t0}
    cache.mark_done("features", name, key, **info)
    return info


# ----------------------------------------------------------------------------- similarity
def similarity_part_path(run_dir: Path, ds: Any) -> Path:
    return run_dir / ".stages" / "similarity" / f"{ds.id.replace('/', '__')}.nc"


@_fixed_threads
def run_similarity(plan: RunPlan, ds: Any, run_dir: Path, device: str, *_upstream: Any) -> str:
    """All measures for all model pairs on one dataset's similarity stimuli."""
    from repsim.measures import similarity_matrices
    from repsim.store import FeatureStore, write_netcdf_atomic

    cache, key, path = StageCache(run_dir), similarity_key(plan, ds), similarity_part_path(run_dir, ds)
    if cache.is_done("similarity", ds.id, key) and path.is_file():
        return str(path)
    t0 = time.perf_counter()
    table = read_stimuli(run_dir, ds)
    ids = table.loc[table["in_similarity"], "id"].to_numpy(dtype=str)
    store = FeatureStore(run_dir / FEATURES)
    features = {m.id: store.read(ds.id, m.id, ids)[1] for m in plan.models}
    # A fixed budget (not "half the free memory") keeps the blocking, and so the last bits of
    # every number, the same from run to run and from one scheduler to another.
    options = {"memory_budget_gb": 40.0 if device.startswith("cuda") else 6.0, **plan.similarity}
    sims = similarity_matrices(features, plan.measures, device=device, **options)
    write_netcdf_atomic(sims, path)
    cache.mark_done("similarity", ds.id, key, n=int(len(ids)), seconds=time.perf_counter() - t0)
    return str(path)


# ----------------------------------------------------------------------------- probes
def probe_part_path(run_dir: Path, ds: Any, model: Any) -> Path:
    return run_dir / ".stages" / "probes" / ds.id.replace("/", "__") / f"{model.id}.json"


@_fixed_threads
def run_probe(plan: RunPlan, model: Any, ds: Any, run_dir: Path, device: str, *_upstream: Any) -> dict[str, Any]:
    """Linear probe of one model on one dataset (train split -> test split)."""
    from repsim.probe import linear_probe
    from repsim.store import FeatureStore

    name = f"{ds.id}/{model.id}"
    cache, key, path = StageCache(run_dir), probe_key(plan, model, ds), probe_part_path(run_dir, ds, model)
    if cache.is_done("probes", name, key) and path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    table = read_stimuli(run_dir, ds)
    store = FeatureStore(run_dir / FEATURES)
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    _, x_train = store.read(ds.id, model.id, train["id"].to_numpy(dtype=str))
    _, x_test = store.read(ds.id, model.id, test["id"].to_numpy(dtype=str))
    options = {k: v for k, v in plan.probe.items() if k != "enabled"}
    result = linear_probe(
        x_train, train["label"].to_numpy(), x_test, test["label"].to_numpy(), device=device, **options
    )
    out = {
        "accuracy": [float(a) for a in result.accuracy],
        "balanced_accuracy": [float(a) for a in result.balanced_accuracy],
        "seeds": [int(s) for s in result.seeds],
        "lr": [float(v) for v in np.atleast_1d(result.lr)],
        "wd": [float(v) for v in np.atleast_1d(result.wd)],
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(path, json.dumps(out))
    cache.mark_done("probes", name, key, seconds=out["seconds"])
    return out


def read_similarity_parts(plan: RunPlan, run_dir: Path) -> list[xr.Dataset]:
    return [xr.load_dataset(similarity_part_path(run_dir, ds)) for ds in plan.datasets]
