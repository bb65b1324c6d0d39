"""Importers: MovieLens-1M ``.dat`` files and a user's own CSV/Parquet files.

Every test writes its own small fake input into ``tmp_path``; nothing needs the network or
``../shared/data``.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graph_meta.errors import DataError
from graph_meta.eval.split import SplitOptions
from graph_meta.schema import CATEGORY
from loaders import movielens
from loaders.csv_import import import_interactions, infer_column_type
from loaders.folder import read_dataset
from loaders.movielens import download_movielens, import_movielens

SMALL = {"query_size": 5, "min_support": 2, "max_support": 60}
SMALL_SPLIT = {"split": SplitOptions(**SMALL)}
LATIN_TITLE = "Cité des enfants perdus, La (City of Lost Children, The)"
GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Drama", "Sci-Fi"]


# ---------------------------------------------------------------------------------------------
# MovieLens-1M


def write_ml1m(folder: Path, n_users: int = 40, n_movies: int = 60, per_user: int = 40,
               seed: int = 0) -> Path:
    """A fake ml-1m folder: ``::``-separated latin-1 files in the official layout."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    users = [
        f"{u}::{'MF'[u % 2]}::{[1, 18, 25, 35, 45, 50, 56][u % 7]}::{u % 21}::{10000 + u * 7}"
        for u in range(1, n_users + 1)
    ]
    movies = []
    for m in range(1, n_movies + 1):
        title = LATIN_TITLE if m == 1 else f"Movie {m}"
        genres = "|".join(rng.choice(GENRES, size=1 + m % 3, replace=False))
        movies.append(f"{m}::{title} ({1940 + m})::{genres}")
    ratings = []
    for u in range(1, n_users + 1):
        for m in sorted(rng.choice(np.arange(1, n_movies + 1), size=per_user, replace=False)):
            ratings.append(f"{u}::{m}::{rng.integers(1, 6)}::{978300000 + u * 1000 + int(m)}")
    for name, lines in (("users.dat", users), ("movies.dat", movies),
                        ("ratings.dat", ratings)):
        (folder / name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return folder


def test_movielens_round_trip(tmp_path: Path) -> None:
    source = write_ml1m(tmp_path / "ml-1m")
    # the parent folder of ml-1m/ is accepted too
    out = import_movielens(tmp_path, tmp_path / "ds", split=SplitOptions(seed=3, **SMALL))
    data = read_dataset(out, strict=True)

    assert data.spec.rating_scale == (1.0, 5.0)
    assert len(data.users) == 40 and len(data.items) == 60
    assert list(data.users.columns) == ["gender", "age", "occupation", "zip"]
    assert {c.type for c in data.spec.users.columns.values()} == {"categorical"}
    assert data.users.loc["3", "age"] == "35" and data.users.loc["3", "gender"] == "F"
    genres = data.spec.items.columns["genres"]
    assert (genres.type, genres.sep, genres.node) == ("multi", "|", CATEGORY)
    assert data.spec.items.columns["year"].type == "numeric"
    assert data.spec.items.columns["title"].type == "text"
    assert data.items.loc["1", "title"] == LATIN_TITLE
    assert data.items.loc["7", "title"] == "Movie 7"
    assert data.items.loc["7", "year"] == 1947.0
    assert set("|".join(data.items["genres"]).split("|")) <= set(GENRES)
    assert "timestamp" in data.train.columns

    assert set(data.tasks) <= {"warm", "user_cold", "item_cold", "user_item_cold"}
    assert sum(len(t) for t in data.tasks.values()) > 0
    assert data.tasks.get("user_cold") and data.tasks.get("item_cold")
    for tasks in data.tasks.values():
        for task in tasks:
            assert len(task.query) == 5 and 2 <= len(task.support) <= 60
    total = sum(len(t.support) + len(t.query) for ts in data.tasks.values() for t in ts)
    assert len(data.train) + total <= 40 * 40

    # the cold items are the newest releases
    train_items = set(data.train["item_id"].astype(str))
    cold = {i for t in data.tasks["item_cold"] for i, _ in (*t.support, *t.query)} - train_items
    assert cold
    assert data.items.loc[list(cold), "year"].min() > data.items.loc[list(train_items),
                                                                     "year"].max()

    stats = json.loads((out / "dataset.json").read_text(encoding="utf-8"))["stats"]
    assert stats["rating_rows"] == 1600 and stats["duplicates_dropped"] == 0
    # the same seed gives the same folder
    again = import_movielens(source, tmp_path / "ds2", split=SplitOptions(seed=3, **SMALL))
    for f in ("train.csv", "items.csv", "users.csv", "tasks/user_cold.jsonl"):
        assert (out / f).read_bytes() == (again / f).read_bytes()


def test_movielens_refuses_existing_output(tmp_path: Path) -> None:
    write_ml1m(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="overwrite"):
        import_movielens(tmp_path / "src", tmp_path / "out", **SMALL_SPLIT)
    assert (tmp_path / "out" / "keep.txt").exists()


@pytest.mark.parametrize(
    ("file", "line", "text", "field", "message"),
    [
        ("ratings.dat", 5, "1::2::3", None, "expected 4 fields"),
        ("ratings.dat", 7, "1::2::3::4::5", None, "found 5"),
        ("ratings.dat", 3, "1::two::3::978300000", "MovieID", "not an integer id"),
        ("ratings.dat", 9, "1::2::x::978300000", "Rating", "not a number"),
        ("ratings.dat", 2, "1::2::6::978300000", "Rating", "outside 1..5"),
        ("ratings.dat", 4, "1::2::0::978300000", "Rating", "outside 1..5"),
        ("ratings.dat", 6, "1::2::4::noon", "Timestamp", "not an integer"),
        ("ratings.dat", 8, "1::999::4::978300000", "MovieID", "not in movies.dat"),
        ("ratings.dat", 8, "999::1::4::978300000", "UserID", "not in users.dat"),
        ("users.dat", 4, "x1::M::25::3::12345", "UserID", "not an integer id"),
        ("users.dat", 2, "2::M::25::3", None, "expected 5 fields"),
        ("users.dat", 6, "1::M::25::3::12345", "UserID", "duplicate id '1' (first on line 1)"),
        ("movies.dat", 3, "3::Movie 3 (1943)", None, "expected 3 fields"),
        ("movies.dat", 5, "5.5::Movie (1943)::Drama", "MovieID", "not an integer id"),
    ],
)
def test_movielens_malformed_lines(tmp_path: Path, file: str, line: int, text: str,
                                   field: str | None, message: str) -> None:
    source = write_ml1m(tmp_path / "ml-1m", n_users=12, n_movies=20, per_user=15)
    path = source / file
    lines = path.read_bytes().decode("latin-1").split("\n")
    lines[line - 1] = text
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DataError) as err:
        import_movielens(source, tmp_path / "out", **SMALL_SPLIT)
    assert err.value.file == str(path)
    assert err.value.line == line
    assert err.value.field == field
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_movielens_missing_files_say_where(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        import_movielens(tmp_path / "empty", tmp_path / "out")
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg and "ratings.dat" in msg and "--download" in msg


def _no_network(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_download_offline_names_the_folder(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens.urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError) as err:
        download_movielens(tmp_path / "raw")
    msg = str(err.value)
    assert "cannot download https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg
    assert "name resolution" in msg
    assert str(tmp_path / "raw" / "ml-1m") in msg
    assert "ratings.dat, users.dat and movies.dat" in msg
    assert f"graph-meta import-movielens {tmp_path / 'raw' / 'ml-1m'} --out" in msg
    assert list((tmp_path / "raw").iterdir()) == []  # no partial download left


def test_download_rejects_a_wrong_checksum(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens.urllib.request, "urlopen",
                        lambda *a, **k: io.BytesIO(b"<html>captive portal</html>"))
    with pytest.raises(DataError, match="checksum mismatch"):
        download_movielens(tmp_path)
    assert not (tmp_path / "ml-1m.zip").exists()
    assert not (tmp_path / "ml-1m.zip.part").exists()


def test_download_skips_when_files_are_there(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens.urllib.request, "urlopen", _no_network)
    write_ml1m(tmp_path / "ml-1m", n_users=3, n_movies=4, per_user=2)
    assert download_movielens(tmp_path) == tmp_path / "ml-1m"


def test_download_checks_and_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_ml1m(tmp_path / "src", n_users=12, n_movies=20, per_user=15)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/", "")
        for f in (*movielens.ML1M_FILES, "README"):
            zf.writestr(f"ml-1m/{f}", (src / f).read_bytes() if f != "README" else b"readme")
    payload = buf.getvalue()
    monkeypatch.setattr(movielens, "ML1M_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(movielens, "ML1M_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(movielens.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(payload))
    folder = download_movielens(tmp_path / "dl")
    assert folder == tmp_path / "dl" / "ml-1m"
    assert (folder / "ratings.dat").read_bytes() == (src / "ratings.dat").read_bytes()
    assert (tmp_path / "dl" / "ml-1m.zip").is_file()
    # a zip put there by hand is checked and used offline
    (folder / "ratings.dat").unlink()
    monkeypatch.setattr(movielens.urllib.request, "urlopen", _no_network)
    assert download_movielens(tmp_path / "dl") == folder
    assert (folder / "ratings.dat").is_file()


# ---------------------------------------------------------------------------------------------
# CSV / Parquet


BRANDS = ["Acme", "Globex", "Initech", "Umbrella"]
CATEGORIES = ["Phones", "Audio", "Laptops", "Cameras", "Toys"]


def make_tables(n_users: int = 40, n_items: int = 50, per_user: int = 30,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "item_id": [f"{i:03d}" for i in range(n_items)],
        "title": [f"Product number {i} deluxe" for i in range(n_items)],
        "category": [CATEGORIES[i % 5] for i in range(n_items)],
        "brand": [BRANDS[i % 4] for i in range(n_items)],
        "price": np.round(rng.uniform(5, 500, n_items), 2),
        "tags": ["|".join(rng.choice(["new", "sale", "eco", "gift"], 2, replace=False))
                 for _ in range(n_items)],
        "description": [f"A long description of product {i}, with commas, \"quotes\" and "
                        f"enough words to count as free text." for i in range(n_items)],
    })
    users = pd.DataFrame({
        "user_id": [f"u{u}" for u in range(n_users)],
        "age": rng.integers(18, 70, n_users),
        "country": [["FR", "DE", "US"][u % 3] for u in range(n_users)],
    })
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            rows.append((f"u{u}", f"{i:03d}", float(rng.integers(1, 6)),
                         1_600_000_000 + int(rng.integers(0, 10**6))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "ts"])
    return inter, items, users


def test_csv_round_trip(tmp_path: Path) -> None:
    inter, items, users = make_tables()
    # a duplicate pair whose later event (by timestamp) is written first
    first = inter.iloc[0]
    dup = first.copy()
    dup["rating"] = 6.0 - first["rating"]
    dup["ts"] = first["ts"] - 5
    inter = pd.concat([inter, dup.to_frame().T], ignore_index=True)
    inter.to_csv(tmp_path / "events.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    users.to_csv(tmp_path / "users.csv", index=False)

    out = import_interactions(tmp_path / "events.csv", tmp_path / "items.csv", tmp_path / "ds",
                              users_path=tmp_path / "users.csv", timestamp_col="ts",
                              node_columns={"brand": "Brand", "country": "Country"},
                              split=SplitOptions(seed=1, **SMALL))
    data = read_dataset(out, strict=True)
    assert data.name == "ds"
    assert data.spec.rating_scale == (1.0, 5.0) and not data.spec.implicit
    cols = {n: (c.type, c.sep, c.node) for n, c in data.spec.items.columns.items()}
    assert cols == {
        "title": ("text", None, None),
        "category": ("categorical", None, CATEGORY),
        "brand": ("categorical", None, "Brand"),
        "price": ("numeric", None, None),
        "tags": ("multi", "|", None),
        "description": ("text", None, None),
    }
    ucols = {n: (c.type, c.node) for n, c in data.spec.users.columns.items()}
    assert ucols == {"age": ("numeric", None), "country": ("categorical", "Country")}
    assert "Brand" in data.schema.node_types and "Country" in data.schema.node_types
    assert data.items.index[0] == "000"  # ids stay as written
    assert data.items.loc["007", "description"].startswith("A long description of product 7,")
    assert len(data.items) == 50 and len(data.users) == 40
    assert "timestamp" in data.train.columns

    stats = data.spec.stats
    assert stats["interaction_rows"] == len(inter) and stats["duplicates_dropped"] == 1
    # the kept rating of the duplicated pair is the latest one
    u, i = first["user_id"], first["item_id"]
    kept = [r for t in (*data.tasks.get("warm", []), *data.tasks.get("user_cold", []),
                        *data.tasks.get("item_cold", []), *data.tasks.get("user_item_cold", []))
            if t.user_id == u for it, r in (*t.support, *t.query) if it == i]
    kept += data.train.loc[(data.train["user_id"] == u) & (data.train["item_id"] == i),
                           "rating"].tolist()
    assert kept == [first["rating"]]
    assert sum(len(t) for t in data.tasks.values()) > 0


def test_parquet_round_trip(tmp_path: Path) -> None:
    inter, items, _ = make_tables(seed=2)
    inter["ts"] = pd.to_datetime(inter["ts"], unit="s")
    items["item_id"] = items["item_id"].astype(int)
    inter["item_id"] = inter["item_id"].astype(int)
    items["category"] = [[CATEGORIES[k % 5], CATEGORIES[(k + 1) % 5]] for k in range(len(items))]
    items["launched"] = pd.to_datetime("2020-01-01") + pd.to_timedelta(
        np.arange(len(items)), unit="D")
    inter.to_parquet(tmp_path / "events.parquet")
    items.to_parquet(tmp_path / "items.parquet")

    out = import_interactions(tmp_path / "events.parquet", tmp_path / "items.parquet",
                              tmp_path / "ds", timestamp_col="ts", release_col="launched",
                              item_columns={"title": "text", "price": "numeric"},
                              name="shop", **SMALL_SPLIT)
    data = read_dataset(out, strict=True)
    assert data.name == "shop"
    assert list(data.spec.items.columns) == ["title", "price", "category"]
    cat = data.spec.items.columns["category"]
    assert (cat.type, cat.sep, cat.node) == ("multi", "|", CATEGORY)
    assert data.items.loc["7", "category"] == "Laptops|Cameras"
    assert list(data.users.columns) == [] and len(data.users) == 40
    assert data.train["timestamp"].min() >= 1_600_000_000
    # release_col: cold items are the latest launches
    train_items = set(data.train["item_id"].astype(str))
    cold = {i for t in data.tasks.get("item_cold", []) for i, _ in (*t.support, *t.query)}
    cold -= train_items
    assert cold
    assert min(int(i) for i in cold) > max(int(i) for i in train_items)


def test_implicit_feedback(tmp_path: Path) -> None:
    inter, items, _ = make_tables()
    inter[["user_id", "item_id"]].to_csv(tmp_path / "clicks.tsv", sep="\t", index=False)
    items[["item_id", "category"]].to_csv(tmp_path / "items.csv", index=False)
    out = import_interactions(tmp_path / "clicks.tsv", tmp_path / "items.csv", tmp_path / "ds",
                              rating_col=None, **SMALL_SPLIT)
    data = read_dataset(out, strict=True)
    assert data.spec.implicit and data.spec.rating_scale == (0.0, 1.0)
    assert (data.train["rating"] == 1).all()
    assert all(r == 1.0 for ts in data.tasks.values() for t in ts for _, r in t.query)


def test_category_separator_and_given_scale(tmp_path: Path) -> None:
    inter, items, _ = make_tables()
    items["category"] = [f" {CATEGORIES[i % 5]} ,{CATEGORIES[(i + 2) % 5]}, "
                         for i in range(len(items))]
    inter.to_csv(tmp_path / "events.csv.gz", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    out = import_interactions(tmp_path / "events.csv.gz", tmp_path / "items.csv",
                              tmp_path / "ds", category_sep=",", rating_scale=(0, 10),
                              **SMALL_SPLIT)
    data = read_dataset(out, strict=True)
    cat = data.spec.items.columns["category"]
    assert (cat.type, cat.sep, cat.node) == ("multi", ",", CATEGORY)
    assert data.items.loc["001", "category"] == "Audio,Cameras"
    assert data.spec.rating_scale == (0.0, 10.0)


def _write_small(tmp_path: Path, extra_rows: str = "") -> tuple[Path, Path]:
    inter, items, _ = make_tables(n_users=20, n_items=30, per_user=20)
    text = inter.to_csv(index=False) + extra_rows
    (tmp_path / "events.csv").write_text(text, encoding="utf-8")
    items.to_csv(tmp_path / "items.csv", index=False)
    return tmp_path / "events.csv", tmp_path / "items.csv"


def test_unknown_item_is_an_error_or_dropped(tmp_path: Path) -> None:
    events, items = _write_small(tmp_path, "\nu1,999,4,1600000000\nu2,998,4,1600000000\n")
    n_lines = len(events.read_text().splitlines())
    with pytest.raises(DataError) as err:
        import_interactions(events, items, tmp_path / "ds", **SMALL_SPLIT)
    assert err.value.file == str(events)
    assert err.value.line == n_lines - 1  # the blank line is counted
    assert err.value.field == "item_id"
    assert "'999' has no row in" in str(err.value) and "drop_unknown=True" in str(err.value)

    out = import_interactions(events, items, tmp_path / "ds", drop_unknown=True, **SMALL_SPLIT)
    data = read_dataset(out, strict=True)
    assert data.spec.stats["unknown_items_dropped"] == 2


def test_unknown_user_with_users_file(tmp_path: Path) -> None:
    events, items = _write_small(tmp_path)
    pd.DataFrame({"user_id": ["u1"], "age": [30]}).to_csv(tmp_path / "users.csv", index=False)
    with pytest.raises(DataError, match="user 'u0' has no row") as err:
        import_interactions(events, items, tmp_path / "ds", users_path=tmp_path / "users.csv",
                            **SMALL_SPLIT)
    assert err.value.line == 2 and err.value.field == "user_id"


def test_missing_column_names_the_columns(tmp_path: Path) -> None:
    events, items = _write_small(tmp_path)
    with pytest.raises(DataError) as err:
        import_interactions(events, items, tmp_path / "ds", rating_col="score")
    msg = str(err.value)
    assert err.value.field == "score" and err.value.line == 1
    assert "['user_id', 'item_id', 'rating', 'ts']" in msg and "rating_col=None" in msg
    with pytest.raises(DataError, match=r"no column 'genre' .*'category'") as err:
        import_interactions(events, items, tmp_path / "ds", category_col="genre")
    assert err.value.file == str(items)
    with pytest.raises(DataError, match="no column 'maker'"):
        import_interactions(events, items, tmp_path / "ds", node_columns={"maker": "Maker"})
    with pytest.raises(DataError, match="node type"):
        import_interactions(events, items, tmp_path / "ds", node_columns={"brand": "brand"})


def test_bad_values_name_line_and_field(tmp_path: Path) -> None:
    events, items = _write_small(tmp_path, "u1,001,great,1600000000\n")
    n_lines = len(events.read_text().splitlines())
    with pytest.raises(DataError) as err:
        import_interactions(events, items, tmp_path / "ds")
    assert (err.value.line, err.value.field) == (n_lines, "rating")
    assert "'great'" in str(err.value)

    events, items = _write_small(tmp_path, "u1,001,4,1600000000,extra\n")
    with pytest.raises(DataError, match="expected 4 fields") as err:
        import_interactions(events, items, tmp_path / "ds")
    assert err.value.line == n_lines

    events, items = _write_small(tmp_path, "u1,001,4,yesterday-ish\n")
    with pytest.raises(DataError, match="timestamp") as err:
        import_interactions(events, items, tmp_path / "ds", timestamp_col="ts")
    assert (err.value.line, err.value.field) == (n_lines, "ts")

    events, items = _write_small(tmp_path, "u1,001,99,1600000000\n")
    with pytest.raises(DataError, match=r"rating 99 outside the scale \[1, 5\]") as err:
        import_interactions(events, items, tmp_path / "ds", rating_scale=(1, 5))
    assert (err.value.line, err.value.field) == (n_lines, "rating")

    frame = pd.read_csv(items, dtype=str)
    frame.loc[5, "item_id"] = frame.loc[2, "item_id"]
    frame.to_csv(items, index=False)
    with pytest.raises(DataError, match="duplicate id '002' \\(first on line 4\\)") as err:
        import_interactions(events, items, tmp_path / "ds")
    assert err.value.line == 7


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    inter, items, _ = make_tables(n_users=5, n_items=10, per_user=5)
    inter.loc[3, "item_id"] = "nope"
    inter.to_parquet(tmp_path / "e.parquet")
    items.to_parquet(tmp_path / "i.parquet")
    with pytest.raises(DataError, match="row 4: item 'nope'") as err:
        import_interactions(tmp_path / "e.parquet", tmp_path / "i.parquet", tmp_path / "ds")
    assert err.value.field == "item_id" and err.value.line is None


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "e.xlsx").write_text("x")
    (tmp_path / "i.csv").write_text("item_id,category\n1,a\n")
    with pytest.raises(DataError, match="unsupported file type"):
        import_interactions(tmp_path / "e.xlsx", tmp_path / "i.csv", tmp_path / "ds")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([1.5, 2.0, np.nan]), ("numeric", None)),
        (pd.Series(["1", "2.5", ""]), ("numeric", None)),
        (pd.Series(["02134", "10001", "94105"]), ("categorical", None)),
        (pd.Series(["a", "b", "a", "c"] * 10), ("categorical", None)),
        (pd.Series([f"Title {i}" for i in range(40)]), ("text", None)),
        (pd.Series(["x" * 80, "y" * 90]), ("text", None)),
        (pd.Series(["Drama|Comedy", "Drama", "Action|Drama"]), ("multi", "|")),
        (pd.Series([True, False, True]), ("categorical", None)),
        (pd.Series([["a", "b|c"], ["d"]], dtype=object), ("multi", ";")),
        (pd.Series(["", ""]), ("categorical", None)),
    ],
)
def test_infer_column_type(values: pd.Series, expected: tuple[str, str | None]) -> None:
    assert infer_column_type(values) == expected


def test_csv_import_reads_spreadsheet_exports_with_a_byte_order_mark(tmp_path: Path) -> None:
    inter, items, users = make_tables()
    for frame, name in ((inter, "events.csv"), (items, "items.csv"), (users, "users.csv")):
        frame.to_csv(tmp_path / name, index=False, encoding="utf-8-sig")
    assert (tmp_path / "events.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    out = import_interactions(tmp_path / "events.csv", tmp_path / "items.csv", tmp_path / "ds",
                              users_path=tmp_path / "users.csv", timestamp_col="ts",
                              split=SplitOptions(seed=1, **SMALL))
    data = read_dataset(out, strict=True)
    assert data.items.index[0] == "000" and len(data.users) == 40
    assert data.spec.stats["interaction_rows"] == len(inter)
