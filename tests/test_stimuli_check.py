"""Bad images in any split are skipped and listed; ``repsim datasets --check`` decodes every file."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from repsim.errors import ConfigError
from repsim.stimuli import check_datasets, open_dataset, parse_datasets, stimulus_table


def _png(seed: int, size: int = 16, fmt: str = "PNG") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """Train/test image folder with a truncated JPEG in *test* and a dangling symlink in train."""
    root = tmp_path / "imgs"
    for split, n in (("train", 4), ("test", 2)):
        for c in ("ant", "bee"):
            for i in range(n):
                seed = zlib.crc32(f"{split}/{c}/{i}".encode()) % 1000  # not hash(): PYTHONHASHSEED
                _write(root / split / c / f"{i}.png", _png(seed))
    jpg = _png(99, 64, "JPEG")
    _write(root / "test" / "bee" / "cut.jpg", jpg[: len(jpg) // 2])  # header reads, data does not
    (root / "train" / "ant" / "gone.png").symlink_to(root / "nowhere" / "x.png")
    return root


def _config(tmp_path: Path, root: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    entry = {"id": "fx", "loader": "imagefolder", "path": str(root), "domain": "Structured"}
    cfg.write_text(yaml.safe_dump({"datasets": [entry]}))
    return cfg


def test_bad_test_image_and_dangling_symlink_are_skipped_and_listed(bad_folder: Path) -> None:
    (spec,) = parse_datasets(
        [{"id": "fx", "loader": "imagefolder", "path": str(bad_folder), "domain": "Structured"}]
    )
    st = open_dataset(spec)
    reasons = dict(st.skipped)
    assert "dangling symlink" in reasons["fx/train/ant/gone.png"]  # listed, not dropped silently
    table = stimulus_table(spec)
    skipped = dict(table.attrs["skipped"])
    assert set(skipped) == {"fx/train/ant/gone.png", "fx/test/bee/cut.jpg"}
    assert "truncated" in skipped["fx/test/bee/cut.jpg"]
    assert "fx/test/bee/cut.jpg" not in set(table.id)
    # the dataset is not failed: every other item is in the table, and every row decodes
    assert (table.split == "test").sum() == 4 and (table.split == "train").sum() == 8
    st = open_dataset(spec)
    st.load_images(st.indices_of(table.id.to_numpy()))


def test_datasets_check_decodes_every_file_and_lists_each_bad_one(
    bad_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from repsim.cli import main

    cfg = _config(tmp_path, bad_folder)
    listing, ok = check_datasets(cfg)  # no decode: headers only, the truncated file is not seen
    assert ok and "cut.jpg" not in listing and "gone.png" in listing
    table, ok = check_datasets(cfg, decode=True)
    assert not ok
    lines = table.splitlines()
    assert "fx: 2 item(s) cannot be used and are skipped by a run:" in lines
    assert any(line.startswith("  fx/test/bee/cut.jpg: corrupt or truncated") for line in lines)
    assert any(line.startswith("  fx/train/ant/gone.png: dangling symlink") for line in lines)
    assert main(["datasets", "--config", str(cfg), "--check"]) == 1
    assert "cut.jpg" in capsys.readouterr().out


def test_datasets_check_passes_clean_data_and_honours_select(
    tmp_path: Path, repo_root: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"include: [{repo_root / 'data/configs/embedded.yaml'}]\nselect: {{datasets: [faces]}}\n"
    )
    table, ok = check_datasets(cfg, decode=True)
    assert ok, table
    rows = [
        line.split()[0] for line in table.splitlines()[1:] if line and not line.startswith("every")
    ]
    assert rows == ["faces"]
    assert "every image of the 1 dataset(s) decodes" in table
    header, row = table.splitlines()[:2]
    start = header.index(" train ") + 1
    n_train, n_test = row[start:].split()[:2]
    with np.load(repo_root / "data/embedded/faces.npz") as npz:
        split = npz["split"].tolist()
    assert (int(n_train), int(n_test)) == (split.count("train"), split.count("test"))


def test_wds_dangling_shard_symlink_is_listed(tmp_path: Path) -> None:
    import tarfile

    root = tmp_path / "wds"
    (root / "train").mkdir(parents=True)
    (root / "classnames.txt").write_text("a\nb\n")
    with tarfile.open(root / "train" / "0.tar", "w") as tf:
        for i in range(4):
            for name, data in ((f"s{i}.png", _png(i)), (f"s{i}.cls", str(i % 2).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (root / "train" / "1.tar").symlink_to(tmp_path / "elsewhere" / "1.tar")
    (spec,) = parse_datasets(
        [{"id": "w", "loader": "wds", "path": str(root), "domain": "Structured"}]
    )
    st = open_dataset(spec)
    assert len(st) == 4
    (item, reason) = st.skipped[0]
    assert item == "w/train/1.tar" and "cannot be read" in reason


def test_no_test_split_under_split_test_is_named_with_the_fixes(tmp_path: Path) -> None:
    """An image folder without test/ under ``stimuli: {split: test}`` passed the check with
    ``subset 0`` and failed the run with "has 0 in its similarity subset ... max_images"."""
    from repsim.errors import DatasetError

    root = tmp_path / "imgs"
    for c in ("ant", "bee"):
        for i in range(3):
            _write(root / "train" / c / f"{i}.png", _png(i))
    cfg = tmp_path / "c.yaml"
    entry = {"id": "fx", "loader": "imagefolder", "path": str(root), "domain": "Structured"}
    cfg.write_text(yaml.safe_dump({"stimuli": {"split": "test"}, "datasets": [entry]}))
    table, ok = check_datasets(cfg)
    assert not ok
    note = "fx: dataset 'fx' has no test images (all 6 are train) while stimuli.split is test"
    assert note in table
    # the missing split alone fails the check, without the probes' own refusal, and an item
    # skipped at open (listed, not a failure without --check) does not make it pass
    _write(root / "train" / "ant" / "junk.png", b"junk")
    config = {"stimuli": {"split": "test"}, "probe": {"enabled": False}, "datasets": [entry]}
    table, ok = check_datasets(config)
    assert not ok and note in table and "linear probes" not in table
    assert "fx: 1 item(s) cannot be used and are skipped by a run:" in table
    assert "options.test_fraction" in table and "stimuli.split: train" in table
    (spec,) = parse_datasets([entry], {"split": "test"})
    with pytest.raises(DatasetError, match="has no test images .*options.splits"):
        stimulus_table(spec)  # what the run's stimulus stage does


def test_datasets_check_refuses_what_the_runs_probes_refuse(tmp_path: Path) -> None:
    """A folder without a test split, or with one class, passed ``repsim datasets --check``
    ("every image decodes") and the run then refused it at once for its linear probes."""
    root = tmp_path / "imgs"
    for i in range(3):
        _write(root / "train" / "ant" / f"{i}.png", _png(i))
    entry = {"id": "fx", "loader": "imagefolder", "path": str(root), "domain": "Structured"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": [entry]}))
    table, ok = check_datasets(cfg, decode=True)
    assert not ok and "fx: linear probes cannot run: fx has no test images. Hold out" in table
    assert "every image of the" not in table
    for i in range(3):
        _write(root / "test" / "ant" / f"{i}.png", _png(10 + i))
    table, ok = check_datasets(cfg)
    assert not ok and "fx has 1 class in its train split (a probe needs 2). Give" in table
    cfg.write_text(yaml.safe_dump({"datasets": [entry], "probe": {"enabled": False}}))
    assert check_datasets(cfg)[1]  # no probes: nothing to refuse


def test_a_dataset_of_unreadable_images_is_named_so_not_as_a_split_problem(tmp_path: Path):
    """Every image cut in half: the run said "has no train images (all 0 are test) ... check the
    split layout", which sent the user to the wrong place."""
    from repsim.errors import DatasetError

    root = tmp_path / "imgs"
    for c in ("ant", "bee"):
        for i in range(3):
            png = _png(i)
            _write(root / "train" / c / f"{i}.png", png[: len(png) // 2])
    entry = {"id": "cut", "loader": "imagefolder", "path": str(root), "domain": "Structured"}
    (spec,) = parse_datasets([entry], {})
    with pytest.raises(
        DatasetError,
        match=r"'cut' has no usable images: all 6 items could not be "
        r"read and were skipped \(the first, \S*ant\S0\.png: .*\); repair or replace the files",
    ):
        stimulus_table(spec)  # what the run's stimulus stage does


def _files_column(table: str, n: int) -> dict[str, str]:
    """The files cell of each of the ``n`` dataset rows, by id (the last column: it may hold
    spaces)."""
    header, *rows = table.splitlines()
    start = header.index("files")
    return {row.split()[0]: row[start:] for row in rows[:n]}


def test_a_damaged_dataset_file_is_present_but_invalid_not_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that is there but cannot be used was listed as absent, as if it were to download;
    the cell says present, invalid and why in short, the note below gives the whole message."""
    from faults.faultkit import unreadable

    from repsim.cli import main
    from repsim.stimuli.check import REASON_WIDTH

    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / "locked.npz").write_bytes(b"PK\x03\x04")
    unreadable(monkeypatch, tmp_path / "locked.npz")  # mode 000, also for root
    hierarchy = tmp_path / "hierarchy"
    hierarchy.mkdir()
    for name in ("class_hierarchy.txt", "node_names.txt"):
        (hierarchy / name).write_text("")
    (hierarchy / "dataset_class_info.json").write_text("{not json")
    (tmp_path / "imagenet").mkdir()
    entries = [
        {"id": "cut", "loader": "embedded", "path": "cut.npz", "domain": "Structured"},
        {"id": "gone", "loader": "embedded", "path": "gone.npz", "domain": "Structured"},
        {
            "id": "locked",
            "loader": "embedded",
            "path": "locked.npz",
            "domain": "Structured",
            "n_classes": 3,
        },
        {  # no local file names the data: shards not cached yet, to download
            "id": "remote",
            "loader": "wds",
            "url": "https://example.invalid/wds",
            "domain": "Structured",
            "options": {"cache": "cache"},
        },
        {
            "id": "liv",
            "loader": "breeds",
            "root": "imagenet",
            "domain": "Structured",
            "options": {"task": "living17", "hierarchy": "hierarchy"},
        },
    ]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": entries}))
    assert main(["datasets", "--config", str(cfg), "--check"]) == 1
    out = capsys.readouterr().out
    files = _files_column(out, len(entries))
    assert files["cut"] == "present, invalid: cut.npz is not a readable .npz"
    assert files["gone"] == files["remote"] == "absent"
    # the classes the config gives (or ?), no counts: the data could not be read
    cells = {row.split()[0]: row.split()[1:7] for row in out.splitlines()[1 : len(entries) + 1]}
    assert cells["gone"] == ["Structured", "?", "-", "-", "-", "-"]
    assert cells["locked"] == ["Structured", "3", "-", "-", "-", "-"]
    assert files["locked"] == "present, invalid: locked.npz is not a readable .npz"
    # the reason without the task's context, the JSON error and the fix, cut to its width
    reason = "BREEDS hierarchy file hierarchy/dataset_class_info.json canno..."
    assert files["liv"] == f"present, invalid: {reason}" and len(reason) == REASON_WIDTH
    assert f"cut: dataset 'cut': {tmp_path / 'cut.npz'} is not a readable .npz (" in out
    assert f"{hierarchy / 'dataset_class_info.json'} cannot be read (JSONDecodeError" in out
    assert "locked.npz is not a readable .npz (PermissionError: [Errno 13] Permission denied" in out


def test_an_embedded_set_of_the_wrong_shape_names_file_and_fix_and_its_cell_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An embedded set with grey images read "present, invalid: images must be uint8, got uint8"
    (the shapes cut out with their parentheses), and neither it nor a set whose arrays disagree
    named the file or the fix."""
    import numpy as np

    from repsim.cli import main

    n = 8
    base = {
        "images": np.zeros((n, 8, 8, 3), np.uint8),
        "labels": np.arange(n) % 2,
        "split": np.array(["train"] * 6 + ["test"] * 2),
        "ids": np.array([f"i{k}" for k in range(n)]),
        "class_names": np.array(["a", "b"]),
    }
    np.savez(tmp_path / "grey.npz", **{**base, "images": np.zeros((n, 8, 8, 1), np.uint8)})
    np.savez(tmp_path / "short.npz", **{**base, "labels": base["labels"][:-1]})
    entries = [
        {"id": name, "loader": "embedded", "path": f"{name}.npz", "domain": "Structured"}
        for name in ("grey", "short")
    ]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": entries}))
    assert main(["datasets", "--config", str(cfg), "--check"]) == 1
    out = capsys.readouterr().out
    files = _files_column(out, 2)
    assert files["grey"] == "present, invalid: grey.npz holds images of shape 8x8x8x1, dtype uint8"
    assert files["short"] == "present, invalid: ids, labels and split differ in length"
    fix = "regenerate it with `python -m repsim.embedded`"
    assert (
        f"grey: dataset 'grey': {tmp_path / 'grey.npz'} holds images of shape 8x8x8x1, dtype "
        f"uint8; an embedded set's images must be (N, H, W, 3) uint8 (RGB): {fix}"
    ) in out
    assert (
        "short: dataset 'short': ids, labels and split differ in length (8, 7, 8); in "
        f"{tmp_path / 'short.npz'}: {fix}"
    ) in out


def test_the_short_reason_drops_the_folders_above_the_data_and_only_those() -> None:
    from repsim.stimuli.check import _short_reason

    paths = [Path("/d/a/x.npz"), Path("/d/a/b/y.txt")]
    message = "dataset 'd': file /d/a/b/y.txt (0 bytes) is empty; fix it"
    assert _short_reason(message, paths) == "file y.txt is empty"  # the deepest folder first
    message = "dataset 'd': fetch from https://h/x failed in ./tmp (timeout); check"
    assert _short_reason(message, [Path("/x.npz"), Path("x.npz")]) == (
        "fetch from https://h/x failed in ./tmp"  # the root and the working folder stay
    )
    assert _short_reason("no colon here", []) == "no colon here"
    assert _short_reason("x" * 64, []) == "x" * 64  # REASON_WIDTH characters fit whole
    assert _short_reason("x" * 65, []) == "x" * 61 + "..."


def test_datasets_check_takes_a_config_as_a_mapping_and_names_an_unknown_select(
    repo_root: Path,
) -> None:
    faces = {"id": "faces", "loader": "embedded", "domain": "Structured"}
    config = {"datasets": [{**faces, "path": str(repo_root / "data/embedded/faces.npz")}]}
    table, ok = check_datasets(config)
    assert ok and table.splitlines()[1].split()[0] == "faces"
    assert "decodes" not in table  # nothing was decoded
    table, ok = check_datasets({"datasets": []}, decode=True)
    assert not ok  # `repsim data --check` exits 1, as `repsim run` refuses it
    assert "config: no datasets configured (add a 'datasets:' list)" in table
    assert "decodes" not in table
    with pytest.raises(ConfigError, match=r"select.datasets names 1 unknown id: 'facez' \(did"):
        check_datasets({**config, "select": {"datasets": ["facez"]}})


def test_the_specs_per_class_and_seed_choose_the_tables_subset(tmp_path: Path) -> None:
    """stimulus_table(spec), as the run calls it, takes per_class and seed from the spec."""
    from repsim.stimuli import similarity_subset

    root = tmp_path / "imgs"
    for c in ("ant", "bee"):
        for i in range(6):
            _write(root / "train" / c / f"{i}.png", _png(zlib.crc32(f"{c}{i}".encode()) % 1000))
        _write(root / "test" / c / "t.png", _png(7))
    entry = {"id": "fx", "loader": "imagefolder", "path": str(root), "domain": "Structured"}
    (spec,) = parse_datasets([{**entry, "per_class": 2, "seed": 3}])
    table = stimulus_table(spec)
    chosen = table[table.in_similarity]
    assert chosen.label.value_counts().sort_index().tolist() == [2, 2]
    st = open_dataset(spec)
    assert chosen.id.tolist() == similarity_subset(st, per_class=2, seed=3).tolist()
    assert chosen.id.tolist() != similarity_subset(st, per_class=2, seed=42).tolist()
    t = stimulus_table(spec, per_class=1, seed=9)  # arguments override the spec
    assert t.id[t.in_similarity].tolist() == similarity_subset(st, per_class=1, seed=9).tolist()
    (spec,) = parse_datasets([entry])
    assert stimulus_table(spec).in_similarity.sum() == 12
    assert stimulus_table(spec, max_images=4).in_similarity.sum() == 4
    t = stimulus_table(spec, split="test")
    assert t.in_similarity.sum() == 2 and (t[t.in_similarity].split == "test").all()
