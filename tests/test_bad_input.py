"""Malformed dataset folders: every defect is a DataError naming file, line and field.

``tests/data/good/`` is a tiny valid dataset folder (``benchmarks/PROTOCOL.md`` format).
Each ``tests/data/bad/<case>/`` is a complete copy of it with exactly one defect, and an
``expect.json``::

    {"file": "train.csv", "line": 4, "field": "rating",
     "message_contains": "outside the scale", "strict": false}

``file`` is relative to the case folder; ``line``/``field`` are null where not applicable;
``strict`` (optional) is passed to ``read_dataset``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from graph_meta.dataset import ITEM_ID, RATING, USER_ID, Task
from graph_meta.errors import DataError
from loaders.folder import read_dataset, write_dataset

DATA = Path(__file__).resolve().parent / "data"
GOOD = DATA / "good"
BAD = DATA / "bad"
CASES = sorted(p for p in BAD.iterdir() if p.is_dir())
FOLDER_FILES = {"dataset.json", "train.csv", "users.csv", "items.csv", "follows.csv",
                "tasks/warm.jsonl", "tasks/user_cold.jsonl"}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the bytes of the files (None for folders)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _snapshot(root).items() if v is not None and k != "expect.json"}


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 14
    assert set(_files(GOOD)) == FOLDER_FILES
    for case in CASES:
        assert (case / "expect.json").is_file(), case.name
        assert set(_files(case)) == FOLDER_FILES, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_has_one_defective_file(case: Path) -> None:
    good, bad = _files(GOOD), _files(case)
    changed = [name for name in FOLDER_FILES if good[name] != bad[name]]
    expect = json.loads((case / "expect.json").read_text(encoding="utf-8"))
    assert changed == [expect["file"]]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_raises_data_error(case: Path) -> None:
    expect = json.loads((case / "expect.json").read_text(encoding="utf-8"))
    assert set(expect) <= {"file", "line", "field", "message_contains", "strict"}
    before = _snapshot(case)

    with pytest.raises(DataError) as info:
        read_dataset(case, strict=expect.get("strict", False))

    exc = info.value
    want = Path(expect["file"])
    assert exc.file is not None
    assert Path(exc.file).parts[-len(want.parts):] == want.parts, exc.file
    assert Path(exc.file) == case / want
    assert exc.line == expect["line"], str(exc)
    assert exc.field == expect["field"], str(exc)
    message = str(exc)
    assert expect["message_contains"] in message
    assert want.name in message
    assert message.startswith(exc.file)
    if exc.line is not None:
        assert f"line {exc.line}" in message
    if exc.field is not None:
        assert repr(exc.field) in message
    # a failed load writes nothing and changes nothing
    assert _snapshot(case) == before


def test_good_folder_loads() -> None:
    ds = read_dataset(GOOD)
    assert ds.name == "tiny-movies"
    assert ds.spec.rating_scale == (1.0, 5.0)
    assert ds.warnings == []
    assert list(ds.users.index) == ["u1", "u2", "u3", "u4", "u5"]
    assert list(ds.items.index) == ["i1", "i2", "i3", "i4", "i5"]
    assert list(ds.users.columns) == ["gender", "age"]
    assert list(ds.items.columns) == ["title", "year", "genres", "director"]
    assert ds.users["age"].dtype == np.float64
    assert ds.items["year"].tolist() == [1995.0, 1995.0, 2000.0, 1996.0, 2009.0]
    assert ds.items.loc["i3", "title"] == "Crouching Tiger, Hidden Dragon"
    assert ds.items.loc["i1", "genres"] == "Animation|Comedy"
    assert len(ds.train) == 8
    assert ds.train[USER_ID].nunique() == 4
    assert ds.train[ITEM_ID].nunique() == 4
    assert ds.train[RATING].dtype == np.float32
    assert float(ds.train[RATING].sum()) == 27.0
    assert list(ds.relations) == ["FOLLOWS"]
    follows = ds.relations["FOLLOWS"]
    assert list(zip(follows["src"], follows["dst"], strict=True)) == [
        ("u1", "u2"), ("u2", "u3"), ("u4", "u5")]
    assert follows["weight"].tolist() == [1.0, 1.0, 1.0]
    assert {s: len(t) for s, t in ds.tasks.items()} == {"warm": 3, "user_cold": 1}
    assert ds.tasks["user_cold"][0] == Task("u5", [("i1", 5.0)], [("i2", 3.0), ("i3", 4.0)])
    counts = ds.cold_counts()
    assert counts["user_cold"]["cold_users"] == 1
    assert counts["warm"]["cold_users"] == 0
    assert counts["warm"]["query_ratings"] == 4
    # strict changes nothing on a clean folder; tasks=False skips the task files
    assert len(read_dataset(GOOD, strict=True).train) == 8
    assert read_dataset(GOOD, tasks=False).tasks == {}


def test_duplicate_pairs_are_kept_with_a_warning_by_default() -> None:
    case = BAD / "train_duplicate_pair"
    ds = read_dataset(case)
    assert len(ds.train) == 9  # the file's rows, unchanged
    pair = ds.train[(ds.train[USER_ID] == "u1") & (ds.train[ITEM_ID] == "i1")]
    assert pair[RATING].tolist() == [5.0, 4.0]
    assert len(ds.warnings) == 1
    warning = ds.warnings[0]
    assert "train.csv" in warning
    assert "('u1', 'i1') on lines 2 and 10" in warning


def test_several_duplicate_pairs_are_reported_in_file_order() -> None:
    ds = read_dataset(BAD / "train_duplicate_pairs_first_by_line")
    assert len(ds.train) == 10
    (warning,) = ds.warnings
    assert "2 duplicate" in warning
    first = warning.index("('u3', 'i2') on lines 6 and 10")
    assert first < warning.index("('u1', 'i1') on lines 2 and 11")


def test_missing_folder_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        read_dataset(tmp_path / "nope")
    folder = tmp_path / "ds"
    shutil.copytree(GOOD, folder)
    (folder / "follows.csv").unlink()
    with pytest.raises(DataError, match="relation file not found") as info:
        read_dataset(folder)
    assert info.value.file == str(folder / "follows.csv")
    (folder / "dataset.json").unlink()
    with pytest.raises(DataError, match=r"dataset\.json not found"):
        read_dataset(folder)


def test_empty_relation_file_is_a_data_error(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    shutil.copytree(GOOD, folder)
    (folder / "follows.csv").write_text("")
    with pytest.raises(DataError, match="empty file") as info:
        read_dataset(folder)
    assert (info.value.file, info.value.line) == (str(folder / "follows.csv"), 1)


def test_write_round_trip(tmp_path: Path) -> None:
    ds = read_dataset(GOOD)
    out = write_dataset(ds, tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    back = read_dataset(out)
    assert back.spec == ds.spec
    assert back.users.equals(ds.users)
    assert back.items.equals(ds.items)
    assert back.train.astype(str).equals(ds.train.astype(str))
    assert back.tasks == ds.tasks
    assert back.relations["FOLLOWS"].equals(ds.relations["FOLLOWS"])


def test_write_into_existing_folder_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("precious\n")
    before_parent = sorted(p.name for p in tmp_path.iterdir())
    before = _snapshot(out)
    with pytest.raises(DataError, match="not empty") as info:
        write_dataset(read_dataset(GOOD), out)
    assert info.value.file == str(out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == before_parent


def test_write_failing_midway_leaves_nothing(tmp_path: Path) -> None:
    ds = read_dataset(GOOD)
    ds.relations = {}  # dataset.json declares FOLLOWS: fails after train/users/items
    out = tmp_path / "new"
    with pytest.raises((KeyError, DataError), match="FOLLOWS"):
        write_dataset(ds, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder, no partial output


def test_overwrite_failing_midway_keeps_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    shutil.copytree(GOOD, out)
    before = _snapshot(out)
    ds = read_dataset(GOOD)
    ds.relations = {}
    with pytest.raises((KeyError, DataError), match="FOLLOWS"):
        write_dataset(ds, out, overwrite=True)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    # and a successful overwrite replaces it atomically, leaving no sibling behind
    write_dataset(read_dataset(GOOD), out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    assert len(read_dataset(out).train) == 8


def test_what_the_model_will_not_use_is_a_warning(tmp_path: Path) -> None:
    """A relation edge of weight <= 0 is kept in the data but no model uses it, and a rating
    folder's ``weight`` column is read by no rating model: both said, neither an error."""
    folder = tmp_path / "f"
    shutil.copytree(GOOD, folder)
    spec = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    spec["relations"][0]["weight"] = "strength"
    (folder / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    (folder / "follows.csv").write_text("src_id,dst_id,strength\nu1,u2,1\nu2,u3,0\n",
                                        encoding="utf-8")
    rows = (folder / "train.csv").read_text(encoding="utf-8").splitlines()
    rows = [rows[0] + ",weight"] + [r + ",2" for r in rows[1:]]
    (folder / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = read_dataset(folder)
    assert ds.relations["FOLLOWS"]["weight"].tolist() == [1.0, 0.0]
    assert any("follows.csv: 1 edge(s) with strength <= 0 (first on line 3): the relation "
               "prior and the relation links ignore them" in w for w in ds.warnings), ds.warnings
    (folder / "follows.csv").write_text("src_id,dst_id,strength\nu1,u2,1e39\n",
                                        encoding="utf-8")
    with pytest.raises(DataError, match=r"weight past 3\.4e38") as err:
        read_dataset(folder)
    assert (err.value.line, err.value.field) == (2, "strength")
    assert any("train.csv: the weight column is a confidence of implicit folders" in w
               for w in ds.warnings), ds.warnings


def test_new_ratings_a_header_only_batch_is_empty_and_bad_bytes_are_placed(
        tmp_path: Path) -> None:
    from loaders.ratings import read_new_ratings

    ds = read_dataset(GOOD)
    batch = tmp_path / "new.csv"
    batch.write_text("user_id,item_id,rating\n", encoding="utf-8")
    assert read_new_ratings(batch, ds).empty  # a batch with nothing in it ingests nothing
    batch.write_bytes(b"user_id,item_id,rating\nu1,i1,4\nu\xe9,i2,3\n")
    with pytest.raises(DataError, match="not UTF-8 text: byte 0xe9") as err:
        read_new_ratings(batch, ds)
    assert err.value.line == 3 and err.value.file == str(batch)
