"""A run plan: the validated contents of a config, checked before any work starts.

Everything that can be wrong with a config (an unknown key or loader, a value of the wrong type,
an unknown measure or one that needs more stimuli than a dataset gives, a model that does not
build, a weights file that is missing, truncated or for another architecture, weights that cannot
be downloaded, a dataset whose files are not there) is found here, in seconds, rather than an hour
into extraction.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from errno import ENAMETOOLONG
from pathlib import Path
from typing import Any

from repsim.config import (
    RunConfig,
    check_keys,
    collecting,
    did_you_mean,
    load_config,
    parse_config,
    raise_collected,
    select_ids,
)
from repsim.errors import ConfigError, DatasetError, InputError, MissingWeightsError, ModelError
from repsim.names import MODEL_FIELDS, NUMERIC_MODEL_FIELDS
from repsim.pathcheck import stat_problem

log = logging.getLogger(__name__)

#: The feature width assumed for a model whose width is not known before it runs (no
#: ``metadata.embed_dim`` and no meta-device check): as wide as the widest feature of the study's
#: zoo (VGG-16/19's fully connected layer, 4096; EfficientNet-B6/B7 pool to 2304/2560), so the
#: free-space estimate errs on the large side for such a model.
UNKNOWN_DIM_BOUND = 4096

DEFAULT_MEASURES = (
    "cka_linear",
    "cka_rbf_0.2",
    "cka_rbf_0.4",
    "cka_rbf_0.8",
    "rsa_spearman",
    "mutual_knn_10",
)


@dataclass(frozen=True)
class RunPlan:
    """What a run does: models, datasets, measures and stage options, all validated.

    ``stimuli``, ``extract``, ``probe`` and ``similarity`` are the options as plain dicts (what
    the stages hash into their cache keys); ``config`` holds the same options as typed, frozen
    sections (:class:`repsim.config.RunConfig`).
    """

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
    config: RunConfig | None = field(default=None, compare=False, repr=False)
    #: each dataset's data fingerprint, taken once per plan (a run), not once per model: the
    #: listing of a large image folder (ImageNet for BREEDS) takes seconds
    data_fingerprints: dict[str, str | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: each model's feature width as the meta-device check found it (filled by load_plan)
    feature_dims: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: the kind of device the run computes on (``cpu``, ``cuda``; filled by the run): it sets
    #: kernels and memory budgets, so the last bits of every number, and is in the stage keys
    device_type: str | None = field(default=None, compare=False, repr=False)

    def numerics(self, *, batch: bool = False) -> tuple[Any, ...]:
        """What fixes the last bits of a stage's numbers besides its inputs: the device type,
        the torch threads and, for extraction, the batch size (a rerun under other values reused
        results computed under the old ones, so the folder no longer reproduced its config)."""
        parts = (self.device_type, self.threads)
        return (*parts, self.extract.get("batch_size")) if batch else parts

    @property
    def similarity_inputs(self) -> dict[str, Any]:
        """The similarity options that can change its numbers: all but ``progress``, which only
        shows bars (in the stage key and the config hash, it redid every similarity part)."""
        return {k: v for k, v in self.similarity.items() if k != "progress"}

    @property
    def probes_enabled(self) -> bool:
        return bool(self.probe.get("enabled", True))

    def model(self, model_id: str) -> Any:
        return next(m for m in self.models if m.id == model_id)

    def feature_dim(self, model: Any) -> tuple[int, bool]:
        """A model's feature width and whether it is known (else :data:`UNKNOWN_DIM_BOUND`)."""
        dim = self.feature_dims.get(model.id) or getattr(model, "embed_dim", None)
        return (int(dim), True) if dim else (UNKNOWN_DIM_BOUND, False)

    def feature_bytes(self, rows: Mapping[str, int], models: Mapping[str, list[Any]]) -> int:
        """Bytes of float32 features the run writes: ``rows[dataset]`` stimuli for each of
        ``models[dataset]`` (the models to extract there), twice with ``extract.keep_raw``.

        Features only: each group's metadata, ids and digests (tens of KiB) are left out, which
        matters only for small runs, and zstd saves little on float32 features, so the estimate
        is close to the store's size and errs towards letting a run start.
        """
        copies = 2 if self.extract.get("keep_raw") else 1
        return sum(
            rows.get(ds, 0) * self.feature_dim(m)[0] * 4 * copies
            for ds, ms in models.items()
            for m in ms
        )

    def check_stimulus_counts(self, counts: Mapping[str, int]) -> None:
        """ConfigError when a measure needs more stimuli than a dataset's similarity subset has.

        ``counts``: dataset id -> number of similarity stimuli (known once the stimulus tables
        are written, before any image is decoded for features). Every offending pair is listed.
        """
        _check_counts(self.measures, counts, self.config_path, bound=False)


