"""A run plan: the validated contents of a config, checked before any work starts.

Everything that can be wrong with a config (unknown loader, missing dataset files, unknown measure,
a missing weights file) is found here, in seconds, rather than an hour into extraction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repsim.config import load_config
from repsim.errors import ConfigError, InputError

DEFAULT_MEASURES = (
    "cka_linear",
    "cka_rbf_0.2",
    "cka_rbf_0.4",
    "cka_rbf_0.8",
    "rsa_spearman",
    "mutual_knn_10",
)

# metadata fields carried as coords on the model dims of the result files
MODEL_COORDS = (
    "objective",
    "method",
    "architecture_class",
    "architecture",
    "data_class",
    "size_class",
    "params_m",
    "embed_dim",
)


@dataclass(frozen=True)
class RunPlan:
    """What a run does: models, datasets, measures and stage options, all validated."""

    name: str
    config_path: str
    models: tuple[Any, ...]
    datasets: tuple[Any, ...]
    measures: tuple[str, ...]
    stimuli: dict[str, Any] = field(default_factory=dict)
    extract: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    similarity: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def probes_enabled(self) -> bool:
        return bool(self.probe.get("enabled", True))

    def model(self, model_id: str) -> Any:
        return next(m for m in self.models if m.id == model_id)


def load_plan(config_path: str | Path) -> RunPlan:
    """Read a config and validate it completely (specs, measures, files), before any work."""
    from repsim.measures import parse_measure
    from repsim.stimuli import parse_datasets
    from repsim.zoo import parse_models

    raw = load_config(config_path)
    if not raw.get("models"):
        raise ConfigError(f"{config_path}: no models configured (a 'models:' list, or include a file with one)")
    if not raw.get("datasets"):
        raise ConfigError(f"{config_path}: no datasets configured (a 'datasets:' list)")
    models = tuple(parse_models(raw["models"]))
    datasets = tuple(parse_datasets(raw["datasets"], defaults=raw.get("stimuli")))
    models, datasets = _select(models, datasets, raw.get("select") or {}, config_path)
    measures = tuple(raw.get("measures") or DEFAULT_MEASURES)
    for name in measures:
        try:
            parse_measure(name)
        except InputError as exc:
            raise ConfigError(f"{config_path}: measures: {exc}") from None
    probe = {"enabled": True, **(raw.get("probe") or {})}
    extract = {"batch_size": 256, "precision": "float32", **(raw.get("extract") or {})}
    from repsim.extract import check_precision

    try:
        check_precision(extract["precision"])
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    plan = RunPlan(
        name=str(raw["name"]),
        config_path=str(raw["_path"]),
        models=models,
        datasets=datasets,
        measures=measures,
        stimuli={"max_images": 10000, "seed": 42, **(raw.get("stimuli") or {})},
        extract=extract,
        probe=probe,
        similarity={**(raw.get("similarity") or {})},
        threads=int(raw["threads"]) if raw.get("threads") else None,
        raw=raw,
    )
    _check_files(plan)
    return plan


def _select(models: tuple, datasets: tuple, select: dict[str, Any], config_path: Any) -> tuple[tuple, tuple]:
    """Keep the models and datasets named under ``select:`` (in that order), e.g. for a small run."""
    out = []
    for kind, items in (("models", models), ("datasets", datasets)):
        wanted = select.get(kind)
        if not wanted:
            out.append(items)
            continue
        by_id = {item.id: item for item in items}
        unknown = [w for w in wanted if w not in by_id]
        if unknown:
            raise ConfigError(
                f"{config_path}: select.{kind} names unknown ids {unknown}; known: {sorted(by_id)}"
            )
        out.append(tuple(by_id[w] for w in wanted))
    return out[0], out[1]


def _check_files(plan: RunPlan) -> None:
    missing = [
        f"model {m.id}: weights file {m.weights}"
        for m in plan.models
        if getattr(m, "weights", None) is not None and not Path(m.weights).is_file()
    ]
    if missing:
        raise ConfigError(
            "files named in the config are missing:\n  " + "\n  ".join(missing)
            + "\nFix the paths in the config, or recreate the files (mini-zoo: `repsim minizoo train`)."
        )


def file_fingerprint(path: str | Path | None) -> str | None:
    """Content hash of a small file (weights), so retraining a model invalidates its features."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    if p.stat().st_size > 64 * 2**20:
        st = p.stat()
        return f"size={st.st_size}"
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def model_metadata(spec: Any) -> dict[str, Any]:
    """The metadata fields of MODEL_COORDS for one model spec (NaN/'' where unknown)."""
    meta = dict(getattr(spec, "metadata", {}) or {})
    out: dict[str, Any] = {}
    for key in MODEL_COORDS:
        value = meta.get(key, getattr(spec, key, None))
        if key in ("params_m", "embed_dim"):
            out[key] = float(value) if value is not None else float("nan")
        else:
            out[key] = "" if value is None else str(value)
    return out
