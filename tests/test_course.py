"""The course: seven lessons that each run on a CPU within papermill's execution timeout, with and
without a real run folder; student notebooks without solutions; an index that links them all."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers_run import NC_ENGINE, tiny_run_available, write_fake_run, write_manifest_for

import repsim
from repsim import book as B
from repsim import sentences as T

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
LESSONS = B.course_notebooks(BOOK)
RUN_LESSONS = [p for p in LESSONS if B.lesson_takes_run(p)]
#: papermill's per-cell timeout: a guard against a hung kernel, not a speed test (lessons run in
#: well under two minutes on a laptop CPU; that is measured, never asserted, so a busy CI never fails)
TIMEOUT = 600
SKIP_MESSAGE = "No run folder with a similarity.nc"


def _is_solution(cell) -> bool:
    return B.SOLUTION_TAG in cell.metadata.get("tags", [])


def _lesson(prefix: str) -> Path:
    return next(p for p in LESSONS if p.name.startswith(prefix))


def _run_cells(lesson: Path, replace: dict[str, str] | None = None) -> tuple[dict, str]:
    """A lesson's code cells run in this process (no kernel; ``run_dir = None``, so the exercises on
    a real run skip), each ``replace`` key (it must occur once in the lesson) swapped for its value:
    the namespace and stdout, for claims that must hold for other random draws than the committed
    one."""
    nb = nbformat.read(lesson, as_version=4)
    code = [
        "run_dir = None" if "parameters" in c.metadata.get("tags", []) else c.source
        for c in nb.cells
        if c.cell_type == "code"
    ]
    for old, new in (replace or {}).items():
        assert sum(src.count(old) for src in code) == 1, f"{old!r} is not once in {lesson.name}"
        code = [src.replace(old, new) for src in code]
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, src in enumerate(code):
            exec(compile(src, f"{lesson.name}[code cell {i}]", "exec"), ns)
    return ns, out.getvalue()


def _stdout(nb_path: Path) -> str:
    """The stdout of an executed notebook, after checking it has no error and no stderr."""
    outs = [o for c in json.loads(nb_path.read_text())["cells"] for o in c.get("outputs", [])]
    bad = [o for o in outs if o["output_type"] == "error" or o.get("name") == "stderr"]
    assert not bad, f"{nb_path.name}: {bad}"
    return "".join("".join(o["text"]) for o in outs if o.get("name") == "stdout")


@pytest.fixture(scope="module")
def course_run(request, tmp_path_factory) -> Path:
    """The run the exercises on a real run use: the session's tiny pipeline run where it can run
    here (see helpers_run.tiny_run_available), else the fake run."""
    if tiny_run_available():
        return request.getfixturevalue("tiny_run")
    return write_fake_run(tmp_path_factory.mktemp("fake") / "run")


def test_there_are_seven_lessons():
    assert [p.name[:2] for p in LESSONS] == ["01", "02", "03", "04", "05", "06", "07"]
    assert len(RUN_LESSONS) >= 2, "at least two lessons have an exercise on a real run"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_is_a_lesson(lesson: Path):
    """Time, goals, an explanation, exercises with one folded solution cell each, discussion."""
    nb = nbformat.read(lesson, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for part in ("**Time:**", "**Goals.**", "## Explanation", "## Discussion questions"):
        assert part in text, f"{lesson.name} has no {part!r}"
    exercises = re.findall(r"^## Exercise \d", text, re.M)
    solutions = [c for c in nb.cells if _is_solution(c)]
    assert exercises and len(solutions) == len(exercises), lesson.name
    assert all(c.cell_type == "code" and "hide-cell" in c.metadata.tags for c in solutions)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code"), (
        "commit lessons without outputs"
    )


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes(lesson: Path, course_run: Path, tmp_path):
    """Every lesson runs (on the test run where it has an exercise on a real run), and what it
    prints ranks or compares only with its test or a "described, not tested" beside it, the
    book's rule for its chapters (lesson 4 printed "Most consistent: A | A" from one correlation
    per group)."""
    (out,) = B.execute_course(BOOK, tmp_path, course_run, lessons=[lesson], timeout=TIMEOUT)
    stdout = _stdout(out)
    assert stdout
    claims = T.untested_claims(stdout)
    assert not claims, f"{lesson.name} prints rankings without a test: {claims}"
    if lesson in RUN_LESSONS:
        assert SKIP_MESSAGE not in stdout and "Run '" in stdout, lesson.name
        run_dir = nbformat.read(out, as_version=4).metadata.papermill.parameters.run_dir
        assert not os.path.isabs(run_dir), "the executed lesson holds a machine path"
        # relative to the executed copy, where it ran: it reruns where it sits
        assert (Path(out).parent / run_dir / "similarity.nc").is_file()


@pytest.mark.parametrize("lesson", RUN_LESSONS, ids=[p.stem for p in RUN_LESSONS])
def test_run_exercises_skip_without_a_run(lesson: Path, tmp_path):
    (out,) = B.execute_course(BOOK, tmp_path, None, lessons=[lesson], timeout=TIMEOUT)
    assert _stdout(out).count(SKIP_MESSAGE) == 1


def test_student_notebooks_have_no_solutions(tmp_path):
    paths = B.write_student_notebooks(BOOK, tmp_path)
    assert [p.name for p in paths] == [p.name for p in LESSONS]
    for lesson, path in zip(LESSONS, paths):
        src = nbformat.read(lesson, as_version=4)
        student = nbformat.read(path, as_version=4)
        nbformat.validate(student)
        assert not [c for c in student.cells if _is_solution(c)], path.name
        stubs = [c for c in student.cells if c.source == B.STUDENT_STUB]
        assert len(stubs) == len([c for c in src.cells if _is_solution(c)]) > 0
        kept = [c.source for c in src.cells if not _is_solution(c)]
        assert [c.source for c in student.cells if c.source != B.STUDENT_STUB] == kept
        assert all(not c.outputs for c in student.cells if c.cell_type == "code")
    with zipfile.ZipFile(tmp_path / B.STUDENT_ZIP) as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in paths)


def test_a_student_notebook_is_the_lesson_without_outputs_or_solutions(tmp_path):
    """An executed lesson (outputs, counts, papermill's record): its student version keeps the
    prose and the setup code without outputs, and each solution becomes a stub with the
    solution's cell id, so the file is the same on every build."""
    setup = nbformat.v4.new_code_cell("x = 1", execution_count=3)
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    solution = nbformat.v4.new_code_cell("y = x + 1", id="the-solution", execution_count=4)
    solution.metadata["tags"] = [B.SOLUTION_TAG]
    prose = nbformat.v4.new_markdown_cell("Add one to x.")
    nb = nbformat.v4.new_notebook(cells=[prose, setup, solution])
    nb.metadata["papermill"] = {"input_path": "01_x.ipynb"}
    nbformat.write(nb, tmp_path / "01_x.ipynb")
    student = B.student_notebook(tmp_path / "01_x.ipynb")
    nbformat.validate(student)
    assert [c.source for c in student.cells] == ["Add one to x.", "x = 1", B.STUDENT_STUB]
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert student.cells[2].id == "the-solution" and "papermill" not in student.metadata
    assert nbformat.writes(B.student_notebook(tmp_path / "01_x.ipynb")) == nbformat.writes(student)


def test_student_notebook_needs_solution_tags(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "01_untagged.ipynb")
    with pytest.raises(B.BookError, match="tagged 'solution'"):
        B.student_notebook(tmp_path / "01_untagged.ipynb")


def test_index_links_every_lesson_for_students_and_teachers():
    index = (BOOK / "course" / "index.md").read_text()
    for part in (
        "**Audience.**",
        "**Prerequisites.**",
        "**Learning goals.**",
        "Teacher and student",
    ):
        assert part in index
    for lesson in LESSONS:
        row = next(
            line for line in index.splitlines() if f"generated/course/{lesson.name})" in line
        )
        assert re.search(r"\| \d+(-\d+)? min \|", row), f"no time for {lesson.name}"
        assert f"{{download}}`notebook <../generated/course/student/{lesson.name}>`" in row
        assert f"{{download}}`notebook <../generated/course/{lesson.name}>`" in row
    assert f"<../generated/course/student/{B.STUDENT_ZIP}>" in index


def test_consistency_toy_shows_the_family_it_is_built_for():
    """Lesson 4's toy makes family B react to the dataset, and exercise 2 asks which family keeps
    its similarity pattern: within-B consistency is clearly below within-A on the lesson's draw,
    and below it on most other draws of the toy zoo (a correlation over 10 pairs is noisy)."""
    res = [
        _run_cells(_lesson("04"), {"default_rng(3)": f"default_rng({seed})"})[0]["res"]
        for seed in range(20)
    ]
    assert res[3]["A | A"] - res[3]["B | B"] > 0.3, res[3]
    assert sum(r["B | B"] < r["A | A"] for r in res) >= 15, res


def test_biased_cka_sweep_answers_how_many_stimuli():
    """Lesson 2, exercise 2 asks how many stimuli biased CKA needs before two unrelated
    representations (d = 500) look unrelated: the sweep reaches that point, and its values follow
    d / (n + d), the rule the solution states."""
    _, out = _run_cells(_lesson("02"))
    rows = [(int(n), float(b)) for n, b in re.findall(r"^n = +(\d+): biased ([0-9.]+)", out, re.M)]
    assert rows and rows[-1][1] < 0.1, rows
    assert all(abs(b - 500 / (n + 500)) < 0.03 for n, b in rows), rows


def test_scipy_floor_has_the_rng_keyword_the_lessons_use():
    """Lesson 7 (like repsim.stats) passes rng= to scipy.stats.permutation_test, which scipy has
    from 1.15 on: the package's scipy floor must not let a student install an older one."""
    assert any("rng=0" in c.source for c in nbformat.read(_lesson("07"), as_version=4).cells)
    floor = re.search(r'"scipy>=(\d+)\.(\d+)', (REPO / "pyproject.toml").read_text())
    assert floor and (int(floor[1]), int(floor[2])) >= (1, 15), floor


def _lesson_numbers(text: str) -> list[int]:
    """'1-3 and 6' -> [1, 2, 3, 6]."""
    spans = re.findall(r"(\d+)(?:-(\d+))?", text)
    return [k for a, b in spans for k in range(int(a), int(b or a) + 1)]


def test_index_sessions_fit_the_lesson_times():
    """The index's plan of sessions holds its lessons at the longest time of each in its table."""
    index = (BOOK / "course" / "index.md").read_text()
    times = {
        int(m[1]): int(m[3] or m[2])
        for m in re.finditer(r"^\| (\d+)\. .*?\| (\d+)(?:-(\d+))? min \|", index, re.M)
    }
    assert sorted(times) == list(range(1, len(LESSONS) + 1)), times
    plan = re.search(
        r"Two (\d+)-minute sessions fit the course: the measures \(lessons ([^)]*)\) and then the "
        r"study's questions \(lessons ([^)]*)\)",
        " ".join(index.split()),
    )
    assert plan, "the index names its two sessions and their lessons"
    sessions = [_lesson_numbers(plan[2]), _lesson_numbers(plan[3])]
    assert sorted(sum(sessions, [])) == sorted(times)
    for lessons in sessions:
        assert sum(times[k] for k in lessons) <= int(plan[1]), (lessons, times)


def test_linear_cka_checks_catch_a_missing_centring():
    """Lesson 1's solution checks fail for the commonest wrong answer, linear_cka without centring:
    the lesson's X is nearly centred, so that answer is off by about 0.1% only, and the comparison
    of exercise 3 says so rather than leaving it to the reader's eye."""
    _, right = _run_cells(_lesson("01"))
    assert "all agree" in right and "CHANGED" not in right.split("general linear map")[0]
    _, wrong = _run_cells(_lesson("01"), {"    X = X - X.mean(0)\n    Y = Y - Y.mean(0)\n": ""})
    assert re.search(r"translation +CKA = [0-9.]+ +CHANGED", wrong), wrong
    assert "they DIFFER" in wrong, wrong


def test_local_kernel_is_read_against_a_shuffled_baseline():
    """Lesson 3: biased RBF CKA with a bandwidth far below the distances between stimuli tends to 1
    for any two representations (both kernels near the identity), so exercise 1 reads every value
    against X and a row-shuffled Y: the shuffled pair is high at sigma 0.05, and the bandwidth the
    lesson picks is the one furthest above its own baseline, never the smallest. Y moves every
    cluster (a derangement), so no cluster is left where X has it; on other draws too."""
    for seed in (2, 0, 1, 3, 4):
        ns, _ = _run_cells(_lesson("03"), {"default_rng(2)": f"default_rng({seed})"})
        assert (ns["moved"] != np.arange(ns["n_clusters"])).all(), ns["moved"]
        base, vals = ns["base"], ns["vals"]
        assert base[0.05] > 0.5, base
        assert ns["best"] != 0.05 and vals[ns["best"]] - base[ns["best"]] > ns["lin"] - ns["lin0"]
        # the shuffled pair's own baseline: independent of the lesson's helpers
        X, Ys = ns["X"], ns["Y_shuffled"]
        assert base[0.05] == pytest.approx(
            repsim.cka(X, Ys, kernel="rbf", sigma=0.05, unbiased=False)
        )
        assert abs(repsim.cka(X, Ys, kernel="rbf", sigma=0.05)) < 0.05


def test_biased_cka_bias_follows_the_effective_dimension():
    """Lesson 2 says the d / (n + d) rule is for isotropic features and that with decaying
    variances the bias follows the effective dimension: the printed values bear both out, and the
    unbiased estimator's mean over the lesson's draws at n = 20 is within 3 standard errors of 0."""
    ns, out = _run_cells(_lesson("02"))
    m = re.search(
        r"1/k variances, n = (\d+): biased ([0-9.]+), d / \(n \+ d\) = ([0-9.]+), "
        r"d_eff / \(n \+ d_eff\) = ([0-9.]+)",
        out,
    )
    assert m, out
    biased, plain, effective = float(m[2]), float(m[3]), float(m[4])
    assert abs(biased - effective) < 0.01 and plain - biased > 0.2, m.groups()
    lam = 1.0 / np.arange(1, 501)
    d_eff = lam.sum() ** 2 / (lam**2).sum()
    assert effective == pytest.approx(d_eff / (1000 + d_eff), abs=5e-4)
    u20 = np.asarray(ns["u20"])
    assert abs(u20.mean()) < 3 * u20.std(ddof=1) / np.sqrt(len(u20)), u20


def test_pooled_consistency_is_read_against_the_groups():
    """Lesson 4 says its all-pairs r is mostly the groups' different mean similarities: with each
    group's pairs centred per dataset (recomputed here with pandas) the correlation is far smaller,
    on the lesson's draw; the sentence is printed only when that holds."""
    ns, out = _run_cells(_lesson("04"))
    groups = {k: g for g, idx in ns["groups"].items() for k in idx}
    frame = pd.DataFrame({ds: ns["sims"][ds] for ds in ("objects", "texture")})
    frame["group"] = [groups[k] for k in range(len(frame))]
    centred = frame[["objects", "texture"]] - frame.groupby("group")[
        ["objects", "texture"]
    ].transform("mean")
    r_centred = centred["objects"].corr(centred["texture"])
    assert ns["r_centred"] == pytest.approx(r_centred, abs=1e-12)
    assert abs(r_centred) < abs(ns["r_all"]) / 2
    assert "Simpson's paradox" in out


def test_local_and_global_verdicts_hold_over_draws():
    """Lesson 6 calls a measure local or global from a sign test over 20 draws, not from one draw
    (on the lesson's earlier draws RBF CKA at sigma 0.1 flipped sides), at a level corrected for
    its six tests: linear CKA and RSA come out global and mutual k-NN local, and every draw moves
    every cluster."""
    ns, out = _run_cells(_lesson("06"))
    assert "Bonferroni over 6 measures: p < 0.0083" in out  # six sign tests, one per measure
    for name, side in (
        ("linear CKA", "global"),
        ("RSA (Spearman)", "global"),
        ("mutual 10-NN", "local"),
    ):
        line = next(s for s in out.splitlines() if s.startswith(name) and "prefer Y_global" in s)
        assert f"({side}), p = " in line, line
    for X, reps in ns["draws"]:
        Yg = reps["Y_global"]
        labels = ns["labels"]
        means_x = np.array([X[labels == c].mean(0) for c in range(ns["n_clusters"])])
        means_y = np.array([Yg[labels == c].mean(0) for c in range(ns["n_clusters"])])
        assert (np.linalg.norm(means_x - means_y, axis=1) > 1e-6).all()


def test_stratified_objective_test_finds_no_effect_beyond_size():
    """Lesson 7's simulation has size as its only effect; the stratified test (objective shuffled
    within size) must not find the objective in the study-like zoo, where the free test does on
    the lesson's draw, and holds that on other draws."""
    for seed in (7, 1, 2, 3):
        ns, out = _run_cells(_lesson("07"), {"default_rng(7)": f"default_rng({seed})"})
        res = ns["stratified_spread_test"](ns["S_study"], ns["objective"], ns["size"])
        assert res["p_value"] > 0.1, (seed, res)
        if seed == 7:
            assert "study-like: significant at alpha = 0.05: objective, size" in out
            assert re.search(
                r"study-like objective, shuffled within size: p = [0-9.]+ \(not significant", out
            )


def test_lesson_run_opens_a_run_or_says_how_to_make_one(course_run: Path, tmp_path, capsys):
    """The three lessons with an exercise on a real run open it with one call: a run folder gives
    the run and a line naming it; None, an empty folder or a missing one gives None and the
    message that the exercise is skipped, with the command that makes a run."""
    run = repsim.lesson_run(course_run)
    assert run is not None and f"Run '{run.name}': " in capsys.readouterr().out
    for missing in (None, "", tmp_path, tmp_path / "absent"):
        assert repsim.lesson_run(missing) is None
        out = capsys.readouterr().out
        assert out.count(SKIP_MESSAGE) == 1 and "repsim run data/configs/embedded.yaml" in out
        # a relative run_dir is read from the kernel's folder: the message says where it looked
        # (a student who had made the run was told to make it)
        looked = f"(looked for in {Path(missing).resolve()})" if missing else "(looked for in"
        assert (looked in out) == bool(missing)
    for lesson in RUN_LESSONS:
        cells = [c.source for c in nbformat.read(lesson, as_version=4).cells]
        assert sum("repsim.lesson_run(run_dir)" in s for s in cells) == 1, lesson.name


def test_behaviour_verdict_comes_from_a_test_over_the_models():
    """Lesson 5 said "Negative: similar representations go with similar accuracy" from the sign
    of r alone; the verdict now follows a permutation test that shuffles which model has which
    accuracy (pairs share models). Checked by hand: no one of 2,000 own shuffles reaches the
    lesson's r, and the sentence printed is the one its p gives."""
    ns, out = _run_cells(_lesson("05"))
    names, pairs, acc, sim = ns["names"], ns["pairs"], ns["acc"], ns["sim"]
    index = {m: i for i, m in enumerate(names)}
    a_idx = np.array([index[a] for a, _ in pairs])
    b_idx = np.array([index[b] for _, b in pairs])
    accuracy = np.array([acc[m] for m in names])
    r = np.corrcoef(sim, np.abs(accuracy[a_idx] - accuracy[b_idx]))[0, 1]
    assert ns["r"] == pytest.approx(r, abs=1e-12) and r < 0
    rng = np.random.default_rng(12)
    shuffled = [
        np.corrcoef(sim, np.abs(p[a_idx] - p[b_idx]))[0, 1]
        for p in (rng.permutation(accuracy) for _ in range(2000))
    ]
    assert np.mean(np.array(shuffled) <= r) < 0.01
    assert ns["test"].pvalue < 0.05
    assert (
        f"Negative beyond chance (permutation test over the models, p = {ns['test'].pvalue:.3f})"
        in out
    )


def test_lesson_6_says_when_its_datasets_cannot_reach_the_corrected_level(tmp_path):
    """Over 6 datasets the smallest two-sided Wilcoxon p is 2 / 2**6 = 0.031 (scipy gives it when
    every difference has one sign), above the Bonferroni level 0.025 of two questions: the lesson
    said "no evidence" at p = 0.031 where the design could not reach its level."""
    from scipy import stats as scipy_stats

    assert scipy_stats.wilcoxon(np.arange(1.0, 7.0)).pvalue == pytest.approx(2 / 2**6)
    run = write_fake_run(tmp_path / "run")  # six datasets
    sim = xr.load_dataset(run / "similarity.nc")
    rng = np.random.default_rng(0)
    for m in sim.data_vars:  # measures that rank the pairs differently on each dataset
        noise = rng.normal(scale=0.2, size=sim[m].shape)
        sim[m].values = sim[m].values + noise + noise.transpose(0, 2, 1)
    sim.to_netcdf(run / "similarity.nc", engine=NC_ENGINE)
    write_manifest_for(run)
    _, out = _run_cells(
        _lesson("06"),
        {"run = repsim.lesson_run(run_dir)": f"run = repsim.lesson_run({str(run)!r})"},
    )
    verdicts = out[out.index("Paired over datasets") :]
    assert "Bonferroni over 2 question(s): p < 0.025" in verdicts
    assert verdicts.count("cannot give p below 0.025 (its smallest p is 0.031)") == 2
    assert "no evidence" not in verdicts
