"""The book end to end: papermill runs every chapter notebook on a tiny run, jupyter-book builds
with warnings as errors, and headless Chromium checks the built pages."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from helpers_run import tiny_run_available, write_fake_run, write_manifest_for

from repsim import book as B
from repsim import sentences as T
from repsim import stats as S

REPO = Path(__file__).resolve().parents[1]
RESULTS_PAGE = "generated/06_consistency_by_category.html"


def test_every_notebook_has_a_parameters_cell_first():
    nbs = B.chapter_notebooks()
    assert len(nbs) >= 12
    for path in nbs:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert "run_dir" in code[0].source, path.name
        assert all(not c.outputs for c in code), f"{path.name}: commit notebooks without outputs"


def test_every_chapter_cell_but_the_parameters_hides_its_code():
    """The chapters are read for their results; their code is one click away. The controlled
    chapter showed one cell's code (the zoo accuracy) among folded ones, by an untagged cell."""
    for path in B.chapter_notebooks():
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if cell.cell_type == "code" and "parameters" not in tags:
                folded = any(t.startswith(("hide-", "remove-")) for t in tags)
                assert folded, f"{path.name}: cell {cell.get('id')} shows its code"


def test_every_notebook_is_valid_with_unique_cell_ids():
    """nbformat 4.5 needs an id on every cell (a cell added by hand without one only warns now,
    and will be an error in a later nbformat)."""
    for path in [*B.chapter_notebooks(), *B.course_notebooks(REPO / "book")]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        ids = [c.get("id") for c in nb.cells]
        assert all(ids) and len(set(ids)) == len(ids), path.name


def test_every_chapter_asks_the_controlled_tests_of_its_measure():
    """The run's controlled_tests.csv tests two measures; a chapter on another one must pass it
    (analysis.controlled_tests computes its rows), or its answer is cka_linear's: chapters 0 and
    6 on rsa_spearman gave cka_linear's answer under a note, where chapter 9 gave rsa_spearman's."""
    calls = {}
    for path in B.chapter_notebooks():
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        calls[path.name] = re.findall(r"controlled_tests\(([^)]*)\)", source)
    asking = {name: found for name, found in calls.items() if found}
    assert len(asking) >= 3, asking
    assert all(args == "run, measure" for found in asking.values() for args in found), asking


def test_toc_lists_every_notebook_and_lesson():
    toc = (REPO / "book" / "_toc.yml").read_text()
    for path in B.chapter_notebooks():
        assert f"generated/{path.stem}" in toc, path.name
    for path in B.course_notebooks(REPO / "book"):
        assert f"generated/course/{path.stem}" in toc, path.name


def test_chapter_files_are_numbered_in_toc_order():
    """The table of contents reads the chapters in file-name order (book.chapter_notebooks)."""
    toc = (REPO / "book" / "_toc.yml").read_text()
    listed = re.findall(r"generated/([0-9]{2}_[a-z_]+)", toc)
    assert listed == [p.stem for p in B.chapter_notebooks()]
    assert [int(s[:2]) for s in listed] == list(range(len(listed)))


@pytest.fixture(scope="module")
def book_run(request, tmp_path_factory) -> Path:
    """The run the book is built on: the session's real pipeline run of the tiny config when it
    can run here (see helpers_run.tiny_run_available), else the fake run."""
    if tiny_run_available():
        return request.getfixturevalue("tiny_run")
    return write_fake_run(tmp_path_factory.mktemp("fake") / "run")


@pytest.fixture(scope="module")
def built_book(book_run, tmp_path_factory) -> Path:
    """Execute every notebook on the tiny run and build the book in a copy of book/."""
    book = tmp_path_factory.mktemp("book") / "book"
    shutil.copytree(REPO / "book", book, ignore=shutil.ignore_patterns("_build", "generated"))
    return B.build_book(run_dir=book_run, book_dir=book, execute=True)


def _outputs(nb_path: Path) -> list[dict]:
    nb = json.loads(nb_path.read_text())
    return [o for c in nb["cells"] for o in c.get("outputs", [])]


def _text(outs: list[dict]) -> str:
    """The markdown and plain-text outputs of a notebook, joined."""
    parts = []
    for o in outs:
        data = o.get("data", {})
        parts.append("".join(data.get("text/markdown", data.get("text/plain", ""))))
    return "\n".join(parts)


def _assert_clean(path: Path) -> list[dict]:
    """No error, no stderr, no 'nan' in a sentence of an executed notebook, and no computed
    sentence that ranks or compares without its test or a "described, not tested" beside it."""
    outs = _outputs(path)
    assert not [o for o in outs if o["output_type"] == "error"], path.name
    stderr = [o["text"] for o in outs if o.get("name") == "stderr"]
    assert not stderr, f"{path.name} wrote to stderr: {stderr}"
    md = "\n".join(
        "".join(o["data"]["text/markdown"]) for o in outs if "text/markdown" in o.get("data", {})
    )
    assert not re.search(r"\bnan\b", md, re.I), f"{path.name}: 'nan' in a sentence: {md}"
    claims = T.untested_claims(md)
    assert not claims, f"{path.name}: sentences that rank or compare without a test: {claims}"
    return outs


def _without_dataset(run_dir: Path, dataset: str) -> Path:
    """The run with every similarity of ``dataset`` NaN (as if each model failed on it) and its
    consistency.nc recomputed from that, as the run's consistency stage would."""
    import numpy as np
    import xarray as xr

    from repsim.results import run_consistency

    sim = xr.load_dataset(run_dir / "similarity.nc")
    for name in sim.data_vars:
        sim[name].loc[{"dataset": dataset}] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NaN similarities it is told about
        cons, _ = run_consistency(sim)
    cons.attrs.update(xr.load_dataset(run_dir / "consistency.nc").attrs)
    sim.to_netcdf(run_dir / "similarity.nc")
    cons.to_netcdf(run_dir / "consistency.nc")
    write_manifest_for(run_dir)
    return run_dir


