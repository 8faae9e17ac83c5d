"""repsim compare: a run's values against the study's published numbers.

The study-shaped synthetic run has the study's 64 models and 23 datasets. On ImageNet, Flowers and
PCAM its pair similarities are built so that every published consistency value holds exactly: each
objective's within-objective pairs get vectors with exactly the published correlations, the
cross-objective pairs get the correlation that makes the all-pairs value come out (with equal
means and variances in every group the pooled r is the pair-count-weighted mean of the groups' r).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from helpers_run import write_manifest_for

from repsim import reference
from repsim.cli import main
from repsim.errors import StoreError
from repsim.runfolder import RunFolder

STUDY_DATASETS = {
    "ImageNet": "imagenet-subset-10k",
    "Flowers": "wds/vtab/flowers",
    "PCAM": "wds/vtab/pcam",
}
TRIPLE = ["ImageNet", "Flowers", "PCAM"]
GROUPS = ("Self-Supervised", "Image-Text", "Supervised")


def paper_datasets(repo_root) -> list[dict]:
    raw = yaml.safe_load((repo_root / "data/configs/paper_datasets.yaml").read_text())
    return raw["datasets"]


def exact_columns(rng: np.random.Generator, n: int, R: np.ndarray) -> np.ndarray:
    """n x 3 values with mean 0.5, population SD 0.1 and sample correlation exactly R."""
    Z = rng.normal(size=(n, 3))
    Q, _ = np.linalg.qr(Z - Z.mean(axis=0))
    return Q @ np.linalg.cholesky(R).T * np.sqrt(n) * 0.1 + 0.5


def targets(ref: pd.DataFrame, measure: str, models: str) -> np.ndarray:
    """3 x 3 correlation matrix over (ImageNet, Flowers, PCAM) of the published consistency."""
    R = np.eye(3)
    for (i, a), (j, b) in (((0, "ImageNet"), (1, "Flowers")), ((0, "ImageNet"), (2, "PCAM")),
                           ((1, "Flowers"), (2, "PCAM"))):  # fmt: skip
        R[i, j] = R[j, i] = ref.set_index("id").loc[
            f"consistency/{measure}/{models}/{a}-{b}", "value"
        ]
    return R


def study_run(repo_root, shift: dict | None = None, seed: int = 0) -> xr.Dataset:
    """The study-shaped run; ``shift`` moves a (measure, group, i, j) target to another value."""
    rng = np.random.default_rng(seed)
    ref = reference.load_study_numbers()
    models = reference.study_models()
    ids = list(models)
    obj = np.array([models[m] for m in ids])
    datasets = paper_datasets(repo_root)
    M, D = len(ids), len(datasets)
    iu, ju = np.triu_indices(M, k=1)
    kind = np.where(obj[iu] == obj[ju], obj[iu], "cross")
    pos = [[d["id"] for d in datasets].index(STUDY_DATASETS[k]) for k in TRIPLE]
    data = {}
    for measure in ("cka_linear", "cka_rbf_0.4"):
        S = rng.uniform(0.2, 0.8, size=(D, M, M))
        all_r = targets(ref, measure, "all")
        weighted = np.zeros((3, 3))
        for g in GROUPS:
            R = targets(ref, measure, g)
            for (m, gg, i, j), v in (shift or {}).items():
                if (m, gg) == (measure, g):
                    R[i, j] = R[j, i] = v
            sel = kind == g
            vals = exact_columns(rng, int(sel.sum()), R)
            for k, p in enumerate(pos):
                S[p, iu[sel], ju[sel]] = vals[:, k]
            weighted += sel.sum() * targets(ref, measure, g)  # the cross pairs make 'all' exact
        cross = kind == "cross"
        Rc = (all_r * len(iu) - weighted) / cross.sum()
        np.fill_diagonal(Rc, 1.0)
        vals = exact_columns(rng, int(cross.sum()), Rc)
        for k, p in enumerate(pos):
            S[p, iu[cross], ju[cross]] = vals[:, k]
        S[:, ju, iu] = S[:, iu, ju]
        S[:, np.arange(M), np.arange(M)] = 1.0
        data[measure] = (("dataset", "model_a", "model_b"), S)
    coords = {
        "dataset": [d["id"] for d in datasets],
        "domain": ("dataset", [d["domain"] for d in datasets]),
        "dataset_name": ("dataset", [d.get("name", d["id"]) for d in datasets]),
        "model_a": ids,
        "model_b": ids,
        "objective_a": ("model_a", obj),
        "objective_b": ("model_b", obj),
    }
    return xr.Dataset(data, coords=coords, attrs={"run": "study-shaped"})


def test_reference_file_holds_every_published_number():
    ref = reference.load_study_numbers()
    assert len(ref) == 24 + 5 + 11
    assert ref["id"].is_unique
    row = ref.set_index("id").loc["consistency/cka_linear/Self-Supervised/ImageNet-Flowers"]
    assert row["value"] == 0.96 and row["dataset_a"] == "imagenet-subset-10k"
    assert ref.set_index("id").loc["behavior/cka_linear/Specialized", "value"] == -0.41
    assert (ref["source"].str.contains("2411.05561")).all() and (ref["location"] != "").all()
    models = reference.study_models()
    assert len(models) == 64
    assert pd.Series(models).value_counts().to_dict() == {
        "Supervised": 30, "Self-Supervised": 20, "Image-Text": 14,
    }  # fmt: skip


def test_study_shaped_run_matches(repo_root):
    table = reference.compare(study_run(repo_root))
    consistency = table[table.quantity == "consistency"]
    assert len(consistency) == 24 and (consistency.status == "within tolerance").all()
    np.testing.assert_allclose(consistency.run, consistency.study, atol=1e-9)
    design = table[table.quantity.str.startswith("n_")]
    assert (design.status == "the study's count").all(), design[["id", "run", "study"]]
    assert (table[table.quantity == "behavior_r"].status == "not in run").all()  # no probes
    assert table.attrs["n_study_models"] == 64
    text = reference.summary(table)
    assert "24 of 29 published results" in text and "(24 within tolerance, 0 outside" in text
    assert "Design: 11 of 11 counts" in text
    # the behaviour numbers are the study's, but from its earlier run: the sentence says so
    assert (
        "(Ciernik et al. 2025, 64 models; 5 of its numbers are from its earlier run with 62 "
        in text
    )


def test_study_shaped_run_misses(repo_root):
    # Supervised ImageNet-PCAM 0.48 -> 0.20 also moves the all-pairs value by 435 * 0.28 / 2016
    table = reference.compare(study_run(repo_root, {("cka_linear", "Supervised", 0, 2): 0.20}))
    status = table.set_index("id")["status"]
    assert status["consistency/cka_linear/Supervised/ImageNet-PCAM"] == "outside tolerance"
    assert status["consistency/cka_linear/all/ImageNet-PCAM"] == "outside tolerance"
    diff = table.set_index("id").loc["consistency/cka_linear/all/ImageNet-PCAM", "difference"]
    assert diff == pytest.approx(435 * (0.20 - 0.48) / 2016, abs=1e-9)
    others = table[(table.quantity == "consistency") & ~table.id.str.contains("cka_linear/.*PCAM")]
    assert (others.status == "within tolerance").all()
    assert (table[table.quantity == "consistency"].status == "outside tolerance").sum() == 2


def random_probes(sim: xr.Dataset, seed: int = 3) -> tuple[xr.Dataset, np.ndarray]:
    """Probe accuracies drawn independently of the similarities (2 seeds)."""
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.3, 0.9, size=(sim.sizes["model_a"], sim.sizes["dataset"], 2))
    probes = xr.Dataset(
        {"accuracy": (("model", "dataset", "seed"), acc)},
        coords={"model": sim.model_a.values, "dataset": sim.dataset.values, "seed": [0, 1],
                "domain": ("dataset", sim.domain.values)},
    )  # fmt: skip
    return probes, acc


def test_behavior_rows_against_a_hand_computation(repo_root):
    sim = study_run(repo_root)
    probes, acc = random_probes(sim)
    table = reference.compare(sim, probes=probes).set_index("id")
    iu, ju = np.triu_indices(sim.sizes["model_a"], k=1)
    mean_acc = acc.mean(axis=2)
    r = []
    for k in range(sim.sizes["dataset"]):
        s = sim["cka_linear"].values[k][iu, ju]
        gap = np.abs(mean_acc[iu, k] - mean_acc[ju, k])
        r.append(np.corrcoef(s, gap)[0, 1])
    r = pd.Series(r, index=sim.domain.values)
    assert table.loc["behavior/cka_linear/all", "run"] == pytest.approx(r.mean(), abs=1e-12)
    for domain in ("Specialized", "Structured", "Natural (single-domain)"):
        row = table.loc[f"behavior/cka_linear/{domain}"]
        assert row["run"] == pytest.approx(r[domain].mean(), abs=1e-12)
        # uncorrelated accuracies give r near 0, far from the study's -0.4 to -0.6
        assert row["status"] == "outside tolerance"


def test_behavior_rows_need_the_study_datasets(repo_root):
    """The study's mean over its 23 datasets got a verdict from one dataset ('1 dataset, 64
    models'): only the models were checked."""
    sim = study_run(repo_root)
    probes, _ = random_probes(sim)
    one = reference.compare(sim.sel(dataset=["wds/vtab/svhn"]), probes=probes).set_index("id")
    for row_id, n in (("all", 23), ("Natural (single-domain)", 6)):
        row = one.loc[f"behavior/cka_linear/{row_id}"]
        assert row["status"] == "subset of the study's datasets", row["run_basis"]
        assert row["run_basis"].startswith("1 dataset, 64 models")
        assert f"1 of the study's {n} datasets" in row["run_basis"]
    assert one.loc["behavior/cka_linear/Structured", "status"] == "not in run"
    text = reference.summary(one.reset_index())
    assert (
        "0 are set against the study's value" in text
        and "no verdict (2 subset of the study's datasets)" in text
    )
    # one Structured dataset short: that row names it, the complete domains keep their verdict
    keep = [d for d in sim.dataset.values if d != "wds/vtab/dtd"]
    short = reference.compare(sim.sel(dataset=keep), probes=probes).set_index("id")
    row = short.loc["behavior/cka_linear/Structured"]
    assert row["status"] == "subset of the study's datasets"
    assert row["run_basis"].startswith("2 datasets, 64 models")
    assert "2 of the study's 3 datasets (missing wds/vtab/dtd)" in row["run_basis"]
    assert short.loc["behavior/cka_linear/Specialized", "status"] == "outside tolerance"
    # a dataset that is not the study's, in place of one that is
    other = sim.assign_coords(
        dataset=[("shapes" if d == "wds/vtab/dtd" else d) for d in map(str, sim.dataset.values)],
        dataset_name=("dataset", [n.replace("DTD", "Shapes") for n in sim.dataset_name.values]),
    )
    probes = probes.assign_coords(dataset=other.dataset.values)
    row = reference.compare(other, probes=probes).set_index("id").loc["behavior/cka_linear/all"]
    assert row["status"] == "other datasets" and "22 of them are the study's" in row["run_basis"]


