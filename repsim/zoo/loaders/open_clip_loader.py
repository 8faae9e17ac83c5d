"""The ``open_clip`` loader: ``identifier`` is ``"ARCH:TAG"`` (tag optional for a random init).

Only the image tower is kept. It is wrapped so that it is tappable as ``visual`` (the study's
layer name): the tower's output is the projected image embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repsim.config import did_you_mean
from repsim.errors import ModelError, brief
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

_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ImageTower(torch.nn.Module):
    """An open_clip image tower under the name ``visual``."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def split_identifier(identifier: str) -> tuple[str, str | None]:
    arch, _, tag = identifier.partition(":")
    return arch, (tag or None)


def _check_tag(spec: ModelSpec, arch: str, tag: str) -> dict[str, Any]:
    import open_clip

    known = open_clip.list_models()
    if arch not in known:
        raise ModelError(
            f"model {spec.id!r}: open_clip has no architecture {arch!r}{did_you_mean(arch, known)}; "
            "set 'identifier' to ARCH:TAG with an ARCH of open_clip.list_models()"
        )
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ModelError(
            f"model {spec.id!r}: open_clip has no tag {tag!r} for {arch}{did_you_mean(tag, tags)}; "
            f"available: {tags}"
        )
    return cfg


def _check_offline_cache(spec: ModelSpec, cfg: dict[str, Any]) -> None:
    hub = cfg.get("hf_hub") or ""
    if hub:
        repo_id = "/".join(hub.rstrip("/").split("/")[:2])
        rest = hub.rstrip("/").split("/")[2:]
        files = ("/".join(rest),) if rest else _HF_FILES
        if hf_cached(repo_id, files):
            return
        raise missing(spec, f"open_clip weights {repo_id}", hf_cache_dir(repo_id))
    url = cfg.get("url") or ""
    if url:
        path = Path("~/.cache/clip").expanduser() / url.split("/")[-1]
        if path.exists() or url_cache_path(url).exists():
            return
        raise missing(spec, f"open_clip weights {url}", path)
    raise missing(spec, "open_clip weights (no download source)")


@register_locator("open_clip")
def locate(spec: ModelSpec) -> WeightsSource:
    """Where open_clip would take ``spec``'s pretrained weights from (HF repo or URL), cache first."""
    arch, tag = split_identifier(spec.identifier)
    if tag is None:
        raise missing(spec, "pretrained weights (no tag in 'ARCH:TAG' and no 'weights:' file)")
    cfg = _check_tag(spec, arch, tag)
    hub = (cfg.get("hf_hub") or "").rstrip("/")
    if hub:
        repo_id = "/".join(hub.split("/")[:2])
        rest = hub.split("/")[2:]
        files = ("/".join(rest),) if rest else _HF_FILES
        return hf_source(spec, repo_id, files, f"open_clip weights {repo_id}")
    url = cfg.get("url") or ""
    if url:
        clip_cache = Path("~/.cache/clip").expanduser() / url.split("/")[-1]
        return url_source(spec, url, f"open_clip weights {url}", cached=[clip_cache])
    raise missing(spec, "open_clip weights (no download source)")


def preprocess_for(visual_cfg: dict[str, Any], tag_cfg: dict[str, Any]) -> PreprocessSpec:
    """open_clip's eval transform: resize (shortest side or squash) then centre crop."""
    merged = {
        **visual_cfg,
        **{
            k: v for k, v in tag_cfg.items() if k in ("mean", "std", "interpolation", "resize_mode")
        },
    }
    size = merged.get("size", 224)
    size = int(size[-1] if isinstance(size, (tuple, list)) else size)
    mode = merged.get("resize_mode", "shortest")
    return PreprocessSpec(
        resize=size,
        crop=size,
        mean=tuple(float(v) for v in merged["mean"]),
        std=tuple(float(v) for v in merged["std"]),
        interpolation=merged.get("interpolation", "bicubic"),
        resize_mode="squash" if mode == "squash" else "shortest",
    )


@register_loader("open_clip")
def load_open_clip(spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu") -> LoadedModel:
    """Build an open_clip model and keep its image tower."""
    import open_clip

    arch, tag = split_identifier(spec.identifier)
    tag_cfg = _check_tag(spec, arch, tag) if tag else {}
    weights: str | None = None
    source = "random-init"
    if pretrained:
        path = local_weights(spec)
        if path is not None:
            weights = source = str(path)
        elif tag is None:
            raise missing(spec, "pretrained weights (no tag in 'ARCH:TAG' and no 'weights:' file)")
        else:
            if is_offline():
                _check_offline_cache(spec, tag_cfg)
            weights = tag
            source = tag_cfg.get("hf_hub") or tag_cfg.get("url") or tag
    opts = {k: v for k, v in spec.options.items() if k != "weights_only"}
    try:
        with torch.device(device):
            model = open_clip.create_model(
                arch, pretrained=weights, device=device, require_pretrained=bool(weights), **opts
            )
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise ModelError(
            f"model {spec.id!r}: open_clip.create_model({arch!r}) failed: {brief(exc)}"
        ) from exc
    visual = model.visual
    pre = preprocess_for(dict(getattr(visual, "preprocess_cfg", {}) or {}), tag_cfg)
    del model
    return LoadedModel.built(
        spec,
        ImageTower(visual),
        pre,
        loader="open_clip",
        pretrained=pretrained,
        source=source,
        default_layer="visual",
        options=dict(spec.options),
    )
