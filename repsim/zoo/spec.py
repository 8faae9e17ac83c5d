"""Model specs as data: frozen dataclasses parsed from the ``models:`` entries of a config.

A spec says *which* model (loader + identifier), *where* to tap it (layer + token) and what the
study said about it (metadata). Loading is the registry's job (:mod:`repsim.zoo.registry`); keeping
the spec free of torch makes parsing a 64-model config instant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repsim.errors import ConfigError
from repsim.names import SPEC_METADATA_KEYS

if TYPE_CHECKING:
    import torch

TOKENS = ("cls", "pooled", "mean", "none")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
RESIZE_MODES = ("shortest", "squash")
#: Largest resize / crop side accepted (the study's models run at 224 to 448 pixels; a typo such as
#: 100000 would otherwise ask for terabytes per batch).
MAX_IMAGE_SIDE = 4096
_SPEC_KEYS = {
    "id",
    "loader",
    "identifier",
    "layer",
    "token",
    "weights",
    "options",
    "preprocess",
    "metadata",
}
_METADATA_HINT = " (free text goes under notes:, or under a key starting with _)"
#: ``options:`` keys of the model loaders that read a fixed set of them, checked when a spec is made.
#: The other loaders (timm, open_clip, torch_hub, minizoo) pass their options on to the library that
#: builds the model, so it decides what they accept, when the plan builds it on the meta device.
LOADER_OPTIONS: dict[str, tuple[str, ...]] = {
    "torchvision": ("weights", "weights_only"),
    "checkpoint": ("url", "weights_only", "strip_prefixes", "drop_prefixes"),
}


@dataclass(frozen=True)
class PreprocessSpec:
    """A model's inference transform: resize, centre crop, normalise.

    ``resize_mode="shortest"`` resizes the shorter side to ``resize`` (keeping the aspect ratio);
    ``"squash"`` resizes both sides to ``resize`` (open_clip's SigLIP transform).
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            side = getattr(self, name)
            if (
                isinstance(side, bool)
                or not isinstance(side, int)
                or not 1 <= side <= MAX_IMAGE_SIDE
            ):
                raise ConfigError(
                    f"{name} must be a whole number of pixels from 1 to {MAX_IMAGE_SIDE}, got {side!r}"
                )
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ConfigError(
                    f"{name} must be 3 finite numbers, one per RGB channel, got {list(values)!r}"
                )
        if not all(v > 0 for v in self.std):
            raise ConfigError(
                f"std must be positive (the pixels are divided by it), got {list(self.std)!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation {self.interpolation!r} is not one of {INTERPOLATIONS}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode {self.resize_mode!r} is not one of {RESIZE_MODES}")

    def replace(self, **changes: Any) -> PreprocessSpec:
        """A copy with some fields changed (used for per-spec overrides)."""
        values = {**self.to_dict(), **changes}
        for name in ("resize", "crop"):  # YAML reads 2.24e2 as a float
            if isinstance(values[name], float) and values[name].is_integer():
                values[name] = int(values[name])
        for name in ("mean", "std"):
            try:
                values[name] = tuple(float(v) for v in values[name])
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{name} must be 3 numbers, one per RGB channel, got {values[name]!r}"
                ) from None
        return PreprocessSpec(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": int(self.resize),
            "crop": int(self.crop),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }


#: Any valid transform: a config's ``preprocess:`` values are checked by overriding it.
_NEUTRAL_PREPROCESS = PreprocessSpec(resize=224, crop=224, mean=(0.0,) * 3, std=(1.0,) * 3)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: resize 256 / crop 224 / ImageNet normalisation, as the study used for the hub SSL models
SSL_PREPROCESS = PreprocessSpec(256, 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


@dataclass
class LoadedModel:
    """A built model ready for feature extraction (eval mode, on its device)."""

    module: torch.nn.Module
    preprocess: PreprocessSpec
    default_layer: str | None
    default_token: str
    pretrained_cfg: dict = field(default_factory=dict)

    @classmethod
    def built(
        cls,
        spec: ModelSpec,
        module: torch.nn.Module,
        preprocess: PreprocessSpec,
        *,
        loader: str,
        pretrained: bool,
        source: str | None,
        resolved: str | None = None,
        device: Any = None,
        default_layer: str | None = None,
        default_token: str = "pooled",
        **record: Any,
    ) -> LoadedModel:
        """What every loader returns: the module in eval mode, and where its weights came from.

        The record (``pretrained_cfg``) is stored with the features, so every loader writes the same
        five fields first (loader, identifier, resolved name, pretrained, source) and its own after.
        ``device``, when given, moves the module there.
        """
        if device is not None:
            module = module.to(device)
        return cls(
            module=module.eval(),
            preprocess=preprocess,
            default_layer=default_layer,
            default_token=default_token,
            pretrained_cfg={
                "loader": loader,
                "identifier": spec.identifier,
                "resolved": spec.identifier if resolved is None else resolved,
                "pretrained": bool(pretrained),
                "source": source,
                **record,
            },
        )


@dataclass(frozen=True)
class ModelSpec:
    """One model of a config.

    ``layer=None`` taps the loader's default (``LoadedModel.default_layer``); ``token=None`` uses
    the loader's default token. ``weights`` is an optional local file (already resolved against
    the config file's directory). ``preprocess`` overrides fields of the loader's transform,
    e.g. ``{resize: 256, crop: 224}`` for models the study ran with the SSL transform.
    """

    id: str
    loader: str
    identifier: str
    layer: str | None = None
    token: str | None = None
    weights: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # here rather than in the loader: a misspelt option would otherwise be ignored in silence,
        # and a config is refused when it is read, before any model is built
        from repsim.config import check_keys

        where = f"model {self.id!r}: options of loader '{self.loader}'"
        if self.loader in LOADER_OPTIONS:
            check_keys(self.options, LOADER_OPTIONS[self.loader], where)
        if not isinstance(self.options.get("weights_only", True), bool):
            raise ConfigError(
                f"{where}: weights_only must be true or false, got {self.options['weights_only']!r}"
            )

    @property
    def embed_dim(self) -> int | None:
        """The embedding dim the config expects (metadata), or None."""
        dim = self.metadata.get("embed_dim")
        return None if dim is None else int(dim)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for run.json and store attributes)."""
        return {
            "id": self.id,
            "loader": self.loader,
            "identifier": self.identifier,
            "layer": self.layer,
            "token": self.token,
            "weights": None if self.weights is None else str(self.weights),
            "options": dict(self.options),
            "preprocess": dict(self.preprocess),
            "metadata": dict(self.metadata),
        }


def spec_from_entry(
    entry: Mapping[str, Any], known_loaders: Iterable[str] | None = None
) -> ModelSpec:
    """Validate one config entry and build its :class:`ModelSpec`."""
    from repsim.config import (
        check_id,
        check_keys,
        did_you_mean,
        is_note,
        resolve_path,
        whole_number,
    )

    if not isinstance(entry, Mapping):
        raise ConfigError(f"a models: entry must be a mapping, got {entry!r}")
    name = entry.get("id")
    where = f"model entry {name!r}" if name else f"model entry {dict(entry)!r}"
    if name is None or name == "":
        raise ConfigError(f"{where} has no 'id'; give every model a unique string id")
    check_id(name, "model")
    check_keys(entry, _SPEC_KEYS, where)
    loader = entry.get("loader")
    if not loader:
        raise ConfigError(f"{where} has no 'loader'")
    if known_loaders is not None:
        known = sorted(known_loaders)
        if loader not in known:
            raise ConfigError(
                f"{where}: unknown loader {loader!r}{did_you_mean(loader, known)}; "
                f"registered loaders are {known}"
            )
    identifier = entry.get("identifier")
    if identifier is None or identifier == "":
        raise ConfigError(f"{where} has no 'identifier' (e.g. a timm name, 'RN50:openai')")
    if not isinstance(identifier, str):
        raise ConfigError(
            f"{where}: 'identifier' must be a string (e.g. a timm name, 'RN50:openai'), got "
            f"{identifier!r} ({type(identifier).__name__})"
        )
    token = entry.get("token")
    if token is not None and token not in TOKENS:
        raise ConfigError(
            f"{where}: token {token!r} is not one of {TOKENS}{did_you_mean(token, TOKENS)}"
        )
    for key in ("layer", "weights"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: '{key}' must be a string (or null), got {value!r}")
    for key in ("options", "preprocess", "metadata"):
        if entry.get(key) is not None and not isinstance(entry.get(key), Mapping):
            raise ConfigError(f"{where}: '{key}' must be a mapping")
    metadata = dict(entry.get("metadata") or {})
    # a misspelt key (objectve:) left the model without its category in every grouping
    check_keys(metadata, SPEC_METADATA_KEYS, f"{where}: metadata", hint=_METADATA_HINT)
    if metadata.get("embed_dim") is not None:
        dim = metadata["embed_dim"]
        dim = int(dim) if isinstance(dim, str) and dim.isdecimal() else whole_number(dim)
        if dim is None or dim < 1:  # int() truncated 768.5 to 768
            raise ConfigError(
                f"{where}: metadata.embed_dim must be a positive integer (or null), got "
                f"{metadata['embed_dim']!r}"
            )
        metadata["embed_dim"] = dim
    seed = metadata.get("seed")
    if seed is not None and ((n := whole_number(seed)) is None or n < 0):
        raise ConfigError(
            f"{where}: metadata.seed must be a whole number of at least 0 (or null), got {seed!r}"
        )
    for key in ("params_m", "image_params_m"):  # read as numbers into the result files
        value = metadata.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(
                f"{where}: metadata.{key} must be a positive number of millions of parameters "
                f"(or null), got {value!r}"
            )
    preprocess = dict(entry.get("preprocess") or {})
    check_keys(preprocess, PreprocessSpec.__dataclass_fields__, f"{where}: preprocess")
    preprocess = {k: v for k, v in preprocess.items() if not is_note(k)}
    try:  # the values, before any model is loaded: they override the loader's own transform
        _NEUTRAL_PREPROCESS.replace(**preprocess)
    except ConfigError as exc:
        raise ConfigError(f"{where}: preprocess: {exc}") from None
    return ModelSpec(
        id=name,
        loader=str(loader),
        identifier=identifier,
        layer=entry.get("layer"),
        token=token,
        weights=resolve_path(entry.get("weights"), dict(entry)),
        options=dict(entry.get("options") or {}),
        preprocess=preprocess,
        metadata=metadata,
    )
