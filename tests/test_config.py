import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from repsim.config import load_config, resolve_path
from repsim.errors import ConfigError, ModelError


def test_include_merges_lists_and_resolves_paths(tmp_path: Path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "models.yaml").write_text("models:\n  - {id: a, weights: w.bin}\n")
    (tmp_path / "main.yaml").write_text(
        "include: [sub/models.yaml]\nmodels:\n  - {id: b}\nmeasures: [cka_linear]\n"
    )
    cfg = load_config(tmp_path / "main.yaml")
    assert [m["id"] for m in cfg["models"]] == ["a", "b"]
    assert resolve_path("w.bin", cfg["models"][0]) == sub / "w.bin"
    assert cfg["name"] == "main"


def test_one_include_needs_no_list_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("models:\n  - {id: a}\n")
    (tmp_path / "main.yaml").write_text("include: base.yaml\nmodels:\n  - {id: b}\n")
    assert [m["id"] for m in load_config(tmp_path / "main.yaml")["models"]] == ["a", "b"]
    (tmp_path / "main.yaml").write_text("include: [3]\n")
    with pytest.raises(ConfigError, match="include must be a file name or a list of file names"):
        load_config(tmp_path / "main.yaml")


def test_a_config_named_by_a_relative_path_resolves_paths_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "main.yaml").write_text("models:\n  - {id: a, weights: w.bin}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("main.yaml")
    assert cfg["_path"] == str(tmp_path.resolve() / "main.yaml")
    monkeypatch.chdir(tmp_path.parent)  # the run may start from anywhere
    assert resolve_path("w.bin", cfg["models"][0]) == tmp_path.resolve() / "w.bin"


def test_missing_and_cyclic_configs(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_a_missing_include_names_the_file_that_includes_it(tmp_path: Path):
    (tmp_path / "main.yaml").write_text("include: [sub/models.yaml]\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "main.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'main.yaml'}: include 'sub/models.yaml': ")
    assert f"{tmp_path / 'sub' / 'models.yaml'} does not exist" in str(err.value)


def test_every_problem_of_a_config_file_is_named_in_one_error(tmp_path: Path):
    """A file's own checks (its keys, name, includes, lists) stopped at the first problem: a file
    with a typo'd key, a missing include and a `datasets:` mapping took three runs to fix."""
    main = tmp_path / "main.yaml"
    main.write_text(
        "include: [gone.yaml, also_gone.yaml]\nname: true\nmodls: []\ndatasets: {faces: {}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(main)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{main} has 5 problems; fix each:"
    assert [line.split(": ")[1] for line in lines[1:]] == [
        "unknown key 'modls' (did you mean 'models'?); allowed keys are "
        + lines[1].split("allowed keys are ")[1],
        "name must be a text (the run's name), got True (bool); quote it",
        "include 'gone.yaml'",
        "include 'also_gone.yaml'",
        "'datasets' must be a list",
    ]


def test_a_folder_given_as_config_is_named_a_folder(tmp_path: Path):
    (tmp_path / "run.yaml").write_text("name: r\n")
    with pytest.raises(
        ConfigError,
        match=r"is a folder, not a YAML config file \(it holds run.yaml\); pass the path",
    ):
        load_config(tmp_path)


def test_a_config_that_is_a_symbolic_link_loop_is_named(tmp_path: Path):
    """Path.resolve raised RuntimeError ("Symlink loop from ...") on a config that is a link
    loop, and stat an OSError on an included one: tracebacks from every command that reads one."""
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    loop = re.escape("is a symbolic-link loop (links that point at each other)")
    with pytest.raises(ConfigError, match=rf"config file .*a\.yaml {loop}; pass the path"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "main.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(ConfigError, match=rf"include 'a.yaml': .*a\.yaml {loop}; fix the name"):
        load_config(tmp_path / "main.yaml")


# ----------------------------------------------------------------------------- typed config, checked
import inspect  # noqa: E402

from repsim.config import ProbeOptions, SimilarityOptions  # noqa: E402
from repsim.plan import load_plan  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "data" / "configs" / "tiny.yaml"


def _cfg(tmp_path: Path, text: str, include: Path = TINY) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"include: [{include}]\n{text}")
    return path


def _plan(tmp_path: Path, text: str, **kw):
    return load_plan(_cfg(tmp_path, text), check_models=kw.pop("check_models", False), **kw)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("stimulu: {max_images: 10}\n", "unknown key 'stimulu' \\(did you mean 'stimuli'\\?\\)"),
        ("probes: {enabled: false}\n", "unknown key 'probes' \\(did you mean 'probe'\\?\\)"),
        ("measure: [cka_linear]\n", "unknown key 'measure' \\(did you mean 'measures'\\?\\)"),
        ("probe: {seed: [0]}\n", "probe: unknown key 'seed' \\(did you mean 'seeds'\\?\\)"),
        (
            "extract: {batchsize: 8}\n",
            "extract: unknown key 'batchsize' \\(did you mean 'batch_size'\\?\\)",
        ),
        ("similarity: {memory_budget: 2}\n", "did you mean 'memory_budget_gb'"),
        ("select: {model: [a]}\n", "select: unknown key 'model' \\(did you mean 'models'\\?\\)"),
        (
            "probe: {enabled: 'no'}\n",
            "probe.enabled must be true or false, got 'no' \\(a string\\)",
        ),
        ("threads: two\n", "threads must be a positive integer, got 'two'"),
        ("threads: 0\n", "threads must be a positive integer"),
        ("threads: 100000\n", "threads is 100000, above the largest allowed, 1024: .*Fix: set it"),
        ("stimuli: {max_images: -5}\n", "stimuli.max_images must be a positive integer"),
        ("stimuli: {split: val}\n", "stimuli.split must be one of train, test .*got 'val'"),
        (
            "stimuli: {max_images: true}\n",
            "stimuli.max_images must be a positive integer, got True \\(bool\\)",
        ),
        ("probe: {val_fraction: 1.5}\n", "probe.val_fraction must be a number in \\(0, 1\\)"),
        (
            "probe: {val_fraction: 1.0}\n",
            "probe.val_fraction must be a number in \\(0, 1\\), got 1.0",
        ),
        ("probe: {lrs: [0]}\n", "probe.lrs\\[0\\] must be a number > 0, got 0 \\(int\\)"),
        ("probe: {wds: [true]}\n", "probe.wds\\[0\\] must be a number >= 0, got True \\(bool\\)"),
        ("probe: {wds: [-0.1]}\n", "probe.wds\\[0\\] must be a number >= 0, got -0.1 \\(float\\)"),
        (
            "probe: {lrs: [fast]}\n",
            "probe.lrs\\[0\\] must be a number > 0, got 'fast' \\(a string\\)",
        ),
        (
            "similarity: {memory_budget_gb: .inf}\n",
            "similarity.memory_budget_gb must be a number > 0, got inf",
        ),
        ("probe: {seeds: 3}\n", "probe.seeds must be a list, got 3 \\(int\\)"),
        ("cluster: slurm\n", "cluster must be a mapping of dask-jobqueue options, got 'slurm'"),
        (
            "similarity: fast\n",
            "similarity must be a mapping of options, got 'fast' \\(a string\\)",
        ),
        ("probe: {lrs: []}\n", "probe.lrs is an empty list"),
        ("probe: {seeds: [0, 0]}\n", "probe.seeds lists \\['0'\\] more than once"),
        ("extract: {pretrained: 1}\n", "extract.pretrained must be true or false"),
        (
            "extract: {batch_size: 100000000}\n",
            "c.yaml: extract.batch_size is 100000000, above the largest allowed, 4096: .*Fix: set "
            "it to 256 \\(the default\\)",
        ),
        ("extract: {batch_size: 0}\n", "extract.batch_size must be a positive integer"),
        ("extract: {precision: fp8}\n", "c.yaml: extract.precision 'fp8' is not one of"),
        ("measures: cka_linear\n", "measures must be a list"),
        (
            "measures: [cka_linear, cka_linear]\n",
            "measures lists \\['cka_linear'\\] more than once",
        ),
        ("measures: [cka_liner]\n", "unknown measure 'cka_liner'.*did you mean 'cka_linear'"),
        ("probe: {precision: float16}\n", "probe.precision must be one of float32, bfloat16"),
        (
            "probe: {normalize: false}\n",
            "probe.normalize: false cannot be honoured: .* stored features, which extraction "
            "L2-normalises",
        ),
        (
            "extract: {max_decoded: 20000}\n",
            "extract.max_decoded was retired: every dataset is now decoded once.*delete the key",
        ),
        (
            "measures: [procrustes_angualr]\n",
            "unknown measure 'procrustes_angualr'.*did you mean 'procrustes_angular'",
        ),
        ("select: {models: []}\n", "select.models is an empty list"),
        (
            "select: {datasets: [face, texture]}\n",
            "2 unknown ids: 'face' \\(did you mean 'faces'\\?\\), 'texture' \\(did you mean 'textures'\\?\\)",
        ),
    ],
)
def test_bad_configs_fail_at_parse_time_with_the_fix(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _plan(tmp_path, text)


def test_the_largest_batch_size_is_accepted(tmp_path: Path) -> None:
    from repsim.config import MAX_BATCH_SIZE

    plan = _plan(tmp_path, f"extract: {{batch_size: {MAX_BATCH_SIZE}}}\n")
    assert plan.config.extract.batch_size == plan.extract["batch_size"] == MAX_BATCH_SIZE


def test_a_weight_decay_of_0_is_accepted_as_linear_probe_takes_it(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "probe: {wds: [0, 1e-4]}\n")
    assert plan.config.probe.wds == tuple(plan.probe["wds"]) == (0.0, 1e-4)


def test_the_most_threads_are_accepted(tmp_path: Path) -> None:
    from repsim.config import MAX_THREADS

    assert _plan(tmp_path, f"threads: {MAX_THREADS}\n").config.threads == MAX_THREADS


def test_two_spellings_of_one_measure_are_refused(tmp_path: Path) -> None:
    # both would be computed, under two labels, and analyses would count the measure twice
    for names, match in (
        (
            "cka_linear, cka_rbf_0.4, cka_rbf_0.40",
            "'cka_rbf_0.4' and 'cka_rbf_0.40' are two spellings",
        ),
        ("mutual_knn_10, mutual_knn_010", "'mutual_knn_10' and 'mutual_knn_010' are two spellings"),
    ):
        with pytest.raises(ConfigError, match=f"c.yaml: measures: {match} of one measure"):
            _plan(tmp_path, f"measures: [{names}]\n")
    distinct = ("cka_rbf_0.4", "cka_rbf_0.4_biased", "cka_rbf_median_0.4", "cka_rbf_0.04")
    assert _plan(tmp_path, f"measures: [{', '.join(distinct)}]\n").measures == distinct


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"modles": []}, "^config: unknown key 'modles' \\(did you mean 'models'\\?\\)"),
        ({"datasets": {"faces": {}}}, "^config: 'datasets' must be a list of entries, got dict"),
        ({"name": ""}, "^config: name must be a non-empty string, got ''"),
        ({"include": ["base.yaml"]}, "^config: include: is merged only when a config file is read"),
    ],
)
def test_a_config_given_as_a_mapping_is_checked_like_a_file(raw: dict, match: str) -> None:
    """repsim.zoo.check and repsim.stimuli.check take a config as a mapping, which load_config
    never read (so its include: was skipped, and the check saw no datasets)."""
    from repsim.config import parse_config

    with pytest.raises(ConfigError, match=match):
        parse_config(raw)


