"""Dataset specs as data: a frozen :class:`DatasetSpec` per ``datasets:`` entry of a config.

Parsing validates everything that can be checked without reading images (known loader, unique
ids, a path or URL where the loader needs one, a known domain category), so a bad config fails
before any extraction starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repsim.config import CONFIG_DIR_KEY, SPLITS, parse_entries, resolve_path, whole_number
from repsim.errors import ConfigError
from repsim.names import DOMAINS

LOADER_NAMES = ("embedded", "torchvision", "wds", "imagefolder", "breeds")
# which location field each loader needs (any one of them)
_NEEDS = {
    "embedded": ("path",),
    "torchvision": ("root",),
    "wds": ("path", "url"),
    "imagefolder": ("path",),
    "breeds": ("root",),
}
_KNOWN = {
    "id",
    "name",
    "loader",
    "path",
    "root",
    "url",
    "domain",
    "n_classes",
    "options",
    "max_images",
    "per_class",
    "seed",
    "source",
    CONFIG_DIR_KEY,
}
#: ``options:`` keys each loader reads
_COMMON_OPTIONS = ("verify", "min_side")
_FOLDER_OPTIONS = ("splits", "test_fraction", *_COMMON_OPTIONS)
LOADER_OPTIONS: dict[str, tuple[str, ...]] = {
    "embedded": ("verify",),
    "imagefolder": _FOLDER_OPTIONS,
    # ImageNet's folders, read like imagefolder, grouped into superclasses
    "breeds": ("task", "hierarchy", "split_type", "class_map", "superclasses", *_FOLDER_OPTIONS),
    "torchvision": ("name", "download", "splits", "kwargs", "test_fraction", "verify"),
    "wds": ("cache", "download", "wds_splits", *_COMMON_OPTIONS),
}


#: loaders whose ``root`` holds data the user provides (ImageNet for BREEDS), part of the
#: dataset's fingerprint; a torchvision root is written and checked by the library itself
USER_ROOTS = ("breeds",)
#: ``options:`` that name files defining the labels, part of the dataset's fingerprint
FILE_OPTIONS: dict[str, tuple[str, ...]] = {"breeds": ("hierarchy", "class_map")}


@dataclass(frozen=True)
class DatasetSpec:
    """One stimulus dataset: where it is, how to load it, and how to subsample it for similarity.

    Paths are already resolved against the config file they were written in.
    """

    id: str
    loader: str
    domain: str
    name: str = ""
    path: Path | None = None
    root: Path | None = None
    url: str | None = None
    n_classes: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    max_images: int = 10000
    per_class: int | None = None
    seed: int = 42
    split: str = "train"  # the split the similarity subset is drawn from (config stimuli.split)
    source: str = ""
    config_dir: Path | None = None

    def resolve(self, value: str | Path | None) -> Path | None:
        """A path from ``options`` resolved against the config file the entry came from."""
        if value is None:
            return None
        entry = {CONFIG_DIR_KEY: str(self.config_dir)} if self.config_dir else {}
        p = resolve_path(value, entry)
        return Path(os.path.normpath(p)) if p is not None else None

    def data_paths(self) -> dict[str, Path]:
        """The files and folders whose content makes this dataset's images and labels, by role
        (``path``, a user-provided ``root``, options naming files): what
        :func:`repsim.fingerprint.data_fingerprint` identifies the data by."""
        paths = {"path": self.path} if self.path is not None else {}
        if self.root is not None and self.loader in USER_ROOTS:
            paths["root"] = self.root
        for option in FILE_OPTIONS.get(self.loader, ()):
            value = self.resolve(self.options.get(option))
            if value is not None:
                paths[f"options.{option}"] = value
        return paths

    @property
    def location(self) -> str:
        """The path, root or URL of the data, for messages and tables."""
        return str(self.path or self.root or self.url or "")


def _path(value: str | Path | None, entry: Mapping[str, Any]) -> Path | None:
    p = resolve_path(value, dict(entry))
    return Path(os.path.normpath(p)) if p is not None else None


def _int_or_none(entry: Mapping[str, Any], key: str, default: int | None, where: str) -> int | None:
    value = entry.get(key, default)
    if value is None:
        return None
    whole = whole_number(value)  # 1e4 in YAML is the float 10000.0
    if whole is None or whole < 1:
        raise ConfigError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return whole


def parse_dataset(
    entry: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> DatasetSpec:
    """Turn one YAML ``datasets:`` entry into a validated :class:`DatasetSpec`.

    ``defaults`` (the config's ``stimuli:`` block) supplies ``max_images``, ``per_class`` and
    ``seed`` where the entry does not set them, and ``split`` (checked by the config section).
    """
    from repsim.config import check_id, check_keys, did_you_mean

    if not isinstance(entry, Mapping):
        raise ConfigError(f"each datasets: entry must be a mapping, got {entry!r}")
    ds_id = entry.get("id")
    if ds_id is None or ds_id == "":
        raise ConfigError(f"dataset entry {dict(entry)!r} has no 'id'; add a unique id string")
    check_id(ds_id, "dataset", allow_slash=True)
    where = f"dataset '{ds_id}'"
    check_keys(entry, _KNOWN, where, " (loader-specific settings go under 'options:')")
    loader = entry.get("loader")
    if loader not in LOADER_NAMES:
        raise ConfigError(
            f"{where}: unknown loader {loader!r}{did_you_mean(loader, LOADER_NAMES)}; "
            f"choose one of {', '.join(LOADER_NAMES)}"
        )
    domain = entry.get("domain")
    if domain not in DOMAINS:
        raise ConfigError(
            f"{where}: domain {domain!r} is not one of {', '.join(map(repr, DOMAINS))}"
            f"{did_you_mean(domain, DOMAINS)}"
        )
    if not any(entry.get(k) for k in _NEEDS[loader]):
        raise ConfigError(
            f"{where}: loader '{loader}' needs {' or '.join(_NEEDS[loader])}; add it to the entry"
        )
    for key in ("path", "root", "url", "name", "source"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
    options = entry.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: 'options' must be a mapping")
    if loader in LOADER_OPTIONS:
        check_keys(options, LOADER_OPTIONS[loader], f"{where}: options of loader '{loader}'")
    _check_option_values(options, where)
    if "min_side" in options:  # 64.0 (from 6.4e1) hashes and compares as 64
        options = {**options, "min_side": whole_number(options["min_side"])}
    defaults = defaults or {}
    given = entry.get("seed", defaults.get("seed", 42))
    seed = whole_number(given)
    if seed is None or seed < 0:  # numpy's rule for seeds
        raise ConfigError(f"{where}: 'seed' must be a non-negative integer, got {given!r}")
    url = entry.get("url")
    return DatasetSpec(
        id=ds_id,
        loader=loader,
        domain=domain,
        name=str(entry.get("name") or ds_id),
        path=_path(entry.get("path"), entry),
        root=_path(entry.get("root"), entry),
        url=str(url) if url else None,
        n_classes=_int_or_none(entry, "n_classes", None, where),
        options=dict(options),
        max_images=_int_or_none(entry, "max_images", defaults.get("max_images", 10000), where)
        or 10000,
        per_class=_int_or_none(entry, "per_class", defaults.get("per_class"), where),
        seed=seed,
        split=str(defaults.get("split") or "train"),
        source=str(entry.get("source") or ""),
        config_dir=Path(entry[CONFIG_DIR_KEY]) if entry.get(CONFIG_DIR_KEY) else None,
    )


def _check_option_values(options: Mapping[str, Any], where: str) -> None:
    """The values of the shared ``options:`` keys, checked with the config (not when a task
    first reads them): ``min_side``, ``test_fraction``, ``splits``, ``wds_splits``, ``verify``."""
    from repsim.stimuli.loaders.files import VERIFY_LEVELS

    if "min_side" in options:
        v = options["min_side"]
        if whole_number(v) is None or v < 1:
            raise ConfigError(f"{where}: options.min_side must be a whole number >= 1, got {v!r}")
    if "test_fraction" in options:
        v = options["test_fraction"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise ConfigError(
                f"{where}: options.test_fraction must be a number between 0 and 1 (e.g. 0.2), "
                f"got {v!r}"
            )
    if "splits" in options and options["splits"] is not None:
        v = options["splits"]
        if not isinstance(v, Mapping) or not all(isinstance(x, str) for x in v.values()):
            raise ConfigError(
                f"{where}: options.splits must map split names to folder names, e.g. "
                f"{{train: training, test: validation}}, got {v!r}"
            )
    if "wds_splits" in options:
        v = options["wds_splits"]
        if (
            not isinstance(v, list)
            or not v
            or not all(isinstance(x, str) and x in SPLITS for x in v)
        ):
            raise ConfigError(
                f"{where}: options.wds_splits must list the splits to download, from "
                f"{', '.join(SPLITS)} (e.g. [test]), got {v!r}"
            )
    if "verify" in options and options["verify"] not in VERIFY_LEVELS:
        raise ConfigError(
            f"{where}: options.verify must be one of {', '.join(VERIFY_LEVELS)}, "
            f"got {options['verify']!r}"
        )


def parse_datasets(
    entries: Iterable[Mapping[str, Any]] | None, defaults: Mapping[str, Any] | None = None
) -> list[DatasetSpec]:
    """Parse a config's ``datasets:`` list; ids must be unique. Every bad entry is named, all of
    them in one ConfigError."""
    return parse_entries(
        entries,
        lambda entry: parse_dataset(entry, defaults),
        "dataset",
        "dataset id '{id}' appears twice in the config; ids must be unique",
    )
