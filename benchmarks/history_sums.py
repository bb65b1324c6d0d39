"""The users' history sums read from the saved ``[N_U, D, D]`` array against computed from
the histories (``model.history_sums_max_gb``): one user's sums and the fold-ins of all users,
on a saved model.

Usage::

    python benchmarks/history_sums.py RUN/model.pt [--users 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graph_meta.model import GraphMetaRecommender
from graph_meta.serving.state import history_fold_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--users", type=int, default=2000, help="users read one at a time")
    args = parser.parse_args()
    state = GraphMetaRecommender.load(args.model).state
    if state.hist_a is None:
        raise SystemExit(f"{args.model}: its history sums are not kept; nothing to compare")
    users = np.random.default_rng(0).integers(0, len(state.hist_c), args.users)
    timings = {}
    for mode in ("kept", "computed"):
        if mode == "computed":
            kept_a = state.hist_a
            state.hist_states, state.hist_a = state.item_states.copy(), None
        t0 = time.perf_counter()
        rows = [state.history_grams(np.array([u]))[0] for u in users]
        t1 = time.perf_counter()
        fold = history_fold_in(state)
        t2 = time.perf_counter()
        timings[mode] = (rows, fold, 1e6 * (t1 - t0) / len(users), t2 - t1)
    (rows_k, fold_k, one_k, all_k), (rows_c, fold_c, one_c, all_c) = timings.values()
    print(f"{len(state.hist_c):,} users, {len(state.hist_items):,} ratings; the sums "
          f"{kept_a.nbytes / 1e9:.3f} GB kept, the fit's item states "
          f"{state.hist_states.nbytes / 1e9:.4f} GB instead")
    print(f"one user's sums: read {one_k:.1f} us, computed {one_c:.1f} us")
    print(f"fold-ins of all users: kept {all_k:.2f} s, computed {all_c:.2f} s")
    sums = max(np.abs(a - b).max() for a, b in zip(rows_k, rows_c, strict=True))
    print(f"largest difference: sums {sums:.2e}, fold-ins {np.abs(fold_k - fold_c).max():.2e}")


if __name__ == "__main__":
    main()
