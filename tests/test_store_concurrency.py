"""The embedded store under concurrent readers and a writer (issue 18, item 6).

Sixteen reader threads query candidates, neighbours and nodes while one writer adds items
(with their category and brand) and ratings. Every read must succeed, and once the writer is
done every answer must equal that of a store that took the same writes one after another.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from graph_meta.dataset import Dataset
from graph_meta.schema import CATEGORY, ITEM, USER, EdgeType
from graph_meta.store.embedded import EmbeddedGraphStore

READERS = 16
READS_PER_READER = 60
TIME_LIMIT_S = 90.0


def _writes(catalog: Dataset, n: int = 80) -> list[tuple[str, object]]:
    """A fixed list of writes: new items (category, brand) and ratings, some on new items,
    some changing an existing rating."""
    rng = np.random.default_rng(3)
    users = catalog.users.index.astype(str).to_numpy()
    items = list(catalog.items.index.astype(str))
    categories = sorted(catalog.items["category"].unique())
    brands = sorted(catalog.items["brand"].unique())
    out: list[tuple[str, object]] = []
    for k in range(n):
        if k % 2 == 0:
            new_id = f"live-item-{k:03d}"
            frame = pd.DataFrame({"category": [categories[k % len(categories)]],
                                  "brand": [brands[(3 * k) % len(brands)]],
                                  "price": [10.0 + k]}, index=pd.Index([new_id]))
            out.append(("items", frame))
            items.append(new_id)
        else:
            who = rng.choice(users, size=40).tolist()
            what = [items[j] for j in rng.integers(0, len(items), size=40)]
            ratings = rng.integers(1, 6, size=40).astype(float).tolist()
            out.append(("ratings", (who, what, ratings)))
    return out


def _apply(store: EmbeddedGraphStore, write: tuple[str, object]) -> None:
    kind, payload = write
    if kind == "items":
        store.add_items(payload)  # type: ignore[arg-type]
    else:
        store.add_ratings(*payload)  # type: ignore[misc]


def _answers(store: EmbeddedGraphStore, catalog: Dataset) -> dict[str, object]:
    users = [str(u) for u in catalog.users.index[:25]]
    items = [str(i) for i in store.node_ids(ITEM)]
    has_cat = EdgeType(ITEM, "HAS_CATEGORY", CATEGORY)
    return {
        "counts": store.counts(),
        "items": items,
        "frame": store.node_frame(ITEM).fillna(-1.0).to_dict(),  # NaN != NaN
        "candidates": [store.candidates(user_id=u, k=20) for u in users],
        "new_user": store.candidates(rated=[(items[-1], 5.0), (items[0], 4.0)], k=20),
        "raters": store.neighbors(ITEM, items, store.schema.rated, "in"),
        "history": store.neighbors(USER, users, store.schema.rated, "out", limit=7),
        "members": store.neighbors(CATEGORY, [str(c) for c in store.node_ids(CATEGORY)],
                                   has_cat, "in"),
        "csr": store.csr(store.schema.rated, "in").indptr.tolist(),
    }


def test_sixteen_readers_and_a_writer(catalog: Dataset) -> None:
    store = EmbeddedGraphStore.from_dataset(catalog)
    writes = _writes(catalog)
    users = [str(u) for u in catalog.users.index]
    base_items = [str(i) for i in catalog.items.index]
    has_cat = EdgeType(ITEM, "HAS_CATEGORY", CATEGORY)
    categories = [str(c) for c in store.node_ids(CATEGORY)]
    errors: list[str] = []
    reads = [0] * READERS
    done = threading.Event()
    start = threading.Barrier(READERS + 1)
    deadline = time.monotonic() + TIME_LIMIT_S

    def reader(r: int) -> None:
        rng = np.random.default_rng(100 + r)
        start.wait()
        while reads[r] < READS_PER_READER and time.monotonic() < deadline:
            kind = reads[r] % 6
            try:
                if kind == 0:
                    got = store.candidates(user_id=users[rng.integers(len(users))], k=20)
                    assert all(isinstance(c.item_id, str) for c in got)
                elif kind == 1:
                    known = store.node_ids(ITEM)
                    item = str(known[rng.integers(len(known))])
                    store.candidates(rated=[(item, 5.0)], k=20)
                elif kind == 2:
                    known = store.node_ids(ITEM)
                    picks = [str(known[j]) for j in rng.integers(0, len(known), size=10)]
                    for a, b, w in store.neighbors(ITEM, picks, store.schema.rated, "in",
                                                   limit=5):
                        assert a in picks and b and w is not None
                elif kind == 3:
                    store.neighbors(CATEGORY, categories, has_cat, "in")
                elif kind == 4:
                    assert store.has_node(ITEM, base_items[rng.integers(len(base_items))])
                    pos = store.node_index(ITEM, base_items[:20])
                    assert (pos >= 0).all()
                    store.counts()
                else:
                    store.neighborhood(USER, users[rng.integers(len(users))], hops=2,
                                       fanout=5)
            except Exception as exc:
                errors.append(f"reader {r} op {kind}: {type(exc).__name__}: {exc}")
            reads[r] += 1

    def writer() -> None:
        start.wait()
        try:
            for w in writes:
                _apply(store, w)
                time.sleep(0.001)
        except Exception as exc:
            errors.append(f"writer: {type(exc).__name__}: {exc}")
        done.set()

    threads = [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIME_LIMIT_S + 30)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert done.is_set()
    assert errors == [], f"{len(errors)} of {sum(reads)} reads failed: {errors[:5]}"
    assert sum(reads) >= READERS * 10

    serial = EmbeddedGraphStore.from_dataset(catalog)
    for w in writes:
        _apply(serial, w)
    got, want = _answers(store, catalog), _answers(serial, catalog)
    for key in want:
        assert got[key] == want[key], key
