"""Loaders on small fixture datasets written by the tests, and the per-case bad-input decisions.

Decisions under test: grayscale, CMYK, 16-bit, alpha and palette images are converted to RGB
uint8; corrupt, truncated and tiny files are skipped and recorded; empty classes keep their index;
a one-image class stays in train; duplicate ids and duplicated shard keys are DatasetErrors; a
shard that ends early keeps its complete samples and records the cut one.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repsim.errors import ConfigError, DatasetError
from repsim.stimuli import open_dataset, parse_datasets, stimulus_table
from repsim.stimuli.decode import UnreadableImage, decode_image
from repsim.stimuli.loaders import get_loader


def _png(arr_or_img, fmt="PNG", **kw) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _spec(**entry):
    (spec,) = parse_datasets([{"id": "fx", "domain": "Structured", **entry}])
    return spec


# ---------------------------------------------------------------- decoding, case by case


def test_decode_conversions_to_rgb_uint8():
    gray = np.full((16, 16), 77, np.uint8)
    out = decode_image(_png(gray))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and (out == 77).all()

    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_image(_png(cmyk, "JPEG", quality=95))
    assert out.shape == (16, 16, 3) and out[..., 0].mean() > 200 and out[..., 1].mean() < 60

    sixteen = np.full((16, 16), 65535, np.uint16)
    sixteen[:8] = 257 * 100
    out = decode_image(_png(sixteen))
    assert (
        out.dtype == np.uint8 and out[0, 0, 0] == 100 and out[15, 0, 0] == 255
    )  # scaled, not clipped

    rgba = np.dstack([_rgb(0), np.full((16, 16), 0, np.uint8)])
    out = decode_image(_png(rgba))
    assert np.array_equal(out, _rgb(0))  # alpha dropped as in the study's loaders

    la = Image.fromarray(np.dstack([gray, gray]), "LA")
    assert decode_image(_png(la)).shape == (16, 16, 3)

    pal = Image.fromarray(_rgb(1)).convert("P")
    pal.info["transparency"] = 0
    assert decode_image(_png(pal, transparency=0)).shape == (16, 16, 3)

    floats = Image.fromarray(np.full((16, 16), 0.5, np.float32), "F")
    assert decode_image(_png(floats, "TIFF"))[0, 0, 0] == 128


def test_decode_rejects_corrupt_truncated_and_tiny():
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(b"this is not an image at all")
    jpg = _png(_rgb(2, 64), "JPEG")
    with pytest.raises(UnreadableImage, match="truncated"):
        decode_image(jpg[: len(jpg) // 2])
    with pytest.raises(UnreadableImage, match="min_side"):
        decode_image(_png(_rgb(3, 2)))
    assert decode_image(_png(_rgb(3, 2)), min_side=1).shape == (2, 2, 3)


def test_decode_scales_deep_and_float_images_by_the_documented_rule():
    """32-bit 'I' images: kept when every value fits 8 bits, else scaled by 16 or 32 bits of
    depth, negative values 0; float images: [0, 1] scaled by 255, others clipped to [0, 255], NaN to 0."""
    from repsim.stimuli.decode import to_rgb_array

    def first(arr, mode):
        return to_rgb_array(Image.fromarray(arr, mode))[..., 0]

    small = np.array([[0, 200]], np.int32)
    assert first(small, "I").tolist() == [[0, 200]]
    mid = np.array([[0, 65535]], np.int32)
    assert first(mid, "I").tolist() == [[0, 255]]
    # the edges: 255 still fits 8 bits; 65536 no longer fits 16 (65536 / (2**32 - 1) * 255 ~ 0)
    assert first(np.array([[0, 255]], np.int32), "I").tolist() == [[0, 255]]
    assert first(np.array([[0, 256]], np.int32), "I").tolist() == [[0, 1]]
    assert first(np.array([[0, 65536]], np.int32), "I").tolist() == [[0, 0]]
    big = np.array([[0, 2**30]], np.int32)  # 32-bit depth: 2**30 / (2**32 - 1) * 255 = 63.75
    assert first(big, "I").tolist() == [[0, 64]]
    # a signed image's negative values are black, not wrapped around (-5 was 251)
    assert first(np.array([[-5, 200]], np.int32), "I").tolist() == [[0, 200]]
    assert first(np.array([[-(2**20), 2**30]], np.int32), "I").tolist() == [[0, 64]]
    unit = np.array([[0.0, 0.5, 0.8, 1.0]], np.float32)
    assert first(unit, "F").tolist() == [[0, 128, 204, 255]]
    # just above 1 is no [0, 1] data: clipped as it is, not scaled
    assert first(np.array([[0.2, 1.5]], np.float32), "F").tolist() == [[0, 2]]
    wide = np.array([[-5.0, 1.5, 300.0, np.nan]], np.float32)
    assert first(wide, "F").tolist() == [[0, 2, 255, 0]]
    out = to_rgb_array(Image.fromarray(wide, "F"))
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_every_16_bit_layout_is_scaled_by_its_depth_not_clipped(mode):
    """Big-endian (TIFF), little-endian and native 16-bit images are scaled like PNG's I;16:
    25700 and 51400 of 65535 are 100 and 200, 51529 (200.502 by 255 / 65535, not by 256 / 65536)
    is 201, where PIL's own convert("RGB") would clip every pixel to 255."""
    from repsim.stimuli.decode import to_rgb_array

    big = mode == "I;16B" or (mode == "I;16N" and sys.byteorder == "big")
    data = np.array([[25700, 51400, 51529, 65535]], ">u2" if big else "<u2").tobytes()
    im = Image.frombytes(mode, (4, 1), data)
    assert im.mode == mode
    assert to_rgb_array(im)[..., 0].tolist() == [[100, 200, 201, 255]]
    assert (to_rgb_array(im) == to_rgb_array(im)[..., :1]).all()


def test_a_palette_image_with_a_transparency_table_decodes_to_its_colours_unwarned():
    """A palette PNG with an alpha value per entry (tRNS): the palette's colours, alpha dropped,
    with no PIL warning per image (converting such an image straight to RGB warns)."""
    rgb = _rgb(5)
    pal = Image.fromarray(rgb).quantize(16)
    colours = np.asarray(pal.convert("RGB"))
    data = _png(pal, transparency=bytes(range(0, 160, 10)))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P" and isinstance(im.info["transparency"], bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode_image(data)
    assert np.array_equal(out, colours)


def test_min_side_is_inclusive_for_headers_and_full_decodes():
    """An image with its short side exactly min_side is kept; one pixel less is refused."""
    from repsim.stimuli.decode import check_header

    eight = _png(np.zeros((8, 20, 3), np.uint8))
    seven = _png(np.zeros((20, 7, 3), np.uint8))
    assert check_header(eight) == (20, 8) and decode_image(eight).shape == (8, 20, 3)
    for call in (check_header, decode_image):
        with pytest.raises(UnreadableImage, match="7x20 px, below min_side=8"):
            call(seven)


