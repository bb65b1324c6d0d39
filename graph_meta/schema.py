"""Dataset specification (``dataset.json``) and the heterogeneous graph schema derived from it.

:class:`DatasetSpec` is the parsed, validated ``dataset.json`` of a dataset folder
(``benchmarks/PROTOCOL.md``). :class:`GraphSchema` turns it into node and edge types:

* node types ``User``, ``Item``, one per column declaring ``"node": "Name"`` and one per
  relation-file end no column declares (``(Brand)-[MADE_BY]->(Maker)``: the file brings the
  ``Maker`` nodes; only beside a known type at the other end);
* ``(User, RATED, Item)`` with ``rating`` and ``timestamp`` properties;
* one attribute edge ``(User|Item, HAS_<NODE>, <Node>)`` per node column;
* one edge type per relation file;
* ``(Item, CO_LIKED, Item)`` with a ``weight``: items liked by the same users;
* ``(Category, CO_ENGAGED, Category)`` with a ``weight`` when an items column declares
  ``Category``.

The schema is also the whitelist of labels and relationship types: Cypher is only ever
built from names that :meth:`GraphSchema.check_label` and :meth:`GraphSchema.check_edge`
accept.

Names that the stores keep for themselves are out of the users' reach, so a column can never
overwrite them: a column name must match ``[A-Za-z_][A-Za-z0-9_]*`` (at most 63 characters),
must not be ``id`` (every node's own id) and must not start with ``gm_`` (the stores'
internal properties, e.g. ``gm_n_ratings``); a node type must not start with ``GraphMeta``
(the stores' internal labels, e.g. ``GraphMetaDataset``). Node ids (users, items, attribute
values) are at most :data:`MAX_ID_BYTES` UTF-8 bytes, which Neo4j can index (its index key
limit is about 8 KB); the dataset reader and both stores refuse longer ones alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from graph_meta.errors import DataError, SchemaError, short, short_names

USER = "User"
ITEM = "Item"
CATEGORY = "Category"
RATED = "RATED"
CO_ENGAGED = "CO_ENGAGED"
CO_LIKED = "CO_LIKED"
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
COLUMN_TYPES = ("categorical", "multi", "numeric", "text")

_LABEL_RE = re.compile(r"^[A-Z][A-Za-z0-9_]{0,62}$")
_REL_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
RESERVED_PROPERTY_PREFIX = "gm_"   # the stores' internal properties
RESERVED_LABEL_PREFIX = "GraphMeta"  # the stores' internal labels
MAX_ID_BYTES = 4000  # UTF-8 bytes of a node id: safely below Neo4j's index key limit (~8 KB)


def id_too_long(node_id: str) -> bool:
    """Whether ``node_id`` has more than :data:`MAX_ID_BYTES` UTF-8 bytes."""
    return len(node_id) > MAX_ID_BYTES // 4 and len(node_id.encode("utf-8",
                                                                  "surrogatepass")) > MAX_ID_BYTES


def long_id_message(node_id: str) -> str:
    """The error text of an id longer than :data:`MAX_ID_BYTES`."""
    return (f"id of {len(node_id.encode('utf-8', 'surrogatepass')):,} UTF-8 bytes is longer "
            f"than the {MAX_ID_BYTES:,} a graph store can index: {short(node_id)}")


def check_column_name(name: Any) -> str | None:
    """Why ``name`` cannot be a column (a node property), or None when it can."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return ("a column name must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters); "
                "rename the column")
    if name == "id":
        return "'id' is every node's own id and cannot be a column; rename the column"
    if name.lower().startswith(RESERVED_PROPERTY_PREFIX):
        return (f"the prefix {RESERVED_PROPERTY_PREFIX!r} is reserved for graph-meta's own "
                "properties; rename the column")
    return None