def _chapter_here(stem: str, run_dir: Path, monkeypatch, **params) -> tuple[str, list[str]]:
    """A chapter's code cells run in this process (as tests/test_course.py runs a lesson), its
    ``params`` set after its parameters cell as papermill sets them: its page's Markdown (its
    Markdown cells and what it says, in order), and the texts of each figure it draws (titles,
    caption; one string a figure, unwrapped), which an executed notebook holds only as a PNG."""
    import IPython.display
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    said: list[str] = []
    figures: list[str] = []

    def keep(fig: Figure) -> None:
        texts = [t.get_text() for t in fig.texts]
        texts += [ax.get_title() for ax in fig.axes]
        figures.append(" ".join(" ".join(texts).split()))

    def display(obj, *args, **kwargs) -> None:
        if isinstance(obj, Figure):
            keep(obj)
        elif isinstance(obj, IPython.display.Markdown):
            said.append(obj.data)

    monkeypatch.setattr(IPython.display, "display", display)
    (path,) = [p for p in B.chapter_notebooks() if p.stem == stem]
    ns: dict = {}
    # what setup() sets for a kernel (pandas' column width, a warning filter) ends with the chapter
    width = pd.get_option("display.max_colwidth")
    with pd.option_context("display.max_colwidth", width), warnings.catch_warnings():
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                said.append(cell.source)
            if cell.cell_type != "code":
                continue
            exec(compile(cell.source, f"{path.name}", "exec"), ns)
            if "parameters" in cell.metadata.get("tags", []):
                ns.update(run_dir=str(run_dir), **params)
            for num in plt.get_fignums():  # a figure a cell leaves open is shown at its end
                keep(plt.figure(num))
                plt.close(num)
    return "\n".join(said), figures


def test_chapter_11_paired_figure_names_the_datasets_it_draws(tmp_path, monkeypatch):
    """Chapter 11's figure of median consistency per category pair under both measures was
    captioned with the chapter's datasets, also one with no dataset pair of defined consistency,
    which adds nothing to any median: the caption names the datasets drawn and the one left out."""
    run_dir = _without_dataset(write_fake_run(tmp_path / "fake", features=False), "counts")
    _, figures = _chapter_here("11_platonic", run_dir, monkeypatch)
    (paired,) = [f for f in figures if "median consistency per objective pair" in f]
    assert "datasets: shapes, objects, flowers, textures, digits; " in paired
    assert "measure: cka_linear vs mutual_knn_10." in paired
    assert "1 of the 6 datasets (counts) has no dataset pair with a defined consistency" in paired


@pytest.mark.parametrize("stem", ["08_behaviour", "10_local_global", "11_platonic"])
def test_chapters_draw_no_panel_of_a_dataset_without_a_defined_similarity(
    tmp_path, monkeypatch, stem
):
    """Chapters 10 and 11 picked a dataset every model failed on for a panel of pair
    similarities and drew it empty, titled "Spearman nan"; chapter 8 drew it as "0 models, r =
    undefined". The panels are taken from the datasets with a defined similarity and the chapter
    names the one that cannot be drawn."""
    run_dir = _without_dataset(write_fake_run(tmp_path / "fake", features=False), "flowers")
    page, figures = _chapter_here(stem, run_dir, monkeypatch)
    panels = [f for f in figures if "Spearman" in f or "models, r =" in f]
    assert panels
    for figure in panels:
        assert "flowers" not in figure, figure
        assert not re.search(r"\bnan\b", figure, re.I), figure
    assert not re.search(r"\bnan\b", page, re.I)
    said = {
        "08_behaviour": "; flowers has no defined cka_linear and is not drawn.",
        "10_local_global": "; flowers has no defined similarity under cka_linear, cka_rbf_0.2 "
        "and rsa_spearman and is not drawn.",
        "11_platonic": "; flowers has no defined similarity under cka_linear and mutual_knn_10 "
        "and is not drawn.",
    }[stem]
    assert said in page


def test_chapter_03_draws_the_matrices_of_the_datasets_with_a_defined_similarity(
    tmp_path, monkeypatch
):
    """Chapter 3 on a run whose one dataset every model failed on drew that dataset as a blank
    panel, captioned as drawn, and its per-dataset clustering stopped with a traceback (scipy:
    "The condensed distance matrix must contain only finite values"). Beside one other dataset,
    it drew a mean and a standard deviation across the two from one."""
    run_dir = _without_dataset(write_fake_run(tmp_path / "fake", features=False), "flowers")
    _, figures = _chapter_here("03_similarity_matrices", run_dir, monkeypatch)
    matrices = [f for f in figures if "mean across datasets" in f or "digits Structured" in f]
    assert len(matrices) == 2  # the common order and each dataset's own
    for figure in matrices:
        assert "flowers Natural" not in figure, figure
        assert "1 of the 6 datasets (flowers) has no defined similarity: not drawn." in figure
    page, figures = _chapter_here(
        "03_similarity_matrices", run_dir, monkeypatch, datasets=["flowers", "digits"]
    )
    assert (
        "has one dataset with a defined cka_linear (digits; flowers has none): there is no mean "
        "or spread across datasets, so the figure leaves out the mean and standard-deviation "
        "panels." in page
    )
    assert not [f for f in figures if "mean across datasets" in f]


@pytest.mark.parametrize("stem", ["04_transfer", "12_anchors"])
def test_chapters_keep_the_warning_of_a_dataset_without_a_defined_similarity_off_the_page(
    tmp_path, monkeypatch, stem
):
    """Consistency on a run whose one dataset every model failed on warns of the NaN it drops;
    the chapters leave that dataset out and name it, and the warning was printed on the page
    (chapter 4's transforms, chapter 12's anchors, chapter 13's train split) as stderr."""
    run_dir = _without_dataset(write_fake_run(tmp_path / "fake", features=False), "flowers")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _chapter_here(stem, run_dir, monkeypatch)
    assert not [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    ("stem", "params", "said"),
    [
        (
            "03_similarity_matrices",
            {"models": ["sup-con-0"]},  # and the model map: one figure
            ["has 1, so these two figures are skipped.", "has 1, so this figure is skipped."],
        ),
        (
            "04_transfer",
            {"datasets": ["flowers"]},
            [
                "(flowers), so this figure is skipped.",
                "(flowers), so these two figures are skipped.",
            ],
        ),
        (
            "10_local_global",
            {"models": ["sup-con-0", "sel-tra-1"]},
            [
                "has 2, so these two figures are skipped.",
                "has 2, so these three figures are skipped.",
            ],
        ),
        (
            "10_local_global",
            {"datasets": ["flowers"]},
            [
                "(flowers), so this table is skipped.",
                "(flowers), so these three figures are skipped.",
            ],
        ),
        (
            "11_platonic",
            {"models": ["sup-con-0", "sel-tra-1"]},
            ["has 2, so these two figures are skipped."],
        ),
    ],
)
def test_a_skip_sentence_counts_the_figures_it_skips(tmp_path, monkeypatch, stem, params, said):
    """One need() sentence skipped more than one figure and said "this figure is skipped":
    chapter 3's two kinds of matrices, chapter 4's transform section (said again with the count
    of its first section), chapter 10's panels and its three figures of consistency under other
    measures (said again with the count of the panels), chapter 11's two figures; chapter 10
    called its table of medians "this figure"."""
    run_dir = write_fake_run(tmp_path / "fake", features=False)
    page, _ = _chapter_here(stem, run_dir, monkeypatch, **params)
    skips = [line for line in page.splitlines() if "skipped." in line]
    assert all(any(line.endswith(end) for line in skips) for end in said), skips
    assert len(skips) == len(said), skips