def test_decode_reports_truncation_even_if_a_library_switched_pil_to_tolerate_it(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    jpg = _png(_rgb(2, 64), "JPEG")
    with pytest.raises(UnreadableImage, match="truncated"):
        decode_image(jpg[: len(jpg) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_a_decompression_bomb_warning_refuses_the_image(monkeypatch):
    """PIL only warns between MAX_IMAGE_PIXELS and twice that; the warning refuses the item."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # a 16x16 image has 256 pixels
    with pytest.raises(UnreadableImage, match="DecompressionBombWarning"):
        decode_image(_png(_rgb(4)))


# ---------------------------------------------------------------- image folder


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "folder"
    for i in range(4):
        _write(root / "train" / "ant" / f"{i}.png", _png(_rgb(i)))
        _write(root / "train" / "bee" / f"sub/{i}.jpg", _png(_rgb(10 + i), "JPEG"))
    _write(root / "train" / "bee" / "gray.png", _png(np.full((20, 12), 9, np.uint8)))
    _write(
        root / "train" / "bee" / "cmyk.jpg",
        _png(Image.new("CMYK", (16, 16), (10, 20, 30, 40)), "JPEG"),
    )
    _write(root / "train" / "bee" / "deep.png", _png(np.full((16, 16), 4000, np.uint16)))
    _write(
        root / "train" / "bee" / "alpha.png",
        _png(np.dstack([_rgb(5), np.full((16, 16), 128, np.uint8)])),
    )
    _write(root / "train" / "bee" / "broken.jpg", b"\xff\xd8 garbage")
    jpg = _png(_rgb(6, 64), "JPEG")
    _write(root / "train" / "bee" / "cut.jpg", jpg[: len(jpg) // 2])
    _write(root / "train" / "bee" / "tiny.png", _png(_rgb(7, 3)))
    _write(root / "train" / "solo" / "only.png", _png(_rgb(8)))
    (root / "train" / "void").mkdir(parents=True)
    (root / "train" / "ant" / "notes.txt").write_text("not an image, ignored by extension")
    for i in range(2):
        _write(root / "val" / "ant" / f"{i}.png", _png(_rgb(20 + i)))
        _write(root / "val" / "bee" / f"{i}.png", _png(_rgb(30 + i)))
    return root


def test_imagefolder_layout_labels_and_skips(folder):
    st = open_dataset(_spec(loader="imagefolder", path=str(folder)))
    assert st.class_names == ["ant", "bee", "solo", "void"]
    assert st.counts("train").tolist() == [4, 9, 1, 0]  # broken.jpg and tiny.png skipped at open
    assert st.counts("test").tolist() == [2, 2, 0, 0]  # val/ taken as test
    reasons = dict(st.skipped)
    assert set(reasons) == {"fx/train/bee/broken.jpg", "fx/train/bee/tiny.png"}
    assert "fx/train/bee/sub/0.jpg" in set(st.ids)
    imgs = st.load_images(np.flatnonzero(np.char.startswith(st.ids, "fx/train/ant/")))
    assert isinstance(imgs, np.ndarray) and imgs.shape == (4, 16, 16, 3)
    mixed = st.load_images(st.indices_of(["fx/train/bee/gray.png", "fx/train/ant/0.png"]))
    assert isinstance(mixed, list) and mixed[0].shape == (20, 12, 3)
    with pytest.raises(DatasetError, match="cut.jpg.*verify"):
        st.load_images(st.indices_of(["fx/train/bee/cut.jpg"]))


def test_imagefolder_full_verify_skips_truncated(folder):
    st = open_dataset(_spec(loader="imagefolder", path=str(folder), options={"verify": "full"}))
    assert "fx/train/bee/cut.jpg" in dict(st.skipped)
    assert st.counts("train").tolist() == [4, 8, 1, 0]
    imgs = st.load_images(np.arange(len(st)))
    assert all(im.dtype == np.uint8 and im.shape[-1] == 3 for im in imgs)


def test_stimulus_table_records_truncated_item_in_subset(folder):
    table = stimulus_table(_spec(loader="imagefolder", path=str(folder)))
    assert "fx/train/bee/cut.jpg" not in set(table.id)
    assert "fx/train/bee/cut.jpg" in dict(table.attrs["skipped"])
    assert len(table.attrs["skipped"]) == 3
    assert table.in_similarity.sum() == 13 and "fx/train/solo/only.png" in set(
        table[table.in_similarity].id
    )


def test_a_known_verdict_drops_the_unreadable_items_without_decoding(folder, monkeypatch):
    """Given the unreadable items of an earlier table of the same images, another subset's table
    is the one a fresh verification gives, and nothing is decoded."""
    import dataclasses

    from repsim.stimuli import stimset

    spec = _spec(loader="imagefolder", path=str(folder))
    first = stimulus_table(spec)
    assert [i for i, _ in first.attrs["unreadable"]] == ["fx/train/bee/cut.jpg"]
    assert len(first.attrs["skipped"]) == 3  # two more skipped when the folder is opened
    other = dataclasses.replace(spec, seed=7, max_images=5)
    fresh = stimulus_table(other)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(stimset, "_decode_errors", no_decoding)
    again = stimulus_table(other, known_unreadable=first.attrs["unreadable"])
    assert again.to_csv() == fresh.to_csv()
    assert again.attrs["skipped"] == fresh.attrs["skipped"]
    assert again.attrs["unreadable"] == fresh.attrs["unreadable"] == first.attrs["unreadable"]
    assert again.in_similarity.sum() == 5 and not again.equals(first)


def test_another_subset_of_the_same_images_is_not_decoded_again(folder, tmp_path, monkeypatch):
    """A run's stimulus stage decodes every image of a dataset to find the unreadable ones; a new
    similarity subset (stimuli.seed here) decoded them all again, a pass over every image of
    each dataset at the study's size. The verdict is kept with the table's record, by the images'
    content and the code (stages.verified_key); other images are verified again."""
    from faults.faultkit import REPO

    from repsim import stages
    from repsim.plan import load_plan
    from repsim.stimuli import stimset

    def plan_with(seed: int, root: Path = folder):
        config = tmp_path / f"c{seed}.yaml"
        config.write_text(
            f"include: [{REPO / 'data' / 'minizoo' / 'models.yaml'}]\n"
            f"stimuli: {{max_images: 6, seed: {seed}}}\n"
            f"datasets:\n  - {{id: fx, loader: imagefolder, path: {root}, domain: Structured}}\n"
        )
        return load_plan(config, check_models=False)

    decoded = []
    real = stimset._decode_errors
    monkeypatch.setattr(
        stimset, "_decode_errors", lambda r, idx, *a: decoded.append(len(idx)) or real(r, idx, *a)
    )
    run_dir = tmp_path / "run"
    first = plan_with(42)
    stages.run_stimuli(first, first.datasets[0], run_dir)
    assert decoded == [18]  # every item the folder opened with (train and test)
    second = plan_with(7)
    info = stages.run_stimuli(second, second.datasets[0], run_dir)
    assert decoded == [18] and not info["cached"]
    table = stages.read_stimuli(run_dir, second.datasets[0])
    fresh = stimulus_table(second.datasets[0])
    assert decoded == [18, 18]
    assert table.to_csv(index=False) == fresh.to_csv(index=False)
    assert info["skipped"] == [list(s) for s in fresh.attrs["skipped"]]
    # the same file names with other bytes are other images: verified again
    (folder / "train" / "ant" / "0.png").write_bytes(_png(_rgb(99)))
    third = plan_with(7)
    stages.run_stimuli(third, third.datasets[0], run_dir)
    assert decoded == [18, 18, 18]


def test_an_unreadable_class_folder_is_refused_not_dropped(folder, monkeypatch):
    """A class folder (or a subfolder of one) that cannot be listed, as mode 000 makes it for a
    user other than root: Path.rglob passed over it, and the run went on without that class's
    images, its check saying every image decodes. Now the dataset is refused, naming the folder
    and the fix. (os.scandir is what a listing calls; root is not stopped by chmod.)"""
    import errno
    import os

    real_scandir = os.scandir
    for denied in (folder / "train" / "ant", folder / "train" / "bee" / "sub"):

        def guarded(path=".", denied=denied):
            if os.path.realpath(os.fsdecode(path)) == os.path.realpath(denied):
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", guarded)
        with pytest.raises(DatasetError) as info:
            open_dataset(_spec(loader="imagefolder", path=str(folder)))
        text = str(info.value)
        assert text.startswith("dataset 'fx': cannot list the images of ")
        assert str(denied) in text and "readable (chmod -R u+rX)" in text
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert open_dataset(_spec(loader="imagefolder", path=str(folder))).counts("train")[0] == 4


def test_imagefolder_flat_with_holdout(tmp_path):
    for c, n in (("x", 10), ("y", 1)):
        for i in range(n):
            _write(tmp_path / c / f"{i}.png", _png(_rgb(i)))
    st = open_dataset(
        _spec(loader="imagefolder", path=str(tmp_path), options={"test_fraction": 0.3})
    )
    assert st.counts("test").tolist() == [3, 0] and st.counts("train").tolist() == [7, 1]
    assert all(i.startswith(f"fx/{s}/") for i, s in zip(st.ids, st.split))
    again = open_dataset(
        _spec(loader="imagefolder", path=str(tmp_path), options={"test_fraction": 0.3})
    )
    assert np.array_equal(st.ids, again.ids)


def test_imagefolder_split_folders_by_option_and_test_before_val(tmp_path):
    for split in ("training", "validation", "test", "val"):
        _write(tmp_path / split / "ant" / f"{split}.png", _png(_rgb(0)))
    splits = {"train": "training", "test": "validation"}
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path), options={"splits": splits}))
    assert st.ids.tolist() == ["fx/train/ant/training.png", "fx/test/ant/validation.png"]
    for i in range(4):
        _write(tmp_path / "more" / "train" / "ant" / f"{i}.png", _png(_rgb(i)))
    _write(tmp_path / "more" / "test" / "ant" / "t.png", _png(_rgb(9)))
    options = {"test_fraction": 0.5}  # the folders' split wins
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path / "more"), options=options))
    assert st.ids[st.split == "test"].tolist() == ["fx/test/ant/t.png"]
    # train/ without test/: the fraction holds out its part (it was ignored, and the error for a
    # missing test split then asked for the test_fraction the config already had)
    (tmp_path / "more" / "test" / "ant" / "t.png").unlink()
    (tmp_path / "more" / "test" / "ant").rmdir()
    (tmp_path / "more" / "test").rmdir()
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path / "more"), options=options))
    assert st.counts("train").tolist() == [2] and st.counts("test").tolist() == [2]
    assert all(i.startswith("fx/test/ant/") for i in st.ids[st.split == "test"])
    (tmp_path / "train").mkdir()
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path)))
    assert st.ids.tolist() == ["fx/test/ant/test.png"]  # test/ is the test split, not val/
    for splits, match in (
        ({"train": "training", "val": "validation"}, "options.splits keys must be 'train'/'test'"),
        ({"train": "nope"}, f"split folder {re.escape(str(tmp_path / 'nope'))} is missing"),
    ):
        with pytest.raises(DatasetError, match=match):
            open_dataset(
                _spec(loader="imagefolder", path=str(tmp_path), options={"splits": splits})
            )


def test_imagefolder_verify_none_reads_no_headers(tmp_path):
    _write(tmp_path / "ant" / "ok.png", _png(_rgb(0)))
    _write(tmp_path / "ant" / "junk.png", b"junk")
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path), options={"verify": "none"}))
    assert st.ids.tolist() == ["fx/train/ant/junk.png", "fx/train/ant/ok.png"] and not st.skipped
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path)))  # header, the default
    assert (
        st.ids.tolist() == ["fx/train/ant/ok.png"] and st.skipped[0][0] == "fx/train/ant/junk.png"
    )


def test_imagefolder_min_side_option_sets_the_smallest_usable_side(tmp_path):
    _write(tmp_path / "ant" / "a.png", _png(_rgb(0, size=16)))
    for side, kept in ((16, ["fx/train/ant/a.png"]), (17, [])):
        st = get_loader("imagefolder")(
            _spec(loader="imagefolder", path=str(tmp_path), options={"min_side": side})
        )
        assert st.ids.tolist() == kept and len(st.skipped) == 1 - len(kept)


def test_imagefolder_folders_named_like_images_are_no_images(tmp_path):
    _write(tmp_path / "ant" / "dir.png" / "0.png", _png(_rgb(0)))
    (tmp_path / "ant" / "link.png").symlink_to(tmp_path / "ant" / "dir.png")
    _write(tmp_path / "stray.png", _png(_rgb(1)))  # beside the class folders: no class
    st = open_dataset(_spec(loader="imagefolder", path=str(tmp_path)))
    assert st.ids.tolist() == ["fx/train/ant/dir.png/0.png"] and st.skipped == []
    assert st.class_names == ["ant"]


def test_holdout_split_is_stratified_and_follows_the_keys_not_their_order():
    from repsim.stimuli.loaders.files import holdout_split

    labels = np.repeat([0, 1, 2], [40, 5, 1])
    keys = np.array([f"k{i:02d}" for i in range(len(labels))])
    split = holdout_split(labels, keys, 0.5, seed=3)
    assert [int((split[labels == c] == "test").sum()) for c in range(3)] == [20, 2, 0]
    perm = np.random.default_rng(0).permutation(len(labels))
    again = holdout_split(labels[perm], keys[perm], 0.5, seed=3)
    assert dict(zip(keys[perm], again)) == dict(zip(keys, split))


def test_imagefolder_missing_and_empty(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(_spec(loader="imagefolder", path=str(tmp_path / "nope")))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no usable images"):
        open_dataset(_spec(loader="imagefolder", path=str(tmp_path / "empty")))


def test_open_warns_of_empty_classes_a_class_count_the_data_do_not_have_and_skipped_items(
    tmp_path, caplog
):
    for c in ("ant", "bee"):
        _write(tmp_path / "train" / c / "0.png", _png(_rgb(0)))
    (tmp_path / "train" / "void").mkdir()

    def warnings(n_classes):
        caplog.clear()
        with caplog.at_level("WARNING", logger="repsim.stimuli.open"):
            open_dataset(_spec(loader="imagefolder", path=str(tmp_path), n_classes=n_classes))
        return [r.getMessage() for r in caplog.records if r.name == "repsim.stimuli.open"]

    empty = "dataset 'fx': 1 classes have no images: ['void']"
    assert warnings(3) == [empty]
    _write(tmp_path / "train" / "bee" / "junk.png", b"junk")
    assert warnings(2) == [
        "dataset 'fx': config says 2 classes, data have 3",
        empty,
        "dataset 'fx': skipped 1 unreadable items (listed in StimulusSet.skipped)",
    ]
    (tmp_path / "train" / "void").rmdir()
    assert warnings(2) == [
        "dataset 'fx': skipped 1 unreadable items (listed in StimulusSet.skipped)"
    ]


# ---------------------------------------------------------------- webdataset shards


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _shard(path: Path, samples: list[tuple[str, bytes | None, str | None]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, img, cls in samples:
            if img is not None:
                _add(tf, f"{key}.webp" if img[:4] == b"RIFF" else f"{key}.png", img)
            if cls is not None:
                _add(tf, f"{key}.cls", cls.encode())


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


@pytest.fixture
def shards(tmp_path) -> Path:
    root = tmp_path / "wds_toy"
    root.mkdir()
    (root / "classnames.txt").write_text("cat\ndog\nfox\n")
    webp = _png(_rgb(0), "WEBP")
    _shard(
        root / "train" / "0.tar",
        [(f"s{i:04d}", _png(_rgb(i)), str(i % 3)) for i in range(6)] + [("w", webp, "1")],
    )
    _shard(
        root / "train" / "1.tar",
        [
            ("s0100", _png(_rgb(1)), None),
            ("s0101", None, "1"),
            ("s0102", b"junk", "2"),
            ("s0103", _png(_rgb(2)), "9"),
            ("s0104", _png(_rgb(3)), "x"),
        ],
    )
    _shard(root / "test" / "0.tar", [(f"t{i}", _png(_rgb(50 + i)), str(i % 3)) for i in range(3)])
    # a shard that ends early: the last sample's image is cut off
    full = root / "train" / "2.tar"
    _shard(full, [("s0200", _png(_rgb(4)), "0"), ("s0201", _png(_rgb(5, 64)), "1")])
    with tarfile.open(full) as tf:
        cut = tf.getmember("s0201.png")
    full.write_bytes(full.read_bytes()[: cut.offset_data + cut.size // 2])
    return root


def test_wds_index_labels_and_bad_samples(shards):
    st = open_dataset(_spec(loader="wds", path=str(shards)))
    assert st.class_names == ["cat", "dog", "fox"]
    train = set(st.ids[st.split == "train"])
    assert train == {f"fx/train/s{i:04d}" for i in range(6)} | {"fx/train/w", "fx/train/s0200"}
    assert (st.split == "test").sum() == 3
    reasons = dict(st.skipped)
    assert set(reasons) == {f"fx/train/s010{i}" for i in range(5)} | {"fx/train/s0201"}
    assert "no .cls label" in reasons["fx/train/s0100"]
    assert "no image" in reasons["fx/train/s0101"]
    assert "not a readable image" in reasons["fx/train/s0102"]
    assert "outside" in reasons["fx/train/s0103"]
    assert "not an integer" in reasons["fx/train/s0104"]
    assert "ends early" in reasons["fx/train/s0201"]
    i = st.indices_of(["fx/train/s0004"])
    assert st.labels[i][0] == 1
    assert np.array_equal(st.load_images(i)[0], _rgb(4))
    assert st.load_images(st.indices_of(["fx/train/w"])).shape == (1, 16, 16, 3)


def test_wds_duplicate_key_is_an_error(shards):
    (shards / "train" / "9.tar").write_bytes((shards / "train" / "0.tar").read_bytes())
    with pytest.raises(DatasetError, match="occurs in"):
        open_dataset(_spec(loader="wds", path=str(shards)))


def test_wds_from_file_url_cache(shards, tmp_path):
    """Downloaded once into a new nested cache folder, then read from it; a split the server
    lacks (no test/nshards.txt here) is left out, a server without the data is named."""
    (shards / "train" / "nshards.txt").write_text("3")
    cache = tmp_path / "cache" / "fx"
    spec = _spec(loader="wds", url=shards.as_uri(), options={"cache": str(cache)})
    with pytest.raises(DatasetError, match="download: true"):
        open_dataset(spec)
    fetch = _spec(
        loader="wds", url=shards.as_uri(), options={"cache": str(cache), "download": True}
    )
    assert len(open_dataset(fetch)) == 8  # the usable train samples
    assert len(open_dataset(spec)) == 8  # cached now: nothing to download
    gone = (tmp_path / "gone").as_uri()
    options = {"cache": str(tmp_path / "c"), "download": True}
    with pytest.raises(DatasetError, match=f"download from {gone} failed"):
        open_dataset(_spec(loader="wds", url=gone, options=options))


def test_wds_an_interrupted_download_is_resumed_never_read_as_the_data(shards, tmp_path):
    """classnames.txt came first and marked the cache complete: after a download cut off at a
    shard, the next run read the shards fetched so far as the whole dataset."""
    (shards / "train" / "nshards.txt").write_text("4")  # 3.tar is missing on the server
    cache = tmp_path / "cache"
    fetch = {"cache": str(cache), "download": True}
    with pytest.raises(DatasetError, match="download from .* failed .*3.tar"):
        open_dataset(_spec(loader="wds", url=shards.as_uri(), options=fetch))
    with pytest.raises(DatasetError, match="not cached in"):  # not taken for the data
        open_dataset(_spec(loader="wds", url=shards.as_uri(), options={"cache": str(cache)}))
    kept = (cache / "train" / "0.tar").stat().st_mtime_ns
    (shards / "train" / "nshards.txt").write_text("3")  # the server is fixed
    assert len(open_dataset(_spec(loader="wds", url=shards.as_uri(), options=fetch))) == 8
    assert (cache / "train" / "0.tar").stat().st_mtime_ns == kept  # resumed, not fetched again


def test_wds_a_cache_cut_off_by_an_earlier_version_is_named_and_resumed(shards, tmp_path):
    """Earlier versions fetched classnames.txt first, so a cache cut off at a shard has it: the
    shards its nshards.txt counts and lacks are named, and a download fetches only them."""
    (shards / "train" / "nshards.txt").write_text("3")
    cache = tmp_path / "cache"
    (cache / "train").mkdir(parents=True)
    shutil.copy(shards / "classnames.txt", cache)
    shutil.copy(shards / "train" / "nshards.txt", cache / "train")
    shutil.copy(shards / "train" / "0.tar", cache / "train")
    kept = (cache / "train" / "0.tar").stat().st_mtime_ns
    spec = _spec(loader="wds", url=shards.as_uri(), options={"cache": str(cache)})
    with pytest.raises(DatasetError, match=r"lacks 1\.tar, 2\.tar of the 3 shards .* cut off"):
        open_dataset(spec)
    fetch = {"cache": str(cache), "download": True}
    assert len(open_dataset(_spec(loader="wds", url=shards.as_uri(), options=fetch))) == 8
    assert (cache / "train" / "0.tar").stat().st_mtime_ns == kept  # kept, not fetched again
    assert len(open_dataset(spec)) == 8


def test_wds_a_folder_lacking_shards_its_nshards_counts_is_refused_by_name(shards):
    """A local copy with shards missing was read as the whole dataset, unsaid."""
    spec = _spec(loader="wds", path=str(shards))
    (shards / "train" / "nshards.txt").write_text("6\n")
    with pytest.raises(DatasetError, match=r"train lacks 3\.tar, 4\.tar, 5\.tar of the 6 shards"):
        open_dataset(spec)
    (shards / "train" / "nshards.txt").write_text("8")
    with pytest.raises(DatasetError, match=r"lacks 3\.tar, 4\.tar, 5\.tar and 2 more of the 8"):
        open_dataset(spec)
    (shards / "train" / "nshards.txt").write_text("<html>Not Found</html>")
    with pytest.raises(DatasetError, match=r"nshards\.txt holds '<html>Not Found</html>', not a"):
        open_dataset(spec)
    (shards / "train" / "nshards.txt").write_text("\u00b2", encoding="utf-8")  # isdigit, not int
    with pytest.raises(DatasetError, match=r"nshards\.txt holds '\u00b2', not a shard count"):
        open_dataset(spec)
    (shards / "train" / "nshards.txt").write_text("3")  # all there
    assert len(open_dataset(spec)) == 11
    (shards / "train" / "nshards.txt").unlink()  # the documented way to read what there is
    (shards / "train" / "2.tar").unlink()
    assert len(open_dataset(spec)) == 10
    (shards / "test" / "nshards.txt").write_text("2")  # each split is checked on its own
    with pytest.raises(DatasetError, match=r"test lacks 1\.tar of the 2 shards"):
        open_dataset(spec)


@pytest.mark.parametrize("absent", [True, False])
def test_wds_a_split_is_left_out_only_when_the_server_has_none(
    shards, tmp_path, monkeypatch, absent
):
    """A split whose nshards.txt could not be fetched was left out for any error: a timeout
    left the cache marked complete without that split, for good."""
    import urllib.error

    from repsim.stimuli.loaders import wds

    (shards / "train" / "nshards.txt").write_text("3")
    (shards / "test" / "nshards.txt").write_text("1")
    fetch = wds._fetch

    def flaky(url: str, dest: Path) -> None:
        if url.endswith("test/nshards.txt"):
            if absent:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
            raise urllib.error.URLError(TimeoutError("timed out"))
        fetch(url, dest)

    monkeypatch.setattr(wds, "_fetch", flaky)
    cache = tmp_path / "cache"
    spec = _spec(loader="wds", url=shards.as_uri(), options={"cache": str(cache), "download": True})
    if absent:
        assert set(open_dataset(spec).split) == {"train"}
    else:
        with pytest.raises(DatasetError, match="download from .* failed .*timed out"):
            open_dataset(spec)
        assert not (cache / "classnames.txt").exists()


def test_wds_downloads_only_the_splits_it_is_given(shards, tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        (shards / split / "nshards.txt").write_text(f"{n}\n")
    cache = tmp_path / "cache"
    options = {"cache": str(cache), "download": True, "wds_splits": ["test"]}
    st = open_dataset(_spec(loader="wds", url=shards.as_uri(), options=options))
    assert set(st.split) == {"test"} and len(st) == 3
    assert not (cache / "train").exists()


@pytest.mark.parametrize("splits", ["test", [], ["validation"], ["test", 1], {"test": 1}])
def test_wds_splits_must_list_train_or_test(splits):
    from repsim.stimuli.spec import parse_dataset

    entry = {"id": "w", "loader": "wds", "url": "file:///x", "domain": "Specialized"}
    with pytest.raises(ConfigError, match=r"'w': options.wds_splits must list the splits to"):
        parse_dataset({**entry, "options": {"wds_splits": splits}})
    parse_dataset({**entry, "options": {"wds_splits": ["train", "test"]}})


def test_wds_a_shard_count_that_is_not_a_number_names_the_url(shards, tmp_path):
    (shards / "train" / "nshards.txt").write_text("<html>Not Found</html>")
    cache = tmp_path / "cache"
    spec = _spec(loader="wds", url=shards.as_uri(), options={"cache": str(cache), "download": True})
    with pytest.raises(
        DatasetError, match=r"train/nshards\.txt holds '<html>Not Found</html>', not a"
    ):
        open_dataset(spec)
    assert not (cache / "train" / "nshards.txt").exists()  # fetched again next time


def test_wds_url_shards_are_cached_under_the_home_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = re.escape(str(tmp_path / ".cache" / "repsim" / "wds" / "a_b"))
    with pytest.raises(DatasetError, match=f"not cached in {cache};"):
        open_dataset(_spec(id="a/b", loader="wds", url="https://example.invalid/wds"))


def test_wds_members_by_folder_extension_and_order(tmp_path):
    """Keys keep their folder; extensions are read in any case; the first image of a key is its
    image; folders, members without an extension and other files are not images; a label file
    of bytes that are not UTF-8 is a bad label; blank lines of classnames.txt are no classes."""
    (tmp_path / "classnames.txt").write_text("cat\n\ndog\n")
    (tmp_path / "train").mkdir()
    with tarfile.open(tmp_path / "train" / "0.tar", "w") as tf:
        tf.addfile(_dir("odd.dir"))
        for name, data in [
            ("README", b"no extension"),
            ("sub/k.png", _png(_rgb(1))),
            ("sub/k.cls", b"1"),
            ("u.txt", b"not an image"),
            ("u.PNG", _png(_rgb(2))),
            ("u.webp", _png(_rgb(3), "WEBP")),
            ("u.CLS", b"0"),
            ("v.png", _png(_rgb(4))),
            ("v.cls", b"\xff"),
            ("w.png", _png(_rgb(5))),
            ("w.cls", b"2"),  # classes 0 and 1 only
        ]:
            _add(tf, name, data)
    st = open_dataset(_spec(loader="wds", path=str(tmp_path)))
    assert st.class_names == ["cat", "dog"]
    assert st.ids.tolist() == ["fx/train/sub/k", "fx/train/u"] and st.labels.tolist() == [1, 0]
    assert np.array_equal(st.load_images([1])[0], _rgb(2))
    assert [item for item, _ in st.skipped] == ["fx/train/v", "fx/train/w"]
    assert "holds '\ufffd', not an integer" in st.skipped[0][1]
    assert st.skipped[1][1] == "label 2 outside the 2 classes of classnames.txt"


def test_wds_without_shards_or_without_usable_samples_says_which(tmp_path):
    (tmp_path / "classnames.txt").write_text("cat\n")
    spec = _spec(loader="wds", path=str(tmp_path))
    with pytest.raises(DatasetError, match=f"no shards under {re.escape(str(tmp_path))}/train or"):
        open_dataset(spec)
    _shard(tmp_path / "test" / "0.tar", [("a", _png(_rgb(0)), None)])
    with pytest.raises(DatasetError, match="no usable images at"):
        open_dataset(spec)


def test_wds_a_shard_that_is_not_a_tar_is_skipped_by_name(tmp_path):
    (tmp_path / "classnames.txt").write_text("cat\n")
    _shard(tmp_path / "train" / "0.tar", [("a", _png(_rgb(0)), "0")])
    (tmp_path / "train" / "1.tar").write_bytes(b"not a tar archive" * 64)
    st = open_dataset(_spec(loader="wds", path=str(tmp_path)))
    assert st.ids.tolist() == ["fx/train/a"]
    ((item, reason),) = st.skipped
    assert item == "fx/train/1.tar" and reason.startswith("shard is not a readable tar (")


def _four_sample_shard(root: Path) -> tuple[Path, list[tarfile.TarInfo]]:
    (root / "classnames.txt").write_text("cat\n")
    shard = root / "train" / "0.tar"
    _shard(shard, [(f"s{k}", _png(_rgb(k)), "0") for k in range(4)])
    with tarfile.open(shard) as tf:
        return shard, tf.getmembers()


def test_wds_a_damaged_member_header_mid_shard_is_named(tmp_path):
    """tarfile stops at a damaged header as at the archive's end: the samples after it dropped
    out of the dataset unsaid."""
    shard, members = _four_sample_shard(tmp_path)
    data = bytearray(shard.read_bytes())
    at = members[4].offset  # the header of s2.png
    data[at : at + 100] = b"\x07" * 100
    shard.write_bytes(bytes(data))
    st = open_dataset(_spec(loader="wds", path=str(tmp_path)))
    assert st.ids.tolist() == ["fx/train/s0", "fx/train/s1"]
    ((item, reason),) = st.skipped
    assert item == "fx/train/0.tar" and f"cannot be read past byte {at} (a cut or damaged" in reason


def test_wds_a_shard_cut_mid_header_or_right_after_a_member_keeps_what_it_holds(tmp_path):
    shard, members = _four_sample_shard(tmp_path)
    last = members[-1]
    full = shard.read_bytes()
    shard.write_bytes(full[: last.offset_data + last.size])  # the end blocks are gone
    st = open_dataset(_spec(loader="wds", path=str(tmp_path)))
    assert len(st) == 4 and np.array_equal(st.load_images(np.array([3]))[0], _rgb(3))
    ((item, reason),) = st.skipped
    assert item == "fx/train/0.tar" and reason.startswith("shard ends early after 4 samples (")
    shard.write_bytes(full[: members[4].offset + 100])  # cut inside the header of s2.png
    st = open_dataset(_spec(loader="wds", path=str(tmp_path)))
    assert st.ids.tolist() == ["fx/train/s0", "fx/train/s1"]
    ((item, reason),) = st.skipped  # tarfile takes a cut header for the end as well
    assert reason.startswith(f"shard cannot be read past byte {members[4].offset} (a cut or")


def test_wds_shards_are_read_in_natural_order(tmp_path):
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")
    _shard(tmp_path / "train" / "10.tar", [("b", _png(_rgb(1)), "1")])
    _shard(tmp_path / "train" / "2.tar", [("a", _png(_rgb(0)), "0")])
    _shard(tmp_path / "train" / "10\u00b21.tar", [("c", _png(_rgb(2)), "0")])  # '²' isdigit
    st = open_dataset(_spec(loader="wds", path=str(tmp_path)))
    assert st.ids.tolist() == ["fx/train/a", "fx/train/b", "fx/train/c"]
    assert st.labels.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("source", "repo"), [({"source": "wds_vtab-cifar10"}, "wds_vtab-cifar10"), ({}, "wds_fx")]
)
def test_wds_missing_folder_says_how_to_get_it(tmp_path, source, repo):
    """The command names the dataset's repository: its source, else wds_<id>."""
    nothing = re.escape(str(tmp_path / "nothing"))
    hint = f"; download the shards, e.g. `huggingface-cli download .*clip-benchmark/{repo} "
    with pytest.raises(DatasetError, match=f"shard folder {nothing} does not exist{hint}"):
        open_dataset(_spec(loader="wds", path=str(tmp_path / "nothing"), **source))
    names = re.escape(str(tmp_path / "classnames.txt"))
    with pytest.raises(DatasetError, match=f"{names} does not exist{hint}"):
        open_dataset(_spec(loader="wds", path=str(tmp_path), **source))


# ---------------------------------------------------------------- torchvision


def _idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_local_root(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 12), ("t10k", 5)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    st = open_dataset(_spec(loader="torchvision", root=str(tmp_path), options={"name": "MNIST"}))
    assert (st.split == "train").sum() == 12 and (st.split == "test").sum() == 5
    assert st.class_names[0].startswith("0") and st.labels[:3].tolist() == [0, 1, 2]
    imgs = st.load_images([0, 13])
    assert imgs.shape == (2, 28, 28, 3) and imgs.dtype == np.uint8
    for img, (prefix, i) in zip(imgs, [("train", 0), ("t10k", 1)]):  # the file's grey pixels
        pixels = np.frombuffer((raw / f"{prefix}-images-idx3-ubyte").read_bytes()[16:], np.uint8)
        grey = pixels.reshape(-1, 28, 28)[i]
        assert all(np.array_equal(img[..., c], grey) for c in range(3))
    assert stimulus_table(st).in_similarity.sum() == 12


def test_torchvision_items_become_the_same_rgb_image_whatever_their_layout():
    """A torchvision dataset gives PIL images, or arrays and tensors when its kwargs add a
    transform: channels first or last, grey, floats in [0, 1] (ToTensor) or in [0, 255]."""
    import torch

    from repsim.stimuli.loaders.tv import _to_rgb

    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    chw, grey = np.moveaxis(rgb, -1, 0), rgb[..., 0]
    as_rgb = np.repeat(grey[..., None], 3, axis=-1)
    cases = [
        (Image.fromarray(rgb), rgb),
        (rgb, rgb),
        (chw, rgb),
        (torch.from_numpy(chw).float() / 255, rgb),
        (rgb - 0.4, rgb),  # floats in [0, 255], rounded to the nearest level
        (Image.fromarray(grey), as_rgb),
        (grey, as_rgb),
        (grey[None], as_rgb),
        (grey[..., None], as_rgb),
    ]
    for item, want in cases:
        got = _to_rgb(item)
        assert got.dtype == np.uint8 and np.array_equal(got, want), type(item)
    for bad in (np.zeros((5, 7, 4), np.uint8), np.zeros(5, np.uint8)):
        with pytest.raises(UnreadableImage, match=r"item of shape \(.*\) is not an image"):
            _to_rgb(bad)


class _Labelled:
    """A torchvision-style dataset (``root``, ``train=``) of 4 grey images whose labels are set
    by the test, as an attribute (``targets``), as ``samples`` pairs, or only in its items."""

    labels_as: dict = {}

    def __init__(self, root: str, train: bool = True):
        self.part = "train" if train else "test"
        for attr, value in self.labels_as.items():
            setattr(self, attr, value)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return np.full((5, 5), 40 * i, np.uint8), self.labels_as.get("item", [0, 1, 0, 1])[i]


@pytest.mark.parametrize(
    ("labels_as", "want"),
    [
        ({"targets": [0, 1, 1, 0]}, [0, 1, 1, 0]),
        ({"targets": np.array([[0], [1], [1], [0]])}, [0, 1, 1, 0]),  # a column of labels
        ({"targets": [0.0, 1.0, 1.0, 0.0]}, [0, 1, 1, 0]),
        ({"samples": [("a", 1), ("b", 0), ("c", 1), ("d", 1)]}, [1, 0, 1, 1]),
        ({"item": [1, 1, 0, 0]}, [1, 1, 0, 0]),
        ({"targets": [0, 1.5, 1, 0]}, "not whole numbers"),  # was cast to class 1
        ({"targets": np.zeros((4, 3))}, r"got an array of shape \(4, 3\)"),  # was a bare ValueError
        ({"item": [0, None, 1, 0]}, "not class indices"),  # was a bare TypeError
    ],
)
def test_torchvision_labels_are_checked_as_class_indices(tmp_path, monkeypatch, labels_as, want):
    import torchvision.datasets

    monkeypatch.setattr(_Labelled, "labels_as", labels_as)
    monkeypatch.setattr(torchvision.datasets, "Labelled", _Labelled, raising=False)
    spec = _spec(loader="torchvision", root=str(tmp_path), options={"name": "Labelled"})
    if isinstance(want, str):
        with pytest.raises(
            DatasetError, match=r"'fx': torchvision _Labelled \(train\): labels .*" + want
        ):
            open_dataset(spec)
    else:
        st = open_dataset(spec)
        assert st.labels[st.split == "train"].tolist() == want
        assert st.labels.dtype == np.int64


def test_torchvision_missing_root_and_bad_name(tmp_path):
    with pytest.raises(DatasetError, match="download: true"):
        open_dataset(_spec(loader="torchvision", root=str(tmp_path), options={"name": "MNIST"}))
    with pytest.raises(ConfigError, match="not a torchvision dataset"):
        open_dataset(_spec(loader="torchvision", root=str(tmp_path), options={"name": "Nope"}))


# ---------------------------------------------------------------- BREEDS


def test_breeds_from_hierarchy_and_class_map(tmp_path):
    imnet = tmp_path / "imagenet"
    for sp in ("train", "val"):
        for k, wnid in enumerate(("n01", "n02", "n03", "n04")):
            _write(imnet / sp / wnid / f"{wnid}_{sp}.JPEG", _png(_rgb(k), "JPEG"))
    info = tmp_path / "breeds"
    info.mkdir()
    (info / "class_hierarchy.txt").write_text(
        "n00 n10\nn00 n20\nn10 n01\nn10 n02\nn20 n21\nn21 n03\nn20 n04\n"
    )
    (info / "node_names.txt").write_text("n10\tanimal\nn20\tartifact\n")
    spec = _spec(
        loader="breeds",
        root=str(imnet),
        options={"hierarchy": str(info), "superclasses": ["n10", "n20"]},
    )
    st = open_dataset(spec)
    assert st.class_names == ["animal", "artifact"]
    assert st.counts("train").tolist() == [2, 2] and st.counts("test").tolist() == [2, 2]
    assert st.labels[st.indices_of(["fx/train/n03/n03_train.JPEG"])][0] == 1
    cmap = tmp_path / "map.txt"
    cmap.write_text("n01 n10\nn04 n20\n")
    st = open_dataset(
        _spec(
            loader="breeds",
            root=str(imnet),
            options={"class_map": str(cmap), "hierarchy": str(info)},
        )
    )
    assert st.counts().tolist() == [2, 2] and len(st) == 4
    with pytest.raises(ConfigError, match="class_map"):
        open_dataset(_spec(loader="breeds", root=str(imnet)))


def test_torchvision_one_part_dataset_gets_a_test_fraction(tmp_path):
    # EuroSAT ships as one folder of classes; probes need a held-out test part
    for k, cls in enumerate(("AnnualCrop", "Forest")):
        for i in range(10):
            _write(
                tmp_path / "eurosat" / "2750" / cls / f"{cls}_{i}.jpg",
                _png(_rgb(k * 10 + i), "JPEG"),
            )
    options = {"name": "EuroSAT", "test_fraction": 0.2}
    st = open_dataset(_spec(loader="torchvision", root=str(tmp_path), options=options))
    assert st.counts("train").tolist() == [8, 8] and st.counts("test").tolist() == [2, 2]
    again = open_dataset(_spec(loader="torchvision", root=str(tmp_path), options=options))
    assert (again.split == st.split).all()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"min_side": "x"}, "min_side must be a whole number"),
        ({"min_side": 0}, "min_side must be a whole number >= 1, got 0"),
        ({"test_fraction": "abc"}, "test_fraction must be a number between 0 and 1"),
        ({"test_fraction": 2}, "test_fraction must be a number between 0 and 1"),
        ({"test_fraction": 0}, "test_fraction must be a number between 0 and 1"),
        ({"test_fraction": 1.0}, "test_fraction must be a number between 0 and 1"),
        ({"test_fraction": -0.5}, "test_fraction must be a number between 0 and 1"),
        ({"splits": ["train", "test"]}, "splits must map split names to folder names"),
        ({"splits": {"train": 5}}, "splits must map split names to folder names"),
        ({"verify": True}, "verify must be one of none, header, full"),
    ],
)
def test_option_values_are_checked_with_the_config(options, words):
    """Values a task would read much later (a raw ValueError after extraction) fail here."""
    from repsim.stimuli.spec import parse_dataset

    entry = {"id": "photos", "loader": "imagefolder", "path": "x", "domain": "Specialized"}
    with pytest.raises(ConfigError, match=f"dataset 'photos': options.{words}"):
        parse_dataset({**entry, "options": options})
    parse_dataset({**entry, "options": {"min_side": 8, "test_fraction": 0.2, "verify": "full"}})
    parse_dataset({**entry, "options": {"min_side": 1, "test_fraction": 0.99, "splits": None}})
    parse_dataset({**entry, "options": {"splits": {"train": "training", "test": "validation"}}})


