import contextlib
import socket
import threading

import pytest

from repsim.errors import ConfigError
from repsim.scheduler import dask_scheduler, jobqueue_cluster


def test_slurm_job_script_asks_for_one_gpu_and_the_configured_resources():
    pytest.importorskip("dask_jobqueue")
    options = {
        "cores": 4,
        "memory": "32GB",
        "walltime": "02:00:00",
        "queue": "gpu",
        "account": "lab",
        "jobs": 8,
    }
    with jobqueue_cluster("slurm", options) as cluster:
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH -p gpu" in script and "#SBATCH -A lab" in script
    assert "#SBATCH -t 02:00:00" in script and "--nthreads 4" in script


def test_own_job_directives_keep_the_gpu_request_unless_they_make_one():
    pytest.importorskip("dask_jobqueue")
    for extra, added in (
        ("--constraint=h100", True),  # the block's directive asked for no GPU
        ("--gres=gpu:a100:2", False),  # the block's own request, alone
        ("--gpus-per-node=4", False),
        ("--gres=tmpdisk:10G,gpu:2", False),  # GPUs among other resources
        ("-G 2", False),  # sbatch's short option, with its value apart or attached
        ("-G2", False),
        ("--job-name=run-Gabor", True),  # a -G inside another directive asks for nothing
    ):
        with jobqueue_cluster("slurm", {"job_extra_directives": [extra]}) as cluster:
            directives = [
                line.removeprefix("#SBATCH ")
                for line in cluster.job_script().splitlines()
                if line.startswith("#SBATCH ")
            ]
        assert extra in directives
        assert ("--gres=gpu:1" in directives) is added, (extra, directives)
    with jobqueue_cluster("pbs", {"job_extra_directives": ["-l place=scatter"]}) as cluster:
        assert "ngpus=1" in cluster.job_script()


def test_pbs_and_unknown_kinds():
    pytest.importorskip("dask_jobqueue")
    with jobqueue_cluster("pbs", {"cores": 2, "memory": "8GB"}) as cluster:
        assert "ngpus=1" in cluster.job_script()
    with pytest.raises(ConfigError, match="slurm or pbs"):
        jobqueue_cluster("lsf")


def test_scheduler_strings():
    with dask_scheduler("synchronous") as kw:
        assert kw == {"scheduler": "synchronous"}
    for bad in ("local:0", "local:x", "threads"):
        with pytest.raises(ConfigError):
            with dask_scheduler(bad):
                pass


def test_pool_workers_one_per_core_only_when_worth_it():
    from repsim.scheduler import is_synchronous, pool_workers

    assert pool_workers(450, 32, cpu_count=2) == 2
    assert pool_workers(450, 32, cpu_count=16) == 16
    assert pool_workers(40, 32, cpu_count=64) == 40
    assert pool_workers(31, 32, cpu_count=2) == 1  # too few tasks: in-process
    assert pool_workers(450, 32, cpu_count=1) == 1
    assert is_synchronous("synchronous") and not is_synchronous("local:2")
    assert not is_synchronous("synchronous", cluster="slurm")


def test_process_map_keeps_the_order_and_runs_in_process_for_one_worker():
    from operator import mul

    from repsim.scheduler import process_map

    calls = [(mul, (i, 3)) for i in range(7)]
    seen: list[int] = []
    assert process_map(calls, workers=1, on_done=seen.append) == [3 * i for i in range(7)]
    assert seen == list(range(7))
    # each worker process runs torch with the threads asked for (the run's `threads:`)
    import torch

    calls.append((torch.get_num_threads, ()))
    assert process_map(calls, workers=2, threads=3) == [3 * i for i in range(7)] + [3]


def test_scheduler_requests_are_checked_before_the_run_touches_its_folder(monkeypatch):
    from repsim.scheduler import check_scheduler

    with _fake_server(b"\x00") as address:  # a scheduler's port, on this machine
        for ok in ("synchronous", "local:2", address):
            check_scheduler(ok)
    for bad, words in (("bogus", "unknown scheduler"), ("local:0", "local:N")):
        with pytest.raises(ConfigError, match=words):
            check_scheduler(bad)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="`sbatch` is not on this machine"):
        check_scheduler("synchronous", "slurm")
    with pytest.raises(ConfigError, match="jobs must be a whole number"):
        check_scheduler("synchronous", "pbs", {"jobs": "abc"})
    with pytest.raises(ConfigError, match="unknown cluster kind"):
        check_scheduler("synchronous", "lsf")