def test_chapter_04_counts_the_datasets_its_means_and_spreads_rest_on(tmp_path, monkeypatch):
    """Chapter 4's mean-against-spread figure said "across 6 datasets" of a run whose one
    dataset had no defined similarity (its means and spreads came from 5), and its figures'
    captions named that dataset among those drawn."""
    run_dir = _without_dataset(write_fake_run(tmp_path / "fake", features=False), "counts")
    _, figures = _chapter_here("04_transfer", run_dir, monkeypatch)
    (spread,) = [f for f in figures if "spread of pair similarity" in f]
    assert "cka_linear: spread of pair similarity across 5 datasets" in spread
    drawn = "datasets: shapes, objects, flowers, textures, digits; "
    assert len(figures) == 4
    for figure in figures:
        assert drawn in figure, figure
        assert "1 of the 6 datasets (counts) has no " in figure, figure


def test_chapter_03_says_what_its_model_map_embeds_on_one_dataset_and_several(
    tmp_path, monkeypatch
):
    """Chapter 3's text above its model map said the distance was 1 - the mean similarity
    across the run's datasets, also on one dataset (where the map's title said '1 - cka_linear
    on flowers'): the text says what the map embeds, in both cases."""
    run_dir = write_fake_run(tmp_path / "fake", features=False, probes=False)
    page, _ = _chapter_here("03_similarity_matrices", run_dir, monkeypatch, datasets=["flowers"])
    assert "mean similarity across the run's datasets" not in page
    assert (
        "The distance between two models in this map is 1 - their cka_linear on flowers, the "
        "chapter's one dataset: there is no mean across datasets." in page
    )
    page, _ = _chapter_here("03_similarity_matrices", run_dir, monkeypatch)
    assert "1 - their mean cka_linear across the 6 datasets." in page


def test_chapter_02_says_its_rows_keep_the_study_s_grouping(tmp_path, monkeypatch):
    """Chapter 2 with another category grouped its rows by objective, the study's grouping,
    and said nothing about the parameter it took."""
    run_dir = write_fake_run(tmp_path / "fake", features=False, probes=False)
    said = "are the study's published grouping, by objective; the chapter's category"
    page, _ = _chapter_here("02_study_numbers", run_dir, monkeypatch, category="size_class")
    assert f"{said} (size_class) does not change them" in page
    page, _ = _chapter_here("02_study_numbers", run_dir, monkeypatch)
    assert said not in page


@pytest.mark.slow
def test_book_builds_without_errors(built_book: Path):
    html = built_book.parent
    assert built_book.is_file()
    generated = built_book.parents[2] / "generated"
    for path in [*generated.glob("*.ipynb"), *generated.glob("course/*.ipynb")]:
        _assert_clean(path)
        page = html / path.relative_to(built_book.parents[2]).with_suffix(".html")
        assert page.is_file(), page
        assert "Traceback" not in page.read_text()
    assert len(list((html / "_images").glob("*.png"))) >= 15


def test_book_records_its_time_per_stage_in_run_json(built_book: Path, book_run: Path):
    from repsim.runfolder import RunFolder

    folder = RunFolder(book_run)
    if not folder.read_manifest():
        pytest.skip("the fake run has no manifest, so nothing vouches for its run.json")
    timings = folder.read_info()["book_timings_s"]
    assert set(timings) == {"chapters", "course", "html", "book"}
    assert timings["book"] >= timings["chapters"] + timings["course"] + timings["html"] > 0
    folder.open_results(verify=True)  # the manifest still vouches for every file


@pytest.mark.slow
def test_built_book_has_the_course_and_student_notebooks(built_book: Path):
    """The course index links every student notebook for download, and those in the built book
    hold no solution cell (the teacher pages keep them, folded)."""
    html = built_book.parent
    index = (html / "course" / "index.html").read_text()
    lessons = B.course_notebooks(REPO / "book")
    for lesson in lessons:
        assert f"generated/course/{lesson.stem}.html" in index, lesson.name
    linked = [
        p
        for p in (html / "_downloads").glob("*/*.ipynb")
        if f"_downloads/{p.parent.name}/{p.name}" in index
    ]
    students = [p for p in linked if B.STUDENT_STUB in p.read_text()]
    assert sorted(p.name for p in students) == sorted(p.name for p in lessons)
    for path in students:
        nb = nbformat.read(path, as_version=4)
        assert not [c for c in nb.cells if B.SOLUTION_TAG in c.metadata.get("tags", [])], path.name
    teacher = nbformat.read(
        built_book.parents[2] / "generated" / "course" / lessons[0].name, as_version=4
    )
    assert [c for c in teacher.cells if B.SOLUTION_TAG in c.metadata.get("tags", [])]


@pytest.mark.slow
def test_chapters_on_the_fake_run(book_run, tmp_path):
    """When the book is built on the real tiny run, the chapters whose branches the tiny run
    leaves out (every category pair testable, all heatmaps, ...) also run on the fake run."""
    if not tiny_run_available():
        pytest.skip("the book itself is built on the fake run")
    run_dir = write_fake_run(tmp_path / "fake")
    names = ("consistency_by_category", "consistency_heatmaps", "anchors", "controlled_minizoo")
    chapters = [p for p in B.chapter_notebooks() if p.stem[3:] in names]
    assert len(chapters) == len(names)
    for path in B.execute_chapters(run_dir, tmp_path / "out", chapters):
        _assert_clean(path)