def _check_counts(
    measures: tuple[str, ...], counts: Mapping[str, int], where: str, *, bound: bool
) -> None:
    from repsim.measures.registry import get_family, parse_measure

    has = "can have at most" if bound else "has"
    specs = {m: parse_measure(m) for m in measures}
    short = [(ds, n, m) for ds, n in counts.items() for m in measures if n < specs[m].min_n]
    if short:
        cap = " (stimuli.max_images and per_class cap the subset)" if bound else ""
        # a family's own fix first (mutual_knn: lower k), then the ones that fit every measure
        own = {get_family(specs[m].family).too_few_stimuli for _, _, m in short}
        fixes = ", ".join(
            [*(f for f in sorted(own) if f != "use more stimuli"), "drop the measure"]
        )
        raise ConfigError(
            f"{where}: measures do not fit the data{cap}:\n  "
            + "\n  ".join(
                f"{m} needs at least {specs[m].min_n} stimuli; dataset {ds!r} {has} {n} in its "
                "similarity subset"
                for ds, n, m in short
            )
            + f"\n{fixes[0].upper()}{fixes[1:]} from 'measures:', raise stimuli.max_images, or "
            "leave the dataset out with select: {datasets: [...]}"
        )


def load_plan(config_path: str | Path, *, check_models: bool = True) -> RunPlan:
    """Read a config and validate it completely, before any work.

    Config keys, types and ranges, ids, ``select:``, measures (also against the largest
    similarity subset each dataset can have), probe and similarity options against the functions
    that take them, files named in the config and, with ``check_models``, every model: built on
    the meta device, its weights file opened and matched against the architecture, and weights to
    be downloaded checked to be reachable (:func:`repsim.zoo.check.check_spec`).
    """
    from repsim.stimuli import parse_datasets
    from repsim.zoo import parse_models

    raw = load_config(config_path)
    # every problem of the config in one error, whichever part it is in: the options (a bad
    # section is checked as its defaults from here on), the entries, select:, measures and the
    # option keywords; select: is checked against a list only once all its entries are valid
    errors: list[str] = []
    cfg = parse_config(raw, errors)
    where = cfg.path
    if raw.get("models") in (None, []):
        errors.append(
            f"{where}: no models configured (a 'models:' list, or include a file with one)"
        )
    if raw.get("datasets") in (None, []):
        errors.append(f"{where}: no datasets configured (a 'datasets:' list)")
    entries: dict[str, list | None] = {"models": None, "datasets": None}
    with collecting(errors):
        entries["models"] = parse_models(cfg.models)
    with collecting(errors):
        entries["datasets"] = parse_datasets(cfg.datasets, defaults=cfg.stimuli.to_dict())
    selected: dict[str, list] = {}
    for kind, wanted in (("models", cfg.select.models), ("datasets", cfg.select.datasets)):
        if entries[kind]:  # none parsed: their own errors say why
            with collecting(errors):
                selected[kind] = select_ids(entries[kind], wanted, kind, where)
    measures = DEFAULT_MEASURES
    with collecting(errors):
        measures = _check_measures(cfg.measures or DEFAULT_MEASURES, where)
    with collecting(errors):
        _check_signatures(cfg)
    raise_collected(errors, f"{where} has {len(errors)} problems")
    plan = RunPlan(
        name=cfg.name,
        config_path=str(raw["_path"]),
        models=tuple(selected["models"]),
        datasets=tuple(selected["datasets"]),
        measures=measures,
        stimuli=cfg.stimuli.to_dict(),
        extract=cfg.extract.to_dict(),
        probe=cfg.probe.to_dict(),
        similarity=cfg.similarity.to_dict(),
        threads=cfg.threads,
        raw=raw,
        config=cfg,
    )
    _check_files(plan)
    _check_data_present(plan)
    _check_subset_sizes(plan)
    if check_models:
        _check_models(plan)
    return plan