def test_unknown_key_names_the_file_it_is_in(tmp_path: Path) -> None:
    (tmp_path / "inc.yaml").write_text("measures: [cka_linear]\nprobe_options: {}\n")
    main = tmp_path / "main.yaml"
    main.write_text("include: [inc.yaml]\n")
    with pytest.raises(ConfigError, match=r"inc\.yaml: unknown key 'probe_options'"):
        load_config(main)


def test_include_overrides_settings_and_concatenates_entries(tmp_path: Path) -> None:
    plan = load_plan(TINY, check_models=False)
    assert plan.measures == (
        "cka_linear",
        "cka_rbf_0.2",
        "cka_rbf_0.4",
        "cka_rbf_0.8",
        "rsa_spearman",
        "mutual_knn_10",
    )  # not the 12 of a concatenation with embedded.yaml
    narrow = _plan(tmp_path, "measures: [cka_linear]\nprobe: {seeds: [3]}\n")
    assert narrow.measures == ("cka_linear",)
    # mappings merge key by key: only seeds changes, tiny's epochs and embedded's batch_size stay
    assert (
        narrow.probe["seeds"] == [3]
        and narrow.probe["epochs"] == 4
        and narrow.probe["batch_size"] == 128
    )
    assert narrow.config.probe.seeds == (3,) and narrow.config.probe.enabled is True
    assert len(load_plan(TINY, check_models=False).raw["models"]) == 45  # models are concatenated


