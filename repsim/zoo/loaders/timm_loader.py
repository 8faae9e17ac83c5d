"""The ``timm`` loader: ``identifier`` is a timm model name, optionally with a pretrained tag.

A local file is loaded with the model's own checkpoint filter and must cover every parameter; options are passed
to ``timm.create_model`` (e.g. ``img_size: 224`` for DINOv2). The model is built without its
classifier (``num_classes=0``), so its own output is the pooled pre-logits feature.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from repsim.config import did_you_mean
from repsim.errors import ModelError
from repsim.zoo.loaders.checkpoint_loader import load_into
from repsim.zoo.registry import register_loader
from repsim.zoo.spec import LoadedModel, ModelSpec, PreprocessSpec
from repsim.zoo.weights import (
    WeightsSource,
    hf_cache_dir,
    hf_cached,
    hf_source,
    is_offline,
    local_weights,
    missing,
    register_locator,
    url_cache_path,
    url_source,
)

_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def resolve_pretrained_cfg(name: str, model_id: str, prefix: str = "") -> Any:
    """timm's pretrained config for ``name`` (the default tag when none is given). An unknown
    architecture or tag is a ModelError naming the model and timm's closest name (from its local
    list); the checkpoint loader's ``timm:NAME`` (``prefix``) uses it too, for timm's own error
    named neither."""
    import timm
    from timm.models import get_pretrained_cfg

    arch = name.split(".")[0]
    known = timm.list_models()
    if arch not in known:
        form = f"{prefix}NAME with a NAME" if prefix else "a name"
        raise ModelError(
            f"model {model_id!r}: timm has no architecture {arch!r}{did_you_mean(arch, known)}; "
            f"set 'identifier' to {form} of timm.list_models() (timm {timm.__version__})"
        )
    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None and "." in name:
        tags = timm.list_pretrained(f"{arch}.*")
        raise ModelError(
            f"model {model_id!r}: timm has no pretrained tag {name!r}{did_you_mean(name, tags)}; "
            f"available: {tags[:12]}"
        )
    return cfg


def _check_offline_cache(spec: ModelSpec, cfg: Any) -> None:
    if cfg is None:
        raise missing(spec, "pretrained weights (timm lists none for this architecture)")
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split(":")[0]
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES
        if hf_cached(repo, files):
            return
        raise missing(spec, f"timm weights {repo}", hf_cache_dir(repo))
    if cfg.url:
        path = url_cache_path(cfg.url)
        if path.exists():
            return
        raise missing(spec, f"timm weights {cfg.url}", path)
    raise missing(spec, "timm weights (no download source)")


@register_locator("timm")
def locate(spec: ModelSpec) -> WeightsSource:
    """Where timm would take ``spec``'s pretrained weights from (HF repo or URL), cache first."""
    cfg = resolve_pretrained_cfg(spec.identifier, spec.id)
    if cfg is None:
        raise missing(spec, "pretrained weights (timm lists none for this architecture)")
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split(":")[0]
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES
        return hf_source(spec, repo, files, f"timm weights {repo}")
    if cfg.url:
        return url_source(spec, cfg.url, f"timm weights {cfg.url}")
    raise missing(spec, "timm weights (no download source)")


def preprocess_from_data_config(data_cfg: dict[str, Any]) -> PreprocessSpec:
    """timm's eval transform (resize to ``floor(size / crop_pct)``, centre crop) as a spec."""
    size = int(data_cfg["input_size"][-1])
    crop_pct = float(data_cfg.get("crop_pct") or 1.0)
    mode = data_cfg.get("crop_mode", "center")
    resize = size if mode == "squash" else int(math.floor(size / crop_pct))
    interp = data_cfg.get("interpolation", "bicubic")
    return PreprocessSpec(
        resize=resize,
        crop=size,
        mean=tuple(float(v) for v in data_cfg["mean"]),
        std=tuple(float(v) for v in data_cfg["std"]),
        interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bicubic",
        resize_mode="squash" if mode == "squash" else "shortest",
    )


@register_loader("timm")
def load_timm(spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu") -> LoadedModel:
    """Build a timm model (pretrained from a local file, the HF cache, or a download)."""
    import timm
    from timm.data import resolve_data_config

    cfg = resolve_pretrained_cfg(spec.identifier, spec.id)
    kwargs: dict[str, Any] = {"num_classes": 0, **dict(spec.options)}
    kwargs.pop("weights_only", None)
    source = "random-init"
    name = spec.identifier
    path = None
    if pretrained:
        path = local_weights(spec)
        if path is not None:
            source = str(path)
        else:
            if is_offline():
                _check_offline_cache(spec, cfg)
            source = (cfg.hf_hub_id or cfg.url) if cfg is not None else "timm"
            found = locate(spec) if cfg is not None else None
            if found is not None and found.kind == "cached":
                # load the cached file directly: timm would otherwise ask the hub for a newer
                # revision first, which without network means retries and timeouts in every task
                kwargs["pretrained_cfg_overlay"] = {"file": found.where}
        if cfg is not None and "." not in name:
            name = f"{cfg.architecture}.{cfg.tag}"
    local = path is not None
    try:
        with torch.device(device):
            model = timm.create_model(name, pretrained=pretrained and not local, **kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise ModelError(f"model {spec.id!r}: timm.create_model({name!r}) failed: {exc}") from exc
    if local:
        # timm loads a file non-strictly when the classifier is dropped (num_classes=0), so a file
        # missing some weights would load silently; load_into requires every parameter covered
        from timm.models import load_state_dict as timm_state_dict

        try:
            state = timm_state_dict(str(path), use_ema=True)
        except Exception as exc:  # a truncated or damaged file
            raise ModelError(
                f"model {spec.id!r}: cannot read weights file {path}: {type(exc).__name__}: {exc}. "
                "Download it again, or fix the 'weights:' path"
            ) from exc
        load_into(model, state, spec, f"timm:{name}")
    data_cfg = resolve_data_config(model=model)
    if "img_size" in spec.options:
        size = int(spec.options["img_size"])
        data_cfg["input_size"] = (3, size, size)
    resolved = model.pretrained_cfg or {}
    return LoadedModel.built(
        spec,
        model,
        preprocess_from_data_config(data_cfg),
        loader="timm",
        pretrained=pretrained,
        source=source,
        resolved=f"{resolved.get('architecture', name)}.{resolved.get('tag', '')}".rstrip("."),
        options=dict(spec.options),
    )
