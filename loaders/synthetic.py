"""A synthetic e-commerce catalog with a planted rating model, as a ready-to-write Dataset.

:func:`generate_catalog` builds the data of the demo and of every test that must run without
``../shared``: users, a two-level product tree, brands, ratings drawn from a known latent model,
then :func:`graph_meta.eval.split.split_cold_start` for the training ratings and the four cold-start
task sets. The result is a :class:`graph_meta.dataset.Dataset` for
:func:`loaders.folder.write_dataset`.

What the dataset holds:

* users: ``age_band`` (categorical) and ``region`` (categorical, node type ``Region``);
* items: ``department`` (node ``Department``), ``category`` (node ``Category``), ``brand``
  (node ``Brand``), ``price_band`` (categorical), ``price`` (numeric), ``title`` (text, e.g.
  ``"Acme phone case 42"``) and ``release`` (numeric: release day, 0 = start of the catalog);
* ``category_tree.csv``: ``(Category)-[PART_OF]->(Department)``;
* ``train.csv`` with timestamps (Unix seconds) and ``tasks/<scenario>.jsonl``; the new items
  are the newest releases.

The planted model. Each user has a taste over the categories, a Dirichlet draw around a mean
set by their ``age_band`` (named department preferences plus noise) and ``region``; the
named cross-category affinities (:data:`AFFINITIES`: phones -> phone accessories, tents ->
camping stoves, ...) couple the two categories of each pair, so a user who likes one likes the
other. Which items a user rates: a category from their taste (with a little exploration), then
an item of it by popularity (lognormal, correlated with quality). A rating is
``3.45 + user bias + item quality + brand bias + taste term + low-rank term + N(0, noise)``,
rounded and clipped to 1..5. A rating happens after the user joined and after the item's
release, within two years of ratings.

With ``planted_graph=True`` two more structures are planted that no side-information column
holds, so that only message passing over the relation files can carry them to a cold node:

* **successors** (``successors.csv``, ``(Item)-[SUCCEEDS]->(Item)``): about 40 % of the items
  are the next model of an older item of the same category (and brand where it has one);
  a successor's quality is ``0.8`` times its predecessor's plus noise, and its latent factors
  follow the predecessor's: a new model inherits how the old one was received;
* **friend circles** (``friends.csv``, ``(User)-[FRIEND_OF]->(User)``): users fall into
  circles of about 12; a circle shares a bias, a tilt of category taste and latent factors,
  and each user has 3 to 6 friends in their circle: a new user's friends carry their taste.

With ``planted_makers=True`` (:func:`plant_makers`; with ``planted_graph`` too, after it) the
item taste comes from two hops away. Brands are thin (default ``max(4 * n_departments,
n_items // 4)`` of them, about four items each), so a new item's brand has few or no rated
items. Brands are grouped under makers (``max(2, n_brands // 8)`` of them, across
departments); each maker has a quality offset ``N(0, 0.5)`` added to the bias of every item
of its brands, and a latent factor vector that makes up part of those items' factors. The
maker is written only in ``makers.csv``, ``(Brand)-[MADE_BY]->(Maker)``, and no column of
``items.csv`` holds it: a model that reads an item's own columns sees its brand, whose few
rated items say little, while the maker, pooling about eight brands' items, sits two hops
away (item -> brand -> maker) and is reachable only through the relation file.

Everything is vectorized numpy (users are processed in blocks; duplicate (user, item) draws are
redrawn until each user has their sampled number of distinct items) and deterministic by
``seed``: 100 k users / 20 k items / 2 M ratings take seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset
from graph_meta.eval.split import check_split_arguments, split_cold_start
from graph_meta.schema import SCENARIOS, DatasetSpec

log = logging.getLogger("graph_meta.synthetic")

__all__ = ["AFFINITIES", "AGE_BANDS", "DEPARTMENTS", "REGIONS", "generate_catalog"]

#: Departments, in order, with their categories: (name, product nouns, typical price).
DEPARTMENTS: tuple[tuple[str, tuple[tuple[str, tuple[str, ...], float], ...]], ...] = (
    ("Electronics", (
        ("phones", ("smartphone", "phone"), 450.0),
        ("laptops", ("laptop", "notebook"), 900.0),
        ("cameras", ("camera", "mirrorless camera"), 600.0),
        ("headphones", ("headphones", "earbuds"), 90.0),
        ("printers", ("printer", "inkjet printer"), 180.0),
        ("tvs", ("TV", "smart TV"), 700.0),
        ("tablets", ("tablet",), 350.0),
        ("game consoles", ("game console",), 400.0),
    )),
    ("Electronics Accessories", (
        ("phone accessories", ("phone case", "screen protector", "phone charger"), 20.0),
        ("laptop bags", ("laptop bag", "laptop sleeve"), 45.0),
        ("memory cards", ("memory card", "SD card"), 25.0),
        ("ink cartridges", ("ink cartridge", "toner cartridge"), 30.0),
        ("cables", ("USB cable", "HDMI cable"), 12.0),
        ("tv mounts", ("TV wall mount",), 60.0),
        ("controllers", ("game controller", "gamepad"), 55.0),
        ("power banks", ("power bank",), 35.0),
    )),
    ("Outdoors", (
        ("tents", ("tent", "backpacking tent"), 200.0),
        ("camping stoves", ("camping stove", "gas burner"), 60.0),
        ("sleeping bags", ("sleeping bag",), 90.0),
        ("hiking boots", ("hiking boots",), 140.0),
        ("backpacks", ("hiking backpack", "daypack"), 80.0),
        ("kayaks", ("kayak",), 500.0),
        ("fishing rods", ("fishing rod",), 70.0),
        ("bikes", ("mountain bike", "city bike"), 650.0),
    )),
    ("Home & Kitchen", (
        ("coffee makers", ("coffee maker", "espresso machine"), 150.0),
        ("coffee beans", ("coffee beans", "espresso roast"), 15.0),
        ("cookware", ("frying pan", "saucepan"), 50.0),
        ("knives", ("chef knife", "knife set"), 60.0),
        ("blenders", ("blender",), 80.0),
        ("bedding", ("duvet cover", "pillow"), 40.0),
        ("lamps", ("desk lamp", "floor lamp"), 45.0),
        ("vacuum cleaners", ("vacuum cleaner", "robot vacuum"), 220.0),
    )),
    ("Sports & Fitness", (
        ("running shoes", ("running shoes", "trail shoes"), 110.0),
        ("fitness trackers", ("fitness tracker", "sports watch"), 130.0),
        ("yoga mats", ("yoga mat",), 30.0),
        ("dumbbells", ("dumbbell set", "kettlebell"), 60.0),
        ("bike helmets", ("bike helmet",), 55.0),
        ("swimwear", ("swimsuit", "swim goggles"), 35.0),
        ("tennis rackets", ("tennis racket",), 120.0),
        ("protein powder", ("protein powder",), 35.0),
    )),
    ("Baby & Toys", (
        ("strollers", ("stroller", "pushchair"), 300.0),
        ("car seats", ("car seat", "booster seat"), 180.0),
        ("building blocks", ("building block set",), 40.0),
        ("board games", ("board game", "card game"), 30.0),
        ("dolls", ("doll", "dollhouse"), 25.0),
        ("puzzles", ("jigsaw puzzle",), 18.0),
        ("baby monitors", ("baby monitor",), 90.0),
        ("diapers", ("diapers pack",), 25.0),
    )),
    ("Pets", (
        ("dog food", ("dog food", "puppy kibble"), 40.0),
        ("dog toys", ("dog toy", "chew toy"), 12.0),
        ("cat food", ("cat food",), 30.0),
        ("cat litter", ("cat litter",), 18.0),
        ("aquariums", ("aquarium", "fish tank"), 120.0),
        ("fish food", ("fish food flakes",), 8.0),
        ("pet beds", ("pet bed",), 45.0),
        ("leashes", ("dog leash", "dog harness"), 20.0),
    )),
    ("Books & Media", (
        ("novels", ("novel",), 15.0),
        ("cookbooks", ("cookbook",), 25.0),
        ("travel guides", ("travel guide",), 20.0),
        ("comics", ("comic book", "graphic novel"), 15.0),
        ("vinyl records", ("vinyl record",), 28.0),
        ("video games", ("video game",), 55.0),
        ("textbooks", ("textbook",), 80.0),
        ("magazines", ("magazine subscription",), 10.0),
    )),
)

#: Planted cross-category affinities: users who like one category of a pair like the other.
#: Only the pairs whose two categories are in the generated catalog are used.
AFFINITIES: tuple[tuple[str, str], ...] = (
    ("phones", "phone accessories"),
    ("laptops", "laptop bags"),
    ("cameras", "memory cards"),
    ("printers", "ink cartridges"),
    ("tents", "camping stoves"),
    ("tents", "sleeping bags"),
    ("hiking boots", "backpacks"),
    ("coffee makers", "coffee beans"),
    ("running shoes", "fitness trackers"),
    ("strollers", "car seats"),
    ("game consoles", "controllers"),
    ("tvs", "tv mounts"),
    ("bikes", "bike helmets"),
    ("dog food", "dog toys"),
    ("cat food", "cat litter"),
    ("aquariums", "fish food"),
    ("cookbooks", "cookware"),
    ("video games", "game consoles"),
    ("phones", "power banks"),
)

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_SHARE = np.array([0.13, 0.24, 0.22, 0.18, 0.13, 0.10])
#: Named department preferences (log-scale boosts) per age band.
_AGE_TASTE: dict[str, dict[str, float]] = {
    "18-24": {"Electronics": 0.8, "Sports & Fitness": 0.5, "Books & Media": 0.4},
    "25-34": {"Baby & Toys": 0.9, "Outdoors": 0.5, "Electronics Accessories": 0.3},
    "35-44": {"Baby & Toys": 0.6, "Home & Kitchen": 0.5, "Outdoors": 0.3},
    "45-54": {"Home & Kitchen": 0.6, "Outdoors": 0.4, "Pets": 0.3},
    "55-64": {"Home & Kitchen": 0.7, "Pets": 0.5, "Books & Media": 0.3},
    "65+": {"Books & Media": 0.8, "Pets": 0.6, "Home & Kitchen": 0.4},
}
REGIONS: tuple[str, ...] = ("North", "South", "East", "West", "Central", "Coast")
_REGION_SHARE = np.array([0.2, 0.22, 0.18, 0.17, 0.13, 0.10])

_BRAND_STEMS = (
    "Acme", "Nordik", "Vela", "Orbit", "Zenith", "Lumen", "Terra", "Apex", "Nova", "Pixel",
    "Summit", "Harbor", "Cedar", "Bolt", "Aurora", "Kestrel", "Maple", "Quartz", "Ridge",
    "Solis", "Tundra", "Vireo", "Willow", "Yarrow", "Cobalt", "Fable", "Granite", "Helix",
    "Juniper", "Lark", "Meridian", "Onyx",
)
_BRAND_SUFFIXES = ("", " Labs", " Works", " Gear", " & Co", " Home", " Pro", " Outfitters")
_MODEL_SUFFIXES = ("", "", "", " Pro", " Lite", " Max", " Mini", " Plus", " Classic", " Ultra")
_PRICE_BANDS = ("budget", "mid-range", "premium", "luxury")

_EPOCH = 1_546_300_800  # 2019-01-01 00:00:00 UTC: day 0 of the catalog
_RATINGS_FROM_DAY = 3 * 365  # ratings happen in the last two years
_DAYS = _RATINGS_FROM_DAY + 2 * 365
_MEAN_RATING = 3.45
_RANK = 8
_AFFINITY_STRENGTH = 1.0
_TASTE_CONCENTRATION = 0.35  # Dirichlet concentration per category: small = peaky tastes
_EXPLORE = (0.05, 0.3, 0.6, 1.0)  # share of category draws from the global mix, per round
_ROUNDS = 10
_SEED_SALT = 0x5CA7A106
#: company-like maker names (``planted_makers``): stem + suffix, numbered past 64
_MAKER_STEMS = (
    "Atlas", "Borealis", "Crestline", "Dunmore", "Everton", "Fairhaven", "Glenmark", "Halden",
    "Ironwood", "Kingsley", "Larkspur", "Merrow", "Northam", "Oakridge", "Penrose", "Redfern",
)
_MAKER_SUFFIXES = (" Group", " Holdings", " Industries", " Brands")
_MAKER_OFFSET_SD = 0.5
#: an item's factor becomes 0.6 * its maker's + 0.8 * its own (0.6² + 0.8² = 1)
_MAKER_FACTOR_SHARE, _OWN_FACTOR_SHARE = 0.6, 0.8


def generate_catalog(
    *,
    n_users: int = 2000,
    n_items: int = 500,
    n_interactions: int = 40000,
    n_departments: int = 6,
    categories_per_department: int = 5,
    n_brands: int | None = None,
    noise: float = 0.5,
    seed: int = 0,
    new_user_fraction: float = 0.2,
    new_item_fraction: float = 0.2,
    warm_task_fraction: float = 0.1,
    name: str = "synthetic-catalog",
    planted_graph: bool = False,
    planted_makers: bool = False,
    progress: bool = False,
) -> Dataset:
    """Generate a synthetic e-commerce catalog and split it into train + cold-start tasks.

    Args:
        n_users, n_items: table sizes (every user and item has a row, rated or not).
        n_interactions: distinct (user, item) ratings to draw before the split (at most half
            of ``n_users * n_items``).
        n_departments: departments (1..8 are named; more get numbered names).
        categories_per_department: categories per department (1..8 named, more numbered).
        n_brands: brands (each belongs to one department); default
            ``max(4 * n_departments, n_items // 25)``, or with ``planted_makers``
            ``max(4 * n_departments, n_items // 4)`` (thin brands, about four items each).
        noise: standard deviation of the Gaussian rating noise (>= 0).
        seed: seed of everything (non-negative int).
        new_user_fraction, new_item_fraction, warm_task_fraction: passed to
            :func:`graph_meta.eval.split.split_cold_start` (the new items are the newest releases).
        name: dataset name in ``dataset.json``.
        planted_graph: also plant item successors and friend circles (module docstring),
            written as the relation files ``successors.csv`` and ``friends.csv``.
        planted_makers: also group the brands under makers whose quality offset and latent
            factors reach every item of their brands (:func:`plant_makers`), written only as
            the relation file ``makers.csv`` (``(Brand)-[MADE_BY]->(Maker)``).
        progress: print the stages and their times to stderr.

    Returns:
        A :class:`Dataset` (``root`` None) for :func:`loaders.folder.write_dataset`.

    Raises:
        ValueError: an argument is out of range.
    """
    _check_catalog_arguments(n_users, n_items, n_interactions, n_departments,
                             categories_per_department, n_brands, noise)
    check_split_arguments(new_user_fraction, new_item_fraction, warm_task_fraction, 10, 3, 90, seed)
    clock = _Stages(progress)
    # a seed sequence of its own, so that no stream repeats one of split_cold_start's
    streams = np.random.SeedSequence([seed, _SEED_SALT]).spawn(5)
    rng_items, rng_users, rng_draw, rng_rate, rng_time = (np.random.default_rng(s)
                                                          for s in streams)
    if n_brands is None:
        n_brands = default_brands(n_items, n_departments, planted_makers=planted_makers)

    tax = _Taxonomy(n_departments, categories_per_department)
    items, item_model = _items(tax, n_items, n_brands, rng_items)
    clock.stage(f"{n_items:,} items in {len(tax.categories)} categories, {n_brands} brands")
    users, user_model = _users(tax, n_users, rng_users)
    clock.stage(f"{n_users:,} users")
    graph_relations: dict[str, pd.DataFrame] = {}
    if planted_graph:
        graph_relations = plant_graph(items, item_model, users, user_model, seed)
        clock.stage(f"{len(graph_relations['SUCCEEDS']):,} successors, "
                    f"{len(graph_relations['FRIEND_OF']):,} friendships")
    if planted_makers:
        graph_relations["MADE_BY"] = plant_makers(item_model, n_brands, seed)
        clock.stage(f"{maker_count(n_brands)} makers over "
                    f"{len(graph_relations['MADE_BY']):,} brands")
    u, i = _draw_interactions(user_model, item_model, tax, n_interactions, rng_draw)
    clock.stage(f"{len(u):,} interactions drawn")
    rating = _ratings(u, i, user_model, item_model, noise, rng_rate)
    ts = _timestamps(u, i, user_model, item_model, rng_time)
    # by time, then draw order (distinct keys: every sort gives the same order)
    order = np.argsort((ts - _EPOCH) * max(len(ts), 1) + np.arange(len(ts)))
    u, i, rating, ts = u[order], i[order], rating[order], ts[order]
    clock.stage("ratings and timestamps")

    interactions = pd.DataFrame({
        USER_ID: pd.Categorical.from_codes(u, categories=pd.Index(users.index)),
        ITEM_ID: pd.Categorical.from_codes(i, categories=pd.Index(items.index)),
        RATING: rating.astype(np.float64),
        TIMESTAMP: ts,
    })
    del u, i, rating, ts
    split = split_cold_start(
        interactions, new_user_fraction=new_user_fraction, new_item_fraction=new_item_fraction,
        warm_task_fraction=warm_task_fraction, item_release=items["release"], seed=seed)
    clock.stage("cold-start split: " + ", ".join(
        f"{s} {len(split.tasks[s])}" for s in SCENARIOS) + " tasks")

    relation = pd.DataFrame({
        "src": pd.Series(tax.categories, dtype=object),
        "dst": pd.Series([tax.departments[d] for d in tax.category_department], dtype=object),
        "weight": np.ones(len(tax.categories), dtype=np.float32),
    })
    active = [f"{a} -> {b}" for a, b in tax.affinities]
    stats: dict[str, Any] = {
        "generator": "loaders.synthetic.generate_catalog",
        "seed": seed,
        "noise": noise,
        "users": n_users,
        "items": n_items,
        "interactions": len(interactions),
        "departments": n_departments,
        "categories": len(tax.categories),
        "brands": n_brands,
        "affinities": active,
        **split.report,
        "new_users": len(split.new_users),
        "new_items": len(split.new_items),
    }
    raw_spec = catalog_spec(name, "Synthetic e-commerce catalog with planted category tastes, "
                            "cross-category affinities, brand and quality effects "
                            "(loaders.synthetic).", stats)
    if planted_graph:
        declare_graph(raw_spec, graph_relations)
    if planted_makers:
        declare_makers(raw_spec, graph_relations["MADE_BY"], n_brands)
    spec = DatasetSpec.from_json(raw_spec, source="generate_catalog")
    clock.done()
    return Dataset(spec=spec, users=users, items=items, train=split.train,
                   relations={"PART_OF": relation, **graph_relations}, tasks=split.tasks)


def catalog_spec(name: str, description: str, stats: dict[str, Any], *,
                 implicit: bool = False) -> dict[str, Any]:
    """The ``dataset.json`` of the synthetic catalogue (ratings 1..5, or implicit: scale
    [0, 1]): its users/items columns, the category tree relation and the four task files."""
    raw_spec: dict[str, Any] = {
        "name": name,
        "description": description,
        "rating_scale": [0, 1] if implicit else [1, 5],
        "train": "train.csv",
        "users": {"file": "users.csv", "id": USER_ID, "columns": {
            "age_band": {"type": "categorical"},
            "region": {"type": "categorical", "node": "Region"},
        }},
        "items": {"file": "items.csv", "id": ITEM_ID, "columns": {
            "department": {"type": "categorical", "node": "Department"},
            "category": {"type": "categorical", "node": "Category"},
            "brand": {"type": "categorical", "node": "Brand"},
            "price_band": {"type": "categorical"},
            "price": {"type": "numeric"},
            "title": {"type": "text"},
            "release": {"type": "numeric"},
        }},
        "relations": [{
            "type": "PART_OF", "file": "category_tree.csv", "src": "Category",
            "dst": "Department", "src_column": "category", "dst_column": "department",
        }],
        "tasks": {s: f"tasks/{s}.jsonl" for s in SCENARIOS},
        "stats": stats,
    }
    if implicit:
        raw_spec["implicit"] = True
    return raw_spec


def plant_graph(items: pd.DataFrame, item_model: dict[str, np.ndarray], users: pd.DataFrame,
                user_model: dict[str, np.ndarray], seed: int) -> dict[str, pd.DataFrame]:
    """Plant item successors and friend circles (module docstring) into the two models, in
    place, from a stream of their own; returns the relation frames ``{"SUCCEEDS",
    "FRIEND_OF"}`` (call before the interactions are drawn: they follow the planted
    states)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SEED_SALT, 1]))
    return {"SUCCEEDS": _plant_successors(items, item_model, rng),
            "FRIEND_OF": _plant_circles(users, user_model, rng)}


