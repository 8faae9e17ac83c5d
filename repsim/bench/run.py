"""``repsim bench run``: the end-to-end pipeline on a config, timed by stage (cold, then cached)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from repsim.argtypes import DEVICE_HELP, Parser
from repsim.runfolder import check_output_path, check_path_option, write_output

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "data" / "configs" / "embedded.yaml"


def run(
    config: str | Path = DEFAULT_CONFIG, device: str | None = None, out: str | Path | None = None
) -> dict[str, Any]:
    """Run ``config`` into a fresh folder, then again (everything cached); return both timings."""
    from repsim.pipeline import run as run_pipeline
    from repsim.runfolder import RunFolder

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out) if out else Path(tmp) / "run"
        t0 = time.perf_counter()
        run_pipeline(config, run_dir, device=device)
        cold = time.perf_counter() - t0
        stages = RunFolder(run_dir).read_info()["timings_s"]
        t0 = time.perf_counter()
        run_pipeline(config, run_dir, device=device)
        warm = time.perf_counter() - t0
    return {
        "benchmark": "run",
        "config": str(config),
        "cold_s": cold,
        "cached_rerun_s": warm,
        "stages_s": stages,
        "ratio_cold_over_cached": cold / warm,
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="repsim bench run", description=__doc__)
    parser.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        help="the config to run (default: data/configs/embedded.yaml)",
    )
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    check_path_option(args.config, "--config", "read")
    check_output_path(args.json, "--json")
    result = run(args.config, args.device)
    print(
        f"end-to-end run of {result['config']}: {result['cold_s']:.1f} s cold, "
        f"{result['cached_rerun_s']:.1f} s cached rerun (ratio {result['ratio_cold_over_cached']:.0f}x)"
    )
    for stage, seconds in result["stages_s"].items():
        print(f"  {stage:<28} {seconds:8.1f} s")
    if args.json:
        write_output(args.json, json.dumps(result, indent=1), "--json")
    return 0
