"""``benchmarks/seed_table.py``: mean ± sd over benchmark runs, offline and online rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("seed_table",
                                                  ROOT / "benchmarks" / "seed_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, rmse: float) -> Path:
    (folder / "results").mkdir(parents=True)
    for name, shift in (("graph-meta", 0.0), ("graph-meta online", -0.1)):
        res = {"model": name, "scenarios": {"warm": {"rmse": rmse + shift}}}
        (folder / "results" / f"{name}.json").write_text(json.dumps(res))
    (folder / "speed.json").write_text(json.dumps({"observe_rescore_ms_p50": rmse}))
    return folder


def test_mean_and_sample_sd_per_model_and_scenario(tmp_path: Path) -> None:
    runs = [_run(tmp_path / f"s{k}", v) for k, v in enumerate((0.8, 0.9, 1.0))]
    text = _module().table(runs, "rmse", 3)
    lines = text.splitlines()
    assert lines[2].startswith("| graph-meta | 0.900 ± 0.100 | - |")
    assert lines[3].startswith("| graph-meta online | 0.800 ± 0.100 | - |")
    assert "observe_rescore_ms_p50: 0.90 ± 0.10" in _module().speed(runs, 2)