def known_measures() -> tuple[str, ...]:
    """Measure names offered as did-you-mean suggestions: the defaults and every family's examples."""
    from repsim.measures.registry import FAMILIES

    examples = (e for family in FAMILIES.values() for e in family.examples)
    return tuple(dict.fromkeys((*DEFAULT_MEASURES, *examples)))


def _check_measures(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    from repsim.measures.registry import grammar, parse_measure, parse_measures

    unknown: dict[str, InputError] = {}
    for name in names:
        try:
            parse_measure(name)
        except InputError as exc:
            unknown[name] = exc
    if unknown:  # each named with its own reason and did-you-mean, the valid names once
        tail = f"; valid names: {grammar()}"
        parts = [
            f"{str(exc).removesuffix(tail)}{did_you_mean(n, known_measures())}"
            for n, exc in unknown.items()
        ]
        raise ConfigError(f"{where}: measures: " + "; ".join(parts) + tail)
    try:
        parse_measures(names)  # two spellings of one measure
    except InputError as exc:
        raise ConfigError(f"{where}: measures: {exc}") from None
    return tuple(names)


def _check_signatures(cfg: RunConfig) -> None:
    """Probe and similarity options must be keywords of the functions they are passed to."""
    from repsim.measures import similarity_matrices
    from repsim.probe import linear_probe

    errors: list[str] = []
    for func, options, section in (
        (linear_probe, cfg.probe.kwargs(), "probe"),
        (similarity_matrices, cfg.similarity.to_dict(), "similarity"),
    ):
        params = inspect.signature(func).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue  # a wrapper taking **kwargs passes everything on
        allowed = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "device"]
        with collecting(errors):
            check_keys(options, allowed, f"{cfg.path}: {section} (keywords of {func.__name__})")
    raise_collected(errors, f"{cfg.path}: the probe and similarity options have errors")


def _check_subset_sizes(plan: RunPlan) -> None:
    """Measures against the largest similarity subset each dataset can have (from its spec)."""
    bounds = {}
    for ds in plan.datasets:
        classes = getattr(ds, "n_classes", None)
        if getattr(ds, "per_class", None) is not None:
            if classes:
                bounds[ds.id] = ds.per_class * classes
        elif classes:  # ceil(max_images / c) from each of the c <= classes classes in the split
            bounds[ds.id] = max(c * math.ceil(ds.max_images / c) for c in range(1, classes + 1))
        # without n_classes there is no bound (max_images + C - 1 for C classes): the exact
        # counts are checked once the stimulus tables exist (RunPlan.check_stimulus_counts)
    _check_counts(plan.measures, bounds, plan.config_path, bound=True)


def _named(who: str, error: Exception) -> str:
    """The error's message, led by ``who`` (a model's id, "dataset 'x'") unless it names it."""
    text = str(error)
    return text if repr(who) in text or text.startswith(f"{who}:") else f"{who}: {text}"


def _check_models(plan: RunPlan) -> None:
    """Every model built on the meta device and its weights checked; all failures listed at once."""
    from repsim.zoo.check import check_specs

    t0 = time.perf_counter()
    pretrained = bool(plan.extract.get("pretrained", True))
    results = check_specs(plan.models, weights=pretrained, fetch=True)
    plan.feature_dims.update({c.spec.id: int(c.dim) for c in results if c.dim})
    errors = [c.error for c in results if c.error is not None]
    log.info(
        "checked %d models in %.1f s (meta device%s)",
        len(results),
        time.perf_counter() - t0,
        ", weights" if pretrained else "",
    )
    if not errors:
        return
    bad = [c.spec.id for c in results if c.error is not None]
    fix = (
        "Fix them: every model this run would use failed, so leaving them out leaves none "
        "(select: other models of the config, if it has more)"
        if len(bad) == len(results)
        else f"Fix them, or leave them out with select: {{models: [...]}} (not {', '.join(bad)})"
    )
    message = (
        f"{len(errors)} of {len(results)} models cannot be used, so nothing was run:\n  "
        + "\n  ".join(_named(c.spec.id, c.error) for c in results if c.error is not None)
        + f"\n{fix}. The datasets are opened later, by the run: `repsim datasets --config "
        f"{shlex.quote(plan.config_path)} --check` checks them now"
    )
    cls = (
        MissingWeightsError
        if all(isinstance(e, MissingWeightsError) for e in errors)
        else ModelError
    )
    raise cls(message)


