"""The stages of a run, each a function of files written by the stage before it.

Every stage checks its record first (:class:`repsim.cache.StageCache`) and returns at once when its
inputs are unchanged *and* its output's content still hashes to the recorded value, so the same
graph serves a first run, a resumed run, a no-op rerun and a run over a damaged cache. A stage's
key includes the content hashes of what it reads (the stimulus table or the rows of it that it
reads, the feature groups), so a
recomputed upstream file that came out different recomputes everything after it, and one that came
out the same recomputes nothing. Outputs are written atomically through :class:`RunFolder`; a
record is written only after its output is complete. Each task that redoes cached work says so
and why in one log line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from repsim.cache import StageCache, stage_key
from repsim.fingerprint import (
    code_fingerprint,
    data_fingerprint,
    file_fingerprint,
    weights_fingerprint,
)
from repsim.plan import RunPlan
from repsim.runfolder import RunFolder
from repsim.runinfo import package_versions
from repsim.zoo.weights import local_weights_file

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
# The code each stage's output depends on: the package's modules that compute it (with what they
# import, see repsim.fingerprint.code_fingerprint) and the libraries whose versions can change
# its numbers. Both are in the stage's key, so a cached output made by other code is redone.
STAGE_CODE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stimuli": (("repsim.stimuli",), ("numpy", "pandas", "pillow", "torchvision")),
    "features": (
        (
            "repsim.extract",
            "repsim.preprocess",
            "repsim.store",
            "repsim.zoo",
            "repsim.minizoo.loader",
            "repsim.stimuli",
        ),
        ("numpy", "pillow", "torch", "torchvision", "timm", "open_clip_torch", "transformers"),
    ),
    "similarity": (("repsim.measures", "repsim.store"), ("numpy", "scipy", "torch")),
    "probes": (("repsim.probe", "repsim.store"), ("numpy", "torch")),
}


def stage_code(stage: str) -> str:
    """Fingerprint of the code behind ``stage``: its modules, the stage definitions in this
    module, and its libraries' versions (:data:`STAGE_CODE`)."""
    modules, libraries = STAGE_CODE[stage]
    return stage_key(
        code_fingerprint(*modules),
        file_fingerprint(__file__),
        package_versions(libraries),
    )


def fingerprint_data(plan: RunPlan) -> None:
    """Take each dataset's data fingerprint into the plan, once per run (see :func:`stimuli_key`
    and :func:`data_key`)."""
    for ds in plan.datasets:
        if ds.id not in plan.data_fingerprints:
            plan.data_fingerprints[ds.id] = data_fingerprint(ds)


def dataset_identity(ds: Any) -> dict[str, Any]:
    """What of a dataset spec the stage keys hold: every field but the places of the files whose
    content the data fingerprint holds (``path``, a user-provided ``root``, option files; see
    ``DatasetSpec.data_paths``) and the config's folder, which only resolved them. A project,
    config or dataset moved elsewhere keeps its stimulus tables and features; other data at the
    same place is new data by its fingerprint. A place with no fingerprint (a URL, a torchvision
    ``root``) stays in the key: it is all that names the data."""
    identity = {f.name: getattr(ds, f.name) for f in fields(ds) if f.name != "config_dir"}
    options = dict(identity.get("options") or {})
    for role in ds.data_paths():
        if role.startswith("options."):
            options.pop(role.removeprefix("options."), None)
        else:
            identity.pop(role, None)
    identity["options"] = options
    return identity


def model_identity(model: Any) -> dict[str, Any]:
    """What of a model spec the stage keys hold: every field but the place of its ``weights:``
    file (always local), whose content :func:`repsim.fingerprint.weights_fingerprint` holds
    beside it, so a project moved elsewhere keeps its features."""
    return {f.name: getattr(model, f.name) for f in fields(model) if f.name != "weights"}