@pytest.mark.parametrize("empty", ["probe:\n", "probe: null\n", "probe:\n  # epochs: 8\n"])
def test_an_empty_section_over_an_included_one_is_an_error(tmp_path: Path, empty: str) -> None:
    """``probe:`` with nothing under it reset tiny's probe options (epochs 4, two seeds, ...) to
    the defaults without a word; ``probe: {}`` keeps them."""
    with pytest.raises(
        ConfigError,
        match=r"c\.yaml: 'probe:' is empty, which would drop the probe "
        r"options of the included config \(enabled, seeds, epochs",
    ):
        load_config(_cfg(tmp_path, empty))
    kept = _plan(tmp_path, "probe: {}\n")
    assert kept.probe["epochs"] == 4 and kept.config.probe.seeds == (0, 1)
    (tmp_path / "alone.yaml").write_text("name: alone\nprobe:\n")  # nothing included: defaults
    assert load_config(tmp_path / "alone.yaml")["probe"] is None


def test_notes_are_ignored_at_every_level(tmp_path: Path) -> None:
    """Keys starting with '_' are notes (check_keys lets them through); in a section they raised
    KeyError with a traceback, in entries and at the top level they were already ignored."""
    sections = {
        "stimuli": "max_images: 60",
        "probe": "seeds: [3]",
        "extract": "batch_size: 128",
        "similarity": "memory_budget_gb: 1",
        "select": "models: [cnn-supervised-s0, cnn-clip-s0, cnn-random-s0]",
    }
    plain = "".join(f"{k}: {{{v}}}\n" for k, v in sections.items())
    noted = "_defaults: &d {seed: 42}\n" + "".join(
        f"{k}: {{{v}, _why: 'a note'}}\n" for k, v in sections.items()
    )
    want = _plan(tmp_path, plain)
    got = _plan(tmp_path, noted)
    assert got.config == want.config
    assert (got.probe, got.extract, got.similarity, got.stimuli) == (
        want.probe,
        want.extract,
        want.similarity,
        want.stimuli,
    )


def test_plan_keeps_its_dict_options_and_adds_typed_sections() -> None:
    plan = load_plan(TINY, check_models=False)
    # split: test is inherited from embedded.yaml
    assert plan.stimuli == {"max_images": 60, "seed": 42, "split": "test"}
    assert plan.extract["batch_size"] == 256 and plan.threads == 1 and plan.probes_enabled
    assert plan.config.stimuli.max_images == 60 and plan.config.extract.batch_size == 256
    with pytest.raises(AttributeError):
        plan.config.probe.enabled = False  # frozen


