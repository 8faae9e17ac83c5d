"""``repsim run``: the whole study for one config, as a dask task graph over a run folder.

Stages: stimuli per dataset -> decode per dataset -> features per (model, dataset) -> similarity
per dataset and probes per (model, dataset) -> consistency, the controlled tests (crossed zoos
only) and result files. Each task is cached and verified by content (:mod:`repsim.stages`), so a
rerun skips finished work, an interrupted run resumes where it stopped, and a damaged cache is
recomputed task by task. The same graph runs in-process, on a LocalCluster, on a running
scheduler, or on SLURM/PBS (:mod:`repsim.scheduler`).

The run folder (:class:`repsim.runfolder.RunFolder`) is locked for the whole run, and always
holds the result files of one config: a rerun with another config removes the old result files
once its datasets have opened and passed their checks (a run refused by them leaves the folder's
results as they are), rewrites all of them, and at the end removes cached features and parts of
models and datasets that the new config does not have.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from dask import delayed

from repsim import __version__, interrupts, stages
from repsim.cache import stage_key
from repsim.device import resolve_device
from repsim.errors import (
    ConfigError,
    DatasetError,
    NoSpaceError,
    RepsimError,
    RunFailedError,
)
from repsim.fingerprint import code_fingerprint, weights_fingerprint
from repsim.plan import UNKNOWN_DIM_BOUND, RunPlan, load_plan
from repsim.progress import TaskProgress, task_cost
from repsim.results import (
    CONTROLLED_TESTS_OPTIONS,
    assemble_probes,
    assemble_similarity,
    format_timings,
    run_consistency,
    run_controlled_tests,
    summary_table,
)
from repsim.runfolder import (
    RunFolder,
    RunFolderError,
    describe_os_error,
    filesystem_errors,
    sha256_file,
    unsafe_names,
)
from repsim.runinfo import git_commit, machine_info, package_versions
from repsim.scheduler import (
    check_scheduler,
    dask_scheduler,
    is_synchronous,
    pool_workers,
    process_map,
)
from repsim.stimuli.subset import PROBE_CLASSES_FIX, PROBE_SPLIT_FIX, probe_split_problem
from repsim.tasks import Guarded, TaskFailure, failure_report, failures

log = logging.getLogger(__name__)

#: The stages reported in run.json and the summary, in order (``repsim book`` reports "book").
STAGES = ("stimuli", "decode", "features", "similarity", "probes", "consistency", "stats")
#: From this many probe tasks to compute on, an in-process CPU run trains them on one
#: single-threaded worker process per core (below it, starting processes costs more than it gains).
PROBE_POOL_MIN_TASKS = 32


@dataclass
class RunResult:
    """Paths of a finished run's files and its printed summary."""

    run_dir: Path
    similarity: Path
    consistency: Path | None
    probes: Path | None
    info: Path
    summary: str

    def __str__(self) -> str:
        return self.summary


def config_hash(plan: RunPlan) -> str:
    """Hash of everything in a plan that determines the result files: the specs without the places
    of their files (:func:`repsim.stages.dataset_identity`, :func:`repsim.stages.model_identity`)
    and the content at those places (the data fingerprints, taken once per plan, and the local
    weights' hashes). A project moved elsewhere is the same config; a config pointed at other
    data, or data or weights changed where they are, is another one, so the folder's old results
    are removed before the new run's work rather than read as current while it runs."""
    stages.fingerprint_data(plan)
    return stage_key(
        [stages.model_identity(m) for m in plan.models],
        [stages.dataset_identity(d) for d in plan.datasets],
        [plan.data_fingerprints[d.id] for d in plan.datasets],
        [_weights_content(m) for m in plan.models],
        plan.measures,
        plan.stimuli,
        plan.extract,
        plan.probe,
        plan.similarity_inputs,
        plan.threads,
    )


def _weights_content(model: Any) -> str | None:
    """:func:`repsim.stages.weights_content` for :func:`config_hash`; weights that cannot be read
    now are named so, since a failed run still records its config hash."""
    try:
        return stages.weights_content(model)
    except (OSError, RepsimError) as exc:
        return f"unreadable: {type(exc).__name__}"


