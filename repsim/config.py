"""Reading run configs: YAML files with optional ``include:``, parsed into typed, frozen sections.

A config names models, datasets, measures and run options. :func:`load_config` reads the YAML and
merges includes; :func:`parse_config` turns the merged mapping into a :class:`RunConfig` whose
sections are frozen dataclasses, checking every key and value first: an unknown key at any level
is an error with a did-you-mean, and a value of the wrong type or range (``enabled: "no"``,
``threads: two``) is an error naming the key, never a silent default or a traceback later.
:mod:`repsim.zoo` and :mod:`repsim.stimuli` turn the ``models:`` and ``datasets:`` entries into
validated specs. Relative paths inside a config are relative to the file that contains them
(``resolve_path``), so configs work from any working directory.

The include rule: ``models`` and ``datasets`` are collections, so the entries of the included
files come first and the including file's own entries follow (ids must be unique over all of
them). Every other key is a setting, and the including file's value *replaces* the included one:
lists such as ``measures`` are replaced whole (so a config can narrow them), and mappings such
as ``probe:`` are merged key by key (``probe: {seeds: [0]}`` changes only the seeds; an empty
``probe:`` over an included one is an error, not a silent reset).
"""

from __future__ import annotations

import difflib
import errno
import io
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from repsim.errors import ConfigError

CONFIG_DIR_KEY = "_config_dir"

#: top-level keys of a config file, and what each holds (for error messages)
TOP_LEVEL_KEYS: dict[str, str] = {
    "name": "the run's name",
    "include": "other config files merged first",
    "models": "list of model entries",
    "datasets": "list of dataset entries",
    "measures": "list of measure names",
    "stimuli": "similarity subset options (max_images, per_class, seed)",
    "extract": "extraction options",
    "probe": "linear probe options",
    "similarity": "similarity engine options",
    "select": "the subset of models/datasets to run",
    "threads": "fixed torch threads",
    "cluster": "dask-jobqueue options",
}
#: keys that hold lists of entries, concatenated over includes
COLLECTION_KEYS = ("models", "datasets")

#: model and dataset ids become file and group names inside a run folder: one safe segment each
#: (a dataset id may have several, ``wds/vtab/cifar10``), never ``.``/``..``, a leading dot or a
#: backslash, so no id can name a path outside the run folder.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@,-]*")