@pytest.mark.slow
def test_chapters_skip_cleanly_on_a_degenerate_run(tmp_path):
    """One model per objective, no consistency.nc, probes or features: every chapter that cannot
    draw its figure says why in one sentence, without a traceback or stderr."""
    run_dir = write_fake_run(tmp_path / "bare", n_per_objective=1, features=False, probes=False)
    (run_dir / "consistency.nc").unlink()
    write_manifest_for(run_dir)  # a run that wrote no consistency.nc
    names = (
        "overview",
        "similarity_matrices",
        "consistency_scatter",
        "consistency_by_category",
        "behaviour",
        "robustness",
    )
    chapters = [p for p in B.chapter_notebooks() if p.stem[3:] in names]
    assert len(chapters) == len(names)
    out = B.execute_chapters(run_dir, tmp_path / "out", chapters)
    text = ""
    for path in out:
        text += _text(_assert_clean(path))
    assert "no probes.nc" in text and "no consistency.nc" in text and "kept no features" in text
    assert (
        "No two of the models shown have the same objective" in text
    )  # similarity matrices: no same-category pair
    assert "no group r is shown" in text  # consistency scatter: no 3 pairs


@pytest.mark.slow
def test_chapters_of_part_of_a_run(tmp_path):
    """The ``models`` and ``datasets`` parameters: the chapters that read consistency.nc and the
    controlled tests show the part (consistency recomputed for its models), and say that the
    whole run's tests are not this part's, instead of printing them for it."""
    run_dir = write_fake_run(tmp_path / "fake", n_per_objective=2, features=False)
    S.save(pd.DataFrame(columns=S.COLUMNS), run_dir)
    write_manifest_for(run_dir)
    names = ("overview", "consistency_by_category", "controlled_minizoo", "anchors", "local_global")
    chapters = [p for p in B.chapter_notebooks() if p.stem[3:] in names]
    assert len(chapters) == len(names)
    models = ["sup-con-0", "sup-tra-1", "sel-con-0", "sel-tra-1", "ima-con-0", "ima-tra-1"]
    params = {"models": models, "datasets": ["shapes", "flowers", "digits", "counts"]}
    out = B.execute_chapters(run_dir, tmp_path / "out", chapters, params)
    for path in out:
        text = _text(_assert_clean(path))
        if path.stem[3:] == "overview":
            assert "6 models, 4 datasets (this chapter's part of the run: 6 of 8" in text
        if path.stem[3:] in ("overview", "consistency_by_category", "controlled_minizoo"):
            assert "part of the run (6 of 8 models and 4 of 6 datasets)" in text, path.name
        if path.stem[3:] == "anchors":
            # the chosen models are the anchors, none random: 3 categories, so 3 tests; with 2
            # anchors each no comparison can reach the threshold, and the sentence says so
            # without a table of tests above it that cannot come out
            assert "No category comparison can be tested at the Bonferroni threshold" in text
            assert "(alpha = 0.01 over 3 tests)" in text and "Random" not in text
            assert "below thr." not in text
        if path.stem[3:] == "controlled_minizoo":  # no objective splits by architecture here
            assert "its consistency cannot be split by architecture" in text
            assert "pairs across" not in text  # the all-NaN table (a column of it) is not shown
    # one model per objective: no objective pair has 3 model pairs, and chapter 6 says so
    # (the part's consistency.nc has no objective rows, and the grouping went unmentioned)
    boxes = [p for p in chapters if p.stem[3:] == "consistency_by_category"]
    one_each = {"models": ["sup-con-0", "sel-con-0", "ima-con-0", "ran-con-0"]}
    (path,) = B.execute_chapters(run_dir, tmp_path / "one", boxes, one_each)
    assert "*objective*: no category pair has 3 or more model pairs" in _text(_assert_clean(path))


@pytest.mark.slow
def test_chapters_of_a_part_of_one_objective(tmp_path):
    """A part of 3 models of one objective and 4 datasets of 4 domains: what the part lacks is
    said of the part, not of the run, and each consistency value is counted once (the one
    objective pair holds every model pair: it is the all-pairs baseline itself)."""
    run_dir = write_fake_run(tmp_path / "fake", n_per_objective=3, features=False)
    S.save(pd.DataFrame(columns=S.COLUMNS), run_dir)
    write_manifest_for(run_dir)
    names = ("similarity_matrices", "consistency_heatmaps", "local_global", "anchors")
    chapters = [p for p in B.chapter_notebooks() if p.stem[3:] in names]
    assert len(chapters) == len(names)
    part = "3 of 12 models and 4 of 6 datasets"
    params = {
        "models": ["sup-con-0", "sup-tra-1", "sup-mlp-2"],
        "datasets": ["shapes", "flowers", "textures", "digits"],
    }
    text = {
        p.stem[3:]: _text(_assert_clean(p))
        for p in B.execute_chapters(run_dir, tmp_path / "out", chapters, params)
    }
    assert "Every model shown has the same objective" in text["similarity_matrices"]
    assert f"Not in this chapter's part of the run ({part})" in text["consistency_heatmaps"]
    assert (
        f"No two datasets of this chapter's part of the run ({part}) share a domain"
        in text["consistency_heatmaps"]
    )
    assert "NaN" not in text["consistency_heatmaps"]  # no domain table of undefined entries
    assert "over 6 values" in text["local_global"]  # 6 dataset pairs, not 12
    assert f"this chapter's part of the run ({part}) has 3" in text["anchors"]
    assert "and the run has 3" not in text["anchors"]
    # grouped by architecture, 4 Convolutional and 1 Transformer model: each anchor's kept
    # partners are of one category, so no test and no (empty) table of tests
    (anchors,) = [p for p in chapters if p.stem[3:] == "anchors"]
    arch = {
        "models": ["sup-con-0", "sel-con-0", "ima-con-0", "ran-con-0", "sup-tra-1"],
        "category": "architecture_class",
    }
    (path,) = B.execute_chapters(run_dir, tmp_path / "arch", [anchors], arch)
    said = _text(_assert_clean(path))
    assert "partners in two categories with enough partner models each" in said
    assert "Empty DataFrame" not in said


