"""Dataset folders of shapes PROTOCOL.md allows but the first datasets do not have: an implicit
train.csv of bare pairs, ids written with spaces around them, a byte-order mark, columns the
protocol leaves open, a scenario file without tasks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from graph_meta.dataset import RATING
from graph_meta.errors import DataError
from graph_meta.eval.jsonable import jsonable
from graph_meta.eval.protocol import write_results
from loaders.folder import read_dataset

GOOD = Path(__file__).parent / "data" / "good"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ds"
    shutil.copytree(GOOD, folder)
    return folder


def _implicit(folder: Path) -> None:
    spec = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    spec["implicit"] = True
    spec["rating_scale"] = [0, 1]
    (folder / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    for name in ("warm", "user_cold"):
        path = folder / "tasks" / f"{name}.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            row["support"] = [[i, 1] for i, _ in row["support"]]
            row["query"] = [[i, 1] for i, _ in row["query"]]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_an_implicit_train_csv_may_be_bare_pairs(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _implicit(folder)
    lines = (folder / "train.csv").read_text(encoding="utf-8").splitlines()
    pairs = [",".join(line.split(",")[:2]) for line in lines]
    (folder / "train.csv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    ds = read_dataset(folder)
    assert len(ds.train) == len(lines) - 1
    assert (ds.train[RATING] == 1).all()
    # a rating folder still needs its ratings, and says which column is missing where
    spec = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    spec["implicit"] = False
    (folder / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 1, field 'rating': missing"):
        read_dataset(folder)


def test_ids_with_spaces_around_them_match_everywhere(tmp_path: Path) -> None:
    """users.csv and items.csv ids are read stripped; so are those of train.csv, the tasks and
    the relation files, or ' u1' in train.csv would have no user."""
    folder = _copy(tmp_path)
    text = (folder / "train.csv").read_text(encoding="utf-8").splitlines()
    spaced = [text[0]] + [",".join(f" {f} " if k < 2 else f for k, f in enumerate(r.split(",")))
                          for r in text[1:]]
    (folder / "train.csv").write_text("\n".join(spaced) + "\n", encoding="utf-8")
    follows = (folder / "follows.csv").read_text(encoding="utf-8").splitlines()
    (folder / "follows.csv").write_text(
        "\n".join([follows[0]] + [r.replace(",", " , ") for r in follows[1:]]) + "\n",
        encoding="utf-8")
    task = folder / "tasks" / "warm.jsonl"
    rows = [json.loads(line) for line in task.read_text(encoding="utf-8").splitlines()]
    rows[0]["user_id"] = f" {rows[0]['user_id']}"
    rows[0]["query"] = [[f"{i} ", r] for i, r in rows[0]["query"]]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = read_dataset(folder)
    plain = read_dataset(GOOD)
    assert ds.train["user_id"].astype(str).tolist() == plain.train["user_id"].astype(str).tolist()
    assert ds.train["item_id"].astype(str).tolist() == plain.train["item_id"].astype(str).tolist()
    assert ds.tasks["warm"][0] == plain.tasks["warm"][0]
    assert ds.relations["FOLLOWS"]["src"].tolist() == plain.relations["FOLLOWS"]["src"].tolist()


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    for name in ("users.csv", "items.csv", "train.csv", "follows.csv"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ds = read_dataset(folder)
    plain = read_dataset(GOOD)
    assert list(ds.users.index) == list(plain.users.index)
    assert len(ds.train) == len(plain.train) and len(ds.relations["FOLLOWS"]) == len(
        plain.relations["FOLLOWS"])


def test_columns_the_protocol_leaves_open_are_warned_about_and_not_read(
        tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    for name, extra in (("train.csv", "source"), ("follows.csv", "since")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        (folder / name).write_text("\n".join([f"{lines[0]},{extra}"]
                                             + [f"{r},x" for r in lines[1:]]) + "\n",
                                   encoding="utf-8")
    ds = read_dataset(folder)
    assert any("train.csv" in w and "source" in w for w in ds.warnings)
    assert any("follows.csv" in w and "since" in w for w in ds.warnings)
    assert "source" not in ds.train and list(ds.relations["FOLLOWS"].columns) == [
        "src", "dst", "weight"]
    # a column twice is an error, not a second column read under another name
    text = (folder / "follows.csv").read_text(encoding="utf-8").splitlines()
    twice = folder / "twice.csv"
    twice.write_text("\n".join([f"{text[0]},src_id"] + [f"{r},u9" for r in text[1:]]) + "\n",
                     encoding="utf-8")
    (folder / "follows.csv").rename(folder / "follows.bak")
    twice.rename(folder / "follows.csv")
    with pytest.raises(DataError, match=r"follows\.csv, line 1.*duplicate column names"):
        read_dataset(folder)
    (folder / "follows.bak").replace(folder / "follows.csv")
    # users.csv and items.csv: dataset.json types every column, an undeclared one is an error
    lines = (folder / "users.csv").read_text(encoding="utf-8").splitlines()
    (folder / "users.csv").write_text("\n".join([f"{lines[0]},zip"]
                                                + [f"{r},1" for r in lines[1:]]) + "\n",
                                      encoding="utf-8")
    with pytest.raises(DataError, match=r"users\.csv, line 1, field 'zip': unknown column"):
        read_dataset(folder)


def test_results_of_a_scenario_without_tasks_are_strict_json(tmp_path: Path) -> None:
    """A scenario file with no task has no mean: null in the file, never a bare NaN that
    strict JSON readers refuse."""
    results = {"model": "m", "scenarios": {"warm": {"tasks": 0, "rmse": float("nan"),
                                                    "p99_ms": np.float64("inf")}},
               "curve": np.array([1.0, np.nan])}
    path = write_results(results, tmp_path / "r.json")
    back = json.loads(path.read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert back["scenarios"]["warm"] == {"tasks": 0, "rmse": None, "p99_ms": None}
    assert back["curve"] == [1.0, None]
    assert jsonable({"x": 1.5, "n": np.int64(3), "z": np.array(2.5), "w": np.array(np.nan)}) == {
        "x": 1.5, "n": 3, "z": 2.5, "w": None}
    assert math.isnan(results["scenarios"]["warm"]["rmse"])  # the caller's dict untouched
    # ... and a dash in the tables, not "nan (nan)"
    from graph_meta.eval.protocol import results_table
    from graph_meta.eval.ranking import ranking_table

    nan = float("nan")
    rated = {"model": "m", "scenarios": {
        "warm": {"tasks": 2, "rmse": 0.9, "mae": 0.7, "ndcg@5": 0.8, "ndcg@5_metahin": 0.8,
                 "adapt_ms_p50": 1.0, "adapt_ms_p99": 2.0},
        "user_cold": {"tasks": 0, "rmse": nan, "mae": nan, "ndcg@5": nan,
                      "ndcg@5_metahin": nan, "adapt_ms_p50": nan, "adapt_ms_p99": nan}}}
    table = results_table([rated])
    assert "nan" not in table and "| m | 0.900 (0.700) | - |" in table
    ranked = {"model": "m", "protocol": "implicit", "scenarios": {
        "warm": {"tasks": 2, "recall@20": 0.5, "ndcg@20": 0.4, "hit@20": 1.0,
                 "adapt_ms_p50": 1.0, "adapt_ms_p99": 2.0, "pool_size": 30.0,
                 "query_outside_pool": 0},
        "item_cold": {"tasks": 0, "recall@20": nan, "ndcg@20": nan, "hit@20": nan,
                      "adapt_ms_p50": nan, "adapt_ms_p99": nan, "pool_size": nan,
                      "query_outside_pool": 0}}}
    table = ranking_table([ranked])
    assert "nan" not in table and "| m | 0.500 | - |" in table


def test_a_catalogue_too_small_to_carve_validation_still_meta_trains(capsys) -> None:
    """No validation task can be carved from a handful of ratings: meta-training runs its
    configured epochs (it used to score inf on every epoch and keep the untrained model),
    and says so."""
    from graph_meta.config import load_config
    from graph_meta.eval.protocol import carve_validation, training_view
    from graph_meta.model import GraphMetaRecommender

    ds = read_dataset(GOOD)
    assert not any(carve_validation(ds, max_tasks=100, seed=0).tasks.values())
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "quick.toml")
    model = GraphMetaRecommender(cfg.replace(**{"train.epochs": 2})).fit(training_view(ds),
                                                                         progress=False)
    assert model.fit_info["val_stopped"] == "epochs" and model.fit_info["val_best_epoch"] == 2
    assert "no validation task could be carved" in capsys.readouterr().err


def test_a_repeated_edge_is_read_once_or_refused_under_strict(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    lines = (folder / "follows.csv").read_text(encoding="utf-8").splitlines()
    (folder / "follows.csv").write_text("\n".join([*lines, lines[1], " " + lines[1]]) + "\n",
                                        encoding="utf-8")
    ds = read_dataset(folder)
    plain = read_dataset(GOOD)
    assert ds.relations["FOLLOWS"].equals(plain.relations["FOLLOWS"])
    assert any("2 duplicate edge(s) not read" in w and "follows.csv" in w for w in ds.warnings)
    with pytest.raises(DataError, match=rf"follows\.csv, line {len(lines) + 1}.*duplicate edge"):
        read_dataset(folder, strict=True)


def test_an_implicit_folder_holds_positives_only(tmp_path: Path) -> None:
    """PROTOCOL.md: an implicit folder's rows and task pairs are positives, rating 1; a 0 (a
    negative, or a rating folder marked implicit by mistake) is refused where it stands."""
    folder = _copy(tmp_path)
    _implicit(folder)
    lines = (folder / "train.csv").read_text(encoding="utf-8").splitlines()
    rows = [lines[0]] + [",".join([*line.split(",")[:2], "1"]) for line in lines[1:]]
    (folder / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert (read_dataset(folder).train[RATING] == 1).all()
    rows[2] = ",".join([*rows[2].split(",")[:2], "0"])
    (folder / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 3, field 'rating': rating 0 in an "
                                        r"implicit folder"):
        read_dataset(folder)
    rows[2] = ",".join([*rows[2].split(",")[:2], "1"])
    (folder / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    task = folder / "tasks" / "warm.jsonl"
    tasks = [json.loads(line) for line in task.read_text(encoding="utf-8").splitlines()]
    tasks[1]["query"][0][1] = 0
    task.write_text("".join(json.dumps(r) + "\n" for r in tasks), encoding="utf-8")
    with pytest.raises(DataError, match=r"warm\.jsonl, line 2, field 'query\[0\]': rating 0 "
                                        r"in an implicit folder"):
        read_dataset(folder)


def test_tasks_that_contradict_their_scenario_are_reported(tmp_path: Path) -> None:
    """A user_cold user with training rows, a warm query pair that is a training row of its
    user (the answer in the training data), a new item in a known-item scenario, a repeated
    task: ``validate`` warns, ``validate --strict`` refuses; the good folder has none."""
    from click.testing import CliRunner

    from loaders.folder import scenario_problems
    from training.cli import main as cli

    assert scenario_problems(read_dataset(GOOD)) == []
    folder = _copy(tmp_path)
    cold = folder / "tasks" / "user_cold.jsonl"
    cold.write_text(json.dumps({"user_id": "u1", "support": [],
                                "query": [["i3", 4], ["i4", 2]]}) + "\n", encoding="utf-8")
    warm = folder / "tasks" / "warm.jsonl"
    tasks = [json.loads(line) for line in warm.read_text(encoding="utf-8").splitlines()]
    tasks[1]["query"] = [["i1", 4]]  # u2 rated i1 in train.csv
    tasks.append(dict(tasks[0]))
    warm.write_text("".join(json.dumps(r) + "\n" for r in tasks), encoding="utf-8")
    problems = scenario_problems(read_dataset(folder))
    assert len(problems) == 3, problems
    said = "\n".join(map(str, problems))
    assert "user_cold.jsonl: 1 task(s) where its user is in train.csv" in said
    assert "first: task 1 (user 'u1')" in said
    assert "warm.jsonl: 1 task(s) where a support or query pair is also a train.csv row of " \
           "the user; first: task 2 (user 'u2'), item 'i1'" in said
    assert "warm.jsonl: 1 task(s) where it repeats an earlier task; first: task 4" in said
    # a new item in a known-item scenario
    tasks = tasks[:3]
    tasks[1]["query"] = [["i9", 4]]
    warm.write_text("".join(json.dumps(r) + "\n" for r in tasks), encoding="utf-8")
    items = folder / "items.csv"
    header, *rest = items.read_text(encoding="utf-8").splitlines()
    rest.append("i9" + rest[0][rest[0].index(","):])
    items.write_text("\n".join([header, *rest]) + "\n", encoding="utf-8")
    said = "\n".join(map(str, scenario_problems(read_dataset(folder))))
    assert "warm.jsonl: 1 task(s) where an item is not in train.csv, though the scenario's " \
           "items are known; first: task 2 (user 'u2'), item 'i9'" in said
    result = CliRunner().invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "its user is in train.csv" in result.output
    strict = CliRunner().invoke(cli, ["validate", str(folder), "--strict"])
    assert strict.exit_code != 0
    assert "warm.jsonl: 1 task(s) where an item is not in train.csv" in strict.output
    # a task file that dataset.json does not list is named, not silently left out
    spec = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    del spec["tasks"]["user_cold"]
    (folder / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "note: user_cold.jsonl in " in result.output
    assert "not listed under \"tasks\" in dataset.json" in result.output