def test_an_unreachable_scheduler_is_named_before_the_run_instead_of_a_30_s_timeout():
    from repsim.scheduler import check_scheduler

    with socket.socket() as probe:  # a port nobody listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(
        ConfigError, match=f"no dask scheduler can be reached at {address} .*--port {port}"
    ):
        check_scheduler(address)
    for bad in ("tcp://:8786", "tcp://127.0.0.1:port"):
        with pytest.raises(ConfigError, match="write it as tcp://HOST:PORT"):
            check_scheduler(bad)


@contextlib.contextmanager
def _fake_server(greeting: bytes | None):
    """A local port that sends ``greeting`` to each connection (None: says nothing) and closes."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if greeting is None:
                held.append(conn)  # open and silent
            else:
                conn.sendall(greeting)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_a_port_that_is_not_a_dask_scheduler_is_named_before_the_run(monkeypatch):
    """A port that answers but stays silent would hang dask's client forever; one that closes
    at once would fail inside the run as if the run folder were at fault."""
    from repsim import scheduler

    monkeypatch.setattr(scheduler, "CONNECT_TIMEOUT_S", 0.5)
    with _fake_server(b"\x00") as greets:
        scheduler.check_scheduler(greets)  # greets like a scheduler: accepted
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as real:
        scheduler.check_scheduler(real.scheduler_address)  # a real one greets at once
    for greeting, what in ((None, "stayed silent"), (b"", "closed the connection")):
        with _fake_server(greeting) as address:
            with pytest.raises(
                ConfigError, match=f"at {address} is not a dask scheduler: it {what}"
            ):
                scheduler.check_scheduler(address)
    with _fake_server(b"") as closes:  # and the run's client names it, not the folder
        with pytest.raises(ConfigError, match=f"cannot join a dask scheduler at {closes} "):
            with scheduler.dask_scheduler(closes):
                pass


def test_a_mistyped_scheduler_keeps_the_previous_results(tiny_run, tiny_config, tmp_path):
    import shutil

    from repsim.pipeline import run
    from repsim.runfolder import RunFolder

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    with pytest.raises(ConfigError, match="unknown scheduler"):
        run(tiny_config, run_dir, device="cpu", scheduler="bogsu")
    RunFolder(run_dir).open_results()  # nothing was removed


def test_an_interrupted_process_map_stops_its_workers_without_running_the_queue(tmp_path):
    """Ctrl-C during the probe pool: leaving the pool waited for every queued task (30-40 s of
    probes) and SIGTERM left idle workers behind. Now the queue is dropped and the workers stop:
    of 12 queued tasks, only those already started finish."""
    import os
    import time

    from repsim.scheduler import process_map

    calls = [(os.system, (f"sleep 0.5; touch {tmp_path / str(i)}",)) for i in range(12)]

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_map(calls, workers=2, on_done=interrupt)
    time.sleep(1.5)  # a task's shell, started before the interrupt, may still finish
    assert len(list(tmp_path.iterdir())) <= 5  # the first result, the running and queued ones


def test_a_misspelt_cluster_option_is_refused_before_the_run():
    """``wallTime`` went to dask-jobqueue as a bare TypeError once the run had started; it is now
    a ConfigError with the option it resembles, before anything (sbatch's PATH included)."""
    pytest.importorskip("dask_jobqueue")
    from repsim.errors import ConfigError
    from repsim.scheduler import check_scheduler, cluster_option_names

    with pytest.raises(ConfigError, match=r"'wallTime' \(did you mean 'walltime'\?\)"):
        check_scheduler("synchronous", "slurm", {"wallTime": "1:00:00", "cores": 8})
    assert {"cores", "memory", "walltime", "queue", "account", "jobs"} <= cluster_option_names(
        "slurm"
    )
    assert "resource_spec" in cluster_option_names("pbs")


def test_every_spelling_of_in_process_runs_in_process():
    """check_scheduler accepts three spellings of the in-process scheduler; each must then run
    in process, not be refused by dask_scheduler once the folder is taken."""
    from repsim.scheduler import check_scheduler, is_synchronous

    for name in ("synchronous", "sync", "single-threaded"):
        check_scheduler(name)
        with dask_scheduler(name) as kw:
            assert kw == {"scheduler": "synchronous"}, name
        assert is_synchronous(name), name


def test_a_local_cluster_has_single_threaded_worker_processes(monkeypatch):
    """local:N is N processes of one thread each: the tasks are single-threaded torch work, and
    two threads in one process would run two of them on one core's share."""
    import distributed

    made = {}

    class FakeCluster(contextlib.nullcontext):
        def __init__(self, **kwargs):
            made.update(kwargs)
            super().__init__(self)

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", lambda cluster: contextlib.nullcontext("client"))
    with dask_scheduler("local:3") as kw:
        assert kw == {"scheduler": "client"}
    assert made == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }


@pytest.mark.parametrize("jobs", [0, -1, True, 2.0])
def test_a_job_count_that_is_not_a_whole_number_above_0_is_refused(jobs):
    from repsim.scheduler import check_scheduler

    with pytest.raises(ConfigError, match=rf"jobs must be a whole number >= 1, got {jobs!r}"):
        check_scheduler("synchronous", "slurm", {"jobs": jobs})


def test_self_is_not_a_cluster_option():
    """The options are read from the signatures of dask-jobqueue's classes; ``self`` is a
    parameter there, never an option (it would reach the class as a TypeError)."""
    pytest.importorskip("dask_jobqueue")
    from repsim.scheduler import check_cluster_options, cluster_option_names

    assert "self" not in cluster_option_names("slurm")
    with pytest.raises(ConfigError, match="unknown dask-jobqueue option"):
        check_cluster_options("slurm", {"self": 1})


def test_a_scheduler_address_without_a_port_is_tried_on_dasks_port(monkeypatch):
    """tcp://HOST means dask's default port 8786; a scheduler that does not answer within the
    wait is named with that wait, not with the bare exception."""
    from repsim import scheduler

    asked = []

    def no_answer(address, timeout):
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", no_answer)
    with pytest.raises(ConfigError, match=r"tcp://example\.invalid \(no answer within 5 s\)"):
        scheduler.check_scheduler("tcp://example.invalid")
    assert asked == [(("example.invalid", 8786), scheduler.CONNECT_TIMEOUT_S)]


def test_local_without_a_count_takes_half_the_cores(monkeypatch):
    """``local`` alone: one worker per two cores (each worker's tasks use torch threads too)."""
    import os

    from repsim.scheduler import _parse_local

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert _parse_local("local") == 4 and _parse_local("local:3") == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: 1
    assert _parse_local("local") == 1


def test_local_refuses_more_workers_than_four_per_core(monkeypatch):
    """local:100000 started that many dask nannies, ran ten minutes and ran out of file handles;
    at most 4 per core, refused before the run with the count to use."""
    import os

    from repsim.scheduler import _parse_local, check_scheduler

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _parse_local("local:8") == 8
    for bad in ("local:9", "local:100000"):
        with pytest.raises(ConfigError, match=r"on a machine with 2 cores.*at most 8.*local:1"):
            check_scheduler(bad)


def test_a_jobqueue_cluster_gets_the_defaults_under_the_configs_options(monkeypatch):
    """What reaches dask-jobqueue: the defaults under the config's ``cluster:`` block, without
    ``jobs`` (ours, not its), one GPU per job and no dashboard (a login node's port 8787 is
    often taken) unless the block sets its own scheduler options."""
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    made = []
    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", lambda **kw: made.append(kw) or kw)
    jobqueue_cluster("slurm", {"jobs": 3, "queue": "gpu", "memory": "32GB"})
    assert made[-1] == {
        "cores": 8,
        "processes": 1,
        "memory": "32GB",
        "walltime": "04:00:00",
        "queue": "gpu",
        "job_extra_directives": ["--gres=gpu:1"],
        "scheduler_options": {"dashboard_address": None},
    }
    jobqueue_cluster("slurm", {"scheduler_options": {"dashboard_address": ":9999"}})
    assert made[-1]["scheduler_options"] == {"dashboard_address": ":9999"}


@pytest.mark.parametrize(("options", "jobs"), [({}, 4), ({"jobs": 2}, 2)])
def test_a_cluster_run_starts_the_configured_number_of_worker_jobs(monkeypatch, options, jobs):
    """``jobs`` defaults to 4, the default check_scheduler checks."""
    import distributed

    from repsim import scheduler

    scaled = []

    class FakeJobs(contextlib.nullcontext):
        def __init__(self):
            super().__init__(self)

        def job_script(self):
            return "#!/bin/sh"

        def scale(self, jobs):
            scaled.append(jobs)

    monkeypatch.setattr(scheduler, "jobqueue_cluster", lambda kind, opts: FakeJobs())
    monkeypatch.setattr(distributed, "Client", lambda cluster: contextlib.nullcontext("client"))
    with dask_scheduler("synchronous", "slurm", options) as kw:
        assert kw == {"scheduler": "client"}
    assert scaled == [jobs]