def test_an_item_that_cannot_be_read_is_skipped_by_its_error():
    """A file gone or closed between listing and the header check is skipped with the reason."""
    from repsim.stimuli.loaders.files import header_filter

    def fetch(i: int) -> bytes:
        if i == 1:
            raise PermissionError(13, "Permission denied", "b.png")
        return _png(_rgb(i))

    keep, skipped = header_filter(_spec(loader="imagefolder", path="x"), ["a", "b", "c"], fetch)
    assert keep.tolist() == [0, 2]
    assert skipped == [("b", "cannot read file ([Errno 13] Permission denied: 'b.png')")]


def test_imagefolder_file_names_that_are_not_utf8_become_escaped_ids(tmp_path):
    """A file named with bytes that are not UTF-8 opened fine and then ended the run with a raw
    UnicodeEncodeError when its id was written to the stimulus table."""
    import os

    root = tmp_path / "folder"
    for c in ("a", "b"):
        _write(root / c / "0.png", _png(_rgb(1)))
    bad = os.path.join(os.fsencode(root / "a"), b"\xff\xfe.png")
    with open(bad, "wb") as f:
        f.write(_png(_rgb(2)))
    spec = _spec(loader="imagefolder", path=str(root))
    st = open_dataset(spec)
    assert "fx/train/a/\\xff\\xfe.png" in set(st.ids)
    assert all(i.encode("utf-8") for i in st.ids)  # every id is writable text
    table = stimulus_table(spec)
    table.to_csv(tmp_path / "t.csv")  # what the run writes: no UnicodeEncodeError
    img = st.load_images(st.indices_of(["fx/train/a/\\xff\\xfe.png"]))
    assert img.shape == (1, 16, 16, 3)


