"""The ``graph-meta`` command line on generated data: synth, validate, stats, candidates, demo."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from training.cli import main as cli


def test_synth_validate_stats(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "catalog"
    result = runner.invoke(cli, ["synth", "--users", "300", "--items", "120",
                                 "--interactions", "6000", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "dataset.json").is_file() and (out / "tasks" / "warm.jsonl").is_file()
    again = runner.invoke(cli, ["synth", "--users", "300", "--items", "120", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
    too_many = runner.invoke(cli, ["synth", "--users", "10", "--items", "10",
                                   "--interactions", "1000", "--out", str(tmp_path / "x")])
    assert too_many.exit_code == 2 and "at most" in too_many.output

    result = runner.invoke(cli, ["validate", str(out), "--strict"])
    assert result.exit_code == 0, result.output
    assert "valid (300 users, 120 items" in result.output
    assert "CO_ENGAGED" not in result.output and "warm" not in result.output
    # a scenario file without tasks: valid, with a note naming it
    warm = (out / "tasks" / "warm.jsonl").read_text()
    (out / "tasks" / "warm.jsonl").write_text("")
    result = runner.invoke(cli, ["validate", str(out)])
    assert result.exit_code == 0 and "note: no task in warm" in result.output
    (out / "tasks" / "warm.jsonl").write_text(warm)
    # categories under another node name: still valid, with a note on what the graph lacks
    spec = json.loads((out / "dataset.json").read_text())
    spec["items"]["columns"]["category"]["node"] = "Segment"
    (out / "dataset.json").write_text(json.dumps(spec))
    result = runner.invoke(cli, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "valid (300 users, 120 items" in result.output
    assert 'no item column has "node": "Category"' in result.output
    assert "no CO_ENGAGED links" in result.output
    spec["items"]["columns"]["category"]["node"] = "Category"
    (out / "dataset.json").write_text(json.dumps(spec))

    result = runner.invoke(cli, ["stats", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["users"] == 300 and report["items"] == 120
    assert report["nodes"]["User"] == 300
    assert report["edges"]["(User)-[RATED]->(Item)"] == report["train_ratings"]
    assert set(report["scenarios"]) == {"warm", "user_cold", "item_cold", "user_item_cold"}
    item_cold = report["scenarios"]["item_cold"]
    assert item_cold["cold_items"] == item_cold["items"] > 0
    user_cold = report["scenarios"]["user_cold"]
    assert user_cold["cold_users"] == user_cold["users"] > 0
    text = runner.invoke(cli, ["stats", str(out)])
    assert "CO_ENGAGED" in text.output and "user_item_cold" in text.output


def test_bad_folder_gives_one_line_error(tmp_path: Path) -> None:
    bad = Path(__file__).parent / "data" / "bad" / "train_rating_outside_scale"
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "train.csv, line 4, field 'rating'" in result.output


def test_candidates_command(catalog_dir: Path) -> None:
    runner = CliRunner()
    from loaders.folder import read_dataset

    data = read_dataset(catalog_dir, tasks=False)
    item = str(data.train["item_id"].iloc[0])
    result = runner.invoke(cli, ["candidates", str(catalog_dir), "--rated", f"{item}:5",
                                 "-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert 0 < len(found) <= 5 and all(c["item_id"] != item for c in found)
    assert found[0]["path"][0] == ["Item", item]
    result = runner.invoke(cli, ["candidates", str(catalog_dir), "--rated", "nope:5"])
    assert result.exit_code == 2 and "unknown item" in result.output
    result = runner.invoke(cli, ["candidates", str(catalog_dir), "--rated", f"{item}:77"])
    assert result.exit_code == 2 and "outside" in result.output


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    quick = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), "--config",
                                      str(quick)])
    assert result.exit_code == 0, result.output
    out = result.output
    for step in range(1, 7):
        assert f"{step}/6 " in out
    assert "->" in out.split("cross-category links")[1]
    table = out.split("4/6")[1].split("5/6")[0]
    for scenario in ("warm", "user_cold", "item_cold", "user_item_cold"):
        assert re.search(rf"{scenario}\s+\d+\s+0\.\d{{3}}\s+0\.\d{{3}}", table), table
    top = re.findall(r"^\s+(\d+)\. i\d+ .* predicted ([\d.]+)\s+(\w+)\s+(.+)$",
                     out.split("5/6")[1].split("6/6")[0], re.M)
    assert [int(t[0]) for t in top] == list(range(1, 11))
    assert all(1.0 <= float(t[1]) <= 5.0 and "->" in t[3] for t in top)
    fans = re.findall(r"^\s+\d+\. (u\d+)\s+predicted", out.split("6/6")[1], re.M)
    assert len(fans) == 10 and len(set(fans)) == 10
    suggested = re.findall(r"^\s+graph-meta (recommend .*|audience .*)$", out, re.M)
    assert len(suggested) == 2
    for command in suggested:  # the commands it suggests work
        done = CliRunner().invoke(cli, command.split())
        assert done.exit_code == 0 and "predicted" in done.output, (command, done.output)


def test_train_evaluate_recommend_benchmark(catalog_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(cli, ["train", str(catalog_dir), "--quick", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "model.pt").is_file() and (run / "last.pt").is_file()
    out = tmp_path / "results.json"
    result = runner.invoke(cli, ["evaluate", str(catalog_dir), "--run", str(run), "--out",
                                 str(out), "--support-k", "0,3,all"])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert set(res["few_shot"]["user_cold"]) == {"0", "3", "all"}
    for metrics in res["scenarios"].values():
        assert 0 < metrics["rmse"] < 2 and 0 < metrics["ndcg@5"] <= 1

    from loaders.folder import read_dataset

    item = str(read_dataset(catalog_dir, tasks=False).train["item_id"].iloc[0])
    result = runner.invoke(cli, ["recommend", str(catalog_dir), "--run", str(run), "--rated",
                                 f"{item}:5", "-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)
    assert len(top) == 5 and all(1 <= t["predicted_rating"] <= 5 for t in top)
    assert all(t["item_id"] != item for t in top)
    cold = runner.invoke(cli, ["recommend", str(catalog_dir), "--run", str(run), "-k", "3"])
    assert cold.exit_code == 0 and "(popular)" in cold.output
    bad = runner.invoke(cli, ["recommend", str(catalog_dir), "--run", str(run), "--rated",
                              f"{item}:9"])
    assert bad.exit_code == 2 and "outside" in bad.output
    unknown = runner.invoke(cli, ["recommend", str(catalog_dir), "--run", str(run), "--rated",
                                  "no-such-item:4"])
    assert unknown.exit_code == 2 and "unknown item 'no-such-item'" in unknown.output
    fans = runner.invoke(cli, ["audience", str(catalog_dir), "--run", str(run), "--item", item,
                               "-k", "4", "--json"])
    assert fans.exit_code == 0, fans.output
    assert len({f["user_id"] for f in json.loads(fans.output)}) == 4
    # the run of another catalogue, or of the same one rated on another scale: said so
    other = tmp_path / "other"
    assert runner.invoke(cli, ["synth", "--users", "60", "--items", "40", "--interactions",
                               "600", "--out", str(other)]).exit_code == 0
    wrong = runner.invoke(cli, ["recommend", str(other), "--run", str(run), "-k", "3"])
    assert wrong.exit_code != 0 and "was trained on another catalogue" in wrong.output
    rescaled = tmp_path / "rescaled"
    import shutil

    shutil.copytree(catalog_dir, rescaled)
    spec = json.loads((rescaled / "dataset.json").read_text())
    spec["rating_scale"] = [0, 10]
    (rescaled / "dataset.json").write_text(json.dumps(spec))
    wrong = runner.invoke(cli, ["recommend", str(rescaled), "--run", str(run), "-k", "3"])
    assert wrong.exit_code != 0 and "was trained on ratings on [1, 5]" in wrong.output
    wrong = runner.invoke(cli, ["evaluate", str(rescaled), "--run", str(run), "--out",
                                str(tmp_path / "wrong.json")])
    assert wrong.exit_code != 0 and "was trained on ratings on [1, 5]" in wrong.output
    assert not (tmp_path / "wrong.json").exists()

    bench = tmp_path / "bench"
    result = runner.invoke(cli, ["benchmark", str(catalog_dir), "--quick", "--out", str(bench),
                                 "--support-k", "0,all", "--ablations", "--online",
                                 "--seed", "1"])
    assert result.exit_code == 0, result.output
    table = (bench / "results.md").read_text()
    for row in ("| graph-meta |", "| MeLU-style (attributes + MLP + MAML, no graph) |",
                "| graph-meta (no graph) |", "| graph-meta (no CO_ENGAGED) |",
                "| graph-meta (no neighbourhood correction) |",
                "| graph-meta (no learned co-rating weights) |",
                "| graph-meta (no meta-learning) |",
                "| graph-meta (pretrained, fine-tuned on support) |"):
        assert row in table, row
    assert (bench / "scenarios.png").stat().st_size > 5000
    assert (bench / "few_shot.png").stat().st_size > 5000
    speed = json.loads((bench / "speed.json").read_text())
    assert speed["adapt_score_ms_p50"] > 0
    assert speed["observe_rescore_ms_p50"] > 0 and speed["fit_info"]["device"]
    online = (bench / "online.md").read_text()
    for row in ("| graph-meta online |", "| biased MF + fold-in online |",
                "| item mean + user bias online |", "| graph-meta (no graph) online |"):
        assert row in online, row
    replay = json.loads((bench / "results" / "graph-meta_online.json").read_text())
    assert replay["online"] and replay["observed"] > 0
    assert set(replay["by_item_ratings"]) >= {"item_cold", "warm"}
    assert (bench / "online_by_item_ratings.png").stat().st_size > 5000