def run(
    config: str | Path,
    out: str | Path,
    *,
    scheduler: str = "synchronous",
    cluster: str | None = None,
    device: str | None = None,
) -> RunResult:
    """Run a config end to end into ``out`` (created; an existing run folder is resumed).

    Parameters
    ----------
    config : path of the YAML config (models, datasets, measures, options).
    out : run folder; finished, verified stages found there are reused. A folder that holds another
        config's results is updated: every result file is rewritten for this config.
    scheduler : ``synchronous`` (in-process), ``local:N`` (N worker processes) or ``tcp://HOST:PORT``.
    cluster : ``slurm`` or ``pbs`` to start workers through dask-jobqueue.
    device : ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the default: cuda when available).

    On a CPU with 2+ cores an in-process run trains its probes on spawned worker processes
    (:func:`_run_probe_pool`), which import the calling script: a script that calls ``run``
    needs the usual ``if __name__ == "__main__":`` guard (the ``repsim`` command, notebooks
    and tests need nothing).

    Raises
    ------
    RunFailedError : some tasks failed (each listed with model, dataset, exception); the rest is kept.
    RunFolderError : the folder cannot be used (not writable, a file, disk full, another run in it).
    RepsimError : the config, a model, its weights, a dataset's files, the device or scheduler
        was refused before any work; run.json in ``out`` records the cause
        (:meth:`RunFolder.record_refusal`).
    """
    folder = RunFolder(out)
    folder.preflight()
    folder.check_not_in_use()
    try:
        # before the plan builds and checks every model (64 of them, with download checks, for
        # the study's config): a mistyped --device or --scheduler costs a second, not minutes
        device = str(resolve_device(device))
        if cluster is None:
            check_scheduler(scheduler)
        plan = load_plan(config)
        if cluster is not None:  # its options (jobs) are in the config
            check_scheduler(scheduler, cluster, plan.raw.get("cluster"))
    except RepsimError as exc:
        _record_refusal(folder, config, exc)
        raise
    folder.create()
    with folder.lock():
        try:  # before any work: a refusal, which leaves the folder's results as they are
            _check_own_folders(plan, folder)
            # once, before the plan is sent to any worker: a data file that cannot be read is
            # refused, not found after another config's results were removed
            stages.fingerprint_data(plan)
        except RepsimError as exc:
            _record_refusal(folder, config, exc, held=True)
            raise
        # the config of the results the folder holds: a stop removes them when they are another's
        results_config = folder.read_manifest().get("config_hash")
        try:
            try:
                return _run_locked(plan, folder, device, scheduler, cluster)
            except OSError as exc:  # outside the tasks, which name their own; read or write
                where = None if exc.filename or exc.filename2 else folder.path
                raise RunFolderError(describe_os_error(exc, where, "access")) from exc
        except RunFailedError:
            raise
        except _Refused as refused:  # the datasets' checks, after their stimulus stage
            _record_refusal(folder, config, refused.error, held=True)
            raise refused.error from refused.error.__cause__
        except Exception as exc:  # a RepsimError, or a bug: either way run.json must say so
            _record_abort(plan, folder, exc, results_config=results_config)
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM under the repsim command
            _record_abort(plan, folder, exc, status="interrupted", results_config=results_config)
            raise


def _record_refusal(
    folder: RunFolder, config: str | Path, exc: RepsimError, held: bool = False
) -> None:
    """A run refused by its checks (config, ids, weights, data, device, scheduler, a folder of the
    run linked into another) before any work: run.json names the cause
    (:meth:`RunFolder.record_refusal`; ``held``: under the folder's lock). Best effort: the error
    being raised is the one to report, not a failure to record it."""
    try:
        folder.record_refusal(config, f"{type(exc).__name__}: {exc}", held=held)
    except (OSError, RepsimError) as again:
        log.warning("could not record the refusal in %s (%s)", folder.info, again)