def test_section_fields_match_the_functions_they_configure() -> None:
    from repsim.measures import similarity_matrices
    from repsim.probe import linear_probe

    def keywords(func):
        params = inspect.signature(func).parameters
        return {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "device"}

    assert {f for f in ProbeOptions.__dataclass_fields__ if f != "enabled"} == keywords(
        linear_probe
    )
    assert set(SimilarityOptions.__dataclass_fields__) == keywords(similarity_matrices)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("{id: ../evil, loader: minizoo, identifier: cnn}", "model id '../evil' cannot be used"),
        ("{id: a/b, loader: minizoo, identifier: cnn}", "model id 'a/b' cannot be used"),
        ("{id: .hidden, loader: minizoo, identifier: cnn}", "cannot be used"),
        ("{id: ok, loader: minizoo, identifier: cnn, weigths: x}", "did you mean 'weights'"),
        (  # the model lost its objective in every grouping, without a word
            "{id: ok, loader: minizoo, identifier: cnn, metadata: {objectve: Supervised}}",
            "model entry 'ok': metadata: unknown key 'objectve' \\(did you mean 'objective'\\?\\)"
            ".*free text goes under notes:",
        ),
        ("{id: ok, loader: minizo, identifier: cnn}", "did you mean 'minizoo'"),
        (
            "{id: ok, loader: minizoo, identifier: cnn, metadata: {seed: one}}",
            "metadata.seed must be a whole number of at least 0",
        ),
        ("{id: ok, loader: minizoo, identifier: cnn, layer: 3}", "'layer' must be a string"),
        # preprocess values were taken as given: std 0 gave NaN features read as missing chunks,
        # two means a traceback in extraction, crop 100000 a request for 30 TB
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {std: [0, 0, 0]}}",
            "std must be positive",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {mean: [0.5, 0.5]}}",
            "mean must be 3 finite",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {mean: [a, b, c]}}",
            "mean must be 3 numbers",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {std: [1, .nan, 1]}}",
            "std must be 3 finite",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {crop: 100000}}",
            "crop must be a whole number of pixels from 1 to 4096",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {resize: big}}",
            "resize must be a whole number",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {resize: 0}}",
            "resize must be a whole number",
        ),
        (  # the message names the field and the accepted choices
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {interpolation: lanczos}}",
            "model entry 'ok': preprocess: interpolation 'lanczos' is not one of",
        ),
        (
            "{id: ok, loader: minizoo, identifier: cnn, preprocess: {crop: 224.5}}",
            "crop must be a whole number of pixels from 1 to 4096, got 224.5",
        ),
    ],
)
def test_bad_model_entries(tmp_path: Path, entry: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _plan(tmp_path, f"models:\n  - {entry}\n")


def _refused_with_lines(tmp_path: Path, text: str, named: list[str]) -> None:
    """The config ``text`` is refused with one ConfigError whose lines match ``named``."""
    with pytest.raises(ConfigError) as error:
        _plan(tmp_path, text)
    lines = str(error.value).splitlines()
    assert len(lines) == len(named), lines
    for pattern, line in zip(named, lines, strict=True):
        assert re.match(pattern, line), (pattern, line)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "models:\n"
            "  - {id: a, loader: minizo, identifier: cnn}\n"
            "  - {id: fine, loader: minizoo, identifier: cnn}\n"
            "  - {id: b, loader: minizoo}\n"
            "  - {id: c, loader: minizoo, identifier: cnn, layer: 3}\n",
            [
                r"3 of \d+ model entries are invalid; fix each:$",
                r"  model entry 'a': unknown loader 'minizo' \(did you mean 'minizoo'\?\)",
                r"  model entry 'b' has no 'identifier'",
                r"  model entry 'c': 'layer' must be a string \(or null\), got 3$",
            ],
        ),
        (
            "datasets:\n"
            "  - {id: x, loader: embeded, path: x.npz, domain: Structured}\n"
            "  - {id: y, loader: embedded, path: x.npz, domain: Structurd}\n"
            "  - {id: z, loader: embedded, path: x.npz, domain: Structured}\n",
            [
                r"2 of \d+ dataset entries are invalid; fix each:$",
                r"  dataset 'x': unknown loader 'embeded' \(did you mean 'embedded'\?\)",
                r"  dataset 'y': domain 'Structurd' is not one of .*did you mean 'Structured'",
            ],
        ),
        (
            "models:\n"
            "  - {id: a, loader: minizo, identifier: cnn}\n"
            "datasets:\n"
            "  - {id: x, loader: embeded, path: x.npz, domain: Structured}\n"
            "  - {id: y, loader: embedded, path: x.npz, domain: Structurd}\n",
            [
                r"\S*c\.yaml has 2 problems; fix each:$",
                r"  model entry 'a': unknown loader 'minizo' \(did you mean 'minizoo'\?\)",
                r"  2 of \d+ dataset entries are invalid; fix each:$",
                r"    dataset 'x': unknown loader 'embeded' \(did you mean 'embedded'\?\)",
                r"    dataset 'y': domain 'Structurd' is not one of .*did you mean 'Structured'",
            ],
        ),
    ],
    ids=["models", "datasets", "both"],
)
def test_every_bad_entry_is_named_in_one_error(tmp_path: Path, text: str, named: list) -> None:
    """Entries were checked up to the first bad one: a config with three typos took three runs
    to find them, where the model checks that follow list every failing model at once."""
    _refused_with_lines(tmp_path, text, named)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "threads: 0\n"
            "probe: {seeds: [-1], epoch: 5, val_fraction: 1.5}\n"
            "extract: {batch_size: 0, max_decoded: 5}\n"
            "similarity: {progress: 'yes'}\n",
            [
                r"\S*c\.yaml has 7 problems; fix each:$",
                r"  \S*c\.yaml: threads must be a positive integer, got 0",
                r"  \S*c\.yaml: extract\.max_decoded was retired: ",
                r"  \S*c\.yaml: extract\.batch_size must be a positive integer, got 0",
                r"  \S*c\.yaml: probe: unknown key 'epoch' \(did you mean 'epochs'\?\)",
                r"  \S*c\.yaml: probe\.seeds\[0\] must be an integer >= 0, got -1",
                r"  \S*c\.yaml: probe\.val_fraction must be a number in \(0, 1\), got 1\.5",
                r"  \S*c\.yaml: similarity\.progress must be true or false, got 'yes'",
            ],
        ),
        (
            "measures: [cka_lineer, mutual_knn_0, rsa_spearmen, mutual_knn_10]\n"
            "select: {models: [nope]}\n",
            [
                r"\S*c\.yaml has 2 problems; fix each:$",
                r"  \S*c\.yaml: select\.models names 1 unknown id: 'nope'",
                r"  \S*c\.yaml: measures: unknown measure 'cka_lineer' \(did you mean "
                r"'cka_linear'\?\); measure 'mutual_knn_0': k must be >= 1, e\.g\. mutual_knn_10 "
                r"\(did you mean 'mutual_knn_10'\?\); unknown measure 'rsa_spearmen' \(did you mean "
                r"'rsa_spearman'\?\); valid names: cka_linear, [^;]*$",
            ],
        ),
        (  # options, entries, select: and measures in one error: they were three rounds
            "threads: 0\n"
            "measures: [cka_lineer]\n"
            "select: {datasets: [nope]}\n"
            "models:\n"
            "  - {id: a, loader: minizo, identifier: cnn}\n",
            [
                r"\S*c\.yaml has 4 problems; fix each:$",
                r"  \S*c\.yaml: threads must be a positive integer, got 0",
                r"  model entry 'a': unknown loader 'minizo' \(did you mean 'minizoo'\?\)",
                r"  \S*c\.yaml: select\.datasets names 1 unknown id: 'nope'",
                r"  \S*c\.yaml: measures: unknown measure 'cka_lineer' \(did you mean ",
            ],
        ),
        (  # a bad option, a bad dataset entry and select: of the (valid) models
            "probe: {seeds: 3}\n"
            "select: {models: [nope]}\n"
            "datasets:\n"
            "  - {id: x, loader: embeded, path: x.npz, domain: Structured}\n",
            [
                r"\S*c\.yaml has 3 problems; fix each:$",
                r"  \S*c\.yaml: probe\.seeds must be a list, got 3",
                r"  dataset 'x': unknown loader 'embeded' \(did you mean 'embedded'\?\)",
                r"  \S*c\.yaml: select\.models names 1 unknown id: 'nope'",
            ],
        ),
    ],
    ids=["sections", "select-and-measures", "options-entries-select", "option-dataset-select"],
)
def test_every_problem_of_the_options_is_named_in_one_error(tmp_path: Path, text, named) -> None:
    """The options (threads, stimuli, extract, probe, similarity, select, measures) were checked
    up to their first problem, where the entries' checks name every bad entry at once; then the
    options, the entries and select:/measures were three rounds, one rerun each."""
    _refused_with_lines(tmp_path, text, named)


def test_a_section_read_alone_names_each_of_its_problems() -> None:
    """parse_section (run.json's stimuli: is read with it) stopped at its first problem."""
    from repsim.config import StimuliOptions, parse_section

    with pytest.raises(ConfigError) as error:
        parse_section(
            StimuliOptions, {"max_images": 0, "seed": -1, "splt": "test"}, "run.json: stimuli"
        )
    assert str(error.value).splitlines() == [
        "run.json: stimuli has 3 problems; fix each:",
        "  run.json: stimuli: unknown key 'splt' (did you mean 'split'?); allowed keys are "
        "max_images, per_class, seed, split",
        "  run.json: stimuli.max_images must be a positive integer, got 0 (int)",
        "  run.json: stimuli.seed must be an integer >= 0, got -1 (int)",
    ]


