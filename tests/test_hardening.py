"""Security and file safety (issue 18, "Hardening").

* the data files named by ``dataset.json`` must lie inside the dataset folder;
* error messages quote file content only as the offending value, cut short;
* a Neo4j password (in ``NEO4J_PASSWORD`` or in the URI) never reaches the output;
* ``--overwrite`` replaces only an empty folder or a dataset folder, and the temporary siblings
  of interrupted writes are cleaned up.

The model files (one commit point, one-line load errors) are in ``test_hardening_model.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from graph_meta.errors import DataError, short, short_names
from graph_meta.schema import DatasetSpec
from loaders.csv_import import import_interactions
from loaders.folder import read_dataset, remove_stale_temporaries, write_dataset
from training.cli import main as cli

DATA = Path(__file__).resolve().parent / "data"
GOOD = DATA / "good"
ROOT = Path(__file__).resolve().parents[1]
SECRET = "Sup3r-s3cret-pw"


def _copy_good(tmp_path: Path, name: str = "ds") -> Path:
    folder = tmp_path / name
    shutil.copytree(GOOD, folder)
    return folder


def _edit_spec(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    spec_path = folder / "dataset.json"
    raw = json.loads(spec_path.read_text(encoding="utf-8"))
    edit(raw)
    spec_path.write_text(json.dumps(raw), encoding="utf-8")


def _one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


# --- 1. data files stay inside the dataset folder ------------------------------------------


def _set(path: str, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    return edit


@pytest.mark.parametrize(("field", "edit", "value"), [
    ("items.file", _set("items.file", "/proc/self/environ"), "/proc/self/environ"),
    ("train", _set("train", "../../../../etc/passwd"), "../../../../etc/passwd"),
    ("users.file", _set("users.file", "sub/../../users.csv"), "sub/../../users.csv"),
    ("relations[0].file", _set("relations.0.file", "/etc/passwd"), "/etc/passwd"),
    ("tasks.warm", _set("tasks.warm", "tasks/../../x.jsonl"), "tasks/../../x.jsonl"),
])
def test_paths_outside_the_folder_are_refused_by_name(tmp_path: Path, field: str,
                                                       edit: Callable, value: str) -> None:
    folder = _copy_good(tmp_path)
    _edit_spec(folder, edit)
    with pytest.raises(DataError) as info:
        read_dataset(folder)
    assert info.value.field == field
    assert value in str(info.value) and "inside the dataset folder" in str(info.value)
    assert info.value.file == str(folder / "dataset.json")


def test_validate_prints_neither_the_environment_nor_passwd(tmp_path: Path) -> None:
    runner = CliRunner()
    for edit in (_set("items.file", "/proc/self/environ"), _set("train", "../" * 8 + "etc/passwd")):
        folder = _copy_good(tmp_path, f"ds{len(list(tmp_path.iterdir()))}")
        _edit_spec(folder, edit)
        result = runner.invoke(cli, ["validate", str(folder)], env={"GM_MARKER": SECRET})
        assert result.exit_code == 2, result.output
        line = _one_error_line(result.output)
        assert "header is" not in line and "root:" not in line and SECRET not in line


@pytest.mark.parametrize("what", ["file", "folder"])
def test_symlinks_escaping_the_folder_are_refused(tmp_path: Path, what: str) -> None:
    folder = _copy_good(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    if what == "file":
        (outside / "users.csv").write_text(f"user_id,gender,age,{SECRET}\n", encoding="utf-8")
        (folder / "users.csv").unlink()
        (folder / "users.csv").symlink_to(outside / "users.csv")
        field = "users.file"
    else:
        shutil.move(folder / "tasks", outside / "tasks")
        (folder / "tasks").symlink_to(outside / "tasks", target_is_directory=True)
        field = "tasks.warm"
    with pytest.raises(DataError, match="resolves outside the dataset folder") as info:
        read_dataset(folder)
    assert info.value.field == field and SECRET not in str(info.value)


def test_symlinks_inside_the_folder_are_fine(tmp_path: Path) -> None:
    folder = _copy_good(tmp_path)
    (folder / "raw").mkdir()
    shutil.move(folder / "items.csv", folder / "raw" / "items.csv")
    (folder / "items.csv").symlink_to(Path("raw") / "items.csv")
    assert len(read_dataset(folder).items) == len(read_dataset(GOOD).items)
    # a symlinked dataset folder keeps its files inside itself
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    assert len(read_dataset(link).train) == 8


def test_write_dataset_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    raw = json.loads((GOOD / "dataset.json").read_text(encoding="utf-8"))
    raw["train"] = "../escaped.csv"
    with pytest.raises(DataError, match="not a relative path") as info:
        DatasetSpec.from_json(raw)
    assert info.value.field == "train"


# --- 2. errors quote file content only cut short --------------------------------------------


def test_short_helpers() -> None:
    assert short("abc") == "'abc'"
    assert len(short("x" * 10_000)) <= 63 and "\n" not in short("a\nb" * 100)
    names = short_names([f"column_{k}_" + "y" * 100 for k in range(50)])
    assert len(names) < 300 and "more)" in names


def _assert_short(exc: BaseException, needle: str) -> None:
    text = str(exc)
    assert needle not in text, text
    assert len(text) < 600 and "\n" not in text, text


def test_a_long_header_is_not_quoted_whole(tmp_path: Path) -> None:
    long_name = "h" * 5000
    folder = _copy_good(tmp_path)
    # users.csv: a huge unknown column
    users = (folder / "users.csv").read_text(encoding="utf-8").splitlines()
    users = [users[0] + "," + long_name] + [row + ",x" for row in users[1:]]
    (folder / "users.csv").write_text("\n".join(users) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown column") as info:
        read_dataset(folder)
    _assert_short(info.value, "h" * 100)
    # train.csv: the rating column missing, and 200 long columns in the header
    folder = _copy_good(tmp_path, "ds2")
    header = ["user_id", "item_id"] + [f"c{k}_" + "z" * 300 for k in range(200)]
    (folder / "train.csv").write_text(",".join(header) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing column\(s\) \['rating'\]; header is") as info:
        read_dataset(folder)
    _assert_short(info.value, "z" * 100)


def test_a_long_value_is_cut_short(tmp_path: Path) -> None:
    folder = _copy_good(tmp_path)
    items = (folder / "items.csv").read_text(encoding="utf-8").splitlines()
    header = items[0].split(",")
    row = items[1].split(",")
    row[header.index("year")] = "9x" * 3000
    (folder / "items.csv").write_text("\n".join([items[0], ",".join(row), *items[2:]]) + "\n",
                                      encoding="utf-8")
    with pytest.raises(DataError, match="not a number") as info:
        read_dataset(folder)
    _assert_short(info.value, "9x" * 50)
    # a task naming a huge unknown user
    folder = _copy_good(tmp_path, "ds2")
    task = {"user_id": "u" * 5000, "support": [], "query": [["i1", 4]]}
    (folder / "tasks" / "warm.jsonl").write_text(json.dumps(task) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"has no row in users\.csv") as info:
        read_dataset(folder)
    _assert_short(info.value, "u" * 100)


def test_spec_and_importer_errors_are_cut_short(tmp_path: Path) -> None:
    raw = json.loads((GOOD / "dataset.json").read_text(encoding="utf-8"))
    raw["items"]["columns"]["year"]["type"] = "t" * 5000
    with pytest.raises(DataError, match="unknown column type") as info:
        DatasetSpec.from_json(raw)
    _assert_short(info.value, "t" * 100)
    raw = json.loads((GOOD / "dataset.json").read_text(encoding="utf-8"))
    raw["k" * 5000] = 1
    with pytest.raises(DataError, match="unknown key") as info:
        DatasetSpec.from_json(raw)
    _assert_short(info.value, "k" * 100)
    # import-csv: the category column is missing from a file with long column names
    inter = tmp_path / "ratings.csv"
    inter.write_text("user_id,item_id,rating\nu1,i1,4\n", encoding="utf-8")
    items = tmp_path / "items.csv"
    cols = ["item_id"] + [f"c{k}_" + "q" * 400 for k in range(40)]
    items.write_text(",".join(cols) + "\n" + ",".join(["i1"] + ["v"] * 40) + "\n",
                     encoding="utf-8")
    with pytest.raises(DataError, match="no column 'category'") as info:
        import_interactions(inter, items, tmp_path / "out")
    _assert_short(info.value, "q" * 100)


# --- 3. credentials never appear in any output ----------------------------------------------


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    return subprocess.run(
        [sys.executable, "-c", "from training.cli import main; main()", *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "env", "shown"), [
    (["candidates", "--store", "neo4j", "--rated", "i1:5"],
     {"NEO4J_URI": "bolt://127.0.0.1:1", "NEO4J_PASSWORD": SECRET}, "unreachable"),
    (["candidates", "--store", "neo4j", "--rated", "i1:5"],
     {"NEO4J_URI": f"bolt://neo4j:{SECRET}@127.0.0.1:1", "NEO4J_PASSWORD": "other"},
     "bolt://***@127.0.0.1:1"),
    (["ingest", str(GOOD), "--store", "neo4j", "--neo4j-uri",
      f"bolt://neo4j:{SECRET}@127.0.0.1:1"],
     {"NEO4J_PASSWORD": SECRET, "GM_OTHER": SECRET}, "NEO4J_PASSWORD"),
])
def test_the_password_is_never_printed(args: list[str], env: dict[str, str],
                                       shown: str) -> None:
    result = _run_cli(args, env)
    assert result.returncode == 2, result.stderr
    assert SECRET not in result.stdout and SECRET not in result.stderr
    line = _one_error_line(result.stderr)
    assert shown in line


def test_driver_errors_are_one_masked_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import neo4j

    from graph_meta.store import neo4j as neo4j_store

    def fail(*_: Any, **__: Any) -> None:
        raise neo4j.exceptions.ServiceUnavailable(
            f"lost bolt://neo4j:{SECRET}@db:7687\nwhile sending {SECRET}")

    monkeypatch.setattr(neo4j_store.Neo4jGraphStore, "__init__", fail)
    result = CliRunner().invoke(cli, ["candidates", "--store", "neo4j", "--rated", "i1:5"],
                                env={"NEO4J_PASSWORD": SECRET})
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert SECRET not in result.output and "bolt://***@db:7687" in line


# --- 4. --overwrite replaces only a dataset folder -------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious\n", encoding="utf-8")
    before = _snapshot(out)
    with pytest.raises(DataError, match="not a dataset folder"):
        write_dataset(read_dataset(GOOD), out, overwrite=True)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    inter = tmp_path / "ratings.csv"
    inter.write_text("user_id,item_id,rating\nu1,i1,4\n", encoding="utf-8")
    with pytest.raises(DataError, match="not a dataset folder"):
        import_interactions(inter, tmp_path / "items.csv", out, overwrite=True)
    assert _snapshot(out) == before
    # a file is not replaced either
    with pytest.raises(DataError, match="not a folder"):
        write_dataset(read_dataset(GOOD), out / "thesis.tex", overwrite=True)
    # an empty folder and a dataset folder are
    (tmp_path / "empty").mkdir()
    write_dataset(read_dataset(GOOD), tmp_path / "empty")
    write_dataset(read_dataset(GOOD), tmp_path / "empty", overwrite=True)
    assert len(read_dataset(tmp_path / "empty").train) == 8


def test_cli_overwrite_of_a_foreign_folder_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n", encoding="utf-8")
    for args in (["synth", "--out", str(out), "--overwrite"],
                 ["import-csv", str(GOOD / "train.csv"), "--items", str(GOOD / "items.csv"),
                  "--out", str(out), "--overwrite"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "not a dataset folder" in _one_error_line(result.output)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me\n"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_interrupted_writes_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [f".ds.tmp-{dead}-abcd1234", f".ds.old-{dead}", ".ds.x1y2z3_w"]
    kept = [f".ds.tmp-{os.getpid()}-abcd1234",  # a write in progress
            f".other.tmp-{dead}-abcd1234", ".ds.keep-me", ".ds.abc", "ds-notes"]
    for name in stale + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.csv").write_text("x\n", encoding="utf-8")
    old = time.time() - 2 * 3600
    for name in [".ds.x1y2z3_w", ".ds.keep-me"]:
        os.utime(tmp_path / name, (old, old))
    write_dataset(read_dataset(GOOD), tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "ds"])
    # a legacy temporary name touched recently may be a write in progress: kept
    (tmp_path / ".ds.q1w2e3r4").mkdir()
    assert remove_stale_temporaries(tmp_path / "ds") == []


def test_a_run_without_a_model_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["add-items", str(GOOD), "--run", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "run" / "model.pt") in _one_error_line(result.output)