@pytest.mark.slow
def test_chapters_13_and_2_with_their_own_parameters_at_the_edges(tmp_path):
    """Chapter 13's dataset, per_category and max_stimuli, and chapter 2 on a part of a run
    with another measure: a dataset the chapter does not show, one model picked, and halves too
    small for CKA were a traceback or a sentence about the feature store; chapter 2 called the
    part 'this run' and its behaviour rows were linear CKA's without a word."""
    run_dir = write_fake_run(tmp_path / "fake", n_per_objective=2)
    (rob,) = [p for p in B.chapter_notebooks() if p.stem == "13_robustness"]
    (study,) = [p for p in B.chapter_notebooks() if p.stem == "02_study_numbers"]
    cases = {
        "part": ({"datasets": ["shapes", "objects"], "dataset": "digits"},
                 "dataset names digits, which this chapter's part of the run (2 of 6 datasets) "
                 "does not have"),
        "one": ({"category": "data_class", "per_category": 1},
                "per_category = 1 picks 1 model"),
        "few": ({"max_stimuli": 5},
                "Random halves of the 5 stimuli hold 2, fewer than the 4 that unbiased CKA "
                "needs, so the spread over halves is skipped."),
    }  # fmt: skip
    for name, (params, said) in cases.items():
        (path,) = B.execute_chapters(run_dir, tmp_path / name, [rob], params)
        text = _text(_assert_clean(path))
        assert said in text, name
        assert "lacks features" not in text and "this chapter is skipped" not in text
    params = {"models": ["sup-con-0", "sel-con-0", "ima-con-0"], "datasets": ["shapes", "digits"],
              "measure": "rsa_spearman"}  # fmt: skip
    (path,) = B.execute_chapters(run_dir, tmp_path / "study", [study], params)
    text = _text(_assert_clean(path))
    part = "3 of 8 models and 2 of 6 datasets"
    assert f"Run 'fake-tiny', this chapter's part of the run ({part}), against" in text
    assert "on this run" not in text and "The run shares" not in text
    assert "The chapter's measure parameter (rsa_spearman) changes none of them" in text


@pytest.mark.slow
def test_chapter_13_names_the_pairs_a_model_without_variance_leaves_undefined(tmp_path):
    """Chapter 13 on the all-pairs engine: a model whose features do not vary over the stimuli
    (or over a subset) gives NaN where the per-pair CKA raised, with a warning per subset on the
    chapter's stderr. The chapter now runs clean and its sentences count and name those pairs."""
    import numpy as np

    from repsim.runfolder import RunFolder
    from repsim.store import FeatureStore

    run_dir = write_fake_run(tmp_path / "fake", n_per_objective=2)
    store = FeatureStore(RunFolder(run_dir).features)
    stim = [f"s{i:03d}" for i in range(80)]
    sparse = np.zeros((80, 16))  # varies on two stimuli: undefined on a subset without both
    sparse[:2] = np.random.default_rng(0).normal(size=(2, 16))
    for model, f in (("sup-con-0", np.full((80, 16), 0.25)), ("ran-con-0", sparse)):
        writer = store.create("digits", model, stim, 16, chunk_rows=80, overwrite=True)
        writer.write_chunk(0, f.astype(np.float32))
    (rob,) = [p for p in B.chapter_notebooks() if p.stem == "13_robustness"]
    (path,) = B.execute_chapters(run_dir, tmp_path / "out", [rob], {"dataset": "digits"})
    text = _text(_assert_clean(path))
    undefined = "The similarity is **undefined for 13 of the 28 model pairs** (for CKA: a model"
    assert text.count(undefined) == 2, text  # the stability and the halves sentences
    assert "7 on all 80 stimuli (every pair of sup-con-0); 6 on some subsets only, at n = " in text
    assert "6 on one or more of the 20 halves only (" in text
    assert "over 15 pairs (spread over 20 random halves of 80 stimuli)" in text


def _small_run(tmp_path: Path, tiny_config: Path, models: list[str], extra: str = "") -> Path:
    """A run of the tiny config on a few models and two datasets (skips without the mini-zoo)."""
    if not tiny_run_available():
        pytest.skip("needs the real pipeline (the mini-zoo weights)")
    from repsim.pipeline import run

    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        f"include: [{tiny_config}]\n"
        f"select: {{models: [{', '.join(models)}], datasets: [faces, textures]}}\n{extra}"
    )
    return run(cfg, tmp_path / "run", device="cpu").run_dir


@pytest.mark.slow
def test_a_two_model_run_renders(tmp_path, tiny_config):
    """A run of two models (one model pair) finishes, and `repsim book` failed on it: the
    robustness chapter's train-split consistency and course lesson 4 called repsim.consistency,
    which needs two model pairs. Both now say why they stop."""
    # probes on: the train-split stimuli are extracted for them
    run_dir = _small_run(tmp_path, tiny_config, ["cnn-supervised-s0", "cnn-simclr-s0"])
    chapter = [p for p in B.chapter_notebooks() if p.stem == "13_robustness"]
    (path,) = B.execute_chapters(run_dir, tmp_path / "out", chapter)
    # one model pair: no correlation over pairs, so neither similarity nor consistency is compared
    assert "so the two are not compared" in _text(_assert_clean(path))
    lesson = [p for p in B.course_notebooks() if p.stem == "04_consistency"]
    (path,) = B.execute_course(REPO / "book", tmp_path / "course", run_dir, lesson)
    printed = "".join("".join(o.get("text", "")) for o in _assert_clean(path))
    assert "This run has fewer than 3 models" in printed


@pytest.mark.slow
def test_a_one_model_run_renders_lesson_7(tmp_path, tiny_config):
    """`repsim book` on a one-model run (which `repsim run` completes) failed after every chapter
    had executed: lesson 7's Mantel test permuted the models of a run with none to permute."""
    run_dir = _small_run(tmp_path, tiny_config, ["cnn-supervised-s0"], "probe: {enabled: false}\n")
    lesson = [p for p in B.course_notebooks() if p.stem == "07_confounds_statistics"]
    (path,) = B.execute_course(REPO / "book", tmp_path / "course", run_dir, lesson)
    printed = "".join("".join(o.get("text", "")) for o in _assert_clean(path))
    assert "a Mantel test over model pairs needs at least 3 models" in printed


def test_a_bad_chapter_parameter_fails_the_chapter_by_name(tmp_path):
    """Chapter 12 words the anchor design's errors as a sentence about the run (too few
    partners); a min_partners below 2 is the reader's error: it fails the chapter by name (it
    was taken as 2 without a word)."""
    from repsim.errors import BookError

    run_dir = write_fake_run(tmp_path / "fake")
    (path,) = [p for p in B.chapter_notebooks() if p.stem == "12_anchors"]
    with pytest.raises(
        BookError,
        match=re.escape(
            "12_anchors.ipynb failed (InputError: min_partners must be an integer >= 2; got 1.)"
        ),
    ):
        B.execute_notebook(
            path, tmp_path / "out.ipynb", {"run_dir": str(run_dir), "min_partners": 1}
        )


def test_the_book_is_not_built_while_a_run_writes_the_folder(tiny_run, tmp_path):
    """The notebooks read the run folder for minutes; a rerun replacing its results meanwhile
    could leave chapters from two runs. The book holds the folder's lock, so either waits."""
    from repsim.runfolder import RunFolder, RunLockedError

    book = tmp_path / "book"
    book.mkdir()
    with RunFolder(tiny_run).lock():  # a run in the folder
        with pytest.raises(RunLockedError, match="in use by another run .*then build the book"):
            B.build_book(run_dir=tiny_run, book_dir=book)
    assert not (book / "generated").exists()


