"""Feature taps: turn a model's output, or any named module's output, into (batch, dim) features.

A tap is a layer name (``None`` = the module's own output) and a token rule: ``cls`` (first token
of a (B, N, D) output), ``mean`` (mean over tokens or spatial positions), ``pooled`` (already pooled
output, or a global average over tokens/positions), ``none`` (flatten). Layer names are checked
before any work, and a bad one lists the closest valid names.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch

from repsim.errors import ModelError
from repsim.zoo.spec import TOKENS, LoadedModel, ModelSpec


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once the tapped output is captured."""


def module_names(module: torch.nn.Module) -> list[str]:
    """Every tappable module name of ``module`` (``named_modules`` order, root excluded)."""
    return [name for name, _ in module.named_modules() if name]


def resolve_layer(module: torch.nn.Module, layer: str) -> torch.nn.Module:
    """The submodule called ``layer``; ModelError listing close matches when it does not exist."""
    modules = dict(module.named_modules())
    if layer in modules and layer:
        return modules[layer]
    names = module_names(module)
    close = difflib.get_close_matches(layer, names, n=8, cutoff=0.5)
    top = [n for n in names if "." not in n]
    raise ModelError(
        f"layer {layer!r} does not exist in {type(module).__name__}; "
        f"closest names: {close or 'none'}; top-level modules: {top}. "
        "Set 'layer:' in the model spec to one of these (or null for the model's output)"
    )


def reduce_token(out: Any, token: str) -> torch.Tensor:
    """Reduce a tapped output to (batch, dim) according to ``token``."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"tapped output is a {type(out).__name__}, not a tensor; tap another layer"
        )
    if token not in TOKENS:
        raise ModelError(f"token {token!r} is not one of {TOKENS}")
    if out.ndim == 2:
        if token == "cls":
            # a pooled (batch, dim) output has no first token: 'cls' would quietly mean 'pooled'
            raise ModelError(
                "token 'cls' needs a (batch, tokens, dim) output; this layer gives (batch, dim), "
                "already pooled (use 'pooled', or tap a layer with tokens)"
            )
        return out
    if token == "none":
        return out.flatten(1)
    if out.ndim == 3:
        if token == "cls":
            return out[:, 0]
        return out.mean(dim=1)
    if out.ndim == 4:
        if token == "cls":
            raise ModelError(
                "token 'cls' needs a (batch, tokens, dim) output; this layer is 4-d (use 'pooled')"
            )
        return out.mean(dim=(2, 3))
    return out.flatten(1)


class FeatureExtractor:
    """Call a loaded model on a preprocessed batch and return the tapped (batch, dim) features.

    The forward pass stops as soon as the tapped module has run, so tapping an intermediate
    layer does not pay for the layers after it.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        spec: ModelSpec | None = None,
        *,
        layer: str | None = None,
        token: str | None = None,
    ) -> None:
        self.module = loaded.module
        self.layer = (
            layer
            if layer is not None
            else (spec.layer if spec and spec.layer else loaded.default_layer)
        )
        self.token = token or (spec.token if spec and spec.token else None) or loaded.default_token
        if self.token not in TOKENS:
            raise ModelError(f"token {self.token!r} is not one of {TOKENS}")
        self._target = resolve_layer(self.module, self.layer) if self.layer else None
        self._out: Any = None

    def _hook(self, _module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        self._out = output
        raise _Captured

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._target is None:
            return reduce_token(self.module(x), self.token)
        handle = self._target.register_forward_hook(self._hook)
        try:
            self.module(x)
        except _Captured:
            pass
        finally:
            handle.remove()
        out, self._out = self._out, None
        if out is None:
            raise ModelError(
                f"layer {self.layer!r} was not called during the forward pass; tap another layer"
            )
        return reduce_token(out, self.token)
