"""Where the task graph runs: in-process, a LocalCluster, an existing scheduler, or SLURM/PBS.

The core code never reads cluster variables: the scheduler is chosen here from one string
(``synchronous``, ``local:N``, ``tcp://HOST:PORT``) and an optional jobqueue cluster kind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from repsim.errors import ConfigError

log = logging.getLogger(__name__)

# Resources of one jobqueue worker: one GPU, a few cores for decoding, memory for a dataset's images.
JOBQUEUE_DEFAULTS: dict[str, Any] = {
    "cores": 8,
    "processes": 1,
    "memory": "64GB",
    "walltime": "04:00:00",
}


@contextlib.contextmanager
def dask_scheduler(
    scheduler: str = "synchronous",
    cluster: str | None = None,
    cluster_options: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield keyword arguments for ``dask.compute`` that run on the requested scheduler.

    ``synchronous`` runs in this process (debuggable, deterministic); ``local:N`` starts a
    LocalCluster of N single-threaded worker processes; ``tcp://...`` joins a running scheduler;
    ``cluster="slurm"|"pbs"`` starts workers through dask-jobqueue with one GPU each.
    """
    if cluster is not None:
        with _jobqueue_client(cluster, scheduler, cluster_options or {}) as client:
            yield {"scheduler": client}
        return
    if scheduler in ("synchronous", "sync", "single-threaded"):
        yield {"scheduler": "synchronous"}
        return
    if scheduler.startswith("local"):
        n_workers = _parse_local(scheduler)
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as lc,
            Client(lc) as client,
        ):
            log.info("started a LocalCluster with %d worker processes", n_workers)
            yield {"scheduler": client}
        return
    if "://" in scheduler:
        from distributed import Client

        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:  # else read as the run folder's OSError
            raise ConfigError(
                f"cannot join a dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); "
                "check that what listens there is a dask scheduler (`dask scheduler`) of a "
                "compatible version, or run with --scheduler local:N or synchronous"
            ) from None
        with client:
            log.info("connected to dask scheduler %s", scheduler)
            yield {"scheduler": client}
        return
    raise ConfigError(
        f"unknown scheduler {scheduler!r}; use 'synchronous', 'local:N' or a scheduler address tcp://HOST:PORT"
    )


#: seconds :func:`check_scheduler` waits for a ``tcp://`` scheduler to accept a connection (dask's
#: own client would wait 30 s, and then fail inside the run)
CONNECT_TIMEOUT_S = 5.0