def _chrome():
    webdriver = pytest.importorskip("selenium.webdriver")
    chrome = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("headless chromium and chromedriver are not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1800",
    ):
        opts.add_argument(flag)
    return opts, Service(driver)


def _wait_until_loaded(browser, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(
        lambda b: b.execute_script(
            "return document.readyState === 'complete' && document.body !== null "
            "&& !document.querySelector('meta[http-equiv=\"Refresh\" i]');"
        )
    )


@pytest.mark.slow
@pytest.mark.browser
def test_built_pages_in_headless_chromium(built_book: Path, tmp_path):
    opts, service = _chrome()
    from selenium import webdriver

    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=opts, service=service)
    try:
        browser.set_page_load_timeout(60)
        html = built_book.parent
        for name, page in (("index", built_book), ("results", html / RESULTS_PAGE)):
            browser.get(page.as_uri())
            _wait_until_loaded(browser)  # index.html of jupyter-book redirects to the first page
            browser.execute_script(
                "window.scrollTo(0, document.body.scrollHeight); window.scrollTo(0, 0);"
            )
            images = browser.execute_script(
                "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]);"
            )
            broken = [src for src, done, width in images if not (done and width > 0)]
            assert not broken, f"{name}: images that did not load: {broken}"
            errors = browser.execute_script(
                "return document.querySelectorAll('.output.error, .output.stderr, .stderr, .traceback').length;"
            )
            assert errors == 0, f"{name}: {errors} error/stderr output blocks"
            assert "Traceback" not in browser.find_element("tag name", "body").text
            if name == "results":
                assert len(images) >= 2, "the results page shows no figures"
            # a fresh profile is a reader's first visit: the page's scripts log no error
            severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert not severe, f"{name}: errors in the browser console: {severe}"
            browser.save_screenshot(str(html / f"screenshot_{name}.png"))
            assert (html / f"screenshot_{name}.png").stat().st_size > 10_000
    finally:
        browser.quit()


# ---------------------------------------------------------------- the book online and offline