def test_metadata_takes_notes_beside_its_fields(tmp_path: Path) -> None:
    entry = "{id: ok, loader: minizoo, identifier: cnn, metadata: {_mine: x, notes: y, seed: 1}}"
    plan = _plan(tmp_path, f"models:\n  - {entry}\nselect: {{models: [ok]}}\n")
    assert plan.models[0].metadata["notes"] == "y"


def test_dataset_ids_stay_inside_the_run_folder(tmp_path: Path) -> None:
    base = "loader: embedded, path: x.npz, domain: Structured"
    for bad in ("../x", "a/../b", "a//b", "/abs"):
        with pytest.raises(ConfigError, match="cannot be used"):
            _plan(tmp_path, f"datasets:\n  - {{id: '{bad}', {base}}}\n")
    from repsim.stimuli import parse_datasets

    (spec,) = parse_datasets(
        [{"id": "wds/vtab/cifar10", "loader": "embedded", "path": "x.npz", "domain": "Structured"}]
    )
    assert spec.id == "wds/vtab/cifar10"  # the study's ids: safe segments joined by '/'


@pytest.mark.parametrize(
    ("bad", "kind", "rule", "suggested"),
    [
        ("a b", "model", "so it must be made of", "a-b"),
        ("...", "model", "so it must be made of", "model-1"),
        ("wds/../x y", "dataset", "so parts separated by '/', each made of", "wds/x-y"),
    ],
)
def test_an_unsafe_id_is_refused_with_a_rename_that_is_accepted(
    bad: str, kind: str, rule: str, suggested: str
) -> None:
    from repsim.config import check_id

    slash = kind == "dataset"
    with pytest.raises(ConfigError) as err:
        check_id(bad, kind, allow_slash=slash)
    message = str(err.value)
    assert message.startswith(f"{kind} id {bad!r} cannot be used") and rule in message
    assert message.endswith(f"rename it (e.g. {suggested!r})")
    assert check_id(suggested, kind, allow_slash=slash) == suggested


def test_measures_checked_against_the_stimuli_they_will_see(tmp_path: Path) -> None:
    # tiny's subsets hold at most 60 images (faces: 2 classes of 30): mutual_knn_100 never fits
    with pytest.raises(
        ConfigError,
        match=r"mutual_knn_100 needs at least 102 stimuli; dataset 'faces' "
        r"can have at most 60(?s:.*)Lower k, drop the measure",
    ):
        _plan(tmp_path, "measures: [cka_linear, mutual_knn_100]\n")
    with pytest.raises(ConfigError, match="mutual_knn_50 needs at least 52"):
        _plan(tmp_path, "stimuli: {max_images: 20}\nmeasures: [mutual_knn_50]\n")
    plan = _plan(tmp_path, "measures: [cka_linear, mutual_knn_50]\n")
    plan.check_stimulus_counts({"faces": 60, "textures": 52})  # exact counts, after the tables
    with pytest.raises(
        ConfigError, match="mutual_knn_50 needs at least 52 stimuli; dataset 'textures' has 20"
    ):
        plan.check_stimulus_counts({"faces": 60, "textures": 20})


def test_measures_that_would_be_1_whatever_the_features_are_refused(tmp_path: Path) -> None:
    # max_images 2 leaves faces (2 classes) one image per class: two points are always a perfect
    # Procrustes match; kNN with k = n - 1 neighbours (all the others) is always 1 too
    with pytest.raises(
        ConfigError,
        match=r"procrustes needs at least 3 stimuli; dataset 'faces' can have at most 2"
        r"(?s:.*)\nDrop the measure from 'measures:'",
    ):
        _plan(tmp_path, "stimuli: {max_images: 2}\nmeasures: [procrustes]\n")
    plan = _plan(tmp_path, "stimuli: {max_images: 5}\nmeasures: [procrustes, mutual_knn_3]\n")
    with pytest.raises(
        ConfigError, match="mutual_knn_3 needs at least 5 stimuli; dataset 'faces' has 4"
    ):
        plan.check_stimulus_counts({"faces": 4, "textures": 5, "gratings": 18})


def test_a_dataset_of_unknown_classes_has_no_subset_bound_at_plan_time() -> None:
    """max_images 6 over C classes takes ceil(6 / C) per class: up to 6 + C - 1 stimuli. Without
    n_classes nothing bounds it, so the plan does not refuse; the exact counts are checked later."""
    from types import SimpleNamespace

    from repsim.plan import _check_subset_sizes

    def plan(n_classes):
        ds = SimpleNamespace(id="x", n_classes=n_classes, per_class=None, max_images=6)
        return SimpleNamespace(datasets=[ds], measures=("mutual_knn_5",), config_path="c.yaml")

    _check_subset_sizes(plan(None))  # 4 classes would give 8 >= 7
    _check_subset_sizes(plan(4))
    with pytest.raises(
        ConfigError, match="mutual_knn_5 needs at least 7 stimuli; dataset 'x' can have at most 6"
    ):
        _check_subset_sizes(plan(1))


def test_a_per_class_dataset_is_bounded_by_per_class_times_classes() -> None:
    """per_class 3 of 2 classes is at most 6 stimuli whatever max_images: refused at plan time
    for a measure that needs 7 (no test reached the per_class bound); 3 classes give 9."""
    from types import SimpleNamespace

    from repsim.plan import _check_subset_sizes

    def plan(n_classes):
        ds = SimpleNamespace(id="x", n_classes=n_classes, per_class=3, max_images=100)
        return SimpleNamespace(datasets=[ds], measures=("mutual_knn_5",), config_path="c.yaml")

    _check_subset_sizes(plan(3))
    with pytest.raises(
        ConfigError, match="mutual_knn_5 needs at least 7 stimuli; dataset 'x' can have at most 6"
    ):
        _check_subset_sizes(plan(2))


@pytest.mark.parametrize(
    "select",
    [
        "{models: [cnn-supervised-s0], datasets: [faces]}",  # one model, one dataset
        "{models: [cnn-supervised-s0, vit-simclr-s0], datasets: [faces]}",  # two models
        "{models: [cnn-supervised-s0, cnn-simclr-s0, cnn-clip-s0]}",  # one model per objective
    ],
)
def test_small_valid_runs_are_not_rejected(tmp_path: Path, select: str) -> None:
    plan = _plan(tmp_path, f"select: {select}\n", check_models=True)
    assert 1 <= len(plan.models) <= 3 and plan.datasets


