"""Category transfer (``graph_meta.eval.category_transfer``, ``graph-meta category-transfer``):
the split is leak-free, seeded and keeps the asked share; tasks have the asked support; clear
errors; the CLI writes its tables; ``benchmarks/seed_table.py`` averages its runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from benchmark_scripts import benchmark_script
from click.testing import CliRunner

from graph_meta.dataset import ITEM_ID, USER_ID, Dataset
from graph_meta.eval.category_transfer import (
    SCENARIO,
    categories_by_users,
    category_items,
    category_transfer_split,
    leaks,
)
from graph_meta.schema import ColumnSpec
from loaders.folder import write_dataset
from loaders.synthetic import generate_catalog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shop() -> Dataset:
    """Four categories and heavy users: every category has transfer tasks."""
    return generate_catalog(n_users=200, n_items=80, n_interactions=8000, n_departments=2,
                            categories_per_department=2, seed=3)


@pytest.fixture(scope="module")
def category(shop: Dataset) -> str:
    return categories_by_users(shop, 15)[0][0]


def _pairs(data: Dataset) -> set[tuple[str, str]]:
    return set(zip(data.train[USER_ID].astype(str), data.train[ITEM_ID].astype(str),
                   strict=True))


def test_split_is_leak_free_and_users_stay_warm(shop: Dataset, category: str) -> None:
    split = category_transfer_split(shop, category, keep=0.1, seed=0)
    tasks = split.dataset.tasks[SCENARIO]
    assert tasks and split.report["tasks"] == len(tasks)
    assert leaks(split) == []
    trained = _pairs(split.dataset)
    members = category_items(shop, category)
    before = _pairs(shop)
    for t in tasks:
        asked = [(t.user_id, i) for i, _ in (*t.support, *t.query)]
        assert not trained & set(asked)
        assert {i for _, i in asked} <= members
        assert len(set(asked)) == len(asked)
        assert set(asked) <= before  # real training ratings, moved out of training
        # the user keeps every training rating outside the category
        outside = {p for p in before if p[0] == t.user_id and p[1] not in members}
        assert outside <= trained
    # only the category's ratings were touched
    assert {p for p in before if p[1] not in members} <= trained
    assert split.dataset.tasks.keys() == {SCENARIO}
    assert split.dataset.root is None


def test_split_is_deterministic_per_seed(shop: Dataset, category: str) -> None:
    a = category_transfer_split(shop, category, seed=1)
    b = category_transfer_split(shop, category, seed=1)
    c = category_transfer_split(shop, category, seed=2)
    assert a.dataset.tasks == b.dataset.tasks
    pd.testing.assert_frame_equal(a.dataset.train, b.dataset.train)
    assert a.report == b.report
    assert a.dataset.tasks != c.dataset.tasks


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.25])
def test_the_category_keeps_the_asked_share(shop: Dataset, category: str,
                                            keep: float) -> None:
    members = category_items(shop, category)
    in_cat = {p for p in _pairs(shop) if p[1] in members}
    split = category_transfer_split(shop, category, keep=keep, seed=0)
    kept = {p for p in _pairs(split.dataset) if p[1] in members}
    assert len(in_cat) == split.report["category_pairs"]
    assert len(kept) == split.report["kept_pairs"] == int(keep * len(in_cat) + 0.5)
    assert kept <= in_cat


@pytest.mark.parametrize(("support", "min_query", "max_query"), [(10, 5, None), (3, 2, 4)])
def test_tasks_have_the_asked_support_and_query(shop: Dataset, category: str, support: int,
                                                min_query: int, max_query: int | None) -> None:
    split = category_transfer_split(shop, category, seed=0, support_size=support,
                                    min_query=min_query, max_query=max_query)
    tasks = split.dataset.tasks[SCENARIO]
    assert tasks
    for t in tasks:
        assert len(t.support) == support
        assert len(t.query) >= min_query
        assert max_query is None or len(t.query) <= max_query
    assert split.report["support_ratings"] == support * len(tasks)
    assert split.report["removed_pairs"] == (split.report["support_ratings"]
                                             + split.report["query_ratings"]
                                             + split.report["dropped_pairs"])


def _multi(shop: Dataset) -> Dataset:
    """The shop with a multi-valued category column: ``category|department``."""
    items = shop.items.copy()
    items["category"] = items["category"] + "|" + items["department"]
    columns = dict(shop.spec.items.columns)
    columns["category"] = ColumnSpec("category", "multi", sep="|", node="Category")
    spec = dataclasses.replace(shop.spec,
                               items=dataclasses.replace(shop.spec.items, columns=columns))
    return dataclasses.replace(shop, spec=spec, items=items)


def test_multi_valued_item_belongs_to_each_of_its_categories(shop: Dataset,
                                                             category: str) -> None:
    multi = _multi(shop)
    assert category_items(multi, category) == category_items(shop, category)
    department = str(shop.items.loc[shop.items["category"] == category, "department"].iloc[0])
    expected = set(shop.items.index[shop.items["department"] == department].astype(str))
    assert category_items(multi, department) == expected
    split = category_transfer_split(multi, department, seed=0)
    assert leaks(split) == []


def test_unknown_category_is_a_clear_error(shop: Dataset) -> None:
    with pytest.raises(ValueError, match=r"unknown category 'apparel'.*items\.columns\."
                                         r"category"):
        category_transfer_split(shop, "apparel")


def test_a_dataset_without_category_column_is_a_clear_error(shop: Dataset) -> None:
    columns = dict(shop.spec.items.columns)
    columns["category"] = ColumnSpec("category", "categorical")  # no node
    spec = dataclasses.replace(shop.spec,
                               items=dataclasses.replace(shop.spec.items, columns=columns))
    plain = dataclasses.replace(shop, spec=spec)
    with pytest.raises(ValueError, match=r"no category column.*items\.columns\.<name>\.node"):
        category_transfer_split(plain, "phones")
    # another column can be named instead; a wrong one is named in the error
    split = category_transfer_split(plain, "Electronics", column="department", seed=0)
    assert split.column == "department" and leaks(split) == []
    with pytest.raises(ValueError, match=r"items\.columns\.colour: no such item column"):
        category_transfer_split(plain, "red", column="colour")
    with pytest.raises(ValueError, match=r"items\.columns\.price is 'numeric'"):
        category_transfer_split(plain, "1", column="price")


def test_cli_writes_the_tables(shop: Dataset, category: str, tmp_path: Path) -> None:
    from training.cli import main as cli

    data = write_dataset(shop, tmp_path / "shop")
    out = tmp_path / "ct"
    tiny = tmp_path / "tiny.toml"  # configs/quick.toml, one epoch without validation
    tiny.write_text((ROOT / "configs" / "quick.toml").read_text().replace(
        "epochs = 3", "epochs = 1").replace("validate = true", "validate = false"))
    result = CliRunner().invoke(cli, ["category-transfer", str(data), "--out", str(out),
                                      "--categories", category, "--quick", "--config",
                                      str(tiny), "--seed", "4"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "category_transfer.json").read_text())
    models = ["biased MF + fold-in", "graph-meta", "graph-meta (no graph)",
              "graph-meta (no CO_ENGAGED)"]
    assert list(summary["mean"]) == models
    assert list(summary["categories"]) == [category]
    for m in models:
        assert set(summary["mean"][m]) == {"0", "1", "3", "5", "10"}
    table = (out / "results.md").read_text()
    assert "| graph-meta (no graph) |" in table and "K=10" in table
    assert len(list((out / category.replace(" ", "_") / "results").glob("*.json"))) == 4

    seed_table = benchmark_script("seed_table")
    text = seed_table.transfer_table([out, out], "rmse", 3)
    assert "| graph-meta | " in text and "± 0.000" in text

    bad = CliRunner().invoke(cli, ["category-transfer", str(data), "--out",
                                   str(tmp_path / "bad"), "--categories", "apparel"])
    assert bad.exit_code == 2 and "unknown category 'apparel'" in bad.output


def test_default_categories_are_a_minority_with_tasks(shop: Dataset) -> None:
    from training.category_transfer import category_shares, choose_categories

    shares = category_shares(shop)
    assert set(shares) == {v for vals in shop.items["category"] for v in [vals]}
    assert choose_categories(shop, ["b", "a", "b"], 3, 15) == ["b", "a"]
    chosen = choose_categories(shop, None, 2, 15, max_share=1.0)
    assert chosen == [c for c, n in categories_by_users(shop, 15)[:2]]
    cap = shares[chosen[0]]
    small = choose_categories(shop, None, 4, 15, max_share=cap)
    assert chosen[0] in small and all(shares[c] <= cap for c in small)
    with pytest.raises(ValueError, match="no category with at most 0%"):
        choose_categories(shop, None, 2, 15, max_share=0.0)