# ----------------------------------------------------------------------------- helpers
def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string.

    A choice that ``word`` begins (a name cut short, ``--set`` for ``--settings``) comes first,
    the closest of them where there are several; otherwise difflib's over all, whose ties fall to
    the last in alphabetical order (it offered ``--study`` for ``--set``)."""
    word, choices = str(word), list(choices)
    begun = [c for c in choices if c.startswith(word) and c != word]
    if len(word) >= 3 and begun:  # the closest of the names it begins
        close = difflib.get_close_matches(word, begun, n=1, cutoff=0.0)
        return f" (did you mean {close[0]!r}?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_note(key: Any) -> bool:
    """A key starting with ``_`` is the user's note (a comment, the holder of a YAML anchor): it is
    ignored at every level of a config, never read as an option."""
    return str(key).startswith("_")


def check_keys(
    mapping: Mapping[str, Any], allowed: Iterable[str], where: str, hint: str = ""
) -> None:
    """ConfigError naming every key of ``mapping`` not in ``allowed``, each with a did-you-mean
    (notes, keys starting with ``_``, are allowed anywhere: see :func:`is_note`)."""
    allowed = [k for k in allowed if not is_note(k)]
    unknown = [k for k in mapping if not is_note(k) and k not in allowed]
    if unknown:
        parts = [f"{k!r}{did_you_mean(k, allowed)}" for k in unknown]
        raise ConfigError(
            f"{where}: unknown key{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
            f"allowed keys are {', '.join(sorted(allowed)) or 'none'}{hint}"
        )


def check_id(value: Any, kind: str, *, allow_slash: bool = False) -> str:
    """A model or dataset id that is safe as a file name inside the run folder, else ConfigError."""
    if not isinstance(value, str) or not value:  # YAML reads `id: 7` as a number
        raise ConfigError(
            f"{kind} entry {value!r}: 'id' must be a string, got {value!r} "
            f"({type(value).__name__}); give every {kind} a unique string id (quote a number: "
            "id: '7')"
        )
    segments = value.split("/") if allow_slash else [value]
    if not all(_SEGMENT.fullmatch(s) for s in segments) or ".." in value:
        parts = "parts separated by '/', each" if allow_slash else "it must be"
        pieces = [re.sub(r"[^A-Za-z0-9._+=@,-]+", "-", p).strip(".-") for p in segments]
        safe = "/".join(p for p in pieces if p) or f"{kind}-1"
        raise ConfigError(
            f"{kind} id {value!r} cannot be used: ids name files inside the run folder, so {parts} "
            "made of letters, digits and the characters . _ - + = @ and comma, starting with a letter "
            f"or digit, with no '..'; rename it (e.g. {safe!r})"
        )
    _check_id_length(value, kind)
    return value


def _check_id_length(value: str, kind: str) -> None:
    """ConfigError when a file the run names after the id would exceed the filesystem's name
    limit: refused here, before any work, instead of failing its tasks mid-run."""
    from repsim.runfolder import NAME_MAX, abbreviate, longest_derived_name, safe_name

    longest = longest_derived_name(value)
    if longest <= NAME_MAX:
        return
    room = NAME_MAX - (longest - len(safe_name(value)))
    slash = ", each '/' counting 3" if "/" in value else ""
    raise ConfigError(
        f"{kind} id '{abbreviate(value, 20, size=False)}' is {len(value)} characters long: the run "
        f"names files after it, the longest {longest} bytes, over the {NAME_MAX} bytes a file name "
        f"may have; choose a shorter id (at most {room} characters{slash})"
    )


def select_ids(
    items: Iterable[Any], wanted: Iterable[str] | None, kind: str, where: str
) -> list[Any]:
    """The ``items`` (specs with an ``id``) named in ``select.<kind>``, in that order (None: all).

    Every unknown id is listed, each with a did-you-mean, before anything runs.
    """
    items = list(items)
    if wanted is None:
        return items
    by_id = {item.id: item for item in items}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        known = sorted(by_id)
        shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)" if len(known) > 30 else "")
        parts = [f"{u!r}{did_you_mean(u, known)}" for u in unknown]
        raise ConfigError(
            f"{where}: select.{kind} names {len(unknown)} unknown id{'s' if len(unknown) > 1 else ''}: "
            f"{', '.join(parts)}; the config's {kind} are: {shown or 'none'}"
        )
    return [by_id[w] for w in wanted]


@contextmanager
def collecting(errors: list[str]) -> Iterator[None]:
    """Run the check in the block, adding its ConfigError's message to ``errors`` instead of
    raising it: a config's checks are independent, so a config with several mistakes is fixed
    in one pass rather than one rerun per mistake (:func:`raise_collected` reports them)."""
    try:
        yield
    except ConfigError as exc:
        errors.append(str(exc))


def raise_collected(errors: list[str], headline: str) -> None:
    """ConfigError for the ``errors`` collected, if any: one as its own message, several under
    ``headline`` (``3 of 5 model entries are invalid``), each of their lines indented."""
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        lines = [f"  {line}" for error in errors for line in error.splitlines()]
        raise ConfigError(f"{headline}; fix each:\n" + "\n".join(lines))


Spec = TypeVar("Spec")


def parse_entries(
    entries: Iterable[Any] | None, parse: Callable[[Any], Spec], kind: str, duplicate: str
) -> list[Spec]:
    """Each entry of a ``models:`` or ``datasets:`` list parsed by ``parse`` (a spec with an
    ``id``), ids unique (``duplicate``: the message for a repeated one, formatted with ``id``).

    Every bad entry is reported, in one ConfigError, so a config with several mistakes is fixed
    in one pass rather than one rerun per entry; one bad entry is reported as its own message.
    """
    specs: list[Spec] = []
    errors: list[str] = []
    seen: set[str] = set()
    entries = list(entries or [])
    for entry in entries:
        try:
            spec = parse(entry)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if spec.id in seen:
            errors.append(duplicate.format(id=spec.id))
            continue
        seen.add(spec.id)
        specs.append(spec)
    raise_collected(errors, f"{len(errors)} of {len(entries)} {kind} entries are invalid")
    return specs


def _type_name(value: Any) -> str:
    return "a string" if isinstance(value, str) else type(value).__name__


# ----------------------------------------------------------------------------- value checks
Check = Callable[[Any, str], Any]


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(
            f"{where} must be true or false, got {value!r} ({_type_name(value)}); write true or false "
            "without quotes"
        )
    return value


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is an integer or a whole float (``1e4`` reads as 10000.0),
    else None (booleans, strings, fractions, inf and NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int(minimum: int) -> Check:
    def check(value: Any, where: str) -> int:
        whole = whole_number(value)
        if whole is None or whole < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(f"{where} must be {what}, got {value!r} ({_type_name(value)})")
        return whole

    return check


def _float(
    low: float, high: float = math.inf, *, open_high: bool = False, closed_low: bool = False
) -> Check:
    def check(value: Any, where: str) -> float:
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        if ok:
            ok = (value >= low if closed_low else value > low) and (
                value < high if open_high else value <= high
            )
        if not ok:
            rng = (
                f"in {'[' if closed_low else '('}{low:g}, {high:g}{')' if open_high else ']'}"
                if math.isfinite(high)
                else f"{'>=' if closed_low else '>'} {low:g}"
            )
            raise ConfigError(
                f"{where} must be a number {rng}, got {value!r} ({_type_name(value)})"
            )
        return float(value)

    return check


def _optional(check: Check) -> Check:
    def inner(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)

    return inner


def _list(item: Check, *, unique: bool = False) -> Check:
    def check(value: Any, where: str) -> tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r} ({_type_name(value)})")
        if not value:
            raise ConfigError(
                f"{where} is an empty list; give at least one value or remove the key"
            )
        # every bad item named at once, as the entries are (:func:`parse_entries`)
        items: list = []
        errors: list[str] = []
        for i, v in enumerate(value):
            with collecting(errors):
                items.append(item(v, f"{where}[{i}]"))
        raise_collected(errors, f"{where} has {len(errors)} bad items")
        out = tuple(items)
        if unique:
            dups = sorted({str(v) for v in out if out.count(v) > 1})
            if dups:
                raise ConfigError(f"{where} lists {dups} more than once")
        return out

    return check


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{where} must be a non-empty string, got {value!r} ({_type_name(value)})"
        )
    return value


def _precision(value: Any, where: str) -> str:
    from repsim.device import check_precision

    try:
        return check_precision(value)
    except ConfigError as exc:  # its message names extract.precision; add only the file
        loc = where.rsplit(": ", 1)[0] if ": " in where else ""
        raise ConfigError(f"{loc}: {exc}" if loc else str(exc)) from None


#: The splits of every stimulus set; a similarity subset is drawn from one (``stimuli.split``).
SPLITS = ("train", "test")


def _split(value: Any, where: str) -> str:
    if value not in SPLITS:
        raise ConfigError(
            f"{where} must be one of {', '.join(SPLITS)} (the split the similarity subset is drawn "
            f"from), got {value!r}"
        )
    return value


def _probe_precision(value: Any, where: str) -> str:
    from repsim.device import PROBE_PRECISIONS

    if value not in PROBE_PRECISIONS:
        raise ConfigError(
            f"{where} must be one of {', '.join(PROBE_PRECISIONS)} (float32 is the study's; bfloat16 "
            f"runs the training matmuls on bfloat16 inputs with float32 accumulation), got {value!r}"
        )
    return value


def _probe_normalize(value: Any, where: str) -> bool:
    if _bool(value, where) is not True:
        raise ConfigError(
            f"{where}: false cannot be honoured: the pipeline probes the stored features, which "
            "extraction L2-normalises (the study's protocol). Fix: delete the key, or call "
            "repsim.linear_probe(..., normalize=False) on features you extract yourself"
        )
    return True


#: The largest ``extract.batch_size``. A batch is one forward pass, and extraction holds up to two
#: chunks of 16 batches of decoded images in memory (131072 images at this bound, about 20 GB at
#: 224 x 224), so a larger one risks running out of memory; a batch larger than a dataset is that
#: whole dataset, so a small dataset never needs more.
MAX_BATCH_SIZE = 4096


#: The most torch threads a config may ask for per process: more cores than any one machine
#: has, and torch's pool of 100,000 threads failed to map its memory and aborted the run with no
#: run.json (1,000 still runs).
MAX_THREADS = 1024


def _threads(value: Any, where: str) -> int:
    n = _int(1)(value, where)
    if n > MAX_THREADS:
        raise ConfigError(
            f"{where} is {n}, above the largest allowed, {MAX_THREADS}: it is the number of torch "
            "threads each process uses. Fix: set it to at most the cores of the machine that runs "
            f"the work ({os.cpu_count()} here), or remove it to let each stage choose"
        )
    return n


def _batch_size(value: Any, where: str) -> int:
    size = _int(1)(value, where)
    if size > MAX_BATCH_SIZE:
        raise ConfigError(
            f"{where} is {size}, above the largest allowed, {MAX_BATCH_SIZE}: a batch is one "
            "forward pass and extraction holds up to two chunks of 16 batches of decoded images "
            f"in memory. Fix: set it to 256 (the default) or the largest that fits your device, "
            f"at most {MAX_BATCH_SIZE}; a batch larger than a dataset is simply the whole dataset"
        )
    return size


def _opt(default: Any, check: Check) -> Any:
    """A section field: its default and the check its config value must pass."""
    return field(default=default, metadata={"check": check})


# ----------------------------------------------------------------------------- sections
class Section:
    """A frozen options section; ``to_dict()`` gives the options that are set (None = default)."""

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class StimuliOptions(Section):
    """``stimuli:``: how the similarity subset of each dataset is drawn, and from which split
    (``split``: ``train`` when unset, as in the study; ``test`` for images no model trained on)."""

    max_images: int = _opt(10000, _int(1))
    per_class: int | None = _opt(None, _optional(_int(1)))
    seed: int = _opt(42, _int(0))
    split: str | None = _opt(None, _optional(_split))


@dataclass(frozen=True)
class ExtractOptions(Section):
    """``extract:``: feature extraction (None = the extraction's default); ``batch_size`` is
    bounded by :data:`MAX_BATCH_SIZE` and, per dataset, by its number of images."""

    batch_size: int = _opt(256, _batch_size)
    precision: str = _opt("float32", _precision)
    pretrained: bool | None = _opt(None, _optional(_bool))
    keep_raw: bool | None = _opt(None, _optional(_bool))

    #: keys that no longer exist, with what to do instead (an old config gets this, not "unknown")
    RETIRED = {
        "max_decoded": "every dataset is now decoded once, chunk by chunk, at any size, "
        "so there is no limit to set; delete the key",
    }


@dataclass(frozen=True)
class ProbeOptions(Section):
    """``probe:``: ``enabled`` plus keywords of :func:`repsim.linear_probe` (None = its default)."""

    enabled: bool = _opt(True, _bool)
    seeds: tuple[int, ...] | None = _opt(None, _optional(_list(_int(0), unique=True)))
    lrs: tuple[float, ...] | None = _opt(None, _optional(_list(_float(0.0))))
    #: 0 is no weight decay, which linear_probe takes (lrs must be positive)
    wds: tuple[float, ...] | None = _opt(None, _optional(_list(_float(0.0, closed_low=True))))
    epochs: int | None = _opt(None, _optional(_int(1)))
    batch_size: int | None = _opt(None, _optional(_int(1)))
    val_fraction: float | None = _opt(None, _optional(_float(0.0, 1.0, open_high=True)))
    normalize: bool | None = _opt(None, _optional(_probe_normalize))
    shared_search: bool | None = _opt(None, _optional(_bool))
    precision: str | None = _opt(None, _optional(_probe_precision))

    def kwargs(self) -> dict[str, Any]:
        """The keywords to pass to :func:`repsim.linear_probe`."""
        return {k: v for k, v in self.to_dict().items() if k != "enabled"}


@dataclass(frozen=True)
class SimilarityOptions(Section):
    """``similarity:``: options of the all-pairs engine :func:`repsim.measures.similarity_matrices`."""

    memory_budget_gb: float | None = _opt(None, _optional(_float(0.0)))
    progress: bool | None = _opt(None, _optional(_bool))


@dataclass(frozen=True)
class SelectOptions(Section):
    """``select:``: run only these models / datasets (in this order); None = all."""

    models: tuple[str, ...] | None = _opt(None, _optional(_list(_str, unique=True)))
    datasets: tuple[str, ...] | None = _opt(None, _optional(_list(_str, unique=True)))


def parse_section(cls: type, value: Any, where: str) -> Any:
    """Check a mapping against the fields of section ``cls`` and build it; every problem of the
    section (retired and unknown keys, each bad value) is named in one ConfigError."""
    errors: list[str] = []
    section = _parse_section(cls, value, where, errors)
    raise_collected(errors, f"{where} has {len(errors)} problems")
    return section


def _parse_section(cls: type, value: Any, where: str, errors: list[str]) -> Any:
    """:func:`parse_section`, its problems added to ``errors`` (then it returns None), so that
    :func:`parse_config` lists those of every section together."""
    before = len(errors)
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        errors.append(f"{where} must be a mapping of options, got {value!r} ({_type_name(value)})")
        return None
    specs = {f.name: f for f in fields(cls)}
    retired = getattr(cls, "RETIRED", {})
    errors.extend(
        f"{where}.{key} was retired: {why}" for key, why in retired.items() if key in value
    )
    with collecting(errors):
        check_keys({k: v for k, v in value.items() if k not in retired}, specs, where)
    options = {}
    for k, v in value.items():
        if k in specs and not is_note(k):
            with collecting(errors):
                options[k] = specs[k].metadata["check"](v, f"{where}.{k}")
    return None if len(errors) > before else cls(**options)


@dataclass(frozen=True)
class RunConfig:
    """A whole config, checked: run options as typed sections, model/dataset entries as mappings.

    The entries are validated into specs by :func:`repsim.zoo.parse_models` and
    :func:`repsim.stimuli.parse_datasets` (see :func:`repsim.plan.load_plan`).
    """

    name: str
    path: str
    models: tuple[Mapping[str, Any], ...]
    datasets: tuple[Mapping[str, Any], ...]
    measures: tuple[str, ...] | None = None
    stimuli: StimuliOptions = field(default_factory=StimuliOptions)
    extract: ExtractOptions = field(default_factory=ExtractOptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    similarity: SimilarityOptions = field(default_factory=SimilarityOptions)
    select: SelectOptions = field(default_factory=SelectOptions)
    threads: int | None = None
    cluster: Mapping[str, Any] = field(default_factory=dict)


def parse_config(raw: Mapping[str, Any], errors: list[str] | None = None) -> RunConfig:
    """Check a merged config (from :func:`load_config`) and build its :class:`RunConfig`; every
    problem of its keys and sections is named in one ConfigError.

    Given an ``errors`` list, the problems are added to it instead and a bad section, name,
    measures or list is replaced by its default, so that :func:`repsim.plan.load_plan` can go on
    to check the entries, ``select:`` and measures and name every problem of a config at once."""
    where = str(raw.get("_path", "config"))
    collect = errors is not None
    errors = errors if collect else []
    with collecting(errors):
        check_keys(raw, TOP_LEVEL_KEYS, where)
    if "include" in raw:  # load_config merges and removes it: a mapping given as is skipped it
        errors.append(
            f"{where}: include: is merged only when a config file is read; pass the file's path "
            "instead of a mapping, or put the included entries in the mapping"
        )
    lists: dict[str, tuple] = {}
    for key in COLLECTION_KEYS:
        value = raw.get(key)
        if value is not None and not isinstance(value, list):
            errors.append(f"{where}: '{key}' must be a list of entries, got {_type_name(value)}")
        lists[key] = tuple(value) if isinstance(value, list) else ()
    name = Path(where).stem  # kept where the config's name is bad (the problem is collected)
    measures = threads = None
    with collecting(errors):
        given = raw.get("name", name)
        name = _str(given, f"{where}: name") if not isinstance(given, (int, float)) else str(given)
    with collecting(errors):
        if raw.get("measures") is not None:
            measures = _list(_str, unique=True)(raw["measures"], f"{where}: measures")
    with collecting(errors):
        if raw.get("threads") is not None:
            threads = _threads(raw["threads"], f"{where}: threads")
    cluster = raw.get("cluster") or {}
    if not isinstance(cluster, Mapping):
        errors.append(
            f"{where}: cluster must be a mapping of dask-jobqueue options, got {cluster!r}"
        )
    sections = {
        key: (cls, _parse_section(cls, raw.get(key), f"{where}: {key}", errors))
        for key, cls in (
            ("stimuli", StimuliOptions),
            ("extract", ExtractOptions),
            ("probe", ProbeOptions),
            ("similarity", SimilarityOptions),
            ("select", SelectOptions),
        )
    }
    if not collect:
        raise_collected(errors, f"{where} has {len(errors)} problems")
    return RunConfig(
        name=name,
        path=where,
        models=lists["models"],
        datasets=lists["datasets"],
        measures=measures,
        threads=threads,
        cluster=dict(cluster) if isinstance(cluster, Mapping) else {},
        **{key: cls() if sec is None else sec for key, (cls, sec) in sections.items()},
    )


# ----------------------------------------------------------------------------- reading YAML
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: YAML says
    keys are unique, and PyYAML would keep the last one silently (a second ``models:`` list
    replacing the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *anchor``: merged by the base class
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice; keep one",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1, which PyYAML implements, reads ``1e-3`` and ``1.0e3`` as strings: a float needs a dot
# and a signed exponent there. YAML 1.2 (and Python, and every ML config) reads them as numbers.
_UniqueKeyLoader.add_implicit_resolver(  # copies SafeLoader's resolvers: SafeLoader is unchanged
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, name: str | None = None) -> Any:
    """YAML text as Python values, the way config files are read: keys unique, and numbers in
    exponent form (``1e-3``, ``1e3``) read as floats, not strings. ``name`` (the file) is what
    a syntax error's position names, instead of yaml's ``"<unicode string>"``."""
    stream: Any = text
    if name is not None:
        stream = io.StringIO(text)
        stream.name = name
    return yaml.load(stream, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a config file (missing, a folder), or None when it can.

    Raises the OSError of a path that cannot even be looked up (a name too long, a permission);
    os.stat, because Path.is_file hides those as False since Python 3.14. A dangling link or a
    symbolic-link loop is named as such (:func:`repsim.pathcheck.stat_problem`): a loop was a
    traceback where the config's path was resolved."""
    from repsim.pathcheck import stat_problem

    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"{path} {stat_problem(path)}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path} {stat_problem(path)}"
        raise
    if stat.S_ISREG(mode):
        return None
    if not stat.S_ISDIR(mode):
        return f"{path} is not a regular file"
    try:  # a folder: name the configs in it, the likely intent
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
    except OSError:
        found = []
    inside = (
        f" (it holds {', '.join(found[:5])}{', ...' if len(found) > 5 else ''})" if found else ""
    )
    return f"{path} is a folder, not a YAML config file{inside}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping, raising ConfigError with the file name on any problem."""
    path = Path(path)
    try:
        problem = _not_a_file(path)
    except OSError as exc:  # a name or path too long for the filesystem
        from repsim.runfolder import describe_os_error

        raise ConfigError(f"config file: {describe_os_error(exc, path, 'read')}") from exc
    if problem is not None:
        raise ConfigError(f"config file {problem}; pass the path to a YAML config file")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"), name=str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as "
            "UTF-8 (in most editors: save with encoding UTF-8)"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc}); check the path and permissions"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at top level, got {type(data).__name__}"
        )
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
    """Load a config and everything it includes, as one merged mapping.

    ``include: [a.yaml, b.yaml]`` merges the included files first, then the file itself (see the
    module docstring for the rule: entries of ``models``/``datasets`` are concatenated, every
    other key is overridden by the including file). Each file's top-level keys are checked here,
    so a typo names the file it is in. Every dict entry of ``models``/``datasets`` carries
    ``_config_dir`` so relative paths resolve against the file it was written in.
    """
    try:
        path = Path(path).resolve()
    except (RuntimeError, OSError):  # a symbolic-link loop: read_yaml names it, with the fix
        path = Path(path).absolute()
    if path in _seen:
        raise ConfigError(f"config include cycle: {' -> '.join(map(str, (*_seen, path)))}")
    raw = read_yaml(path)
    # the file's problems named at once, as a config's options are (:func:`parse_config`)
    errors: list[str] = []
    with collecting(errors):
        check_keys(raw, TOP_LEVEL_KEYS, str(path))
    name = raw.get("name", path.stem)
    with collecting(errors):
        _check_name(name, path)
    merged: dict[str, Any] = {}
    includes = raw.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        errors.append(
            f"{path}: include must be a file name or a list of file names, got {includes!r}"
        )
        includes = []
    for inc in includes:
        with collecting(errors):
            problem = _not_a_file(path.parent / inc)
            if problem is not None:  # named here, where the includer is known
                raise ConfigError(
                    f"{path}: include {inc!r}: {problem}; fix the name in include: (a path "
                    f"relative to {path.parent}) or create the file"
                )
            sub = load_config(path.parent / inc, (*_seen, path))
            _merge_into(merged, sub, Path(sub["_path"]))
    for key in COLLECTION_KEYS:
        if key in raw:
            if not isinstance(raw[key], list):
                errors.append(f"{path}: '{key}' must be a list")
                del raw[key]
                continue
            raw[key] = _tag_dir(raw[key], path.parent)
    with collecting(errors):
        _merge_into(merged, raw, path)
    raise_collected(errors, f"{path} has {len(errors)} problems")
    merged["name"] = name
    merged["_path"] = str(path)
    return merged