def test_a_key_given_twice_is_refused(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a second models list would replace the
    first. The config reader names the key and its line instead."""
    from repsim.config import read_yaml

    path = tmp_path / "dup.yaml"
    path.write_text("name: x\nmodels: [a]\nstimuli: {seed: 1, seed: 2}\n")
    with pytest.raises(ConfigError, match="found the key 'seed' twice"):
        read_yaml(path)
    path.write_text("name: x\nmodels: [a]\nmodels: [b]\n")
    with pytest.raises(ConfigError, match=r"(?s)'models' twice.*line 3"):
        read_yaml(path)


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        ("true", "quote it: name: 'True'"),
        ("7", "quote it: name: '7'"),
        ("''", "give the run a name"),  # was told to quote it as 'yes'
        ("[a]", "give the run a name"),
    ],
)
def test_a_name_that_is_not_text_is_refused(tmp_path, value, fix):
    """`name: true` became the run "True", and a number a number."""
    path = tmp_path / "c.yaml"
    path.write_text(f"name: {value}\n")
    with pytest.raises(ConfigError, match="name must be a text") as err:
        load_config(path)
    assert fix in str(err.value)


def test_yaml_errors_name_the_file_and_an_encoding_its_fix(tmp_path):
    """A syntax error's position said in "<unicode string>"; a Latin-1 file was told to check
    its path and permissions."""
    from repsim.config import read_yaml

    path = tmp_path / "c.yaml"
    path.write_text("name: x\nmodels: [a\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert f'in "{path}", line' in str(err.value) and "<unicode string>" not in str(err.value)
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text .*save it as UTF-8"):
        read_yaml(path)
    path.write_text(
        "base: &b {seed: 1}\nstimuli: {<<: *b, max_images: 5}\n"
    )  # merge keys still work
    assert read_yaml(path)["stimuli"] == {"seed": 1, "max_images": 5}


@pytest.fixture(params=["pathlib", "pathlib of Python 3.14"])
def lookups(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Python 3.14's Path.is_file, is_dir and exists answer False for every OSError (a name too
    long included), where earlier versions raise it: the checks must not rely on either."""
    if request.param != "pathlib":

        def quiet(real: Callable[..., bool]) -> Callable[..., bool]:
            def lookup(self: Path, *args: object, **kw: object) -> bool:
                try:
                    return real(self, *args, **kw)
                except OSError:
                    return False

            return lookup

        for name in ("is_file", "is_dir", "exists"):
            monkeypatch.setattr(Path, name, quiet(getattr(Path, name)))
    return request.param


def test_a_config_that_is_not_a_regular_file_is_named_so(tmp_path: Path) -> None:
    """A named pipe was reported as not existing (and reading it would wait forever)."""
    import os

    os.mkfifo(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml is not a regular file; pass the path"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.usefixtures("lookups")
def test_a_config_path_too_long_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file: cannot read .*the name .* shorten it"):
        load_config(tmp_path / ("x" * 300 + ".yaml"))
    deep = tmp_path.joinpath(*["y" * 200] * 25, "c.yaml")
    with pytest.raises(ConfigError, match=r"config file: cannot read .*the path is \d+ bytes long"):
        load_config(deep)


@pytest.mark.parametrize("form", ["name", "path"])
@pytest.mark.parametrize(
    ("entry", "named"),
    [
        (
            "models:\n  - {id: far, loader: minizoo, identifier: cnn, weights: PATH}\n"
            "select: {models: [far]}\n",
            "model far: weights file: cannot read",
        ),
        (
            "datasets:\n  - {id: far, loader: embedded, path: PATH, domain: Structured}\n"
            "select: {datasets: [far]}\n",
            "dataset far: path: cannot read",
        ),
    ],
    ids=["weights", "dataset"],
)
@pytest.mark.usefixtures("lookups")
def test_weights_and_dataset_paths_too_long_are_named_before_any_work(
    tmp_path: Path, form: str, entry: str, named: str
) -> None:
    """A too-long path was a raw OSError (weights) or blamed on the run folder (a dataset)."""
    long = (
        tmp_path / ("x" * 300 + ".bin")
        if form == "name"
        else tmp_path.joinpath(*["y" * 200] * 25, "f.bin")
    )
    with pytest.raises(ConfigError, match=rf"{named} .*(the name|the path) .* shorten it") as err:
        _plan(tmp_path, entry.replace("PATH", str(long)))
    assert "run folder" not in str(err.value)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda p: None, r"weights file .*w\.bin does not exist; fix the 'weights:' path"),
        (lambda p: p.mkdir(), r"weights .*w\.bin is a folder, not a file; point 'weights:'"),
        (lambda p: os.mkfifo(p), r"weights .*w\.bin is not a regular file"),
    ],
    ids=["missing", "folder", "fifo"],
)
@pytest.mark.usefixtures("lookups")
def test_unusable_weights_paths_are_named_by_what_is_wrong(tmp_path: Path, make, named) -> None:
    """The run's preflight said only "missing or unusable" with the path; it now says what
    ``repsim models --check`` says (a FIFO would block the loader, so it is refused too)."""
    make(tmp_path / "w.bin")
    entry = "models:\n  - {id: w, loader: minizoo, identifier: cnn, weights: w.bin}\nselect: {models: [w]}\n"
    with pytest.raises(ConfigError, match=rf"model 'w': {named}"):
        _plan(tmp_path, entry)


@pytest.mark.usefixtures("lookups")
def test_a_save_pretrained_folder_passes_the_preflight(tmp_path: Path) -> None:
    """hf_transformers reads ``weights:`` as a save_pretrained folder: the run refused it as a
    missing file, though ``repsim models --check`` and the loader accept it."""
    (tmp_path / "align").mkdir()
    entry = (
        "models:\n  - {id: a, loader: hf_transformers, identifier: kakaobrain/align-base, "
        "weights: align, token: pooled}\nselect: {models: [a]}\n"
    )
    plan = _plan(tmp_path, entry)
    assert [m.id for m in plan.models] == ["a"]
    (tmp_path / "align").rmdir()
    with pytest.raises(ConfigError, match=r"model 'a': weights file .*align does not exist"):
        _plan(tmp_path, entry)