def weights_content(model: Any) -> str | None:
    """The hash of a model's local weights file or folder (:func:`repsim.zoo.weights.local_weights_file`),
    read now, so a file retrained in place is seen; None for weights a loader downloads, which the
    identifier names."""
    return weights_fingerprint(local_weights_file(model))


def stimuli_key(plan: RunPlan, ds: Any) -> str:
    """Inputs of one stimulus table: the dataset spec (:func:`dataset_identity`), the subset rules
    and the data's content (:func:`repsim.fingerprint.data_fingerprint`, taken once per plan), so
    changed images or labels redo the table and everything computed from it."""
    fingerprint_data(plan)
    return stage_key(
        "stimuli",
        dataset_identity(ds),
        plan.stimuli,
        plan.data_fingerprints[ds.id],
        stage_code("stimuli"),
    )


#: The fields of a dataset spec that only choose the similarity subset (config ``stimuli:``).
SUBSET_FIELDS = ("max_images", "per_class", "seed", "split")


def data_key(plan: RunPlan, ds: Any) -> str:
    """The images a dataset's rows are read from: its spec but the subset rules
    (:data:`SUBSET_FIELDS`), and the data's content (:func:`repsim.fingerprint.data_fingerprint`)."""
    fingerprint_data(plan)
    identity = {k: v for k, v in dataset_identity(ds).items() if k not in SUBSET_FIELDS}
    return stage_key("data", identity, plan.data_fingerprints[ds.id])


def verified_key(plan: RunPlan, ds: Any) -> str:
    """What decides which items of a dataset cannot be decoded: its images (:func:`data_key`)
    and the code that decodes them, not the subset rules."""
    return stage_key("verified", data_key(plan, ds), stage_code("stimuli"))


def rows_sha(rows: pd.DataFrame | np.ndarray) -> str:
    """SHA-256 of the stimulus rows one stage reads: the extracted ids (features) or the ids,
    labels and splits (probes). Their keys hold these rather than the whole table's hash, whose
    ``in_similarity`` column changes with the subset rules: with probes on, every row is
    extracted and probed, so another similarity subset (``stimuli.seed``, ``max_images``,
    ``per_class``, ``split``) keeps the features and probes, hours of a GPU at the study's size,
    and recomputes the similarities only."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame({"id": np.asarray(rows)})
    return hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()


def probe_rows(table: pd.DataFrame) -> pd.DataFrame:
    """What a probe reads of the stimulus table: each row's id, label and split."""
    return table[["id", "label", "split"]]


def features_key(plan: RunPlan, model: Any, ds: Any, rows: str | None = None) -> str:
    """Inputs of one feature group: the model spec (:func:`model_identity`) and its weights'
    content, the images (:func:`data_key`) and the rows extracted (``rows``: :func:`rows_sha`
    of :func:`extraction_ids`)."""
    return stage_key(
        "features",
        model_identity(model),
        weights_content(model),
        data_key(plan, ds),
        rows,
        plan.probes_enabled,
        plan.extract.get("keep_raw", False),
        plan.extract.get("pretrained", True),
        plan.extract.get("precision", "float32"),
        plan.numerics(batch=True),
        stage_code("features"),
    )


def feature_hashes(plan: RunPlan, ds: Any, run_dir: Path) -> dict[str, str | None]:
    """Content hash of each model's feature group on ``ds``, as recorded when it was sealed."""
    cache = StageCache(run_dir)
    return {m.id: cache.info("features", (ds.id, m.id)).get("sha256") for m in plan.models}


def similarity_key(plan: RunPlan, ds: Any, run_dir: Path, stimuli_sha: str | None = None) -> str:
    return stage_key(
        "similarity",
        feature_hashes(plan, ds, run_dir),
        stimuli_sha,
        plan.measures,
        plan.similarity_inputs,
        plan.numerics(),
        stage_code("similarity"),
    )


