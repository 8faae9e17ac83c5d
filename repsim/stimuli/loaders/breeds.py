"""BREEDS datasets (Entity-13, Entity-30, Living-17, Nonliving-26) built from a local ImageNet copy.

``root`` is ImageNet as an image folder (``train/<wnid>/``, ``val/<wnid>/``). Three ways to say
which ImageNet classes form each BREEDS superclass:

- ``options.task`` (``entity13``, ``entity30``, ``living17``, ``nonliving26``) with
  ``options.hierarchy``: the folder of the BREEDS hierarchy files (``dataset_class_info.json``,
  ``class_hierarchy.txt``, ``node_names.txt``, from the BREEDS-Benchmarks release,
  ``imagenet_class_hierarchy/modified/``). This is the study's task: the hierarchy gives the
  superclasses and, per superclass, disjoint *source* and *target* subpopulations
  (``options.split_type``: ``rand``, the default and the study's, or ``good``) with the BREEDS
  authors' construction and seed; the train split holds ImageNet-train images of the source
  subpopulations only, the test split ImageNet-val images of the target subpopulations only, so
  a probe is tested on subpopulations it never saw.
- ``options.class_map``: a text file of ``<imagenet wnid> <superclass wnid>`` lines, or
- ``options.hierarchy`` plus ``options.superclasses`` (superclass wnids; every ImageNet class below
  one joins it). These two put every listed subclass in both splits: a superclass task without
  the subpopulation shift, not the study's BREEDS task.

Class names come from ``node_names.txt`` when available, else the superclass wnids.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repsim.errors import ConfigError, DatasetError
from repsim.pathcheck import DOES_NOT_EXIST, path_problem
from repsim.stimuli.loaders.files import read_utf8
from repsim.stimuli.loaders.imagefolder import list_folder, make_stimset
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet

_FIELDS = {  # what the two fields of each line of a BREEDS text file are
    "node names": "a WordNet id and its name",
    "class map": "an ImageNet WordNet id and its superclass",
    "class_hierarchy.txt": "a parent WordNet id and its child",
}


def _read_pairs(path: Path, what: str, where: str) -> list[tuple[str, str]]:
    """The two fields of each line of a BREEDS text file (tab- or space-separated); ``where``
    (the dataset or task) starts every refusal."""
    if (problem := path_problem(path, "file")) is not None:
        raise DatasetError(
            f"{where}: BREEDS {what} file {path} {problem}; get it from the BREEDS "
            "release and set options"
        )
    text = read_utf8(path, f"{where}: BREEDS {what} file {path}", "use the BREEDS release's file")
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) >= 2:
            pairs.append((parts[0].strip(), parts[1].strip()))
        elif line.strip():  # a class without its superclass would drop out of the task unsaid
            raise DatasetError(
                f"{where}: BREEDS {what} file {path}, line {number}: {line.strip()!r} "
                f"has one field, and each line holds two ({_FIELDS[what]}); fix that line"
            )
    return pairs


def _below(children: Mapping[str, Iterable[str]], node: str) -> set[str]:
    """``node`` and every node under it, by the ``children`` edges (a DAG: each node once)."""
    out, stack = {node}, [node]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def superclass_map(spec: DatasetSpec, present: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Superclass order and, per superclass, the ImageNet wnids (folders) that belong to it."""
    opts, where = spec.options, f"dataset '{spec.id}'"
    names: dict[str, str] = {}
    hierarchy = spec.resolve(opts.get("hierarchy"))
    if hierarchy is not None and (hierarchy / "node_names.txt").is_file():
        names = dict(_read_pairs(hierarchy / "node_names.txt", "node names", where))
    members: dict[str, list[str]] = defaultdict(list)
    if opts.get("class_map"):
        for wnid, sup in _read_pairs(spec.resolve(opts["class_map"]), "class map", where):
            members[sup].append(wnid)
        order = list(dict.fromkeys(members))
    elif hierarchy is not None and opts.get("superclasses"):
        children: dict[str, list[str]] = defaultdict(list)
        for parent, child in _read_pairs(
            hierarchy / "class_hierarchy.txt", "class_hierarchy.txt", where
        ):
            children[parent].append(child)
        order = [str(s) for s in opts["superclasses"]]
        owner: dict[str, str] = {}
        for sup in order:
            for wnid in sorted(_below(children, sup) & present):
                if wnid in owner:
                    raise DatasetError(
                        f"dataset '{spec.id}': ImageNet class {wnid} lies below superclasses {owner[wnid]} and {sup}; "
                        "give options.class_map to assign it"
                    )
                owner[wnid] = sup
                members[sup].append(wnid)
    else:
        raise ConfigError(
            f"dataset '{spec.id}': the breeds loader needs options.task (entity13, entity30, living17 or nonliving26: "
            "the study's source/target task) with options.hierarchy, or options.class_map, "
            "or options.hierarchy and options.superclasses"
        )
    empty = [s for s in order if not set(members[s]) & present]
    if empty:
        raise DatasetError(
            f"dataset '{spec.id}': no ImageNet class folders under {spec.root} for superclasses {empty[:5]}; "
            "check root (ImageNet train/ and val/ with one folder per wnid)"
        )
    labels = [names.get(s, s) for s in order]
    return labels, {label: sorted(members[s]) for label, s in zip(labels, order)}


