"""Checking models before the work: architecture on the meta device, weights opened and matched.

On the meta device parameters have shapes but no storage, so building a 1B-parameter model
costs no memory and a forward pass costs no arithmetic: a config of 64 models checks in
seconds and reports the embedding dim at each configured tap. Weights are checked too:

- a local weights file (``weights:``, or the mini-zoo's file) is read and loaded into the meta
  model, so missing keys, wrong shapes, a wrong architecture or a truncated file are a
  :class:`~repsim.errors.ModelError` naming the model, the file and the fix;
- weights to be downloaded are looked up in the caches; a cached file has its structure read (a
  download cut short is refused, :func:`~repsim.zoo.weights.check_cached_file`); when they are
  not cached, the source is asked once (a short HEAD request, unless offline), so a machine
  without network fails here, once per model and in seconds, rather than in every task after
  minutes of retries.

``repsim models --check`` and :func:`repsim.plan.load_plan` both use :func:`check_spec`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repsim.config import load_config, parse_config, select_ids
from repsim.errors import (
    MissingWeightsError,
    ModelError,
    RepsimError,
    UnknownArchitectureError,
    brief,
)
from repsim.zoo.registry import load_model, parse_models
from repsim.zoo.spec import ModelSpec
from repsim.zoo.weights import (
    check_cached_file,
    check_source,
    check_weights_path,
    is_offline,
    locate_weights,
    nan_weights,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCheck:
    """The outcome of checking one model: its dim and tap, its weights, and the error if any."""

    spec: ModelSpec
    dim: int | None
    layer: str
    weights: str
    error: RepsimError | None = None
    #: what an ok row could not check (shown beside "ok")
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"error: {type(self.error).__name__}: {str(self.error).splitlines()[0][:200]}"
        return f"ok ({self.note})" if self.note else "ok"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the expected noise of building on the meta device (open_clip's no-weights warning,
    torch's "copying into a meta parameter is a no-op")."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def probe_spec(spec: ModelSpec) -> tuple[int, str]:
    """(embedding dim, tapped layer) of ``spec``, found by a forward pass on the meta device."""
    import torch

    from repsim.zoo.taps import FeatureExtractor

    loaded = load_model(spec, pretrained=False, device="meta")
    extractor = FeatureExtractor(loaded, spec)
    size = loaded.preprocess.crop
    with torch.no_grad():
        out = extractor(torch.empty(1, 3, size, size, device="meta"))
    return int(out.shape[1]), extractor.layer or "(output)"


def check_weights(spec: ModelSpec, *, fetch: bool = True) -> str:
    """Make sure ``spec``'s pretrained weights can be used; a short description of what was found.

    Raises ModelError (a local file that cannot be read or does not fit the architecture) or,
    with ``fetch``, MissingWeightsError for weights that are neither local nor cached and cannot
    be downloaded (offline, or the source does not answer). Without ``fetch`` such weights are
    reported as ``not cached`` (``repsim models --check`` before anything is downloaded).
    """
    source = locate_weights(spec)
    if source.kind == "local":
        path = source.where
        check_weights_path(spec, path)
        try:
            built = load_model(spec, pretrained=True, device="meta")
        except ModelError as exc:
            if str(exc).startswith(f"model {spec.id!r}: "):
                raise  # the loader named the model and gave its own fix (a file of another model)
            raise _unusable_file(spec, path, exc) from exc
        except Exception as exc:  # any failure to read or fit the file is the same user error
            raise _unusable_file(spec, path, exc) from exc
        bad = nan_weights(
            path,
            built.module.state_dict().keys(),
            weights_only=spec.options.get("weights_only", True),
        )
        if bad:
            again = (
                "retrain it (`repsim minizoo train`)"
                if spec.loader == "minizoo"
                else "download it again, or take an earlier checkpoint of your own training"
            )
            raise ModelError(
                f"model {spec.id!r}: weights file {path} holds NaN in {len(bad)} "
                f"tensor{'s' * (len(bad) != 1)} the model loads ({', '.join(bad[:3])}"
                f"{', ...' * (len(bad) > 3)}): its features would be NaN. The training diverged "
                f"or the file is damaged: {again}"
            )
        return "file ok"
    if source.kind == "cached":
        check_cached_file(spec, source.where, source.what)
        return "cached"
    if source.kind == "remote":
        if not fetch:
            return "not cached"
        check_source(spec, source)
        return "downloadable"
    return source.where or "-"


def _unusable_file(spec: ModelSpec, path: str, exc: Exception) -> ModelError:
    """The error of a local weights file that cannot be read or fit the architecture."""
    reason = brief(" ".join(str(exc).split()).removeprefix(f"model {spec.id!r}: "))
    again = (
        "retrain it (`repsim minizoo train`)" if spec.loader == "minizoo" else "download it again"
    )
    return ModelError(
        f"model {spec.id!r}: weights file {path} cannot be used for {spec.loader} "
        f"{spec.identifier!r}: {type(exc).__name__}: {reason}. The file is truncated, damaged or "
        f"for another architecture: {again}, or point 'weights:' at the file made for this "
        "architecture"
    )


def check_spec(spec: ModelSpec, *, weights: bool = True, fetch: bool = False) -> ModelCheck:
    """Check one model: build it on the meta device, then (``weights``) its pretrained weights.

    ``fetch``: weights that are not cached must be downloadable (see :func:`check_weights`).
    """
    dim: int | None = None
    layer = spec.layer or "-"
    try:
        with _quiet():
            try:
                dim, layer = probe_spec(spec)
            except UnknownArchitectureError:
                if not weights:  # a random-init model is built from the config it cannot read
                    raise
                # the pretrained model brings its config: usable when its weights are
                found = check_weights(spec, fetch=fetch)
                err = _refused_offline(spec, found)
                return ModelCheck(spec, None, layer, found, err, note="width known once downloaded")
            found = check_weights(spec, fetch=fetch) if weights else "not checked"
    except RepsimError as exc:
        return ModelCheck(spec, dim, layer, "-", exc)
    except (
        Exception
    ) as exc:  # a loader's own error (bad option, missing package): one row, not a crash
        if isinstance(exc, OSError):  # a file it reads (the error names it)
            fix = "; make the files it names readable, or fix the path that leads there"
        elif spec.options:
            fix = (
                f"; check its options ({', '.join(sorted(map(str, spec.options)))}: given to the "
                f"{spec.loader} library as written) and its identifier"
            )
        else:
            fix = "; check its identifier, and that the library behind the loader is installed"
        err = ModelError(f"model {spec.id!r}: cannot be built: {type(exc).__name__}: {exc}{fix}")
        return ModelCheck(spec, dim, layer, "-", err)
    if spec.embed_dim is not None and dim != spec.embed_dim:
        # results carry metadata.embed_dim as the model's width, so a wrong one would be analysed
        # as if true; a mismatch is as often a wrong layer tapped
        err = ModelError(
            f"model {spec.id!r}: the tap at {layer} gives {dim}-d features but metadata.embed_dim "
            f"says {spec.embed_dim}; correct embed_dim, or tap the layer you meant"
        )
        return ModelCheck(spec, dim, layer, found, err)
    return ModelCheck(spec, dim, layer, found, _refused_offline(spec, found))


def _refused_offline(spec: ModelSpec, found: str) -> MissingWeightsError | None:
    """The run's refusal of weights not downloaded yet where downloads are off (HF_HUB_OFFLINE,
    REPSIM_OFFLINE), else None. They were "ok" there, and `repsim models --check && repsim run`
    passed the check and failed; online a run downloads them, so they stay ok."""
    if found != "not cached" or not is_offline():
        return None
    try:
        check_source(spec, locate_weights(spec))  # offline: raises at once, no request
    except MissingWeightsError as exc:
        return exc
    return None


def _specs(config: Any) -> list[ModelSpec]:
    raw = config if isinstance(config, Mapping) else load_config(Path(config))
    cfg = parse_config(raw)
    specs = parse_models(cfg.models)
    return select_ids(specs, cfg.select.models, "models", cfg.path)


def check_specs(
    specs: Sequence[ModelSpec], *, weights: bool = True, fetch: bool = False
) -> list[ModelCheck]:
    """:func:`check_spec` for every spec (one failing model never hides the others)."""
    return [check_spec(s, weights=weights, fetch=fetch) for s in specs]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def check_models(config: Any, *, weights: bool = True) -> tuple[str, bool]:
    """Check the models of ``config`` (a path or a loaded config); return (table, all_ok).

    Honours ``select:``. A row is ``ok`` when the model builds offline, its tap gives the
    ``metadata.embed_dim`` of the config (if given) and (``weights``) its weights are usable: a
    local file loads into the architecture, or the weights are cached or can be downloaded (not
    where downloads are off: a run refuses them there, so the row is an error).
    Errors are written in the row; the full message of each is listed below the table.
    """
    start = time.perf_counter()
    results = check_specs(_specs(config), weights=weights)
    rows = [
        [
            c.spec.id,
            c.spec.loader,
            str(c.dim if c.dim is not None else "-"),
            str(c.spec.embed_dim if c.spec.embed_dim is not None else "-"),
            c.layer,
            c.weights,
            c.status,
        ]
        for c in results
    ]
    table = _table(rows, ["id", "loader", "dim", "expected", "layer", "weights", "status"])
    errors = [  # named once: most messages already start with "model 'ID': "
        str(c.error)
        if str(c.error).startswith(f"model {c.spec.id!r}")
        else f"{c.spec.id}: {c.error}"
        for c in results
        if c.error is not None
    ]
    n_ok = sum(c.ok for c in results)
    what = "weights checked" if weights else "no weights"
    summary = (
        f"{n_ok}/{len(rows)} models ok ({time.perf_counter() - start:.1f} s, meta device, {what})"
    )
    to_download = sum(c.ok and c.weights == "not cached" for c in results)
    if to_download:  # ok only online (offline they are errors): said, not left to the column
        summary += (
            f". The weights of {to_download} of them are not downloaded yet: a run downloads "
            "them, and one offline refuses them"
        )
    text = "\n".join([table, *(["", *errors] if errors else []), "", summary])
    return text, n_ok == len(rows) and bool(rows)


def list_models(config: Any) -> str:
    """A table of the models of ``config`` with their metadata (nothing is built)."""
    specs = _specs(config)
    keys = ["objective", "architecture_class", "data_class", "size_class", "embed_dim"]
    rows = [
        [s.id, s.loader, s.identifier, *(str(s.metadata.get(k, "-")) for k in keys)] for s in specs
    ]
    return _table(rows, ["id", "loader", "identifier", *keys])
