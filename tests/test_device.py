"""The one device rule (repsim.device) and the machine/software record (repsim.runinfo)."""

from __future__ import annotations

import subprocess

import pytest
import torch

from repsim.device import device_name, resolve_device
from repsim.errors import ConfigError
from repsim.runinfo import machine_info, package_versions


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("request_", [None, "auto", "AUTO", "", "cpu", torch.device("cpu")])
def test_auto_and_cpu_resolve_to_cpu_without_cuda(no_cuda: None, request_: object) -> None:
    assert resolve_device(request_) == torch.device("cpu")


@pytest.mark.parametrize("request_", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_refused_with_the_fix(no_cuda: None, request_: object) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available.*--device cpu"):
        resolve_device(request_)


@pytest.mark.parametrize("request_", ["gpu", "cpux", "meta"])
def test_unknown_device_is_a_config_error(request_: str) -> None:
    with pytest.raises(ConfigError, match="use 'cpu'"):
        resolve_device(request_)


def test_cuda_index_beyond_the_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="1 CUDA device"):
        resolve_device("cuda:3")


def test_cpu_name_and_records(no_cuda: None) -> None:
    assert device_name("cpu").startswith("cpu (")
    versions = package_versions()
    assert versions["python"] and versions["torch"] not in ("", "not installed")
    info = machine_info()
    assert info["device"] == "cpu" and info["gpu"] is None and info["cpu_cores_logical"] >= 1
    assert info["gpu_memory_gib"] is None and info["gpu_count"] == 0
    assert machine_info("cuda:1")["device"] == "cuda:1"


def test_the_machine_record_names_this_machines_software_and_the_time_it_was_taken() -> None:
    """The fields of run.json's ``machine`` (and of the benchmark reports), each as this process
    sees it; ``date_utc`` is a UTC time to the second."""
    import datetime as dt
    import platform

    before = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    info = machine_info("cpu")
    taken = dt.datetime.strptime(info["date_utc"], "%Y-%m-%d %H:%M:%S")
    assert before <= taken <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert set(info) == {
        "date_utc", "platform", "python", "cpu", "cpu_cores_logical", "cpu_cores_available",
        "memory_gib", "torch", "torch_threads", "cuda", "cudnn", "gpu", "gpu_memory_gib",
        "gpu_count", "device", "git_commit",
    }  # fmt: skip
    assert (info["platform"], info["python"]) == (platform.platform(), platform.python_version())
    assert (info["torch"], info["cuda"]) == (torch.__version__, torch.version.cuda)
    assert info["torch_threads"] == torch.get_num_threads() and info["cpu"]


def test_package_versions_say_which_package_is_not_installed() -> None:
    import importlib.metadata
    import platform

    versions = package_versions(("numpy", "no-such-package-repsim-test"))
    assert versions == {
        "python": platform.python_version(),
        "numpy": importlib.metadata.version("numpy"),
        "no-such-package-repsim-test": "not installed",
    }


def _git(cwd, *args: str) -> str:
    identity = ("-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false")
    out = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_git_commit_is_the_checkouts_commit_dirty_when_a_tracked_file_changed(tmp_path) -> None:
    """run.json's ``git_commit``: HEAD of the checkout, '+dirty' when a tracked file differs from
    it (an untracked file is not the code that ran), None outside any git checkout."""
    from repsim.runinfo import git_commit

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _git(checkout, "init", "-q")
    (checkout / "code.py").write_text("x = 1\n")
    _git(checkout, "add", "code.py")
    _git(checkout, "commit", "-q", "-m", "first")
    head = _git(checkout, "rev-parse", "HEAD")
    assert git_commit(checkout) == head
    (checkout / "notes.txt").write_text("untracked")
    assert git_commit(str(checkout)) == head
    (checkout / "code.py").write_text("x = 2\n")
    assert git_commit(checkout) == head + "+dirty"
    outside = tmp_path / "plain"
    outside.mkdir()
    if subprocess.run(["git", "rev-parse"], cwd=outside, capture_output=True).returncode == 0:
        pytest.skip("the temporary folder lies inside a git checkout")
    assert git_commit(outside) is None


def test_the_machine_record_gives_the_gpu_memory_and_cores_it_reads(monkeypatch) -> None:
    """With CUDA: the first GPU's name, its memory in GiB and the number of GPUs; the memory and
    the cores this process may use as the operating system gives them, None or the machine's
    count where it gives nothing."""
    import os
    from types import SimpleNamespace

    import repsim.runinfo as runinfo

    props = SimpleNamespace(name="Test GPU", total_memory=int(79.64 * 2**30))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    other = SimpleNamespace(name="Second GPU", total_memory=2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", [props, other].__getitem__)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    info = machine_info("cuda:0")
    assert (info["gpu"], info["gpu_memory_gib"], info["gpu_count"]) == ("Test GPU", 79.6, 2)
    assert info["device"] == "cuda:0"
    if hasattr(os, "sched_getaffinity"):
        assert info["cpu_cores_available"] == len(os.sched_getaffinity(0))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert info["memory_gib"] == round(total / 2**30, 1) > 0

    def refused(*args):
        raise OSError("not here")

    def unknown(name):
        raise ValueError(f"unknown name {name}")

    monkeypatch.setattr(runinfo.os, "sched_getaffinity", refused, raising=False)
    monkeypatch.setattr(runinfo.os, "sysconf", unknown)
    info = machine_info("cpu")
    assert info["cpu_cores_available"] == os.cpu_count() and info["memory_gib"] is None


def test_the_cpu_is_named_from_proc_cpuinfo_else_by_platform(monkeypatch, tmp_path) -> None:
    import platform

    import repsim.runinfo as runinfo

    real = runinfo.Path

    def cpuinfo(text: str | None) -> str:
        path = tmp_path / "cpuinfo"
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(runinfo, "Path", lambda p: path if p == "/proc/cpuinfo" else real(p))
        return runinfo._cpu_model()

    assert cpuinfo("processor\t: 0\nvendor_id\t: Acme\nmodel name\t: Acme 9000 @ 3GHz\n") == (
        "Acme 9000 @ 3GHz"
    )
    assert cpuinfo("processor\t: 0\nModel Name: Other: CPU\n") == "Other: CPU"
    assert cpuinfo(None) == (platform.processor() or platform.machine() or "unknown")
    monkeypatch.setattr(runinfo.platform, "processor", lambda: "")
    monkeypatch.setattr(runinfo.platform, "machine", lambda: "")
    assert cpuinfo(None) == "unknown"
