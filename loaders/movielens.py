"""MovieLens-1M importer: the official GroupLens files to a cold-start dataset folder.

MovieLens-1M (https://grouplens.org/datasets/movielens/1m/) ships as ``ml-1m.zip`` holding
three ``::``-separated latin-1 files without a header:

* ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp`` (ratings 1..5, Unix seconds);
* ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code`` (age and occupation codes);
* ``movies.dat``: ``MovieID::Title (Year)::Genres`` (genres joined by ``|``).

:func:`import_movielens` turns them into a dataset folder (``benchmarks/PROTOCOL.md``):
users with ``gender``, ``age``, ``occupation``, ``zip`` (categorical); items with ``title``
(text, the year removed), ``year`` (numeric, parsed from the title) and ``genres`` (multi,
``|``, node type ``Category``). The ratings are split with
:func:`graph_meta.eval.split.split_cold_start` with the release year as ``item_release``, so the
cold items are the newest films, and the folder is written atomically.

:func:`download_movielens` fetches and checks ``ml-1m.zip``. Without network access it raises
a :class:`graph_meta.DataError` saying where to put the files and what to run.

This is MovieLens-1M split by this project, not the MetaHIN split of the benchmark
(``../shared/data/movielens-1m``): numbers measured on one are not comparable to the other.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset
from graph_meta.errors import DataError, short
from graph_meta.eval.split import SplitOptions
from graph_meta.schema import CATEGORY
from loaders.csv_import import dataset_from_frames
from loaders.folder import check_output_folder, write_dataset

log = logging.getLogger(__name__)

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
#: SHA-256 of ml-1m.zip (as recorded by TensorFlow Datasets' url_checksums/movielens.txt).
ML1M_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
#: MD5 published by GroupLens (ml-1m.zip.md5).
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
ML1M_SIZE = 5917549
ML1M_FILES = ("ratings.dat", "users.dat", "movies.dat")
ENCODING = "latin-1"
SEP = "::"

USER_COLUMNS = {"gender": {"type": "categorical"}, "age": {"type": "categorical"},
                "occupation": {"type": "categorical"}, "zip": {"type": "categorical"}}
ITEM_COLUMNS = {"title": {"type": "text"}, "year": {"type": "numeric"},
                "genres": {"type": "multi", "sep": "|", "node": CATEGORY}}

_YEAR_RE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
_INT_RE = r"^[0-9]{1,18}$"
_NUMBER_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


# ---------------------------------------------------------------------------------------------
# Parsing the .dat files


def _split_lines(path: Path, fields: tuple[str, ...]) -> tuple[list[pa.Array], np.ndarray]:
    """Columns (stripped strings) of a ``::`` file whose every non-blank line has exactly
    ``len(fields)`` fields, and the 1-based line number of each row."""
    if not path.is_file():
        raise DataError("file not found", file=path)
    text = path.read_bytes().decode(ENCODING)
    raw = pa.array(text.split("\n"), type=pa.large_string())
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(raw)), 0).to_numpy(
        zero_copy_only=False)
    lines = np.flatnonzero(~blank) + 1
    if not len(lines):
        raise DataError("empty file", file=path)
    rows = pc.utf8_rtrim(raw.filter(pa.array(~blank)), characters="\r")
    parts = pc.split_pattern(rows, SEP)
    n = len(fields)
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    bad = counts != n
    if bad.any():
        k = int(bad.argmax())
        line = rows[k].as_py()
        raise DataError(
            f"expected {n} fields separated by '::' ({'::'.join(fields)}), "
            f"found {int(counts[k])}: {short(line, 80)}", file=path, line=int(lines[k]))
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    starts = np.arange(len(lines), dtype=np.int64) * n
    return [flat.take(pa.array(starts + j)) for j in range(n)], lines


def _check(col: pa.Array, pattern: str, path: Path, lines: np.ndarray, field: str,
           message: str) -> None:
    ok = pc.match_substring_regex(col, pattern).to_numpy(zero_copy_only=False)
    if not ok.all():
        k = int((~ok).argmax())
        raise DataError(f"{message}: {short(col[k].as_py())}", file=path, line=int(lines[k]),
                        field=field)


def _int_ids(col: pa.Array, path: Path, lines: np.ndarray, field: str) -> np.ndarray:
    """Integer ids as canonical strings (``"007"`` and ``"7"`` are the same MovieLens id)."""
    _check(col, _INT_RE, path, lines, field, "not an integer id")
    ids = pc.cast(pc.cast(col, pa.int64()), pa.string())
    return np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)


def _unique(ids: np.ndarray, path: Path, lines: np.ndarray, field: str) -> None:
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        k = int(dup.argmax())
        first = int(lines[int(np.flatnonzero(ids == ids[k])[0])])
        raise DataError(f"duplicate id {ids[k]!r} (first on line {first})", file=path,
                        line=int(lines[k]), field=field)


def _objects(col: pa.Array) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def read_users(path: str | Path) -> pd.DataFrame:
    """``users.dat`` as a frame indexed by ``user_id`` with gender, age, occupation, zip."""
    path = Path(path)
    fields = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
    cols, lines = _split_lines(path, fields)
    ids = _int_ids(cols[0], path, lines, "UserID")
    _unique(ids, path, lines, "UserID")
    for col, fld in ((cols[2], "Age"), (cols[3], "Occupation")):
        _check(col, _INT_RE, path, lines, fld, "not an integer code")
    return pd.DataFrame(
        {name: _objects(col) for name, col in zip(USER_COLUMNS, cols[1:], strict=True)},
        index=pd.Index(ids, name=USER_ID, dtype=object))


def read_movies(path: str | Path) -> pd.DataFrame:
    """``movies.dat`` as a frame indexed by ``item_id`` with title, year (NaN if none), genres."""
    path = Path(path)
    cols, lines = _split_lines(path, ("MovieID", "Title", "Genres"))
    ids = _int_ids(cols[0], path, lines, "MovieID")
    _unique(ids, path, lines, "MovieID")
    titles, years = [], []
    for raw in _objects(cols[1]):
        m = _YEAR_RE.match(raw)
        titles.append(m["title"] if m else raw)
        years.append(float(m["year"]) if m else np.nan)
    genres = ["|".join(dict.fromkeys(g.strip() for g in raw.split("|") if g.strip()))
              for raw in _objects(cols[2])]
    return pd.DataFrame(
        {"title": np.asarray(titles, dtype=object),
         "year": np.asarray(years, dtype=np.float64),
         "genres": np.asarray(genres, dtype=object)},
        index=pd.Index(ids, name=ITEM_ID, dtype=object))


def read_ratings(path: str | Path, users: pd.Index | None = None,
                 movies: pd.Index | None = None) -> pd.DataFrame:
    """``ratings.dat`` as ``user_id``, ``item_id`` (str), ``rating`` (float), ``timestamp``.

    With ``users``/``movies`` given, a rating of an unknown user or movie is an error.
    """
    path = Path(path)
    cols, lines = _split_lines(path, ("UserID", "MovieID", "Rating", "Timestamp"))
    uids = _int_ids(cols[0], path, lines, "UserID")
    iids = _int_ids(cols[1], path, lines, "MovieID")
    _check(cols[2], _NUMBER_RE, path, lines, "Rating", "rating is not a number")
    rating = pc.cast(cols[2], pa.float64()).to_numpy(zero_copy_only=False)
    outside = ~np.isfinite(rating) | (rating < 1) | (rating > 5)
    if outside.any():
        k = int(outside.argmax())
        raise DataError(f"rating {cols[2][k].as_py()} outside 1..5", file=path,
                        line=int(lines[k]), field="Rating")
    _check(cols[3], r"^-?[0-9]{1,18}$", path, lines, "Timestamp", "timestamp is not an integer")
    timestamp = pc.cast(cols[3], pa.int64()).to_numpy(zero_copy_only=False)
    for ids, index, fld, other in ((uids, users, "UserID", "users.dat"),
                                   (iids, movies, "MovieID", "movies.dat")):
        if index is None:
            continue
        unknown = ~pd.Index(ids).isin(index)
        if unknown.any():
            k = int(unknown.argmax())
            raise DataError(f"id {ids[k]} is not in {other}", file=path, line=int(lines[k]),
                            field=fld)
    return pd.DataFrame({USER_ID: uids, ITEM_ID: iids, RATING: rating,
                         TIMESTAMP: timestamp.astype(np.int64)})


def find_movielens_files(source_dir: str | Path) -> Path:
    """The folder holding ``ratings.dat``, ``users.dat``, ``movies.dat``: ``source_dir``
    itself or its ``ml-1m`` subfolder (where the zip extracts to)."""
    source = Path(source_dir)
    for folder in (source, source / "ml-1m"):
        if all((folder / f).is_file() for f in ML1M_FILES):
            return folder
    missing = [f for f in ML1M_FILES if not (source / f).is_file()]
    raise DataError(
        f"MovieLens-1M files missing: {missing}. Put ratings.dat, users.dat and movies.dat "
        f"(from {ML1M_URL}) in {source}, or run `graph-meta import-movielens {source} --download "
        "--out DATASET`", file=source)


# ---------------------------------------------------------------------------------------------
# Building and importing


def movielens_dataset(
    source_dir: str | Path,
    *,
    name: str = "movielens-1m-import",
    split: SplitOptions | None = None,
) -> Dataset:
    """Parse the MovieLens-1M files in ``source_dir`` and split them into a :class:`Dataset`."""
    folder = find_movielens_files(source_dir)
    users = read_users(folder / "users.dat")
    movies = read_movies(folder / "movies.dat")
    ratings = read_ratings(folder / "ratings.dat", users.index, movies.index)
    n_rows = len(ratings)
    ratings = ratings.sort_values(TIMESTAMP, kind="stable")
    dup = ratings.duplicated([USER_ID, ITEM_ID], keep="last").to_numpy()
    ratings = ratings[~dup].sort_index().reset_index(drop=True)
    if dup.any():
        log.warning("%s: %d duplicate (user, movie) rating(s); kept the latest of each",
                    folder / "ratings.dat", int(dup.sum()))
    years = movies["year"]
    # a film without a year counts as old: it never becomes a cold item
    oldest = years.min() if years.notna().any() else 0.0
    release = years.fillna(oldest).rename("year")
    stats = {
        "source": "MovieLens-1M (GroupLens ml-1m.zip)",
        "rating_rows": n_rows,
        "duplicates_dropped": int(dup.sum()),
        "items_without_year": int(years.isna().sum()),
    }
    return dataset_from_frames(
        name, ratings, users, movies, USER_COLUMNS, ITEM_COLUMNS, rating_scale=(1.0, 5.0),
        item_release=release, stats=stats, split=split)


def import_movielens(
    source_dir: str | Path,
    out_dir: str | Path,
    *,
    split: SplitOptions | None = None,
    name: str = "movielens-1m-import",
    overwrite: bool = False,
) -> Path:
    """Import MovieLens-1M from ``source_dir`` into the dataset folder ``out_dir``.

    Args:
        source_dir: the folder holding ``ratings.dat``, ``users.dat`` and ``movies.dat``
            (or its parent, where ``ml-1m.zip`` was extracted).
        out_dir: the dataset folder to write (atomically).
        split: the cold-start split's options (:class:`graph_meta.eval.split.SplitOptions`); the
            new items are the most recent releases.
        name: dataset name in ``dataset.json``.
        overwrite: replace ``out_dir`` if it is a dataset folder (only an empty folder or a
            dataset folder is ever replaced).

    Returns:
        ``out_dir``.
    """
    out = check_output_folder(out_dir, overwrite=overwrite)  # before the slow part
    dataset = movielens_dataset(
        source_dir, name=name, split=split)
    return write_dataset(dataset, out, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# Download


def _offline_error(dest: Path, reason: str) -> DataError:
    folder = dest / "ml-1m"
    return DataError(
        f"cannot download {ML1M_URL} ({reason}). Download ml-1m.zip on a machine with internet "
        f"access, then either put it in {dest} and run `graph-meta import-movielens {dest} "
        "--download --out DATASET_FOLDER` again (the zip is checked and extracted, nothing is "
        f"downloaded), or extract it so that {folder} holds ratings.dat, users.dat and "
        f"movies.dat and run: graph-meta import-movielens {folder} --out DATASET_FOLDER",
        file=dest)


def _check_zip(path: Path) -> None:
    size = path.stat().st_size
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(block)
            md5.update(block)
    if sha256.hexdigest() != ML1M_SHA256 or md5.hexdigest() != ML1M_MD5:
        raise DataError(
            f"checksum mismatch: SHA-256 {sha256.hexdigest()} (expected {ML1M_SHA256}), "
            f"{size} bytes (expected {ML1M_SIZE}); the file is corrupt or not ml-1m.zip",
            file=path)


def _extract(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        for f in ML1M_FILES:
            member = f"ml-1m/{f}"
            if member not in zf.namelist():
                raise DataError(f"{member} is missing from the archive", file=zip_path)
        folder = dest / "ml-1m"
        folder.mkdir(parents=True, exist_ok=True)
        for member in zf.namelist():
            name = Path(member).name
            if not member.startswith("ml-1m/") or not name or member.endswith("/"):
                continue
            tmp = folder / f".{name}.part"
            with zf.open(member) as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(folder / name)
    return folder


def download_movielens(dest_dir: str | Path, *, url: str = ML1M_URL,
                       timeout: float = 60.0) -> Path:
    """Download ``ml-1m.zip`` into ``dest_dir``, check it and extract it.

    Nothing is downloaded when ``dest_dir`` (or ``dest_dir/ml-1m``) already holds the three
    ``.dat`` files, and an ``ml-1m.zip`` already in ``dest_dir`` is checked and extracted
    instead of downloaded. The archive must match the known SHA-256 and MD5.

    Returns:
        the folder holding ``ratings.dat``, ``users.dat`` and ``movies.dat``
        (``dest_dir/ml-1m``), ready for :func:`import_movielens`.

    Raises:
        DataError: when the network is unreachable (the message says where to put the files
            and the command to run) or the checksum does not match.
    """
    dest = Path(dest_dir)
    try:
        return find_movielens_files(dest)
    except DataError:
        pass
    dest.mkdir(parents=True, exist_ok=True)
    zip_path = dest / "ml-1m.zip"
    if not zip_path.is_file():
        part = dest / "ml-1m.zip.part"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    part.open("wb") as fh:
                shutil.copyfileobj(response, fh, 1 << 20)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            part.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or exc
            raise _offline_error(dest, str(reason)) from exc
        try:
            _check_zip(part)
        except DataError:
            part.unlink(missing_ok=True)
            raise
        part.replace(zip_path)
    else:
        _check_zip(zip_path)
    try:
        return _extract(zip_path, dest)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive: {exc}", file=zip_path) from exc
