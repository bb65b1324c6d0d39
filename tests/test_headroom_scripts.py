"""``benchmarks/implicit_headroom.py`` and ``benchmarks/engagement_residuals.py``: the
diagnoses behind issue 14's and 16's closing notes score what they say they score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_scripts import benchmark_script

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.eval.ranking import evaluate_implicit
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset, write_dataset
from loaders.synthetic_implicit import generate_implicit_catalog


def _table(out: str) -> dict[str, list[str]]:
    rows = [line.strip("| ").split(" | ") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| variant")
            and not line.startswith("| scenario")]
    return {row[0]: row[1:] for row in rows}


def test_headroom_rows_score_the_protocols_pools(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    folder = write_dataset(generate_implicit_catalog(n_users=500, n_items=150,
                                                     n_interactions=9000, seed=3).dataset,
                           tmp_path / "shop")
    data = read_dataset(folder)
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=0).fit(training_view(data))
    model.coengagement_weights = {}  # no links: the "eta 0.0" row is the shipped scorer
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "implicit_model.pkl")
    assert benchmark_script("implicit_headroom").main([str(folder), "--run", str(run),
                                              "--factors", "8"]) == 0
    rows = _table(capsys.readouterr().out)
    shipped = evaluate_implicit(model, data, scenarios=["user_cold"], fit=False)
    assert float(rows["shipped"][0]) == round(shipped["scenarios"]["user_cold"]["recall@20"], 4)
    assert rows["eta 0.0"][:2] == [rows["shipped"][0], "+0.0000 (0.0000)"]
    assert {"prior shape rho 1.0 s 1.0", "rp3beta beta 0.7 w 0.5", "user-knn k 50 w 0.2",
            "iALS factors 8"} <= rows.keys()
    # the blends rank something else than the shipped model on some task
    assert any(row[1] != "+0.0000 (0.0000)" for name, row in rows.items()
               if name.startswith(("rp3beta", "user-knn", "iALS")))


def test_headroom_refuses_bad_arguments(tmp_path: Path) -> None:
    headroom = benchmark_script("implicit_headroom")
    for args in (["--factors", "8,x"], ["--factors", "0"], ["--scenario", "item_cold"]):
        with pytest.raises(SystemExit) as err:
            headroom.main([str(tmp_path), "--run", str(tmp_path), *args])
        assert err.value.code == 2


def test_engagement_residuals_are_the_models_own(catalog_dir: Path, catalog: Dataset,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 4, "model.hidden": 8, "model.layers": 1,
                              "episodes.batch_users": 128, "train.epochs": 1,
                              "train.validate": False})
    model = GraphMetaRecommender(cfg).fit(training_view(catalog))
    run = tmp_path / "run"
    model.save(run / "model.pt")
    module = benchmark_script("engagement_residuals")
    assert module.main([str(catalog_dir), "--run", str(run), "--scenarios", "user_cold"]) == 0
    row = _table(capsys.readouterr().out)["user_cold"]
    resid = np.concatenate([
        np.array([r for _, r in t.query]) - model.predict(
            t.user_id, [(str(i), float(r)) for i, r in t.support], [i for i, _ in t.query])
        for t in catalog.tasks["user_cold"]])
    assert int(row[0]) == len(resid)
    assert float(row[1]) == round(float(np.sqrt(np.mean(resid ** 2))), 4)
    after_mean, after_own, after_both = (float(v) for v in (row[2], row[5], row[6]))
    assert after_both <= after_own <= after_mean <= float(row[1])  # nested least squares
    g, share, w, _, _ = module.engagement_features(catalog)
    assert g.shape[0] == len(catalog.items) and abs(share.sum() - 1) < 1e-9
    assert (np.diag(w) == 0).all() and (w != 0).any()  # CO_ENGAGED links between categories
