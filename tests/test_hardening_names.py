"""Names and ids that collided with the stores' own (issue 18, item 3).

The stores' internal properties (``gm_*``, e.g. an item's ``gm_n_ratings``) and labels
(``GraphMeta*``) are out of the columns' reach; column names follow the schema's name rule;
``id`` is no column; ids longer than Neo4j can index are refused when the dataset is read, and
by both stores alike before anything is written.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from graph_meta.dataset import Dataset
from graph_meta.errors import DataError, GraphMetaError
from graph_meta.schema import ITEM, MAX_ID_BYTES, DatasetSpec
from graph_meta.store.embedded import EmbeddedGraphStore
from loaders.folder import read_dataset
from training.cli import main as cli

LONG_ID = "x" * 20_000
# 4000 UTF-8 bytes exactly (2 bytes a character): the longest id the stores take
EDGE_ID = "é" * (MAX_ID_BYTES // 2)


def _raw(catalog: Dataset) -> dict:
    return copy.deepcopy(catalog.spec.to_json())


@pytest.mark.parametrize("name, fragment", [
    ("n ratings", "must match"),
    ("1st", "must match"),
    ("price-eur", "must match"),
    ("c" * 64, "must match"),
    ("id", "'id' is every node's own id"),
    ("gm_n_ratings", "reserved"),
    ("GM_top_HAS_CATEGORY", "reserved"),
])
def test_column_names_follow_the_name_rule(catalog: Dataset, name: str, fragment: str) -> None:
    raw = _raw(catalog)
    raw["items"]["columns"][name] = {"type": "numeric"}
    with pytest.raises(DataError, match=fragment) as err:
        DatasetSpec.from_json(raw)
    assert err.value.field == f"items.columns.{name}"


@pytest.mark.parametrize("label", ["GraphMetaDataset", "GraphMetaAnything"])
def test_internal_label_prefix_is_reserved(catalog: Dataset, label: str) -> None:
    raw = _raw(catalog)
    raw["items"]["columns"]["brand"]["node"] = label
    with pytest.raises(DataError, match="reserved") as err:
        DatasetSpec.from_json(raw)
    assert err.value.field == "items.columns.brand.node"


def _copy_folder(catalog_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(catalog_dir, out)
    return out


def _rewrite_csv(path: Path, change) -> int:
    """Apply ``change(rows)`` to a CSV (rows incl. header); returns the changed line."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    line = change(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return line


@pytest.mark.parametrize("where", ["item id", "category value", "relation end"])
def test_a_long_id_is_refused_when_read(catalog_dir: Path, tmp_path: Path, where: str) -> None:
    folder = _copy_folder(catalog_dir, tmp_path)
    if where == "relation end":
        rel = json.loads((folder / "dataset.json").read_text())["relations"][0]
        path, column = folder / rel["file"], rel["dst_column"]
    else:
        path, column = folder / "items.csv", "item_id" if where == "item id" else "category"

    def change(rows: list[list[str]]) -> int:
        rows[5][rows[0].index(column)] = LONG_ID
        return 6

    line = _rewrite_csv(path, change)
    with pytest.raises(DataError, match="longer than the 4,000") as err:
        read_dataset(folder)
    assert (Path(err.value.file).name, err.value.line, err.value.field) == (path.name, line,
                                                                             column)
    assert len(str(err.value)) < 400  # the id is cut short in the message


def test_an_id_at_the_limit_is_read(catalog_dir: Path, tmp_path: Path) -> None:
    folder = _copy_folder(catalog_dir, tmp_path)

    def change(rows: list[list[str]]) -> int:
        rows[5][rows[0].index("category")] = EDGE_ID
        return 6

    _rewrite_csv(folder / "items.csv", change)
    data = read_dataset(folder)
    assert EDGE_ID in set(data.items["category"])
    _rewrite_csv(folder / "items.csv",
                 lambda rows: rows[5].__setitem__(rows[0].index("category"), EDGE_ID + "e"))
    with pytest.raises(DataError, match="4,001 UTF-8 bytes"):
        read_dataset(folder)


def test_cli_validate_names_the_id_column(catalog_dir: Path, tmp_path: Path) -> None:
    folder = _copy_folder(catalog_dir, tmp_path)
    raw = json.loads((folder / "dataset.json").read_text())
    raw["items"]["columns"]["id"] = {"type": "categorical"}
    (folder / "dataset.json").write_text(json.dumps(raw))
    result = CliRunner().invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "items.columns.id" in lines[0] and "Traceback" not in lines[0]