def probe_key(plan: RunPlan, model: Any, ds: Any, run_dir: Path, rows: str | None = None) -> str:
    """Inputs of one probe: its model's feature group (by content), the rows it reads (``rows``:
    :func:`rows_sha` of :func:`probe_rows`) and its options."""
    from repsim.config import ProbeOptions
    from repsim.probe import probe_defaults

    sha = StageCache(run_dir).info("features", (ds.id, model.id)).get("sha256")
    # the options the probe runs with: a default written out (normalize: true) is the same probe
    given, defaults = {k: v for k, v in plan.probe.items() if v is not None}, probe_defaults()
    options = {
        f.name: given.get(f.name, defaults.get(f.name))
        for f in fields(ProbeOptions)
        if f.name != "enabled"
    }
    return stage_key("probe", sha, rows, options, plan.numerics(), stage_code("probes"))


# ----------------------------------------------------------------------------- stimuli
def stimuli_path(run_dir: Path, ds: Any) -> Path:
    return RunFolder(run_dir).stimuli(ds.id)


def run_stimuli(plan: RunPlan, ds: Any, run_dir: Path) -> dict[str, Any]:
    """Write the stimulus table (ids, labels, split, in_similarity) of one dataset, once per run."""
    from repsim.stimuli import stimulus_table

    folder = RunFolder(run_dir)
    cache, key, path = StageCache(folder), stimuli_key(plan, ds), folder.stimuli(ds.id)
    ok, why = cache.check("stimuli", ds.id, key, path, code=stage_code("stimuli"))
    if ok:  # the table verified by its hash: its counts come from it, not from the record
        table = read_stimuli(run_dir, ds)
        counts = {"n_total": int(len(table)), "n_similarity": int(table["in_similarity"].sum())}
        info = {**cache.info("stimuli", ds.id), **counts}
        return {**info, "seconds": 0.0, "cached": True, "redone": None}
    redone = _redo("stimuli", ds.id, why)
    t0 = time.perf_counter()
    # every item is decoded once to find the unreadable ones; that verdict depends on the
    # images and the code only (verified_key), so another subset of the same data reuses it
    verified = verified_key(plan, ds)
    earlier = cache.info("stimuli", ds.id)
    known = earlier.get("unreadable") if earlier.get("verified") == verified else None
    # the spec carries the subset rules (max_images, per_class, seed)
    table = stimulus_table(ds, known_unreadable=known)
    sha = folder.write_text(path, table.to_csv(index=False))
    skipped = [list(map(str, s)) for s in table.attrs.get("skipped", [])]
    info = {
        "n_total": int(len(table)),
        "n_similarity": int(table["in_similarity"].sum()),
        "skipped": skipped,
        "unreadable": [list(map(str, s)) for s in table.attrs.get("unreadable", [])],
        "verified": verified,
        "seconds": time.perf_counter() - t0,
        "sha256": sha,
    }
    cache.mark_done("stimuli", ds.id, key, code=stage_code("stimuli"), **info)
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
    """Images of one dataset, decoded on demand, batch by batch, by chunk-major extraction.

    Picklable (it holds the spec and row positions, not the data), so a worker process opens the
    dataset itself; extraction calls it with batch indices, as it would slice a decoded array.
    """

    def __init__(self, ds: Any, positions: np.ndarray, stimset: Any = None):
        self.ds, self.positions, self._stimset = ds, positions, stimset
        self._lock = threading.Lock()

    def __call__(self, indices: np.ndarray) -> Any:
        with self._lock:  # decode threads share one opened dataset
            if self._stimset is None:
                from repsim.stimuli import open_dataset

                self._stimset = open_dataset(self.ds)
        return self._stimset.load_images(self.positions[np.asarray(indices)])

    def __len__(self) -> int:
        return len(self.positions)

    def __getstate__(self) -> dict[str, Any]:
        return {"ds": self.ds, "positions": self.positions, "_stimset": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@dataclass
class Decoded:
    """A dataset opened for extraction (its :class:`LazyImages`), with the time opening took."""

    images: Any
    n: int
    seconds: float

    def status(self) -> dict[str, Any]:
        """What the run reports about this task (the images stay with the workers)."""
        return {"n": self.n, "seconds": self.seconds, "lazy": isinstance(self.images, LazyImages)}


def decode_status(decoded: Decoded, extracted: Any = None) -> dict[str, Any]:
    """The decode stage of one dataset: opening it, then decoding its images for extraction.

    ``seconds`` is the decode work (summed over decode threads, overlapping the forward passes);
    ``wait_seconds`` the time the forward passes waited for decoded images; ``decoded`` the
    number of images decoded (one per row to extract: chunk-major extraction).
    """
    out = decoded.status()
    if isinstance(extracted, dict) and "decode" in extracted:
        dec = extracted["decode"]
        out.update(
            open_seconds=out["seconds"],
            seconds=out["seconds"] + dec["seconds"],
            wait_seconds=dec["wait_seconds"],
            decoded=dec["decoded"],
            workers=dec["workers"],
        )
    return out


def decode_images(plan: RunPlan, ds: Any, run_dir: Path, ids: np.ndarray) -> LazyImages:
    """The images of a dataset's extraction ids, decoded on demand by chunk-major extraction.

    Nothing is decoded here: extraction decodes each chunk of rows once, for every model
    (:func:`repsim.extract.extract_models`), so no dataset is ever held decoded whole, at any size
    (``extract.max_decoded`` is no longer needed). DatasetError when the table's ids are gone.
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
    return LazyImages(ds, positions.to_numpy(dtype=int), stimset)


def decode_task(plan: RunPlan, ds: Any, run_dir: Path, ids: np.ndarray) -> Decoded:
    """:func:`decode_images`, timed (the run reports decode time separately from extraction)."""
    t0 = time.perf_counter()
    images = decode_images(plan, ds, run_dir, ids)
    return Decoded(images, int(len(ids)), time.perf_counter() - t0)


#: models kept built between tasks of one process, in the order they were built
_MODELS: dict[str, tuple[Any, int]] = {}


def _loaded_model(spec: Any, device: str, pretrained: bool = True) -> Any:
    """Build a model, or reuse the one built for an earlier dataset in this process.

    Models are kept while their sizes add up to :func:`repsim.extract.model_memory_budget`;
    past it the oldest are let go, so a run of many models holds no more than the budget.
    """
    import torch

    from repsim.extract import model_memory_budget, module_bytes
    from repsim.zoo import load_model

    # the weights' content is in the key: a file changed between two runs of one process (a
    # notebook, a long-lived dask worker) was a cache hit, and the "recomputed" features came
    # from the old model
    weights = weights_content(spec) if pretrained else None
    key = stage_key(spec, device, pretrained, weights)
    if key in _MODELS:
        return _MODELS[key][0]
    loaded = load_model(spec, pretrained=pretrained, device=device)
    size = module_bytes(loaded.module)
    budget = model_memory_budget(torch.device(device))
    while _MODELS and sum(s for _, s in _MODELS.values()) + size > budget:
        _MODELS.pop(next(iter(_MODELS)))
    _MODELS[key] = (loaded, size)
    return loaded


def check_features(
    plan: RunPlan, model: Any, ds: Any, run_dir: Path, rows: str | None
) -> tuple[bool, str]:
    """Whether the feature group of ``model`` on ``ds`` can be reused: same inputs, same content.

    Reads the whole group to hash it: a deleted chunk, a flipped byte or a damaged ``zarr.json``
    all make it differ from the hash recorded when the group was sealed; a group that lost its
    seal is sealed again (the book reads a group only by its seal).
    """
    from repsim.store import FeatureStore

    folder = RunFolder(run_dir)
    store = FeatureStore(folder.features)
    key = features_key(plan, model, ds, rows)
    return StageCache(folder).check(
        "features",
        (ds.id, model.id),
        key,
        content_hash=lambda: store.checksum(ds.id, model.id, sealed_only=True),
        code=stage_code("features"),
        present=lambda: store.has(ds.id, model.id),
    )


def features_task_name(ds: Any, model: Any) -> str:
    """The name of one model's features task on one dataset (failures are reported by it)."""
    return f"features-{ds.id}-{model.id}"


@_fixed_threads
def run_dataset_features(
    plan: RunPlan,
    models: list[Any],
    ds: Any,
    run_dir: Path,
    images: Any,
    ids: np.ndarray,
    device: str,
    rows: str | None = None,
    whys: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Extract the features of ``models`` on one dataset chunk-major, then seal each group.

    Each chunk of images is decoded once and run through every model
    (:func:`repsim.extract.extract_models`). Called only for groups that :func:`check_features`
    found unusable (``whys``). Per model, as if it were its own task: a group left half-written by
    an interrupted extraction with the same inputs resumes from its last complete chunk (a damaged
    one starts over), anything else there is deleted and extracted again; a sealed group gets its
    record. A model that fails costs only itself: it is retried once on its own unless the error
    is a RepsimError or a permanent filesystem error (:class:`repsim.tasks.Guarded`), and comes
    back as a :class:`~repsim.tasks.TaskFailure` named ``features-<dataset>-<model>``. A failure
    to decode fails the whole task.

    Returns ``{"models": {id: info or TaskFailure}, "decode": {...}}``.
    """
    from repsim.tasks import Guarded

    images = images.images if isinstance(images, Decoded) else images
    whys = whys or {}
    extractor = _DatasetExtraction(plan, ds, run_dir, images, ids, device, rows)
    results = extractor.run(list(models), {m.id: whys.get(m.id, "not done yet") for m in models})
    out: dict[str, Any] = {}
    for m in models:
        res = results[m.id]
        if isinstance(res, BaseException):  # as its own task would: retried once, or reported
            retry = _Retry(
                res, lambda m=m: extractor.run([m], {m.id: "retried after a failure"})[m.id]
            )
            res = Guarded(
                retry, features_task_name(ds, m), stage="features", model=m.id, dataset=ds.id
            )()
        out[m.id] = res
    return {"models": out, "decode": extractor.decode}


class _Retry:
    """For :class:`~repsim.tasks.Guarded`: the first call raises the pass's failure, the next one
    extracts that model again on its own (so Guarded decides, as for any task, whether to retry)."""

    def __init__(self, failure: BaseException, again: Callable[[], Any]) -> None:
        self.failure, self.again = failure, again

    def __call__(self) -> Any:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        result = self.again()
        if isinstance(result, BaseException):
            raise result
        return result


class _DatasetExtraction:
    """The per-model bookkeeping of chunk-major extraction on one dataset (records, resume, seal)."""

    def __init__(
        self,
        plan: RunPlan,
        ds: Any,
        run_dir: Path,
        images: Any,
        ids: np.ndarray,
        device: str,
        rows: str | None,
    ) -> None:
        from repsim.store import FeatureStore

        self.plan, self.ds, self.images, self.ids, self.device = plan, ds, images, ids, device
        self.rows = rows
        self.folder = RunFolder(run_dir)
        self.cache = StageCache(self.folder)
        self.store = FeatureStore(self.folder.features)
        self.decode = {"decoded": 0, "seconds": 0.0, "wait_seconds": 0.0, "workers": 0}

    def _extract(self, models: list[Any], fresh: set[str]) -> dict[str, Any]:
        from repsim.extract import extract_models

        pretrained = bool(self.plan.extract.get("pretrained", True))
        out = extract_models(
            list(models),
            self.images,
            self.ids,
            self.store,
            self.ds.id,
            load=lambda spec: _loaded_model(spec, self.device, pretrained),
            batch_size=int(self.plan.extract.get("batch_size", 256)),
            device=self.device,
            keep_raw=bool(self.plan.extract.get("keep_raw", False)),
            overwrite=fresh,
            precision=str(self.plan.extract.get("precision", "float32")),
            errors="collect",
        )
        self.decode["decoded"] += out["decoded"]
        self.decode["seconds"] += out["decode_seconds"]
        self.decode["wait_seconds"] += out["decode_wait_seconds"]
        self.decode["workers"] = out["workers"]
        return out["models"]

    def run(self, models: list[Any], whys: dict[str, str]) -> dict[str, Any]:
        """Extract, verify and seal ``models``; each model's info dict or its exception."""
        from repsim.errors import StoreError

        t0 = time.perf_counter()
        ds, results, resume, redone, keys = self.ds, {}, {}, {}, {}
        for m in models:
            name = f"{ds.id}/{m.id}"
            keys[m.id] = features_key(self.plan, m, ds, self.rows)
            redone[m.id] = _redo("features", name, whys[m.id])
            try:
                sealed = "sha256" in self.store.attrs(ds.id, m.id)
                checkable = self.store.has_chunk_digests(ds.id, m.id)
            except StoreError:
                sealed, checkable = True, False  # missing or unreadable: nothing to resume
            resume[m.id] = (
                self.cache.info("features-started", (ds.id, m.id)).get("key") == keys[m.id]
                and not sealed
            )
            if resume[m.id] and not checkable:
                # written before chunk checksums were kept: its chunks cannot be verified
                log.info(
                    "features %s recomputed from scratch: its partial group has no chunk "
                    "checksums to verify its written chunks against",
                    name,
                )
                resume[m.id] = False
            self.cache.mark_done("features-started", (ds.id, m.id), keys[m.id])
        todo = list(models)
        # a resumed group's written chunks are checked against their checksums when it is
        # opened (FeatureStore.writer): a damaged one is extracted again with the pending ones
        stats = self._extract(todo, {m.id for m in todo if not resume[m.id]})
        # a partial group that does not fit these inputs (other ids, keep_raw) or whose
        # bookkeeping does not read: start it over
        again = [m for m in todo if resume[m.id] and isinstance(stats[m.id], StoreError)]
        # a resumed group that still does not verify (rows missing, a chunk differing from its
        # checksum): start it over
        for m in todo:
            if resume[m.id] and not isinstance(stats[m.id], BaseException):
                try:
                    self.store.read(ds.id, m.id)
                except StoreError as exc:
                    log.info("features %s/%s recomputed from scratch: %s", ds.id, m.id, exc)
                    again.append(m)
        if again:
            stats.update(self._extract(again, {m.id for m in again}))
        seconds = time.perf_counter() - t0
        for m in models:
            res = stats[m.id]
            if isinstance(res, BaseException):
                results[m.id] = res
                continue
            try:
                sha = self.store.seal(ds.id, m.id)
            except Exception as exc:  # noqa: BLE001 - that model's failure
                results[m.id] = exc
                continue
            info = {
                "n": int(len(self.ids)),
                "computed": int(res.get("computed", 0)),
                "seconds": float(
                    res.get("seconds", 0.0)
                ),  # this model's preprocess + forward + write
                "extract_seconds": float(res.get("seconds", 0.0)),
                "pass_seconds": seconds,
                "sha256": sha,
            }
            self.cache.mark_done(
                "features", (ds.id, m.id), keys[m.id], code=stage_code("features"), **info
            )
            results[m.id] = {**info, "cached": False, "redone": redone[m.id]}
        return results


def pick_features(extracted: dict[str, Any], model_id: str) -> Any:
    """One model's result of :func:`run_dataset_features` (its info, or its TaskFailure)."""
    return extracted["models"][model_id]


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
    ok, why = cache.check("similarity", ds.id, key, path, code=stage_code("similarity"))
    if ok:
        why = unfit_similarity_part(plan, path)
        if why is None:
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
    cache.mark_done(
        "similarity",
        ds.id,
        key,
        code=stage_code("similarity"),
        n=int(len(ids)),
        seconds=seconds,
        sha256=sha,
    )
    return {"part": str(path), "seconds": seconds, "cached": False, "redone": redone}


def unfit_similarity_part(plan: RunPlan, path: Path) -> str | None:
    """Why a similarity part that its record vouches for cannot be reused (it does not read, or
    does not name exactly the run's models and measures), or None.

    The content hash proves only that the part is the file its record names: a record forged or
    rewritten with its part would pass it, and the part, reindexed to the run's models, became a
    NaN model in similarity.nc. It is recomputed like any damaged part.
    """
    from repsim.results import similarity_part_problem

    try:
        part = xr.load_dataset(path)
    except Exception as exc:  # noqa: BLE001 - any read failure means a damaged part
        return f"its part does not read ({exc})"
    problem = similarity_part_problem(plan, part)
    if problem is None:
        return None
    return f"its part does not name exactly the run's models and measures ({problem})"


# ----------------------------------------------------------------------------- probes
def unfit_probe_part(plan: RunPlan, path: Path) -> tuple[dict[str, Any], str | None]:
    """A probe part its record vouches for, and why it cannot be reused (it is not JSON, or does
    not hold what the results read: :func:`repsim.results.probe_part_problem`), or None.

    As for similarity parts (:func:`unfit_similarity_part`), the content hash proves only that
    the part is the file its record names; a forged part is recomputed like a damaged one."""
    from repsim.results import probe_part_problem

    try:
        part = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {}, f"its part does not read ({exc})"
    problem = probe_part_problem(plan, part)
    return part, None if problem is None else f"its part cannot be used ({problem})"


def probe_part_path(run_dir: Path, ds: Any, model: Any) -> Path:
    return RunFolder(run_dir).probe_part(ds.id, model.id)


@_fixed_threads
def run_probe(
    plan: RunPlan,
    model: Any,
    ds: Any,
    run_dir: Path,
    device: str,
    rows: str | None = None,
    *_upstream: Any,
) -> dict[str, Any]:
    """Linear probe of one model on one dataset (train split -> test split)."""
    from repsim.probe import linear_probe, stream_features
    from repsim.store import FeatureStore

    name = f"{ds.id}/{model.id}"
    folder = RunFolder(run_dir)
    cache, path = StageCache(folder), folder.probe_part(ds.id, model.id)
    key = probe_key(plan, model, ds, run_dir, rows)
    ok, why = cache.check("probes", (ds.id, model.id), key, path, code=stage_code("probes"))
    if ok:
        part, why = unfit_probe_part(plan, path)
        if why is None:
            return {**part, "seconds": 0.0, "cached": True, "redone": None}
    redone = _redo("probe", name, why)
    t0 = time.perf_counter()
    table = read_stimuli(run_dir, ds)
    store = FeatureStore(folder.features)
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    options = {k: v for k, v in plan.probe.items() if k != "enabled"}
    options.pop("normalize", None)  # only true is accepted: the stored features are L2-normalised

    def streamed(ids: np.ndarray, name: str) -> Any:
        # one stored chunk at a time into one float32 tensor on the device (verified at the end)
        rows = store.iter_rows(ds.id, model.id, ids)
        return stream_features(rows, len(ids), device=device, normalize=True, name=name)

    result = linear_probe(
        streamed(train["id"].to_numpy(dtype=str), "X_train"),
        train["label"].to_numpy(),
        streamed(test["id"].to_numpy(dtype=str), "X_test"),
        test["label"].to_numpy(),
        device=device,
        normalize=False,  # done by stream_features, row by row as linear_probe would
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
    cache.mark_done(
        "probes", (ds.id, model.id), key, code=stage_code("probes"), seconds=seconds, sha256=sha
    )
    return {**out, "seconds": seconds, "cached": False, "redone": redone}


def read_similarity_parts(plan: RunPlan, run_dir: Path) -> list[xr.Dataset]:
    folder = RunFolder(run_dir)
    return [xr.load_dataset(folder.similarity_part(ds.id)) for ds in plan.datasets]
