"""The controlled-experiment tests in a run folder: written for crossed zoos, skipped with a reason
otherwise, listed in the manifest and rebuilt when damaged like every result file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from repsim import stats
from repsim.pipeline import run
from repsim.results import CONTROLLED_TESTS_OPTIONS, controlled_design_problem
from repsim.runfolder import RESULT_FILES, RunFolder, RunFolderError

pytestmark = pytest.mark.slow

#: 2 objectives x 2 architectures x 2 seeds : a crossed zoo.
CROSSED_MODELS = [
    f"{arch}-{obj}-s{seed}"
    for arch in ("cnn", "mlp")
    for obj in ("supervised", "clip")
    for seed in (0, 1)
]


@pytest.fixture(scope="module")
def crossed_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> Path:
    """The tiny config's datasets, with a crossed selection of mini-zoo models and probes off."""
    cfg_dir = tmp_path_factory.mktemp("crossed")
    config = cfg_dir / "crossed.yaml"
    config.write_text(
        f"name: crossed\ninclude: [{tiny_config.parent / 'embedded.yaml'}]\n"
        f"select: {{models: [{', '.join(CROSSED_MODELS)}], datasets: [faces, textures, gratings]}}\n"
        "stimuli: {max_images: 40, seed: 42}\nmeasures: [cka_linear, rsa_spearman]\n"
        "probe: {enabled: false}\nthreads: 1\n"
    )
    out = cfg_dir / "run"
    run(config, out, device="cpu")
    return out


def test_tiny_run_records_why_the_tests_are_skipped(tiny_run: Path):
    folder = RunFolder(tiny_run)
    assert not folder.controlled_tests.exists()
    info = json.loads(folder.info.read_text())
    reasons = [s for s in info["skipped_analyses"] if s.startswith("controlled_tests.csv:")]
    # the tiny zoo has no MLP SimCLR model, among others: not crossed
    assert len(reasons) == 1 and "not crossed" in reasons[0]
    assert reasons[0] in folder.summary.read_text()
    assert "stats" in info["timings_s"]


def test_crossed_run_writes_the_tests(crossed_run: Path):
    folder = RunFolder(crossed_run)
    assert folder.controlled_tests.name in RESULT_FILES
    table = stats.load(crossed_run)
    assert list(table.columns) == list(stats.COLUMNS)
    # the file holds exactly what the package computes from the run's similarity.nc
    sim = xr.load_dataset(folder.similarity)
    expected = stats.controlled_tests(sim, **CONTROLLED_TESTS_OPTIONS)
    expected[["group_a", "group_b"]] = expected[["group_a", "group_b"]].fillna("")
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    factor = table[(table.analysis == "factor") & (table.view == "separate")]
    assert set(factor.factor) == {"objective", "architecture"}
    assert set(table.measure) == {"cka_linear"}  # the default measures present in the run
    assert ((factor.p_value > 0) & (factor.p_value <= 1)).all()
    info = json.loads(folder.info.read_text())
    assert not [s for s in info["skipped_analyses"] if s.startswith("controlled_tests.csv")]
    manifest = folder.read_manifest()
    assert folder.controlled_tests.name in manifest["files"]
    assert stats.answer(table) in folder.summary.read_text()


def test_a_chapter_on_a_measure_the_run_did_not_test_gets_that_measures_tests(crossed_run: Path):
    """The controlled chapter with measure=rsa_spearman (the run tests cka_linear) showed
    cka_linear's factor sentences, whose they were said only in a note above them: the chosen
    measure's rows are computed as the run computes its own, and the answer says so."""
    from repsim import analysis as A
    from repsim import chapter as CH
    from repsim import sentences as T

    ch = CH.open_chapter(crossed_run, measure="rsa_spearman")
    tests, reason = A.controlled_tests(ch.run, ch.measure)
    assert reason == "" and tests.attrs["computed"] == ["rsa_spearman"]
    sim = xr.load_dataset(RunFolder(crossed_run).similarity)
    both = stats.controlled_tests(sim, ["cka_linear", "rsa_spearman"], **CONTROLLED_TESTS_OPTIONS)
    both[["group_a", "group_b"]] = both[["group_a", "group_b"]].fillna("")
    pd.testing.assert_frame_equal(tests, both, check_dtype=False)  # what the run would write
    factors = A.controlled_rows(tests, ch.measure, "factor", display=False)
    assert set(factors["measure"]) == {"rsa_spearman"} and len(factors) == 2
    answer = T.controlled_answer(tests, reason, ch.measure)
    assert answer.startswith(
        "The run's controlled_tests.csv tests cka_linear; the tests of rsa_spearman below are "
        "computed here as the run computes its own (the same resampling and seeds). With "
        "rsa_spearman on 3 datasets"
    )
    # a measure the run tested: its file, nothing computed
    tested, _ = A.controlled_tests(ch.run, "cka_linear")
    assert "computed" not in tested.attrs
    pd.testing.assert_frame_equal(tested, stats.load(crossed_run))


def test_damaged_tests_are_refused_and_rebuilt(crossed_run: Path, tmp_path: Path):
    copy = tmp_path / "run"
    shutil.copytree(crossed_run, copy)
    folder = RunFolder(copy)
    original = folder.controlled_tests.read_bytes()
    folder.controlled_tests.write_text(original.decode().replace("objective", "architecture", 1))
    with pytest.raises(RunFolderError, match="changed after the run wrote it"):
        folder.open_results()
    config = crossed_run.parent / "crossed.yaml"
    run(config, copy, device="cpu")
    assert folder.controlled_tests.read_bytes() == original
    folder.controlled_tests.unlink()
    run(config, copy, device="cpu")
    assert folder.controlled_tests.read_bytes() == original


