"""The model zoo: model specs as data, a registry of loaders, feature taps and an offline check.

Parsing specs is cheap (no torch import); building a model imports its loader on demand.
"""

from __future__ import annotations

from typing import Any

from repsim.zoo.registry import (
    get_loader,
    known_loaders,
    load_model,
    parse_models,
    register_loader,
)
from repsim.zoo.spec import LoadedModel, ModelSpec, PreprocessSpec


def check_models(config: Any, *, weights: bool = True) -> tuple[str, bool]:
    """Build every selected model of ``config`` on the meta device and open its weights file;
    see :func:`repsim.zoo.check.check_models`."""
    from repsim.zoo.check import check_models as _check

    return _check(config, weights=weights)


def list_models(config: Any) -> str:
    """A table of the models of ``config`` (no model is built)."""
    from repsim.zoo.check import list_models as _list

    return _list(config)


__all__ = [
    "ModelSpec",
    "PreprocessSpec",
    "LoadedModel",
    "register_loader",
    "get_loader",
    "known_loaders",
    "load_model",
    "parse_models",
    "check_models",
    "list_models",
]
