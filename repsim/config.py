"""Reading run configs: YAML files with optional ``include:`` of other YAML files.

A config names models, datasets, measures and run options. This module only reads and merges
the YAML; :mod:`repsim.zoo` and :mod:`repsim.stimuli` turn the ``models:`` and ``datasets:``
entries into validated specs. Relative paths inside a config are relative to the file that
contains them (``resolve_path``), so configs work from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from repsim.errors import ConfigError

CONFIG_DIR_KEY = "_config_dir"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping, raising ConfigError with the file name on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path to a YAML config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level, got {type(data).__name__}")
    return data


def _tag_dir(entries: list, directory: Path) -> list:
    """Remember the directory each list entry came from, for relative paths."""
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = {CONFIG_DIR_KEY: str(directory), **entry}
        out.append(entry)
    return out


def load_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load a config and everything it includes.

    ``include: [a.yaml, b.yaml]`` merges the included files first; lists (``models``, ``datasets``)
    are concatenated in order, mappings are merged with the including file winning. Every
    dict entry of ``models``/``datasets`` carries ``_config_dir`` so relative paths resolve
    against the file it was written in.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config include cycle: {' -> '.join(map(str, (*_seen, path)))}")
    raw = read_yaml(path)
    name = raw.get("name", path.stem)
    merged: dict[str, Any] = {}
    includes = raw.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    for inc in includes:
        sub = load_config(path.parent / inc, (*_seen, path))
        _merge_into(merged, sub)
    for key in ("models", "datasets"):
        if key in raw:
            if not isinstance(raw[key], list):
                raise ConfigError(f"{path}: '{key}' must be a list")
            raw[key] = _tag_dir(raw[key], path.parent)
    _merge_into(merged, raw)
    merged["name"] = name
    merged["_path"] = str(path)
    return merged


def _merge_into(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, list) and isinstance(base.get(key), list):
            base[key] = base[key] + value
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value


def resolve_path(value: str | Path | None, entry: dict[str, Any]) -> Path | None:
    """Resolve a path written in a config entry relative to that entry's config file."""
    if value is None:
        return None
    p = Path(str(value)).expanduser()
    if p.is_absolute() or CONFIG_DIR_KEY not in entry:
        return p
    return Path(entry[CONFIG_DIR_KEY]) / p
