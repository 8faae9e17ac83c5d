"""clip_benchmark-style webdataset shards, the format the study read its datasets in.

Layout (local folder, or the same under a URL): ``ROOT/classnames.txt`` (one class name a line)
and ``ROOT/<split>/*.tar``; each sample is a group of tar members sharing a key, with an image
(``.webp``, ``.jpg``, ``.png``, ...) and the label in ``.cls``. Shards are indexed once (headers
and labels only); images are read lazily from their byte offsets. A shard that ends early keeps
its complete samples and records the cut one in ``skipped``. A split whose ``nshards.txt``
counts shards its folder lacks is refused by name, never read as the whole split.

With ``url:`` the shards are cached in ``options.cache`` (default ``~/.cache/repsim/wds/<id>``)
and downloaded only when ``options.download`` is true.
"""

from __future__ import annotations

import logging
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from repsim.config import SPLITS
from repsim.errors import DatasetError
from repsim.pathcheck import path_problem
from repsim.stimuli.decode import decode_image
from repsim.stimuli.loaders.files import IMAGE_EXTS, header_filter, min_side, read_utf8
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet

log = logging.getLogger(__name__)

_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTS)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdecimal() else t for t in re.split(r"(\d+)", path.name)]


def _how_to_get(spec: DatasetSpec) -> str:
    name = spec.source or f"wds_{spec.id.split('/')[-1]}"
    return (
        f"download the shards, e.g. `huggingface-cli download --repo-type dataset clip-benchmark/{name} "
        f"--local-dir {spec.path or '<folder>'}`, or set url: and options: {{download: true}} and run online"
    )