class EdgeType(NamedTuple):
    """A typed edge ``(src, rel, dst)``; also a PyG ``HeteroData`` edge type."""

    src: str
    rel: str
    dst: str

    def reverse(self) -> EdgeType:
        """The reverse edge type PyG's ``ToUndirected`` convention would name."""
        return EdgeType(self.dst, f"rev_{self.rel}", self.src)

    def __str__(self) -> str:
        return f"({self.src})-[{self.rel}]->({self.dst})"


@dataclass(frozen=True)
class ColumnSpec:
    """One side-information column: its type, the separator of ``multi`` and its node type."""

    name: str
    type: str
    sep: str | None = None
    node: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.sep is not None:
            out["sep"] = self.sep
        if self.node is not None:
            out["node"] = self.node
        return out


@dataclass(frozen=True)
class TableSpec:
    """``users`` or ``items`` of ``dataset.json``: file, id column and typed columns."""

    file: str
    id: str
    columns: dict[str, ColumnSpec]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "id": self.id,
            "columns": {n: c.to_json() for n, c in self.columns.items()},
        }


@dataclass(frozen=True)
class RelationSpec:
    """A relation file: rows ``src_column,dst_column[,weight]`` become ``(src, type, dst)``."""

    type: str
    file: str
    src: str
    dst: str
    src_column: str = "src_id"
    dst_column: str = "dst_id"
    weight: str | None = None

    @property
    def edge_type(self) -> EdgeType:
        return EdgeType(self.src, self.type, self.dst)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "file": self.file,
            "src": self.src,
            "dst": self.dst,
            "src_column": self.src_column,
            "dst_column": self.dst_column,
        }
        if self.weight is not None:
            out["weight"] = self.weight
        return out


