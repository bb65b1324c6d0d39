"""The implicit-feedback parts of the command line (``training.cli`` calls these):
``make-implicit``, ``synth --implicit`` and ``evaluate`` on an implicit folder."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from graph_meta.dataset import Dataset
from graph_meta.errors import GraphMetaError

#: the file of a run directory that holds graph-meta's implicit model
IMPLICIT_MODEL = "implicit_model.pkl"


def make_implicit_folder(source: Path, out: Path, *, min_rating: float, name: str | None,
                         overwrite: bool, echo: Callable[[str], None]) -> Path:
    """Read the rating folder ``source``, derive its implicit dataset, write ``out``."""
    from loaders.folder import check_output_folder, read_dataset, write_dataset
    from loaders.implicit import make_implicit

    check_output_folder(out, overwrite=overwrite)
    t0 = time.perf_counter()
    data = make_implicit(read_dataset(source), min_rating=min_rating, name=name)
    write_dataset(data, out, overwrite=overwrite)
    read_dataset(out)  # what was written reads back (the folder reader validates it)
    stats = data.spec.stats["implicit"]
    echo(f"wrote {out}: {stats['train_positives']:,} training positives of "
         f"{stats['train_rows']:,} ratings (>= {min_rating:g}); "
         + ", ".join(f"{s} {len(t)} tasks ({stats[f'{s}_tasks_empty_support']} with K = 0, "
                     f"{stats[f'{s}_tasks_dropped_no_query_positive']} dropped)"
                     for s, t in data.tasks.items())
         + f"; {stats['train_items_without_positive']} items and "
           f"{stats['train_users_without_positive']} users lost their training rows "
           f"({time.perf_counter() - t0:.1f} s)")
    return out


def synth_implicit(*, n_users: int, n_items: int, n_interactions: int, seed: int,
                   new_user_fraction: float, new_item_fraction: float, out: Path,
                   overwrite: bool, planted_graph: bool, events_path: Path | None,
                   echo: Callable[[str], None], planted_makers: bool = False) -> Path:
    """``graph-meta synth --implicit``: the event-log catalogue as an implicit folder."""
    from loaders.folder import write_dataset
    from loaders.synthetic_implicit import generate_implicit_catalog

    t0 = time.perf_counter()
    cat = generate_implicit_catalog(n_users=n_users, n_items=n_items,
                                    n_interactions=n_interactions, seed=seed,
                                    new_user_fraction=new_user_fraction,
                                    new_item_fraction=new_item_fraction,
                                    planted_graph=planted_graph,
                                    planted_makers=planted_makers)
    write_dataset(cat.dataset, out, overwrite=overwrite)
    if events_path is not None:
        events_path.parent.mkdir(parents=True, exist_ok=True)
        cat.events.to_csv(events_path, index=False)
    st = cat.dataset.spec.stats
    echo(f"wrote {out} ({len(cat.dataset.train)} training positives from {st['views']} views, "
         f"{st['carts']} carts, {st['purchases']} purchases; "
         + ", ".join(f"{s}: {len(t)} tasks" for s, t in cat.dataset.tasks.items())
         + (f"; events in {events_path}" if events_path is not None else "")
         + f") in {time.perf_counter() - t0:.1f} s")
    return out


def evaluate_implicit_run(data: Dataset, run_dir: Path, out: Path,
                          support_k: Sequence[int | None], *, online: bool,
                          echo: Callable[[str], None],
                          prepare: Callable[[Any], None] | None = None) -> None:
    """``graph-meta evaluate`` on an implicit folder: the run's model ranks the candidate
    pools (its ``score_items``, or a rating model's predictions with the support rated 1);
    ``prepare(model)`` runs first (the command line's: the items newer than the model are
    added in memory). ``online``: PROTOCOL.md's online replay instead
    (:func:`graph_meta.eval.ranking.evaluate_implicit_online`; whole supports, so
    ``support_k`` is not used)."""
    from graph_meta.eval.protocol import write_results
    from graph_meta.eval.ranking import evaluate_implicit, evaluate_implicit_online, ranking_table

    model = load_run_model(run_dir)
    if prepare is not None:
        prepare(model)
    if online:
        results = evaluate_implicit_online(model, data, fit=False, progress=True)
    else:
        results = evaluate_implicit(model, data, support_k=support_k, fit=False,
                                    progress=True)
    write_results(results, out)
    echo(ranking_table([results]))
    echo(f"wrote {out}")


def load_run_model(run_dir: Path):
    """The run's model: graph-meta's implicit model where the run holds one, else the
    rating model (``model.pt``)."""
    implicit_path = run_dir / IMPLICIT_MODEL
    if implicit_path.is_file():
        from graph_meta.implicit import GraphMetaImplicit

        return GraphMetaImplicit.load(implicit_path)
    from graph_meta.model import GraphMetaRecommender

    model_path = run_dir / "model.pt"
    if not model_path.is_file():
        raise GraphMetaError(f"{model_path} not found: train first (graph-meta train)")
    return GraphMetaRecommender.load(model_path)


def train_implicit_run(data: Dataset, out: Path, *, quick: bool, seed: int,
                       echo: Callable[[str], None]) -> Path:
    """``graph-meta train`` on an implicit folder: graph-meta's implicit model
    (:class:`graph_meta.implicit.GraphMetaImplicit`, tuned on pseudo-tasks carved from
    train) saved as ``OUT/implicit_model.pkl``."""
    import json

    from graph_meta.eval.protocol import training_view
    from graph_meta.implicit import GraphMetaImplicit

    t0 = time.perf_counter()
    model = GraphMetaImplicit(quick=quick, seed=seed).fit(training_view(data))
    path = model.save(out / IMPLICIT_MODEL)
    info = {k: v for k, v in model.params.items() if "grid" not in k}
    echo(json.dumps(info, default=str))
    echo(f"implicit model trained in {time.perf_counter() - t0:.1f} s, saved in {path}")
    return path