def test_import_csv_names_a_column_that_cannot_be_a_property(tmp_path: Path) -> None:
    from loaders.csv_import import interactions_dataset

    pd.DataFrame({"user_id": ["u1", "u2", "u1"], "item_id": ["a", "b", "b"],
                  "rating": [5, 3, 4]}).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"item_id": ["a", "b"], "category": ["x", "y"],
                  "list price": [1.0, 2.0]}).to_csv(tmp_path / "i.csv", index=False)
    with pytest.raises(DataError, match="must match") as err:
        interactions_dataset(tmp_path / "r.csv", items_path=tmp_path / "i.csv")
    assert err.value.field == "list price" and err.value.file.endswith("i.csv")


def _refuses_long_ids(store) -> None:
    """A long item id, or a long attribute value, is refused before anything is written."""
    before = store.counts()
    category = str(store.node_ids("Category")[0])
    for frame in (pd.DataFrame({"category": [category, category]}, index=["ok-1", LONG_ID]),
                  pd.DataFrame({"category": [category], "brand": [LONG_ID]}, index=["ok-2"])):
        with pytest.raises(ValueError, match="longer than the 4,000"):
            store.add_items(frame)
        assert store.counts() == before
    store.add_items(pd.DataFrame({"category": [category], "brand": [EDGE_ID]},
                                 index=[EDGE_ID]))
    assert store.has_node(ITEM, EDGE_ID) and store.has_node("Brand", EDGE_ID)


def test_embedded_store_refuses_long_ids(catalog: Dataset) -> None:
    _refuses_long_ids(EmbeddedGraphStore.from_dataset(catalog))


def _with_n_ratings_column(catalog: Dataset) -> Dataset:
    raw = _raw(catalog)
    raw["items"]["columns"]["n_ratings"] = {"type": "numeric"}
    items = catalog.items.copy()
    items["n_ratings"] = np.random.default_rng(0).integers(0, 10_000, len(items)).astype(float)
    return Dataset(spec=DatasetSpec.from_json(raw), users=catalog.users, items=items,
                   train=catalog.train, relations=catalog.relations, tasks=catalog.tasks)


@pytest.mark.neo4j
def test_an_n_ratings_column_is_kept_and_answers_agree(catalog: Dataset,
                                                        neo4j_store_factory) -> None:
    data = _with_n_ratings_column(catalog)
    embedded = EmbeddedGraphStore.from_dataset(data)
    neo = neo4j_store_factory(data.spec)
    neo.ingest(data)
    want = data.items["n_ratings"].sort_index()
    for store in (embedded, neo):
        got = store.node_frame(ITEM)["n_ratings"]
        assert np.array_equal(got.to_numpy(), want.to_numpy())
    users = [str(u) for u in catalog.train["user_id"].unique()[:25]]
    differ = [u for u in users
              if embedded.candidates(user_id=u, k=20) != neo.candidates(user_id=u, k=20)]
    assert differ == []
    assert embedded.candidates(k=20) == neo.candidates(k=20)  # popularity alone


@pytest.mark.neo4j
def test_neo4j_refuses_long_ids_and_takes_the_limit(catalog: Dataset,
                                                    neo4j_store_factory) -> None:
    store = neo4j_store_factory(catalog.spec)
    store.ingest(catalog)
    _refuses_long_ids(store)


@pytest.mark.neo4j
def test_a_database_of_the_old_format_asks_for_a_wipe(catalog: Dataset, neo4j_store_factory,
                                                      neo4j_credentials: dict) -> None:
    from graph_meta.store.neo4j import Neo4jGraphStore

    store = neo4j_store_factory(catalog.spec)
    store.ingest(catalog)
    store._write("MATCH (m:GraphMetaDataset) REMOVE m.format")  # as older code wrote it
    creds = {k: neo4j_credentials[k] for k in ("uri", "user", "password")}
    with pytest.raises(GraphMetaError, match="--wipe") as err:
        Neo4jGraphStore(catalog.spec, **creds)
    assert "older graph-meta" in str(err.value)
    fresh = neo4j_store_factory(catalog.spec)  # wiped first
    fresh.ingest(catalog)
    assert fresh.counts() == EmbeddedGraphStore.from_dataset(catalog).counts()