def drop_models(sim: xr.Dataset, gone: list[str]) -> xr.Dataset:
    """NaN similarities for the models ``gone`` (their features failed), on every dataset."""
    sim = sim.copy(deep=True)
    for measure in ("cka_linear", "cka_rbf_0.4"):
        sim[measure].loc[{"model_a": gone}] = np.nan
        sim[measure].loc[{"model_b": gone}] = np.nan
    return sim


def test_consistency_basis_counts_the_finite_pairs(repo_root):
    """With 40 of the 64 models NaN the row said 'differs' on '64 models, 2016 pairs', though
    276 pairs of 24 models made the value."""
    sim = study_run(repo_root)
    ids = [str(m) for m in sim.model_a.values]
    with pytest.warns(RuntimeWarning, match="NaN"):
        table = reference.compare(drop_models(sim, ids[24:])).set_index("id")
    row = table.loc["consistency/cka_linear/all/ImageNet-Flowers"]
    assert row["status"] == "subset of the study's models" and np.isfinite(row["run"])
    assert row["run_basis"].startswith("24 models, 276 pairs; 24 of the study's 64")
    verdicts = table[table.quantity == "consistency"].status.isin(
        ["within tolerance", "outside tolerance"]
    )
    assert not verdicts.any()
    text = reference.summary(table.reset_index())
    assert "none of its results is comparable" not in text  # it has all 64 models, 40 failed
    assert "24 results rest on other or fewer models, model pairs or datasets" in text
    # one pair NaN on one dataset: every model is there, one pair is not
    imagenet = [str(d) for d in sim.dataset.values].index("imagenet-subset-10k")
    sim = study_run(repo_root)
    sim["cka_linear"][imagenet, 0, 1] = sim["cka_linear"][imagenet, 1, 0] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN"):
        table = reference.compare(sim).set_index("id")
    row = table.loc["consistency/cka_linear/all/ImageNet-Flowers"]
    assert row["status"] == "subset of the study's model pairs"
    assert row["run_basis"].startswith("64 models, 2015 pairs; 1 of the study's 2016 pairs missing")
    assert table.loc["consistency/cka_linear/all/Flowers-PCAM", "status"] == "within tolerance"