def _check_name(name: Any, path: Path) -> None:
    """A run's name is a non-empty text: ``name: true`` became the run "True"."""
    if not isinstance(name, str) or not name.strip():
        fix = (
            f"quote it: name: '{name}'"
            if isinstance(name, (bool, int, float)) and not isinstance(name, str)
            else "give the run a name: name: my-run (or leave the key out: the file name is used)"
        )
        raise ConfigError(
            f"{path}: name must be a text (the run's name), got {name!r} ({_type_name(name)}); "
            f"{fix}"
        )


def _merge_into(base: dict, new: dict, where: Path) -> None:
    """The include rule: collections concatenate, mappings merge key by key, the rest is replaced.

    An empty section (``probe:`` with nothing under it, or ``probe: null``) over an included one
    is an error: it would drop every included option without a word (a commented-out option
    left its key behind), where ``probe: {}`` keeps them."""
    for key, value in new.items():
        if value is None and isinstance(base.get(key), dict) and base[key]:
            raise ConfigError(
                f"{where}: '{key}:' is empty, which would drop the {key} options of the included "
                f"config ({', '.join(map(str, base[key]))}); remove the key to keep them, or "
                f"write the options to change under it"
            )
        if key in COLLECTION_KEYS and isinstance(value, list) and isinstance(base.get(key), list):
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