def test_weights_in_a_folder_this_user_cannot_enter_are_left_to_the_model_check(
    tmp_path: Path, monkeypatch
) -> None:
    """Whether a save_pretrained folder is a folder cannot be asked inside a folder without
    search permission (Path.is_dir raises PermissionError there before Python 3.14): the path
    check leaves it to the model check, which names the file, instead of a raw PermissionError
    from the plan."""
    from faults.faultkit import unreadable

    (tmp_path / "locked" / "align").mkdir(parents=True)
    entry = (
        f"models:\n  - {{id: a, loader: hf_transformers, identifier: kakaobrain/align-base, "
        f"weights: {tmp_path / 'locked' / 'align'}, token: pooled}}\nselect: {{models: [a]}}\n"
    )
    unreadable(monkeypatch, tmp_path / "locked")
    plan = _plan(tmp_path, entry)
    assert [m.id for m in plan.models] == ["a"]
    with pytest.raises(
        ModelError,
        match=r"model 'a': cannot be built: PermissionError.*locked.*make the files it names read",
    ):
        _plan(tmp_path, entry, check_models=True)


def test_feature_bytes_count_rows_widths_raw_copies_and_unknown_widths(tmp_path: Path) -> None:
    from repsim.plan import UNKNOWN_DIM_BOUND

    plan = _plan(tmp_path, "extract: {keep_raw: true}\n")
    a, b = plan.models[:2]
    assert plan.feature_dim(a) == (a.embed_dim, True)  # its metadata, before any check
    plan.feature_dims[a.id] = 10  # as the meta-device check finds it
    assert plan.feature_dim(a) == (10, True)
    object.__setattr__(b, "metadata", {**b.metadata, "embed_dim": None})
    assert plan.feature_dim(b) == (UNKNOWN_DIM_BOUND, False)
    rows = {"faces": 7, "textures": 3}
    assert plan.feature_bytes(rows, {"faces": [a], "textures": [a, b]}) == 2 * 4 * (
        7 * 10 + 3 * 10 + 3 * UNKNOWN_DIM_BOUND
    )
    assert plan.feature_bytes(rows, {"faces": [], "textures": []}) == 0


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ("models:\n  - {id: ID, loader: minizoo, identifier: cnn}\n", "model"),
        ("datasets:\n  - {id: ID, loader: embedded, path: x.npz, domain: Structured}\n", "dataset"),
    ],
)
def test_an_id_too_long_for_the_names_a_run_derives_is_refused_before_any_work(
    tmp_path: Path, entry: str, named: str
) -> None:
    """It passed the config check and failed mid-run, as a task failure of every task it had."""
    with pytest.raises(ConfigError) as err:
        _plan(tmp_path, entry.replace("ID", "a" * 213))
    assert str(err.value) == (
        f"{named} id '{'a' * 20}...{'a' * 20}' is 213 characters long: the run names files after "
        "it, the longest 256 bytes, over the 255 bytes a file name may have; choose a shorter id "
        "(at most 212 characters)"
    )
    if named == "dataset":  # a '/' is written %2F
        with pytest.raises(ConfigError, match=r"212 characters, each '/' counting 3\)"):
            _plan(tmp_path, entry.replace("ID", "a/" + "a" * 209))
    else:  # one byte less fits
        _plan(tmp_path, entry.replace("ID", "a" * 212) + "select: {models: [" + "a" * 212 + "]}\n")


def test_numbers_in_exponent_form_are_numbers(tmp_path: Path) -> None:
    """PyYAML reads YAML 1.1, where ``1e-3`` is a string: ``lrs: [1e-3]`` was refused as text.
    Configs read exponent forms as numbers (YAML 1.2), and a whole one where an integer is due."""
    import yaml

    plan = _plan(
        tmp_path,
        "probe: {lrs: [1e-3, 1E-2], wds: [1e-6, +1.0e+0], epochs: 4e0, seeds: [0, 1e0]}\n"
        "stimuli: {max_images: 6e1, seed: 4.2e1}\n"
        "extract: {batch_size: 2.56e2}\n",
    )
    assert plan.config.probe.lrs == (0.001, 0.01)
    assert plan.config.probe.wds == (1e-6, 1.0)
    assert plan.config.probe.epochs == 4 and plan.config.probe.seeds == (0, 1)
    assert plan.config.stimuli.max_images == 60 and type(plan.config.stimuli.max_images) is int
    assert plan.config.stimuli.seed == 42 and type(plan.config.stimuli.seed) is int
    assert plan.config.extract.batch_size == 256 and type(plan.config.extract.batch_size) is int
    # the same run written with plain numbers has the same options (the same cache keys)
    plain = _plan(
        tmp_path,
        "probe: {lrs: [0.001, 0.01], wds: [0.000001, 1.0], epochs: 4, seeds: [0, 1]}\n"
        "stimuli: {max_images: 60, seed: 42}\nextract: {batch_size: 256}\n",
    )
    assert (plain.probe, plain.stimuli, plain.extract) == (plan.probe, plan.stimuli, plan.extract)
    # fractions stay refused where an integer is due; PyYAML's own loader is left unchanged
    with pytest.raises(
        ConfigError, match=r"stimuli.max_images must be a positive integer, got 60.5"
    ):
        _plan(tmp_path, "stimuli: {max_images: 6.05e1}\n")
    assert yaml.safe_load("1e-3") == "1e-3"


def test_model_metadata_numbers_in_exponent_form(tmp_path: Path) -> None:
    from repsim.config import parse_yaml
    from repsim.zoo.spec import spec_from_entry

    entry = parse_yaml(
        "{id: m, loader: minizoo, identifier: cnn, metadata: {params_m: 1e3, embed_dim: 7.68e2}}"
    )
    spec = spec_from_entry(entry)
    assert spec.metadata["params_m"] == 1000.0 and spec.metadata["embed_dim"] == 768
    for bad in ("768.5", "'768 dims'", "0", "'7\u00b2'"):  # int() truncated 768.5; '²' isdigit
        entry = parse_yaml(
            f"{{id: m, loader: minizoo, identifier: cnn, metadata: {{embed_dim: {bad}}}}}"
        )
        with pytest.raises(ConfigError, match="metadata.embed_dim must be a positive integer"):
            spec_from_entry(entry)


def test_model_metadata_writes_an_unknown_field_as_nan_or_empty() -> None:
    """What similarity.nc records for a field a model does not give: NaN for a number (0 would
    be a size), '' for text (not 'None'), which the groupings leave out as unknown."""
    from repsim.config import parse_yaml
    from repsim.names import MODEL_FIELDS, NUMERIC_MODEL_FIELDS
    from repsim.plan import model_metadata
    from repsim.zoo.spec import spec_from_entry

    spec = spec_from_entry(parse_yaml("{id: m, loader: torchvision, identifier: resnet18}"))
    meta = model_metadata(spec)
    assert set(meta) == set(MODEL_FIELDS)
    for key in NUMERIC_MODEL_FIELDS:
        assert math.isnan(meta[key]), key
    assert all(meta[k] == "" for k in MODEL_FIELDS if k not in NUMERIC_MODEL_FIELDS)


