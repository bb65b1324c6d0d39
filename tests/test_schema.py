"""DatasetSpec validation and round trip, GraphSchema derivation and its Cypher whitelist."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graph_meta.errors import DataError, SchemaError
from graph_meta.schema import (
    CO_ENGAGED,
    SCENARIOS,
    DatasetSpec,
    EdgeType,
    GraphSchema,
    RelationSpec,
)

GOOD_SPEC = Path(__file__).resolve().parent / "data" / "good" / "dataset.json"


def movielens_like() -> dict[str, Any]:
    """The shape of movielens-1m's dataset.json (no file of ../shared needed)."""
    return {
        "name": "movielens-like",
        "rating_scale": [1, 5],
        "train": "train.csv",
        "users": {"file": "users.csv", "id": "user_id", "columns": {
            "gender": {"type": "categorical"},
            "age": {"type": "categorical"},
            "occupation": {"type": "categorical"},
            "zip": {"type": "categorical"},
        }},
        "items": {"file": "items.csv", "id": "item_id", "columns": {
            "title": {"type": "text"},
            "year": {"type": "numeric"},
            "mpaa": {"type": "categorical"},
            "genres": {"type": "multi", "sep": "|", "node": "Category"},
            "directors": {"type": "multi", "sep": "|", "node": "Director"},
            "writers": {"type": "multi", "sep": "|", "node": "Writer"},
            "actors": {"type": "multi", "sep": "|", "node": "Actor"},
            "plot": {"type": "text"},
        }},
        "relations": [],
        "tasks": {s: f"tasks/{s}.jsonl" for s in SCENARIOS},
    }


def with_relation(raw: dict[str, Any], **rel: Any) -> dict[str, Any]:
    base = {"type": "FOLLOWS", "file": "follows.csv", "src": "User", "dst": "User"}
    base.update(rel)
    raw["relations"].append({k: v for k, v in base.items() if v is not ...})
    return raw


# --------------------------------------------------------------------------- DatasetSpec


def test_from_json_movielens_like() -> None:
    spec = DatasetSpec.from_json(movielens_like())
    assert spec.name == "movielens-like"
    assert spec.rating_scale == (1.0, 5.0)
    assert spec.train == "train.csv"
    assert spec.users.id == "user_id"
    assert list(spec.items.columns) == ["title", "year", "mpaa", "genres", "directors",
                                        "writers", "actors", "plot"]
    genres = spec.items.columns["genres"]
    assert (genres.name, genres.type, genres.sep, genres.node) == ("genres", "multi", "|",
                                                                   "Category")
    assert spec.items.columns["year"].sep is None
    assert [(owner, c.name) for owner, c in spec.node_columns] == [
        ("Item", "genres"), ("Item", "directors"), ("Item", "writers"), ("Item", "actors")]
    assert spec.relations == ()
    assert spec.tasks == {s: f"tasks/{s}.jsonl" for s in SCENARIOS}
    assert spec.implicit is False
    assert spec.stats == {}


