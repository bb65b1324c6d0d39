"""Clear errors for what a trained model cannot score: an item id outside its catalogue, and a
support rating that is not a finite number or off the training data's rating scale (predict,
score_all_items, recommend, audience, and the CLI: one line, exit 2). An unknown user is a
new user, not an error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.errors import UnknownItemError
from graph_meta.model import GraphMetaRecommender
from graph_meta.recommend import audience, recommend
from graph_meta.store.base import Candidate
from graph_meta.store.embedded import EmbeddedGraphStore
from training.cli import main as cli


@pytest.fixture(scope="module")
def model(catalog: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "episodes.batch_users": 128, "train.epochs": 1,
                              "train.validate": False})
    return GraphMetaRecommender(cfg).fit(catalog)


@pytest.fixture(scope="module")
def task(catalog: Dataset) -> tuple[list[tuple[str, float]], list[str]]:
    t = next(t for t in catalog.tasks["user_cold"] if len(t.support) >= 3)
    return [(str(i), float(r)) for i, r in t.support[:3]], [str(i) for i, _ in t.query]


def _unknown(err: pytest.ExceptionInfo, item: str) -> None:
    assert isinstance(err.value, KeyError)
    text = str(err.value)
    assert f"unknown item '{item}'" in text and "add-items" in text and "add_items" in text
    assert "\n" not in text and not text.startswith('"')


def test_an_unknown_query_item_is_a_key_error(model, task) -> None:
    support, query = task
    with pytest.raises(UnknownItemError) as err:
        model.predict("u-new", support, [*query[:2], "no-such-item", query[2]])
    _unknown(err, "no-such-item")


@pytest.mark.parametrize("method", ["predict", "score_all_items", "adapt_user"])
def test_an_unknown_support_item_is_a_key_error(model, task, method: str) -> None:
    support, query = task
    bad = [*support, ("never-sold", 4.0)]
    args = (bad, query) if method == "predict" else (bad,)
    with pytest.raises(UnknownItemError) as err:
        getattr(model, method)("u-new", *args)
    _unknown(err, "never-sold")


@pytest.mark.parametrize("value, named", [(float("nan"), "nan"), (float("inf"), "inf"),
                                          (-float("inf"), "-inf"), (9.0, "9.0"), (0.5, "0.5"),
                                          ("five", "'five'"), (None, "None")])
@pytest.mark.parametrize("method", ["predict", "score_all_items"])
def test_a_bad_support_rating_is_a_value_error_naming_it(model, task, catalog, value, named,
                                                         method: str) -> None:
    support, query = task
    item = support[1][0]
    bad = [support[0], (item, value), support[2]]
    args = (bad, query) if method == "predict" else (bad,)
    with pytest.raises(ValueError) as err:
        getattr(model, method)("u-new", *args)
    text = str(err.value)
    assert f"rating {named} for item '{item}'" in text
    lo, hi = catalog.spec.rating_scale
    assert ("outside" in text and f"[{lo:g}, {hi:g}]" in text) or "not a finite number" in text


def test_ratings_on_the_scale_and_unknown_users_are_fine(model, task, catalog) -> None:
    support, query = task
    lo, hi = catalog.spec.rating_scale
    edges = [(support[0][0], lo), (support[1][0], hi), (support[2][0], np.float32(3))]
    assert np.isfinite(model.predict("u-new", edges, query)).all()
    a = model.predict("someone-never-seen", support, query)  # a new user: legal
    b = model.predict("someone-else-new", support, query)
    np.testing.assert_allclose(a, b)
    assert np.isfinite(model.score_all_items("someone-never-seen", [])).all()


def test_an_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        GraphMetaRecommender(Config()).predict("u", [], ["i"])


def _store_with_a_new_item(catalog: Dataset) -> tuple[EmbeddedGraphStore, str]:
    """The catalog's graph plus a product the model was not trained with (nor told about)."""
    store = EmbeddedGraphStore.from_dataset(catalog)
    item = "arrived-after-training"
    row = catalog.items.iloc[[0]].copy()
    row.index = pd.Index([item])
    store.add_items(row)
    return store, item


def test_recommend_names_a_rated_item_the_model_lacks(model, task, catalog) -> None:
    support, _ = task
    store, new = _store_with_a_new_item(catalog)
    with pytest.raises(UnknownItemError) as err:
        recommend(store, model, rated=[*support, (new, 4.0)], k=5)
    _unknown(err, new)
    with pytest.raises(UnknownItemError) as err:  # in neither the store nor the model
        recommend(store, model, rated=[("nowhere", 4.0)], k=5)
    _unknown(err, "nowhere")
    for value in (float("nan"), float("inf"), 11.0):
        with pytest.raises(ValueError, match=f"rating {value!r} for item"):
            recommend(store, model, rated=[(support[0][0], value)], k=5)


def test_recommend_leaves_out_candidates_the_model_cannot_score(model, task, catalog,
                                                                monkeypatch) -> None:
    support, _ = task
    store, new = _store_with_a_new_item(catalog)
    real = store.candidates

    def with_new_item(**kw):  # the graph proposes the new product first
        return [Candidate(new, 99.0, "cold_item", (("Item", new),)), *real(**kw)]

    monkeypatch.setattr(store, "candidates", with_new_item)
    recs = recommend(store, model, rated=support, k=5, pool=50)
    assert len(recs) == 5 and new not in {r.item_id for r in recs}


def test_audience_of_an_item_the_model_lacks(model, catalog) -> None:
    store, new = _store_with_a_new_item(catalog)
    with pytest.raises(KeyError, match="add-items"):
        audience(store, model, new, k=3)
    with pytest.raises(KeyError, match="unknown item 'nowhere'"):
        audience(store, model, "nowhere", k=3)


@pytest.fixture(scope="module")
def run(model: GraphMetaRecommender, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    model.save(out / "model.pt")
    return out


def _one_line_exit_2(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_cli_recommend_and_audience_errors(run: Path, catalog_dir: Path, task) -> None:
    support, _ = task
    item = support[0][0]
    runner = CliRunner()
    base = ["recommend", str(catalog_dir), "--run", str(run)]
    for value, named in (("nan", "nan"), ("inf", "inf"), ("7", "7.0")):
        _one_line_exit_2(runner.invoke(cli, [*base, "--rated", f"{item}:{value}"]),
                         f"rating {named} for item '{item}'")
    _one_line_exit_2(runner.invoke(cli, [*base, "--rated", "no-such-item:4"]),
                     "unknown item 'no-such-item'", "graph-meta add-items")
    _one_line_exit_2(runner.invoke(cli, ["audience", str(catalog_dir), "--run", str(run),
                                         "--item", "no-such-item"]),
                     "unknown item 'no-such-item'")
    ok = runner.invoke(cli, [*base, "--user", "someone-new-to-the-graph", "-k", "3"])
    assert ok.exit_code == 2 and "unknown user" in ok.output  # --user is an existing user
    ok = runner.invoke(cli, [*base, "--rated", f"{item}:4", "-k", "3"])  # a new user's ratings
    assert ok.exit_code == 0, ok.output


def test_the_protocol_runs_every_scenario_with_the_checks(model, catalog) -> None:
    """Every benchmark item is in the catalogue: the protocol runner is untouched."""
    from graph_meta.eval.protocol import evaluate

    small = dataclasses.replace(catalog, tasks={s: t[:15] for s, t in catalog.tasks.items()})
    res = evaluate(model, small, fit=False)
    assert all(np.isfinite(b["rmse"]) for b in res["scenarios"].values())
