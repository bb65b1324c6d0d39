"""Reading the user's tables (CSV, TSV, compressed, Parquet) with exact error locations, and
typing their columns: what :mod:`loaders.csv_import` and :mod:`loaders.movielens` build
datasets from.

:class:`Table` reads a file as text cells (Parquet keeps its dtypes) and turns any problem into
a :class:`graph_meta.DataError` naming the file, the line (CSV; the header is line 1) or row
(Parquet) and the field; the column helpers parse ids, numbers and timestamps through it, and
:func:`infer_column_type` / :func:`side_table` type every side-information column
(``categorical``, ``multi``, ``numeric``, ``text``).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, USER_ID
from graph_meta.errors import DataError, short, short_names
from graph_meta.schema import (
    COLUMN_TYPES,
    ITEM,
    MAX_ID_BYTES,
    USER,
    check_column_name,
    id_too_long,
    long_id_message,
)

csv.field_size_limit(1 << 26)

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
LABEL_RE = re.compile(r"^[A-Z][A-Za-z0-9_]{0,62}$")
MULTI_SEPS = ("|", ";", ",", "/", "\t")

# Inference thresholds (see infer_column_type).
TEXT_MIN_MEAN_LENGTH = 50
CATEGORICAL_MAX_DISTINCT = 10
CATEGORICAL_MAX_DISTINCT_RATIO = 0.5
MULTI_MIN_FRACTION = 0.2


# ---------------------------------------------------------------------------------------------
# Reading tables with exact error locations


class Table:
    """A CSV or Parquet file read into a frame, able to say where row ``k`` is in the file."""

    def __init__(self, path: str | Path, what: str, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        self.what = what
        # UTF-8 with or without a byte-order mark (spreadsheet exports write one)
        plain_utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        self.encoding = "utf-8-sig" if plain_utf8 else encoding
        if not self.path.is_file():
            raise DataError(f"{what} file not found", file=self.path)
        name = self.path.name.lower()
        suffixes = [s for s in self.path.suffixes if s.lower() not in COMPRESSION]
        last = suffixes[-1].lower() if suffixes else ""
        self.opener = COMPRESSION.get(self.path.suffix.lower())
        if name.endswith(PARQUET_SUFFIXES):
            self.kind = "parquet"
            self.sep = ""
        elif last in (".csv", ".txt", ".tsv"):
            self.kind = "csv"
            self.sep = "\t" if last == ".tsv" else ","
        else:
            raise DataError(
                f"unsupported file type {''.join(self.path.suffixes) or '(none)'}; use .csv, "
                ".tsv or .txt (optionally .gz/.bz2/.xz compressed) or .parquet",
                file=self.path)
        self.frame = self._read()
        self.columns = [str(c) for c in self.frame.columns]
        self.frame.columns = self.columns
        if len(set(self.columns)) != len(self.columns):
            dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise self.fail(f"duplicate column name(s) {short_names(dup)}", field=dup[0])

    def _read(self) -> pd.DataFrame:
        if self.kind == "parquet":
            try:
                return pd.read_parquet(self.path)
            except Exception as exc:  # pyarrow raises several unrelated types
                raise DataError(f"cannot read Parquet: {short(str(exc), 160)}",
                                file=self.path) from exc
        try:
            return pd.read_csv(self.path, sep=self.sep, dtype=str, keep_default_na=False,
                               na_filter=False, skip_blank_lines=True, encoding=self.encoding,
                               engine="c")
        except UnicodeDecodeError as exc:
            raise DataError(f"not {self.encoding} text ({exc.reason} at byte {exc.start}); "
                            "pass the file's encoding", file=self.path) from exc
        except pd.errors.EmptyDataError:
            raise DataError("empty file (no header)", file=self.path, line=1) from None
        except pd.errors.ParserError as exc:
            raise self._malformed(exc) from exc

    def _malformed(self, exc: Exception) -> DataError:
        """The first row whose field count differs from the header's, else pandas' message."""
        with self._open() as fh:
            reader = csv.reader(fh, delimiter=self.sep)
            width = None
            prev = 0
            try:
                for fields in reader:
                    start = prev + 1
                    prev = reader.line_num
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue
                    if width is None:
                        width = len(fields)
                    elif len(fields) > width:
                        return DataError(f"expected {width} fields (as in the header), found "
                                         f"{len(fields)}", file=self.path, line=start)
            except csv.Error as err:
                return DataError(f"malformed CSV: {short(str(err), 160)}", file=self.path,
                                 line=reader.line_num)
        return DataError(f"malformed {self.what} file: {short(str(exc), 160)}",
                         file=self.path)

    def fail(self, message: str, row: int | None = None, field: str | None = None) -> DataError:
        """A DataError at data row ``row`` (0-based position in the frame) and ``field``."""
        if row is None:
            line = 1 if self.kind == "csv" and field is not None else None
            return DataError(message, file=self.path, line=line, field=field)
        if self.kind == "csv":
            return DataError(message, file=self.path, line=self._line_of(row), field=field)
        return DataError(f"row {row + 1}: {message}", file=self.path, field=field)

    def require(self, column: str, option: str, hint: str = "") -> None:
        """Raise naming the existing columns if ``column`` is absent."""
        if column not in self.columns:
            raise self.fail(
                f"no column {short(column)} (set by {option}); the {self.what} file has "
                f"columns {short_names(self.columns)}{hint}", field=column)

    def _open(self) -> IO[str]:
        if self.opener is not None:
            return self.opener(self.path, "rt", encoding=self.encoding, newline="")
        return self.path.open(encoding=self.encoding, newline="")

    def _line_of(self, row: int) -> int | None:
        """Physical line where data row ``row`` starts (header = line 1), as pandas counted."""
        with self._open() as fh:
            reader = csv.reader(fh, delimiter=self.sep)
            seen_header = False
            k = -1
            prev = 0
            for fields in reader:
                start = prev + 1
                prev = reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if not seen_header:
                    seen_header = True
                    continue
                k += 1
                if k == row:
                    return start
        return None


# ---------------------------------------------------------------------------------------------
# Column helpers


def is_list_column(s: pd.Series) -> bool:
    if s.dtype != object:
        return False
    first = s.dropna()
    return bool(len(first)) and isinstance(first.iloc[0], list | tuple | np.ndarray)


def text_values(s: pd.Series) -> pd.Series:
    """Column as stripped strings, missing as ``""``; integral floats without ``.0``."""
    missing = s.isna().to_numpy()
    if pd.api.types.is_float_dtype(s):
        finite = s.dropna()
        if len(finite) and np.isfinite(finite).all() and (finite == np.round(finite)).all():
            s = s.astype("Int64")
    if not pd.api.types.is_string_dtype(s) or s.dtype == object:
        s = s.astype(object).astype(str)
    out = s.str.strip()
    if missing.any():
        out = out.where(~missing, "")
    return out


def id_values(table: Table, column: str) -> pd.Series:
    s = table.frame[column]
    if is_list_column(s):
        raise table.fail("an id column cannot hold lists", row=0, field=column)
    ids = text_values(s)
    empty = (ids.str.len() == 0).to_numpy()
    if empty.any():
        raise table.fail("empty id", row=int(empty.argmax()), field=column)
    for k in np.flatnonzero((ids.str.len() > MAX_ID_BYTES // 4).to_numpy()):
        if id_too_long(ids.iat[k]):
            raise table.fail(long_id_message(ids.iat[k]), row=int(k), field=column)
    return ids.reset_index(drop=True)


def number_values(table: Table, column: str, what: str = "number") -> np.ndarray:
    """A numeric column as float64 (NaN where empty); non-numbers and infinities are errors."""
    s = table.frame[column]
    if pd.api.types.is_datetime64_any_dtype(s):
        return epoch_seconds(s).astype(np.float64)
    if pd.api.types.is_bool_dtype(s):
        return s.astype(np.float64).to_numpy()
    if pd.api.types.is_numeric_dtype(s):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = text_values(s)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & (text.str.len() > 0).to_numpy()
        if bad.any():
            k = int(bad.argmax())
            raise table.fail(f"not a {what}: {short(text.iat[k])}", row=k, field=column)
    inf = np.isinf(values)
    if inf.any():
        k = int(inf.argmax())
        raise table.fail(f"infinite value {values[k]}", row=k, field=column)
    return values


def epoch_seconds(s: pd.Series) -> np.ndarray:
    if getattr(s.dt, "tz", None) is None:
        s = s.dt.tz_localize("UTC")
    delta = (s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return delta.to_numpy(dtype=np.float64, na_value=np.nan)


def timestamp_values(table: Table, column: str) -> np.ndarray:
    """Integer seconds: numbers as they are, dates and date-times as Unix time (UTC)."""
    s = table.frame[column]
    if pd.api.types.is_datetime64_any_dtype(s):
        values = epoch_seconds(s)
    elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = text_values(s)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        other = np.isnan(values) & (text.str.len() > 0).to_numpy()
        if other.any():
            dates = pd.to_datetime(text[other], utc=True, errors="coerce", format="mixed")
            values[other] = epoch_seconds(dates)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(bad.argmax())
        raise table.fail(f"timestamp is neither a number nor a date: "
                         f"{short(text_values(s).iat[k])}", row=k, field=column)
    return np.floor(values).astype(np.int64)


def normalize_multi(text: pd.Series, sep: str) -> pd.Series:
    def norm(v: str) -> str:
        parts = [p.strip() for p in v.split(sep)]
        return sep.join(dict.fromkeys(p for p in parts if p))

    return text.map(norm).astype(object)


def join_lists(s: pd.Series, sep: str | None = None) -> tuple[pd.Series, str]:
    """A Parquet list column as ``sep``-joined strings; by default with the first separator
    of ``|``, ``;``, ``,``, ``/``, tab that occurs in no value."""
    lists = [[] if not isinstance(v, list | tuple | np.ndarray) else
             [str(x).strip() for x in v if x is not None] for v in s]
    tokens = {t for vals in lists for t in vals}
    candidates = (sep,) if sep is not None else MULTI_SEPS
    found = next((c for c in candidates if not any(c in t for t in tokens)), None)
    if found is None:
        raise TypeError(f"every separator of {list(candidates)} occurs in the values")
    return pd.Series([found.join(dict.fromkeys(t for t in v if t)) for v in lists],
                     index=s.index, dtype=object), found


def infer_column_type(values: pd.Series) -> tuple[str, str | None]:
    """Infer ``(type, sep)`` of a side-information column.

    * Parquet list columns -> ``multi`` (joined with a separator that occurs in no value);
    * numbers (a numeric/datetime dtype, or text cells that all parse as numbers without
      leading zeros such as zip codes ``02134``) -> ``numeric``;
    * booleans -> ``categorical``;
    * text whose mean length is over 50 characters -> ``text``;
    * text where at least 20 % of the cells hold ``|`` -> ``multi`` with ``sep="|"``;
    * at most ``max(10, 0.5 * non-empty cells)`` distinct values -> ``categorical``;
    * otherwise (mostly distinct short strings: names, titles) -> ``text``.
    """
    if is_list_column(values):
        return "multi", join_lists(values)[1]
    if pd.api.types.is_bool_dtype(values):
        return "categorical", None
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return "numeric", None
    text = text_values(values)
    text = text[text.str.len() > 0]
    n = len(text)
    if n == 0:
        return "categorical", None
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all() and np.isfinite(numbers.to_numpy(dtype=np.float64)).all() \
            and not text.str.match(r"^[+-]?0\d").any():
        return "numeric", None
    if text.str.len().mean() > TEXT_MIN_MEAN_LENGTH:
        return "text", None
    if text.str.contains("|", regex=False).mean() >= MULTI_MIN_FRACTION:
        return "multi", "|"
    distinct = text.nunique()
    if distinct <= max(CATEGORICAL_MAX_DISTINCT, CATEGORICAL_MAX_DISTINCT_RATIO * n):
        return "categorical", None
    return "text", None


def column_values(table: Table, column: str, ctype: str, sep: str | None,
                   ) -> tuple[pd.Series, str | None]:
    """The column's values in the form ``write_dataset`` expects, and the final ``sep``."""
    s = table.frame[column]
    if is_list_column(s):
        if ctype != "multi":
            raise table.fail(f"a list column can only be 'multi', not {ctype!r}", field=column)
        try:
            joined, sep = join_lists(s.reset_index(drop=True), sep)
        except TypeError as exc:
            raise table.fail(str(exc), field=column) from None
        return joined, sep
    if ctype == "numeric":
        return pd.Series(number_values(table, column), dtype=np.float64), None
    text = text_values(s).reset_index(drop=True)
    if ctype == "multi":
        sep = sep or "|"
        return normalize_multi(text, sep), sep
    return text.astype(object), None