def declare_graph(raw_spec: dict[str, Any], graph_relations: dict[str, pd.DataFrame]) -> None:
    """Declare :func:`plant_graph`'s relation files (``successors.csv``, ``friends.csv``) in a
    ``dataset.json`` dict, with their edge counts in its ``stats``."""
    raw_spec["relations"] += [
        {"type": "SUCCEEDS", "file": "successors.csv", "src": "Item", "dst": "Item",
         "src_column": "item_id", "dst_column": "predecessor_id"},
        {"type": "FRIEND_OF", "file": "friends.csv", "src": "User", "dst": "User",
         "src_column": "user_id", "dst_column": "friend_id"},
    ]
    raw_spec["stats"]["planted_graph"] = {t: len(graph_relations[t])
                                          for t in ("SUCCEEDS", "FRIEND_OF")}


def default_brands(n_items: int, n_departments: int, *, planted_makers: bool = False) -> int:
    """The default brand count: ``max(4 * n_departments, n_items // 25)``, or with
    ``planted_makers`` thin brands, ``max(4 * n_departments, n_items // 4)``."""
    return max(4 * n_departments, n_items // (4 if planted_makers else 25))


def maker_count(n_brands: int) -> int:
    """Makers of ``n_brands`` brands (``planted_makers``): ``max(2, n_brands // 8)``."""
    return max(2, n_brands // 8)


def maker_names(n: int) -> list[str]:
    """``n`` distinct, deterministic company-like maker ids (``"Atlas Group"``, ...)."""
    return _compound_names(_MAKER_STEMS, _MAKER_SUFFIXES, n)


def plant_makers(item_model: dict[str, np.ndarray], n_brands: int,
                 seed: int) -> pd.DataFrame:
    """Group the brands under makers and plant each maker's taste into its items, in place
    (call before the interactions are drawn, after :func:`plant_graph` where both are on).

    From a stream of its own (``SeedSequence([seed, _SEED_SALT, 2])``): the ``n_makers =
    max(2, n_brands // 8)`` makers take the brands by a random permutation of ``b % n_makers``
    (every maker has ``n_brands // n_makers`` or one more brands; brand ``b`` belongs to
    department ``b % n_departments``, so a maker's brands span departments); maker ``m`` has
    an offset ``o_m ~ N(0, 0.5)`` and a factor vector ``f_m ~ N(0, 1)^8 * (0.25 / 8) ** 0.25``,
    the scale of the items' factors (:func:`_items`: ``0.75 * category + 0.66 * own``, unit
    variance before the same scale). An item ``j`` of a brand of maker ``m`` gets

    * ``bias_j += o_m``;
    * ``factor_j = 0.6 * f_m + 0.8 * factor_j``: no rescaling is needed, ``0.6² + 0.8² = 1``
      and ``f_m`` is independent of ``factor_j``, so each component's variance stays
      ``(0.25 / 8) ** 0.5`` (times 0.998, the items' own) and the low-rank term's spread is
      unchanged; two items of one maker now share ``0.36`` of their factor variance.

    Returns the relation frame of ``makers.csv`` (``src`` brand name, ``dst`` maker id,
    ``weight`` 1): one row per brand that has at least one item, in brand order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SEED_SALT, 2]))
    n_makers = maker_count(n_brands)
    maker_of = rng.permutation(np.arange(n_brands, dtype=np.int64) % n_makers)
    offset = rng.normal(0.0, _MAKER_OFFSET_SD, n_makers)
    maker_factor = rng.normal(0.0, 1.0, (n_makers, _RANK)) * (0.25 / _RANK) ** 0.25
    m = maker_of[item_model["brand"]]
    item_model["bias"] = item_model["bias"] + offset[m]
    item_model["factor"] = (_MAKER_FACTOR_SHARE * maker_factor[m]
                            + _OWN_FACTOR_SHARE * item_model["factor"]).astype(np.float32)
    used = np.unique(item_model["brand"])
    brands = np.asarray(_brand_names(n_brands), dtype=object)
    makers = np.asarray(maker_names(n_makers), dtype=object)
    return pd.DataFrame({"src": pd.Series(brands[used], dtype=object),
                         "dst": pd.Series(makers[maker_of[used]], dtype=object),
                         "weight": np.ones(len(used), dtype=np.float32)})


def declare_makers(raw_spec: dict[str, Any], made_by: pd.DataFrame, n_brands: int) -> None:
    """Declare :func:`plant_makers`' relation file ``makers.csv`` (``(Brand)-[MADE_BY]->
    (Maker)``; ``Maker`` is a node type only this file introduces) in a ``dataset.json``
    dict, with its counts in ``stats["planted_makers"]``."""
    raw_spec["relations"].append(
        {"type": "MADE_BY", "file": "makers.csv", "src": "Brand", "dst": "Maker",
         "src_column": "brand", "dst_column": "maker"})
    raw_spec["stats"]["planted_makers"] = {
        "makers": maker_count(n_brands),
        "makers_with_items": int(made_by["dst"].nunique()),
        "brands": n_brands,
        "brands_with_items": len(made_by),
        "offset_sd": _MAKER_OFFSET_SD,
        "factor_share": _MAKER_FACTOR_SHARE,
    }


def _plant_successors(items: pd.DataFrame, model: dict[str, np.ndarray],
                      rng: np.random.Generator) -> pd.DataFrame:
    """Make about 40 % of the items the next model of an older item of their category (same
    brand where one exists); their quality and factors follow it. Edges successor ->
    predecessor, in release order (a predecessor is settled before its successors)."""
    n = len(items)
    order = np.argsort(model["release"], kind="stable")
    bias, factor = model["bias"].copy(), model["factor"].copy()
    brand_bias = bias - 0.5 * model.get("quality", np.zeros(n))
    src, dst = [], []
    latest: dict[tuple[int, int], int] = {}
    latest_cat: dict[int, int] = {}
    for j in order.tolist():
        c, b = int(model["category"][j]), int(model["brand"][j])
        pred = latest.get((c, b), latest_cat.get(c))
        if pred is not None and rng.random() < 0.4:
            quality = 0.8 * model["quality"][pred] + 0.6 * rng.normal()
            model["quality"][j] = quality
            bias[j] = 0.5 * quality + brand_bias[j]
            factor[j] = 0.8 * factor[pred] + 0.6 * factor[j]
            src.append(j)
            dst.append(pred)
        latest[(c, b)] = j
        latest_cat[c] = j
    model["bias"], model["factor"] = bias, factor.astype(np.float32)
    ids = items.index.to_numpy(dtype=object)
    return pd.DataFrame({"src": ids[np.asarray(src, dtype=np.int64)],
                         "dst": ids[np.asarray(dst, dtype=np.int64)],
                         "weight": np.ones(len(src), dtype=np.float32)})


def _plant_circles(users: pd.DataFrame, model: dict[str, np.ndarray],
                   rng: np.random.Generator) -> pd.DataFrame:
    """Friend circles of about 12 users sharing a bias, a category-taste tilt and latent
    factors; 3 to 6 friends each, inside the circle."""
    n = len(users)
    n_circles = max(1, n // 12)
    circle = rng.integers(0, n_circles, n)
    n_cat = model["taste"].shape[1]
    tilt = np.exp(rng.normal(0.0, 1.0, (n_circles, n_cat)))
    taste = model["taste"] * tilt[circle]
    model["taste"] = taste / taste.sum(axis=1, keepdims=True)
    model["bias"] = 0.5 * model["bias"] + rng.normal(0.0, 0.4, n_circles)[circle]
    shared = rng.normal(0.0, (0.25 / _RANK) ** 0.25, (n_circles, _RANK))
    model["factor"] = (0.85 * shared[circle] + 0.5 * model["factor"]).astype(np.float32)
    members: dict[int, np.ndarray] = {}
    order = np.argsort(circle, kind="stable")
    bounds = np.searchsorted(circle[order], np.arange(n_circles + 1))
    for c in range(n_circles):
        members[c] = order[bounds[c]:bounds[c + 1]]
    src, dst = [], []
    for u in range(n):
        pool = members[int(circle[u])]
        pool = pool[pool != u]
        if not len(pool):
            continue
        k = min(len(pool), int(rng.integers(3, 7)))
        for v in rng.choice(pool, size=k, replace=False).tolist():
            src.append(u)
            dst.append(v)
    ids = users.index.to_numpy(dtype=object)
    return pd.DataFrame({"src": ids[np.asarray(src, dtype=np.int64)],
                         "dst": ids[np.asarray(dst, dtype=np.int64)],
                         "weight": np.ones(len(src), dtype=np.float32)})


# ---------------------------------------------------------------------------------------------
# the catalog


class _Taxonomy:
    """Departments, categories (flat index), product nouns, typical prices, affinity pairs."""

    def __init__(self, n_departments: int, per_department: int) -> None:
        self.departments: list[str] = []
        self.categories: list[str] = []
        self.nouns: list[tuple[str, ...]] = []
        self.base_price: list[float] = []
        self.category_department: list[int] = []
        for d in range(n_departments):
            if d < len(DEPARTMENTS):
                dept, cats = DEPARTMENTS[d]
            else:
                dept, cats = f"Department {d + 1}", ()
            self.departments.append(dept)
            for c in range(per_department):
                if c < len(cats):
                    cname, nouns, price = cats[c]
                else:
                    cname, nouns, price = f"{dept.lower()} line {c + 1}", ("product",), 50.0
                self.categories.append(cname)
                self.nouns.append(nouns)
                self.base_price.append(price)
                self.category_department.append(d)
        index = {c: k for k, c in enumerate(self.categories)}
        self.affinities = [(a, b) for a, b in AFFINITIES if a in index and b in index]
        self.pairs = np.array([(index[a], index[b]) for a, b in self.affinities],
                              dtype=np.int64).reshape(-1, 2)
        self.dept_of = np.asarray(self.category_department, dtype=np.int64)


def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _brand_names(n: int) -> list[str]:
    return _compound_names(_BRAND_STEMS, _BRAND_SUFFIXES, n)


def _compound_names(stems: tuple[str, ...], suffixes: tuple[str, ...], n: int) -> list[str]:
    """``n`` distinct names: stem + suffix, numbered once every pair is used."""
    names = []
    for k in range(n):
        name = stems[k % len(stems)] + suffixes[(k // len(stems)) % len(suffixes)]
        if k >= len(stems) * len(suffixes):
            name += f" {k // (len(stems) * len(suffixes)) + 1}"
        names.append(name)
    return names


def _items(tax: _Taxonomy, n_items: int, n_brands: int,
           rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n_cat, n_dep = len(tax.categories), len(tax.departments)
    # category sizes vary; every category gets an item while there are enough items
    weight = rng.gamma(4.0, 1.0, n_cat)
    first = rng.permutation(n_cat)[: min(n_cat, n_items)]
    rest = rng.choice(n_cat, size=n_items - len(first), p=weight / weight.sum())
    cat = rng.permutation(np.r_[first, rest]).astype(np.int64)
    dept = tax.dept_of[cat]
    # brands belong to departments (brand b to department b % n_dep); skewed brand shares
    in_dept = np.array([len(range(d, n_brands, n_dep)) for d in range(n_dep)], dtype=np.int64)
    pick = np.floor(rng.random(n_items) ** 1.7 * np.maximum(in_dept[dept], 1)).astype(np.int64)
    brand = np.where(in_dept[dept] > 0, dept + n_dep * pick,
                     rng.integers(0, n_brands, n_items))
    brand_bias = rng.normal(0.0, 0.3, n_brands)
    brand_premium = np.exp(0.25 * rng.normal(size=n_brands) + 0.3 * brand_bias)
    brand_pop = np.exp(0.6 * rng.normal(size=n_brands))
    quality = rng.normal(size=n_items)
    popularity = np.exp(0.5 * quality + 0.9 * rng.normal(size=n_items)) * brand_pop[brand]
    # release day: the catalog grows over the years; the newest items come out late
    release = np.floor(rng.uniform(0, _DAYS - 14, n_items))
    ratio = np.exp(0.35 * rng.normal(size=n_items) + 0.1 * quality) * brand_premium[brand]
    price = np.maximum(np.round(np.asarray(tax.base_price)[cat] * ratio), 2.0) - 0.01
    band = np.searchsorted(np.array([0.75, 1.25, 2.0]), ratio, side="right")
    # latent factors: items of a category are alike
    cat_factor = rng.normal(0.0, 1.0, (n_cat, _RANK))
    factor = (0.75 * cat_factor[cat] + 0.66 * rng.normal(size=(n_items, _RANK)))
    factor *= (0.25 / _RANK) ** 0.25
    ids = _ids("i", n_items)
    brands = _brand_names(n_brands)
    number = rng.integers(1, 100, n_items)
    model = rng.integers(0, len(_MODEL_SUFFIXES), n_items)
    noun_pick = rng.integers(0, 1 << 30, n_items)
    titles = [
        f"{brands[b]} {tax.nouns[c][k % len(tax.nouns[c])]} {num}{_MODEL_SUFFIXES[m]}"
        for b, c, k, num, m in zip(brand.tolist(), cat.tolist(), noun_pick.tolist(),
                                   number.tolist(), model.tolist(), strict=True)
    ]
    frame = pd.DataFrame(index=pd.Index(ids, name=ITEM_ID, dtype=object))
    frame["department"] = pd.Series(np.asarray(tax.departments, dtype=object)[dept],
                                    index=frame.index, dtype=object)
    frame["category"] = pd.Series(np.asarray(tax.categories, dtype=object)[cat],
                                  index=frame.index, dtype=object)
    frame["brand"] = pd.Series(np.asarray(brands, dtype=object)[brand], index=frame.index,
                               dtype=object)
    frame["price_band"] = pd.Series(np.asarray(_PRICE_BANDS, dtype=object)[band],
                                    index=frame.index, dtype=object)
    frame["price"] = price.astype(np.float64)
    frame["title"] = pd.Series(titles, index=frame.index, dtype=object)
    frame["release"] = release.astype(np.float64)
    model_arrays = {
        "category": cat,
        "brand": brand,
        "bias": 0.5 * quality + brand_bias[brand],
        "quality": quality,
        "popularity": popularity,
        "factor": factor.astype(np.float32),
        "release": release,
    }
    return frame, model_arrays


def _users(tax: _Taxonomy, n_users: int,
           rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n_cat = len(tax.categories)
    age = rng.choice(len(AGE_BANDS), size=n_users, p=_AGE_SHARE)
    region = rng.choice(len(REGIONS), size=n_users, p=_REGION_SHARE)
    # mean taste per (age band, region): named department boosts + random category effects
    dept_boost = np.zeros((len(AGE_BANDS), len(tax.departments)))
    for a, band in enumerate(AGE_BANDS):
        for d, dept in enumerate(tax.departments):
            dept_boost[a, d] = _AGE_TASTE[band].get(dept, 0.0)
    age_logit = dept_boost[:, tax.dept_of] + rng.normal(0.0, 0.4, (len(AGE_BANDS), n_cat))
    region_logit = rng.normal(0.0, 0.4, (len(REGIONS), n_cat))
    logit = age_logit[age] + region_logit[region]
    mean = np.exp(logit - logit.max(axis=1, keepdims=True))
    mean /= mean.sum(axis=1, keepdims=True)
    # Dirichlet around the mean: peaky, most users care about a few categories
    alpha = _TASTE_CONCENTRATION * n_cat * mean
    taste = rng.gamma(alpha) + 1e-12
    taste /= taste.sum(axis=1, keepdims=True)
    # planted affinities: each category of a pair takes on the other's taste
    if len(tax.pairs):
        a, b = tax.pairs[:, 0], tax.pairs[:, 1]
        coupled = taste.copy()
        np.add.at(coupled.T, b, _AFFINITY_STRENGTH * taste.T[a])
        np.add.at(coupled.T, a, _AFFINITY_STRENGTH * taste.T[b])
        taste = coupled / coupled.sum(axis=1, keepdims=True)
    activity = rng.lognormal(0.0, 1.0, n_users)
    join = rng.uniform(_RATINGS_FROM_DAY - 180, _DAYS - 60, n_users)
    join = np.maximum(join, _RATINGS_FROM_DAY)
    factor = rng.normal(0.0, (0.25 / _RANK) ** 0.25, (n_users, _RANK)).astype(np.float32)
    ids = _ids("u", n_users)
    frame = pd.DataFrame(index=pd.Index(ids, name=USER_ID, dtype=object))
    frame["age_band"] = pd.Series(np.asarray(AGE_BANDS, dtype=object)[age], index=frame.index,
                                  dtype=object)
    frame["region"] = pd.Series(np.asarray(REGIONS, dtype=object)[region], index=frame.index,
                                dtype=object)
    model_arrays = {
        "taste": taste,
        "bias": rng.normal(0.0, 0.45, n_users),
        "factor": factor,
        "activity": activity,
        "join": join,
    }
    return frame, model_arrays


# ---------------------------------------------------------------------------------------------
# interactions


def _draw_interactions(user: dict[str, np.ndarray], item: dict[str, np.ndarray],
                       tax: _Taxonomy, n_interactions: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs: per-user counts, then taste x popularity draws in blocks."""
    taste = user["taste"]
    n_users, n_cat = taste.shape
    n_items = len(item["category"])
    cap = max(1, n_items // 2)
    target = _user_counts(user["activity"], n_interactions, cap, rng)
    # category draw: searchsorted in the users' cumulative tastes laid end to end
    cum = np.cumsum(taste, axis=1)
    cum[:, -1] = 1.0
    # item draw: items grouped by category, cumulative popularity per category laid end to end
    by_cat = np.argsort(item["category"], kind="stable")
    cat_sorted = item["category"][by_cat]
    pop = item["popularity"][by_cat]
    cat_total = np.bincount(cat_sorted, weights=pop, minlength=n_cat)
    cat_start = np.r_[0, np.cumsum(np.bincount(cat_sorted, minlength=n_cat))]
    within = (np.cumsum(pop) - np.r_[0.0, np.cumsum(cat_total)][cat_sorted]) / np.maximum(
        cat_total[cat_sorted], 1e-300)
    last = cat_start[1:] - 1
    has = cat_start[1:] > cat_start[:-1]
    within[last[has]] = 1.0
    item_cum = cat_sorted + within
    # exploration draws follow the catalog's category mix (categories without items excluded)
    global_cum = np.cumsum(cat_total / cat_total.sum())
    global_cum[-1] = 1.0
    block = max(1, int(2_000_000 // max(target.mean(), 1.0)))
    out_u: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    for lo in range(0, n_users, block):
        hi = min(n_users, lo + block)
        bu, bi = _draw_block(lo, hi, target[lo:hi], cum[lo:hi], item_cum, by_cat, cat_start,
                             has, global_cum, n_items, rng)
        out_u.append(bu)
        out_i.append(bi)
    u = np.concatenate(out_u) if out_u else np.zeros(0, dtype=np.int32)
    i = np.concatenate(out_i) if out_i else np.zeros(0, dtype=np.int32)
    if len(u) < n_interactions:
        log.warning("synthetic: drew %d of the %d interactions asked for (users saturated)",
                    len(u), n_interactions)
    return u, i


def _user_counts(activity: np.ndarray, total: int, cap: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Distinct items per user: heavy-tailed, at most ``cap``, summing to ``total``."""
    n = len(activity)
    counts = np.zeros(n, dtype=np.int64)
    if total >= n:
        counts += 1
    left = total - int(counts.sum())
    weight = activity.copy()
    while left > 0:
        room = counts < cap
        w = np.where(room, weight, 0.0)
        if not w.sum() > 0:
            break
        add = rng.multinomial(left, w / w.sum())
        counts = np.minimum(counts + add, cap)
        left = total - int(counts.sum())
    return counts


def _draw_block(lo: int, hi: int, target: np.ndarray, cum: np.ndarray, item_cum: np.ndarray,
                by_cat: np.ndarray, cat_start: np.ndarray, has: np.ndarray,
                global_cum: np.ndarray, n_items: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_users, n_cat = cum.shape
    flat = (cum + np.arange(n_users)[:, None]).ravel()
    have_u = np.zeros(0, dtype=np.int64)
    have_i = np.zeros(0, dtype=np.int64)
    have = np.zeros(n_users, dtype=np.int64)
    for rnd in range(_ROUNDS):
        need = target - have
        if not (need > 0).any():
            break
        extra = 1.15 if rnd == 0 else 1.0 + rnd
        m = np.where(need > 0, np.ceil(need * extra).astype(np.int64) + 1, 0)
        du = np.repeat(np.arange(n_users, dtype=np.int64), m)
        k = len(du)
        explore = _EXPLORE[min(rnd, len(_EXPLORE) - 1)]
        from_taste = rng.random(k) >= explore
        r = rng.random(k)
        cat = np.searchsorted(global_cum, r, side="right")
        t = du[from_taste]
        pos = np.searchsorted(flat, t + r[from_taste], side="right")
        cat[from_taste] = np.clip(pos - t * n_cat, 0, n_cat - 1)
        cat = np.minimum(cat, n_cat - 1)
        # a category without items (tiny catalogs): fall back to the catalog mix
        empty = ~has[cat]
        if empty.any():
            cat[empty] = np.minimum(
                np.searchsorted(global_cum, rng.random(int(empty.sum())), side="right"),
                n_cat - 1)
        r2 = rng.random(k)
        pos = np.searchsorted(item_cum, cat + r2, side="right")
        pos = np.clip(pos, cat_start[cat], cat_start[cat + 1] - 1)
        di = by_cat[pos]
        if rnd >= len(_EXPLORE):  # late rounds: any item, uniformly, so every user fills up
            di = rng.integers(0, n_items, k)
        all_u = np.r_[have_u, du]
        all_i = np.r_[have_i, di]
        fresh = ~pd.Series(all_u * n_items + all_i).duplicated().to_numpy()
        all_u, all_i = all_u[fresh], all_i[fresh]
        order = np.argsort(all_u, kind="stable")  # keeps earlier draws first within a user
        all_u, all_i = all_u[order], all_i[order]
        starts = np.r_[0, np.cumsum(np.bincount(all_u, minlength=n_users))[:-1]]
        rank = np.arange(len(all_u)) - starts[all_u]
        keep = rank < target[all_u]
        have_u, have_i = all_u[keep], all_i[keep]
        have = np.bincount(have_u, minlength=n_users)
    return (have_u + lo).astype(np.int32), have_i.astype(np.int32)


def _ratings(u: np.ndarray, i: np.ndarray, user: dict[str, np.ndarray],
             item: dict[str, np.ndarray], noise: float,
             rng: np.random.Generator) -> np.ndarray:
    """1..5 ratings from the planted model (computed in blocks to bound memory)."""
    n = len(u)
    n_cat = user["taste"].shape[1]
    out = np.empty(n, dtype=np.float32)
    step = 1_000_000
    for a in range(0, n, step):
        b = min(n, a + step)
        uu, ii = u[a:b], i[a:b]
        liking = np.log(n_cat * user["taste"][uu, item["category"][ii]])
        score = (_MEAN_RATING + user["bias"][uu] + item["bias"][ii]
                 + 0.15 * np.clip(liking, -3.0, 3.0)
                 + np.einsum("ij,ij->i", user["factor"][uu], item["factor"][ii])
                 + rng.normal(0.0, noise, b - a))
        out[a:b] = np.clip(np.rint(score), 1.0, 5.0)
    return out


def _timestamps(u: np.ndarray, i: np.ndarray, user: dict[str, np.ndarray],
                item: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unix seconds: after the user joined and after the item's release, before the end."""
    start = np.maximum(user["join"][u], item["release"][i])
    day = start + (_DAYS - start) * rng.random(len(u))
    return (_EPOCH + np.floor(day * 86400.0)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# helpers


def _check_catalog_arguments(n_users: int, n_items: int, n_interactions: int,
                             n_departments: int, per_department: int, n_brands: int | None,
                             noise: float) -> None:
    for name, value in (("n_users", n_users), ("n_items", n_items),
                        ("n_interactions", n_interactions), ("n_departments", n_departments),
                        ("categories_per_department", per_department)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if n_brands is not None and (isinstance(n_brands, bool)
                                 or not isinstance(n_brands, int | np.integer) or n_brands < 1):
        raise ValueError(f"n_brands must be an integer >= 1 or None, got {n_brands!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not (
            np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    cap = max(1, n_items // 2)
    if n_interactions > n_users * cap:
        raise ValueError(f"n_interactions ({n_interactions}) must be at most n_users * "
                         f"max(1, n_items // 2) = {n_users * cap}: each user rates at most "
                         "half of the items")


class _Stages:
    """Prints each stage and its time to stderr when ``progress``; always logs at DEBUG."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.t0 = self.last = time.perf_counter()

    def stage(self, what: str) -> None:
        now = time.perf_counter()
        line = f"synthetic catalog: {what} ({now - self.last:.1f} s)"
        self.last = now
        log.debug(line)
        if self.progress:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        self.stage(f"done in {time.perf_counter() - self.t0:.1f} s")