def test_subset_of_study_models_gets_no_verdict(repo_root):
    sim = study_run(repo_root)
    keep = [m for m in sim.model_a.values if not str(m).startswith("dino")]
    table = reference.compare(sim.sel(model_a=keep, model_b=keep))
    ssl = table.set_index("id").loc["consistency/cka_linear/Self-Supervised/ImageNet-Flowers"]
    assert ssl["status"] == "subset of the study's models" and np.isfinite(ssl["run"])
    sup = table.set_index("id").loc["consistency/cka_linear/Supervised/ImageNet-Flowers"]
    assert sup["status"] == "within tolerance"  # the supervised models are all there


def test_embedded_style_run_has_few_comparable_items(repo_root):
    """Mini-zoo models on embedded sets: no study dataset, no study model; says so."""
    rng = np.random.default_rng(1)
    ids = [
        f"{a}-{o}-s{s}" for a in ("cnn", "vit") for o in ("supervised", "simclr") for s in (0, 1)
    ]
    obj = ["Supervised" if "supervised" in m else "Self-Supervised" for m in ids]
    sets = ["faces", "cells", "digits", "shapes"]
    domains = ["Natural (single-domain)", "Specialized", "Structured", "Structured"]
    S = rng.uniform(size=(4, 8, 8))
    S = (S + S.transpose(0, 2, 1)) / 2
    sim = xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), S)},
        coords={"dataset": sets, "domain": ("dataset", domains), "model_a": ids, "model_b": ids,
                "objective_a": ("model_a", obj), "objective_b": ("model_b", obj)},
        attrs={"run": "embedded"},
    )  # fmt: skip
    probes = xr.Dataset(
        {"accuracy": (("model", "dataset", "seed"), rng.uniform(size=(8, 4, 1)))},
        coords={"model": ids, "dataset": sets, "seed": [0]},
    )
    table = reference.compare(sim, probes=probes)
    assert (table[table.quantity == "consistency"].status == "not in run").all()
    beh = table[table.quantity == "behavior_r"].set_index("id")
    assert beh.loc["behavior/cka_linear/Structured", "status"] == "other models"
    assert beh.loc["behavior/cka_linear/Natural (multi-domain)", "status"] == "not in run"
    assert table.set_index("id").loc["design/n_models/all", "status"] == "not the study's count"
    assert beh.loc["behavior/cka_linear/Structured", "run_basis"].endswith(
        "; 0 of them are the study's models"
    )
    text = reference.format_comparison(table)
    assert "shares 0 of its 8 models" in text and "none of its results is comparable" in text
    assert "not in this run" in text
    # the study's design is the study's 64 models, not the run's 8; none of its 11 counts is met
    assert table.attrs["n_study_models_total"] == 64
    assert "(Ciernik et al. 2025, 64 models;" in text
    assert "Design: 0 of 11 counts" in text
    # rows the run cannot compute are listed only on request
    assert "consistency/cka_linear/all/ImageNet-Flowers" not in text
    full = reference.format_comparison(table, all_rows=True)
    assert "consistency/cka_linear/all/ImageNet-Flowers" in full and "not in this run" not in full