def _check_files(plan: RunPlan) -> None:
    """Weights paths are what their loaders read; no weights or dataset path is too long for the
    filesystem."""
    unusable = [why for m in plan.models if (why := _weights_problem(m))]
    unusable += [
        f"dataset {ds.id}: {role}: {why}"
        for ds in plan.datasets
        for role, path in ds.data_paths().items()
        if (why := _too_long(path))
    ]
    if unusable:
        raise ConfigError(
            "files named in the config are missing or unusable:\n  "
            + "\n  ".join(unusable)
            + "\nFix the paths in the config, or recreate the files (mini-zoo: `repsim minizoo train`)."
        )


def _check_data_present(plan: RunPlan) -> None:
    """Every file and folder a dataset reads is there, before any work: a run that found one
    missing in its stimulus stage had already emptied a folder holding another config's results,
    and was recorded as failed, not refused. A dataset with a path that cannot be found is
    described by its data fingerprint when a closed folder hides it (the read fix), else by its
    loader, which says what belongs there and how to get it (opening it fails at once). The data
    themselves are read, and their damage reported, by the stimulus stage."""
    from repsim.fingerprint import data_fingerprint
    from repsim.stimuli import open_dataset

    problems = []
    for ds in plan.datasets:
        if not any(stat_problem(path) for path in ds.data_paths().values()):
            continue
        try:
            data_fingerprint(ds)
            open_dataset(ds)
        except DatasetError as exc:
            problems.append(_named(f"dataset {ds.id!r}", exc))
    if problems:
        raise DatasetError(
            "datasets cannot be opened, so nothing was run:\n  "
            + "\n  ".join(problems)
            + "\nFix the dataset entries (`repsim datasets --config "
            f"{shlex.quote(plan.config_path)}` lists what each dataset holds), or leave them out "
            "with select: {datasets: [...]}. The models are checked after the datasets: `repsim "
            f"models --config {shlex.quote(plan.config_path)} --check` checks them and their "
            "weights now"
        )


def _weights_problem(spec: Any) -> str | None:
    """Why ``spec``'s ``weights:`` cannot be read by its loader (missing, a folder where a file is
    read, too long a path), else None: a save_pretrained folder for hf_transformers is fine."""
    from repsim.errors import RepsimError
    from repsim.zoo.weights import check_weights_path

    path = getattr(spec, "weights", None)
    if path is None:
        return None
    if why := _too_long(path):
        return f"model {spec.id}: weights file: {why}"
    try:
        check_weights_path(spec, path)
    except RepsimError as exc:
        return str(exc)
    except OSError:
        return None  # not readable (a permission): the loader names it
    return None


def _too_long(path: str | Path | None) -> str | None:
    """What is too long in ``path`` for the filesystem (a name or the whole path), else None."""
    from repsim.runfolder import describe_os_error

    if path is None:
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == ENAMETOOLONG:
            return describe_os_error(exc, path, "read")
    return None


def model_metadata(spec: Any) -> dict[str, Any]:
    """The fields of :data:`repsim.names.MODEL_FIELDS` for one model spec (NaN/'' where unknown)."""
    meta = dict(getattr(spec, "metadata", {}) or {})
    out: dict[str, Any] = {}
    for key in MODEL_FIELDS:
        value = meta.get(key, getattr(spec, key, None))
        if key in NUMERIC_MODEL_FIELDS:
            out[key] = float(value) if value is not None else float("nan")
        else:
            out[key] = "" if value is None else str(value)
    return out
