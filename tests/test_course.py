"""Every course lesson runs on a CPU in well under two minutes, without errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from repsim import book as B

REPO = Path(__file__).resolve().parents[1]
LESSONS = B.course_notebooks(REPO / "book")


def test_there_are_four_to_six_lessons():
    assert 4 <= len(LESSONS) <= 6


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes(lesson: Path, tmp_path):
    nb = json.loads(lesson.read_text())
    hidden = [c for c in nb["cells"] if "hide-input" in c.get("metadata", {}).get("tags", [])]
    assert hidden, f"{lesson.name}: solutions should be folded (tag hide-input)"
    assert any("Exercise" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    t0 = time.perf_counter()
    out = B.execute_notebook(lesson, tmp_path / lesson.name, cwd=lesson.parent, timeout=120)
    assert time.perf_counter() - t0 < 120
    outs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outs if o["output_type"] == "error" or o.get("name") == "stderr"]
    assert any(o.get("name") == "stdout" for o in outs)
