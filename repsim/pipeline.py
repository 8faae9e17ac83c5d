"""``repsim run``: the whole study for one config, as a dask task graph over a run folder.

Stages: stimuli per dataset -> features per (model, dataset) -> similarity per dataset and probes
per (model, dataset) -> consistency and result files. Each task is cached (:mod:`repsim.stages`),
so a rerun skips finished work and an interrupted run resumes where it stopped. The same graph
runs in-process, on a LocalCluster, on a running scheduler, or on SLURM/PBS (:mod:`repsim.scheduler`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from dask import delayed

from repsim import stages
from repsim.cache import StageCache, atomic_write_text
from repsim.errors import RepsimError
from repsim.plan import RunPlan, load_plan
from repsim.progress import TaskProgress
from repsim.results import assemble_probes, assemble_similarity, summary_table
from repsim.runinfo import git_commit, machine_info, package_versions, resolve_device
from repsim.scheduler import dask_scheduler
from repsim.tasks import Guarded, TaskFailure, failures

log = logging.getLogger(__name__)


class RunFailedError(RepsimError):
    """Some tasks of a run failed; the others finished and are cached in the run folder."""


@dataclass
class RunResult:
    """Paths of a finished run's files and its printed summary."""

    run_dir: Path
    similarity: Path
    consistency: Path
    probes: Path | None
    info: Path
    summary: str

    def __str__(self) -> str:
        return self.summary


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
    out : run folder; finished stages found there are reused.
    scheduler : ``synchronous`` (in-process), ``local:N`` (N worker processes) or ``tcp://HOST:PORT``.
    cluster : ``slurm`` or ``pbs`` to start workers through dask-jobqueue.
    device : ``cpu`` or ``cuda``; default cuda when available.
    """
    plan = load_plan(config)
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    log.info("run %s: %d models x %d datasets, measures %s, device %s, scheduler %s",
             plan.name, len(plan.models), len(plan.datasets), ", ".join(plan.measures), device,
             cluster or scheduler)

    with dask_scheduler(scheduler, cluster, plan.raw.get("cluster")) as compute_kw:
        t0 = time.perf_counter()
        stim_info = dask.compute(
            *[_task(stages.run_stimuli, f"stimuli-{ds.id}")(plan, ds, run_dir)
              for ds in plan.datasets],
            **compute_kw,
        )
        timings["stimuli"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        sim_tasks, probe_tasks = _analysis_graph(plan, run_dir, device, stim_info)
        with TaskProgress(f"run {plan.name}"):
            sim_paths, probe_results = dask.compute(sim_tasks, probe_tasks, **compute_kw)
        timings["features+similarity+probes"] = time.perf_counter() - t0

    failed = failures([*stim_info, *sim_paths, *probe_results.values()])
    if failed:
        _write_run_info(plan, run_dir, device, cluster or scheduler, stim_info, timings, failed)
        raise RunFailedError(
            f"{sum(not f.skipped for f in failed)} task(s) failed and {sum(f.skipped for f in failed)} "
            "were skipped because they needed them:\n  " + "\n  ".join(map(str, failed))
            + f"\nEverything else finished and is kept in {run_dir}; fix the cause and rerun the same "
            "command to do only what is missing."
        )
    t0 = time.perf_counter()
    result = _write_results(plan, run_dir, stim_info, probe_results)
    timings["consistency+results"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    _write_run_info(plan, run_dir, device, cluster or scheduler, stim_info, timings)
    log.info("run %s finished in %.1f s; results in %s", plan.name, timings["total"], run_dir)
    return result


def _task(func: Any, name: str) -> Any:
    """A delayed, failure-tolerant task with a readable key."""

    def call(*args: Any) -> Any:
        return delayed(Guarded(func, name), pure=False)(*args, dask_key_name=name)

    return call


def _analysis_graph(plan: RunPlan, run_dir: Path, device: str, stim_info: tuple) -> tuple[list, dict]:
    """Delayed tasks: decode once per dataset, extract per (model, dataset), then analyses."""
    cache = StageCache(run_dir)
    sim_tasks: list = []
    probe_tasks: dict[str, Any] = {}
    for ds, info in zip(plan.datasets, stim_info):
        if isinstance(info, TaskFailure):
            continue
        table = stages.read_stimuli(run_dir, ds)
        ids = stages.extraction_ids(plan, table)
        pending = [
            m for m in plan.models
            if not cache.is_done("features", f"{ds.id}/{m.id}", stages.features_key(plan, m, ds))
        ]
        images = None
        if pending:
            images = _task(stages.decode_images, f"decode-{ds.id}")(plan, ds, run_dir, ids)
        feature_tasks = {}
        for m in pending:
            feature_tasks[m.id] = _task(stages.run_features, f"features-{ds.id}-{m.id}")(
                plan, m, ds, run_dir, images, ids, device)
        sim_tasks.append(_task(stages.run_similarity, f"similarity-{ds.id}")(
            plan, ds, run_dir, device, *feature_tasks.values()))
        if plan.probes_enabled:
            for m in plan.models:
                upstream = [feature_tasks[m.id]] if m.id in feature_tasks else []
                probe_tasks[f"{m.id}\t{ds.id}"] = _task(stages.run_probe, f"probe-{ds.id}-{m.id}")(
                    plan, m, ds, run_dir, device, *upstream)
    return sim_tasks, probe_tasks


def _write_results(plan: RunPlan, run_dir: Path, stim_info: tuple, probe_results: dict) -> RunResult:
    from repsim.consistency import consistency_dataset
    from repsim.store import write_netcdf_atomic

    parts = stages.read_similarity_parts(plan, run_dir)
    sim = assemble_similarity(plan, parts, [int(i["n_similarity"]) for i in stim_info])
    write_netcdf_atomic(sim, run_dir / "similarity.nc")

    cons = consistency_dataset(sim)
    cons.attrs.update(run=plan.name, config=plan.config_path)
    write_netcdf_atomic(cons, run_dir / "consistency.nc")

    probes_path = None
    probes = None
    if plan.probes_enabled and probe_results:
        keyed = {tuple(k.split("\t")): v for k, v in probe_results.items()}
        probes = assemble_probes(plan, keyed)
        probes_path = run_dir / "probes.nc"
        write_netcdf_atomic(probes, probes_path)

    summary = summary_table(sim, cons, probes)
    atomic_write_text(run_dir / "summary.txt", summary + "\n")
    return RunResult(run_dir, run_dir / "similarity.nc", run_dir / "consistency.nc", probes_path,
                     run_dir / "run.json", summary)


def _write_run_info(plan: RunPlan, run_dir: Path, device: str, scheduler: str,
                    stim_info: tuple, timings: dict[str, float],
                    failed: list[TaskFailure] | None = None) -> None:
    config = {k: v for k, v in plan.raw.items() if not k.startswith("_")}
    info = {
        "name": plan.name,
        "config_path": plan.config_path,
        "config": config,
        "models": [m.id for m in plan.models],
        "datasets": [d.id for d in plan.datasets],
        "measures": list(plan.measures),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": device,
        "machine": machine_info(device),
        "scheduler": scheduler,
        "timings_s": timings,
        "stimuli": {d.id: i for d, i in zip(plan.datasets, stim_info) if isinstance(i, dict)},
        "skipped": {d.id: i.get("skipped", []) for d, i in zip(plan.datasets, stim_info)
                    if isinstance(i, dict)},
        "failed_tasks": [str(f) for f in failed or []],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(_strip_private(info), indent=1, default=str))


def _strip_private(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_private(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_strip_private(v) for v in value]
    return value