# ----------------------------------------------------------------------------- the BREEDS tasks
#: the four tasks of Santurkar et al. (ICLR 2021) as the BREEDS release builds them:
#: (depth of the superclasses below the root, ancestor they must lie under, subclasses per superclass)
TASKS: dict[str, tuple[int, str | None, int]] = {
    "entity13": (3, None, 20),
    "entity30": (4, None, 8),
    "living17": (5, "n00004258", 4),  # living thing
    "nonliving26": (5, "n00021939", 4),  # non-living thing
}
SPLIT_TYPES = ("rand", "good")
HIERARCHY_FILES = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")
ROOT_WNID = "n00001740"  # entity
SPLIT_SEED = (
    2  # the release's seed: with it the splits are the ones the study trained and tested on
)
HIERARCHY_SOURCE = (
    "the BREEDS-Benchmarks repository (MadryLab), folder imagenet_class_hierarchy/modified/"
)


@dataclass(frozen=True)
class BreedsSplit:
    """A BREEDS task: superclasses in label order and, per superclass, its source and target
    ImageNet wnids (disjoint subpopulations of equal size)."""

    superclasses: list[str]
    names: list[str]
    source: list[list[str]]
    target: list[list[str]]


class ClassHierarchy:
    """The BREEDS (modified WordNet) hierarchy restricted to the ancestors of ImageNet classes.

    Node depth is the longest path from the root, as in the BREEDS release.
    """

    def __init__(self, folder: Path, where: str = "BREEDS") -> None:
        for name in HIERARCHY_FILES:
            if not (folder / name).is_file():
                raise DatasetError(
                    f"{where}: BREEDS hierarchy file {folder / name} is missing; put {', '.join(HIERARCHY_FILES)} "
                    f"from {HIERARCHY_SOURCE} in {folder} (options.hierarchy)"
                )
        path = folder / "dataset_class_info.json"
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            self.leaves = [str(row[1]) for row in info]
        except (ValueError, TypeError, IndexError, KeyError) as exc:  # JSON, UTF-8 or its layout
            raise DatasetError(
                f"{where}: BREEDS hierarchy file {path} cannot be read ({type(exc).__name__}: "
                f"{exc}); replace it with the file from {HIERARCHY_SOURCE}"
            ) from exc
        self._leaf_set = set(self.leaves)
        self.names = dict(_read_pairs(folder / "node_names.txt", "node names", where))
        full: dict[str, list[str]] = defaultdict(list)
        for parent, child in _read_pairs(
            folder / "class_hierarchy.txt", "class_hierarchy.txt", where
        ):
            full[child].append(parent)
        # keep only edges on a path up from an ImageNet class
        self.children: dict[str, set[str]] = defaultdict(set)
        todo, seen = [leaf for leaf in self.leaves], set(self.leaves)
        while todo:
            node = todo.pop()
            for parent in full.get(node, []):
                self.children[parent].add(node)
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        self.depth = self._depths()

    def _depths(self) -> dict[str, int]:
        """Longest path from the root to each node below it (the hierarchy is a DAG)."""
        order, state = [], {}
        stack = [(ROOT_WNID, False)]
        while stack:  # iterative post-order DFS for a topological order
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node in state:
                continue
            state[node] = True
            stack.append((node, True))
            stack.extend((c, False) for c in sorted(self.children.get(node, ())) if c not in state)
        depth = {ROOT_WNID: 0}
        for node in reversed(order):
            for child in self.children.get(node, ()):
                depth[child] = max(depth.get(child, 0), depth[node] + 1)
        return depth

    def successors(self, node: str) -> list[str]:
        return sorted(self.children.get(node, ()))

    def below(self, node: str) -> set[str]:
        """``node`` and every node under it."""
        return _below(self.children, node)

    def leaves_below(self, node: str) -> list[str]:
        """The ImageNet classes under ``node`` (the search stops at an ImageNet class), sorted."""
        found, frontier, seen = set(), [node], {node}
        if node in self._leaf_set:
            found.add(node)
        while frontier:
            nxt = []
            for n in frontier:
                for child in self.children.get(n, ()):
                    if child in self._leaf_set:
                        found.add(child)
                    elif child not in seen:
                        seen.add(child)
                        nxt.append(child)
            frontier = nxt
        return sorted(found)

    def name(self, node: str) -> str:
        return self.names.get(node, node)


