"""BREEDS datasets (Entity-30, Living-17, Nonliving-26, ...) built from a local ImageNet copy.

``root`` is ImageNet as an image folder (``train/<wnid>/``, ``val/<wnid>/``). The class of an
ImageNet class is the BREEDS superclass it belongs to, given either

- ``options.class_map``: a text file of ``<imagenet wnid> <superclass wnid>`` lines, the exact
  BREEDS assignment (export it once from the BREEDS hierarchy tools), or
- ``options.hierarchy``: the folder with BREEDS' ``class_hierarchy.txt`` (``parent child`` lines)
  and ``node_names.txt`` (``wnid<TAB>name``), plus ``options.superclasses``: the superclass
  wnids; every ImageNet class below a superclass joins it (BREEDS may use a subset of them).

Class names come from ``node_names.txt`` when available, else the superclass wnids.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from repsim.errors import ConfigError, DatasetError
from repsim.stimuli.loaders.imagefolder import list_folder, make_stimset
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet


def _read_pairs(path: Path, what: str, spec: DatasetSpec) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DatasetError(f"dataset '{spec.id}': BREEDS {what} file {path} is missing; get it from the BREEDS release and set options")
    pairs = []
    for line in path.read_text().splitlines():
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) >= 2:
            pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


def _descendants(children: dict[str, list[str]], node: str) -> set[str]:
    out, stack = set(), [node]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def superclass_map(spec: DatasetSpec, present: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Superclass order and, per superclass, the ImageNet wnids (folders) that belong to it."""
    opts = spec.options
    names: dict[str, str] = {}
    hierarchy = spec.resolve(opts.get("hierarchy"))
    if hierarchy is not None and (hierarchy / "node_names.txt").is_file():
        names = dict(_read_pairs(hierarchy / "node_names.txt", "node names", spec))
    members: dict[str, list[str]] = defaultdict(list)
    if opts.get("class_map"):
        for wnid, sup in _read_pairs(spec.resolve(opts["class_map"]), "class map", spec):
            members[sup].append(wnid)
        order = list(dict.fromkeys(members))
    elif hierarchy is not None and opts.get("superclasses"):
        children: dict[str, list[str]] = defaultdict(list)
        for parent, child in _read_pairs(hierarchy / "class_hierarchy.txt", "class_hierarchy.txt", spec):
            children[parent].append(child)
        order = [str(s) for s in opts["superclasses"]]
        owner: dict[str, str] = {}
        for sup in order:
            for wnid in sorted(_descendants(children, sup) & present):
                if wnid in owner:
                    raise DatasetError(
                        f"dataset '{spec.id}': ImageNet class {wnid} lies below superclasses {owner[wnid]} and {sup}; "
                        "give options.class_map to assign it"
                    )
                owner[wnid] = sup
                members[sup].append(wnid)
    else:
        raise ConfigError(
            f"dataset '{spec.id}': the breeds loader needs options.class_map, or options.hierarchy and options.superclasses"
        )
    empty = [s for s in order if not set(members[s]) & present]
    if empty:
        raise DatasetError(
            f"dataset '{spec.id}': no ImageNet class folders under {spec.root} for superclasses {empty[:5]}; "
            "check root (ImageNet train/ and val/ with one folder per wnid)"
        )
    labels = [names.get(s, s) for s in order]
    return labels, {label: sorted(members[s]) for label, s in zip(labels, order)}


def load(spec: DatasetSpec) -> StimulusSet:
    root = spec.root
    if root is None or not root.is_dir():
        raise DatasetError(
            f"dataset '{spec.id}': ImageNet folder {root} does not exist; BREEDS needs ImageNet locally "
            "(train/<wnid>/ and val/<wnid>/), see https://image-net.org/download"
        )
    present = {d.name for sub in root.iterdir() if sub.is_dir() for d in sub.iterdir() if d.is_dir()}
    class_names, class_dirs = superclass_map(spec, present)
    return make_stimset(spec, *list_folder(spec, root, class_dirs))
