"""Dataset specs, stratified similarity subsets, the stimulus table and the dataset check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from repsim.errors import ConfigError, DatasetError
from repsim.stimuli import (
    StimulusSet,
    check_datasets,
    parse_datasets,
    similarity_subset,
    stimulus_table,
)
from repsim.stimuli.decode import UnreadableImage
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.subset import missing_split, probe_split_problem


def _entry(**kw):
    base = {"id": "d", "loader": "embedded", "path": "x.npz", "domain": "Structured"}
    return {**base, **kw}


def test_parse_resolves_relative_paths_and_defaults(tmp_path):
    (spec,) = parse_datasets([_entry(_config_dir=str(tmp_path))], {"max_images": 500, "seed": 7})
    assert spec.path == tmp_path / "x.npz"
    assert (spec.max_images, spec.per_class, spec.seed) == (500, None, 7)
    (spec,) = parse_datasets([_entry(per_class=10)])
    assert (spec.max_images, spec.per_class, spec.seed) == (10000, 10, 42)
    (spec,) = parse_datasets([_entry(max_images=1, per_class=1, n_classes=1, seed=0)])
    assert (spec.max_images, spec.per_class, spec.n_classes, spec.seed) == (1, 1, 1, 0)
    # `max_images:` left empty is the default budget, not "no limit"
    (spec,) = parse_datasets([_entry(max_images=None)], {"max_images": None})
    assert spec.max_images == 10000
    assert (spec.name, spec.url, spec.source) == ("d", None, "")  # the name defaults to the id
    (spec,) = parse_datasets([_entry(name="Faces", source="wds_faces")], {"per_class": 5})
    assert (spec.name, spec.source, spec.per_class) == ("Faces", "wds_faces", 5)


@pytest.mark.parametrize("key", ["path", "root", "url", "name", "source"])
def test_a_location_or_name_that_is_not_a_string_is_refused(key):
    with pytest.raises(ConfigError, match=f"dataset 'd': '{key}' must be a string, got 7"):
        parse_datasets([_entry(**{key: 7})])


def test_option_paths_resolve_against_the_config_folder_or_as_written(tmp_path):
    """A file named in options (a BREEDS class map) is found next to the config that names it;
    a config given as a dict has no folder, and the path stays as written."""
    entry = _entry(loader="breeds", path=None, root="imagenet")
    (spec,) = parse_datasets([{**entry, "_config_dir": str(tmp_path)}])
    assert spec.root == tmp_path / "imagenet"
    assert spec.resolve("maps/../map.txt") == tmp_path / "map.txt"
    assert spec.resolve(None) is None
    (spec,) = parse_datasets([entry])
    assert spec.resolve("maps/../map.txt") == Path("map.txt")


@pytest.mark.parametrize(
    "where, location",
    [
        ({"path": "d.npz"}, "d.npz"),
        ({"loader": "torchvision", "path": None, "root": "/data/tv"}, "/data/tv"),
        ({"loader": "wds", "path": None, "url": "https://h/x"}, "https://h/x"),
    ],
)
def test_a_datasets_location_is_its_path_root_or_url(where, location):
    (spec,) = parse_datasets([_entry(**where)])
    assert spec.location == location
    assert DatasetSpec("d", "embedded", "Structured").location == ""


@pytest.mark.parametrize(
    "entries, match",
    [
        ([_entry(loader="hdf5")], "unknown loader"),
        ([_entry(), _entry()], "appears twice"),
        ([_entry(path=None)], "needs path"),
        ([_entry(domain="Natural")], "domain"),
        ([_entry(max_images=0)], "positive integer"),
        ([_entry(seed=-1)], "'seed' must be a non-negative integer, got -1"),
        ([_entry(seed="7")], "'seed' must be a non-negative integer, got '7'"),
        ([_entry(colour="red")], r"unknown key 'colour'.*settings go under 'options:'"),
        ([_entry(domian="Structured")], "did you mean 'domain'"),
        ([_entry(id="../x")], "cannot be used"),
        ([_entry(options={"verfy": "full"})], "did you mean 'verify'"),
        ([{"loader": "embedded"}], "no 'id'"),
        ([_entry(id="")], "has no 'id'; add a unique id string"),
        (["faces"], "each datasets: entry must be a mapping, got 'faces'"),
        ([_entry(options=["verify"])], "'options' must be a mapping"),
        ([_entry(id=7)], "'id' must be a string, got 7 .int."),
    ],
)
def test_parse_rejects_bad_entries(entries, match):
    with pytest.raises(ConfigError, match=match):
        parse_datasets(entries)


def test_a_repeated_dataset_id_is_named_with_the_other_bad_entries():
    with pytest.raises(ConfigError) as error:
        parse_datasets([_entry(), _entry(), _entry(id="e", path=None)])
    assert str(error.value).splitlines() == [
        "2 of 3 dataset entries are invalid; fix each:",
        "  dataset id 'd' appears twice in the config; ids must be unique",
        "  dataset 'e': loader 'embedded' needs path; add it to the entry",
    ]


def test_an_empty_datasets_list_parses_to_no_specs():
    assert parse_datasets(None) == [] and parse_datasets([]) == []


def _stimset(counts, test_every=5, dataset="toy"):
    labels = np.repeat(np.arange(len(counts)), counts)
    ids = np.array([f"{dataset}/{i:06d}" for i in range(len(labels))])
    split = np.where(np.arange(len(labels)) % test_every == 0, "test", "train")
    images = np.zeros((len(labels), 2, 2, 3), np.uint8)
    return StimulusSet(
        dataset,
        ids,
        labels,
        split,
        [f"c{c}" for c in range(len(counts))],
        "Structured",
        images=images,
    )


def test_subset_takes_whole_train_split_when_small():
    s = _stimset([30, 40])
    sub = similarity_subset(s, max_images=1000)
    assert set(sub) == set(s.ids[s.split == "train"])


@settings(deadline=None)  # examples: the profile in conftest.py (40; more under make fuzz)
@given(counts=st.lists(st.integers(0, 60), min_size=1, max_size=12), max_images=st.integers(1, 200))
def test_subset_per_class_rule(counts, max_images):
    s = _stimset(counts)
    sub = similarity_subset(s, max_images=max_images)
    train = s.split == "train"
    n_c = np.bincount(s.labels[train], minlength=len(counts))
    assert len(set(sub)) == len(sub)
    assert np.all(s.split[s.indices_of(sub)] == "train")
    got = np.bincount(s.labels[s.indices_of(sub)], minlength=len(counts))
    if train.sum() <= max_images:
        assert np.array_equal(got, n_c)
    else:
        k = math.ceil(max_images / (n_c > 0).sum())
        assert np.array_equal(got, np.minimum(n_c, k))


def test_subset_is_deterministic_and_independent_of_order():
    s = _stimset([500, 300, 7, 1])
    a = similarity_subset(s, max_images=100)
    perm = np.random.default_rng(1).permutation(len(s))
    b = similarity_subset(s.take(perm), max_images=100)
    assert np.array_equal(a, b)
    c = similarity_subset(s, max_images=100, seed=43)
    assert not np.array_equal(a, c)
    assert np.bincount(s.labels[s.indices_of(a)]).tolist() == [
        25,
        25,
        5,
        1,
    ]  # 7 -> 5 train, 1 -> 0 test


def test_per_class_overrides_max_images():
    s = _stimset([50] * 20)
    sub = similarity_subset(s, max_images=10000, per_class=10)
    assert np.bincount(s.labels[s.indices_of(sub)]).tolist() == [10] * 20


def test_stimulus_table_rows_columns_and_alignment():
    s = _stimset([30, 30, 30])
    t = stimulus_table(s, max_images=30)
    assert list(t.columns) == ["id", "label", "split", "in_similarity"]
    assert len(t) == len(s) and t["id"].is_monotonic_increasing
    assert t.in_similarity.sum() == 30 and (t[t.in_similarity].split == "train").all()
    assert t.attrs["skipped"] == []
    t2 = stimulus_table(s.take(np.arange(len(s))[::-1]), max_images=30)
    assert t.equals(t2)


def _with_split(split, labels=None):
    split = np.asarray(split)
    labels = np.zeros(len(split), int) if labels is None else np.asarray(labels)
    ids = [f"s/{i:03d}" for i in range(len(split))]
    images = np.zeros((len(split), 2, 2, 3), np.uint8)
    return StimulusSet("s", ids, labels, split, ["a", "b"], "Structured", images=images)


def test_an_empty_similarity_split_is_refused_with_the_fix_for_that_split():
    """No train images: the fix is stimuli.split: test; no test images (a loader without
    test_fraction): add test images or use the train split. Never an empty subset."""
    all_test = _with_split(["test"] * 4)
    why = missing_split(all_test, "train")
    assert why == (
        "dataset 's' has no train images (all 4 are test) while stimuli.split is train; "
        "check the split layout, or set stimuli.split: test"
    )
    all_train = _with_split(["train"] * 3)
    assert missing_split(all_train, "train") is None
    why = missing_split(all_train, "test")
    assert why == (
        "dataset 's' has no test images (all 3 are train) while stimuli.split is test; "
        "add test images to the dataset, or set stimuli.split: train"
    )
    all_train.skipped.append(("s/099", "broken"))  # a skipped item is no cause when others read
    assert missing_split(all_train, "test") == why
    with pytest.raises(DatasetError, match="'s' has no test images"):
        stimulus_table(all_train, split="test")
    assert similarity_subset(all_train, per_class=2, split="test").tolist() == []


def test_probe_split_problem_names_test_classes_the_train_split_lacks():
    """Plain lists, as a caller may pass: a test class absent from train cannot be scored."""
    split = ["train", "train", "train", "test", "test"]
    assert probe_split_problem("d", split, [0, 1, 1, 0, 1]) is None
    assert probe_split_problem("d", split, [0, 1, 1, 3, 2]) == (
        "classes",
        "d has test images of 2 class(es) its train split lacks (class indices 2, 3)",
    )
    assert probe_split_problem("d", split, [1, 1, 1, 0, 1]) == (
        "classes",
        "d has 1 class in its train split (a probe needs 2)",
    )
    assert probe_split_problem("d", ["train"] * 2, [0, 1]) == ("split", "d has no test images")


def test_verify_similarity_redraws_the_subset_without_unreadable_items():
    """``verify="similarity"`` decodes only the subset; unreadable picks are skipped, listed and
    replaced by readable images of the same class, so each class keeps its k images."""
    labels = np.repeat([0, 1], 20)
    ids = np.array([f"v/{i:03d}" for i in range(40)])
    bad = {f"v/{i:03d}" for i in range(0, 20, 2)}  # every other image of class 0

    def reader(i):
        if ids[i] in bad:
            raise UnreadableImage("broken")
        return np.zeros((2, 2, 3), np.uint8)

    s = StimulusSet("v", ids, labels, ["train"] * 40, ["a", "b"], "Structured", reader=reader)
    t = stimulus_table(s, max_images=10, verify="similarity")
    chosen = t[t.in_similarity]
    assert not set(chosen.id) & bad
    assert chosen.label.value_counts().sort_index().tolist() == [5, 5]
    skipped = {item for item, _ in t.attrs["skipped"]}
    assert skipped and skipped <= bad and not skipped & set(t.id)
    assert len(t) == 40 - len(skipped)
    s = StimulusSet("v", ids, labels, ["train"] * 40, ["a", "b"], "Structured", reader=reader)
    t = stimulus_table(s, max_images=10, verify=False)  # nothing decoded, nothing skipped
    assert len(t) == 40 and t.attrs["skipped"] == [] and t.in_similarity.sum() == 10


def test_verify_decodes_only_the_given_items_and_take_keeps_everything_aligned():
    ids = [f"v/{i}" for i in range(4)]
    decoded = []

    def reader(i):
        decoded.append(i)
        if i == 0:
            raise UnreadableImage("broken")
        return np.full((2, 2, 3), i, np.uint8)

    attributes = [{"n": i} for i in range(4)]
    s = StimulusSet(
        "v",
        ids,
        [0, 1, 0, 1],
        ["train"] * 4,
        ["a", "b"],
        "Structured",
        reader=reader,
        attributes=attributes,
    )
    assert s.verify([1, 3]) is s and sorted(decoded) == [1, 3] and s.skipped == []
    t = s.verify()
    assert t.skipped == [("v/0", "broken")]
    assert t.ids.tolist() == ids[1:] and t.labels.tolist() == [1, 0, 1]
    assert t.attributes == attributes[1:] and t.load_images([0])[0, 0, 0, 0] == 1
    empty = t.take([])
    assert len(empty) == 0 and empty.load_images([]) == []
    with pytest.raises(DatasetError, match="stimulus id 'v/1' is not in the dataset"):
        empty.indices_of(["v/1"])


def test_verify_skips_a_file_that_vanished_with_the_reason():
    def reader(i):
        raise FileNotFoundError("gone")

    s = StimulusSet("v", ["v/0"], [0], ["train"], ["a"], "Structured", reader=reader)
    assert len(s.verify()) == 0
    assert s.skipped == [("v/0", "cannot read file (FileNotFoundError: gone)")]


def test_stimulus_table_marks_the_subset_of_its_own_rules():
    """Given a StimulusSet, the table's in_similarity is the subset of the given seed, per_class
    and split; the attrs name the dataset and its classes."""
    s = _stimset([30, 30, 30])
    for kw in ({"seed": 7}, {"seed": 8}, {"per_class": 3}, {"split": "test", "max_images": 6}):
        t = stimulus_table(s, **{"max_images": 30, **kw})
        want = similarity_subset(s, **{"max_images": 30, **kw})
        assert t.id[t.in_similarity].tolist() == want.tolist()
    assert t.attrs["dataset"] == "toy" and t.attrs["class_names"] == ["c0", "c1", "c2"]
    want = similarity_subset(s, max_images=30, seed=42)  # the study's seed is the default
    assert similarity_subset(s, max_images=30).tolist() == want.tolist()
    t = stimulus_table(s, max_images=30)
    assert t.id[t.in_similarity].tolist() == want.tolist()


def test_subset_draws_are_pinned_and_a_full_budget_takes_everything():
    """The draw sequence is part of the reproducibility promise (a rerun must pick the same
    images): classes in order, one generator, no draw for a class that fits whole. A train split
    of exactly max_images is taken whole, however unbalanced."""
    s = _stimset([13, 4, 9, 3], test_every=10**9)  # only item 0 is test
    rng = np.random.default_rng(5)
    want = []
    for c in range(4):  # class 0 has 12 train images (item 0 is test)
        members = np.sort(s.ids[(s.labels == c) & (s.split == "train")])
        want += list(members) if len(members) <= 4 else list(rng.choice(members, 4, replace=False))
    assert similarity_subset(s, per_class=4, seed=5).tolist() == sorted(want)
    s = _stimset([10, 1], test_every=10**9)
    assert len(similarity_subset(s, max_images=10)) == 10  # 9 + 1 train images


def test_the_default_budget_is_the_studys_10000_images():
    """Without max_images, stimulus_table and similarity_subset keep up to 10000 train images."""
    for counts, n in (([9001, 1000], 10000), ([9002, 1000], 6000)):  # item 0 is test
        s = _stimset(counts, test_every=10**9)
        assert stimulus_table(s, verify=False).in_similarity.sum() == n
        assert len(similarity_subset(s)) == n


def test_indices_of_unknown_id_is_an_error():
    s = _stimset([3])
    with pytest.raises(DatasetError, match="not in the dataset"):
        s.indices_of(["toy/999999"])


def test_duplicate_ids_are_an_error():
    with pytest.raises(DatasetError, match="duplicate stimulus ids"):
        StimulusSet(
            "d",
            ["a", "a"],
            [0, 0],
            ["train", "train"],
            ["c"],
            "Structured",
            images=np.zeros((2, 1, 1, 3), np.uint8),
        )


def _three(**change):
    """A valid three-item StimulusSet's arguments, with some of them changed."""
    kw = {
        "dataset_id": "d",
        "ids": ["a", "b", "c"],
        "labels": [0, 1, 1],
        "split": ["train", "train", "test"],
        "class_names": ["x", "y"],
        "domain": "Structured",
        "images": np.zeros((3, 1, 1, 3), np.uint8),
    }
    return {**kw, **change}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"labels": [0, 1]}, r"ids, labels and split differ in length \(3, 2, 3\)"),
        ({"split": ["train"] * 4}, r"ids, labels and split differ in length \(3, 3, 4\)"),
        ({"images": np.zeros((2, 1, 1, 3), np.uint8)}, "2 images for 3 ids"),
        ({"attributes": [{}]}, "1 attribute records for 3 ids"),
        ({"split": ["train", "val", "test"]}, r"unknown split values \['val'\]"),
        ({"labels": [0, 2, 1]}, r"labels must lie in \[0, 2\) for 2 class names"),
        ({"labels": [0, -1, 1]}, r"labels must lie in \[0, 2\)"),
        ({"images": None}, "no image source"),
        (
            {"ids": [], "labels": np.array([], str), "split": [], "images": None, "reader": id},
            "labels are <U1, not class indices",
        ),
    ],
)
def test_a_stimulus_set_that_does_not_line_up_is_refused(change, match):
    with pytest.raises(DatasetError, match=f"dataset 'd': {match}"):
        StimulusSet(**_three(**change))