def _split_subpopulations(
    h: ClassHierarchy, superclass: str, n_sub: int, split_type: str, rng: np.random.RandomState
) -> tuple[list[str], list[str]]:
    """Disjoint source and target subclasses (``n_sub // 2`` each) of one superclass."""
    kids = h.successors(superclass)
    while len(kids) == 1:  # descend to the first node that branches
        kids = h.successors(kids[0])
    groups = [(k, h.leaves_below(k)) for k in kids]
    half = n_sub // 2
    if split_type == "rand":
        pool = sorted(w for _, leaves in groups for w in leaves)
        picked = [str(w) for w in rng.choice(pool, 2 * half, replace=False)]
        source, target = picked[:half], picked[half:]
    else:  # "good": each branch, largest first, gives half of its classes to each side
        source, target = [], []
        for _, leaves in sorted(groups, key=lambda g: -len(g[1])):
            if len(leaves) == 1:
                cut = 1 if len(source) < half else 0
            else:
                cut = min(len(leaves) // 2, half - len(source))
            take_target = half - len(target)
            if len(source) < half:
                source.extend(leaves[:cut])
            if take_target > 0:
                target.extend(leaves[cut : cut + take_target])
    if len(source) != half or len(target) != half or len(set(source + target)) != 2 * half:
        raise DatasetError(
            f"BREEDS superclass {superclass}: cannot split its subclasses into two disjoint halves of {half} "
            f"(split_type {split_type!r}); check the hierarchy files"
        )
    return source, target


def breeds_split(hierarchy: Path, task: str, split_type: str = "rand") -> BreedsSplit:
    """Superclasses and source/target subpopulations of a BREEDS task from the hierarchy files.

    Follows the BREEDS release's construction (superclasses at a fixed depth with at least
    ``n_sub`` ImageNet classes, split per superclass with a random generator seeded 2), so the
    result is the task the study used: with the release's ``modified`` hierarchy files and
    ``rand``, the source and target classes and the superclass labels of all four tasks equal the
    lists hard-coded in the study's code (its ``sim_consistency/data/datasets/breeds.py``; checked
    once by hand, not by a test: the files are not shipped here). Only the files are read,
    nothing is downloaded.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown BREEDS task {task!r}; choose one of {', '.join(TASKS)}")
    if split_type not in SPLIT_TYPES:
        raise ConfigError(
            f"unknown BREEDS split_type {split_type!r}; choose one of {', '.join(SPLIT_TYPES)} (the study: rand)"
        )
    h = ClassHierarchy(hierarchy, where=f"BREEDS task {task}")
    level, ancestor, n_sub = TASKS[task]
    allowed = h.below(ancestor) if ancestor else None
    nodes = sorted(
        n for n, d in h.depth.items() if d == level and (allowed is None or n in allowed)
    )
    supers = [n for n in nodes if len(h.leaves_below(n)) >= n_sub]
    if not supers:
        raise DatasetError(
            f"BREEDS task {task}: no superclass at depth {level} in {hierarchy}; check the hierarchy files"
        )
    rng = np.random.RandomState(SPLIT_SEED)
    source, target = [], []
    for sup in supers:
        s, t = _split_subpopulations(h, sup, n_sub, split_type, rng)
        source.append(s)
        target.append(t)
    return BreedsSplit(supers, [h.name(s) for s in supers], source, target)


def _load_task(spec: DatasetSpec) -> StimulusSet:
    """The study's BREEDS task: source subpopulations in train, target subpopulations in test."""
    opts = spec.options
    hierarchy = spec.resolve(opts.get("hierarchy"))
    if hierarchy is None:
        raise ConfigError(
            f"dataset '{spec.id}': options.task needs options.hierarchy, the folder with {', '.join(HIERARCHY_FILES)} "
            f"(from {HIERARCHY_SOURCE})"
        )
    try:
        task = breeds_split(hierarchy, str(opts["task"]), str(opts.get("split_type", "rand")))
    except DatasetError as exc:
        raise DatasetError(f"dataset '{spec.id}': {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"dataset '{spec.id}': {exc}") from None
    root = _check_root(spec)
    present = {
        d.name for sub in root.iterdir() if sub.is_dir() for d in sub.iterdir() if d.is_dir()
    }
    missing = sorted({w for group in task.source + task.target for w in group} - present)
    if missing:
        raise DatasetError(
            f"dataset '{spec.id}': {len(missing)} ImageNet class folders of the BREEDS task are missing under "
            f"{root} (e.g. {missing[:3]}); check root (ImageNet train/ and val/ with one folder per wnid)"
        )
    allowed = {("train", w) for group in task.source for w in group} | {
        ("test", w) for group in task.target for w in group
    }
    class_dirs = {name: [*s, *t] for name, s, t in zip(task.names, task.source, task.target)}
    names, files, labels, split, ids = list_folder(spec, root, class_dirs)
    keep = [
        i
        for i in range(len(files))
        if (split[i], ids[i][len(f"{spec.id}/{split[i]}/") :].split("/")[0]) in allowed
    ]
    return make_stimset(
        spec,
        names,
        [files[i] for i in keep],
        [labels[i] for i in keep],
        [split[i] for i in keep],
        [ids[i] for i in keep],
    )


def _check_root(spec: DatasetSpec) -> Path:
    root = spec.root
    problem = DOES_NOT_EXIST if root is None else path_problem(root, "folder")
    if problem is not None:
        raise DatasetError(
            f"dataset '{spec.id}': ImageNet folder {root} {problem}; BREEDS needs ImageNet locally "
            "(train/<wnid>/ and val/<wnid>/), see https://image-net.org/download"
        )
    return root


def load(spec: DatasetSpec) -> StimulusSet:
    if spec.options.get("task"):
        return _load_task(spec)
    root = _check_root(spec)
    present = {
        d.name for sub in root.iterdir() if sub.is_dir() for d in sub.iterdir() if d.is_dir()
    }
    class_names, class_dirs = superclass_map(spec, present)
    return make_stimset(spec, *list_folder(spec, root, class_dirs))
