from dataclasses import dataclass
from pathlib import Path

from repsim.cache import StageCache, atomic_write_text, stage_key


@dataclass(frozen=True)
class Spec:
    id: str
    size: int


def test_stage_key_is_stable_and_sensitive():
    a = stage_key(Spec("m", 1), {"b": 2, "a": [1, 2]})
    assert a == stage_key(Spec("m", 1), {"a": [1, 2], "b": 2})
    assert a != stage_key(Spec("m", 2), {"a": [1, 2], "b": 2})
    # private keys (e.g. _config_dir) do not change the key: moving a checkout keeps the cache
    assert stage_key({"x": 1, "_config_dir": "/a"}) == stage_key({"x": 1, "_config_dir": "/b"})


def test_markers_record_keys(tmp_path: Path):
    cache = StageCache(tmp_path)
    assert not cache.is_done("features", "digits/cnn", "k1")
    cache.mark_done("features", "digits/cnn", "k1", seconds=1.5)
    assert cache.is_done("features", "digits/cnn", "k1")
    assert not cache.is_done("features", "digits/cnn", "k2")
    assert cache.info("features", "digits/cnn")["seconds"] == 1.5


def test_atomic_write_leaves_no_temp(tmp_path: Path):
    atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.txt"]


def test_check_verifies_the_output_content(tmp_path: Path):
    from repsim.runfolder import RunFolder

    cache = StageCache(tmp_path)
    out = RunFolder(tmp_path).similarity_part("digits")
    assert cache.check("similarity", "digits", "k1", out) == (False, "not done yet")
    sha = RunFolder(tmp_path).write_text(out, "some result")
    cache.mark_done("similarity", "digits", "k1", sha256=sha)
    assert cache.check("similarity", "digits", "k1", out) == (True, "")
    assert "inputs changed" in cache.check("similarity", "digits", "k2", out)[1]
    out.write_text("some resul")  # truncated
    assert "content hash differs" in cache.check("similarity", "digits", "k1", out)[1]
    out.unlink()
    assert "missing" in cache.check("similarity", "digits", "k1", out)[1]
    RunFolder(tmp_path).marker("similarity", "digits").write_text("{")
    assert "unreadable" in cache.check("similarity", "digits", "k1", out)[1]
