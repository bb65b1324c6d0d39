"""Implicit dataset folders: make-implicit, synth --implicit, import-csv with event weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from graph_meta.dataset import ITEM_ID, RATING, USER_ID, WEIGHT
from graph_meta.errors import DataError
from loaders.folder import read_dataset, write_dataset
from loaders.implicit import aggregate_pairs, make_implicit, parse_weights
from loaders.synthetic import generate_catalog
from loaders.synthetic_implicit import generate_implicit_catalog
from training.cli import main


@pytest.fixture(scope="module")
def rating_catalog():
    return generate_catalog(n_users=300, n_items=120, n_interactions=6000, seed=3)


def test_make_implicit_keeps_users_items_and_scenarios(rating_catalog, tmp_path: Path) -> None:
    src = rating_catalog
    imp = make_implicit(src, min_rating=4)
    assert imp.spec.implicit and imp.spec.rating_scale == (0.0, 1.0)
    assert imp.users.equals(src.users) and imp.items.equals(src.items)
    assert (imp.train[RATING] == 1).all()
    pos = src.train[src.train[RATING] >= 4]
    assert len(imp.train) == len(pos)
    assert set(zip(imp.train[USER_ID].astype(str), imp.train[ITEM_ID].astype(str),
                   strict=True)) == set(zip(pos[USER_ID].astype(str),
                                            pos[ITEM_ID].astype(str), strict=True))
    for scenario, tasks in imp.tasks.items():
        originals = {t.user_id: t for t in src.tasks[scenario]}
        assert len(tasks) + imp.spec.stats["implicit"][
            f"{scenario}_tasks_dropped_no_query_positive"] == len(src.tasks[scenario])
        for t in tasks:
            o = originals[t.user_id]
            assert [i for i, _ in t.support] == [i for i, r in o.support if r >= 4]
            assert [i for i, _ in t.query] == [i for i, r in o.query if r >= 4]
            assert t.query and all(r == 1.0 for _, r in (*t.support, *t.query))
    # written and read back by the validating reader, K = 0 tasks included
    first = next(s for s, ts in imp.tasks.items() if ts)
    imp.tasks[first][0].support = []
    path = write_dataset(imp, tmp_path / "imp")
    back = read_dataset(path)
    assert back.spec.implicit
    assert {s: len(t) for s, t in back.tasks.items()} == {s: len(t) for s, t in
                                                          imp.tasks.items()}
    assert back.tasks[first][0].support == []


def test_make_implicit_refuses_bad_thresholds(rating_catalog) -> None:
    with pytest.raises(DataError, match="min_rating"):
        make_implicit(rating_catalog, min_rating=6)
    with pytest.raises(DataError, match="already implicit"):
        make_implicit(make_implicit(rating_catalog), min_rating=4)


def test_make_implicit_command(rating_catalog, tmp_path: Path) -> None:
    src = write_dataset(rating_catalog, tmp_path / "src")
    result = CliRunner().invoke(main, ["make-implicit", str(src), str(tmp_path / "out"),
                                       "--min-rating", "4"])
    assert result.exit_code == 0, result.output
    assert "training positives" in result.output
    assert read_dataset(tmp_path / "out").spec.implicit
    bad = CliRunner().invoke(main, ["make-implicit", str(src), str(tmp_path / "o2"),
                                    "--min-rating", "9"])
    assert bad.exit_code == 2 and "min_rating" in bad.output


def test_implicit_catalog_plants_preferences() -> None:
    cat = generate_implicit_catalog(n_users=500, n_items=150, n_interactions=8000, seed=1)
    ds = cat.dataset
    assert ds.spec.implicit and WEIGHT in ds.train
    assert set(np.unique(ds.train[WEIGHT])) <= {1.0, 4.0, 9.0}
    assert set(cat.events["event"]) == {"view", "cart", "purchase"}
    # deeper engagement goes with a higher planted score
    means = cat.pair_scores.groupby("confidence")["score"].mean()
    assert means[1.0] < means[4.0] < means[9.0]
    # the event log sums to the confidences of the pairs
    w = cat.events["event"].map({"view": 1, "cart": 3, "purchase": 5})
    summed = w.groupby([cat.events[USER_ID], cat.events[ITEM_ID]]).sum()
    assert sorted(summed.to_numpy().tolist()) == sorted(cat.pair_scores["confidence"].tolist())
    assert all(r == 1.0 for ts in ds.tasks.values() for t in ts for _, r in t.query)


def test_synth_implicit_then_import_csv_with_event_weights(tmp_path: Path) -> None:
    runner = CliRunner()
    out, events = tmp_path / "syn", tmp_path / "events.csv"
    r = runner.invoke(main, ["synth", "--implicit", "--users", "300", "--items", "100",
                             "--interactions", "5000", "--out", str(out), "--events",
                             str(events)])
    assert r.exit_code == 0, r.output
    ds = read_dataset(out)
    assert ds.spec.implicit and WEIGHT in ds.train
    log = pd.read_csv(events)
    assert list(log.columns) == ["user_id", "item_id", "event", "timestamp"]
    # the same log through import-csv: confidences are the summed event weights
    items = tmp_path / "items.csv"
    ds.items.reset_index().to_csv(items, index=False)
    r = runner.invoke(main, ["import-csv", str(events), "--items", str(items), "--implicit",
                             "--weight-col", "event", "--weights", "view=1,cart=3,purchase=5",
                             "--timestamp-col", "timestamp", "--out", str(tmp_path / "imp")])
    assert r.exit_code == 0, r.output
    imp = read_dataset(tmp_path / "imp")
    assert imp.spec.implicit
    conf = log["event"].map({"view": 1, "cart": 3, "purchase": 5}).groupby(
        [log["user_id"], log["item_id"]]).sum()
    got = dict(zip(zip(imp.train[USER_ID].astype(str), imp.train[ITEM_ID].astype(str),
                       strict=True), imp.train[WEIGHT].astype(float), strict=True))
    assert got and all(conf[k] == v for k, v in got.items())
    # an event without a weight names its line and field
    r = runner.invoke(main, ["import-csv", str(events), "--items", str(items), "--implicit",
                             "--weight-col", "event", "--weights", "view=1,cart=3",
                             "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "purchase" in r.output and "event" in r.output
    r = runner.invoke(main, ["import-csv", str(events), "--items", str(items),
                             "--weight-col", "event", "--out", str(tmp_path / "bad2")])
    assert r.exit_code != 0 and "--implicit" in r.output


def test_weights_parsing_and_aggregation() -> None:
    assert parse_weights("view=1, cart=3,purchase=5") == {"view": 1.0, "cart": 3.0,
                                                          "purchase": 5.0}
    for bad in ("view", "view=0", "view=x", "=2", "a=1,a=2", ""):
        with pytest.raises(DataError):
            parse_weights(bad)
    frame = pd.DataFrame({USER_ID: ["u", "u", "v", "u"], ITEM_ID: ["a", "a", "a", "b"],
                          RATING: [1.0, 3.0, 1.0, 5.0], "timestamp": [5, 2, 9, 1]})
    out, merged = aggregate_pairs(frame)
    assert merged == 1
    rows = {(r.user_id, r.item_id): (r.rating, r.timestamp) for r in out.itertuples()}
    assert rows == {("u", "a"): (4.0, 2), ("v", "a"): (1.0, 9), ("u", "b"): (5.0, 1)}


def test_weight_column_is_validated(tmp_path: Path) -> None:
    cat = generate_implicit_catalog(n_users=200, n_items=80, n_interactions=3000, seed=2)
    path = write_dataset(cat.dataset, tmp_path / "d")
    train = pd.read_csv(path / "train.csv")
    train.loc[3, "weight"] = -1
    train.to_csv(path / "train.csv", index=False)
    with pytest.raises(DataError, match="weight") as err:
        read_dataset(path)
    assert err.value.line == 5 and "line 5" in str(err.value)


def test_benchmark_and_evaluate_switch_to_the_implicit_protocol(tmp_path: Path) -> None:
    cat = generate_implicit_catalog(n_users=300, n_items=100, n_interactions=5000, seed=5)
    data = write_dataset(cat.dataset, tmp_path / "shop")
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["benchmark", str(data), "--out", str(out), "--quick",
                                  "--support-k", "0,3,all"])
    assert r.exit_code == 0, r.output
    assert "recall@20" in r.output and "RMSE" not in r.output
    md = (out / "results.md").read_text()
    assert "recall@20" in md and "ndcg@20" in md and "hit@20" in md and "rmse" not in md
    for name in ("popularity", "implicit_ALS_+_fold-in", "content_profile"):
        res = json.loads((out / "results" / f"{name}.json").read_text())
        assert res["protocol"] == "implicit"
        assert set(res["few_shot"]["warm"]) == {"0", "3", "all"}
        for block in res["scenarios"].values():
            assert "rmse" not in block
            if block["tasks"]:
                assert 0.0 <= block["recall@20"] <= 1.0
    assert (out / "scenarios.png").is_file() and (out / "few_shot.png").is_file()
    speed = json.loads((out / "speed.json").read_text())
    assert speed["popularity"]["rank_pool_ms_p50"] > 0


def test_synth_implicit_with_a_planted_graph(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["synth", "--implicit", "--planted-graph", "--users", "600",
                                  "--items", "200", "--interactions", "12000", "--out",
                                  str(tmp_path / "pg")])
    assert r.exit_code == 0, r.output
    ds = read_dataset(tmp_path / "pg")
    assert ds.spec.implicit
    assert {s.type for s in ds.spec.relations} == {"PART_OF", "SUCCEEDS", "FRIEND_OF"}
    friends, successors = ds.relations["FRIEND_OF"], ds.relations["SUCCEEDS"]
    assert ds.spec.stats["planted_graph"] == {"SUCCEEDS": len(successors),
                                              "FRIEND_OF": len(friends)}
    assert set(friends["src"]) <= set(ds.users.index) and len(friends) > 3 * 600 * 0.9
    plain = generate_implicit_catalog(n_users=600, n_items=200, n_interactions=12000).dataset
    assert list(plain.users.index) == list(ds.users.index)
    assert list(plain.items.index) == list(ds.items.index)
    # the circles reach the events: friends take more of the same items than random pairs
    taken = ds.train.groupby(USER_ID, observed=True)[ITEM_ID].apply(
        lambda s: set(s.astype(str)))

    def overlap(pairs) -> float:
        shared = [len(taken[a] & taken[b]) / len(taken[a] | taken[b])
                  for a, b in pairs if a in taken and b in taken]
        return float(np.mean(shared))

    rng = np.random.default_rng(0)
    users = list(taken.index)
    random_pairs = [tuple(rng.choice(users, 2, replace=False)) for _ in range(len(friends))]
    assert overlap(zip(friends["src"], friends["dst"], strict=True)) > 1.3 * overlap(
        random_pairs)