def check_label(label: Any, option: str) -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label) or label in (USER, ITEM):
        raise DataError(f"node type {label!r} must match [A-Z][A-Za-z0-9_]* and not be "
                        f"{USER!r} or {ITEM!r}", field=option)
    return label


def side_table(table: Table, id_col: str, out_id: str, declared: Mapping[str, str] | None,
                nodes: Mapping[str, str], declared_option: str,
                forced: Mapping[str, tuple[str, str | None]] | None = None,
                ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Typed users/items frame indexed by id, and its ``columns`` of ``dataset.json``."""
    forced = dict(forced or {})
    ids = id_values(table, id_col)
    dup = ids.duplicated().to_numpy()
    if dup.any():
        k = int(dup.argmax())
        first = int(np.flatnonzero((ids == ids.iat[k]).to_numpy())[0])
        where = (f"line {table._line_of(first)}" if table.kind == "csv" else f"row {first + 1}")
        raise table.fail(f"duplicate id {short(ids.iat[k])} (first on {where})", row=k,
                         field=id_col)
    if declared is None:
        names = [c for c in table.columns if c != id_col]
    else:
        for c in declared:
            table.require(c, declared_option)
        names = [c for c in declared if c != id_col]
        names += [c for c in (*forced, *nodes) if c not in names and c != id_col]
    specs: dict[str, dict[str, Any]] = {}
    frame = pd.DataFrame(index=pd.Index(ids.to_numpy(dtype=object), name=out_id, dtype=object))
    for c in names:
        if c in (USER_ID, ITEM_ID) and c != id_col:
            raise table.fail(f"column {short(c)} clashes with an id column of the dataset folder; "
                             "rename it or leave it out", field=c)
        why = check_column_name(c)
        if why:
            raise table.fail(f"column {short(c)}: {why} (or leave it out)", field=c)
        node = nodes.get(c)
        if c in forced:
            ctype, sep = forced[c]
        elif declared is not None and c in declared:
            ctype = declared[c]
            if ctype not in COLUMN_TYPES:
                raise DataError(f"unknown column type {ctype!r}; known: {list(COLUMN_TYPES)}",
                                field=f"{declared_option}[{c!r}]")
            sep = infer_column_type(table.frame[c])[1] if ctype == "multi" else None
        else:
            ctype, sep = infer_column_type(table.frame[c])
            if node is not None and ctype not in ("categorical", "multi"):
                ctype, sep = "categorical", None
        if node is not None and ctype not in ("categorical", "multi"):
            raise DataError(f"column {c!r} is declared {ctype!r}; only categorical and multi "
                            "columns can be node types", field=f"node_columns[{c!r}]")
        values, sep = column_values(table, c, ctype, sep)
        frame[c] = values.to_numpy()
        spec: dict[str, Any] = {"type": ctype}
        if sep is not None:
            spec["sep"] = sep
        if node is not None:
            spec["node"] = node
        specs[c] = spec
    return frame, specs
