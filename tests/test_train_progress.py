"""Training on data too large gives an answer (issue 18, item 7).

An up-front memory estimate refuses what cannot fit, naming the limit and a config that fits;
with progress on, every setup step (graph building, ALS, priors, caches) prints from the first
second, and a heartbeat shows a long step is still running.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import graph_meta.fitting.progress as progress_mod
import graph_meta.fitting.train as train_mod
from graph_meta.config import load_config
from graph_meta.dataset import Dataset
from graph_meta.fitting.memory import MemoryLimitError, check_memory, estimate_memory
from graph_meta.model import GraphMetaRecommender
from training.cli import main as cli

QUICK = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"


def test_a_tiny_memory_limit_is_refused_up_front(catalog: Dataset) -> None:
    cfg = load_config(QUICK, **{"train.memory_limit_gb": 0.001})
    model = GraphMetaRecommender(cfg)
    t0 = time.perf_counter()
    with pytest.raises(MemoryLimitError) as err:
        model.fit(catalog)
    assert time.perf_counter() - t0 < 5  # before any graph is built
    assert model.net is None
    text = str(err.value)
    assert "0.001 GB allowed (train.memory_limit_gb)" in text
    assert re.search(r"(model|episodes|train)\.\w+ = ", text), text
    assert "\n" not in text


def test_the_suggested_config_fits(catalog: Dataset) -> None:
    cfg = load_config(None)
    full = estimate_memory(catalog, cfg)
    smallest = estimate_memory(catalog, cfg.replace(**{
        "model.dim": 4, "model.hidden": 16, "episodes.history_fanout": 16,
        "train.validate": False, "model.regression_l2": 0.0, "model.neighbor_k": 0}))
    limit = (full.gb + smallest.gb) / 2  # below the default's need, above what can be saved
    with pytest.raises(MemoryLimitError, match="suggested config: ") as err:
        check_memory(catalog, cfg.replace(**{"train.memory_limit_gb": limit}))
    suggested = re.search(r"suggested config: (.*) \(about ([0-9.]+) GB", str(err.value))
    assert suggested, str(err.value)
    overrides = {}
    for item in suggested.group(1).split(", "):
        key, value = item.split(" = ")
        overrides[key] = {"false": False, "true": True}.get(value)
        if overrides[key] is None:
            overrides[key] = float(value) if "." in value else int(value)
    smaller = estimate_memory(catalog, cfg.replace(**overrides))
    assert smaller.gb <= limit
    assert check_memory(catalog, cfg.replace(**overrides, **{"train.memory_limit_gb": limit}))


def test_the_estimate_grows_with_the_data_and_shrinks_with_the_suggestions() -> None:
    from loaders.synthetic import generate_catalog

    small = generate_catalog(n_users=300, n_items=100, n_interactions=4000, seed=1)
    large = generate_catalog(n_users=3000, n_items=400, n_interactions=60000, seed=1)
    cfg = load_config(None)
    big, little = estimate_memory(large, cfg), estimate_memory(small, cfg)
    assert big.total > little.total
    assert big.parts["graphs"] > 10 * little.parts["graphs"]
    for key, value in (("model.dim", cfg.model.dim // 2), ("train.validate", False),
                       ("episodes.history_fanout", 32), ("model.regression_l2", 0.0)):
        smaller = estimate_memory(large, cfg.replace(**{key: value})).total
        assert smaller < big.total or (key == "model.regression_l2" and smaller == big.total)
    # where the co-rating regression is the peak (many rated items), turning it off saves
    many = generate_catalog(n_users=1000, n_items=12000, n_interactions=60000, seed=1)
    assert (estimate_memory(many, cfg.replace(**{"model.regression_l2": 0.0})).total
            < estimate_memory(many, cfg).total)


def test_cli_train_refusal_is_one_line(catalog_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(QUICK.read_text() + "memory_limit_gb = 0.001\n")
    result = CliRunner().invoke(cli, ["train", str(catalog_dir), "--out", str(tmp_path / "run"),
                                      "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: training on "), result.output
    assert "0.001 GB allowed" in lines[0]


def test_progress_lines_cover_the_setup_steps(catalog: Dataset, capsys,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_mod, "_HEARTBEAT_S", 0.05)
    slow_als = train_mod.als

    def als(*args, **kw):  # a slow ALS, so the heartbeat has a sweep to report
        sweep = kw.pop("on_sweep", None)

        def on_sweep(k: int, n: int) -> None:
            time.sleep(0.03)
            if sweep is not None:
                sweep(k, n)

        return slow_als(*args, on_sweep=on_sweep, **kw)

    monkeypatch.setattr(train_mod, "als", als)
    cfg = load_config(QUICK, **{"train.epochs": 1, "train.als_iters": 10})
    GraphMetaRecommender(cfg).fit(catalog, progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[graph-meta ")]
    first = re.match(r"\[graph-meta +([0-9.]+)s\] (.*)", lines[0])
    assert first and float(first.group(1)) < 1.0 and "memory estimate" in first.group(2)
    text = "\n".join(lines)
    for step in ("carving validation tasks", "building the graph", "ALS (10 sweeps",
                 "side-feature prior of Item", "validation: prediction cache",
                 "prediction cache on the full training graph"):
        assert f"{step}" in text and re.search(re.escape(step) + r".*done in", text), step
    assert re.search(r"ALS \(10 sweeps.*still running \(\d+ s, sweep \d+/10", text), text


def test_train_threads_hold_for_the_fit_only(catalog: Dataset) -> None:
    """``configs/quick.toml`` sets ``train.threads = 2``: the models a benchmark times after
    graph-meta's fit must run on the caller's thread count, not on the fit's."""
    import torch

    before = torch.get_num_threads()
    seen: list[int] = []
    real = train_mod._train_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    cfg = load_config(QUICK, **{"train.epochs": 1, "train.validate": False,
                                "train.threads": 3 if before != 3 else 2})
    try:
        train_mod._train_model = spy
        GraphMetaRecommender(cfg).fit(catalog)
    finally:
        train_mod._train_model = real
    assert seen == [cfg.train.threads]
    assert torch.get_num_threads() == before