@dataclass(frozen=True)
class DatasetSpec:
    """The validated content of ``dataset.json``."""

    name: str
    rating_scale: tuple[float, float]
    train: str
    users: TableSpec
    items: TableSpec
    relations: tuple[RelationSpec, ...] = ()
    tasks: dict[str, str] = field(default_factory=dict)
    implicit: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def node_columns(self) -> list[tuple[str, ColumnSpec]]:
        """``(owner, column)`` for every column that declares a node type; owner is User/Item."""
        out = [(USER, c) for c in self.users.columns.values() if c.node]
        out += [(ITEM, c) for c in self.items.columns.values() if c.node]
        return out

    @property
    def files(self) -> list[tuple[str, str]]:
        """``(field of dataset.json, relative path)`` of every file the spec names."""
        out = [("users.file", self.users.file), ("items.file", self.items.file),
               ("train", self.train)]
        out += [(f"relations[{i}].file", r.file) for i, r in enumerate(self.relations)]
        out += [(f"tasks.{s}", f) for s, f in self.tasks.items()]
        return out

    def check_files(self, root: str | Path, *, source: str | Path = "dataset.json") -> None:
        """Raise a DataError naming the field unless every file named by the spec resolves
        (symlinks followed) to a location inside the folder ``root``."""
        try:
            base = Path(root).resolve()
        except (OSError, RuntimeError) as exc:
            raise DataError(f"cannot resolve the dataset folder: {exc}", file=root) from None
        for fld, name in self.files:
            try:
                target = (base / name).resolve()
            except (OSError, RuntimeError):  # a symlink loop, an unreadable folder
                target = None
            if target is None or not target.is_relative_to(base):
                raise DataError(f"{short(name)} resolves outside the dataset folder; data "
                                "files must lie inside it", file=source, field=fld)

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        """The spec of ``dataset.json`` at ``path``, whose data files must all lie inside
        its folder (:meth:`check_files`)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError("dataset.json not found", file=path) from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text (byte {exc.start})", file=path) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=path, line=exc.lineno) from exc
        spec = cls.from_json(raw, source=path)
        spec.check_files(path.parent, source=path)
        return spec

    @classmethod
    def from_json(cls, raw: Any, *, source: str | Path = "dataset.json") -> DatasetSpec:
        """Validate a parsed ``dataset.json``; errors name the offending field path."""

        def fail(msg: str, fld: str) -> DataError:
            return DataError(msg, file=source, field=fld)

        if not isinstance(raw, Mapping):
            raise fail("top level must be a JSON object", "(root)")
        known = {"name", "rating_scale", "train", "users", "items", "relations", "tasks",
                 "implicit", "stats", "description", "source", "timestamp"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise fail(f"unknown key(s) {short_names(unknown)}; expected some of {sorted(known)}",
                       unknown[0])
        for key in ("name", "rating_scale", "train", "users", "items"):
            if key not in raw:
                raise fail("required key is missing", key)
        name = raw["name"]
        if not isinstance(name, str) or not name:
            raise fail("must be a non-empty string", "name")
        scale = raw["rating_scale"]
        if (
            not isinstance(scale, list | tuple)
            or len(scale) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
            or not all(math.isfinite(v) for v in scale)
            or scale[0] > scale[1]
        ):
            raise fail("must be [low, high] finite numbers with low <= high", "rating_scale")
        train = raw["train"]
        if not isinstance(train, str) or not train:
            raise fail("must be a file name", "train")
        _check_relative(train, "train", fail)

        node_names: dict[str, str] = {}
        users = _table(raw["users"], "users", fail, node_names)
        items = _table(raw["items"], "items", fail, node_names)

        relations_raw = raw.get("relations", [])
        if not isinstance(relations_raw, list):
            raise fail("must be a list", "relations")
        node_types = {USER, ITEM, *node_names}
        relations = []
        for i, r in enumerate(relations_raw):
            where = f"relations[{i}]"
            if not isinstance(r, Mapping):
                raise fail("must be an object", where)
            for key in ("type", "file", "src", "dst"):
                if not isinstance(r.get(key), str) or not r.get(key):
                    raise fail("required string is missing", f"{where}.{key}")
            _check_relative(r["file"], f"{where}.file", fail)
            if not _REL_RE.match(r["type"]):
                raise fail("relationship type must match [A-Z][A-Z0-9_]*", f"{where}.type")
            if r["type"] in (RATED, CO_ENGAGED, CO_LIKED) or r["type"].startswith("HAS_"):
                raise fail(f"relationship type {r['type']!r} is reserved", f"{where}.type")
            known_end = r["src"] in node_types or r["dst"] in node_types
            for end in ("src", "dst"):
                if r[end] in node_types:
                    continue
                # a node type no column declares (a brand's maker, a category's department
                # when items have no department column): only beside a known one, so that a
                # misspelt end of a file linking known types still fails
                if not known_end:
                    raise fail(
                        f"unknown node type {short(r[end])}; known: {sorted(node_types)} (a "
                        "relation may introduce a node type at one end only)",
                        f"{where}.{end}",
                    )
                _check_node_label(r[end], f"{where}.{end}", fail)
            extra = sorted(set(r) - {"type", "file", "src", "dst", "src_column", "dst_column",
                                     "weight"})
            if extra:
                raise fail(f"unknown key(s) {short_names(extra)}", f"{where}.{extra[0]}")
            for key in ("src_column", "dst_column", "weight"):
                if key in r and not (key == "weight" and r[key] is None) and (
                        not isinstance(r[key], str) or not r[key]):
                    raise fail("must be a non-empty column name", f"{where}.{key}")
            relations.append(
                RelationSpec(
                    type=r["type"], file=r["file"], src=r["src"], dst=r["dst"],
                    src_column=r.get("src_column", "src_id"),
                    dst_column=r.get("dst_column", "dst_id"),
                    weight=r.get("weight"),
                )
            )
        if len({r.type for r in relations}) != len(relations):
            raise fail("relationship types must be unique", "relations")

        tasks = raw.get("tasks", {})
        if not isinstance(tasks, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tasks.items()
        ):
            raise fail("must map scenario names to file names", "tasks")
        bad = sorted(set(tasks) - set(SCENARIOS))
        if bad:
            raise fail(f"unknown scenario(s) {short_names(bad)}; known: {list(SCENARIOS)}",
                       f"tasks.{bad[0]}")
        for scenario, fname in tasks.items():
            _check_relative(fname, f"tasks.{scenario}", fail)
        implicit = raw.get("implicit", False)
        if not isinstance(implicit, bool):
            raise fail("must be true or false", "implicit")
        stats = raw.get("stats", {})
        if not isinstance(stats, Mapping):
            raise fail("must be an object", "stats")
        return cls(
            name=name,
            rating_scale=(float(scale[0]), float(scale[1])),
            train=train,
            users=users,
            items=items,
            relations=tuple(relations),
            tasks=dict(tasks),
            implicit=implicit,
            stats=dict(stats),
        )

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.rating_scale
        out: dict[str, Any] = {
            "name": self.name,
            "rating_scale": [_compact(lo), _compact(hi)],
            "train": self.train,
            "users": self.users.to_json(),
            "items": self.items.to_json(),
            "relations": [r.to_json() for r in self.relations],
            "tasks": dict(self.tasks),
        }
        if self.implicit:
            out["implicit"] = True
        if self.stats:
            out["stats"] = dict(self.stats)
        return out


def _check_relative(name: str, fld: str, fail: Any) -> None:
    """A data file's name must be a relative path without ``..`` (checked again, symlinks
    followed, against the folder by :meth:`DatasetSpec.check_files`)."""
    parts = name.replace("\\", "/").split("/")
    if "\0" in name or Path(name).is_absolute() or name.startswith(("/", "\\")) or (
            len(name) > 1 and name[1] == ":") or ".." in parts:
        raise fail(f"{short(name)} is not a relative path inside the dataset folder "
                   "(no absolute path, no '..')", fld)


def _compact(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def _table(raw: Any, where: str, fail: Any, node_names: dict[str, str]) -> TableSpec:
    if not isinstance(raw, Mapping):
        raise fail("must be an object with file, id and columns", where)
    for key in ("file", "id"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise fail("required string is missing", f"{where}.{key}")
    _check_relative(raw["file"], f"{where}.file", fail)
    extra = sorted(set(raw) - {"file", "id", "columns"})
    if extra:
        raise fail(f"unknown key(s) {short_names(extra)}", f"{where}.{extra[0]}")
    cols_raw = raw.get("columns", {})
    if not isinstance(cols_raw, Mapping):
        raise fail("must be an object", f"{where}.columns")
    columns: dict[str, ColumnSpec] = {}
    for cname, c in cols_raw.items():
        fld = f"{where}.columns.{cname}"
        if cname == raw["id"]:
            raise fail("the id column must not be listed among columns", fld)
        why = check_column_name(cname)
        if why:
            raise fail(why, fld)
        if not isinstance(c, Mapping):
            raise fail("must be an object with a type", fld)
        ctype = c.get("type")
        if ctype not in COLUMN_TYPES:
            raise fail(f"unknown column type {short(ctype)}; known: {list(COLUMN_TYPES)}",
                       f"{fld}.type")
        extra = sorted(set(c) - {"type", "sep", "node"})
        if extra:
            raise fail(f"unknown key(s) {short_names(extra)}", f"{fld}.{extra[0]}")
        sep = c.get("sep")
        if ctype == "multi":
            if not isinstance(sep, str) or not sep:
                raise fail("a multi column needs a non-empty 'sep'", f"{fld}.sep")
        elif sep is not None:
            raise fail("'sep' is only for multi columns", f"{fld}.sep")
        node = c.get("node")
        if node is not None:
            if ctype not in ("categorical", "multi"):
                raise fail("only categorical and multi columns can declare a node", f"{fld}.node")
            _check_node_label(node, f"{fld}.node", fail)
            if node in (USER, ITEM):
                raise fail(f"node type {node!r} is reserved", f"{fld}.node")
            node_names.setdefault(node, fld)
        columns[cname] = ColumnSpec(name=cname, type=ctype, sep=sep, node=node)
    return TableSpec(file=raw["file"], id=raw["id"], columns=columns)


def _check_node_label(node: Any, fld: str, fail: Any) -> None:
    """A node type's name: ``[A-Z][A-Za-z0-9_]*``, not under graph-meta's own prefix."""
    if not isinstance(node, str) or not _LABEL_RE.match(node):
        raise fail("node type must match [A-Z][A-Za-z0-9_]*", fld)
    if node.startswith(RESERVED_LABEL_PREFIX):
        raise fail(f"the node type prefix {RESERVED_LABEL_PREFIX!r} is reserved for "
                   "graph-meta's own labels", fld)


def _snake_upper(label: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", label).upper()


@dataclass(frozen=True)
class AttributeEdge:
    """How a node column of ``users.csv``/``items.csv`` becomes edges."""

    owner: str
    column: str
    edge_type: EdgeType


@dataclass(frozen=True)
class GraphSchema:
    """Node and edge types of a dataset's heterogeneous graph, and the Cypher whitelist."""

    node_types: tuple[str, ...]
    edge_types: tuple[EdgeType, ...]
    attribute_edges: tuple[AttributeEdge, ...]
    relations: tuple[RelationSpec, ...]

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> GraphSchema:
        node_types = [USER, ITEM]
        edge_types = [EdgeType(USER, RATED, ITEM)]
        attr_edges: list[AttributeEdge] = []
        for owner, col in spec.node_columns:
            assert col.node is not None
            if col.node not in node_types:
                node_types.append(col.node)
            et = EdgeType(owner, f"HAS_{_snake_upper(col.node)}", col.node)
            if et in edge_types:
                et = EdgeType(owner, f"HAS_{col.name.upper()}", col.node)
            if et in edge_types or not _REL_RE.match(et.rel):
                raise DataError(
                    f"column cannot be given a distinct relationship type ({et.rel})",
                    file="dataset.json", field=col.name,
                )
            edge_types.append(et)
            attr_edges.append(AttributeEdge(owner, col.name, et))
        for rel in spec.relations:
            edge_types.append(rel.edge_type)
            for end in (rel.src, rel.dst):
                if end not in node_types:  # introduced by the relation file
                    node_types.append(end)
        edge_types.append(EdgeType(ITEM, CO_LIKED, ITEM))
        if any(a.owner == ITEM and a.edge_type.dst == CATEGORY for a in attr_edges):
            # categories the same users engage with: from the items' category column (a
            # Category type that only a relation file or a user column brings has no items)
            edge_types.append(EdgeType(CATEGORY, CO_ENGAGED, CATEGORY))
        return cls(tuple(node_types), tuple(edge_types), tuple(attr_edges), spec.relations)

    @property
    def co_liked(self) -> EdgeType:
        return EdgeType(ITEM, CO_LIKED, ITEM)

    @property
    def co_engaged(self) -> EdgeType | None:
        et = EdgeType(CATEGORY, CO_ENGAGED, CATEGORY)
        return et if et in self.edge_types else None

    @property
    def rated(self) -> EdgeType:
        return EdgeType(USER, RATED, ITEM)

    def edge_type(self, rel: str) -> EdgeType:
        """The edge type whose relationship type is ``rel``."""
        for et in self.edge_types:
            if et.rel == rel:
                return et
        raise SchemaError(f"unknown relationship type {rel!r}; known: "
                          f"{[e.rel for e in self.edge_types]}")

    def check_label(self, label: str) -> str:
        """Return ``label`` if it is a node type of this schema, else raise SchemaError."""
        if label not in self.node_types:
            raise SchemaError(f"unknown node label {label!r}; known: {list(self.node_types)}")
        return label

    def check_edge(self, edge_type: EdgeType | tuple[str, str, str]) -> EdgeType:
        """Return the edge type if this schema has it, else raise SchemaError."""
        et = EdgeType(*edge_type)
        if et not in self.edge_types:
            raise SchemaError(f"unknown edge type {et}; known: {[str(e) for e in self.edge_types]}")
        return et