def cluster_option_names(kind: str) -> set[str] | None:
    """The keywords dask-jobqueue's cluster of ``kind`` accepts (the cluster's, its job class's
    and their bases'), plus ``jobs``; None without dask-jobqueue (the run then says so)."""
    import inspect

    try:
        import dask_jobqueue
    except ImportError:
        return None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    names = {"jobs"}
    for klass in (*cls.__mro__, *cls.job_cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {
                n
                for n, p in inspect.signature(init).parameters.items()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"
            }
    return names


def check_cluster_options(kind: str, options: dict[str, Any]) -> None:
    """ConfigError naming each key of the config's ``cluster:`` block that dask-jobqueue would
    refuse (a misspelt ``wallTime`` reached it as a bare TypeError after the run had started)."""
    from repsim.config import did_you_mean

    allowed = cluster_option_names(kind)
    unknown = sorted(set(map(str, options)) - allowed) if allowed is not None else []
    if unknown:
        named = ", ".join(f"{k!r}{did_you_mean(k, allowed)}" for k in unknown)
        raise ConfigError(
            f"cluster: unknown dask-jobqueue option(s) for {kind}: {named}; see the "
            f"{kind.upper()}Cluster options of dask-jobqueue (e.g. cores, memory, walltime, queue, "
            "account, job_extra_directives) and jobs (worker jobs to start)"
        )


def check_scheduler(
    scheduler: str, cluster: str | None = None, cluster_options: dict[str, Any] | None = None
) -> None:
    """ConfigError for a scheduler or cluster request that cannot work, checked before a run
    touches its folder: the form of ``scheduler``, that a ``tcp://`` scheduler accepts a TCP
    connection and greets like a dask scheduler, the cluster kind, its ``jobs`` count and that the batch system's submit command is
    on this machine. Nothing is started."""
    import shutil

    if cluster is not None:
        submit = {"slurm": "sbatch", "pbs": "qsub"}
        if cluster not in submit:
            raise ConfigError(f"unknown cluster kind {cluster!r}; use slurm or pbs")
        jobs = (cluster_options or {}).get("jobs", 4)
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ConfigError(f"cluster: jobs must be a whole number >= 1, got {jobs!r}")
        check_cluster_options(cluster, cluster_options or {})
        if shutil.which(submit[cluster]) is None:
            raise ConfigError(
                f"--cluster {cluster}: `{submit[cluster]}` is not on this machine's PATH; run from "
                "a login node of the cluster, or drop --cluster"
            )
        return
    if scheduler.startswith("tcp://"):
        _check_reachable(scheduler)
        return
    if scheduler in ("synchronous", "sync", "single-threaded") or "://" in scheduler:
        return
    if scheduler.startswith("local"):
        _parse_local(scheduler)
        return
    raise ConfigError(
        f"unknown scheduler {scheduler!r}; use 'synchronous', 'local:N' or a scheduler address tcp://HOST:PORT"
    )


def _check_reachable(address: str) -> None:
    """ConfigError unless the scheduler at ``tcp://HOST[:PORT]`` accepts a TCP connection."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port or 8786  # dask's default port
    except ValueError as exc:
        raise ConfigError(f"scheduler {address!r}: {exc}; write it as tcp://HOST:PORT") from None
    if not host:
        raise ConfigError(f"scheduler {address!r} names no host; write it as tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as conn:
            # a dask scheduler sends its handshake as soon as it accepts; dask's client waits
            # for it with no time limit, so a port that answers and stays silent would hang the run
            try:
                greeting = conn.recv(1)
            except TimeoutError:
                greeting = None
    except OSError as exc:
        reason = (
            f"no answer within {CONNECT_TIMEOUT_S:g} s"
            if isinstance(exc, TimeoutError)
            else str(exc) or type(exc).__name__
        )
        raise ConfigError(
            f"no dask scheduler can be reached at {address} ({reason}); start one there "
            f"(`dask scheduler --port {port}`) or fix the host and port, or run with "
            "--scheduler local:N or synchronous"
        ) from None
    if not greeting:
        what = "stayed silent" if greeting is None else "closed the connection"
        raise ConfigError(
            f"what listens at {address} is not a dask scheduler: it {what} where a scheduler "
            f"greets within {CONNECT_TIMEOUT_S:g} s; start one there (`dask scheduler --port "
            f"{port}`) or fix the host and port, or run with --scheduler local:N or synchronous"
        )


def is_synchronous(scheduler: str, cluster: str | None = None) -> bool:
    """Whether the run's graph executes in this process (no cluster, no worker processes)."""
    return cluster is None and scheduler in ("synchronous", "sync", "single-threaded")


def pool_workers(n_tasks: int, min_tasks: int, cpu_count: int | None = None) -> int:
    """Worker processes for ``n_tasks`` independent single-threaded tasks on this machine's cores.

    One per core (at most ``n_tasks``); 1, meaning run in-process, below ``min_tasks`` tasks or on
    one core, where starting processes would cost more than it gains.
    """
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if n_tasks < max(2, min_tasks) or cores < 2:
        return 1
    return max(1, min(cores, n_tasks))


def _pool_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _call(call: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    func, args = call
    return func(*args)


def process_map(
    calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
    workers: int,
    threads: int = 1,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``[func(*args) for func, args in calls]`` on ``workers`` fresh processes, in order.

    For independent tasks that each use one core poorly (small matmuls): N single-threaded
    processes use N cores fully where one process with N threads mostly waits on itself. Processes
    are spawned, not forked (a forked child inherits the parent's OpenMP state and can hang), with
    ``threads`` torch threads each. ``func`` must catch its own errors (a
    :class:`repsim.tasks.Guarded`): an exception here ends the map. ``on_done(i)`` is called in
    this process as each result arrives.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1:
        out = []
        for i, call in enumerate(calls):
            out.append(_call(call))
            if on_done is not None:
                on_done(i)
        return out
    from concurrent.futures import as_completed

    ctx = multiprocessing.get_context("spawn")
    results: list[Any] = [None] * len(calls)
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init, initargs=(threads,))
    try:
        futures = {ex.submit(_call, call): i for i, call in enumerate(calls)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done is not None:
                on_done(i)
    except BaseException:
        # Ctrl-C, SIGTERM or a failed map: leaving the pool as a `with` block would wait for every
        # queued task (half a minute of probes after Ctrl-C); drop the queue, stop the workers
        workers_left = list(getattr(ex, "_processes", {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for proc in workers_left:
            proc.terminate()
        for proc in workers_left:
            proc.join(timeout=5)
            if proc.is_alive():  # still starting up under load: no second chance
                proc.kill()
                proc.join()
        raise
    ex.shutdown(wait=True)
    return results


def _parse_local(scheduler: str) -> int:
    if scheduler == "local":
        import os

        return max(1, (os.cpu_count() or 2) // 2)
    try:
        n = int(scheduler.split(":", 1)[1])
    except (IndexError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(
            f"scheduler {scheduler!r}: write local:N with N >= 1 worker processes, e.g. local:4"
        )
    import os

    cores = os.cpu_count() or 1
    if n > LOCAL_WORKERS_PER_CORE * cores:
        raise ConfigError(
            f"scheduler {scheduler!r}: {n} worker processes on a machine with {cores} cores; "
            f"local:N allows at most {LOCAL_WORKERS_PER_CORE * cores} (each worker is a process "
            "of single-threaded tasks, so more than the cores only contend). Fix: local:"
            f"{max(1, cores // 2)} (what 'local' alone takes), or at most local:{cores}"
        )
    return n


#: local:N may start at most this many workers per core: 100,000 nannies ran for ten minutes at
#: full CPU, ran out of file handles and left the run folder without results or a true run.json
LOCAL_WORKERS_PER_CORE = 4


#: a job directive that already asks for GPUs, per batch system (sbatch's short ``-G`` takes its
#: value apart or attached: ``-G 2``, ``-G2``)
GPU_REQUEST = {"slurm": r"--gres=(\S*,)?gpu|--gpus|--gpus-per-\w+|^-G", "pbs": r"ngpus"}


def jobqueue_cluster(kind: str, options: dict[str, Any] | None = None) -> Any:
    """A dask-jobqueue cluster (no jobs submitted yet) for ``kind`` = slurm | pbs.

    ``options`` come from the config's ``cluster:`` block (cores, memory, walltime, queue, account,
    job_extra_directives, ...; ``jobs`` is how many worker jobs to start) over JOBQUEUE_DEFAULTS.
    Each worker job asks for one GPU, unless ``job_extra_directives`` already ask for GPUs.
    """
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ConfigError(
            "--cluster needs dask-jobqueue: in the repository, pip install -c constraints.txt "
            "-e '.[cluster]' (the environment of make setup has it)"
        ) from exc
    classes = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    if kind not in classes:
        raise ConfigError(f"unknown cluster kind {kind!r}; use slurm or pbs")
    opts = {**JOBQUEUE_DEFAULTS, **(options or {})}
    opts.pop("jobs", None)
    # one GPU per worker job, added to the block's own directives unless they ask for GPUs
    extra = [str(d) for d in opts.get("job_extra_directives") or []]
    if not any(re.search(GPU_REQUEST[kind], d) for d in extra):
        extra.append("--gres=gpu:1" if kind == "slurm" else "-l ngpus=1")
    opts["job_extra_directives"] = extra
    opts.setdefault("scheduler_options", {"dashboard_address": None})
    return classes[kind](**opts)


@contextlib.contextmanager
def _jobqueue_client(kind: str, scheduler: str, options: dict[str, Any]) -> Iterator[Any]:
    from distributed import Client

    n_jobs = int(options.get("jobs", 4))
    with jobqueue_cluster(kind, options) as jq, Client(jq) as client:
        log.info(
            "requesting %d %s worker jobs, each with this script:\n%s",
            n_jobs,
            kind,
            jq.job_script(),
        )
        jq.scale(jobs=n_jobs)
        yield client
