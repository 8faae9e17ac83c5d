"""BREEDS tasks from the hierarchy files: superclasses at a depth, disjoint source/target
subpopulations, source images in train and target images in test, and a clear error naming
a missing hierarchy file. The fixture hierarchy follows the BREEDS file format."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repsim.errors import ConfigError, DatasetError, RepsimError
from repsim.stimuli import open_dataset, parse_datasets
from repsim.stimuli.loaders.breeds import HIERARCHY_FILES, breeds_split

ROOT, LIVING = "n00001740", "n00004258"
# superclasses (5 levels below the root, under "living thing") and their ImageNet classes
SUPERS = {
    "n50000001": ["n90000011", "n90000012", "n90000013", "n90000014"],
    "n50000002": [
        "n90000021",
        "n90000022",
        "n90000023",
        "n90000024",
        "n90000025",
    ],  # 5: 4 are drawn
    "n50000003": ["n90000031", "n90000032", "n90000033"],  # too few (living17 needs 4)
}
OUTSIDE = ["n90000041", "n90000042", "n90000043", "n90000044"]  # depth 5, but a non-living thing
NAMES = {
    "n50000001": "salamander",
    "n50000002": "turtle",
    "n50000003": "frog",
    "n50000004": "bottle",
}


def _edges() -> list[tuple[str, str]]:
    chain = [ROOT, LIVING, "n20000000", "n30000000", "n40000000"]  # depths 0..4
    edges = list(zip(chain, chain[1:]))
    edges.append((ROOT, "n30000000"))  # a shortcut: the depth is the *longest* path, still 3
    for sup, leaves in SUPERS.items():
        edges.append(("n40000000", sup))
        if sup == "n50000001":  # two branches: the "good" split spreads each over both sides
            edges += [(sup, "n60000001"), (sup, "n60000002")]
            edges += [("n60000001", w) for w in leaves[:2]] + [("n60000002", w) for w in leaves[2:]]
        else:
            edges += [(sup, w) for w in leaves]
    edges += [
        (ROOT, "n00021939"),
        ("n00021939", "n21000000"),
        ("n21000000", "n31000000"),
        ("n31000000", "n41000000"),
        ("n41000000", "n50000004"),
    ]
    edges += [("n50000004", w) for w in OUTSIDE]
    edges.append(("n50000004", "n99999999"))  # not an ImageNet class: ignored
    return edges


def _hierarchy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    leaves = [w for ws in SUPERS.values() for w in ws] + OUTSIDE
    (folder / "dataset_class_info.json").write_text(
        json.dumps([[i, w, f"class {w}"] for i, w in enumerate(leaves)])
    )
    (folder / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in _edges()))
    (folder / "node_names.txt").write_text(
        "".join(f"{w}\t{n}\n" for w, n in {ROOT: "entity", **NAMES}.items())
    )
    return folder


def _imagenet(root: Path) -> Path:
    leaves = [w for ws in SUPERS.values() for w in ws] + OUTSIDE
    for k, wnid in enumerate(leaves):
        for split in ("train", "val"):
            arr = np.random.default_rng(k).integers(0, 256, (16, 16, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG")
            path = root / split / wnid / f"{wnid}_{split}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue())
    return root


def _spec(**options):
    (spec,) = parse_datasets(
        [
            {
                "id": "liv",
                "loader": "breeds",
                "domain": "Natural (multi-domain)",
                "root": options.pop("root"),
                "options": options,
            }
        ]
    )
    return spec


def test_rand_split_superclasses_and_disjoint_halves(tmp_path):
    task = breeds_split(_hierarchy(tmp_path / "h"), "living17")
    # depth 5 under "living thing" with >= 4 classes: not frog (3 classes), not bottle (non-living)
    assert task.superclasses == ["n50000001", "n50000002"] and task.names == [
        "salamander",
        "turtle",
    ]
    for sup, source, target in zip(task.superclasses, task.source, task.target):
        assert len(source) == len(target) == 2 and not set(source) & set(target)
        assert set(source) | set(target) <= set(SUPERS[sup])
    # the BREEDS release's construction: one generator seeded 2, a draw of 4 sorted classes per
    # superclass in superclass order, the first half is the source
    rng = np.random.RandomState(2)
    for sup, source, target in zip(task.superclasses, task.source, task.target):
        draw = list(rng.choice(sorted(SUPERS[sup]), 4, replace=False))
        assert source + target == draw
    assert breeds_split(tmp_path / "h", "living17") == task  # deterministic


def test_good_split_puts_each_branch_on_both_sides(tmp_path):
    task = breeds_split(_hierarchy(tmp_path / "h"), "living17", "good")
    # n50000001 has branches {11, 12} and {13, 14}: one class of each branch on each side
    assert task.source[0] == ["n90000011", "n90000013"] and task.target[0] == [
        "n90000012",
        "n90000014",
    ]
    # n50000002 has five single-class branches: the first two to the source, the next two to the target
    assert task.source[1] == ["n90000021", "n90000022"] and task.target[1] == [
        "n90000023",
        "n90000024",
    ]


def test_good_split_looks_through_a_single_child_chain(tmp_path):
    """The branches that the good split spreads sit below a chain of single children (as in the
    release's hierarchy); split at the chain's top, one branch would go whole to each side."""
    hier = _hierarchy(tmp_path / "h")
    edges = [e for e in _edges() if e[0] != "n50000001"]
    edges += [("n50000001", "n55000000"), ("n55000000", "n60000001"), ("n55000000", "n60000002")]
    (hier / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    task = breeds_split(hier, "living17", "good")
    assert task.source[0] == ["n90000011", "n90000013"]
    assert task.target[0] == ["n90000012", "n90000014"]


@pytest.mark.parametrize(
    "shared",
    [
        [("n60000001", "n90000013")],  # branches {11, 12, 13} and {13, 14}: 13 on both sides
        [("n50000001", "n60000000"), ("n60000000", "n90000011"), ("n60000000", "n90000012")],
    ],  # a third branch {11, 12} ahead of the others: 11 twice in the source, 12 in the target
)
def test_a_superclass_whose_branches_share_classes_is_refused_by_the_good_split(tmp_path, shared):
    """The hierarchy is a DAG: a class below two branches of one superclass cannot be dealt to
    the halves branch by branch. A class twice on one side was accepted and trained on twice."""
    hier = _hierarchy(tmp_path / "h")
    edges = _edges() + shared
    (hier / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    with pytest.raises(
        DatasetError, match=r"superclass n50000001: cannot split .* two disjoint halves of 2"
    ):
        breeds_split(hier, "living17", "good")


def test_loader_trains_on_source_and_tests_on_target(tmp_path):
    imnet = _imagenet(tmp_path / "imagenet")
    hier = _hierarchy(tmp_path / "h")
    st = open_dataset(_spec(root=str(imnet), task="living17", hierarchy=str(hier)))
    task = breeds_split(hier, "living17")
    assert st.class_names == ["salamander", "turtle"]
    for split, groups in (("train", task.source), ("test", task.target)):
        sel = st.split == split
        got = {(int(lab), i.split("/")[2]) for lab, i in zip(st.labels[sel], st.ids[sel])}
        assert got == {(c, w) for c, ws in enumerate(groups) for w in ws}, split
    assert st.counts("train").tolist() == [2, 2] and st.counts("test").tolist() == [2, 2]
    # a probe trained on train never sees a target subpopulation
    train_w = {i.split("/")[2] for i in st.ids[st.split == "train"]}
    test_w = {i.split("/")[2] for i in st.ids[st.split == "test"]}
    assert not train_w & test_w


@pytest.mark.parametrize("missing", HIERARCHY_FILES)
def test_missing_hierarchy_file_is_named(tmp_path, missing):
    hier = _hierarchy(tmp_path / "h")
    (hier / missing).unlink()
    with pytest.raises(
        DatasetError, match=rf"dataset 'liv'.*{missing} is missing.*BREEDS-Benchmarks"
    ) as err:
        open_dataset(
            _spec(root=str(tmp_path / "no-imagenet"), task="living17", hierarchy=str(hier))
        )
    assert isinstance(err.value, RepsimError)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_unreadable_hierarchy_file_is_named(tmp_path, content):
    """A damaged dataset_class_info.json was a raw JSONDecodeError (or UnicodeDecodeError,
    TypeError) traceback in the check and a retried task in the run."""
    hier = _hierarchy(tmp_path / "h")
    (hier / "dataset_class_info.json").write_bytes(content)
    with pytest.raises(DatasetError, match=r"dataset_class_info.json cannot be read"):
        open_dataset(
            _spec(root=str(tmp_path / "no-imagenet"), task="living17", hierarchy=str(hier))
        )


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        (
            "class_hierarchy.txt",
            b"n50000001\n",
            r"line 1: 'n50000001' has one field, .*its child\)",
        ),
        ("node_names.txt", b"n50000001\tsalamander\nn50000002\n", r"line 2: 'n50000002' has one"),
        ("node_names.txt", b"n50000001\tsal\xe9\n", r"is not UTF-8 text \(invalid continuation"),
    ],
)
def test_a_damaged_line_of_the_task_hierarchy_is_refused_by_file_and_line(
    tmp_path, name, content, words
):
    """The task's hierarchy was read by a second, lenient reader: a line with one field was
    skipped (an edge lost, its classes out of the task unsaid), a non-UTF-8 file a raw error."""
    hier = _hierarchy(tmp_path / "h")
    (hier / name).write_bytes(content + (hier / name).read_bytes())
    with pytest.raises(
        DatasetError, match=rf"dataset 'liv': BREEDS task living17: .*{name}.*{words}"
    ):
        open_dataset(_spec(root=str(tmp_path / "imagenet"), task="living17", hierarchy=str(hier)))


def test_bad_task_options(tmp_path):
    hier = _hierarchy(tmp_path / "h")
    with pytest.raises(ConfigError, match="entity13, entity30, living17, nonliving26"):
        open_dataset(_spec(root=str(tmp_path), task="living18", hierarchy=str(hier)))
    with pytest.raises(ConfigError, match="rand, good"):
        open_dataset(
            _spec(root=str(tmp_path), task="living17", hierarchy=str(hier), split_type="bad")
        )
    with pytest.raises(ConfigError, match="options.hierarchy"):
        open_dataset(_spec(root=str(tmp_path), task="living17"))
    with pytest.raises(DatasetError, match="ImageNet folder"):
        open_dataset(_spec(root=str(tmp_path / "nowhere"), task="living17", hierarchy=str(hier)))


def test_a_misspelt_option_is_refused_with_the_config(tmp_path):
    """split_typ would silently give the default split (rand) where good was asked for."""
    with pytest.raises(ConfigError, match=r"unknown key.*split_typ.*did you mean 'split_type'"):
        _spec(root=str(tmp_path), task="living17", hierarchy=str(tmp_path), split_typ="good")
    for ok in ({"class_map": "m.txt"}, {"superclasses": ["n1"], "hierarchy": "h"}):
        _spec(root=str(tmp_path), verify="full", min_side=8, test_fraction=0.2, **ok)


def test_a_superclass_without_imagenet_folders_is_refused_by_name(tmp_path):
    """Without the refusal the superclass would be a label with no images: the probe would
    silently run on one class fewer than the config lists."""
    imnet = _imagenet(tmp_path / "imagenet")
    for split in ("train", "val"):
        for wnid in OUTSIDE:  # the classes of n50000004 (bottle) are not on disk
            shutil.rmtree(imnet / split / wnid)
    hier = _hierarchy(tmp_path / "h")
    spec = _spec(root=str(imnet), hierarchy=str(hier), superclasses=["n50000001", "n50000004"])
    with pytest.raises(DatasetError, match=r"no ImageNet class folders.*\['n50000004'\]"):
        open_dataset(spec)
    # with both superclasses on disk the same options load, each under its own name
    st = open_dataset(
        _spec(root=str(imnet), hierarchy=str(hier), superclasses=["n50000001", "n50000002"])
    )
    assert st.class_names == ["salamander", "turtle"]


def test_a_class_below_two_listed_superclasses_is_refused_by_name(tmp_path):
    """n60000001 lies below n50000001: its classes would otherwise get whichever label came first."""
    imnet = _imagenet(tmp_path / "imagenet")
    hier = _hierarchy(tmp_path / "h")
    spec = _spec(root=str(imnet), hierarchy=str(hier), superclasses=["n50000001", "n60000001"])
    with pytest.raises(
        DatasetError,
        match=r"class n90000011 lies below superclasses n50000001 and n60000001.*class_map",
    ):
        open_dataset(spec)


@pytest.mark.parametrize("given", ["hierarchy", "superclasses"])
def test_superclasses_and_hierarchy_only_work_together(tmp_path, given):
    imnet = _imagenet(tmp_path / "imagenet")
    value = {"hierarchy": str(_hierarchy(tmp_path / "h")), "superclasses": ["n50000001"]}[given]
    with pytest.raises(ConfigError, match=r"options.hierarchy and options.superclasses"):
        open_dataset(_spec(root=str(imnet), **{given: value}))


def test_a_missing_class_folder_of_the_task_is_refused_by_name(tmp_path):
    """A source class missing on disk would silently shrink a superclass's training images."""
    imnet = _imagenet(tmp_path / "imagenet")
    hier = _hierarchy(tmp_path / "h")
    gone = breeds_split(hier, "living17").source[1][0]
    for split in ("train", "val"):
        shutil.rmtree(imnet / split / gone)
    with pytest.raises(DatasetError, match=rf"1 ImageNet class folders of the BREEDS task.*{gone}"):
        open_dataset(_spec(root=str(imnet), task="living17", hierarchy=str(hier)))


def test_a_task_without_a_large_enough_superclass_is_refused(tmp_path):
    # entity13 wants superclasses 3 levels down with >= 20 ImageNet classes: none here
    with pytest.raises(DatasetError, match=r"BREEDS task entity13: no superclass at depth 3"):
        breeds_split(_hierarchy(tmp_path / "h"), "entity13")


def test_a_missing_class_map_is_refused_by_name(tmp_path):
    imnet = _imagenet(tmp_path / "imagenet")
    cmap = tmp_path / "no-map.txt"
    with pytest.raises(DatasetError, match=rf"dataset 'liv': BREEDS class map file {cmap}"):
        open_dataset(_spec(root=str(imnet), class_map=str(cmap)))


def test_a_class_map_with_blank_lines_loads(tmp_path):
    imnet = _imagenet(tmp_path / "imagenet")
    cmap = tmp_path / "map.txt"
    cmap.write_text("n90000011\tn50000001\n\n   \nn90000021 n50000002\n")
    st = open_dataset(_spec(root=str(imnet), class_map=str(cmap)))
    assert st.class_names == ["n50000001", "n50000002"] and st.counts().tolist() == [2, 2]


def test_a_class_map_line_without_its_superclass_or_not_utf8_is_refused_by_line(tmp_path):
    """A line holding only a class was skipped, and the class dropped out of the task unsaid."""
    imnet = _imagenet(tmp_path / "imagenet")
    cmap = tmp_path / "map.txt"
    cmap.write_text("n90000011\tn50000001\nn90000021\n")
    with pytest.raises(
        DatasetError,
        match=r"map\.txt, line 2: 'n90000021' has one field, .*WordNet id and its superclass\)",
    ):
        open_dataset(_spec(root=str(imnet), class_map=str(cmap)))
    cmap.write_bytes(b"n90000011\tn5\xff\n")
    with pytest.raises(DatasetError, match=r"map\.txt is not UTF-8 text \(invalid start byte"):
        open_dataset(_spec(root=str(imnet), class_map=str(cmap)))


# The study's Living-17 classes (ImageNet indices, sim_consistency/data/datasets/breeds.py), in
# superclass order; checked against the real BREEDS files when REPSIM_BREEDS_HIERARCHY names them.
# fmt: off
STUDY_LIVING17_TRAIN = [27, 29, 37, 34, 41, 44, 60, 57, 76, 72, 81, 83, 88, 90, 118, 120, 163, 154, 272, 271,
                        280, 279, 282, 285, 297, 295, 305, 306, 325, 321, 368, 365, 377, 380]
STUDY_LIVING17_TEST = [26, 28, 33, 35, 47, 38, 65, 61, 74, 77, 82, 80, 87, 89, 119, 121, 257, 157, 270, 269,
                       277, 278, 283, 284, 296, 294, 302, 303, 324, 322, 366, 367, 381, 379]
# fmt: on


@pytest.mark.skipif(
    not os.environ.get("REPSIM_BREEDS_HIERARCHY"),
    reason="the BREEDS hierarchy files are not shipped",
)
def test_real_hierarchy_gives_the_study_split():
    hier = Path(os.environ["REPSIM_BREEDS_HIERARCHY"])
    number = {row[1]: row[0] for row in json.loads((hier / "dataset_class_info.json").read_text())}
    task = breeds_split(hier, "living17")
    assert [number[w] for ws in task.source for w in ws] == STUDY_LIVING17_TRAIN
    assert [number[w] for ws in task.target for w in ws] == STUDY_LIVING17_TEST
