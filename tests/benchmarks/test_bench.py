"""The benchmark plumbing on CPU with tiny sizes: projection arithmetic, report files, ``bench all``.

No test here touches CUDA: the GPU suite's functions take ``device`` and run tiny on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repsim.bench import Benchmark, apply_overrides, default_sizes, gpu, run_all, run_benchmarks
from repsim.bench.report import markdown_table, render_markdown, write_report
from repsim.config import load_config
from repsim.errors import ConfigError
from repsim.runinfo import machine_info

REPO = Path(__file__).resolve().parents[2]


def _figures(probe_points: list[dict]) -> dict:
    return {
        "extract": {
            "models": {
                "resnet50": {"whole_img_s": 100.0},
                "vit_large_patch14_clip_224": {"whole_img_s": 50.0},
            }
        },
        "similarity": {"n": 1000, "pairs": 1, "measures": {"cka_linear": {"seconds": 2.0}}},
        "probe": {"points": probe_points},
    }


def test_projection_arithmetic_by_hand() -> None:
    models = [
        gpu.StudyModel("cnn", 100, 25.6, "Convolutional"),
        gpu.StudyModel("big", 200, 608.0, "Transformer"),
    ]
    datasets = [
        gpu.DatasetSize(
            "d1", n_train=1000, n_test=200, n_classes=10, source="test", n_similarity=500
        )
    ]
    assumptions = gpu.Assumptions(gpus=(1, 2), measures=("cka_linear", "mutual_knn_10"))
    figs = _figures([{"n": 1000, "dim": 100, "classes": 10, "seconds": 1.0}])
    p = gpu.project(figs, models, datasets, assumptions)
    # rates: cnn 100 img/s (resnet50); big: vit_large 50 img/s * 304/608 = 25 img/s
    # similarity: 2 measures x 2 s x (500/1000)^2 x (1 pair / 1 pair) = 1 s
    # probe: a = 1 s / (1000*100*10); cnn 1 s, big (d=200) 2 s
    assert p["stage_gpu_s"] == pytest.approx(
        {
            "extract_similarity_stimuli": 5 + 20,
            "similarity": 1.0,
            "extract_train_test": 12 + 48,
            "probes": 3.0,
        }
    )
    assert p["gpu_s"] == pytest.approx({"similarity_part": 26.0, "full_study": 64.0})
    assert p["wall_s"]["similarity_part"][1] == pytest.approx(26.0)
    assert p["wall_s"]["similarity_part"][2] == pytest.approx(
        20 + 0.5
    )  # longest extraction, then 0.5 s each
    assert p["wall_s"]["full_study"][2] == pytest.approx(48 + 0.5 + 2)
    assert p["targets"]["similarity_met"] and p["targets"]["study_met"]
    text = gpu.format_projection(p)
    assert "Assumptions:" in text and "d1: 1,000 / 200 / 10 / 500 (test)" in text


def test_probe_cost_fit_recovers_both_terms() -> None:
    a, b = 2e-9, 3e-7
    points = [
        {"n": n, "dim": d, "classes": c, "seconds": a * n * d * c + b * n * d}
        for n, d, c in ((10_000, 768, 100), (20_000, 768, 1000))
    ]
    fit = gpu._fit_probe(points)
    assert fit == pytest.approx((a, b), rel=1e-6)
    assert gpu.probe_seconds(1000, 10, 10, fit) == pytest.approx(a * 1e5 + b * 1e4)
    with pytest.raises(ConfigError, match="probe"):
        gpu._fit_probe([])


def test_makespan_longest_first() -> None:
    assert gpu.makespan([4, 3, 3], 1) == 10
    assert gpu.makespan([4, 3, 3], 2) == 6
    assert gpu.makespan([], 8) == 0
    with pytest.raises(ConfigError):
        gpu.makespan([1.0], 0)


def test_study_tables_match_the_configs() -> None:
    models = gpu.study_models()
    assert len(models) == 64 and all(m.embed_dim > 0 for m in models)
    cfg = load_config(REPO / "data" / "configs" / "paper.yaml")
    assert {d.id for d in gpu.STUDY_DATASETS} == {d["id"] for d in cfg["datasets"]}
    classes = {d["id"]: d.get("n_classes") for d in cfg["datasets"]}
    assert all(classes[d.id] == d.n_classes for d in gpu.STUDY_DATASETS)
    assert next(d for d in gpu.STUDY_DATASETS if d.id == "imagenet-subset-10k").similarity == 10_000


def test_report_files(tmp_path: Path) -> None:
    report = {
        "title": "t",
        "machine": machine_info("cpu"),
        "benchmarks": {
            "good": {
                "status": "ok",
                "seconds": 1.0,
                "tables": [(["a", "b"], [["1", "x|y"]])],
                "result": {"v": 1.5},
            },
            "bad": {"status": "failed", "seconds": 0.1, "error": "RuntimeError: boom"},
        },
        "extra_markdown": "## Projection\n\ntext",
    }
    json_path, md_path = write_report(report, tmp_path / "out", "bench")
    data = json.loads(json_path.read_text())
    assert (
        data["benchmarks"]["good"]["result"]["v"] == 1.5
        and data["machine"]["cpu_cores_logical"] >= 1
    )
    md = md_path.read_text()
    assert md == render_markdown(report)
    for needle in (
        "| CPU |",
        "| torch |",
        "| CUDA |",
        "## good",
        "| 1 | x\\|y |",
        "**failed**",
        "RuntimeError: boom",
        "## Projection",
    ):
        assert needle in md
    assert markdown_table(["h"], [[1]]) == "| h |\n|---|\n| 1 |"


def test_run_benchmarks_goes_on_after_a_failure() -> None:
    def boom(device: str, **kw: object) -> dict:
        raise RuntimeError("no pipeline yet")

    registry = {
        "bad": Benchmark(boom, lambda r: [], "fails"),
        "good": Benchmark(
            lambda device, **kw: {"device": device, **kw},
            lambda r: [(["k"], [[str(r["x"])]])],
            "ok",
        ),
    }
    out = run_benchmarks(["bad", "good"], "cpu", {"good": {"x": 3}}, registry)
    assert out["bad"]["status"] == "failed" and "no pipeline yet" in out["bad"]["error"]
    assert out["good"]["status"] == "ok" and out["good"]["result"] == {"device": "cpu", "x": 3}


def test_sizes_and_overrides() -> None:
    cpu, cuda = default_sizes("cpu"), default_sizes("cuda")
    assert cpu["measures"]["n"] == 2000 and cuda["measures"]["n"] == 5000
    assert default_sizes("cpu", full=True) == cuda
    sizes = apply_overrides(cpu, ["measures.n=5000", "probe.seeds=[0]", "measures.measures=[rsa]"])
    assert sizes["measures"]["measures"] == ["rsa"]  # an option without a default size
    assert sizes["measures"]["n"] == 5000 and sizes["probe"]["seeds"] == [0]
    for bad in ("measures=3", "nope.n=1", "measures.=1"):
        with pytest.raises(ConfigError):
            apply_overrides(default_sizes("cpu"), [bad])
    # values are read as config values are: 1e4 is a number, and a count stays an integer
    sizes = apply_overrides(default_sizes("cpu"), ["measures.n=1e4", "probe.dim=5.12e2"])
    assert sizes["measures"]["n"] == 10_000 and type(sizes["measures"]["n"]) is int
    assert sizes["probe"]["dim"] == 512 and type(sizes["probe"]["dim"]) is int
    for bad, why in (
        ("measures.n=1e4x", "whole number"),
        ("measures.n=2.5", "whole number"),
        ("measures.n=-5", "whole number >= 0"),  # "negative dimensions" inside the benchmark
        ("measures.nope=5", "measures has no option 'nope'; choose from models, n, dim"),
        ("run.n=5", "run has no option 'n'; choose from config, out"),
    ):
        with pytest.raises(ConfigError, match=why):  # a TypeError inside the benchmark before
            apply_overrides(default_sizes("cpu"), [bad])


def test_run_all_tiny_measures_and_a_failing_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--only",
        "measures",
        "run",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--set",
        "measures.models=3",
        "--set",
        "measures.n=40",
        "--set",
        "measures.dim=8",
        "--set",
        "measures.naive_pairs=1",
        "--set",
        f"run.config={tmp_path / 'missing.yaml'}",
    ]
    assert (
        run_all(argv) == 1
    )  # the run benchmark fails on the missing config; measures still reported
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["benchmarks"]["measures"]["status"] == "ok"
    assert data["benchmarks"]["measures"]["result"]["naive_pairs_total"] == 3
    assert data["benchmarks"]["run"]["status"] == "failed"
    out = capsys.readouterr().out
    assert "## measures" in out and "**failed**" in out and "failed: run" in out


@pytest.mark.slow
def test_gpu_suite_runs_tiny_on_cpu(tmp_path: Path) -> None:
    sizes = {
        "extract": {"models": ["resnet50"], "n_images": 2, "batch_size": 2, "image_size": 64},
        "similarity": {"n": 60, "models": 4, "naive_pairs": 1},
        "probe": {
            "n": 200,
            "dim": 16,
            "classes": 5,
            "seeds": [0],
            "epochs": 1,
            "settings": 4,
            "sequential": 1,
            "scale_point": [400, 16, 20],
            "study": {
                "ns": [1024, 10**9],
                "dims": [8, 16],
                "classes": 5,
                "steps": 1,
                "precisions": ["float32", "bfloat16"],
                "precision_check": {"n": 300, "dim": 8, "classes": 3, "n_test": 300, "epochs": 1},
                "memory_budget_gb": 1.0,
            },
        },
        "decode_once": {"models": ["resnet50"], "n_images": 4, "batch_size": 2, "repeats": 1},
    }
    report = gpu.run_suite("cpu", sizes=sizes)
    assert all(e["status"] == "ok" for e in report["benchmarks"].values()), report["benchmarks"]
    sim = report["benchmarks"]["similarity"]["result"]
    assert sim["pairs"] == 6 and set(sim["measures"]) == set(gpu.SIMILARITY_MEASURES)
    assert sim["measures"]["cka_linear"]["max_abs_diff_vs_naive"] < 1e-6
    assert len(report["benchmarks"]["probe"]["result"]["points"]) == 2
    probe = report["benchmarks"]["probe"]["result"]
    assert {p["n"] for p in probe["study"]["float32"]["points"]} == {1024}  # 10**9 rows skipped
    assert probe["study"]["bfloat16"]["skipped"][0]["n"] == 10**9
    decode = report["benchmarks"]["decode_once"]["result"]
    assert decode["chunk_major"]["decoded"] == 4 and decode["per_model"]["decoded"] == 4
    proj = report["projection"]
    assert proj["models"] == 64 and proj["datasets"] == 23 and proj["gpu_s"]["full_study"] > 0
    assert proj["probe_model"] == "steps x fitted step cost"
    assert set(proj["probes_gpu_s_by_precision"]) == {"float32", "bfloat16"}
    _, md = write_report(report, tmp_path, "bench-gpu")
    text = md.read_text()
    assert (
        "## Projection: 64 models x 23 datasets" in text and "### Measured and extrapolated" in text
    )
    assert "not measured (over 1 GB)" in text and "bfloat16 accuracy check" in text
    # on a CPU the same tables say first that they are not GPU-hours
    assert proj["dry_run"] == gpu.DRY_RUN_NOTE and f"**{gpu.DRY_RUN_NOTE}**" in text
    assert text.index(gpu.DRY_RUN_NOTE) < text.index("## Projection: 64 models")


def test_gpu_suite_skips_the_projection_without_all_parts() -> None:
    report = gpu.run_suite(
        "cpu", only=["similarity"], sizes={"similarity": {"n": 30, "models": 3, "naive_pairs": 0}}
    )
    assert "projection" not in report and "not computed" in report["extra_markdown"]
    with pytest.raises(ConfigError, match="unknown parts"):
        gpu.run_suite("cpu", only=["nope"])


@pytest.mark.slow
def test_gpu_check_script_dry_runs_on_cpu(tmp_path: Path) -> None:
    # without CUDA the prepared GPU check runs the suite at its tiny CPU sizes, end to end
    import os
    import subprocess

    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OUT": str(tmp_path),
        "GPU_CHECK_TIMEOUT": "900",
    }
    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "benchmarks" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "== suite exit status 0" in out and "### Measured and extrapolated" in out
    assert "study size, bfloat16" in out and "images decoded" in out
    assert (tmp_path / "bench-gpu" / "bench-gpu.json").is_file()


def test_gpu_suite_names_a_missing_package_before_measuring(tmp_path: Path) -> None:
    # a GPU image with PyTorch but without zarr (the feature store): the suite stops at once with
    # the package, the parts that need it and the fix, instead of spending GPU minutes on the other
    # parts and reporting no projection. A fresh interpreter, so that the imports are real.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['zarr'] = None\n"
        "from repsim.bench import gpu\n"
        "from repsim.errors import ConfigError\n"
        "print(gpu.missing_modules(['extract', 'similarity', 'probe', 'decode_once']))\n"
        "try:\n"
        "    gpu.run_suite('cpu')\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "{'zarr': ['extract', 'decode_once']}"
    assert lines[1].startswith("refused: the GPU suite cannot start: missing packages zarr")
    assert "device_wheels.sh" in lines[1]
    # with everything importable nothing is missing (so the check cannot refuse a good machine)
    assert gpu.missing_modules(list(gpu.PART_IMPORTS)) == {}


def test_device_wheels_refuses_a_package_without_a_pin() -> None:
    # the wheels must be the versions the suite was tested with: an unpinned name stops before pip
    import subprocess

    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "benchmarks" / "device_wheels.sh"), "no-such-package"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no-such-package is not pinned in constraints.txt" in proc.stderr


def test_projection_prices_a_clip_model_by_its_image_tower() -> None:
    # the published 102.0 M of OpenCLIP RN50 counts its text tower; extraction runs the 38.3 M
    # image tower, so its projected rate is resnet50's scaled by 25.6 / 38.3, not by 25.6 / 102.0
    models = {m.id: m for m in gpu.study_models()}
    assert len(models) == 64
    rn50 = models["OpenCLIP_RN50_openai"]
    assert rn50.params_m == pytest.approx(38.3)
    rate = gpu.model_rate(rn50, {"resnet50": 100.0})
    assert rate == pytest.approx(100.0 * 25.6 / 38.3)
    assert models["Kakaobrain_Align"].params_m == pytest.approx(
        62.1
    )  # published for the image tower


def test_bench_probe_takes_auto_and_the_default_for_the_gpu_they_pick(monkeypatch) -> None:
    """``--device auto`` (the help's default) read as a CPU: a probe bench on a GPU given it
    measured the CPU's sizes instead of the study's."""
    import torch

    from repsim.bench import probe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert probe._on_gpu("auto") and probe._on_gpu(None) and probe._on_gpu("cuda")
    assert not probe._on_gpu("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not probe._on_gpu("auto") and not probe._on_gpu(None)
    # and the benchmark runs on it (torch.device("auto") was a RuntimeError with a traceback)
    res = probe.run(n=64, dim=4, classes=2, settings=2, epochs=1, seeds=(0,), device="auto",
                    sequential=1)  # fmt: skip
    assert res["n"] == 64