def test_from_json_defaults_and_optional_keys() -> None:
    raw = movielens_like()
    for key in ("relations", "tasks"):
        del raw[key]
    raw["items"].pop("columns")
    raw.update(description="text", source="somewhere", timestamp="2024-01-01",
               implicit=True, stats={"users": 3})
    spec = DatasetSpec.from_json(raw)
    assert spec.relations == () and spec.tasks == {} and spec.items.columns == {}
    assert spec.implicit is True and spec.stats == {"users": 3}
    rel = DatasetSpec.from_json(with_relation(movielens_like())).relations[0]
    assert rel == RelationSpec("FOLLOWS", "follows.csv", "User", "User", "src_id", "dst_id")
    assert rel.edge_type == EdgeType("User", "FOLLOWS", "User")


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting the dotted ``path`` (missing parents are errors) to ``value``."""
    *parents, last = path.split(".")

    def mutate(raw: dict) -> None:
        node = raw
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()


def _rel(**kw: Any) -> Callable[[dict], None]:
    return lambda raw: with_relation(raw, **kw)


INVALID: list[tuple[str, Callable[[dict], Any], str, str]] = [
    # (id, mutation, field path, message fragment)
    ("typo_top_level_key", _set("ratings_scale", [1, 5]), "ratings_scale", "unknown key"),
    ("missing_name", _set("name", _DELETE), "name", "required key is missing"),
    ("missing_items", _set("items", _DELETE), "items", "required key is missing"),
    ("empty_name", _set("name", ""), "name", "non-empty string"),
    ("scale_reversed", _set("rating_scale", [5, 1]), "rating_scale", "low <= high"),
    ("scale_one_value", _set("rating_scale", [5]), "rating_scale", "[low, high]"),
    ("scale_strings", _set("rating_scale", ["1", "5"]), "rating_scale", "[low, high]"),
    ("scale_bool", _set("rating_scale", [False, 5]), "rating_scale", "[low, high]"),
    ("scale_nan", _set("rating_scale", [float("nan"), 5]), "rating_scale", "finite"),
    ("scale_inf", _set("rating_scale", [1, float("inf")]), "rating_scale", "finite"),
    ("train_not_string", _set("train", 3), "train", "file name"),
    ("users_not_object", _set("users", "users.csv"), "users", "must be an object"),
    ("users_file_missing", _set("users.file", _DELETE), "users.file", "required string"),
    ("items_id_empty", _set("items.id", ""), "items.id", "required string"),
    ("table_unknown_key", _set("users.primary", "x"), "users.primary", "unknown key"),
    ("columns_not_object", _set("items.columns", ["title"]), "items.columns",
     "must be an object"),
    ("id_among_columns", _set("items.columns.item_id", {"type": "categorical"}),
     "items.columns.item_id", "id column"),
    ("column_not_object", _set("items.columns.year", "numeric"), "items.columns.year",
     "must be an object"),
    ("unknown_column_type", _set("items.columns.year.type", "float"),
     "items.columns.year.type", "unknown column type 'float'"),
    ("missing_column_type", _set("users.columns.zip.type", _DELETE),
     "users.columns.zip.type", "unknown column type None"),
    ("unknown_column_key", _set("items.columns.year.unit", "y"), "items.columns.year.unit",
     "unknown key"),
    ("multi_without_sep", _set("items.columns.genres.sep", _DELETE),
     "items.columns.genres.sep", "needs a non-empty 'sep'"),
    ("multi_empty_sep", _set("items.columns.actors.sep", ""), "items.columns.actors.sep",
     "needs a non-empty 'sep'"),
    ("sep_on_categorical", _set("users.columns.gender.sep", "|"), "users.columns.gender.sep",
     "only for multi"),
    ("node_on_numeric", _set("items.columns.year.node", "Year"), "items.columns.year.node",
     "only categorical and multi"),
    ("node_on_text", _set("items.columns.plot.node", "Plot"), "items.columns.plot.node",
     "only categorical and multi"),
    ("node_lowercase", _set("items.columns.genres.node", "category"),
     "items.columns.genres.node", "must match"),
    ("node_cypher_injection", _set("items.columns.genres.node", "Category) DETACH DELETE n //"),
     "items.columns.genres.node", "must match"),
    ("node_backtick", _set("users.columns.occupation.node", "Job`"),
     "users.columns.occupation.node", "must match"),
    ("node_not_string", _set("users.columns.occupation.node", 7),
     "users.columns.occupation.node", "must match"),
    ("node_reserved", _set("users.columns.occupation.node", "User"),
     "users.columns.occupation.node", "reserved"),
    ("relations_not_list", _set("relations", {}), "relations", "must be a list"),
    ("relation_not_object", _set("relations", ["FOLLOWS"]), "relations[0]", "must be an object"),
    ("relation_without_file", _rel(file=...), "relations[0].file", "required string"),
    ("relation_type_lowercase", _rel(type="follows"), "relations[0].type", "must match"),
    ("relation_type_injection", _rel(type="FOLLOWS]->(x) DETACH DELETE x //"),
     "relations[0].type", "must match"),
    ("relation_type_rated", _rel(type="RATED"), "relations[0].type", "reserved"),
    ("relation_type_co_engaged", _rel(type=CO_ENGAGED), "relations[0].type", "reserved"),
    ("relation_type_has", _rel(type="HAS_FRIEND"), "relations[0].type", "reserved"),
    ("relation_both_ends_unknown", _rel(src="Friend", dst="Genre"), "relations[0].src",
     "unknown node type"),
    ("relation_new_node_lowercase", _rel(dst="genre"), "relations[0].dst", "must match"),
    ("relation_new_node_injection", _rel(src="Director", dst="Maker) DETACH DELETE n //"),
     "relations[0].dst", "must match"),
    ("relation_new_node_reserved_prefix", _rel(src="Director", dst="GraphMetaDataset"),
     "relations[0].dst", "reserved"),
    ("relation_unknown_key", _rel(directed=True), "relations[0].directed", "unknown key"),
    ("relation_weight_not_string", _rel(weight=3), "relations[0].weight", "column name"),
    ("relation_src_column_empty", _rel(src_column=""), "relations[0].src_column",
     "column name"),
    ("relation_types_not_unique", lambda raw: with_relation(with_relation(raw), file="b.csv"),
     "relations", "unique"),
    ("tasks_not_mapping", _set("tasks", ["warm"]), "tasks", "scenario names"),
    ("task_file_not_string", _set("tasks.warm", 1), "tasks", "scenario names"),
    ("unknown_scenario", _set("tasks.cold", "tasks/cold.jsonl"), "tasks.cold",
     "unknown scenario"),
    ("implicit_not_bool", _set("implicit", "yes"), "implicit", "true or false"),
    ("stats_not_object", _set("stats", [1]), "stats", "must be an object"),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_from_json_rejects(mutate: Callable[[dict], Any], field: str, fragment: str) -> None:
    raw = movielens_like()
    mutate(raw)
    with pytest.raises(DataError) as info:
        DatasetSpec.from_json(raw, source="some/dir/dataset.json")
    exc = info.value
    assert exc.field == field
    assert exc.file == "some/dir/dataset.json"
    assert exc.line is None
    assert fragment in exc.reason
    assert str(exc).startswith(f"some/dir/dataset.json, field {field!r}: ")


@pytest.mark.parametrize("raw", [[], "x", None, 3], ids=["list", "str", "null", "int"])
def test_from_json_rejects_non_object(raw: Any) -> None:
    with pytest.raises(DataError) as info:
        DatasetSpec.from_json(raw)
    assert info.value.field == "(root)"
    assert info.value.file == "dataset.json"


def test_relations_may_join_column_node_types() -> None:
    raw = with_relation(movielens_like(), type="WORKED_WITH", file="ww.csv", src="Director",
                        dst="Actor", weight="films")
    spec = DatasetSpec.from_json(raw)
    assert spec.relations[0].edge_type == EdgeType("Director", "WORKED_WITH", "Actor")
    assert spec.relations[0].weight == "films"
    assert EdgeType("Director", "WORKED_WITH", "Actor") in GraphSchema.from_spec(spec).edge_types


def test_a_relation_may_introduce_a_node_type_at_one_end() -> None:
    raw = with_relation(movielens_like(), type="SIGNED_TO", file="agencies.csv", src="Actor",
                        dst="Agency")
    spec = DatasetSpec.from_json(raw)
    schema = GraphSchema.from_spec(spec)
    assert "Agency" in schema.node_types
    assert EdgeType("Actor", "SIGNED_TO", "Agency") in schema.edge_types
    schema.check_label("Agency")
    assert DatasetSpec.from_json(spec.to_json()) == spec


def test_from_file(tmp_path: Path) -> None:
    spec = DatasetSpec.from_file(GOOD_SPEC)
    assert spec.name == "tiny-movies"
    with pytest.raises(DataError, match=r"dataset\.json not found"):
        DatasetSpec.from_file(tmp_path / "dataset.json")
    bad = tmp_path / "dataset.json"
    bad.write_text('{\n  "name": "x",\n  "rating_scale": [1, 5],,\n}\n', encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON") as info:
        DatasetSpec.from_file(bad)
    assert (info.value.file, info.value.line, info.value.field) == (str(bad), 3, None)
    bad.write_text('{"name": "x"}', encoding="utf-8")
    with pytest.raises(DataError) as info:
        DatasetSpec.from_file(bad)
    assert (info.value.file, info.value.field) == (str(bad), "rating_scale")


# ------------------------------------------------------------------------------ to_json


@pytest.mark.parametrize("make", [
    movielens_like,
    lambda: json.loads(GOOD_SPEC.read_text(encoding="utf-8")),
    lambda: with_relation(movielens_like(), type="WORKED_WITH", src="Director", dst="Actor",
                          src_column="a", dst_column="b", weight="w"),
    lambda: {**movielens_like(), "rating_scale": [0.5, 5], "implicit": True,
             "stats": {"ratings": 10}},
], ids=["movielens_like", "good_folder", "relation", "implicit_half_stars"])
def test_to_json_round_trip(make: Callable[[], dict]) -> None:
    raw = make()
    spec = DatasetSpec.from_json(copy.deepcopy(raw))
    out = spec.to_json()
    assert DatasetSpec.from_json(out) == spec
    text = json.dumps(out, allow_nan=False)
    assert DatasetSpec.from_json(json.loads(text)) == spec
    # the written dataset.json is the input, up to the defaults it spells out
    for rel in raw.get("relations", []):
        rel.setdefault("src_column", "src_id")
        rel.setdefault("dst_column", "dst_id")
    assert out == raw


def test_to_json_compacts_the_scale() -> None:
    raw = movielens_like()
    raw["rating_scale"] = [1.0, 5.0]
    assert DatasetSpec.from_json(raw).to_json()["rating_scale"] == [1, 5]
    raw["rating_scale"] = [0.5, 5.0]
    assert DatasetSpec.from_json(raw).to_json()["rating_scale"] == [0.5, 5]
    assert "implicit" not in DatasetSpec.from_json(raw).to_json()


# ---------------------------------------------------------------------------- GraphSchema


@pytest.fixture
def schema() -> GraphSchema:
    return GraphSchema.from_spec(DatasetSpec.from_json(movielens_like()))


def test_graph_schema_movielens_like(schema: GraphSchema) -> None:
    assert schema.node_types == ("User", "Item", "Category", "Director", "Writer", "Actor")
    assert schema.edge_types == (
        EdgeType("User", "RATED", "Item"),
        EdgeType("Item", "HAS_CATEGORY", "Category"),
        EdgeType("Item", "HAS_DIRECTOR", "Director"),
        EdgeType("Item", "HAS_WRITER", "Writer"),
        EdgeType("Item", "HAS_ACTOR", "Actor"),
        EdgeType("Item", "CO_LIKED", "Item"),
        EdgeType("Category", "CO_ENGAGED", "Category"),
    )
    assert [(a.owner, a.column, a.edge_type.rel) for a in schema.attribute_edges] == [
        ("Item", "genres", "HAS_CATEGORY"), ("Item", "directors", "HAS_DIRECTOR"),
        ("Item", "writers", "HAS_WRITER"), ("Item", "actors", "HAS_ACTOR")]
    assert schema.relations == ()
    assert schema.rated == EdgeType("User", "RATED", "Item")
    assert schema.co_engaged == EdgeType("Category", "CO_ENGAGED", "Category")
    assert schema.edge_type("HAS_DIRECTOR") == EdgeType("Item", "HAS_DIRECTOR", "Director")
    with pytest.raises(SchemaError, match="unknown relationship type"):
        schema.edge_type("HAS_PRODUCER")


def test_edge_type_helpers() -> None:
    et = EdgeType("Item", "HAS_CATEGORY", "Category")
    assert et.reverse() == ("Category", "rev_HAS_CATEGORY", "Item")
    assert str(et) == "(Item)-[HAS_CATEGORY]->(Category)"


def test_graph_schema_without_category_has_no_co_engaged() -> None:
    raw = movielens_like()
    del raw["items"]["columns"]["genres"]["node"]
    schema = GraphSchema.from_spec(DatasetSpec.from_json(raw))
    assert "Category" not in schema.node_types
    assert schema.co_engaged is None
    assert all(et.rel != CO_ENGAGED for et in schema.edge_types)


def test_graph_schema_user_columns_relations_and_shared_node_types() -> None:
    raw = movielens_like()
    raw["users"]["columns"]["occupation"]["node"] = "Occupation"
    raw["users"]["columns"]["zip"]["node"] = "City"
    raw["items"]["columns"]["mpaa"]["node"] = "City"  # same node type, other owner
    raw["items"]["columns"]["writers"]["node"] = "Director"  # same node type, same owner
    raw["items"]["columns"]["studio"] = {"type": "categorical", "node": "ProductionCompany"}
    with_relation(raw)
    schema = GraphSchema.from_spec(DatasetSpec.from_json(raw))
    assert schema.node_types == ("User", "Item", "Occupation", "City", "Category", "Director",
                                 "Actor", "ProductionCompany")
    edges = set(schema.edge_types)
    assert {
        EdgeType("User", "HAS_OCCUPATION", "Occupation"),
        EdgeType("User", "HAS_CITY", "City"),
        EdgeType("Item", "HAS_CITY", "City"),
        EdgeType("Item", "HAS_DIRECTOR", "Director"),
        EdgeType("Item", "HAS_WRITERS", "Director"),
        EdgeType("Item", "HAS_PRODUCTION_COMPANY", "ProductionCompany"),
        EdgeType("User", "FOLLOWS", "User"),
    } <= edges
    assert len(schema.edge_types) == len(edges)  # no edge type twice
    assert schema.relations == (RelationSpec("FOLLOWS", "follows.csv", "User", "User"),)


@pytest.mark.parametrize("column", ["category", "sub-genres"])
def test_graph_schema_rejects_an_edge_type_it_cannot_name(column: str) -> None:
    raw = movielens_like()
    raw["items"]["columns"][column] = {"type": "multi", "sep": "|", "node": "Category"}
    with pytest.raises(DataError) as info:
        GraphSchema.from_spec(DatasetSpec.from_json(raw))
    # "sub-genres" breaks the column name rule: refused already when dataset.json is read
    assert info.value.field == (column if column == "category" else f"items.columns.{column}")


def test_check_label_accepts_known_node_types(schema: GraphSchema) -> None:
    for label in schema.node_types:
        assert schema.check_label(label) == label


@pytest.mark.parametrize("label", [
    "Genre", "user", "USER", "Users", "", " User", "User ", "Category\n",
    "Item:Admin", "Item`", "`Item`", "Item) DETACH DELETE n //",
    "Item})-[r]-() DELETE r //", "Item` MATCH (n) DETACH DELETE n //", "Item;DROP",
])
def test_check_label_rejects(schema: GraphSchema, label: str) -> None:
    with pytest.raises(SchemaError, match="unknown node label"):
        schema.check_label(label)


def test_check_edge_accepts_known_edge_types(schema: GraphSchema) -> None:
    for et in schema.edge_types:
        assert schema.check_edge(tuple(et)) == et
        assert isinstance(schema.check_edge(tuple(et)), EdgeType)


@pytest.mark.parametrize("edge", [
    ("Item", "RATED", "User"),  # reversed
    ("User", "rated", "Item"),
    ("User", "LIKED", "Item"),
    ("User", "HAS_CATEGORY", "Category"),  # right name, wrong owner
    ("Item", "rev_HAS_CATEGORY", "Category"),
    ("User", "RATED]->(i) DETACH DELETE i //", "Item"),
    ("User", "RATED`", "Item"),
    ("User", "RATED|HAS_CATEGORY", "Item"),
    ("User) DETACH DELETE n //", "RATED", "Item"),
    ("User", "RATED", "Item {secret: true}"),
])
def test_check_edge_rejects(schema: GraphSchema, edge: tuple[str, str, str]) -> None:
    with pytest.raises(SchemaError, match="unknown edge type"):
        schema.check_edge(edge)


def test_schema_error_is_not_a_data_error() -> None:
    assert issubclass(SchemaError, ValueError)
    assert not issubclass(SchemaError, DataError)