def test_a_stimulus_set_names_up_to_five_duplicated_ids_and_takes_class_names_as_text():
    ids = ["u", *[k for k in "abcdef" for _ in (0, 1)]]
    kw = _three(ids=ids, labels=[0] * 13, split=["train"] * 13, class_names=[3, 7])
    with pytest.raises(DatasetError, match=r"duplicate stimulus ids \['a', 'b', 'c', 'd', 'e'\];"):
        StimulusSet(**{**kw, "images": np.zeros((13, 1, 1, 3), np.uint8)})
    st = StimulusSet(**_three(class_names=np.array([3, 7]), attributes=[{}, {}, {}]))
    assert st.class_names == ["3", "7"] and all(type(c) is str for c in st.class_names)


def test_check_datasets_embedded(repo_root):
    table, ok = check_datasets(repo_root / "data/configs/embedded.yaml")
    assert ok
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["id", "domain", "classes"]
    assert any(
        line.startswith("shapes ") and "2400" in line and "present" in line for line in lines
    )


def test_check_datasets_reports_missing_files(tmp_path, repo_root):
    cfg = {
        "datasets": [
            {
                "id": "digits",
                "loader": "embedded",
                "path": str(repo_root / "data/embedded/digits.npz"),
                "domain": "Structured",
            },
            {
                "id": "gone",
                "loader": "embedded",
                "path": "nope.npz",
                "domain": "Specialized",
                "n_classes": 4,
            },
        ]
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    table, ok = check_datasets(path)
    assert not ok
    assert "absent" in table and "python -m repsim.embedded" in table


def test_cli_datasets_check_exit_code(tmp_path):
    from repsim.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"id": "g", "loader": "embedded", "path": "no.npz", "domain": "Structured"}
                ]
            }
        )
    )
    assert main(["datasets", "--config", str(path), "--check"]) == 1


def test_paper_datasets_config_matches_the_study(repo_root):
    import pandas as pd

    from repsim.config import load_config

    ref = (
        pd.read_csv(repo_root.parent / "shared/reference/paper_datasets.csv")
        if (repo_root.parent / "shared/reference/paper_datasets.csv").is_file()
        else None
    )
    cfg = load_config(repo_root / "data/configs/paper_datasets.yaml")
    specs = parse_datasets(cfg["datasets"])
    assert len(specs) == 23
    counts = pd.Series([s.domain for s in specs]).value_counts().to_dict()
    assert counts == {
        "Natural (multi-domain)": 10,
        "Natural (single-domain)": 6,
        "Specialized": 4,
        "Structured": 3,
    }
    by_id = {s.id: s for s in specs}
    assert by_id["imagenet-subset-10k"].per_class == 10
    assert by_id["entity30"].loader == "breeds"
    if ref is not None:
        for row in ref.itertuples():
            assert by_id[row.id].n_classes == row.n_classes and by_id[row.id].domain == row.domain
    table, ok = check_datasets(repo_root / "data/configs/paper_datasets.yaml")
    if not ok:  # shards not downloaded on this machine: every line says how to get them
        assert "huggingface-cli download" in table
