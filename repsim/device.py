"""Which torch device a computation runs on: the one rule every stage, measure and benchmark uses.

``None`` or ``"auto"`` means CUDA when it is available, else the CPU. An explicit request is
honoured or refused: asking for CUDA on a machine without it is a :class:`~repsim.errors.ConfigError`
that says what to pass instead, never a silent fall-back to the CPU (a run that the user believes
ran on a GPU must not quietly take a hundred times longer).
"""

from __future__ import annotations

import platform

import torch

from repsim.errors import ConfigError

__all__ = [
    "DEFAULT_PRECISION",
    "EXTRACT_PRECISIONS",
    "PROBE_PRECISIONS",
    "check_precision",
    "device_name",
    "resolve_device",
]

# The precision tables live here, beside the device rule, so that reading a config (which checks
# them) does not import the stages: a stage's cache key covers the code it imports
# (repsim.fingerprint.code_fingerprint), and an edit to the probe must not redo the features.
#: ``extract.precision`` values and the autocast dtype of each (None: plain float32, the study's)
EXTRACT_PRECISIONS: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DEFAULT_PRECISION = "float32"
#: ``probes.precision`` values: the probe's training matmuls in float32, or on bfloat16 inputs
#: with float32 accumulation
PROBE_PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`EXTRACT_PRECISIONS`, else a ConfigError listing them.

    Checked when a config is read, so a typo fails before any model is loaded.
    """
    if not isinstance(precision, str) or precision not in EXTRACT_PRECISIONS:
        raise ConfigError(
            f"extract.precision {precision!r} is not one of {', '.join(EXTRACT_PRECISIONS)}; "
            f"use {DEFAULT_PRECISION} (the study's) unless you have measured what the others do"
        )
    return precision


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for ``device`` (``None``/``"auto"``: CUDA when available, else CPU).

    Raises
    ------
    ConfigError
        ``device`` is not a device torch knows, or asks for CUDA where CUDA is not available.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ConfigError(
            f"device {device!r} is not a torch device ({err}); use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {str(device)!r} was requested but CUDA is not available on this machine; "
            "use --device cpu, or --device auto to take a GPU when there is one"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            "use cuda:0 .. cuda:N-1"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {str(device)!r} is not supported; use 'cpu', 'cuda' or 'auto'")
    return dev


def device_name(device: str | torch.device | None = None) -> str:
    """A human-readable name of the device, for run records and benchmark reports."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