def test_pages_workflow_runs_the_readme_command_and_deploys():
    import yaml

    wf = yaml.safe_load((REPO / ".github" / "workflows" / "book.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and "workflow_dispatch" in triggers
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    uses = [s.get("uses", "").split("@")[0] for s in build["steps"]]
    assert "actions/checkout" in uses and "actions/setup-python" in uses
    runs = [s["run"].strip() for s in build["steps"] if "run" in s]
    readme = (REPO / "README.md").read_text()
    main_command = re.search(r"^(make \w+)\s+# .*build the book", readme, re.M).group(1)
    assert main_command in runs  # the README's main command, as it is written there
    upload = next(
        s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact")
    )
    assert upload["with"]["path"] == "book/_build/html"
    assert deploy["needs"] == "build"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in deploy["steps"])
    assert deploy["environment"]["name"] == "github-pages"
    # the launch buttons open the executed notebooks on the branch the workflow pushes them to
    branch = yaml.safe_load((REPO / "book" / "_config.yml").read_text())["repository"]["branch"]
    assert any(f"HEAD:refs/heads/{branch}" in r and "book/generated" in r for r in runs)


def _book_copy(tmp_path: Path, url: str) -> Path:
    book = tmp_path / "book"
    book.mkdir(parents=True)
    text = (REPO / "book" / "_config.yml").read_text()
    assert re.search(r'^  url: ""$', text, re.M), (
        "repository.url must be empty in the committed config"
    )
    (book / "_config.yml").write_text(text.replace('  url: ""', f'  url: "{url}"'))
    return book


def test_launch_buttons_are_switched_by_the_repository_url(tmp_path):
    off = B.book_config(_book_copy(tmp_path / "off", ""))
    assert "repository" not in off  # else jupyter-book links its own repository
    assert not any(
        off["launch_buttons"].get(k)
        for k in ("binderhub_url", "colab_url", "jupyterhub_url", "thebe")
    )
    assert off["html"]["use_repository_button"] is False
    on = B.book_config(_book_copy(tmp_path / "on", "https://github.com/someone/repsim"))
    assert on["repository"]["url"] == "https://github.com/someone/repsim"
    assert on["launch_buttons"]["binderhub_url"] and on["launch_buttons"]["colab_url"]
    assert on["launch_buttons"]["thebe"] is False and on["html"]["use_repository_button"] is True
    assert (
        on["repository"]["path_to_book"] == "book"
    )  # Binder and Colab open book/generated/<chapter>.ipynb


def test_math_is_mathml_at_build_time():
    from repsim.bookmath import to_mathml

    out = to_mathml(r"\tfrac{1}{n}\mathbf{1}^\top")
    assert out.startswith("<math") and "<mfrac" in out and "<msup>" in out
    assert 'display="block"' in to_mathml(r"\begin{align} a &= b \\ c &= d \end{align}", block=True)
    assert "<mo" in to_mathml(r"\mathrm{corr}\Big( x \Big)")  # \Big dropped, the parenthesis kept
    with pytest.raises(ValueError, match="cannot render"):
        to_mathml(r"\notacommand x")


CDN = re.compile(
    r"(cdn\.jsdelivr|unpkg\.com|cdnjs|mathjax|thebe|googleapis|binder|colab\.research)", re.I
)


@pytest.mark.slow
def test_built_pages_need_no_cdn_and_show_math(built_book: Path):
    html = built_book.parent
    pages = list(html.rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        text = page.read_text()
        tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", text, re.I)
        remote = [t for t in tags if re.search(r"(src|href)=[\"'](https?:)?//", t)]
        assert not remote, f"{page.name} loads from the network: {remote[:3]}"
        assert not CDN.search(" ".join(re.findall(r"<script\b.*?</script>", text, re.I | re.S))), (
            page.name
        )
        assert "launch-buttons" not in text and "mybinder" not in text, (
            f"{page.name}: launch buttons without a URL"
        )
    methods = (html / "methods.html").read_text()
    assert methods.count("<math") >= 10 and "MathJax" not in methods


@pytest.mark.slow
def test_downloadable_notebook_is_the_executed_chapter(built_book: Path):
    html = built_book.parent
    page = (html / RESULTS_PAGE).read_text()
    ipynb = html / "_sources" / Path(RESULTS_PAGE).with_suffix(".ipynb")
    assert ipynb.name in page  # the page offers it for download
    nb = nbformat.read(ipynb, as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_printed_output_wraps_at_the_column_edge():
    """Long printed lines of the course lessons ran off the page behind a scroll bar (lesson 7's
    conclusions were cut mid-sentence); the book's stylesheet wraps stream output."""
    css = (REPO / "book" / "_static" / "repsim.css").read_text()
    rule = css[css.index(".cell_output .output.stream pre") :]
    assert "white-space: pre-wrap" in rule[: rule.index("}")]


# ------------------------------------------------------------------ the build's steps, without a book
def test_chapters_are_the_numbered_notebooks(tmp_path):
    """A notebook kept beside the chapters without a number (a scratch copy) is not a chapter."""
    for name in ("01_b.ipynb", "00_a.ipynb", "scratch.ipynb", "02_c.md"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in B.chapter_notebooks(tmp_path)] == ["00_a.ipynb", "01_b.ipynb"]


def test_the_book_config_keeps_its_extensions_without_thebe(tmp_path):
    """The book's own extension (MathML at build time) stays in the list jupyter-book is given;
    sphinx-thebe, whose script names a CDN, is left out."""
    import yaml

    extensions = B.book_config(_book_copy(tmp_path, ""))["sphinx"]["config"]["extensions"]
    extra = yaml.safe_load((REPO / "book" / "_config.yml").read_text())["sphinx"]
    assert extra["extra_extensions"] and set(extra["extra_extensions"]) <= set(extensions)
    assert "sphinx_thebe" not in extensions and "myst_nb" in extensions


@pytest.mark.parametrize("strict", [True, False])
def test_the_html_build_treats_warnings_as_errors_and_names_a_failure(
    tmp_path, monkeypatch, strict
):
    """The build runs with -W -n --keep-going (a broken reference fails it, every one listed);
    a failed build is a BookError with the tail of jupyter-book's output."""
    import subprocess

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="building...\n", stderr="WARNING: x\n")

    monkeypatch.setattr(B.subprocess, "run", fake_run)
    monkeypatch.setattr(B, "_jupyter_book_cmd", lambda: ["jupyter-book"])
    with pytest.raises(B.BookError, match=r"(?s)jupyter-book build failed \(exit 1\):.*WARNING: x"):
        B.build_html(_book_copy(tmp_path, ""), warnings_as_errors=strict)
    (cmd,) = calls
    assert cmd[:2] == ["jupyter-book", "build"] and cmd[cmd.index("--builder") + 1] == "html"
    assert (cmd[-3:] == ["-W", "-n", "--keep-going"]) == strict


def _notebook(path: Path, *sources: str, parameters: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import time\ntime.sleep(60)", r"a cell ran longer than 2 s; .*repsim book --timeout"),
        ("import os\nos._exit(1)", r"its kernel died \(out of memory, or killed\)"),
    ],
    ids=["timeout", "dead-kernel"],
)
def test_a_notebook_stopped_by_a_timeout_or_a_dead_kernel_is_named(tmp_path, source, what):
    """nbclient's own errors passed through papermill: a timeout (an OSError, which `repsim
    book` reported as a file of the book it could not write) and a kernel that died (a
    traceback, "a bug: please report it")."""
    src = _notebook(tmp_path / "01_x.ipynb", source)
    dest = tmp_path / "out" / "01_x.ipynb"
    with pytest.raises(B.BookError, match=f"notebook 01_x.ipynb stopped: {what}") as err:
        B.execute_notebook(src, dest, {"x": 2}, timeout=2)
    assert str(dest) in str(err.value) and dest.is_file()


def test_an_executed_notebook_shows_no_injected_parameters_and_no_machine_path(tmp_path):
    """papermill's injected cell holds this machine's paths: it is tagged to be left off the
    page, and the notebook's record of its input and output keeps their names only."""
    src = _notebook(tmp_path / "in" / "01_x.ipynb", "print(x)")
    dest = tmp_path / "out" / "01_x.ipynb"
    B.execute_notebook(src, dest, {"x": str(tmp_path)})
    nb = nbformat.read(str(dest), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
    meta = nb.metadata["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("01_x.ipynb", "01_x.ipynb")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (
            "../runs/narrow",
            'run_dir = "../runs/narrow"  # the run shown on this page, relative to the notebook',
        ),
        ("runs/embedded", 'run_dir = "runs/embedded"  # run folder to render'),  # the default
    ],
)
def test_the_shown_parameters_name_the_run_the_page_was_rendered_from(tmp_path, given, shown):
    """The parameters cell on the page showed its default run_dir whatever run a page was
    rendered from (papermill's cell with the real one is left off the page)."""
    parameters = 'run_dir = "runs/embedded"  # run folder to render\nmeasure = "cka_linear"'
    src = _notebook(tmp_path / "in" / "01_x.ipynb", "print(run_dir)", parameters=parameters)
    dest = tmp_path / "out" / "01_x.ipynb"
    B.execute_notebook(src, dest, {"run_dir": given})
    nb = nbformat.read(str(dest), as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("tags") == ["parameters"]]
    assert cell.source == f'{shown}\nmeasure = "cka_linear"'
    assert nb.cells[-1].outputs[0]["text"] == f"{given}\n"


def test_chapters_and_lessons_get_the_run_folder_relative_to_themselves(
    tiny_run, tmp_path, monkeypatch
):
    """The executed notebooks are published: the run folder they are given is relative to where
    they are written and run, beside the chapter's own parameters, so a copy reruns where it
    sits (relative to the sources, book/generated/'s copies pointed into book/); a lesson
    without a ``run_dir`` parameter gets none."""
    import os

    calls = {}

    def fake(src, dest, parameters=None, cwd=None, timeout=600):
        assert Path(cwd) == Path(dest).parent  # the kernel runs where the copy is written
        calls[Path(src).name] = (parameters, timeout)
        return dest

    monkeypatch.setattr(B, "execute_notebook", fake)
    chapter = _notebook(tmp_path / "chapters" / "01_x.ipynb", parameters="run_dir = None")
    out = tmp_path / "book" / "generated"
    B.execute_chapters(tiny_run, out, [chapter], {"min_partners": 3}, timeout=7)
    rel = os.path.relpath(tiny_run.resolve(), out.resolve())
    assert (out / rel).resolve() == tiny_run.resolve() and rel != os.path.relpath(
        tiny_run.resolve(), chapter.parent.resolve()
    )
    assert calls.pop("01_x.ipynb") == ({"run_dir": rel, "min_partners": 3}, 7)
    # the run is the one checked, not one a parameter names
    with pytest.raises(B.BookError, match="parameters cannot set run_dir"):
        B.execute_chapters(tiny_run, tmp_path / "out", [chapter], {"run_dir": str(tmp_path)})
    assert not calls
    lessons = [
        _notebook(tmp_path / "course" / "01_run.ipynb", parameters="run_dir = None"),
        _notebook(tmp_path / "course" / "02_toy.ipynb", "print(run_dir)", parameters="n = 3"),
    ]
    B.execute_course(tmp_path, out / "course", tiny_run, lessons=lessons, timeout=9)
    rel = os.path.relpath(tiny_run.resolve(), (out / "course").resolve())
    assert calls == {"01_run.ipynb": ({"run_dir": rel}, 9), "02_toy.ipynb": (None, 9)}


