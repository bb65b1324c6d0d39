"""The synthetic catalogue as implicit feedback: views, carts and purchases.

:func:`generate_implicit_catalog` uses the catalogue of :mod:`loaders.synthetic` (the same
users, product tree, brands, tastes and latent factors, the same seed giving the same tables)
and replaces stars with an event log whose every step follows the planted preference

.. math:: s_{ui} = b_u + b_i + 0.15\\,\\mathrm{clip}(\\log(C\\,\\tau_{u,c(i)}), -3, 3)
                  + p_u^\\top q_i

(the mean of the rating model without its constant: user and item bias, category taste
:math:`\\tau`, low-rank term):

* **impressions**: about ``impression_factor`` times ``n_interactions`` distinct (user, item)
  pairs drawn as the rating catalogue draws its rated pairs (a category from the user's taste,
  an item of it by popularity);
* **view**: an impression is viewed with probability :math:`\\sigma(\\beta (s_{ui} - m))`,
  :math:`m` the median planted score of the impressions (``beta`` = ``view_sharpness``):
  which items a user engages with at all follows the planted preference, low-rank term
  included;
* **cart** after a view with probability :math:`\\sigma(\\beta (s_{ui} - m) - 3)`,
  **purchase** after a cart with probability :math:`\\sigma(\\beta (s_{ui} - m) - 1.5)`.

Every viewed pair is a positive; its confidence is the sum of its events' weights (view 1,
cart 3, purchase 5 by default: :data:`loaders.implicit.DEFAULT_EVENT_WEIGHTS`), its time the
view's. The positives are split by :func:`graph_meta.eval.split.split_cold_start` exactly as the
rating catalogue (new items are the newest releases), and the dataset is written in the
implicit form (``"implicit": true``, ``weight`` = confidence in ``train.csv``, every task pair
``[item, 1]``). The raw event log (``user_id, item_id, event, timestamp``; one row per event)
comes back too, so that ``graph-meta import-csv --implicit --weight-col event --weights
view=1,cart=3,purchase=5`` can be tried on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset, Task
from graph_meta.eval.split import split_cold_start
from graph_meta.schema import DatasetSpec
from loaders import synthetic as syn
from loaders.implicit import DEFAULT_EVENT_WEIGHTS, confidences_to_weights

__all__ = ["EVENTS", "ImplicitCatalog", "generate_implicit_catalog", "planted_scores",
           "planted_segments"]

#: the event types, in funnel order
EVENTS = ("view", "cart", "purchase")


@dataclasses.dataclass
class ImplicitCatalog:
    """The dataset (implicit form), its raw event log, and the planted score of each
    positive pair (for tests and diagnostics)."""

    dataset: Dataset
    events: pd.DataFrame
    pair_scores: pd.DataFrame


def planted_scores(u: np.ndarray, i: np.ndarray, user: dict[str, np.ndarray],
                   item: dict[str, np.ndarray]) -> np.ndarray:
    """The planted preference :math:`s_{ui}` of pairs (module docstring)."""
    n_cat = user["taste"].shape[1]
    liking = np.log(n_cat * user["taste"][u, item["category"][i]])
    return (user["bias"][u] + item["bias"][i] + 0.15 * np.clip(liking, -3.0, 3.0)
            + np.einsum("ij,ij->i", user["factor"][u], item["factor"][i]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_implicit_catalog(*, n_users: int = 2000, n_items: int = 500,
                              n_interactions: int = 40000, n_departments: int = 6,
                              categories_per_department: int = 5, seed: int = 0,
                              impression_factor: float = 2.0, view_sharpness: float = 3.0,
                              weights: Mapping[str, float] | None = None,
                              new_user_fraction: float = 0.2, new_item_fraction: float = 0.2,
                              warm_task_fraction: float = 0.1,
                              name: str = "synthetic-catalog-implicit",
                              planted_graph: bool = False,
                              planted_makers: bool = False) -> ImplicitCatalog:
    """A synthetic shop's event log and its implicit dataset (module docstring).

    Args:
        n_users, n_items, n_departments, categories_per_department, seed: as
            :func:`loaders.synthetic.generate_catalog`.
        n_interactions: about how many positive (viewed) pairs to produce.
        impression_factor: impressions drawn per wanted positive (> 1).
        view_sharpness: :math:`\\beta`, how strongly the planted score drives each step.
        weights: event -> confidence weight (default view 1, cart 3, purchase 5).
        new_user_fraction, new_item_fraction, warm_task_fraction: the split's.
        name: dataset name.
        planted_graph: also plant item successors and friend circles
            (:func:`loaders.synthetic.plant_graph`: a successor's quality and factors follow
            its predecessor, a circle shares bias, category tilt and factors), written as the
            relation files ``successors.csv`` and ``friends.csv``, before the events are drawn.
        planted_makers: thin brands (``max(4 * n_departments, n_items // 4)``) grouped under
            makers whose quality offset and latent factors reach every item of their brands
            (:func:`loaders.synthetic.plant_makers`, after ``planted_graph``'s plant), the
            maker written only as the relation file ``makers.csv``
            (``(Brand)-[MADE_BY]->(Maker)``), before the events are drawn.
    """
    if not impression_factor > 1:
        raise ValueError(f"impression_factor must be > 1, got {impression_factor!r}")
    weights = dict(DEFAULT_EVENT_WEIGHTS if weights is None else weights)
    missing = [e for e in EVENTS if e not in weights]
    if missing:
        raise ValueError(f"weights lack event(s) {missing}")
    n_draw = min(round(n_interactions * impression_factor),
                 n_users * max(1, n_items // 2))
    syn._check_catalog_arguments(n_users, n_items, n_draw, n_departments,
                                 categories_per_department, None, 0.0)
    # the same streams as generate_catalog: the same seed gives the same users and items
    streams = np.random.SeedSequence([seed, syn._SEED_SALT]).spawn(5)
    rng_items, rng_users, rng_draw, rng_events, rng_time = (np.random.default_rng(s)
                                                            for s in streams)
    n_brands = syn.default_brands(n_items, n_departments, planted_makers=planted_makers)
    tax = syn._Taxonomy(n_departments, categories_per_department)
    items, item_model = syn._items(tax, n_items, n_brands, rng_items)
    users, user_model = syn._users(tax, n_users, rng_users)
    graph_relations = (syn.plant_graph(items, item_model, users, user_model, seed)
                       if planted_graph else {})
    if planted_makers:
        graph_relations["MADE_BY"] = syn.plant_makers(item_model, n_brands, seed)
    u, i = syn._draw_interactions(user_model, item_model, tax, n_draw, rng_draw)
    score = planted_scores(u, i, user_model, item_model)
    centred = view_sharpness * (score - np.median(score))
    viewed = rng_events.random(len(u)) < _sigmoid(centred)
    carted = viewed & (rng_events.random(len(u)) < _sigmoid(centred - 3.0))
    bought = carted & (rng_events.random(len(u)) < _sigmoid(centred - 1.5))
    u, i, score = u[viewed], i[viewed], score[viewed]
    carted, bought = carted[viewed], bought[viewed]
    ts = syn._timestamps(u, i, user_model, item_model, rng_time)
    order = np.argsort((ts - syn._EPOCH) * max(len(ts), 1) + np.arange(len(ts)))
    u, i, ts, score = u[order], i[order], ts[order], score[order]
    carted, bought = carted[order], bought[order]
    conf = (weights["view"] + weights["cart"] * carted + weights["purchase"] * bought)

    uid = users.index.to_numpy(dtype=object)
    iid = items.index.to_numpy(dtype=object)
    ev_u = np.concatenate([u, u[carted], u[bought]])
    ev_i = np.concatenate([i, i[carted], i[bought]])
    ev_t = np.concatenate([ts, ts[carted] + 300, ts[bought] + 3600])
    ev_e = np.repeat(np.array(EVENTS, dtype=object),
                     [len(u), int(carted.sum()), int(bought.sum())])
    ev_order = np.lexsort((ev_e == "view", ev_t))
    events = pd.DataFrame({USER_ID: uid[ev_u[ev_order]], ITEM_ID: iid[ev_i[ev_order]],
                           "event": ev_e[ev_order], TIMESTAMP: ev_t[ev_order]})

    pairs = pd.DataFrame({
        USER_ID: pd.Categorical.from_codes(u, categories=pd.Index(users.index)),
        ITEM_ID: pd.Categorical.from_codes(i, categories=pd.Index(items.index)),
        RATING: conf.astype(np.float64),  # the splitter carries the confidence
        TIMESTAMP: ts,
    })
    split = split_cold_start(pairs, new_user_fraction=new_user_fraction,
                             new_item_fraction=new_item_fraction,
                             warm_task_fraction=warm_task_fraction,
                             item_release=items["release"], seed=seed)
    relation = pd.DataFrame({
        "src": pd.Series(tax.categories, dtype=object),
        "dst": pd.Series([tax.departments[d] for d in tax.category_department], dtype=object),
        "weight": np.ones(len(tax.categories), dtype=np.float32),
    })
    stats: dict[str, Any] = {
        "generator": "loaders.synthetic_implicit.generate_implicit_catalog",
        "seed": seed, "users": n_users, "items": n_items, "impressions": len(viewed),
        "positives": len(u), "views": len(u), "carts": int(carted.sum()),
        "purchases": int(bought.sum()), "weights": weights,
        "view_sharpness": view_sharpness, **split.report,
        "new_users": len(split.new_users), "new_items": len(split.new_items),
    }
    raw_spec = syn.catalog_spec(
        name, "Synthetic shop event log (views, carts, purchases) driven by planted category "
        "tastes, brand/quality effects and latent factors (loaders.synthetic_implicit); "
        "weight = summed event weights.", stats, implicit=True)
    if planted_graph:
        syn.declare_graph(raw_spec, graph_relations)
    if planted_makers:
        syn.declare_makers(raw_spec, graph_relations["MADE_BY"], n_brands)
    spec = DatasetSpec.from_json(raw_spec, source="generate_implicit_catalog")
    raw = Dataset(spec=spec, users=users, items=items, train=split.train,
                  relations={"PART_OF": relation, **graph_relations}, tasks=split.tasks)
    dataset = confidences_to_weights(raw)
    pair_scores = pd.DataFrame({USER_ID: uid[u], ITEM_ID: iid[i], "score": score,
                                "confidence": conf})
    return ImplicitCatalog(dataset=dataset, events=events, pair_scores=pair_scores)


def planted_segments() -> Dataset:
    """A tiny implicit catalogue with one planted preference, for tests.

    Two segments of users, two categories of items: segment A takes category A items, B
    takes B. A has 15 old and 20 new items, B 60 and 60 (an A item has more users than a B
    item); new items have no training row. The tasks are segment A's: new users (user_cold:
    3 support and 5 query items) and new items (item_cold: 2 and 4), so that the top 20 can
    hold every query item while chance is about 20 / 75."""
    rng = np.random.default_rng(0)
    n_users = 200
    users = pd.DataFrame({"segment": ["A" if u % 2 == 0 else "B" for u in range(n_users)]},
                         index=pd.Index([f"u{u}" for u in range(n_users)], name=USER_ID,
                                        dtype=object))
    cats = ["A"] * 15 + ["B"] * 60 + ["A"] * 20 + ["B"] * 60
    items = pd.DataFrame({"category": cats},
                         index=pd.Index([f"i{j}" for j in range(len(cats))], name=ITEM_ID,
                                        dtype=object))
    cat = np.array(cats)
    old = np.arange(75)
    new = np.arange(75, len(cats))
    rows, tasks_uc, tasks_ic = [], [], []
    for u in range(n_users):
        seg = users["segment"].iat[u]
        mine_old = old[cat[old] == seg]
        mine_new = new[cat[new] == seg]
        take = rng.choice(mine_old, 8 if seg == "A" else 12, replace=False)
        if u < 60 and seg == "A":  # new users: their positives become a user_cold task
            tasks_uc.append(Task(f"u{u}", [(f"i{j}", 1.0) for j in take[:3]],
                                 [(f"i{j}", 1.0) for j in take[3:]]))
            continue
        rows += [(f"u{u}", f"i{j}") for j in take]
        if u < 120 and seg == "A":
            fresh = rng.choice(mine_new, 6, replace=False)
            tasks_ic.append(Task(f"u{u}", [(f"i{j}", 1.0) for j in fresh[:2]],
                                 [(f"i{j}", 1.0) for j in fresh[2:]]))
    train = pd.DataFrame(rows, columns=[USER_ID, ITEM_ID])
    train[USER_ID] = train[USER_ID].astype("category")
    train[ITEM_ID] = train[ITEM_ID].astype("category")
    train[RATING] = np.ones(len(train), dtype=np.float32)
    spec = DatasetSpec.from_json({
        "name": "planted", "rating_scale": [0, 1], "implicit": True, "train": "train.csv",
        "users": {"file": "users.csv", "id": USER_ID,
                  "columns": {"segment": {"type": "categorical"}}},
        "items": {"file": "items.csv", "id": ITEM_ID,
                  "columns": {"category": {"type": "categorical", "node": "Category"}}},
        "tasks": {"user_cold": "tasks/user_cold.jsonl", "item_cold": "tasks/item_cold.jsonl"},
    })
    return Dataset(spec=spec, users=users, items=items, train=train,
                   tasks={"user_cold": tasks_uc, "item_cold": tasks_ic})