def test_design_problem_names_what_is_missing():
    models = ["cnn-sup-s0", "cnn-sup-s1", "mlp-sup-s0", "mlp-sup-s1", "cnn-clip-s0", "cnn-clip-s1"]
    obj = ["Supervised"] * 4 + ["Image-Text"] * 2
    arch = ["Convolutional", "Convolutional", "MLP", "MLP", "Convolutional", "Convolutional"]
    S = np.ones((3, len(models), len(models)))
    sim = xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), S)},
        coords={
            "dataset": ["a", "b", "c"],
            "model_a": models,
            "model_b": models,
            "objective_a": ("model_a", obj),
            "architecture_class_a": ("model_a", arch),
        },
    )
    assert "Image-Text x MLP" in controlled_design_problem(sim)
    no_seed = sim.assign_coords(model_a=[m[:-3] + "x" for m in models])
    assert "design metadata" in controlled_design_problem(no_seed)
    crossed = sim.isel(model_a=[0, 1, 2, 3], model_b=[0, 1, 2, 3])
    assert "2 or more of each" in controlled_design_problem(crossed)


def test_a_random_control_is_not_a_design_cell():
    """One untrained control beside a crossed 2 x 2 x 2 design was counted as a cell with one
    seed ("this run has [1, 2]"), though the tests leave controls out of the strata."""
    cells = [(a, o) for a in ("cnn", "mlp") for o in ("sup", "clip")]
    models = [f"{a}-{o}-s{s}" for a, o in cells for s in (0, 1)] + ["cnn-random-s0"]
    obj = [{"sup": "Supervised", "clip": "Image-Text"}[m.split("-")[1]] for m in models[:-1]]
    arch = [{"cnn": "Convolutional", "mlp": "MLP"}[m.split("-")[0]] for m in models]
    sim = xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), np.ones((3, 9, 9)))},
        coords={
            "dataset": ["a", "b", "c"],
            "model_a": models,
            "model_b": models,
            "objective_a": ("model_a", [*obj, "Random"]),
            "architecture_class_a": ("model_a", arch),
        },
    )
    assert controlled_design_problem(sim) is None
    assert "same number" in controlled_design_problem(sim.isel(model_a=slice(1, 9)))
    one_seed = sim.isel(model_a=[0, 2, 4, 6])  # every cell crossed, one seed each
    assert controlled_design_problem(one_seed).endswith("this run has [1]")
    two = controlled_design_problem(sim.isel(dataset=[0, 1]))
    assert two == "the tests need at least 3 datasets; this run has 2"
    # a design the tests still refuse (a model's NaN similarities): the run leaves the table out
    # and says why, instead of stopping on the InputError
    from repsim.results import run_controlled_tests

    S = sim["cka_linear"].values.copy()
    S[1, 0, 1:] = S[1, 1:, 0] = np.nan
    table, why = run_controlled_tests(sim.copy(data={"cka_linear": S}))
    assert table is None and why[0].startswith("controlled_tests.csv: similarities of models")


# ------------------------------------------------------------------ the chapters that word the tests
def _markdown(path: Path) -> str:
    """Markdown outputs of an executed notebook; fails on an error output or stderr."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outs if o["output_type"] == "error"], path.name
    assert not [o for o in outs if o.get("name") == "stderr"], path.name
    return "\n".join(
        "".join(o["data"]["text/markdown"]) for o in outs if "text/markdown" in o.get("data", {})
    )


def _chapters(run_dir: Path, out: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The Markdown of the chapters called ``NN_<name>``, keyed by name."""
    from repsim import book

    chapters = [p for p in book.chapter_notebooks() if p.stem[3:] in names]
    assert len(chapters) == len(names), names
    return {p.stem[3:]: _markdown(p) for p in book.execute_chapters(run_dir, out, chapters)}


def test_chapters_state_the_tests_of_a_crossed_run(crossed_run: Path, tmp_path: Path):
    text = _chapters(
        crossed_run, tmp_path / "out", ("overview", "controlled_minizoo", "study_numbers")
    )
    headline = stats.answer(stats.load(crossed_run))
    assert headline in text["controlled_minizoo"] and headline in text["overview"]
    assert "(SimCLR and Barlow Twins as two objectives), " in headline  # the primary view says so
    assert "Secondary view: with " in text["controlled_minizoo"]
    # the run's own seeds, not the full mini-zoo's three
    assert (
        "This run has 8 models: 8 trained, crossing 2 objectives (Supervised and Image-Text) with "
        "2 architecture classes (Convolutional and MLP), 2 seeds in each cell (seeds 0 and 1)."
        in text["controlled_minizoo"]
    )
    assert "(SimCLR and Barlow Twins pooled as Self-Supervised), " in text["controlled_minizoo"]
    for chapter in text.values():
        assert "strongest driver" not in chapter and "agrees with" not in chapter
    assert "None of the 8 models of this run is one of the study's 64" in text["study_numbers"]
    assert "not comparable with the study's" in text["overview"]


def test_chapters_on_the_fake_run_say_why_there_is_no_test(tmp_path: Path):
    from helpers_run import write_fake_run

    run_dir = write_fake_run(tmp_path / "fake")
    text = _chapters(
        run_dir, tmp_path / "out", ("behaviour", "controlled_minizoo", "study_numbers")
    )
    assert "is not tested here" in text["controlled_minizoo"]
    assert "not a design of objective x architecture x seed" in text["controlled_minizoo"]
    assert "plus 0.05" in text["behaviour"] and "number of classes is unknown" in text["behaviour"]
    assert "Probe protocol" in text["behaviour"] and "not ranked" in text["behaviour"]
    assert "against the study (Ciernik et al. 2025, 64 models; 5 of" in text["study_numbers"]