def test_wds_classnames_not_utf8_names_the_file(shards):
    """A Latin-1 classnames.txt ended `repsim datasets --check` with a raw UnicodeDecodeError."""
    (shards / "classnames.txt").write_bytes("café\nthé\nfox\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"dataset 'fx': .*classnames.txt is not UTF-8.*iconv"):
        open_dataset(_spec(loader="wds", path=str(shards)))


# ---------------------------------------------------------------- embedded .npz files


def _npz(path: Path, **arrays) -> Path:
    """A small valid embedded set (2 classes, 8 images), with ``arrays`` replacing its entries
    (None: left out)."""
    n = 8
    data = {
        "images": np.zeros((n, 8, 8, 3), np.uint8),
        "labels": np.arange(n) % 2,
        "split": np.array(["train"] * 6 + ["test"] * 2),
        "ids": np.array([f"fx/{i}" for i in range(n)]),
        "class_names": np.array(["a", "b"]),
        **arrays,
    }
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def test_npz_attributes_that_are_not_json_name_the_file(tmp_path):
    """Invalid JSON in 'attributes' was a raw JSONDecodeError, retried by the run."""
    path = _npz(tmp_path / "x.npz", attributes=np.array("{'size': 1}"))
    with pytest.raises(
        DatasetError, match=r"dataset 'fx': .*x.npz: 'attributes' is not valid JSON"
    ):
        open_dataset(_spec(loader="embedded", path=str(path)))


def test_npz_float_labels_must_be_whole_numbers(tmp_path):
    """Labels 0.5 and 1.7 were truncated to 0 and 1 without a word (checked where StimulusSet
    casts them, so every loader is covered)."""
    path = _npz(tmp_path / "x.npz", labels=np.array([0, 1, 0, 1, 0.5, 1, 0, 1.7]))
    with pytest.raises(DatasetError, match=r"dataset 'fx': labels are float64 .*0.5"):
        open_dataset(_spec(loader="embedded", path=str(path)))
    path = _npz(tmp_path / "y.npz", labels=(np.arange(8) % 2).astype(np.float32))
    st = open_dataset(_spec(loader="embedded", path=str(path)))
    assert st.labels.tolist() == [0, 1] * 4


@pytest.mark.parametrize("at", [2, 51, 58, 79])  # zlib, zlib, numpy header, tokenize errors
def test_a_damaged_compressed_npz_is_named_not_a_traceback(tmp_path, at):
    """Bytes flipped inside a compressed member raised zlib.error or tokenize.TokenError, which
    the loader did not catch: a traceback from `repsim datasets --check` and `repsim run`."""
    import struct
    import zipfile

    n, path = 8, tmp_path / "x.npz"
    images = (np.arange(n * 16 * 16 * 3) % 7).astype(np.uint8).reshape(n, 16, 16, 3)
    np.savez_compressed(
        path,
        images=images,
        labels=np.arange(n) % 2,
        split=np.array(["train"] * 6 + ["test"] * 2),
        ids=np.array([f"fx/{i}" for i in range(n)]),
        class_names=np.array(["a", "b"]),
    )
    raw = bytearray(path.read_bytes())
    offset = zipfile.ZipFile(path).getinfo("images.npy").header_offset
    name_len, extra_len = struct.unpack("<HH", raw[offset + 26 : offset + 30])
    start = offset + 30 + name_len + extra_len + at
    raw[start : start + 4] = bytes(b ^ 0xFF for b in raw[start : start + 4])
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"dataset 'fx': .*x.npz is not a readable .npz \(\w+"):
        open_dataset(_spec(loader="embedded", path=str(path)))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"labels": np.array(list("abababab"))}, r"labels are <U1 .*not class indices"),
        ({"labels": (np.arange(8) % 2)[:, None]}, r"one class index per image.*shape \(8, 1\)"),
        ({"images": np.zeros((8, 0, 0, 3), np.uint8)}, r"images of 0x0 pixels"),
        ({"split": None, "ids": None}, r"lacks keys \['split', 'ids'\]"),
        ({"images": np.zeros((8, 8, 8, 3), np.float32)}, r"must be \(N, H, W, 3\) uint8"),
        ({"images": np.zeros((8, 8, 3), np.uint8)}, r"must be \(N, H, W, 3\) uint8"),
        ({"images": np.zeros((8, 8, 8, 4), np.uint8)}, r"must be \(N, H, W, 3\) uint8"),
        (
            {"images": np.zeros((0, 0, 0, 3), np.uint8), "labels": np.zeros(0, int)}
            | {"split": np.array([], str), "ids": np.array([], str)},
            "no usable images at",
        ),
    ],
)
def test_npz_labels_and_images_of_the_wrong_kind_are_named(tmp_path, arrays, match):
    """String or 2-D labels raised a raw ValueError; 0x0 images passed every check and divided by
    zero in extraction."""
    path = _npz(tmp_path / "x.npz", **arrays)
    with pytest.raises(DatasetError, match=rf"dataset 'fx': .*{match}"):
        open_dataset(_spec(loader="embedded", path=str(path)))


