"""The one device rule (repsim.device) and the machine/software record (repsim.runinfo)."""

from __future__ import annotations

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
    assert machine_info("cuda:1")["device"] == "cuda:1"
