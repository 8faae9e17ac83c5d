from dataclasses import dataclass
from pathlib import Path

import pytest

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
    assert cache.info("features", ("digits", "cnn")) == {}
    cache.mark_done("features", ("digits", "cnn"), "k1", seconds=1.5)
    assert cache.info("features", ("digits", "cnn")) == {"key": "k1", "seconds": 1.5}


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


# -- mutation audit (session 35): each test below kills a change that no other test noticed ------
def test_check_of_a_content_hash_output(tmp_path: Path):
    # a feature group: its content hash is computed, None when it is missing or incomplete
    cache = StageCache(tmp_path)
    cache.mark_done("features", ("digits", "cnn"), "k1", sha256="abc")
    assert cache.check("features", ("digits", "cnn"), "k1", content_hash=lambda: "abc") == (
        True,
        "",
    )
    assert cache.check("features", ("digits", "cnn"), "k1", content_hash=lambda: None) == (
        False,
        "its output is missing or incomplete",
    )
    assert (
        "content hash differs"
        in cache.check("features", ("digits", "cnn"), "k1", content_hash=lambda: "abd")[1]
    )


def test_a_record_that_is_json_but_not_an_object_is_unreadable(tmp_path: Path):
    from repsim.runfolder import RunFolder

    cache = StageCache(tmp_path)
    cache.mark_done("similarity", "digits", "k1", sha256="x")
    RunFolder(tmp_path).marker("similarity", "digits").write_text('["k1"]')
    assert cache.info("similarity", "digits") == {}
    assert cache.check("similarity", "digits", "k1", tmp_path / "digits.nc") == (
        False,
        "its record in .stages is unreadable",
    )


def test_a_changed_key_is_blamed_on_the_code_only_when_the_code_changed(tmp_path: Path):
    cache = StageCache(tmp_path)
    out = tmp_path / "digits.nc"
    cache.mark_done("similarity", "digits", "k1", code="v1")
    assert (
        "code that computes it changed"
        in cache.check("similarity", "digits", "k2", out, code="v2")[1]
    )
    assert "inputs changed" in cache.check("similarity", "digits", "k2", out, code="v1")[1]
    cache.mark_done("similarity", "old", "k1")  # a record from before code versions were kept
    assert "inputs changed" in cache.check("similarity", "old", "k2", out, code="v2")[1]


def test_a_record_without_its_output_is_never_enough(tmp_path: Path):
    """A check given no output to hash answered "reuse" from the record alone: now refused."""
    cache = StageCache(tmp_path)
    cache.mark_done("similarity", "digits", "k1", sha256="x")
    with pytest.raises(TypeError, match="needs the output"):
        cache.check("similarity", "digits", "k1")


def test_stage_key_sees_every_element_of_an_array():
    import numpy as np

    a = np.zeros(2000)
    b = a.copy()
    b[1000] = 1.0  # numpy prints both as [0. 0. 0. ... 0. 0. 0.]
    assert stage_key({"weights": a}) != stage_key({"weights": b})
    assert stage_key({"weights": a}) == stage_key({"weights": a.tolist()})


# -- mutation audit of the cache's trust checks (session audit-store) ---------------------------
def test_a_record_without_a_content_hash_is_never_reused(tmp_path: Path):
    """A record with the right key but no ``sha256`` (damaged, or older than content hashes)
    vouches for no output: it must not be reused because the output has nothing to differ from."""
    cache = StageCache(tmp_path)
    out = tmp_path / "digits.nc"
    out.write_text("some result")
    cache.mark_done("similarity", "digits", "k1")
    assert cache.check("similarity", "digits", "k1", out)[0] is False
    cache.mark_done("features", ("digits", "cnn"), "k1")
    assert cache.check("features", ("digits", "cnn"), "k1", content_hash=lambda: None)[0] is False


def test_an_output_without_its_record_is_said_to_be_unverifiable(tmp_path: Path):
    """An output whose record is gone (a file, a feature group that is there, or one that is
    there but does not read) is named as unverifiable, not as work never done."""
    cache = StageCache(tmp_path)
    out = tmp_path / "digits.nc"
    missing = (
        False,
        "its output has no record in .stages (left unfinished by an interrupted run, or its "
        "record was deleted), so it cannot be verified",
    )
    assert cache.check("similarity", "digits", "k1", out) == (False, "not done yet")
    out.write_text("some result")
    assert cache.check("similarity", "digits", "k1", out) == missing

    def unreadable() -> bool:
        raise OSError("a chunk that does not decode")

    group = ("digits", "cnn")
    hashed = {"content_hash": lambda: "abc"}
    assert cache.check("features", group, "k1", **hashed, present=lambda: False)[0] is False
    assert cache.check("features", group, "k1", **hashed, present=lambda: True) == missing
    assert cache.check("features", group, "k1", **hashed, present=unreadable) == missing


def test_a_damaged_output_is_redone_not_raised(tmp_path: Path):
    """A folder where the output file should be, or a feature group whose hash fails with the
    store's own error, is a reason to redo the task: check answers, it does not raise."""
    from repsim.errors import StoreError

    cache = StageCache(tmp_path)
    out = tmp_path / "digits.nc"
    out.mkdir()
    cache.mark_done("similarity", "digits", "k1", sha256="x")
    assert cache.check("similarity", "digits", "k1", out) == (False, "digits.nc is missing")

    def damaged() -> str:
        raise StoreError("feature group does not match its seal")

    cache.mark_done("features", ("digits", "cnn"), "k1", sha256="x")
    ok, why = cache.check("features", ("digits", "cnn"), "k1", content_hash=damaged)
    assert not ok and "unreadable" in why


def test_the_code_is_blamed_only_when_the_caller_names_its_code(tmp_path: Path):
    """A caller that passes no ``code`` cannot know the code changed: a changed key is blamed on
    the inputs even when the record names a code version."""
    cache = StageCache(tmp_path)
    cache.mark_done("similarity", "digits", "k1", code="v1")
    why = cache.check("similarity", "digits", "k2", tmp_path / "digits.nc")[1]
    assert "inputs changed" in why


def test_a_dataclass_is_keyed_by_its_fields_like_a_dict():
    """A dataclass enters the key as the dict of its fields (private ones left out, arrays whole),
    not as its printed form, which elides long arrays and shows private fields."""
    import numpy as np

    @dataclass(frozen=True)
    class Weights:
        id: str
        values: object
        _source: str = ""

    a = np.zeros(2000)
    b = a.copy()
    b[1000] = 1.0
    assert stage_key(Weights("m", [1, 2])) == stage_key({"id": "m", "values": [1, 2]})
    assert stage_key(Weights("m", a)) != stage_key(Weights("m", b))
    assert stage_key(Weights("m", 1, "/a")) == stage_key(Weights("m", 1, "/b"))


def test_redone_work_is_said_in_one_log_line_with_its_reason(caplog):
    """Cached work that is redone says so, and why, once; work never done is not "redone"."""
    import logging

    from repsim.stages import _redo

    why = "its output was truncated or altered (content hash differs)"
    with caplog.at_level(logging.INFO, logger="repsim.stages"):
        assert _redo("similarity", "digits", why) == why
        assert _redo("similarity", "faces", "not done yet") is None
    assert [r.getMessage() for r in caplog.records] == [f"similarity digits recomputed: {why}"]
