"""Read, validate and write dataset folders (``benchmarks/PROTOCOL.md``).

:func:`read_dataset` loads ``dataset.json``, ``train.csv``, ``users.csv``, ``items.csv``,
the relation files and ``tasks/*.jsonl``, and raises :class:`graph_meta.DataError` naming the
file, line and field of the first problem; nothing is returned half-loaded.
:func:`write_dataset` writes a folder atomically: into a temporary sibling, renamed into
place only when every file is written. It replaces only an empty folder or a dataset folder
(one with ``dataset.json``), and removes the temporary siblings of earlier interrupted writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, WEIGHT, Dataset, Task
from graph_meta.errors import DataError, short, short_names
from graph_meta.graph.build import split_multi
from graph_meta.schema import MAX_ID_BYTES, DatasetSpec, TableSpec, id_too_long, long_id_message

csv.field_size_limit(1 << 26)

TRAIN_COLUMNS = (USER_ID, ITEM_ID, RATING)
#: how the folder's files are read: UTF-8, a byte-order mark (spreadsheet exports) skipped
READ_ENCODING = "utf-8-sig"


def read_dataset(path: str | Path, *, tasks: bool = True, strict: bool = False) -> Dataset:
    """Read and validate the dataset folder at ``path``.

    Args:
        path: the folder holding ``dataset.json``.
        tasks: also read and validate ``tasks/*.jsonl``.
        strict: make duplicate ``(user_id, item_id)`` rows in ``train.csv`` and duplicate
            edges in a relation file an error. By default the rows are kept in
            ``Dataset.train`` (the file's rows, unchanged) and reported in
            ``Dataset.warnings``; the graph keeps the last rating of each pair (movielens-1m
            of the benchmark has three such pairs); an edge's repeats are not read (the first
            is kept) and reported there too.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("not a dataset folder (no such directory)", file=root)
    with _utf8(root / "dataset.json"):
        spec = DatasetSpec.from_file(root / "dataset.json")
    with _utf8(root / spec.users.file):
        users = _read_table(root / spec.users.file, spec.users)
    with _utf8(root / spec.items.file):
        items = _read_table(root / spec.items.file, spec.items)
    warnings: list[str] = []
    with _utf8(root / spec.train):
        train = _read_train(root / spec.train, spec, users.index, items.index, strict,
                            warnings)
    relations = {}
    for rel in spec.relations:
        with _utf8(root / rel.file):
            relations[rel.type] = _read_relation(root / rel.file, rel, users.index,
                                                 items.index, strict, warnings)
    warnings += _unreached_relation_ids(spec, users, items, relations)
    task_sets = {}
    for scenario, file in (spec.tasks.items() if tasks else ()):
        with _utf8(root / file):
            task_sets[scenario] = _read_tasks(root / file, spec, users.index, items.index)
    return Dataset(spec=spec, users=users, items=items, train=train, relations=relations,
                   tasks=task_sets, root=root, warnings=warnings)


@contextmanager
def _utf8(path: Path) -> Iterator[None]:
    """Turn a decoding failure while reading ``path`` into a :class:`DataError` naming the
    file and the line of its first byte that is not UTF-8."""
    try:
        yield
    except UnicodeDecodeError as err:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as first:
            line = data.count(b"\n", 0, first.start) + 1
            raise DataError(f"not UTF-8 text: byte 0x{data[first.start]:02x} (save the file "
                            "as UTF-8)", file=path, line=line) from err
        raise DataError(f"not UTF-8 text ({err.reason})", file=path) from err


#: what each scenario's users and items are: (new user, new item)
_SCENARIO_KIND = {"warm": (False, False), "user_cold": (True, False),
                  "item_cold": (False, True), "user_item_cold": (True, True)}


def scenario_problems(dataset: Dataset) -> list[DataError]:
    """What the task files say that their scenarios contradict: one error (naming the task
    file) per kind of problem and file, with its count and first task (``task N (user U)``,
    N counting the file's non-blank lines from 1):

    * a task's user is new (``user_cold``, ``user_item_cold``) but has ``train.csv`` rows, or
      known (``warm``, ``item_cold``) and has none;
    * a support or query item of a new-item scenario has ``train.csv`` rows, or one of a
      known-item scenario has none;
    * a support or query pair is a ``train.csv`` row of the same user (the answer is in
      the training data);
    * a task repeats an earlier one of its file (same user, support and query).

    Empty when the files agree with PROTOCOL.md's scenarios. ``validate`` prints these as
    warnings and ``validate --strict`` raises the first: a benchmark on such files measures
    something else than its scenario names say.
    """
    train = dataset.train
    users = set(train[USER_ID].astype(str).unique())
    items = set(train[ITEM_ID].astype(str).unique())
    rated = set(zip(train[USER_ID].astype(str), train[ITEM_ID].astype(str), strict=True))
    out = []
    for scenario, tasks in dataset.tasks.items():
        new_user, new_item = _SCENARIO_KIND[scenario]
        where = str(dataset.root / dataset.spec.tasks[scenario]) if dataset.root else \
            dataset.spec.tasks[scenario]
        found: dict[str, list[str]] = {}
        seen: set[tuple] = set()
        for n, task in enumerate(tasks, start=1):
            first = f"task {n} (user {short(task.user_id)})"
            pairs = [i for i, _ in (*task.support, *task.query)]
            if (task.user_id in users) == new_user:
                found.setdefault("its user is " + ("in train.csv, though the scenario's "
                                 "users are new" if new_user else "not in train.csv, though "
                                 "the scenario's users are known"), []).append(first)
            wrong = [i for i in pairs if (i in items) == new_item]
            if wrong:
                found.setdefault("an item is " + ("in train.csv, though the scenario's items "
                                 "are new" if new_item else "not in train.csv, though the "
                                 "scenario's items are known"), []).append(
                    f"{first}, item {short(wrong[0])}")
            leaked = [i for i in pairs if (task.user_id, i) in rated]
            if leaked:
                found.setdefault("a support or query pair is also a train.csv row of the "
                                 "user", []).append(f"{first}, item {short(leaked[0])}")
            key = (task.user_id, tuple(task.support), tuple(task.query))
            if key in seen:
                found.setdefault("it repeats an earlier task", []).append(first)
            seen.add(key)
        out += [DataError(f"{len(hits)} task(s) where {what}; first: {hits[0]}", file=where)
                for what, hits in found.items()]
    return out


def _read_table(path: Path, table: TableSpec) -> pd.DataFrame:
    """users.csv / items.csv through the csv module, so that line numbers stay exact."""
    if not path.is_file():
        raise DataError("file not found", file=path)
    with path.open(newline="", encoding=READ_ENCODING) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError("empty file (no header)", file=path, line=1) from None
        expected = [table.id, *table.columns]
        missing = [c for c in expected if c not in header]
        if missing:
            raise DataError(f"missing column(s) {short_names(missing)}; header is "
                            f"{short_names(header)}", file=path, line=1, field=missing[0])
        unknown = [c for c in header if c not in expected]
        if unknown:
            raise DataError(
                f"unknown column(s) {short_names(unknown)}: declare them in dataset.json or "
                "remove them",
                file=path, line=1, field=unknown[0])
        if len(set(header)) != len(header):
            raise DataError("duplicate column names in header", file=path, line=1)
        pos = [header.index(c) for c in expected]
        # node columns: their values become node ids, as long as a store can index
        node_cols = [(j, cspec) for j, cspec in enumerate(table.columns.values()) if cspec.node]
        ids: list[str] = []
        cols: list[list[str]] = [[] for _ in table.columns]
        seen: dict[str, int] = {}
        width = len(header)
        line = reader.line_num
        for row in reader:
            if not row:
                line = reader.line_num
                continue
            if len(row) != width:
                raise DataError(f"expected {width} fields, found {len(row)}", file=path,
                                line=line + 1)
            line = reader.line_num
            rid = row[pos[0]].strip()
            if not rid:
                raise DataError("empty id", file=path, line=line, field=table.id)
            if rid in seen:
                raise DataError(f"duplicate id {short(rid)} (first on line {seen[rid]})",
                                file=path, line=line, field=table.id)
            if id_too_long(rid):
                raise DataError(long_id_message(rid), file=path, line=line, field=table.id)
            seen[rid] = line
            ids.append(rid)
            for j, p in enumerate(pos[1:]):
                cols[j].append(row[p])
            for j, cspec in node_cols:
                value = row[pos[1 + j]]
                if len(value) > MAX_ID_BYTES // 4:
                    parts = value.split(cspec.sep) if cspec.type == "multi" else [value]
                    for part in parts:
                        if id_too_long(part.strip()):
                            raise DataError(f"{cspec.node} {long_id_message(part.strip())}",
                                            file=path, line=line, field=cspec.name)
    frame = pd.DataFrame(index=pd.Index(ids, name=table.id, dtype=object))
    lines = np.fromiter(seen.values(), dtype=np.int64, count=len(seen))
    for (cname, cspec), values in zip(table.columns.items(), cols, strict=True):
        if cspec.type == "numeric":
            frame[cname] = _parse_numeric(values, path, cname, lines)
        else:
            frame[cname] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _parse_numeric(values: list[str], path: Path, column: str, lines: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for k, v in enumerate(values):
        s = v.strip()
        if not s:
            out[k] = np.nan
            continue
        try:
            x = float(s)
        except ValueError:
            raise DataError(f"not a number: {short(v)}", file=path, line=int(lines[k]),
                            field=column) from None
        if math.isinf(x):
            raise DataError(f"infinite value {short(v)}", file=path, line=int(lines[k]),
                            field=column)
        out[k] = x
    return out


def _check_columns(path: Path, header: list[str], required: Iterable[str],
                   optional: Iterable[str] = (), warnings: list[str] | None = None) -> None:
    """Required columns must be there; any other column is an error, or, with ``warnings``
    (files whose other columns the protocol leaves open: train.csv, relation files), a
    warning there and the column is not read."""
    required = list(required)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"missing column(s) {short_names(missing)}; header is "
                        f"{short_names(header)}", file=path, line=1, field=missing[0])
    unknown = [c for c in header if c not in required and c not in set(optional)]
    if unknown and warnings is None:
        raise DataError(f"unknown column(s) {short_names(unknown)}; expected {required} "
                        f"(optional {list(optional)})", file=path, line=1, field=unknown[0])
    if unknown and warnings is not None:
        warnings.append(f"{path.name}: column(s) {short_names(unknown)} not read (expected "
                        f"{required}, optional {list(optional)})")


def _record_lines(path: Path, n_records: int) -> np.ndarray:
    """The 1-based line (header = line 1) on which each of the ``n_records`` data records of
    the CSV file at ``path`` starts, as ``pd.read_csv(skip_blank_lines=True)`` counts records.

    When the file has exactly one physical line per record (the usual case, checked by
    counting newlines) this is ``2, 3, ...``; otherwise (blank lines, quoted line breaks)
    the file is scanned with the csv module.
    """
    newlines, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 24):
            newlines += block.count(b"\n")
            last = block[-1:]
    physical = newlines + (last != b"\n")
    if physical == n_records + 1:
        return np.arange(2, n_records + 2)
    starts: list[int] = []
    with path.open(newline="", encoding=READ_ENCODING) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                starts.append(start)
            start = reader.line_num + 1
    if len(starts) != n_records:  # the two parsers disagree: keep the approximation
        return np.arange(2, n_records + 2)
    return np.asarray(starts, dtype=np.int64)


def _csv_header(path: Path) -> list[str]:
    """The first record of the CSV file at ``path`` (empty for an empty file)."""
    with path.open(newline="", encoding=READ_ENCODING) as fh:
        return next(csv.reader(fh), [])


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    """``pd.read_csv`` whose parse errors are DataErrors naming the line of the bad record."""
    try:
        return pd.read_csv(path, keep_default_na=False, na_filter=False,
                           skip_blank_lines=True, engine="c", encoding=READ_ENCODING, **kw)
    except pd.errors.EmptyDataError:
        raise DataError("empty file (no header)", file=path, line=1) from None
    except pd.errors.ParserError as exc:
        with path.open(newline="", encoding=READ_ENCODING) as fh:
            reader = csv.reader(fh)
            width = len(next(reader, []))
            start = reader.line_num + 1
            for row in reader:
                if len(row) > width:
                    raise DataError(f"expected {width} fields, found {len(row)}", file=path,
                                    line=start) from None
                start = reader.line_num + 1
        raise DataError(f"malformed CSV: {short(str(exc), 160)}", file=path) from exc


def _read_train(path: Path, spec: DatasetSpec, user_index: pd.Index, item_index: pd.Index,
                strict: bool, warnings: list[str], *, allow_empty: bool = False
                ) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", file=path)
    header = _csv_header(path)
    # an implicit folder's train.csv may be bare pairs: every row a positive, rating 1
    bare = spec.implicit and RATING not in header
    required = (USER_ID, ITEM_ID) if spec.implicit else TRAIN_COLUMNS
    optional = (RATING, TIMESTAMP, WEIGHT) if spec.implicit else (TIMESTAMP, WEIGHT)
    _check_columns(path, header, required, optional, warnings)
    dtypes: dict[str, object] = {USER_ID: str, ITEM_ID: str}
    for name in (RATING, TIMESTAMP, WEIGHT):
        if name in header:
            dtypes[name] = str
    raw = _read_csv(path, dtype=dtypes)
    if raw.empty and not allow_empty:
        raise DataError("no interactions: the file holds its header only", file=path)
    if bare:
        raw[RATING] = "1"
    lines = _record_lines(path, len(raw))
    for col in (USER_ID, ITEM_ID):  # ids are stripped as in users.csv and items.csv
        raw[col] = raw[col].str.strip()
        empty = (raw[col].str.len() == 0).to_numpy()
        if empty.any():
            raise DataError("empty id", file=path, line=int(lines[empty.argmax()]), field=col)
    rating = pd.to_numeric(raw[RATING], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(rating)
    if bad.any():
        k = int(bad.argmax())
        raise DataError(f"rating is not a finite number: {short(raw[RATING].iat[k])}", file=path,
                        line=int(lines[k]), field=RATING)
    out_of = ~_rating_allowed(rating, spec)
    if out_of.any():
        k = int(out_of.argmax())
        raise DataError(_rating_problem(rating[k], spec), file=path, line=int(lines[k]),
                        field=RATING)
    users = raw[USER_ID].astype("category")
    items = raw[ITEM_ID].astype("category")
    for col, cat, index in ((USER_ID, users, user_index), (ITEM_ID, items, item_index)):
        known = cat.cat.categories.isin(index)
        if not known.all():
            unknown_codes = np.flatnonzero(~known)
            rows = np.isin(cat.cat.codes.to_numpy(), unknown_codes)
            k = int(rows.argmax())
            table = spec.users.file if col == USER_ID else spec.items.file
            raise DataError(f"id {short(cat.iat[k])} has no row in {table}", file=path,
                            line=int(lines[k]), field=col)
    ucode = users.cat.codes.to_numpy().astype(np.int64)
    icode = items.cat.codes.to_numpy().astype(np.int64)
    key = ucode * max(len(items.cat.categories), 1) + icode
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        order = np.argsort(key[rows], kind="stable")
        rows = rows[order]
        starts = np.flatnonzero(np.r_[True, key[rows][1:] != key[rows][:-1]])
        groups = np.split(rows, starts[1:])
        groups.sort(key=lambda g: int(g[1]))  # the first problem is the earliest repeat
        described = [
            f"({short(users.iat[g[0]])}, {short(items.iat[g[0]])}) on lines "
            + " and ".join(str(int(lines[r])) for r in g)
            for g in groups
        ]
        if strict:
            raise DataError(
                f"duplicate (user_id, item_id) = {described[0]}"
                + (f" (and {len(groups) - 1} more pairs)" if len(groups) > 1 else ""),
                file=path, line=int(lines[groups[0][1]]), field=f"{USER_ID},{ITEM_ID}")
        warnings.append(
            f"{path}: {len(groups)} duplicate (user_id, item_id) pair(s), the last row of each "
            f"is the rating the graph keeps: " + "; ".join(described[:5])
            + (" ..." if len(groups) > 5 else ""))
    train = pd.DataFrame({USER_ID: users, ITEM_ID: items,
                          RATING: rating.astype(np.float32)})
    if TIMESTAMP in raw:
        ts = pd.to_numeric(raw[TIMESTAMP], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(ts)
        if bad.any():
            k = int(bad.argmax())
            raise DataError(f"timestamp is not a number: {short(raw[TIMESTAMP].iat[k])}",
                            file=path,
                            line=int(lines[k]), field=TIMESTAMP)
        bad = np.abs(ts) >= 2.0 ** 63
        if bad.any():  # seconds past int64 (a timestamp in ns would still fit)
            k = int(bad.argmax())
            raise DataError(f"timestamp out of range: {short(raw[TIMESTAMP].iat[k])}",
                            file=path, line=int(lines[k]), field=TIMESTAMP)
        train[TIMESTAMP] = ts.astype(np.int64)
    if WEIGHT in raw and not spec.implicit:
        warnings.append(f"{path}: the {WEIGHT} column is a confidence of implicit folders; "
                        "the rating models do not read it")
    if WEIGHT in raw:  # the confidence of an implicit positive
        w = pd.to_numeric(raw[WEIGHT], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(w) & (w > 0) & (w <= np.finfo(np.float32).max))
        if bad.any():
            k = int(bad.argmax())
            raise DataError("weight must be a finite number > 0 (at most 3.4e38), got "
                            f"{short(raw[WEIGHT].iat[k])}", file=path, line=int(lines[k]),
                            field=WEIGHT)
        train[WEIGHT] = w.astype(np.float32)
    return train


def _unreached_relation_ids(spec: DatasetSpec, users: pd.DataFrame, items: pd.DataFrame,
                            relations: dict[str, pd.DataFrame]) -> list[str]:
    """One warning per relation-file end whose node type a column declares, where some of the
    file's ids are carried by no user or item (a misspelt brand in ``makers.csv``): their edges
    reach nobody. Not an error: a category tree may list categories no item has yet."""
    named = {node for rel in spec.relations for node in (rel.src, rel.dst)}
    carried: dict[str, set[str]] = {}
    for table, frame in ((spec.users, users), (spec.items, items)):
        for col in table.columns.values():
            if col.node in named:
                values = split_multi(frame[col.name], col)
                carried.setdefault(col.node, set()).update(v for p in values for v in p)
    out = []
    for rel in spec.relations:
        frame = relations[rel.type]
        for end, col, node in (("src", rel.src_column, rel.src), ("dst", rel.dst_column,
                                                                  rel.dst)):
            if node not in carried:
                continue
            ids = pd.unique(frame[end].astype(str))
            missing = [v for v in ids if v not in carried[node]]
            if missing:
                out.append(f"{rel.file}: {len(missing)} of {len(ids)} {node} ids in column "
                           f"{col!r} are carried by no user or item (first: "
                           f"{short(missing[0])}); their edges reach nobody")
    return out


def _read_relation(path: Path, rel, user_index: pd.Index, item_index: pd.Index,
                   strict: bool, warnings: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("relation file not found", file=path)
    header = _csv_header(path)
    if len(set(header)) != len(header):  # pandas would rename the second one and read on
        raise DataError("duplicate column names in header", file=path, line=1)
    raw = _read_csv(path, dtype=str)
    _check_columns(path, header, [rel.src_column, rel.dst_column],
                   [rel.weight] if rel.weight else [], warnings)
    lines = _record_lines(path, len(raw))
    out = pd.DataFrame({"src": raw[rel.src_column].str.strip().astype(object),
                        "dst": raw[rel.dst_column].str.strip().astype(object)})
    for end, col, node in (("src", rel.src_column, rel.src), ("dst", rel.dst_column, rel.dst)):
        lengths = out[end].str.len().to_numpy()
        empty = lengths == 0
        if empty.any():
            raise DataError("empty id", file=path, line=int(lines[empty.argmax()]), field=col)
        for k in np.flatnonzero(lengths > MAX_ID_BYTES // 4):
            if id_too_long(out[end].iat[k]):
                raise DataError(long_id_message(out[end].iat[k]), file=path,
                                line=int(lines[k]), field=col)
        index = user_index if node == "User" else item_index if node == "Item" else None
        if index is not None:
            unknown = ~out[end].isin(index).to_numpy()
            if unknown.any():
                k = int(unknown.argmax())
                raise DataError(f"{node} id {short(out[end].iat[k])} is unknown", file=path,
                                line=int(lines[k]), field=col)
    if rel.weight:
        w = pd.to_numeric(raw[rel.weight], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(w)
        if bad.any():
            k = int(bad.argmax())
            raise DataError(f"weight is not a finite number: {short(raw[rel.weight].iat[k])}",
                            file=path, line=int(lines[k]), field=rel.weight)
        huge = w > np.finfo(np.float32).max
        if huge.any():
            k = int(huge.argmax())
            raise DataError(f"weight past 3.4e38: {short(raw[rel.weight].iat[k])}", file=path,
                            line=int(lines[k]), field=rel.weight)
        unused = w <= 0
        if unused.any():
            warnings.append(f"{path}: {int(unused.sum())} edge(s) with {rel.weight} <= 0 (first "
                            f"on line {int(lines[int(unused.argmax())])}): the relation prior "
                            "and the relation links ignore them (message passing follows every "
                            "edge, whatever its weight)")
        out["weight"] = w.astype(np.float32)
    else:
        out["weight"] = np.ones(len(out), dtype=np.float32)
    dup = out.duplicated(["src", "dst"]).to_numpy()
    if dup.any():
        k = int(dup.argmax())
        where = (f"duplicate edge ({short(out['src'].iat[k])}, {short(out['dst'].iat[k])})")
        if strict:
            raise DataError(where, file=path, line=int(lines[k]))
        warnings.append(f"{path}: {int(dup.sum())} duplicate edge(s) not read, the first of "
                        f"each kept: {where} on line {int(lines[k])}"
                        + (" ..." if dup.sum() > 1 else ""))
        out = out.loc[~dup].reset_index(drop=True)
    return out


def _rating_allowed(rating: float | np.ndarray, spec: DatasetSpec) -> np.bool_ | np.ndarray:
    """An implicit folder's pairs are positives (rating 1); else a rating within the scale
    (elementwise for an array)."""
    lo, hi = spec.rating_scale
    r = np.asarray(rating)
    return r == 1.0 if spec.implicit else (r >= lo) & (r <= hi)


def _rating_problem(rating: float, spec: DatasetSpec) -> str:
    if spec.implicit:
        return (f"rating {rating:g} in an implicit folder: every pair is a positive, rating 1 "
                "(a confidence goes in the weight column)")
    lo, hi = spec.rating_scale
    return f"rating {rating:g} outside the scale [{lo:g}, {hi:g}]"


def _pairs(value: object, path: Path, line: int, field: str, spec: DatasetSpec,
           item_index: pd.Index) -> list[tuple[str, float]]:
    if not isinstance(value, list):
        raise DataError("must be a list of [item_id, rating] pairs", file=path, line=line,
                        field=field)
    out = []
    for k, pair in enumerate(value):
        where = f"{field}[{k}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise DataError("must be an [item_id, rating] pair", file=path, line=line, field=where)
        item, rating = pair
        if not isinstance(item, str | int) or isinstance(item, bool) or not str(item).strip():
            raise DataError(f"item id must be a non-empty string, got {short(item)}", file=path,
                            line=line, field=where)
        item = str(item).strip()
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not math.isfinite(
                rating):
            raise DataError(f"rating must be a finite number, got {short(rating)}", file=path,
                            line=line, field=where)
        if not _rating_allowed(rating, spec):
            raise DataError(_rating_problem(rating, spec), file=path, line=line, field=where)
        if item not in item_index:
            raise DataError(f"item {short(item)} has no row in items.csv", file=path, line=line,
                            field=where)
        out.append((item, float(rating)))
    return out


def _read_tasks(path: Path, spec: DatasetSpec, user_index: pd.Index,
                item_index: pd.Index) -> list[Task]:
    if not path.is_file():
        raise DataError("task file not found", file=path)
    tasks = []
    with path.open(encoding=READ_ENCODING) as fh:
        for line_no, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", file=path, line=line_no) from None
            if not isinstance(obj, dict):
                raise DataError("each line must be a JSON object", file=path, line=line_no)
            for key in ("user_id", "support", "query"):
                if key not in obj:
                    raise DataError("required key is missing", file=path, line=line_no,
                                    field=key)
            uid = obj["user_id"]
            if not isinstance(uid, str | int) or isinstance(uid, bool) or not str(uid).strip():
                raise DataError(f"user id must be a non-empty string, got {short(uid)}",
                                file=path,
                                line=line_no, field="user_id")
            uid = str(uid).strip()
            if uid not in user_index:
                raise DataError(f"user {short(uid)} has no row in users.csv", file=path,
                                line=line_no, field="user_id")
            support = _pairs(obj["support"], path, line_no, "support", spec, item_index)
            query = _pairs(obj["query"], path, line_no, "query", spec, item_index)
            if not query:
                raise DataError("the query set is empty", file=path, line=line_no, field="query")
            both = {i for i, _ in support} & {i for i, _ in query}
            if both:
                raise DataError(f"item(s) {short_names(sorted(both), 3)} in both support and "
                                "query",
                                file=path, line=line_no, field="query")
            tasks.append(Task(uid, support, query))
    return tasks


def check_output_folder(out: str | Path, *, overwrite: bool = False) -> Path:
    """``out`` if a dataset folder may be written there, else a DataError.

    It may when ``out`` does not exist or is an empty folder, and with ``overwrite`` when it
    is a dataset folder (it holds ``dataset.json``): any other folder is never replaced.
    """
    out = Path(out)
    if out.is_symlink():
        raise DataError("output is a symbolic link; give the folder itself", file=out)
    if not out.exists():
        return out
    if not out.is_dir():
        raise DataError("output exists and is not a folder", file=out)
    if not any(out.iterdir()):
        return out
    if not overwrite:
        raise DataError("output folder exists and is not empty (use overwrite)", file=out)
    if not (out / "dataset.json").is_file():
        raise DataError("output folder is not a dataset folder (it has no dataset.json); "
                        "overwrite only replaces dataset folders: remove it yourself or "
                        "choose another output", file=out)
    return out


# temporary siblings of an output folder NAME: `.NAME.tmp-PID-XXXXXXXX` (being written) and
# `.NAME.old-PID` (the replaced folder, being removed); `.NAME.XXXXXXXX` from older versions
_PID_TEMP = re.compile(r"(?:tmp-(\d+)-[a-z0-9_]{8}|old-(\d+))")
_LEGACY_TEMP = re.compile(r"[a-z0-9_]{8}")
_LEGACY_STALE_S = 3600.0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a platform without signal 0
        return True
    return True


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Remove the temporary siblings that interrupted writes of ``out`` left behind: those
    named as :func:`write_dataset` names them whose process is gone (or, for the unnamed
    ones of older versions, untouched for an hour). Returns the removed paths."""
    out = Path(out)
    prefix = f".{out.name}."
    removed = []
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        rest = entry.name[len(prefix):]
        if m := _PID_TEMP.fullmatch(rest):
            stale = not _pid_alive(int(m.group(1) or m.group(2)))
        elif _LEGACY_TEMP.fullmatch(rest):
            stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_STALE_S
        else:
            continue
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def write_dataset(dataset: Dataset, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``dataset`` as a dataset folder at ``out``, atomically.

    Every file goes into a temporary folder beside ``out``; the folder is renamed into place
    only when complete, so a crash leaves either the old folder or the new one. ``out`` must
    not exist, be empty, or (with ``overwrite``) be a dataset folder
    (:func:`check_output_folder`); temporary siblings left by interrupted writes are removed
    first (:func:`remove_stale_temporaries`).
    """
    out = check_output_folder(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        spec = dataset.spec
        (tmp / "dataset.json").write_text(json.dumps(spec.to_json(), indent=2) + "\n",
                                          encoding="utf-8")
        train = dataset.train
        cols = [USER_ID, ITEM_ID, RATING] + [c for c in (TIMESTAMP, WEIGHT) if c in train]
        frame = train[cols].copy()
        frame[RATING] = frame[RATING].astype(np.float64)
        if WEIGHT in frame:
            frame[WEIGHT] = frame[WEIGHT].astype(np.float64)
        frame.to_csv(tmp / spec.train, index=False, float_format="%g")
        for table, df in ((spec.users, dataset.users), (spec.items, dataset.items)):
            df = df[list(table.columns)].copy()
            df.index.name = table.id
            df.to_csv(tmp / table.file, float_format="%.10g")
        for rel in spec.relations:
            rdf = dataset.relations[rel.type]
            cols_out = {"src": rel.src_column, "dst": rel.dst_column}
            if rel.weight:
                cols_out["weight"] = rel.weight
            rdf[list(cols_out)].rename(columns=cols_out).to_csv(tmp / rel.file, index=False,
                                                                 float_format="%g")
        for scenario, fname in spec.tasks.items():
            target = tmp / fname
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8") as fh:
                for task in dataset.tasks.get(scenario, []):
                    fh.write(json.dumps(task.to_json()) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