def test_a_build_replaces_the_last_builds_notebooks_and_records_its_times(
    tiny_run, tmp_path, monkeypatch
):
    """The notebooks of the last build go before the chapters run (a chapter renamed since would
    otherwise stay in the book), the lessons get the run too, and the time per stage is added
    to the run's run.json, whose manifest entry follows (the results still verify)."""
    from repsim.runfolder import RunFolder

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    book = tmp_path / "book"
    shutil.copytree(REPO / "book", book, ignore=shutil.ignore_patterns("_build", "generated"))
    stale = book / "generated" / "99_renamed.ipynb"
    stale.parent.mkdir()
    stale.write_text("{}")
    seen = []
    monkeypatch.setattr(B, "_execute_checked", lambda run, out, *a, **kw: seen.append(run))
    monkeypatch.setattr(B, "execute_course", lambda book, out, run, **kw: seen.append(run))
    monkeypatch.setattr(B, "build_html", lambda book: book / "_build" / "html" / "index.html")
    with pytest.raises(B.BookError, match="parameters cannot set run_dir"):
        B.build_book(run_dir=run_dir, book_dir=book, parameters={"run_dir": "elsewhere"})
    assert stale.exists() and not seen  # refused before the last build was touched
    B.build_book(run_dir=run_dir, book_dir=book)
    assert not stale.exists() and seen == [run_dir.resolve(), run_dir]
    assert (book / "generated" / "course" / "student" / B.STUDENT_ZIP).is_file()
    folder = RunFolder(run_dir)
    timings = folder.read_info()["book_timings_s"]
    assert set(timings) == {"chapters", "course", "html", "book"}
    folder.open_results(verify=True)
    # without execution: the notebooks of the last build, which must exist
    B.build_book(book_dir=book, execute=False)
    shutil.rmtree(book / "generated")
    with pytest.raises(B.BookError, match="generated does not exist: build once with execution"):
        B.build_book(book_dir=book, execute=False)


def test_a_build_without_execution_refuses_notebooks_of_a_run_rerun_since(
    tiny_run, tmp_path, monkeypatch, caplog
):
    """`repsim book --no-execute` after a rerun published the chapters of the old results (a
    page showed a mean probe accuracy of 0.815 where probes.nc now said 0.824), exit 0: the
    build records the run's results with the notebooks and a build without execution checks
    them. The book's own timings in run.json do not count as a change."""
    import json
    import logging

    from repsim.runfolder import RunFolder

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    book = tmp_path / "book"
    shutil.copytree(REPO / "book", book, ignore=shutil.ignore_patterns("_build", "generated"))
    monkeypatch.setattr(B, "_execute_checked", lambda *a, **kw: [])
    monkeypatch.setattr(B, "execute_course", lambda *a, **kw: [])
    built = []
    monkeypatch.setattr(B, "build_html", lambda book: built.append(book) or book / "index.html")
    B.build_book(run_dir=run_dir, book_dir=book)
    record = json.loads((book / "generated" / B.EXECUTED_ON).read_text())
    assert record["results"] == RunFolder(run_dir).results_digest() is not None
    assert not Path(record["run_dir"]).is_absolute()  # a book moved with its run finds it
    B.build_book(book_dir=book, execute=False)  # run.json got the book's timings: no change
    assert len(built) == 2
    moved = tmp_path / "elsewhere" / "book"  # a book moved alone finds its run by its path
    shutil.copytree(book, moved)
    B.build_book(book_dir=moved, execute=False)
    assert len(built) == 3

    folder = RunFolder(run_dir)
    manifest = folder.read_manifest()
    rerun = {**manifest, "files": {**manifest["files"], "probes.nc": {"sha256": "0" * 64}}}
    folder.write_manifest(rerun)
    for where in (book, moved):
        with pytest.raises(B.BookError, match=r"whose results differ from theirs now \(a rerun"):
            B.build_book(book_dir=where, execute=False)
    folder.remove(folder.manifest_path)
    with pytest.raises(B.BookError, match="whose results have been removed now"):
        B.build_book(book_dir=book, execute=False)
    assert len(built) == 3  # refused before the HTML was built

    shutil.rmtree(run_dir)  # the run is gone: nothing to check against, said, and built
    with caplog.at_level(logging.WARNING, logger="repsim.book"):
        B.build_book(book_dir=book, execute=False)
    assert "is gone: the book shows its numbers as they were" in caplog.text
    assert len(built) == 4
    # a build that failed (or an older repsim's) leaves no record: refused, not published
    (book / "generated" / B.EXECUTED_ON).unlink()
    with pytest.raises(B.BookError, match="holds no record of the run its notebooks were"):
        B.build_book(book_dir=book, execute=False)
    assert len(built) == 4


def test_the_book_s_time_per_stage_line():
    timings = {"chapters": 52.94, "course": 9.26, "html": 4.5, "book": 67.12}
    assert B.format_book_timings(timings) == (
        "Time per stage: book 67.1 s (chapters 52.9 s, course 9.3 s, html 4.5 s)"
    )


def test_a_damaged_run_is_refused_before_the_last_build_is_replaced(tiny_run, tmp_path):
    """A result file changed since its run wrote it: the book is not built from it, and the
    notebooks of the last build stay."""
    from repsim.runfolder import RunFolderError

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    with (run_dir / "similarity.nc").open("ab") as f:
        f.write(b"\0")
    book = tmp_path / "book"
    (book / "generated").mkdir(parents=True)
    (book / "_config.yml").write_text("title: x\n")
    kept = book / "generated" / "00_overview.ipynb"
    kept.write_text("{}")
    with pytest.raises(RunFolderError, match="similarity.nc was changed after the run wrote it"):
        B.build_book(run_dir=run_dir, book_dir=book)
    assert kept.is_file()
