"""Finding pretrained weights: local files, the torch.hub and Hugging Face caches, downloads.

Offline (``HF_HUB_OFFLINE=1`` or ``REPSIM_OFFLINE=1``) nothing is downloaded: a weight that is
not in a cache fails at once with a :class:`MissingWeightsError` that names the identifier and
the two ways to provide the file (the spec's ``weights:`` field, or the cache path).

Each loader also registers a *locator* (:func:`register_locator`): where a spec's weights would
come from (a local file, a cache hit, or a URL to download) without loading or downloading
anything. Before a run, :func:`check_source` asks a download source once, with a short timeout,
so a machine without network and without ``HF_HUB_OFFLINE`` fails once per model in seconds.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repsim.errors import MissingWeightsError, ModelError
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.zoo.spec import ModelSpec

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """Whether downloads are switched off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or REPSIM_OFFLINE)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("REPSIM_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


#: loaders whose ``weights:`` may be a folder (``save_pretrained`` output); the others read a file
FOLDER_WEIGHTS = ("hf_transformers",)


def _check_file_or_folder(spec: ModelSpec, path: Path) -> None:
    """ModelError for a folder where the loader reads a file, or a file where it reads a folder:
    said as such, not as a missing or unreadable file or an unreadable config later."""
    if path.is_dir() and spec.loader not in FOLDER_WEIGHTS:
        raise ModelError(
            f"model {spec.id!r}: weights {path} is a folder, not a file; point 'weights:' at the "
            "weights file in it (e.g. .safetensors or .pth)"
        )
    if path.is_file() and spec.loader in FOLDER_WEIGHTS:
        raise ModelError(
            f"model {spec.id!r}: weights {path} is a file, but the {spec.loader} loader reads a "
            "folder saved with save_pretrained (config.json and the weights); point 'weights:' at "
            "that folder"
        )


def check_weights_path(spec: ModelSpec, path: str | Path) -> Path:
    """``path`` as the spec's loader reads it: a file, or a folder for :data:`FOLDER_WEIGHTS`.

    MissingWeightsError when nothing is there, ModelError for anything else that stops the loader
    (:func:`repsim.pathcheck.path_problem`: a folder where a file is read, a FIFO that would block
    the reader, a symbolic-link loop, a permission). One check for the run's preflight, ``repsim
    models --check`` and the loaders, so all three say the same.
    """
    path = Path(path)
    want = "folder" if spec.loader in FOLDER_WEIGHTS and path.is_dir() else "file"
    problem = path_problem(path, want)
    if problem == DOES_NOT_EXIST:
        raise MissingWeightsError(
            f"model {spec.id!r}: weights file {path} does not exist; fix the 'weights:' path in the "
            "model spec (relative paths are relative to the config file)"
            + (
                ", or recreate the file (`repsim minizoo train`)"
                if spec.loader == "minizoo"
                else ""
            )
        )
    _check_file_or_folder(spec, path)
    if problem is not None:
        raise ModelError(
            f"model {spec.id!r}: weights {path} {problem}; "
            + (
                "make it readable (chmod u+r) and check the permissions of the folders above it"
                if problem.startswith("cannot be read")
                else "point 'weights:' at the weights file itself"
            )
        )
    return path


def local_weights(spec: ModelSpec) -> Path | None:
    """The spec's ``weights:`` file, checked to exist (None when the spec has none)."""
    if spec.weights is None:
        return None
    return check_weights_path(spec, spec.weights)


def missing(
    spec: ModelSpec, what: str, cache_hint: str | Path | None = None
) -> MissingWeightsError:
    """The offline error for ``spec``: names the identifier, the spec field and the cache path."""
    where = f" or place it at {cache_hint}" if cache_hint else ""
    return MissingWeightsError(
        f"model {spec.id!r} ({spec.loader} {spec.identifier!r}): {what} is not available offline. "
        f"Download it on a machine with internet and set 'weights: /path/to/file' in the model spec{where}; "
        "or unset HF_HUB_OFFLINE/REPSIM_OFFLINE to allow downloads"
    )


def url_cache_path(url: str) -> Path:
    """Where torch.hub keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def fetch_url(spec: ModelSpec, url: str) -> Path:
    """The local copy of ``url``: from the torch.hub cache, else downloaded (unless offline)."""
    import torch.hub

    path = url_cache_path(url)
    if path.exists():
        return path
    if is_offline():
        raise missing(spec, f"checkpoint {url}", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, path)
    tmp = path.with_name(path.name + ".part")
    torch.hub.download_url_to_file(url, str(tmp), progress=True)
    os.replace(tmp, path)
    return path


def hf_cached(repo_id: str, filenames: Iterable[str]) -> str | None:
    """Path of the first of ``filenames`` cached for Hugging Face repo ``repo_id``, else None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


def hf_cache_dir(repo_id: str) -> str:
    """The Hugging Face cache folder of ``repo_id`` (for error messages)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")))


def load_state_dict(path: str | Path, *, weights_only: bool = True) -> dict[str, Any]:
    """Read a ``.safetensors`` or torch pickle file onto the CPU."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError (truncated header or data) is not an OSError
            raise ModelError(
                f"cannot read weights file {path}: {type(exc).__name__}: {exc}. The file is truncated "
                "or damaged: download it again, or fix the 'weights:' path"
            ) from exc
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        raise ModelError(
            f"cannot read weights file {path}: {exc}. If the file is trusted and holds non-tensor "
            "objects, set 'options: {weights_only: false}' in the model spec"
        ) from exc


def _tensors(obj: Any) -> Iterable[tuple[str, Any]]:
    """(name, tensor) of every tensor in a loaded checkpoint, nested dicts and lists included."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield "", obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            for name, tensor in _tensors(value):
                yield f"{key}.{name}" if name else str(key), tensor
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            for name, tensor in _tensors(value):
                yield f"{i}.{name}" if name else str(i), tensor


def nan_weights(
    path: str | Path, model_keys: Iterable[str], *, weights_only: bool = True
) -> list[str]:
    """Names of the tensors in a local weights file (or a ``save_pretrained`` folder) that the
    model loads and that hold NaN.

    A model with a NaN weight gives NaN features for every image, so the run would fail at
    extraction, after the models before it; reading the file once more at the pre-run check says
    so first. Only tensors the model loads count: a file's tensor whose dotted name ends with one
    of ``model_keys`` (the built model's state-dict keys), or that one of them ends with, so a
    checkpoint's optimizer state or a dropped head is not counted and a wrapper's prefix on
    either side (``state_dict.module.`` in the file, ``model.`` in the module) is. Only NaN: an
    infinite value is a legitimate mask in some models. A file or array this scan cannot read is
    skipped, the others still scanned (extraction checks the features in any case). A
    ``.safetensors`` file is read one tensor at a time and a torch zip file memory-mapped.
    """
    keys = set(model_keys)
    key_tails = {".".join(k.split(".")[i:]) for k in keys for i in range(1, k.count(".") + 1)}

    def loaded(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[i:]) in keys for i in range(len(parts))) or (
            "." in name and name in key_tails
        )

    path = Path(path)
    files = [path]
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    bad: list[str] = []
    for file in files:
        try:
            tensors = _file_tensors(file, weights_only)
            for name, tensor in tensors:
                if loaded(name) and _has_nan(tensor):
                    bad.append(name)
        except Exception as exc:  # noqa: BLE001 - e.g. training_args.bin beside the weights
            log.info("weights %s not scanned for NaN (%s: %s)", file, type(exc).__name__, exc)
    return bad


def _file_tensors(file: Path, weights_only: bool) -> Iterable[tuple[str, Any]]:
    """(name, tensor) of every tensor in one weights file; arrays that are not numbers skipped."""
    import torch

    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                yield key, handle.get_tensor(key)
    elif file.suffix == ".npz":  # timm reads the original ViT releases from numpy archives
        import numpy as np

        with np.load(file) as arrays:
            for key in arrays.files:
                value = arrays[key]
                if value.dtype.kind == "f":
                    yield key, torch.from_numpy(value)
    else:
        with file.open("rb") as handle:
            zipped = handle.read(2) == b"PK"  # torch's zip format maps; a legacy pickle loads
        state = torch.load(file, map_location="cpu", weights_only=weights_only, mmap=zipped)
        yield from _tensors(state)


def _has_nan(tensor: Any) -> bool:
    import torch

    return bool(tensor.is_floating_point() and torch.isnan(tensor).any())


def check_cached_file(spec: ModelSpec, path: str | Path, what: str) -> None:
    """ModelError when the cached download ``path`` of ``spec``'s weights (``what``) is cut short.

    A download cut short keeps its name in a cache when it was copied there by hand or the disk
    filled; it would pass as cached and fail in every task that loads it. Reading the whole file
    is gigabytes for the study's models, so only its structure is read: a ``.safetensors`` header
    that covers the file (what safetensors checks when it opens one), and the central directory
    at the end of a zip archive (torch's own format, and numpy's ``.npz``). An empty file is
    damaged whatever its format; a legacy torch pickle cannot be checked this way and passes.
    A file that cannot be read at all (a permission) is said as such, with its own fix.
    """
    path = Path(path)
    problem = None
    try:
        if path.stat().st_size == 0:
            problem = "is empty"
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt"):
                pass
        else:
            with path.open("rb") as handle:
                if handle.read(2) == b"PK":
                    with zipfile.ZipFile(handle):
                        pass
    except OSError as exc:
        from repsim.runfolder import describe_os_error

        raise ModelError(
            f"model {spec.id!r}: {what}: {describe_os_error(exc, path, 'read')}"
        ) from exc
    except Exception as exc:  # SafetensorError, BadZipFile: the file is incomplete
        problem = f"cannot be read as a complete file ({type(exc).__name__}: {exc})"
    if problem is not None:
        real = path.resolve()  # the Hugging Face cache links to a blob: the blob is what to delete
        raise ModelError(
            f"model {spec.id!r}: {what} in the cache at {path} {problem}: the download is "
            f"truncated or damaged; delete {real} so that the next run downloads it again"
        )


# ----------------------------------------------------------------------------- locating weights
@dataclass(frozen=True)
class WeightsSource:
    """Where a spec's pretrained weights come from, found without loading or downloading.

    ``kind``: ``local`` (a file given in the spec, or the loader's own local file), ``cached``
    (a download already in a cache), ``remote`` (``url`` must be downloaded), or ``none`` (no
    pretrained weights: random init). ``what`` names the weights in messages; ``cache_hint``
    says where a manual copy can go.
    """

    kind: str
    where: str = ""
    url: str | None = None
    what: str = "the weights"
    cache_hint: str | None = None


Locator = Callable[[ModelSpec], WeightsSource]
_LOCATORS: dict[str, Locator] = {}


def register_locator(name: str) -> Callable[[Locator], Locator]:
    """Decorator registering the weights locator of loader ``name``."""

    def deco(fn: Locator) -> Locator:
        _LOCATORS[name] = fn
        return fn

    return deco


def _minizoo_source(spec: ModelSpec) -> WeightsSource:
    from repsim.minizoo.loader import DEFAULT_DIR

    return WeightsSource("local", str(DEFAULT_DIR / f"{spec.id}.safetensors"))


def locate_weights(spec: ModelSpec) -> WeightsSource:
    """Where ``spec``'s pretrained weights come from (a ``weights:`` file always wins)."""
    if spec.weights is not None:
        return WeightsSource("local", str(spec.weights))
    from repsim.zoo.registry import get_loader

    get_loader(spec.loader)  # importing the loader's module registers its locator
    if spec.loader == "minizoo":
        return _minizoo_source(spec)
    locator = _LOCATORS.get(spec.loader)
    if locator is None:
        return WeightsSource("none", "unknown source")
    return locator(spec)


def local_weights_file(spec: ModelSpec) -> str | None:
    """The local file (or folder) ``spec``'s pretrained weights are read from: its ``weights:``,
    or the mini-zoo's default file when it has none. None where they come from a download or a
    cache, which the spec's identifier names. The stage keys fingerprint this path, so a file
    retrained in place (``repsim minizoo train`` writes the default files) is seen."""
    if getattr(spec, "weights", None) is None and getattr(spec, "loader", None) != "minizoo":
        return None
    source = locate_weights(spec)
    return source.where if source.kind == "local" else None


def url_source(spec: ModelSpec, url: str, what: str, cached: Iterable[Path] = ()) -> WeightsSource:
    """A checkpoint URL: ``cached`` when in the torch.hub cache (or one of ``cached``), else remote."""
    hint = url_cache_path(url)
    for path in (hint, *cached):
        if Path(path).is_file():
            return WeightsSource("cached", str(path), url, what, str(hint))
    return WeightsSource("remote", url, url, what, str(hint))


def hf_source(spec: ModelSpec, repo_id: str, filenames: Iterable[str], what: str) -> WeightsSource:
    """A Hugging Face repo file: ``cached`` when in the HF cache, else remote."""
    filenames = tuple(filenames)
    hit = hf_cached(repo_id, filenames)
    if hit:
        return WeightsSource("cached", hit, None, what, hf_cache_dir(repo_id))
    from huggingface_hub import hf_hub_url

    return WeightsSource(
        "remote", repo_id, hf_hub_url(repo_id, filenames[0]), what, hf_cache_dir(repo_id)
    )


#: host -> (when it was asked, the error it gave or None: it answered); a run's checks ask each
#: host once, and a later run (a notebook kernel rerunning a cell) asks again, so a failure that
#: has passed is not remembered for the life of the process
_HOST_ANSWERS: dict[str, tuple[float, str | None]] = {}
#: seconds an answer is kept: longer than the checks of one run, shorter than a user's retry
HOST_ANSWER_KEPT_S = 120.0
#: seconds to wait for a download source to answer before a run starts
PROBE_TIMEOUT_S = 10.0


def _probe(url: str) -> str | None:
    """None when ``url``'s host answers at all, else the reason it cannot be reached."""
    host = urllib.parse.urlsplit(url).netloc
    asked = _HOST_ANSWERS.get(host)
    if asked is not None and time.monotonic() - asked[0] < HOST_ANSWER_KEPT_S:
        return asked[1]
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):  # noqa: S310
            reason = None
    except urllib.error.HTTPError:
        # the host answered: any HTTP status (a gated repo without our token, a HEAD the server
        # refuses) is for the download itself to report; only an unreachable host fails here
        reason = None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    _HOST_ANSWERS[host] = (time.monotonic(), reason)
    return reason


def check_source(spec: ModelSpec, source: WeightsSource) -> None:
    """MissingWeightsError unless the remote ``source`` can be downloaded (offline: never)."""
    if source.kind != "remote":
        return
    if is_offline():
        raise missing(spec, source.what, source.cache_hint)
    reason = _probe(source.url) if source.url else None
    if reason is None:
        return
    where = f" (or copy it to {source.cache_hint})" if source.cache_hint else ""
    raise MissingWeightsError(
        f"model {spec.id!r} ({spec.loader} {spec.identifier!r}): {source.what} is not cached and "
        f"cannot be downloaded from {source.url}: {reason}. Without network, set HF_HUB_OFFLINE=1 so "
        "that repsim never tries to download, fetch the file on a machine with internet and set "
        f"'weights: /path/to/file' in the model spec{where}, or leave the model out with select:"
    )