def test_a_missing_embedded_file_is_named_with_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="embedded file .*x.npz does not exist; regenerate"):
        open_dataset(_spec(loader="embedded", path=str(tmp_path / "x.npz")))


def test_stimulus_set_refuses_fractional_labels_from_any_caller():
    """The check sits where labels are cast to int64, so a set built without a loader (the
    Python API) cannot truncate 1.7 to 1 either."""
    from repsim.stimuli.stimset import StimulusSet

    kw = dict(dataset_id="api", ids=["a", "b"], split=["train", "test"], class_names=["x", "y"])
    kw["images"] = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(DatasetError, match=r"dataset 'api': labels are float64 .*1.7"):
        StimulusSet(labels=np.array([0.0, 1.7]), domain="d", **kw)
    assert StimulusSet(labels=np.array([0.0, 1.0]), domain="d", **kw).labels.dtype == np.int64


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"id,label\n1,cat\n", "it is not a zip archive, which every .npz is"),
        ("object", "it holds object arrays, which only pickle loads, and repsim loads no pickles"),
    ],
)
def test_a_file_that_is_not_an_npz_of_plain_arrays_says_what_it_is(tmp_path, content, why):
    """numpy tries a non-zip file as a pickle and answers "allow_pickle=False", a hint to do
    what repsim must not (a pickle can run code); the loaders say what the file is instead."""
    from repsim.minizoo.data import load_zoo_data

    path = tmp_path / "x.npz"
    if content == "object":
        np.savez(path, images=np.array([{"a": 1}], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        open_dataset(_spec(loader="embedded", path=str(path)))
    assert str(err.value).startswith(f"dataset 'fx': {path} is not a readable .npz ({why}); ")
    assert "allow_pickle" not in str(err.value)
    with pytest.raises(DatasetError, match=rf"embedded set .*x.npz is not a readable .npz \({why}"):
        load_zoo_data(tmp_path, ["x"])