def _fetch(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:  # noqa: S310
        shutil.copyfileobj(resp, out)
    tmp.replace(dest)


def _count_in(path: Path) -> tuple[int | None, str]:
    """The shard count an nshards.txt holds (None if it holds something else), and its text."""
    words = path.read_text(encoding="utf-8", errors="replace").split()
    text = " ".join(words)[:40]
    return (int(words[0]) if words and words[0].isdecimal() else None), text


def _shard_count(path: Path, spec: DatasetSpec) -> int:
    """The number in a downloaded nshards.txt; anything else is the server's error, named."""
    n, text = _count_in(path)
    if n is None:
        path.unlink()  # not kept: the next run downloads it again
        raise DatasetError(
            f"dataset '{spec.id}': {spec.url.rstrip('/')}/{path.parent.name}/nshards.txt holds "
            f"{text!r}, not a shard count; check the URL (it should serve the "
            "shards of a clip-benchmark dataset)"
        )
    return n


def _missing_shards(root: Path, spec: DatasetSpec) -> str | None:
    """Which shards a split's nshards.txt counts and its folder lacks (a download cut off, also
    one made by an earlier repsim that marked its cache complete first), said; None if none."""
    for split in SPLITS:
        count_file = root / split / "nshards.txt"
        if not count_file.is_file():
            continue
        try:
            n, text = _count_in(count_file)
        except OSError as exc:
            raise DatasetError(
                f"dataset '{spec.id}': {count_file} cannot be read ({type(exc).__name__}: {exc})"
            ) from None
        if n is None:
            raise DatasetError(
                f"dataset '{spec.id}': {count_file} holds {text!r}, not a shard count; download "
                "it again, or delete it to read the shards there are"
            )
        if len(list((root / split).glob("*.tar"))) < n:
            gone = [f"{i}.tar" for i in range(n) if not (root / split / f"{i}.tar").is_file()]
            shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
            return f"{root / split} lacks {shown} of the {n} shards its nshards.txt counts"
    return None


def _absent(exc: OSError) -> bool:
    """Whether a fetch failed because the server has no such file (HTTP 404, a missing local
    file), not because it could not be asked (a timeout, a refused connection)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 404
    return isinstance(exc, FileNotFoundError) or isinstance(
        getattr(exc, "reason", None), FileNotFoundError
    )


def _download(spec: DatasetSpec, cache: Path) -> None:
    """Every shard of the splits, then classnames.txt: its presence marks a complete cache, so an
    interrupted download is resumed (shards already fetched are kept), never read as the data."""
    base = spec.url.rstrip("/")
    for split in spec.options.get("wds_splits", SPLITS):
        try:
            _fetch(f"{base}/{split}/nshards.txt", cache / split / "nshards.txt")
        except OSError as exc:
            if not _absent(exc):  # a network error: the split may exist; fail, retry next run
                raise
            log.warning("%s: no %s split at %s (%s)", spec.id, split, base, exc)
            continue
        n = _shard_count(cache / split / "nshards.txt", spec)
        for i in range(n):
            dest = cache / split / f"{i}.tar"
            if not dest.is_file():
                log.info("%s: downloading %s/%s/%d.tar", spec.id, base, split, i)
                _fetch(f"{base}/{split}/{i}.tar", dest)
    _fetch(f"{base}/classnames.txt", cache / "classnames.txt")


def _root(spec: DatasetSpec) -> Path:
    if spec.path is not None:
        return spec.path
    cache = spec.resolve(
        spec.options.get("cache")
    ) or Path.home() / ".cache" / "repsim" / "wds" / spec.id.replace("/", "_")
    cached = (cache / "classnames.txt").is_file()
    missing = _missing_shards(cache, spec) if cached else None
    if not cached or missing:
        if not spec.options.get("download"):
            cut = f" ({missing}: a download was cut off)" if missing else ""
            raise DatasetError(
                f"dataset '{spec.id}': shards from {spec.url} are not cached in {cache}{cut}; set "
                "options: {download: true} and run online once (shards already there are kept), "
                "or " + _how_to_get(spec)
            )
        try:
            _download(spec, cache)
        except OSError as exc:
            raise DatasetError(
                f"dataset '{spec.id}': download from {spec.url} failed ({exc}); check the URL and that you are online"
            ) from None
    return cache


def _only_zeros_after(path: Path, offset: int) -> bool:
    """Whether the file holds nothing but the tar's zero end blocks after ``offset``."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(1 << 16):
            if chunk.strip(b"\0"):
                return False
    return True


def index_shard(
    shard: Path, split: str, spec: DatasetSpec
) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Samples of one shard by key: image location (offset, size, ext) and label; and cut items."""
    samples: dict[str, dict] = {}
    skipped: list[tuple[str, str]] = []
    try:
        size = shard.stat().st_size
    except OSError as exc:  # a dangling symlink, or a shard removed while indexing
        return {}, [
            (
                f"{spec.id}/{split}/{shard.name}",
                f"shard cannot be read ({type(exc).__name__}: {exc})",
            )
        ]
    try:
        tf = tarfile.open(shard, mode="r:")
    except tarfile.TarError as exc:
        return {}, [(f"{spec.id}/{split}/{shard.name}", f"shard is not a readable tar ({exc})")]
    with tf:
        while True:
            try:
                member = tf.next()
            except tarfile.TarError as exc:
                skipped.append(
                    (
                        f"{spec.id}/{split}/{shard.name}",
                        f"shard ends early after {len(samples)} samples ({exc})",
                    )
                )
                break
            if member is None:  # tarfile also stops, unsaid, at a cut or damaged header
                if not _only_zeros_after(shard, tf.offset):
                    skipped.append(
                        (
                            f"{spec.id}/{split}/{shard.name}",
                            f"shard cannot be read past byte {tf.offset} (a cut or damaged member "
                            "header, or a second archive appended): what comes before is read, the rest "
                            "is not",
                        )
                    )
                break
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            if "." not in name:
                continue
            stem, ext = name.split(".", 1)
            key = f"{member.name.rsplit('/', 1)[0]}/{stem}" if "/" in member.name else stem
            ext = ext.lower()
            item_id = f"{spec.id}/{split}/{key}"
            entry = samples.setdefault(key, {})
            if member.offset_data + member.size > size:
                entry["cut"] = True
                skipped.append((item_id, f"shard {shard.name} ends early: {name} is truncated"))
                break
            if ext == "cls":
                raw = tf.extractfile(member).read().decode("utf-8", "replace").strip()
                try:
                    entry["label"] = int(raw.split()[0])
                except (ValueError, IndexError):
                    entry["bad"] = f"label file {name} holds {raw[:20]!r}, not an integer"
            elif ext in _IMAGE_EXTS and "image" not in entry:
                entry["image"] = (shard, member.offset_data, member.size)
    return samples, skipped


def load(spec: DatasetSpec) -> StimulusSet:
    root = _root(spec)
    if (problem := path_problem(root, "folder")) is not None:
        raise DatasetError(
            f"dataset '{spec.id}': shard folder {root} {problem}; " + _how_to_get(spec)
        )
    if (missing := _missing_shards(root, spec)) is not None:
        raise DatasetError(
            f"dataset '{spec.id}': {missing}; download them again, or delete that nshards.txt to "
            "read only the shards there are"
        )
    names_file = root / "classnames.txt"
    if (problem := path_problem(names_file, "file")) is not None:
        raise DatasetError(f"dataset '{spec.id}': {names_file} {problem}; " + _how_to_get(spec))
    text = read_utf8(
        names_file,
        f"dataset '{spec.id}': {names_file}",
        "convert it, e.g. `iconv -f latin1 -t utf-8 classnames.txt > classnames.utf8 && mv "
        "classnames.utf8 classnames.txt`",
    )
    class_names = [line.strip() for line in text.splitlines() if line.strip()]
    ids, labels, split, locs, skipped = [], [], [], [], []
    seen: dict[str, Path] = {}
    for sp in SPLITS:
        shards = sorted((root / sp).glob("*.tar"), key=_natural_key) if (root / sp).is_dir() else []
        for shard in shards:
            samples, cut = index_shard(shard, sp, spec)
            skipped.extend(cut)
            for key, entry in samples.items():
                item_id = f"{spec.id}/{sp}/{key}"
                if entry.get("cut"):
                    continue
                reason = entry.get("bad") or (
                    "no image member"
                    if "image" not in entry
                    else "no .cls label"
                    if "label" not in entry
                    else None
                )
                if reason is None and not 0 <= entry["label"] < len(class_names):
                    reason = f"label {entry['label']} outside the {len(class_names)} classes of classnames.txt"
                if reason:
                    skipped.append((item_id, reason))
                    continue
                if item_id in seen:
                    raise DatasetError(
                        f"dataset '{spec.id}': sample key {key!r} occurs in {seen[item_id].name} and {shard.name}; "
                        "each key must be unique within a split (remove the duplicated shard)"
                    )
                seen[item_id] = shard
                ids.append(item_id)
                labels.append(entry["label"])
                split.append(sp)
                locs.append(entry["image"])
    if not ids and not skipped:
        raise DatasetError(
            f"dataset '{spec.id}': no shards under {root}/train or {root}/test; "
            + _how_to_get(spec)
        )

    def raw(i: int) -> bytes:
        shard, offset, size = locs[i]
        with open(shard, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    keep, bad = header_filter(spec, ids, raw)
    kept = [locs[i] for i in keep]
    side = min_side(spec)

    def reader(i: int) -> np.ndarray:
        shard, offset, size = kept[i]
        with open(shard, "rb") as fh:
            fh.seek(offset)
            return decode_image(fh.read(size), side)

    return StimulusSet(
        dataset_id=spec.id,
        ids=np.array(ids, dtype=str)[keep],
        labels=np.array(labels, dtype=np.int64)[keep],
        split=np.array(split, dtype=str)[keep],
        class_names=class_names,
        domain=spec.domain,
        skipped=skipped + bad,
        reader=reader,
    )
