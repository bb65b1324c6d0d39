"""The user's path with an implicit model (issue 16, deliverable 5): ``recommend``,
``audience``, ``candidates`` and ``demo --implicit`` on a small synthetic implicit folder,
through the real loaders and the real command line; scores shown as relevance, never as a
rating, and rating-only input refused naming the option."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from graph_meta.errors import UnknownItemError
from graph_meta.recommend import audience, is_implicit_model, recommend
from graph_meta.store.embedded import EmbeddedGraphStore
from loaders.folder import read_dataset, write_dataset
from loaders.synthetic_implicit import generate_implicit_catalog
from training.cli import main as cli
from training.implicit_cli import IMPLICIT_MODEL, load_run_model

RATING_WORDS = re.compile(r"predicted|rating|★|\*\*\*", re.I)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(dataset folder, run directory)``: a small implicit shop trained by ``train``."""
    root = tmp_path_factory.mktemp("implicit-shop")
    cat = generate_implicit_catalog(n_users=400, n_items=150, n_interactions=6000, seed=3)
    folder = write_dataset(cat.dataset, root / "shop")
    run = root / "run"
    result = CliRunner().invoke(cli, ["train", str(folder), "--quick", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / IMPLICIT_MODEL).is_file() and not (run / "model.pt").exists()
    return folder, run


def _ranked(output: str) -> list[tuple[str, float]]:
    """``(id, relevance)`` of each ranked line of recommend/audience's text output."""
    return [(m[0], float(m[1])) for m in
            re.findall(r"^\s*\d+\. (\S+)\s+relevance (-?[\d.]+)\s", output, re.M)]


def _user_with_history(folder: Path) -> tuple[str, set[str]]:
    train = read_dataset(folder, tasks=False).train
    counts = train["user_id"].astype(str).value_counts()
    user = str(counts.index[0])
    return user, set(train.loc[train["user_id"].astype(str) == user, "item_id"].astype(str))


def test_recommend_command_shows_relevance(shop: tuple[Path, Path]) -> None:
    folder, run = shop
    runner = CliRunner()
    user, history = _user_with_history(folder)
    result = runner.invoke(cli, ["recommend", str(folder), "--run", str(run), "--user", user,
                                 "-k", "8", "--explain"])
    assert result.exit_code == 0, result.output
    top = _ranked(result.output)
    assert len(top) == 8 and not RATING_WORDS.search(result.output), result.output
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert not {i for i, _ in top} & history  # nothing the user already took
    assert "->" in result.output  # --explain: the graph paths

    data = read_dataset(folder)
    took = [str(i) for i, _ in data.tasks["user_cold"][0].support[:3]]
    args = ["recommend", str(folder), "--run", str(run), "-k", "5", "--json"]
    for item in took:
        args += ["--positive", item]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 5 and all(set(r) == {"item_id", "relevance", "reason", "path"}
                                  for r in rows)
    assert not {r["item_id"] for r in rows} & set(took)
    # the same through the library: the model adapted to the positives ranks the candidates
    model = load_run_model(run)
    assert is_implicit_model(model)
    store = EmbeddedGraphStore.from_dataset(read_dataset(folder, tasks=False))
    recs = recommend(store, model, positives=took, k=5)
    assert [r.item_id for r in recs] == [r["item_id"] for r in rows]
    assert all(r.predicted is None for r in recs)
    ids = [r.item_id for r in recs]
    np.testing.assert_allclose([r.score for r in recs],
                               model.score_items("graph-meta:new-user", took, ids))
    # the positives move the ranking: not the pure cold case's
    cold = recommend(store, model, k=5)
    assert [r.item_id for r in cold] != ids


def test_pure_cold_case_is_ranked_not_flat(shop: tuple[Path, Path]) -> None:
    folder, run = shop
    result = CliRunner().invoke(cli, ["recommend", str(folder), "--run", str(run), "-k", "6"])
    assert result.exit_code == 0, result.output
    scores = [s for _, s in _ranked(result.output)]
    assert len(scores) == 6 and max(scores) > min(scores) > 0  # a prior, not zeros
    assert "--positive" in result.output  # the note names the implicit option


def test_audience_command_shows_relevance(shop: tuple[Path, Path]) -> None:
    folder, run = shop
    data = read_dataset(folder)
    trained = set(data.train["item_id"].astype(str))
    new_item = next((str(i) for i in data.items.index if str(i) not in trained), None)
    assert new_item is not None
    warm_item = str(data.train["item_id"].astype(str).value_counts().index[0])
    model = load_run_model(run)
    for item in (new_item, warm_item):
        result = CliRunner().invoke(cli, ["audience", str(folder), "--run", str(run), "--item",
                                          item, "-k", "6"])
        assert result.exit_code == 0, result.output
        fans = _ranked(result.output)
        assert len(fans) == 6 and not RATING_WORDS.search(result.output), result.output
        takers = set(data.train.loc[data.train["item_id"].astype(str) == item, "user_id"]
                     .astype(str))
        assert not {u for u, _ in fans} & takers  # who already took it is left out
        # each relevance is the model's score of that item for that user (no support)
        for user, shown in fans:
            assert model.score_items(user, [], [item])[0] == pytest.approx(shown, abs=0.006)
        assert f"Item:{item}" in result.output  # the path ends at the item
    result = CliRunner().invoke(cli, ["audience", str(folder), "--run", str(run), "--item",
                                      new_item, "--json"])
    rows = json.loads(result.output)
    assert rows and "relevance" in rows[0] and "predicted_rating" not in rows[0]
    store = EmbeddedGraphStore.from_dataset(read_dataset(folder, tasks=False))
    members = audience(store, model, new_item, k=4)
    assert all(m.predicted is None for m in members)
    assert [m.user_id for m in members] == [r["user_id"] for r in rows[:4]]


def test_score_all_users_is_score_items_for_every_user(shop: tuple[Path, Path]) -> None:
    folder, run = shop
    model = load_run_model(run)
    data = read_dataset(folder, tasks=False)
    trained = set(data.train["item_id"].astype(str))
    items = [next(str(i) for i in data.items.index if str(i) in trained),
             next(str(i) for i in data.items.index if str(i) not in trained)]
    users = model.user_ids
    for item in items:
        all_users = model.score_all_users(item)
        assert all_users.shape == (len(users),)
        for k in range(0, len(users), 37):
            assert all_users[k] == pytest.approx(model.score_items(users[k], [], [item])[0])
    with pytest.raises(UnknownItemError, match="add-items"):
        model.score_all_users("no-such-item")


def test_rating_only_input_is_refused_naming_the_option(shop: tuple[Path, Path],
                                                        catalog_dir: Path) -> None:
    folder, run = shop
    runner = CliRunner()
    item = str(read_dataset(folder, tasks=False).train["item_id"].iloc[0])
    result = runner.invoke(cli, ["recommend", str(folder), "--run", str(run), "--rated",
                                 f"{item}:5"])
    assert result.exit_code == 2 and "--rated" in result.output
    assert "--positive" in result.output
    result = runner.invoke(cli, ["candidates", str(folder), "--rated", f"{item}:1"])
    assert result.exit_code == 2 and "--rated" in result.output
    result = runner.invoke(cli, ["candidates", str(catalog_dir), "--positive", "i001"])
    assert result.exit_code == 2 and "--positive" in result.output
    result = runner.invoke(cli, ["recommend", str(folder), "--run", str(run), "--positive",
                                 "no-such-item"])
    assert result.exit_code == 2 and "unknown item" in result.output
    assert "add-items" in result.output
    result = runner.invoke(cli, ["add-items", str(folder), "--run", str(run)])
    assert result.exit_code == 0 and "no new items" in result.output
    for extra in (["--config", "configs/quick.toml"], ["--device", "cpu"]):
        result = runner.invoke(cli, ["demo", "--implicit", *extra])
        assert result.exit_code == 2 and extra[0] in result.output
    store = EmbeddedGraphStore.from_dataset(read_dataset(folder, tasks=False))
    with pytest.raises(ValueError, match="rated"):
        recommend(store, load_run_model(run), rated=[(item, 1.0)])


def test_candidates_on_an_implicit_folder(shop: tuple[Path, Path]) -> None:
    """The graph's candidate query reads the implicit RATED edges (every positive a like):
    ``--positive`` seeds the paths, the user's own history is left out."""
    folder, _ = shop
    runner = CliRunner()
    user, history = _user_with_history(folder)
    result = runner.invoke(cli, ["candidates", str(folder), "--user", user, "-k", "10",
                                 "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert len(found) == 10 and not {c["item_id"] for c in found} & history
    assert all(c["path"][0][0] == "Item" and c["path"][0][1] in history for c in found)
    item = sorted(history)[0]
    result = runner.invoke(cli, ["candidates", str(folder), "--positive", item, "-k", "5",
                                 "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert 0 < len(found) <= 5 and all(c["path"][0] == ["Item", item] for c in found)
    assert {c["reason"] for c in found} <= {"collaborative", "category", "cross_category",
                                            "cold_item"}


def test_candidates_and_recommend_agree_across_stores(shop: tuple[Path, Path],
                                                      neo4j_store_factory) -> None:
    """An implicit folder ingested into Neo4j gives the embedded store's candidates and
    recommendations (skipped without a Neo4j server)."""
    folder, run = shop
    data = read_dataset(folder, tasks=False)
    embedded = EmbeddedGraphStore.from_dataset(data)
    neo = neo4j_store_factory(data.spec)
    neo.ingest(data)
    user, _ = _user_with_history(folder)
    assert neo.candidates(user_id=user, k=30) == embedded.candidates(user_id=user, k=30)
    model = load_run_model(run)
    assert recommend(neo, model, user_id=user, k=10) == recommend(embedded, model,
                                                                  user_id=user, k=10)
    item = str(data.items.index[-1])
    assert audience(neo, model, item, k=5) == audience(embedded, model, item, k=5)


@pytest.mark.slow
def test_demo_implicit_runs_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--implicit", "--quick", "--out",
                                      str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    out = result.output
    for step in range(1, 7):
        assert f"{step}/6 " in out
    assert not RATING_WORDS.search(out.split("1/6")[1].split("done in")[0]), out
    table = out.split("4/6")[1].split("5/6")[0]
    for scenario in ("warm", "user_cold", "item_cold", "user_item_cold"):
        assert re.search(rf"{scenario}\s+\d+\s+\d+\s+0\.\d{{3}}\s+0\.\d{{3}}\s+0\.\d{{3}}"
                         rf"\s+0\.\d{{3}}", table), table
    top = re.findall(r"^\s+(\d+)\. i\d+ .* relevance (-?[\d.]+)\s+(\w+)\s+(.+)$",
                     out.split("5/6")[1].split("6/6")[0], re.M)
    assert [int(t[0]) for t in top] == list(range(1, 11))
    assert all("->" in t[3] for t in top)
    fans = re.findall(r"^\s+\d+\. (u\d+)\s+relevance", out.split("6/6")[1], re.M)
    assert len(fans) == 10 and len(set(fans)) == 10
    truth = re.search(r"top (\d+) % of", out)
    assert truth and int(truth[1]) < 50, out  # the held-out takers rank above chance
    suggested = re.findall(r"^\s+graph-meta (recommend .*|audience .*)$", out, re.M)
    assert len(suggested) == 2
    for command in suggested:  # the commands it suggests work, and show relevance
        done = CliRunner().invoke(cli, command.split())
        assert done.exit_code == 0 and "relevance" in done.output, (command, done.output)


def test_positives_observed_after_training_move_the_model_and_nothing_unrelated(
        shop: tuple[Path, Path]) -> None:
    """A new product taken by five users after training: its factors follow its takers
    (their neighbours' relevance for it rises), the takers' states take it in, and every
    other user's scores of the other items stay exactly as they were. The same positive twice
    is one; forgetting the log restores the trained model."""
    _, run = shop
    model = load_run_model(run)
    d = model.data
    new = [str(i) for i in d.item_ids[~d.item_in_train]]
    item = new[0]
    users = [str(u) for u in d.user_ids[d.user_in_train]]
    takers, others = users[:5], users[5:]
    before_item = model.score_all_users(item)
    other_item = str(d.item_ids[d.item_in_train][0])
    before_other = model.score_all_users(other_item)
    assert model.observe([(u, item, 3.0) for u in takers]) == 5
    assert model.observe([(u, item, 3.0) for u in takers]) == 0  # idempotent
    after_item = model.score_all_users(item)
    at = [model.user_ids.index(u) for u in takers]
    assert after_item[at].mean() > before_item[at].mean()
    assert not np.allclose(after_item, before_item)
    rest = [model.user_ids.index(u) for u in others]
    np.testing.assert_array_equal(model.score_all_users(other_item)[rest], before_other[rest])
    model.reset_observed()
    np.testing.assert_array_equal(model.score_all_users(item), before_item)
    with pytest.raises(UnknownItemError):
        model.observe([(takers[0], "no-such-item")])
    with pytest.raises(ValueError, match="weight must be a finite number > 0"):
        model.observe([(takers[0], item, -1.0)])


def test_observe_store_reads_the_graphs_new_positives_and_a_saved_model_agrees(
        shop: tuple[Path, Path], tmp_path: Path) -> None:
    """``ingest-ratings`` on the folder, then ``observe_store`` on the store built from it:
    the new positives (and only they) are observed, with weight 1; a model saved before and
    loaded again, plus the same store, ranks exactly as the live one; recommend reads them."""
    folder, run = shop
    model = load_run_model(run)
    d = model.data
    new = [str(i) for i in d.item_ids[~d.item_in_train]][:2]
    users = [str(u) for u in d.user_ids[d.user_in_train]][:4]
    rows = [(u, i) for u in users for i in new]
    copy = tmp_path / "shop"
    data = read_dataset(folder, tasks=False)
    write_dataset(data, copy)
    csv = tmp_path / "new.csv"
    csv.write_text("user_id,item_id,rating\n" + "".join(f"{u},{i},1\n" for u, i in rows))
    result = CliRunner().invoke(cli, ["ingest-ratings", str(copy), str(csv)])
    assert result.exit_code == 0, result.output
    store = EmbeddedGraphStore.from_dataset(read_dataset(copy, tasks=False))
    saved = model.save(tmp_path / "m.pkl")
    assert model.observe_store(store) == len(rows)
    assert model.observe_store(store) == 0
    direct = load_run_model(run)
    direct.observe(rows)
    again = type(model).load(saved)
    again.observe_store(store)
    for item in new:
        np.testing.assert_allclose(model.score_all_users(item), direct.score_all_users(item))
        np.testing.assert_allclose(again.score_all_users(item), model.score_all_users(item))
    result = CliRunner().invoke(cli, ["recommend", str(copy), "--run", str(run), "--user",
                                      users[0], "-k", "5"])
    assert result.exit_code == 0, result.output
    assert "newer than the model; read live" in result.output
    assert all(i not in {r for r, _ in _ranked(result.output)} for i in new)