def test_dataset_integers_in_exponent_form(tmp_path: Path) -> None:
    from repsim.config import parse_yaml
    from repsim.stimuli.spec import parse_dataset

    spec = parse_dataset(
        parse_yaml(
            "{id: d, loader: imagefolder, domain: Structured, path: x, max_images: 1e3, seed: 7e0, options: {min_side: 6.4e1}}"
        )
    )
    assert (spec.max_images, spec.seed, spec.options["min_side"]) == (1000, 7, 64)
    assert all(type(v) is int for v in (spec.max_images, spec.seed, spec.options["min_side"]))
    with pytest.raises(ConfigError, match="'max_images' must be a positive integer"):
        parse_dataset(
            parse_yaml("{id: d, loader: imagefolder, domain: Structured, path: x, max_images: 1.5}")
        )


@pytest.mark.parametrize(("n_known", "more"), [(30, ""), (31, ", ... (31 in all)")])
def test_an_unknown_selected_id_lists_the_known_ids_up_to_30(n_known: int, more: str) -> None:
    """The refusal of an unknown ``select`` id lists the ids to choose from: all of up to 30, else
    the first 30 and the count. No selection keeps every spec, as a list."""
    from types import SimpleNamespace

    from repsim.config import select_ids

    specs = [SimpleNamespace(id=f"d{i:02d}") for i in range(n_known)]
    with pytest.raises(ConfigError) as err:
        select_ids(specs, ["d99"], "datasets", "c.yaml")
    first_30 = ", ".join(f"d{i:02d}" for i in range(30))
    assert str(err.value).endswith(f"the config's datasets are: {first_30}{more}")
    assert select_ids(iter(specs), None, "datasets", "c.yaml") == specs


def test_probe_options_reach_linear_probe_as_written() -> None:
    """``probe: {precision: bfloat16}`` is passed on to linear_probe, not dropped for its default
    (float32), and ``normalize: true`` as true."""
    from repsim.config import parse_config

    probe = {"precision": "bfloat16", "epochs": 3, "normalize": True}
    assert parse_config({"name": "x", "probe": probe}).probe.kwargs() == probe


def test_an_unknown_key_is_never_told_to_use_an_internal_key() -> None:
    """``_config_dir``, which the reader adds to every entry, is no key to offer: neither as a
    did-you-mean nor among the allowed keys."""
    from repsim.config import parse_yaml
    from repsim.stimuli.spec import parse_dataset

    entry = "{id: d, loader: imagefolder, domain: Structured, path: x, config_dir: y}"
    with pytest.raises(ConfigError, match="unknown key 'config_dir'; allowed keys are") as err:
        parse_dataset(parse_yaml(entry))
    assert "_config_dir" not in str(err.value)


def test_a_name_cut_short_is_completed_before_a_closer_looking_one() -> None:
    """difflib ties '--set' between '--settings' and '--study' (0.67 each) and took the last in
    alphabetical order; a word that begins exactly one choice means that choice."""
    from repsim.config import did_you_mean

    options = ["--settings", "--study", "--device"]
    assert did_you_mean("--set", options) == " (did you mean '--settings'?)"
    assert did_you_mean("--devcie", options) == " (did you mean '--device'?)"  # difflib's
    # several choices begun, or too short a word: difflib decides
    assert did_you_mean("--s", options) == " (did you mean '--study'?)"
    assert did_you_mean("measure", ["measures", "stimuli"]) == " (did you mean 'measures'?)"
    assert did_you_mean("zzz", options) == ""
    # several begun: the closest of those, not a closer-looking name it does not begin
    timm = ["samvit_base_patch16", "vit_base_patch16_224", "vit_base_patch16_384", "vit_small"]
    assert did_you_mean("vit_base_patch16", timm).startswith(" (did you mean 'vit_base_patch16_")


def test_the_annotated_config_of_contributing_is_a_valid_config(
    tmp_path: Path, repo_root: Path
) -> None:
    """CONTRIBUTING.md's annotated config is what a newcomer copies: it set ``verify: true``,
    which the dataset check refuses (none | header | full). Its layout is kept (include: and
    path: relative to data/configs), its ``[...]`` of select: filled with its own ids."""
    from repsim.plan import load_plan

    text = (repo_root / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = re.search(r"## Config files.*?```yaml\n(.*?)```", text, re.S).group(1)
    select = "select: {models: [...], datasets: [...]}"
    assert select in block
    block = block.replace(select, "select: {models: [resnet50], datasets: [digits]}")
    (tmp_path / "configs").mkdir()
    (tmp_path / "embedded").mkdir()
    (tmp_path / "minizoo").symlink_to(repo_root / "data" / "minizoo")
    (tmp_path / "embedded" / "digits.npz").symlink_to(repo_root / "data/embedded/digits.npz")
    cfg = tmp_path / "configs" / "example.yaml"
    cfg.write_text(block, encoding="utf-8")
    plan = load_plan(cfg, check_models=False)  # resnet50's weights are not downloaded here
    assert [m.id for m in plan.models] == ["resnet50"]
    assert [d.id for d in plan.datasets] == ["digits"]


def test_every_bad_item_of_a_list_is_named(tmp_path: Path) -> None:
    """A list option (probe seeds, learning rates, select's ids, measures) stopped at its first
    bad item: `seeds: [-1, 0, x]` named -1, and x only after the next run."""
    _refused_with_lines(
        tmp_path,
        "probe: {seeds: [-1, 0, x], lrs: [0.1, 0]}\n",
        [
            r"\S*c\.yaml has 2 problems; fix each:$",
            r"  \S*c\.yaml: probe\.seeds has 2 bad items; fix each:$",
            r"    \S*c\.yaml: probe\.seeds\[0\] must be an integer >= 0, got -1 \(int\)$",
            r"    \S*c\.yaml: probe\.seeds\[2\] must be an integer >= 0, got 'x' \(a string\)$",
            r"  \S*c\.yaml: probe\.lrs\[1\] must be a number > 0, got 0 \(int\)",
        ],
    )