def _record_start(plan: RunPlan, folder: RunFolder) -> None:
    """run.json says a run of this config is under way, once the results of another are gone: a
    run killed outright (SIGKILL, the machine going down) records nothing more, and the folder's
    record went on naming the old config as finished."""
    info = _short_record(plan, "running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    folder.write_json(folder.info, _strip_private(info))


def _short_record(plan: RunPlan, status: str, **fields: Any) -> dict[str, Any]:
    """run.json of a run that has not finished (running, failed, interrupted): the config it
    runs, under its name, path and hash, and ``fields``."""
    return {
        "name": plan.name,
        "status": status,
        "config_path": plan.config_path,
        "config_hash": config_hash(plan),
        "config": plan.raw,
        **fields,
    }


def _record_abort(
    plan: RunPlan,
    folder: RunFolder,
    exc: BaseException,
    status: str = "failed",
    *,
    results_config: str | None = None,
) -> str | None:
    """A run stopped outside its tasks (a folder that cannot be written, a result that cannot be
    computed, an interrupt): run.json says so and names the cause, and the manifest goes, so no
    reader takes the files left from an earlier run for this one (an interrupted rerun with another
    config left run.json saying "finished" with the old config); so do the result files of another
    config, when the run stopped before it removed them (``results_config``: the config hash of
    the results the folder held when the run started, None for none; not the manifest's now,
    which the run removes before it replaces a result file). Best effort: the disk may be the
    cause, so it returns why run.json could not be written (None when it was).

    An interrupted rerun of the same config whose manifest still vouches for every result file
    (it is removed before one is replaced, :func:`_write_results`) keeps the finished run
    readable: its run.json gains an ``interrupted`` entry (:meth:`RunFolder.record_interruption`).
    A Ctrl-C during a no-op rerun made the book refuse the results until the next run."""
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        error = "interrupted; finished stages are kept and rerunning the same command resumes"
    info = _short_record(
        plan, status, failed_tasks=[], error=error, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z")
    )
    kept = status == "interrupted" and folder.results_vouched(info["config_hash"])
    if kept and _stage_outputs_kept(plan, folder):
        try:
            if folder.record_interruption(plan.config_path, error, held=True):
                return None
        except (OSError, RepsimError) as again:
            log.warning("could not record the interruption in %s (%s)", folder.info, again)
            if folder.results_vouched(info["config_hash"]):  # nothing was written
                return str(again)
    try:
        if results_config != info["config_hash"]:
            folder.remove_results(f"the run of config {plan.name} stopped: {status}")
        folder.remove(folder.manifest_path)
    except (OSError, RepsimError) as again:  # run.json is still tried: it says which files
        log.warning("could not remove the results of %s (%s)", folder.path, again)
    try:
        folder.write_json(folder.info, _strip_private(info))
    except (OSError, RepsimError) as again:
        log.warning("could not record the failure in %s (%s)", folder.info, again)
        return str(again)
    return None


class _Refused(Exception):
    """A check of the opened datasets failed before any feature was extracted: :func:`run`
    records ``error`` as a refusal, leaving the folder's results and record as they are."""

    def __init__(self, error: RepsimError):
        super().__init__(str(error))
        self.error = error


def _run_locked(
    plan: RunPlan, folder: RunFolder, device: str, scheduler: str, cluster: str | None
) -> RunResult:
    run_dir = folder.path
    chash = config_hash(plan)
    previous = folder.read_manifest()
    # the stimulus stage may replace the tables the folder's results were computed from: a refusal
    # after it puts them back
    kept_tables = folder.result_tables(previous)
    t_start = time.perf_counter()
    log.info(
        "run %s: %d models x %d datasets, measures %s, device %s, scheduler %s",
        plan.name,
        len(plan.models),
        len(plan.datasets),
        ", ".join(plan.measures),
        device,
        cluster or scheduler,
    )

    plan = dataclasses.replace(plan, device_type=device.split(":")[0])  # in the stage keys
    probe_pool = _probe_pool_possible(plan, device, scheduler, cluster)
    wall: dict[str, float] = {}
    with dask_scheduler(scheduler, cluster, plan.raw.get("cluster")) as compute_kw:
        stim_info = dask.compute(
            *[
                _task(stages.run_stimuli, f"stimuli-{ds.id}", dataset=ds.id)(plan, ds, run_dir)
                for ds in plan.datasets
            ],
            **compute_kw,
        )
        try:  # a refusal: nothing is decoded for features and the folder's results stay
            # every dataset is opened by its stimulus stage: one that cannot be read, or that
            # cannot be probed, stops the run here
            _check_datasets_opened(plan, folder, stim_info)
            # measures against the exact similarity subsets
            plan.check_stimulus_counts(
                {
                    d.id: int(i["n_similarity"])
                    for d, i in zip(plan.datasets, stim_info)
                    if isinstance(i, dict)
                }
            )
            graph = _analysis_graph(
                plan, run_dir, device, stim_info, probes_in_graph=not probe_pool
            )
            _check_free_space(plan, folder, stim_info, graph["pending"])
        except (DatasetError, ConfigError, NoSpaceError) as exc:  # a folder fault is an abort
            folder.put_back(kept_tables)
            raise _Refused(exc) from exc
        kept_tables.clear()  # not held for the hours of a study-sized run
        interrupts.check()  # a Ctrl-C a finaliser swallowed stops the run here, not unnoticed
        if previous.get("config_hash") != chash:
            why = "another config" if previous.get("config_hash") else "no complete run recorded"
            folder.remove_results(f"{why}: they are rebuilt for config {plan.name} ({chash})")
            _record_start(plan, folder)
        t0 = time.perf_counter()
        with TaskProgress(f"run {plan.name}", graph["cost"]):
            (decoded, feats, sims, probes) = dask.compute(
                graph["decode"],
                graph["features"],
                graph["similarity"],
                graph["probes"],
                **compute_kw,
            )
        if probe_pool:
            wall["features and similarity"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            probes, workers = _run_probe_pool(plan, run_dir, device, graph["probe_specs"], feats)
            wall["probes"] = time.perf_counter() - t0
            if workers > 1:
                wall["probe_workers"] = workers

    outcome = {
        "stimuli": dict(zip([d.id for d in plan.datasets], stim_info)),
        "decode": decoded,
        "features": feats,
        "similarity": sims,
        "probes": probes,
    }
    interrupts.check()
    timings, rate, redone = _timings(outcome)
    parallel = _parallel_note(wall, timings)
    failed = failures([r for group in outcome.values() for r in group.values()])
    if failed:
        return _fail(
            plan,
            folder,
            device,
            cluster or scheduler,
            outcome,
            timings,
            rate,
            redone,
            failed,
            t_start,
        )

    inputs = _result_inputs(plan, folder)
    current = _results_current(folder, chash, inputs)
    if current is not None:  # nothing changed since the result files were written: keep them
        skipped, cons_failure = list(current.get("skipped", [])), None
        for name, path in folder.result_paths().items():
            if name not in current.get("files", {}) and path.exists():
                folder.remove(path)
                log.info("removed %s: this run did not write it", path)
        result = _existing_result(folder, plan)
    else:
        result, skipped, cons_failure = _write_results(plan, folder, stim_info, probes, timings)
    result.summary = result.summary + "\n\n" + format_timings(timings, rate) + parallel
    if cons_failure is not None:
        return _fail(
            plan,
            folder,
            device,
            cluster or scheduler,
            outcome,
            timings,
            rate,
            redone,
            [cons_failure],
            t_start,
        )
    timings["total"] = time.perf_counter() - t_start
    interrupts.check()  # never "finished" after an interrupt
    _write_run_info(
        plan,
        folder,
        device,
        cluster or scheduler,
        outcome,
        timings,
        rate,
        redone,
        skipped=skipped,
        status="finished",
        wall=wall,
    )
    _write_manifest(plan, folder, chash, inputs, skipped)
    _prune(plan, folder)
    log.info("run %s finished in %.1f s; results in %s", plan.name, timings["total"], run_dir)
    return result


def _check_free_space(
    plan: RunPlan, folder: RunFolder, stim_info: tuple, pending: dict[str, list[Any]]
) -> None:
    """NoSpaceError before any image is decoded when the features still to extract (``pending``:
    the models per dataset whose features are not cached) will not fit on the run folder's disk.

    Only the feature store is counted: stimulus tables, similarity parts and result files are
    kilobytes to megabytes. A group left half-written by an interrupted run is counted whole.
    """
    n_rows = "n_total" if plan.probes_enabled else "n_similarity"
    rows = {
        d.id: int(i[n_rows])
        for d, i in zip(plan.datasets, stim_info)
        if isinstance(i, dict) and n_rows in i
    }
    needed = plan.feature_bytes(rows, pending)
    if not needed:
        return
    n_groups = sum(map(len, pending.values()))
    guessed = sorted({m.id for ms in pending.values() for m in ms if not plan.feature_dim(m)[1]})
    what = f"the features of {n_groups} model-dataset pair(s)"
    if guessed:
        what += (
            f" (feature width of {', '.join(guessed[:3])}{', ...' if len(guessed) > 3 else ''} "
            f"unknown: {UNKNOWN_DIM_BOUND} assumed)"
        )
    folder.check_free_space(needed, what, estimate=bool(guessed))


#: the errors of a task that could not write into the run folder (:func:`filesystem_errors`)
_FOLDER_ERRORS = {cls.__name__ for cls in (RunFolderError, NoSpaceError)}


def _check_datasets_opened(plan: RunPlan, folder: RunFolder, stim_info: tuple) -> None:
    """DatasetError naming every dataset whose stimulus table could not be made, and, with probes
    on, every dataset without both a train and a test split to fit and score a probe on, with
    fewer than 2 classes in its train split, or with test classes its train split lacks (the
    probe stage failed on those after the features were extracted). RunFolderError instead when
    a table could not be written: the folder is at fault, not the dataset."""
    failed = failures([i for i in stim_info if isinstance(i, TaskFailure)])
    in_folder = [f for f in failed if f.exc_type in _FOLDER_ERRORS]
    if in_folder:
        raise RunFolderError(
            "the run folder could not be written, so nothing was extracted:\n  "
            + failure_report(in_folder)
        )
    if failed:
        raise DatasetError(
            "datasets could not be opened, so nothing was extracted:\n  "
            + failure_report(failed)
            + "\nFix the dataset entries (check them with `repsim datasets --config "
            f"{shlex.quote(plan.config_path)} --check`) and rerun."
        )
    if not plan.probes_enabled:
        return
    problems = [
        probe_split_problem(ds.id, table["split"], table["label"])
        for ds in plan.datasets
        for table in [stages.read_stimuli(folder.path, ds)]
    ]
    missing = [why for kind, why in filter(None, problems) if kind == "split"]
    classes = [why for kind, why in filter(None, problems) if kind == "classes"]
    if missing:
        raise DatasetError(
            "linear probes need a train and a test split on every dataset: "
            + "; ".join(missing)
            + PROBE_SPLIT_FIX
        )
    if classes:
        raise DatasetError(
            "linear probes cannot be fitted and scored on every dataset: "
            + "; ".join(classes)
            + PROBE_CLASSES_FIX
        )


def _fail(
    plan: RunPlan,
    folder: RunFolder,
    device: str,
    scheduler: str,
    outcome: dict,
    timings: dict,
    rate: float | None,
    redone: list[str],
    failed: list[TaskFailure],
    t_start: float,
) -> RunResult:
    """Record the failures in run.json (no result files: they would be incomplete) and raise."""
    timings["total"] = time.perf_counter() - t_start
    n_failed = sum(not f.skipped for f in failed)
    what = (
        f"{n_failed} task(s) failed and {len(failed) - n_failed} were skipped because they needed "
        f"them:\n  {failure_report(failed)}"
    )
    try:
        folder.remove_results("the run did not finish")
        _write_run_info(
            plan,
            folder,
            device,
            scheduler,
            outcome,
            timings,
            rate,
            redone,
            failed=failed,
            status="failed",
        )
    except (OSError, RepsimError) as exc:
        # a full disk is often why the tasks failed: the failures must not be lost with the
        # record (the message named only run.json, and the short record listed no task)
        short = _record_abort(plan, folder, RunFailedError(what))
        where = (
            "run.json holds these failures in short"
            if short is None
            else f"nor could run.json in short ({short}): this message is the only record"
        )
        raise RunFailedError(
            f"{what}\nThe full record could not be written ({exc}); {where}. Fix the cause and "
            "rerun the same command to do only what is missing."
        ) from exc
    raise RunFailedError(
        f"{what}\nEverything else finished and is kept in {folder.path} (run.json lists the "
        "failures); fix the cause and rerun the same command to do only what is missing."
    )


def _task(func: Any, name: str, *, model: str | None = None, dataset: str | None = None) -> Any:
    """A delayed, failure-tolerant task with a readable key."""

    def call(*args: Any) -> Any:
        guarded = Guarded(func, name, model=model, dataset=dataset)
        return delayed(guarded, pure=False)(*args, dask_key_name=name)

    return call


def _analysis_graph(
    plan: RunPlan, run_dir: Path, device: str, stim_info: tuple, *, probes_in_graph: bool = True
) -> dict[str, dict]:
    """Delayed tasks: decode once per dataset, extract per (model, dataset) whose cached features
    do not verify, then similarity per dataset and probes per (model, dataset).

    Without ``probes_in_graph`` the probe tasks are left out of the graph and described in
    ``graph["probe_specs"]`` (key -> model, dataset, hash of the rows probed) for :func:`_run_probe_pool`.
    ``graph["cost"]``: the expected cost of the tasks that do work, by key, for the progress bar."""
    graph: dict[str, dict] = {
        "pending": {},
        "decode": {},
        "features": {},
        "similarity": {},
        "probes": {},
        "probe_specs": {},
        "cost": {},
    }
    for ds, info in zip(plan.datasets, stim_info):
        if isinstance(info, TaskFailure):
            continue
        sha = info.get("sha256")
        # features and probes are keyed by the rows they read, similarity by the whole table
        table = stages.read_stimuli(run_dir, ds)
        ids = stages.extraction_ids(plan, table)
        feature_rows = stages.rows_sha(ids)
        probe_rows = stages.rows_sha(stages.probe_rows(table))
        del table
        pending = {}
        for m in plan.models:
            ok, why = stages.check_features(plan, m, ds, run_dir, feature_rows)
            if not ok:
                pending[m.id] = (m, why)
        feature_tasks = {}
        graph["pending"][ds.id] = [m for m, _ in pending.values()]
        if pending:
            graph["cost"][f"extract-{ds.id}"] = task_cost(len(pending), len(ids))
            images = _task(stages.decode_task, f"decode-{ds.id}", dataset=ds.id)(
                plan, ds, run_dir, ids
            )
            # chunk-major: one task decodes each image once and runs every pending model on it
            extracted = _task(stages.run_dataset_features, f"extract-{ds.id}", dataset=ds.id)(
                plan,
                [m for m, _ in pending.values()],
                ds,
                run_dir,
                images,
                ids,
                device,
                feature_rows,
                {mid: why for mid, (_, why) in pending.items()},
            )
            # the status (not the images) comes back to this process; a failed decode comes back as is
            graph["decode"][ds.id] = delayed(_decode_status, pure=False)(
                images, extracted, dask_key_name=f"decode-status-{ds.id}"
            )
            for mid in pending:
                feature_tasks[mid] = _task(
                    stages.pick_features, f"features-{ds.id}-{mid}", model=mid, dataset=ds.id
                )(extracted, mid)
                graph["features"][f"{mid}\t{ds.id}"] = feature_tasks[mid]
        n_images = int(info.get("n_similarity", 0))
        graph["cost"][f"similarity-{ds.id}"] = task_cost(len(plan.models), n_images)
        graph["similarity"][ds.id] = _task(
            stages.run_similarity, f"similarity-{ds.id}", dataset=ds.id
        )(plan, ds, run_dir, device, sha, *feature_tasks.values())
        if plan.probes_enabled and not probes_in_graph:
            for m in plan.models:
                graph["probe_specs"][f"{m.id}\t{ds.id}"] = (m, ds, probe_rows)
        elif plan.probes_enabled:
            for m in plan.models:
                graph["cost"][f"probe-{ds.id}-{m.id}"] = task_cost(1, int(info.get("n_total", 0)))
                upstream = [feature_tasks[m.id]] if m.id in feature_tasks else []
                graph["probes"][f"{m.id}\t{ds.id}"] = _task(
                    stages.run_probe, f"probe-{ds.id}-{m.id}", model=m.id, dataset=ds.id
                )(plan, m, ds, run_dir, device, probe_rows, *upstream)
    return graph


def _probe_pool_possible(plan: RunPlan, device: str, scheduler: str, cluster: str | None) -> bool:
    """Whether probes may run on a process pool: an in-process run on a CPU with 2+ cores.

    Other schedulers spread the probe tasks over their own workers; on a GPU one process keeps
    the device busy.
    """
    return (
        plan.probes_enabled
        and is_synchronous(scheduler, cluster)
        and str(device).startswith("cpu")
        and (os.cpu_count() or 1) >= 2
    )


def _run_probe_pool(
    plan: RunPlan, run_dir: Path, device: str, specs: dict[str, tuple], feats: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """Probe tasks after extraction: cached ones here, the rest on one process per core.

    Each probe is a small problem (thousands of rows, a few hundred dims) whose matmuls keep one
    core busy but not two, so N single-threaded processes train N probes at the speed of one.
    Each process runs with ``plan.threads`` torch threads when the config fixes them, else one;
    the results are the same as in-process (shown on the embedded run's probes.nc). Returns the
    results by task key and the number of worker processes used.
    """
    from repsim.cache import StageCache

    cache = StageCache(run_dir)
    calls, keys, done = [], [], {}
    for key, (m, ds, rows) in specs.items():
        upstream = [feats[key]] if key in feats else []
        guarded = Guarded(stages.run_probe, f"probe-{ds.id}-{m.id}", model=m.id, dataset=ds.id)
        args = (plan, m, ds, run_dir, device, rows, *upstream)
        ok, _ = cache.check(
            "probes",
            (ds.id, m.id),
            stages.probe_key(plan, m, ds, run_dir, rows),
            RunFolder(run_dir).probe_part(ds.id, m.id),
        )
        if ok or any(isinstance(u, TaskFailure) for u in upstream):
            done[key] = guarded(*args)  # cached or skipped: nothing to compute
        else:
            calls.append((guarded, args))
            keys.append(key)
    workers = pool_workers(len(calls), PROBE_POOL_MIN_TASKS)
    if workers > 1:
        log.info("probes: %d tasks on %d worker processes", len(calls), workers)
    from tqdm import tqdm

    # shown in a log too, as the run's bar is: the probes are minutes of a run with nothing else
    # printed (disable=None hid it from `make run > log`)
    with tqdm(total=len(calls), desc="probes", unit="task", delay=2.0) as bar:
        results = process_map(calls, workers, plan.threads or 1, lambda _: bar.update())
    done.update(zip(keys, results))
    return {key: done[key] for key in specs}, workers


def _parallel_note(wall: dict[str, float], timings: dict[str, float]) -> str:
    """The end-of-run line on stages that ran in parallel: wall time against summed task time."""
    workers = int(wall.get("probe_workers", 1))
    if workers <= 1 or "probes" not in wall:
        return ""
    return (
        f"\nProbes ran on {workers} worker processes: {wall['probes']:.1f} s wall for "
        f"{timings.get('probes', 0.0):.1f} s of task time."
    )


def _decode_status(decoded: Any, extracted: Any = None) -> Any:
    return decoded if isinstance(decoded, TaskFailure) else stages.decode_status(decoded, extracted)


def _timings(outcome: dict[str, dict]) -> tuple[dict[str, float], float | None, list[str]]:
    """Seconds per stage (summed over its tasks, this run only), extraction images/s, what was redone."""
    timings = {stage: 0.0 for stage in STAGES}
    redone = []
    for stage, results in outcome.items():
        for name, res in results.items():
            if isinstance(res, dict):
                timings[stage] += float(res.get("seconds", 0.0) or 0.0)
                if res.get("redone"):
                    redone.append(f"{stage} {name.replace(chr(9), ' on ')}: {res['redone']}")
    feats = [r for r in outcome["features"].values() if isinstance(r, dict)]
    computed = sum(int(r.get("computed", 0)) for r in feats)
    seconds = sum(float(r.get("extract_seconds", 0.0)) for r in feats)
    rate = computed / seconds if computed and seconds > 0 else None
    return timings, rate, redone


def _write_results(
    plan: RunPlan,
    folder: RunFolder,
    stim_info: tuple,
    probe_results: dict,
    timings: dict[str, float],
) -> tuple[RunResult, list[str], TaskFailure | None]:
    parts = stages.read_similarity_parts(plan, folder.path)
    sim = assemble_similarity(plan, parts, [int(i["n_similarity"]) for i in stim_info])
    # the result files are replaced from here on: the manifest no longer vouches for them (a
    # stop before this point leaves the finished run readable, see _record_abort)
    folder.remove(folder.manifest_path)
    folder.write_netcdf(sim, folder.similarity)

    skipped: list[str] = []
    cons, failure = None, None
    t0 = time.perf_counter()
    try:
        cons, skipped = run_consistency(sim)
    except Exception as exc:  # noqa: BLE001 - reported like any failed task
        failure = Guarded(lambda: None, "consistency", stage="consistency")._failure(exc)
        log.error("consistency failed: %s: %s", type(exc).__name__, exc)
    timings["consistency"] = time.perf_counter() - t0
    if cons is not None:
        cons.attrs.update(run=plan.name, config=plan.config_path)
        folder.write_netcdf(cons, folder.consistency)
    else:
        folder.remove(folder.consistency)

    t0 = time.perf_counter()
    tests, tests_skipped = run_controlled_tests(sim)
    timings["stats"] = time.perf_counter() - t0
    skipped += tests_skipped
    if tests is not None:
        folder.write_text(folder.controlled_tests, tests.to_csv(index=False))
    else:
        folder.remove(folder.controlled_tests)

    probes = None
    if plan.probes_enabled and probe_results:
        keyed = {tuple(k.split("\t")): v for k, v in probe_results.items()}
        probes = assemble_probes(plan, keyed)
        folder.write_netcdf(probes, folder.probes)
    else:
        folder.remove(folder.probes)
        skipped.append("probes.nc: probes are off in this config (probe.enabled: false)")

    for line in skipped:
        log.info("left out: %s", line)
    unreadable = {ds.id: len(i.get("skipped", [])) for ds, i in zip(plan.datasets, stim_info)}
    summary = summary_table(sim, cons, probes, skipped, unreadable)
    if tests is not None:
        from repsim.stats import answer

        headline = answer(tests)
        summary += f"\n\nControlled experiment ({folder.controlled_tests.name}):\n  {headline}"
    folder.write_text(folder.summary, summary + "\n")
    result = RunResult(
        folder.path,
        folder.similarity,
        folder.consistency if cons is not None else None,
        folder.probes if probes is not None else None,
        folder.info,
        summary,
    )
    return result, skipped, failure


def _existing_result(folder: RunFolder, plan: RunPlan) -> RunResult:
    summary = folder.summary.read_text().rstrip("\n") if folder.summary.is_file() else ""
    return RunResult(
        folder.path,
        folder.similarity,
        folder.consistency if folder.consistency.is_file() else None,
        folder.probes if folder.probes.is_file() else None,
        folder.info,
        summary,
    )


def _write_run_info(
    plan: RunPlan,
    folder: RunFolder,
    device: str,
    scheduler: str,
    outcome: dict,
    timings: dict[str, float],
    rate: float | None,
    redone: list[str],
    *,
    skipped: list[str] | None = None,
    failed: list[TaskFailure] | None = None,
    status: str,
    wall: dict[str, float] | None = None,
) -> None:
    stim = {k: v for k, v in outcome["stimuli"].items() if isinstance(v, dict)}
    info = {
        "name": plan.name,
        "status": status,
        "config_path": plan.config_path,
        "config_hash": config_hash(plan),
        "config": plan.raw,
        "models": [m.id for m in plan.models],
        "weights": _weights_record(plan),
        "datasets": [d.id for d in plan.datasets],
        "measures": list(plan.measures),
        "versions": package_versions(),
        "code_version": _code_version(),
        "git_commit": git_commit(),
        "device": device,
        "machine": machine_info(device),
        "scheduler": scheduler,
        "timings_s": timings,
        "wall_s": {k: v for k, v in (wall or {}).items() if k != "probe_workers"},
        "probe_workers": int((wall or {}).get("probe_workers", 1)),
        "images_per_s": rate,
        # each dataset's skipped items are listed once, under "skipped" (the unreadable ones
        # among them, and the key of that verdict, are the stage record's own)
        "stimuli": {
            d: {k: v for k, v in i.items() if k not in _STIMULI_RECORD_ONLY}
            for d, i in stim.items()
        },
        "skipped": {d: i.get("skipped", []) for d, i in stim.items()},
        "skipped_analyses": list(skipped or []),
        "redone": redone,
        "failed_tasks": [f.to_dict() for f in failed or []],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    folder.write_json(folder.info, _strip_private(info))


def _weights_record(plan: RunPlan) -> dict[str, dict[str, str | None]]:
    """Each local weights file the run used, with its SHA-256, so a reader can tell whether a
    manifest beside it (the mini-zoo's) describes these files."""
    from repsim.zoo.weights import local_weights_file

    record = {}
    for m in plan.models:
        path = local_weights_file(m)
        if path is None or not Path(path).is_file():
            continue
        p = Path(path).resolve()
        record[m.id] = {"path": str(p), "sha256": weights_fingerprint(p)}
    return record


def _code_version() -> str:
    commit = git_commit()
    return f"repsim {__version__}" + (f" ({commit})" if commit else "")


def _result_inputs(plan: RunPlan, folder: RunFolder) -> dict[str, Any]:
    """Content hashes of everything the result files are built from (parts, tables, features),
    the run's name and config path they record, the package's code and the libraries'
    versions."""
    inputs: dict[str, Any] = {}
    for ds in plan.datasets:
        inputs[f"stimuli {ds.id}"] = sha256_file(folder.stimuli(ds.id))
        inputs[f"similarity part {ds.id}"] = sha256_file(folder.similarity_part(ds.id))
        if plan.probes_enabled:
            for m in plan.models:
                inputs[f"probe part {ds.id}/{m.id}"] = sha256_file(folder.probe_part(ds.id, m.id))
    for key, sha in _feature_hashes(plan, folder).items():
        inputs[f"features {key}"] = sha
    inputs["controlled tests options"] = dict(CONTROLLED_TESTS_OPTIONS)
    # the files name their run and config, and other code may compute them differently
    inputs["run name"], inputs["config path"] = plan.name, plan.config_path
    inputs["code"] = code_fingerprint()
    # and the libraries that compute them (scipy's tests, pandas' and xarray's reductions): an
    # upgrade kept result files built by the old versions when the parts were unchanged
    inputs["versions"] = package_versions(("numpy", "scipy", "pandas", "xarray", "h5netcdf"))
    return inputs


#: What a stimulus stage's result holds that run.json's ``stimuli`` leaves out.
_STIMULI_RECORD_ONLY = ("cached", "redone", "skipped", "unreadable", "verified")

#: The entries of a manifest's ``inputs`` that stage outputs fill (:func:`_result_inputs`).
_STAGE_INPUTS = ("stimuli ", "similarity part ", "probe part ", "features ")


def _stage_outputs_kept(plan: RunPlan, folder: RunFolder) -> bool:
    """Whether every stage output the result files were built from is still the one the manifest
    recorded: each stimulus table, similarity and probe part by its content, each feature group
    by its seal (read, not recomputed). An interrupted rerun that replaced one (new code that
    extracted a group again) must not leave the old results vouched for beside it: the chapters
    read the features too."""
    from repsim.store import FeatureStore

    recorded = folder.read_manifest().get("inputs", {})
    store = FeatureStore(folder.features)
    try:
        now = _result_inputs(plan, folder)
        for ds in plan.datasets:
            for m in plan.models:
                now[f"features {ds.id}/{m.id}"] = store.attrs(ds.id, m.id).get("sha256")
    except (OSError, RepsimError):  # a missing part or group was replaced, or is being
        return False
    stage_keys = {k for k in (*recorded, *now) if k.startswith(_STAGE_INPUTS)}
    return all(recorded.get(k) == now.get(k) for k in stage_keys)


def _results_current(
    folder: RunFolder, chash: str, inputs: dict[str, Any]
) -> dict[str, Any] | None:
    """The manifest when the result files on disk were built from exactly these inputs and verify.

    Every result file must be listed or named as left out (a ``skipped`` line ``<file>: why``):
    a manifest that lost an entry would otherwise have that file removed as one the run did not
    write, and the run would finish without it."""
    manifest = folder.read_manifest()
    if manifest.get("config_hash") != chash or manifest.get("inputs") != inputs:
        return None
    files, skipped = manifest.get("files", {}), [str(s) for s in manifest.get("skipped", [])]
    for name in folder.result_paths():
        if name not in files and not any(s.startswith(f"{name}:") for s in skipped):
            return None
    for name, entry in files.items():
        path = folder.path / name
        if name != folder.info.name and (
            not path.is_file() or sha256_file(path) != entry.get("sha256")
        ):
            return None
    return manifest


def _write_manifest(
    plan: RunPlan, folder: RunFolder, chash: str, inputs: dict[str, Any], skipped: list[str]
) -> None:
    """Record what produced each result file; written last, so it is the commit point of a run."""
    files = {}
    for path in (*folder.result_paths().values(), folder.info):
        if path.is_file():
            files[path.name] = {"sha256": sha256_file(path)}
    manifest = {
        "config_hash": chash,
        "config": plan.name,
        "config_path": plan.config_path,
        "code_version": _code_version(),
        "inputs": inputs,
        "skipped": skipped,
        "files": files,
    }
    folder.write_manifest(manifest)


def _feature_hashes(plan: RunPlan, folder: RunFolder) -> dict[str, Any]:
    out = {}
    for ds in plan.datasets:
        for mid, sha in stages.feature_hashes(plan, ds, folder.path).items():
            out[f"{ds.id}/{mid}"] = sha
    return out


def _stale(plan: RunPlan, folder: RunFolder) -> list[Path]:
    """Cached features, records and parts of models or datasets this config does not have."""
    return folder.stale_cache(
        [m.id for m in plan.models], [d.id for d in plan.datasets], probes=plan.probes_enabled
    )


def _check_own_folders(plan: RunPlan, folder: RunFolder) -> None:
    """RunFolderError before any work when a folder of the run is a link into another folder
    (:meth:`RunFolder.check_own_folders`; the prune at the end would remove cached work
    there), or a top-level folder kept elsewhere is another run's
    (:meth:`RunFolder.claim_linked_entries`)."""
    with filesystem_errors(folder.path, "read"):
        folder.claim_linked_entries()
        folder.check_own_folders(leaving=_stale(plan, folder))


def _prune(plan: RunPlan, folder: RunFolder) -> None:
    """Remove cached features, records and parts of models or datasets this config does not have."""
    stale = _stale(plan, folder)
    if not stale:
        return
    with filesystem_errors(folder.path, "clean"):
        for path in stale:
            folder.remove(path)
    log.info(
        "removed cached work of models/datasets not in config %s: %s",
        plan.name,
        ", ".join(sorted(set(unsafe_names(stale)))),
    )


def _strip_private(value: Any) -> Any:
    """``value`` without the keys starting with ``_`` at any depth (the plan's own notes in the
    config, never written to run.json)."""
    if isinstance(value, dict):
        return {k: _strip_private(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_strip_private(v) for v in value]
    return value
