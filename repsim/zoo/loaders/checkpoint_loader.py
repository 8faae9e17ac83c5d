"""The ``checkpoint`` loader: a known architecture plus a checkpoint from a URL or a local file.

``identifier`` is the architecture: a torchvision name (``resnet50``) or ``timm:NAME``
(``timm:xcit_small_12_p16_224``). ``options.url`` is the public checkpoint. Keys are remapped:
nested state dicts are unwrapped (VISSL's ``classy_state_dict/base_model/model/trunk``,
``state_dict``, ``model``, ``teacher``), training prefixes stripped (``module.``, ``backbone.``,
``_feature_blocks.``, ``trunk.``, ...) and heads dropped (``fc.``, ``head.``, projectors,
prototypes), so the self-supervised ResNet-50s load into a plain torchvision ResNet-50.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from repsim.errors import ModelError
from repsim.zoo.registry import register_loader
from repsim.zoo.spec import SSL_PREPROCESS, LoadedModel, ModelSpec
from repsim.zoo.weights import (
    WeightsSource,
    fetch_url,
    load_state_dict,
    local_weights,
    missing,
    register_locator,
    url_source,
)

log = logging.getLogger(__name__)

NEST_KEYS = (
    "classy_state_dict",
    "base_model",
    "model",
    "trunk",
    "state_dict",
    "teacher",
    "model_state_dict",
)
STRIP_PREFIXES = (
    "module.",
    "backbone.",
    "encoder_q.",
    "encoder.",
    "_feature_blocks.",
    "trunk.",
    "model.",
)
DROP_PREFIXES = (
    "fc.",
    "head.",
    "heads.",
    "projection_head.",
    "projector.",
    "prototypes.",
    "predictor.",
    "classifier.",
)


def unwrap(state: Mapping[str, Any]) -> dict[str, Any]:
    """Descend into nested checkpoint dicts until the tensors are reached."""
    state = dict(state)
    while not any(isinstance(v, torch.Tensor) for v in state.values()):
        key = next((k for k in NEST_KEYS if isinstance(state.get(k), Mapping)), None)
        if key is None:
            raise ModelError(
                f"checkpoint holds no tensors at top level and none of {NEST_KEYS}; keys: {sorted(state)[:10]}"
            )
        state = dict(state[key])
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def remap_keys(
    state: Mapping[str, torch.Tensor],
    strip: Iterable[str] = STRIP_PREFIXES,
    drop: Iterable[str] = DROP_PREFIXES,
) -> dict[str, torch.Tensor]:
    """Strip training-wrapper prefixes (repeatedly) and drop head/projector keys."""
    strip, drop = tuple(strip), tuple(drop)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in strip:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        if key.startswith(drop):
            continue
        out[key] = value
    return out


def build_architecture(spec: ModelSpec, device: Any = "cpu") -> torch.nn.Module:
    """The headless architecture named by ``spec.identifier`` (torchvision name or ``timm:NAME``)."""
    identifier = spec.identifier
    with torch.device(device):
        if identifier.startswith("timm:"):
            import timm

            from repsim.zoo.loaders.timm_loader import resolve_pretrained_cfg

            # an unknown NAME gets the timm loader's message (timm's own named no model)
            resolve_pretrained_cfg(identifier[5:], spec.id, prefix="timm:")
            return timm.create_model(identifier[5:], pretrained=False, num_classes=0)
        import torchvision

        from repsim.config import did_you_mean

        known = torchvision.models.list_models()
        if identifier not in known:
            raise ModelError(
                f"model {spec.id!r}: checkpoint architecture {identifier!r} is neither a "
                f"torchvision model nor 'timm:NAME'{did_you_mean(identifier, known)}; set "
                "'identifier' to a name of torchvision.models.list_models() or to timm:NAME"
            )
        model = torchvision.models.get_model(identifier, weights=None)
    if hasattr(model, "fc"):
        model.fc = torch.nn.Identity()
    return model


def foreign_keys(model: torch.nn.Module, unexpected: Iterable[str]) -> list[str]:
    """The ``unexpected`` keys of a state dict that lie under a module ``model`` has: weights of
    another architecture of its family (``layer1.2.conv1.weight`` of a ResNet-34 loaded into a
    ResNet-18, whose layer1 has two blocks), which a non-strict load would leave out without a
    word. Keys under modules it lacks (a momentum encoder, a queue a training wrapper kept) and
    classifier or projector weights (:data:`DROP_PREFIXES`, timm's ``classifier`` of a model
    built without one) are extras, not a mismatch."""
    children = {name for name, _ in model.named_children()}
    heads = list(DROP_PREFIXES)
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    for name in [classifier] if isinstance(classifier, str) else list(classifier or []):
        heads.append(f"{name}.")
    return [k for k in unexpected if k.split(".")[0] in children and not k.startswith(tuple(heads))]


def load_into(
    model: torch.nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec, identifier: str
) -> None:
    """Load remapped keys; every parameter of the model must be covered."""
    if identifier.startswith("timm:"):
        import importlib

        import timm

        module = importlib.import_module(type(model).__module__)
        filt = getattr(module, "checkpoint_filter_fn", None)
        if filt is not None and timm is not None:
            state = filt(state, model)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ModelError(
            f"model {spec.id!r}: checkpoint does not cover {len(result.missing_keys)} keys of {identifier} "
            f"(first: {result.missing_keys[:5]}); set options.strip_prefixes/drop_prefixes to remap its keys"
        )
    foreign = foreign_keys(model, result.unexpected_keys)
    if foreign:
        raise ModelError(
            f"model {spec.id!r}: the weights file holds {len(foreign)} weights under modules of "
            f"{identifier} that {identifier} does not have (first: {foreign[:3]}): the file is for "
            "another architecture (a deeper or wider one of the same family). Give the file of "
            f"{identifier}, or set the spec's identifier to the file's architecture"
        )
    if result.unexpected_keys:
        log.info(
            "%s: ignored %d checkpoint keys (e.g. %s)",
            spec.id,
            len(result.unexpected_keys),
            result.unexpected_keys[:3],
        )


@register_locator("checkpoint")
def locate(spec: ModelSpec) -> WeightsSource:
    """``options.url`` (or its copy in the torch.hub cache)."""
    url = spec.options.get("url")
    if not url:
        raise missing(spec, "the checkpoint (no options.url and no 'weights:' file)")
    return url_source(spec, str(url), f"checkpoint {url}")


@register_loader("checkpoint")
def load_checkpoint(
    spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu"
) -> LoadedModel:
    """Build the architecture and load the remapped checkpoint."""
    url = spec.options.get("url")
    source = "random-init"
    path = None
    if pretrained:  # find the file before building the model: a missing one fails at once
        path = local_weights(spec)
        if path is None:
            if not url:
                raise missing(spec, "the checkpoint (no options.url and no 'weights:' file)")
            path = fetch_url(spec, url)
            source = url
        else:
            source = str(path)
    model = build_architecture(spec, device)
    if path is not None:
        raw = load_state_dict(path, weights_only=spec.options.get("weights_only", True))
        state = remap_keys(
            unwrap(raw),
            spec.options.get("strip_prefixes", STRIP_PREFIXES),
            spec.options.get("drop_prefixes", DROP_PREFIXES),
        )
        load_into(model, state, spec, spec.identifier)
    is_timm = spec.identifier.startswith("timm:")
    return LoadedModel.built(
        spec,
        model,
        SSL_PREPROCESS,
        loader="checkpoint",
        pretrained=pretrained,
        source=source,
        device=device,
        url=url,
        architecture_source="timm" if is_timm else "torchvision",
    )
