"""``benchmarks/seed_table.py``: mean ± sd over benchmark runs, offline and online rows."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_scripts import benchmark_script


def _run(folder: Path, rmse: float) -> Path:
    (folder / "results").mkdir(parents=True)
    for name, shift in (("graph-meta", 0.0), ("graph-meta online", -0.1)):
        res = {"model": name, "scenarios": {"warm": {"rmse": rmse + shift}}}
        (folder / "results" / f"{name}.json").write_text(json.dumps(res))
    (folder / "speed.json").write_text(json.dumps({"observe_rescore_ms_p50": rmse}))
    return folder


def test_mean_and_sample_sd_per_model_and_scenario(tmp_path: Path) -> None:
    runs = [_run(tmp_path / f"s{k}", v) for k, v in enumerate((0.8, 0.9, 1.0))]
    text = benchmark_script("seed_table").table(runs, "rmse", 3)
    lines = text.splitlines()
    assert lines[2].startswith("| graph-meta | 0.900 ± 0.100 | - |")
    assert lines[3].startswith("| graph-meta online | 0.800 ± 0.100 | - |")
    assert "observe_rescore_ms_p50: 0.90 ± 0.10" in benchmark_script("seed_table").speed(runs, 2)


def test_few_shot_curves_per_support_size(tmp_path: Path) -> None:
    runs = []
    for n, values in enumerate(([0.1, 0.3], [0.2, 0.5])):
        run = tmp_path / f"s{n}"
        (run / "results").mkdir(parents=True)
        curve = {"1": {"recall@20": values[0]}, "all": {"recall@20": values[1]}}
        (run / "results" / "m.json").write_text(json.dumps(
            {"model": "m", "few_shot": {"user_cold": curve, "warm": {}}}))
        (run / "results" / "flat.json").write_text(json.dumps({"model": "flat"}))
        runs.append(run)
    text = benchmark_script("seed_table").few_shot_table(runs, "recall@20", 3, "user_cold")
    assert "| K=1 | K=all |" in text
    assert "| m | 0.150 ± 0.071 | 0.400 ± 0.141 |" in text and "flat" not in text