def test_cli_compare(repo_root, tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder, shift in ((good, None), (bad, {("cka_rbf_0.4", "Image-Text", 1, 2): 0.40})):
        folder.mkdir()
        study_run(repo_root, shift).to_netcdf(folder / "similarity.nc")
        write_manifest_for(folder)
    assert main(["compare", str(good), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "consistency/cka_linear/all/ImageNet-Flowers" in out and "differ" in out
    assert main(["compare", str(bad)]) == 0
    assert main(["compare", str(bad), "--strict"]) == 1
    out, err = capsys.readouterr()
    assert "consistency/cka_rbf_0.4/Image-Text/Flowers-PCAM" in out
    assert (
        "--strict: exit 1: 1 result outside the tolerance of the study's and 0 design counts" in err
    )
    # a count is not a tolerance: one dataset fewer fails --strict on its 3 counts, not its results
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    sim = study_run(repo_root)
    sim.sel(dataset=[d for d in map(str, sim.dataset.values) if d != "wds/vtab/dtd"]).to_netcdf(
        fewer / "similarity.nc"
    )
    write_manifest_for(fewer)
    assert main(["compare", str(fewer), "--strict"]) == 1
    out, err = capsys.readouterr()
    assert "design/n_datasets/all" in out and "not the study's count" in out
    assert "within tolerance" not in out.split("design/n_datasets/all")[1].splitlines()[0]
    assert "exit 1: 0 results outside the tolerance of the study's and 3 design counts" in err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "similarity.nc does not exist" in capsys.readouterr().err


def test_missing_reference_file_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        reference.load_study_numbers(tmp_path / "none.csv")


@pytest.mark.slow
def test_compare_on_a_real_run_folder(tiny_run, capsys):
    assert main(["compare", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "none of its results is comparable" in out


def test_behavior_rows_leave_out_near_chance_probes(repo_root, tmp_path):
    """On a run folder, compare() applies the behaviour chapter's chance rule before correlating."""
    sim = study_run(repo_root)
    rng = np.random.default_rng(5)
    M, D = sim.sizes["model_a"], sim.sizes["dataset"]
    acc = rng.uniform(0.5, 0.9, size=(M, D, 1)) + rng.uniform(0, 0.01, size=(M, D, 3))
    acc[0, 0] = [0.26, 0.27, 0.26]  # 4 classes: chance 0.25, threshold 0.30 -> near chance
    probes = xr.Dataset(
        {"accuracy": (("model", "dataset", "seed"), acc)},
        coords={"model": sim.model_a.values, "dataset": sim.dataset.values, "seed": [0, 1, 2],
                "domain": ("dataset", sim.domain.values)},
    )  # fmt: skip
    sim.to_netcdf(tmp_path / "similarity.nc")
    probes.to_netcdf(tmp_path / "probes.nc")
    (tmp_path / "stimuli").mkdir()
    for ds in map(str, sim.dataset.values):
        table = pd.DataFrame({"id": [f"{ds}/{i}" for i in range(8)], "label": [0, 1, 2, 3] * 2})
        table.to_csv(RunFolder(tmp_path).stimuli(ds), index=False)
    write_manifest_for(tmp_path)
    table = reference.compare(tmp_path).set_index("id")
    iu, ju = np.triu_indices(M, k=1)
    mean_acc = acc.mean(axis=2)
    r = []
    for k in range(D):
        keep = ~((iu == 0) | (ju == 0)) if k == 0 else np.ones(iu.size, bool)
        s = sim["cka_linear"].values[k][iu, ju][keep]
        gap = np.abs(mean_acc[iu, k] - mean_acc[ju, k])[keep]
        r.append(np.corrcoef(s, gap)[0, 1])
    row = table.loc["behavior/cka_linear/all"]
    assert row["run"] == pytest.approx(np.mean(r), abs=1e-12)
    assert "1 near-chance probes left out" in row["run_basis"]
    # the same probes without class counts (a Dataset, not a folder): nothing is left out
    plain = reference.compare(sim, probes=probes).set_index("id").loc["behavior/cka_linear/all"]
    assert plain["run"] != pytest.approx(row["run"], abs=1e-9)
    assert "class counts unknown" in plain["run_basis"]
    # a Dataset with its class counts given (as the study-numbers chapter passes them) applies
    # the rule and says so, instead of taking probes filtered beforehand for unfiltered ones
    counts = {str(ds): 4 for ds in sim.dataset.values}
    given = reference.compare(sim, probes=probes, n_classes=counts).set_index("id")
    given = given.loc["behavior/cka_linear/all"]
    assert given["run"] == pytest.approx(row["run"], abs=1e-12)
    assert given["run_basis"] == row["run_basis"]


def test_compare_names_a_file_that_is_not_a_similarity_file(tmp_path, capsys):
    wrong, truncated = tmp_path / "wrong.nc", tmp_path / "truncated.nc"
    xr.Dataset({"x": ("a", np.arange(3.0))}).to_netcdf(wrong)
    truncated.write_bytes(wrong.read_bytes()[:40])
    for path, words in ((wrong, "not a similarity file"), (truncated, "not a readable netCDF")):
        assert main(["compare", str(path)]) == 2
        err = capsys.readouterr().err
        assert words in err and str(path) in err and "Traceback" not in err


def _markdown(path) -> str:
    import json

    cells = json.loads(path.read_text())["cells"]
    return " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_confound_counts_in_the_book_match_the_study_models(repo_root) -> None:
    """The controlled-experiment chapter and lesson 7 quote how the study's zoo confounds objective
    with size and data; the counts are read here from the study's model table, so an edit of the
    table or of the text that breaks them fails."""
    raw = yaml.safe_load((repo_root / "data/configs/paper_models.yaml").read_text())
    meta = pd.DataFrame([m["metadata"] for m in raw["models"]])
    ssl = meta[meta["objective"] == "Self-Supervised"]
    text = (
        f"(of the {len(ssl)}, {(ssl['size_class'] == 'small').sum()} are small, "
        f"{(ssl['training_data'] == 'ImageNet1k').sum()} were trained on ImageNet-1k, "
        f"{((ssl['architecture'] == 'ResNet') & (ssl['params_m'] < 30)).sum()} are ResNet-50s)"
    )
    chapter = " ".join(_markdown(repo_root / "notebooks/09_controlled_minizoo.ipynb").split())
    assert text in chapter
    assert (ssl["size_class"] == "small").sum() > len(ssl) / 2  # "mostly small"
    assert (ssl["training_data"] == "ImageNet1k").sum() > len(ssl) / 2  # "trained on ImageNet-1k"

    image_text = meta[meta["objective"] == "Image-Text"]
    small_it = int((image_text["size_class"] == "small").sum())
    big_ssl_more_data = int(
        (ssl["size_class"].isin(["large", "xlarge"]) & (ssl["data_class"] != "ImageNet1k")).sum()
    )
    words = {1: "one", 2: "two", 3: "three"}
    lesson = " ".join(_markdown(repo_root / "book/course/07_confounds_statistics.ipynb").split())
    assert (
        f"the design has {words[small_it]} small image-text model and {words[big_ssl_more_data]} "
        "large self-supervised ones trained on more than ImageNet-1k" in lesson
    )
    assert (image_text["data_class"] != "ImageNet1k").all()  # "trained on web-scale data"


#: The study's numbers quoted in the book's static text, by reference id (the file that quotes them
#: must hold the value as the reference file has it, to two decimals).
QUOTED = {
    "book/intro.md": [
        "consistency/cka_linear/Self-Supervised/ImageNet-Flowers",
        "consistency/cka_linear/Image-Text/ImageNet-Flowers",
        "consistency/cka_linear/Supervised/ImageNet-Flowers",
        "behavior/cka_linear/Natural (single-domain)",
        "behavior/cka_linear/Specialized",
        "behavior/cka_linear/Structured",
    ],
    "notebooks/08_behaviour.ipynb": [
        "behavior/cka_linear/Natural (single-domain)",
        "behavior/cka_linear/Specialized",
        "behavior/cka_linear/Structured",
    ],
    "book/course/05_behaviour.ipynb": [
        "behavior/cka_linear/all",
        "behavior/cka_linear/Natural (single-domain)",
    ],
    "book/course/07_confounds_statistics.ipynb": [
        "consistency/cka_linear/Self-Supervised/ImageNet-Flowers",
        "consistency/cka_linear/Image-Text/ImageNet-Flowers",
        "consistency/cka_linear/Supervised/ImageNet-Flowers",
    ],
}


@pytest.mark.parametrize("path", sorted(QUOTED))
def test_static_text_quotes_the_study_as_the_reference_file_has_it(path):
    """Where the book's own text states a finding of the study, it gives the study's numbers beside
    it (the chapter on behaviour said only "strongest on single-domain datasets"); those numbers are
    the reference file's, so an edit of one cannot leave the other behind."""
    import json
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / path).read_text()
    if path.endswith(".ipynb"):
        cells = json.loads(text)["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    study = reference.load_study_numbers().set_index("id")["value"]
    for ident in QUOTED[path]:
        assert f"{study[ident]:.2f}" in text, f"{path} does not quote {ident} = {study[ident]}"


def test_tolerance_is_the_rows_column_and_inclusive(repo_root):
    """A verdict reads the row's own tolerance column (the behaviour rows' 0.10 is not the
    consistency rows' 0.05), in both directions, and |run - study| equal to the tolerance is within
    it (a 0.05 step from the run's value is a float a hair above 0.05)."""
    sim = study_run(repo_root)
    ref = reference.load_study_numbers()
    row_id = "consistency/cka_linear/all/ImageNet-Flowers"
    run = reference.compare(sim).set_index("id").loc[row_id, "run"]
    i = ref.index[ref["id"] == row_id][0]
    cases = []  # (study value, tolerance, expected status)
    for step, tol in ((0.08, 0.10), (-0.08, 0.10), (0.05, 0.05), (-0.05, 0.05), (0.10, 0.10)):
        cases.append((run + step, tol, "within tolerance"))
    for step, tol in ((0.08, 0.05), (-0.0501, 0.05), (0.1001, 0.10)):
        cases.append((run + step, tol, "outside tolerance"))
    for value, tol, expected in cases:
        table = ref.copy()
        table.loc[i, ["value", "tolerance"]] = [value, tol]
        row = reference.compare(sim, reference=table).set_index("id").loc[row_id]
        assert row["status"] == expected, (value - run, tol)
        assert row["difference"] == pytest.approx(run - value, abs=1e-12)
        assert row["tolerance"] == tol


def test_nan_pair_on_either_dataset_or_within_a_group(repo_root):
    """A model pair NaN on the second dataset of a row only, or between two models of one
    objective, is a pair lost from that row (and only from the rows that use it)."""
    sim = study_run(repo_root)
    models = reference.study_models()
    ids = [str(m) for m in sim.model_a.values]
    sup = [k for k, m in enumerate(ids) if models[m] == "Supervised"]
    pcam = [str(d) for d in sim.dataset.values].index("wds/vtab/pcam")
    p, q = sup[-2], sup[-1]
    sim["cka_linear"][pcam, p, q] = sim["cka_linear"][pcam, q, p] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN"):
        table = reference.compare(sim).set_index("id")
    for rows, n, pairs in (("all", 64, 2016), ("Supervised", 30, 435)):
        for pair in ("ImageNet-PCAM", "Flowers-PCAM"):
            row = table.loc[f"consistency/cka_linear/{rows}/{pair}"]
            assert row["status"] == "subset of the study's model pairs"
            assert row["run_basis"].startswith(f"{n} models, {pairs - 1} pairs; 1 of the study's")
        assert table.loc[f"consistency/cka_linear/{rows}/ImageNet-Flowers", "status"] == (
            "within tolerance"
        )
    for group in ("Self-Supervised", "Image-Text"):
        rows = table[table.index.str.startswith(f"consistency/cka_linear/{group}/")]
        assert (rows.status == "within tolerance").all()


def test_extra_datasets_are_other_datasets(repo_root):
    """A behaviour mean over the study's datasets and more is not over the study's datasets."""
    sim = study_run(repo_root)
    extra = sim.isel(dataset=[0]).assign_coords(
        dataset=["shapes"], dataset_name=("dataset", ["Shapes"])
    )
    more = xr.concat([sim, extra], dim="dataset")
    probes, _ = random_probes(more)
    table = reference.compare(more, probes=probes).set_index("id")
    domain = str(sim.domain.values[0])
    for row_id in ("all", domain):
        row = table.loc[f"behavior/cka_linear/{row_id}"]
        n = 23 if row_id == "all" else int((sim.domain.values == domain).sum())
        assert row["status"] == "other datasets"
        assert f"{n} of them are the study's datasets" in row["run_basis"]
    # the consistency rows read their two datasets only
    assert (table[table.quantity == "consistency"].status == "within tolerance").all()


def test_behavior_dataset_with_undefined_r_is_missing(repo_root):
    """A dataset whose r is undefined (constant probe accuracy) is not in the mean: the row rests
    on the domain's other datasets, and says so."""
    sim = study_run(repo_root)
    probes, acc = random_probes(sim)
    dtd = [str(d) for d in sim.dataset.values].index("wds/vtab/dtd")
    probes["accuracy"][:, dtd, :] = 0.5
    table = reference.compare(sim, probes=probes).set_index("id")
    row = table.loc["behavior/cka_linear/Structured"]
    assert row["status"] == "subset of the study's datasets"
    assert row["run_basis"].startswith("2 datasets, 64 models")
    assert "(missing wds/vtab/dtd)" in row["run_basis"]


def test_smallest_group_with_enough_pairs_is_computed(repo_root):
    """Three models of an objective make MIN_PAIRS (3) pairs: the row is computed, on a subset."""
    sim = study_run(repo_root)
    models = reference.study_models()
    it = [m for m in map(str, sim.model_a.values) if models[m] == "Image-Text"]
    keep = [m for m in map(str, sim.model_a.values) if models[m] != "Image-Text"] + it[:3]
    table = reference.compare(sim.sel(model_a=keep, model_b=keep)).set_index("id")
    row = table.loc["consistency/cka_linear/Image-Text/ImageNet-Flowers"]
    S = sim["cka_linear"].sel(model_a=it[:3], model_b=it[:3])
    i, j = np.triu_indices(3, k=1)
    a = S.sel(dataset="imagenet-subset-10k").values[i, j]
    b = S.sel(dataset="wds/vtab/flowers").values[i, j]
    assert row["run"] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert row["status"] == "subset of the study's models"
    assert row["run_basis"].startswith("3 models, 3 pairs; 3 of the study's 14 models (11 missing)")
    for n in (2, 0):
        fewer = keep[: len(keep) - 3 + n]
        table = reference.compare(sim.sel(model_a=fewer, model_b=fewer)).set_index("id")
        row = table.loc["consistency/cka_linear/Image-Text/ImageNet-Flowers"]
        assert row["status"] == "not in run"
        assert row["run_basis"] == f"{n} Image-Text models in the run: too few pairs"


def test_summary_of_a_run_short_of_models(repo_root):
    """A run lacking some of the study's models in every group: every result rests on a subset of
    them, and the summary says the run shares N of its models; a run lacking only the DINO models
    keeps the verdicts of the complete groups and counts them."""
    sim = study_run(repo_root)
    models = reference.study_models()
    first = {g: next(m for m in models if models[m] == g) for g in set(models.values())}
    keep = [m for m in map(str, sim.model_a.values) if m not in first.values()]
    table = reference.compare(sim.sel(model_a=keep, model_b=keep))
    assert table.attrs["n_study_models"] == 61 and table.attrs["n_study_models_total"] == 64
    row = table.set_index("id").loc["consistency/cka_linear/Self-Supervised/ImageNet-PCAM"]
    assert row["run_basis"].endswith("19 of the study's 20 models (1 missing)")
    text = reference.summary(table)
    assert (
        "The run shares 61 of its 61 models with the study, so none of its results is comparable "
        "with the study's values (24 are shown for orientation only)." in text
    )
    # the DINO models are self-supervised: the other groups' 2 x 2 x 3 rows keep their verdict
    keep = [m for m in map(str, sim.model_a.values) if not m.startswith("dino")]
    assert {models[m] for m in models if m not in keep} == {"Self-Supervised"}
    text = reference.summary(reference.compare(sim.sel(model_a=keep, model_b=keep)))
    assert "none of its results is comparable" not in text
    assert "24 of 29 published results could be computed" in text
    assert "12 are set against the study's value (12 within tolerance, 0 outside" in text
    assert "12 results rest on other or fewer models" in text
    assert "(12 subset of the study's models)" in text


def test_summary_counts_design_rows_and_names_the_earlier_run(repo_root):
    """'Design: k of 11' counts the counts within tolerance only; the behaviour numbers' earlier run
    is named by its models and its largest number of datasets."""
    sim = study_run(repo_root)
    keep = [d for d in map(str, sim.dataset.values) if d != "wds/vtab/dtd"]
    table = reference.compare(sim.sel(dataset=keep))
    # off by DTD: n_datasets/all (22), n_datasets/Structured (2), n_dataset_pairs/all (231)
    text = reference.summary(table)
    assert "Design: 8 of 11 counts (models, datasets, pairs) are the study's." in text
    assert "5 of its numbers are from its earlier run with 62 models, 25 datasets)" in text
    # the earlier run's size is its largest number of datasets, also with a row over fewer
    ref = reference.load_study_numbers()
    ref.loc[ref["id"] == "behavior/cka_linear/Specialized", "n_datasets"] = "4"
    text = reference.summary(reference.compare(sim, reference=ref))
    assert "earlier run with 62 models, 25 datasets)" in text


def test_models_blank_means_all(repo_root):
    """A reference row with no model group (``models`` empty) is over all models, like 'all'."""
    sim = study_run(repo_root)
    ref = reference.load_study_numbers()
    base = reference.compare(sim, reference=ref)
    blank = ref.assign(models=ref["models"].replace("all", ""))
    table = reference.compare(sim, reference=blank)
    pd.testing.assert_series_equal(table.status, base.status)
    np.testing.assert_allclose(table.run, base.run, atol=1e-12)


def test_row_with_one_dataset_missing_is_not_in_run(repo_root):
    """A consistency row needs both its datasets: one missing is 'not in run' and named."""
    sim = study_run(repo_root)
    keep = [d for d in map(str, sim.dataset.values) if d != "wds/vtab/pcam"]
    table = reference.compare(sim.sel(dataset=keep)).set_index("id")
    for pair, status in (("ImageNet-PCAM", "not in run"), ("Flowers-PCAM", "not in run"),
                         ("ImageNet-Flowers", "within tolerance")):  # fmt: skip
        row = table.loc[f"consistency/cka_linear/Supervised/{pair}"]
        assert row["status"] == status
        if status == "not in run":
            assert row["run_basis"] == "dataset wds/vtab/pcam not in the run"


def test_summary_of_a_run_short_of_models_and_pairs(repo_root):
    """No verdict because of missing models in some rows and missing model pairs in others: the
    summary names both, not only the models."""
    sim = study_run(repo_root)
    models = reference.study_models()
    ssl = next(m for m in models if models[m] == "Self-Supervised")
    keep = [m for m in map(str, sim.model_a.values) if m != ssl]
    sim = sim.sel(model_a=keep, model_b=keep).copy(deep=True)
    datasets = [str(d) for d in sim.dataset.values]
    for group in ("Supervised", "Image-Text"):
        p, q = [k for k, m in enumerate(keep) if models[m] == group][:2]
        for measure in ("cka_linear", "cka_rbf_0.4"):
            for d in ("imagenet-subset-10k", "wds/vtab/pcam"):
                k = datasets.index(d)
                sim[measure][k, p, q] = sim[measure][k, q, p] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN"):
        table = reference.compare(sim)
    text = reference.summary(table)
    assert "none of its results is comparable" not in text
    assert (
        "24 results rest on other or fewer models, model pairs or datasets than the study's and "
        "have no verdict (12 subset of the study's models, 12 subset of the study's model pairs)"
    ) in text


def test_run_without_objectives_compares_all_models_only(repo_root):
    """Without objective coords the group rows and group counts cannot be computed and say why;
    the rows over all models still are; a group the run has no model of says so."""
    sim = study_run(repo_root).drop_vars(["objective_a", "objective_b"])
    table = reference.compare(sim).set_index("id")
    row = table.loc["consistency/cka_linear/Supervised/ImageNet-Flowers"]
    assert row["status"] == "not in run" and row["run_basis"] == "the run has no objective_a coord"
    assert table.loc["design/n_models/Supervised", "status"] == "not in run"
    assert table.loc["consistency/cka_linear/all/ImageNet-Flowers", "status"] == "within tolerance"


def test_objective_labels_other_than_the_study_s(repo_root):
    """A run that labels a study model with another objective has, for that objective, models
    that are not the study's models of it: 'other models', not a subset (the row said '21 of the
    study's 20 models (-1 missing)')."""
    sim = study_run(repo_root)
    models = reference.study_models()
    obj = [str(o) for o in sim.objective_a.values]
    k = next(i for i, m in enumerate(sim.model_a.values) if models[str(m)] == "Supervised")
    obj[k] = "Self-Supervised"
    relabelled = sim.assign_coords(objective_a=("model_a", obj), objective_b=("model_b", obj))
    table = reference.compare(relabelled).set_index("id")
    row = table.loc["consistency/cka_linear/Self-Supervised/ImageNet-Flowers"]
    assert row["status"] == "other models", row["run_basis"]
    row = table.loc["consistency/cka_linear/Supervised/ImageNet-Flowers"]
    assert row["status"] == "subset of the study's models"
    assert "29 of the study's 30 models (1 missing)" in row["run_basis"]
    assert table.loc["design/n_models/Self-Supervised", "status"] == "not the study's count"


def test_datasets_found_by_name(repo_root):
    """A run that names the study's datasets by other ids but carries their names (the
    ``dataset_name`` coord, as ``paper_datasets.yaml`` gives them) is compared on them: the same
    values and statuses as under the study's ids. The consistency rows looked ImageNet up by the
    reference file's name ('ImageNet-1k') only, not by the name the run and the behaviour rows
    carry ('ImageNet-1k (10 per class; ...)'): all 16 ImageNet rows were 'not in run'; the
    behaviour rows knew only that name, and a run carrying the reference file's got 'other
    datasets' there."""
    sim = study_run(repo_root)
    probes, _ = random_probes(sim)
    base = reference.compare(sim, probes=probes).set_index("id")
    assert (base.status != "not in run").all()
    ids = [f"set{k}" for k in range(sim.sizes["dataset"])]
    renamed = sim.assign_coords(dataset=ids)
    table = reference.compare(renamed, probes=probes.assign_coords(dataset=ids)).set_index("id")
    pd.testing.assert_series_equal(table.status, base.status)
    np.testing.assert_allclose(table.run, base.run, atol=1e-12)
    # the reference file's own name of a dataset is found too
    names = [str(n) for n in renamed.dataset_name.values]
    names[[str(d) for d in sim.dataset.values].index("imagenet-subset-10k")] = "ImageNet-1k"
    short = renamed.assign_coords(dataset_name=("dataset", names))
    table = reference.compare(short, probes=probes.assign_coords(dataset=ids)).set_index("id")
    consistency = table[table.quantity == "consistency"]
    assert (consistency.status == "within tolerance").all()
    np.testing.assert_allclose(consistency.run, base.run[consistency.index], atol=1e-12)
    # and so do the behaviour rows, which knew ImageNet only by paper_datasets.yaml's name: the
    # same statuses and values as under the study's ids (they were "other datasets")
    pd.testing.assert_series_equal(table.status, base.status)
    np.testing.assert_allclose(table.run, base.run, atol=1e-12)


def test_run_with_one_measure_and_no_domains(repo_root):
    """A measure the run lacks makes its rows 'not in run' and named; without a domain coord the
    per-domain counts cannot be computed, the counts over all datasets still are."""
    sim = study_run(repo_root)[["cka_linear"]].drop_vars("domain")
    table = reference.compare(sim).set_index("id")
    rbf = table[table.index.str.startswith("consistency/cka_rbf_0.4/")]
    assert len(rbf) == 12 and (rbf.status == "not in run").all()
    assert (rbf.run_basis == "no measure cka_rbf_0.4 in the run").all()
    linear = table[table.index.str.startswith("consistency/cka_linear/")]
    assert (linear.status == "within tolerance").all()
    assert table.loc["design/n_datasets/Structured", "status"] == "not in run"
    assert table.loc["design/n_datasets/all", "status"] == "the study's count"
    assert table.loc["design/n_dataset_pairs/all", "run"] == 23 * 22 / 2


def test_a_spearman_row_is_computed_with_spearman(repo_root):
    """A reference row's method is honoured: a Spearman row (none ships, but a user's table may
    hold one) gets the rank correlation of the two datasets' model-pair similarities, written
    out here with scipy; computed as Pearson it would differ."""
    from scipy.stats import pearsonr, spearmanr

    sim = study_run(repo_root)
    ref = reference.load_study_numbers()
    row_id = "consistency/cka_linear/Supervised/ImageNet-Flowers"
    ref.loc[ref["id"] == row_id, "method"] = "spearman"
    table = reference.compare(sim, reference=ref).set_index("id")
    row = ref.set_index("id").loc[row_id]
    models = [m for m, o in reference.study_models().items() if o == "Supervised"]
    names = {str(d): str(d) for d in sim.dataset.values}
    a, b = (
        next(d for d in names if row[key].lower() in d.lower() or row[key + "_name"] in d)
        for key in ("dataset_a", "dataset_b")
    )
    vals = sim["cka_linear"].sel(dataset=[a, b], model_a=models, model_b=models).values
    i, j = np.triu_indices(len(models), k=1)
    want = spearmanr(vals[0][i, j], vals[1][i, j]).statistic
    assert table.loc[row_id, "run"] == pytest.approx(want, abs=1e-12)
    assert abs(want - pearsonr(vals[0][i, j], vals[1][i, j]).statistic) > 1e-3


def test_format_comparison_shows_values_on_the_side_of_their_tolerance():
    """`repsim compare` printed a run value of 0.7504 (difference 0.0504, tolerance 0.05) as
    0.750 and 0.050 beside "outside tolerance"."""
    table = pd.DataFrame(
        {
            "id": ["a", "b"],
            "quantity": ["consistency", "consistency"],
            "study": [0.70, 0.70],
            "run": [0.7504, 0.7204],
            "difference": [0.0504, 0.0204],
            "tolerance": [0.05, 0.05],
            "status": ["outside tolerance", "within tolerance"],
            "run_basis": ["x", "y"],
        }
    )
    text = reference.format_comparison(table)
    row = next(line for line in text.splitlines() if line.startswith(" a "))
    assert "0.7504" in row and "0.0504" in row and "outside tolerance" in row
    row = next(line for line in text.splitlines() if line.startswith(" b "))
    assert "0.720" in row and "0.020" in row


def test_a_chapter_s_part_of_a_run_is_named_as_the_part(repo_root, tmp_path):
    """Chapter 2 on a selection (its models/datasets parameters) said a dataset the part left out
    was 'not in the run', counted 'this run's' design and results: the part is named as such,
    and a whole run keeps its wording."""
    from repsim.analysis import study_beside_run
    from repsim.chapter import Run

    sim = study_run(repo_root)
    keep = [d for d in map(str, sim.dataset.values) if d != "wds/vtab/pcam"]
    part = "64 of 64 models and 22 of 23 datasets"
    run = Run(path=tmp_path, similarity=sim.sel(dataset=keep), selection=part)
    table = reference.compare(run)
    rows = table.set_index("id")
    row = rows.loc["consistency/cka_linear/Supervised/ImageNet-PCAM"]
    assert row["run_basis"] == "dataset wds/vtab/pcam not in this part of the run"
    assert table.attrs["selection"] == part
    counts = rows.loc[rows["quantity"].isin(reference.COUNTS), "run_basis"]
    assert (counts == "the design of this part of the run").all()
    said = reference.summary(table)
    assert said.startswith(f"Run 'study-shaped', this chapter's part of the run ({part}), against")
    assert "could be computed on it;" in said and "this run" not in said
    shown = study_beside_run(table, "consistency")
    assert {"this part of the run", "basis of this part's value"} <= set(shown.columns)
    assert "this run" not in shown.columns and "not in run" not in set(shown["status"])
    assert "not in this part" in set(shown["status"])
    whole = reference.compare(sim.sel(dataset=keep))
    assert whole.attrs["selection"] == ""
    row = whole.set_index("id").loc["consistency/cka_linear/Supervised/ImageNet-PCAM"]
    assert row["run_basis"] == "dataset wds/vtab/pcam not in the run"
    assert "could be computed on this run;" in reference.summary(whole)
    assert "this run" in study_beside_run(whole, "consistency").columns
