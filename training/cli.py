"""The ``graph-meta`` command line.

The group and the commands that train, evaluate and serve: ``candidates``, ``train``,
``evaluate``, ``ingest-ratings``, ``add-items``, ``benchmark``, ``category-transfer``,
``recommend``, ``audience``, ``demo``; the commands that make and inspect dataset folders
(``synth``, ``import-movielens``, ``import-csv``, ``make-implicit``, ``validate``, ``stats``,
``ingest``) live in :mod:`training.data_cli`. Data errors
are printed as one line naming file, line and field, with exit code 2. ``--store neo4j``
reads the graph from a Neo4j server whose address comes from ``--neo4j-uri``/``NEO4J_URI``
and whose password only ever comes from ``NEO4J_PASSWORD``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import click

from graph_meta.errors import GraphMetaError
from training.cli_options import fail, open_store, store_options
from training.data_cli import DATA_COMMANDS


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (GraphMetaError, ValueError, KeyError) as exc:
            fail(exc)
        except Exception as exc:
            if type(exc).__module__.partition(".")[0] != "neo4j":  # the driver's own errors
                raise
            fail(exc)


@click.group(cls=_Group)
@click.version_option(package_name="graph-meta")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """graph-meta: graph-based meta-learning recommendations for cold start."""
    # PyG imports torch.jit.script, deprecated in this torch; not the user's concern
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated",
                            category=FutureWarning)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # the Neo4j driver logs retries and lost connections: we report one line
        logging.getLogger("neo4j").setLevel(logging.CRITICAL)


for _command in DATA_COMMANDS:
    main.add_command(_command)


def _parse_rated(values: tuple[str, ...]) -> list[tuple[str, float]]:
    out = []
    for value in values:
        item, sep, rating = value.rpartition(":")
        try:
            out.append((item, float(rating)))
        except ValueError:
            sep = ""
        if not sep or not item:
            raise click.BadParameter(f"{value!r}: expected ITEM:RATING", param_hint="--rated")
    return out


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path), required=False)
@store_options
@click.option("--user", "user_id", default=None, help="An existing user's id.")
@click.option("--rated", multiple=True, metavar="ITEM:RATING",
              help="A new user's ratings (repeatable).")
@click.option("--positive", "positives", multiple=True, metavar="ITEM",
              help="Implicit dataset: an item a new user took (viewed, bought, ...); "
                   "repeatable.")
@click.option("-k", default=20, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
def candidates(dataset: Path | None, store_kind: str, neo4j_uri: str | None, neo4j_user: str,
               user_id: str | None, rated: tuple[str, ...], positives: tuple[str, ...], k: int,
               as_json: bool) -> None:
    """Items to consider for a user, each with its score and the graph path that found it."""
    pairs = _parse_rated(rated)
    with open_store(dataset, store_kind, neo4j_uri, neo4j_user) as store:
        pairs += _positive_pairs(store.spec, rated, positives)
        try:
            found = store.candidates(user_id=user_id, rated=pairs, k=k)
        except (KeyError, ValueError) as exc:
            fail(exc)
    if as_json:
        click.echo(json.dumps([{"item_id": c.item_id, "score": c.score, "reason": c.reason,
                                "path": [list(p) for p in c.path]} for c in found], indent=2))
        return
    for rank, c in enumerate(found, 1):
        path = " -> ".join(f"{label}:{node}" for label, node in c.path)
        click.echo(f"{rank:>3}. {c.item_id:<16}{c.score:>10.3f}  {c.reason:<15}{path}")


def _positive_pairs(spec, rated: tuple[str, ...],
                    positives: tuple[str, ...]) -> list[tuple[str, float]]:
    """``--positive`` items as the graph's candidate seeds (rated at the top of the scale,
    as every implicit positive is); ``--rated`` on an implicit dataset and ``--positive`` on
    a rating one are usage errors naming the option."""
    if spec.implicit and rated:
        raise click.UsageError(f"--rated: {spec.name} holds implicit feedback (no ratings); "
                               "give the items the user took as --positive ITEM")
    if positives and not spec.implicit:
        raise click.UsageError(f"--positive: {spec.name} holds ratings; give them as "
                               "--rated ITEM:RATING")
    return [(str(i), spec.rating_scale[1]) for i in positives]


def _parse_k(value: str) -> list[int | None]:
    out: list[int | None] = []
    for part in value.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise click.BadParameter(f"{part!r}: expected integers or 'all'",
                                     param_hint="--support-k")
    return out


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config (default: built-in defaults).")
@click.option("--quick", is_flag=True, help="A small, fast configuration (configs/quick.toml).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt after a kill.")
@store_options
def train(dataset: Path, config_path: Path | None, quick: bool, out: Path, device: str,
          resume: bool, store_kind: str, neo4j_uri: str | None, neo4j_user: str) -> None:
    """Meta-train graph-meta on DATASET's train.csv; checkpoints and logs in OUT.

    Data-parallel when launched by torchrun (README, "Training on several machines"):
    `torchrun --nproc_per_node=N -m training.cli train DATASET --out OUT ...`; rank 0 writes
    OUT, every rank reads DATASET (and, with --store neo4j, the same server, read-only)."""

    from graph_meta.config import load_config
    from graph_meta.model import GraphMetaRecommender

    if config_path is None and quick:
        config_path = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    from loaders.folder import read_dataset

    cfg = load_config(config_path)
    data = read_dataset(dataset)
    workers = int(os.environ.get("WORLD_SIZE") or 1)
    if data.spec.implicit and workers > 1:
        raise click.UsageError(f"{data.spec.name} holds implicit feedback: its model trains in "
                               "one process (data-parallel training is for rating datasets); "
                               "run `graph-meta train` without torchrun")
    if data.spec.implicit:  # positives only: the implicit model (graph_meta/implicit.py)
        from training.implicit_cli import train_implicit_run

        train_implicit_run(data, out, quick=quick, seed=cfg.train.seed, echo=click.echo)
        return
    model = GraphMetaRecommender(cfg)
    if store_kind == "neo4j":  # the graph comes from the server's snapshot
        from graph_meta.store.neo4j import Neo4jGraphStore

        # several workers only read (one ingest wrote the graph; none writes while training)
        with Neo4jGraphStore(data.spec, uri=neo4j_uri, user=neo4j_user,
                             read_only=workers > 1) as store:
            if store.counts().edges[store.schema.rated] == 0:
                raise click.UsageError("the Neo4j database holds no ratings: run "
                                       "`graph-meta ingest DATASET --store neo4j` first")
            model.fit(data, device=device, progress=True, log_dir=out, checkpoint_dir=out,
                      resume=resume, store=store)
    else:
        model.fit(data, device=device, progress=True, log_dir=out, checkpoint_dir=out,
                  resume=resume)
    if int(os.environ.get("RANK") or 0) != 0:
        return  # rank 0 reports and wrote the model
    click.echo(json.dumps(model.fit_info, default=str))
    click.echo(f"model saved in {out / 'model.pt'}")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory written by `graph-meta train`.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Results JSON.")
@click.option("--support-k", default="all", show_default=True,
              help="Support sizes, e.g. 0,1,3,5,10,all.")
@click.option("--online", is_flag=True,
              help="PROTOCOL.md's online replay: every task in one seeded order, each task's "
                   "support ratings (positives, on an implicit folder) observed by the model "
                   "after it is answered.")
def evaluate(dataset: Path, run_dir: Path, out: Path, support_k: str, online: bool) -> None:
    """Evaluate a trained model on DATASET's tasks exactly as PROTOCOL.md says."""
    from graph_meta.eval.protocol import evaluate as run_protocol
    from graph_meta.eval.protocol import evaluate_online, results_table, write_results
    from loaders.folder import read_dataset

    ks = _parse_k(support_k)
    data = read_dataset(dataset)
    if data.spec.implicit:  # PROTOCOL.md, "Implicit feedback": rank the candidate pools
        from training.implicit_cli import evaluate_implicit_run

        evaluate_implicit_run(data, run_dir, out, ks, online=online, echo=click.echo,
                              prepare=lambda model: _fit_to(model, data, run_dir, dataset))
        return
    model = _load_model(run_dir)
    _fit_to(model, data, run_dir, dataset)
    if online:
        results = evaluate_online(model, data, fit=False, progress=True)
    else:
        results = run_protocol(model, data, support_k=ks, fit=False, progress=True)
    write_results(results, out)
    click.echo(results_table([results]))
    click.echo(f"wrote {out}")


@main.command("ingest-ratings")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("ratings", type=click.Path(path_type=Path))
@store_options
def ingest_ratings(dataset: Path, ratings: Path, store_kind: str, neo4j_uri: str | None,
                   neo4j_user: str) -> None:
    """Add RATINGS (user_id,item_id,rating[,timestamp]) to DATASET's graph, live.

    The embedded store is built from the folder, so the ratings go into DATASET/train.csv
    (atomically; a pair already there gets the new rating); with --store neo4j they become
    RATED edges on the server and CO_LIKED / CO_ENGAGED are recomputed. Users and items must
    have rows in users.csv / items.csv. A trained model reads them at the next recommend,
    audience or evaluate, without retraining. Rerunning it changes nothing.
    """
    from loaders.folder import read_dataset
    from loaders.ratings import merge_into_train, read_new_ratings

    data = read_dataset(dataset, tasks=False)
    frame = read_new_ratings(ratings, data)
    t0 = time.perf_counter()
    if store_kind == "neo4j":
        with open_store(dataset, store_kind, neo4j_uri, neo4j_user, data=data) as store:
            stamps = frame["timestamp"].to_numpy() if "timestamp" in frame else None
            store.add_ratings(frame["user_id"].tolist(), frame["item_id"].tolist(),
                              frame["rating"].to_numpy(), stamps)
            store.refresh_derived_edges()
        click.echo(f"{len(frame)} rating(s) upserted into Neo4j in "
                   f"{time.perf_counter() - t0:.1f} s (CO_LIKED and CO_ENGAGED recomputed)")
        return
    try:
        added, changed = merge_into_train(data, frame)
    except OSError as exc:
        raise GraphMetaError(f"{dataset / data.spec.train}: cannot be rewritten "
                             f"({exc.strerror or exc})") from None
    click.echo(f"{added} new and {changed} changed rating(s) written to "
               f"{dataset / data.spec.train} in {time.perf_counter() - t0:.1f} s")


@main.command("add-items")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory written by `graph-meta train` (its model is updated).")
def add_items(dataset: Path, run_dir: Path) -> None:
    """Score the items of DATASET/items.csv added after training, without retraining (a
    rating model or an implicit one)."""
    from graph_meta.recommend import is_implicit_model
    from loaders.folder import read_dataset
    from training.implicit_cli import IMPLICIT_MODEL, load_run_model

    model = load_run_model(run_dir)
    t0 = time.perf_counter()
    try:
        added = model.add_items(read_dataset(dataset, tasks=False))
    except RuntimeError as exc:
        fail(exc)
    if not added:
        click.echo("no new items: the model already knows every item of the dataset")
        return
    if is_implicit_model(model):  # one pickle, written beside and renamed (model.save)
        path = model.save(run_dir / IMPLICIT_MODEL)
        click.echo(f"added {len(added)} item(s) in {time.perf_counter() - t0:.1f} s "
                   f"(first: {', '.join(added[:5])}); model saved in {path}")
        return
    # written beside, then renamed (tensors first: they carry the ids load() trusts), so a
    # failure leaves a loadable model
    tmp = run_dir / "model.pt.new"
    model.save(tmp)
    tmp.replace(run_dir / "model.pt")
    tmp.with_suffix(".new.json").replace(run_dir / "model.pt.json")
    click.echo(f"added {len(added)} item(s) in {time.perf_counter() - t0:.1f} s "
               f"(first: {', '.join(added[:5])}); model saved in {run_dir / 'model.pt'}")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--quick", is_flag=True, help="Small model, untuned baselines (for CI).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--support-k", default="0,1,3,5,10,all", show_default=True)
@click.option("--ablations", is_flag=True,
              help="Also train and evaluate graph-meta without the graph, without CO_ENGAGED, "
                   "without meta-learning, pretrained + fine-tuned, and with the LSTM, LEO "
                   "and prototype-attention meta-learners.")
@click.option("--online", is_flag=True,
              help="Also run PROTOCOL.md's online replay for every model (rows '... online').")
@click.option("--seed", type=int, default=None,
              help="Seed of graph-meta (train.seed), the MF and MeLU (default: the config's).")
def benchmark(dataset: Path, out: Path, config_path: Path | None, quick: bool, device: str,
              support_k: str, ablations: bool, online: bool, seed: int | None) -> None:
    """Train graph-meta, evaluate it and all baselines; JSON, markdown table and plots."""
    from graph_meta.eval.protocol import results_table
    from loaders.folder import read_dataset
    from training.benchmark import run_benchmark

    t0 = time.perf_counter()
    results = run_benchmark(read_dataset(dataset), out, config_path=config_path, quick=quick,
                            device=device, support_k=_parse_k(support_k), ablations=ablations,
                            online=online, seed=seed)
    click.echo(results_table(results))
    click.echo(f"wrote {out} in {time.perf_counter() - t0:.0f} s")


@main.command("category-transfer")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--categories", default=None, metavar="A,B,...",
              help="Categories to hold out, one at a time (default: the --top categories "
                   "with the most heavy users).")
@click.option("--top", default=3, show_default=True, type=click.IntRange(1),
              help="Without --categories: how many categories to hold out.")
@click.option("--column", default=None,
              help="The item column of the categories (default: the one with node "
                   "'Category' in dataset.json).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Seed of the split and of the models.")
@click.option("--keep", default=0.1, show_default=True, type=click.FloatRange(0, 1,
                                                                             max_open=True),
              help="Share of the held-out category's training ratings that stays.")
@click.option("--min-query", default=5, show_default=True, type=click.IntRange(1),
              help="A task user needs 10 support + this many query ratings removed.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--quick", is_flag=True,
              help="Small model (configs/quick.toml unless --config), untuned MF (for CI).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
def category_transfer(dataset: Path, out: Path, categories: str | None, top: int,
                      column: str | None, seed: int, keep: float, min_query: int,
                      config_path: Path | None, quick: bool, device: str) -> None:
    """A sparse category learning from dense ones: hold out one category at a time (it keeps
    --keep of its training ratings), its heavy users' removed ratings become tasks (K = 0, 1,
    3, 5, 10); graph-meta, no graph, no CO_ENGAGED and the tuned MF, RMSE per K."""
    from loaders.folder import read_dataset
    from training.category_transfer import run_category_transfer

    t0 = time.perf_counter()
    names = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    summary = run_category_transfer(read_dataset(dataset, tasks=False), out,
                                    categories=names, top=top, seed=seed, keep=keep,
                                    min_query=min_query, column=column, quick=quick,
                                    config_path=config_path, device=device, echo=click.echo)
    click.echo((out / "results.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {out} ({len(summary['categories'])} categories) in "
               f"{time.perf_counter() - t0:.0f} s")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path))
@click.option("--user", "user_id", default=None, help="An existing user's id.")
@click.option("--rated", multiple=True, metavar="ITEM:RATING",
              help="A new user's ratings (repeatable); none at all is the pure cold case.")
@click.option("--positive", "positives", multiple=True, metavar="ITEM",
              help="Implicit model: an item a new user took (viewed, bought, ...); "
                   "repeatable, instead of --rated.")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--pool", default=200, show_default=True, type=click.IntRange(1),
              help="Graph candidates to score.")
@click.option("--explain", is_flag=True, help="Print the graph path behind each item.")
@click.option("--json", "as_json", is_flag=True)
@store_options
def recommend(dataset: Path, run_dir: Path, user_id: str | None, rated: tuple[str, ...],
              positives: tuple[str, ...], k: int, pool: int, explain: bool, as_json: bool,
              store_kind: str, neo4j_uri: str | None, neo4j_user: str) -> None:
    """Top-k for a user: graph candidates scored by the model adapted to their ratings (an
    implicit model: to the items they took; scores shown as relevance)."""
    from graph_meta.recommend import is_implicit_model
    from graph_meta.recommend import recommend as run_recommend

    pairs = _parse_rated(rated)
    model, data = _load_model_with_dataset(run_dir, dataset)
    implicit = is_implicit_model(model)
    if implicit and rated:
        raise click.UsageError(f"--rated: {run_dir} holds an implicit model, which takes no "
                               "ratings; give the items the user took as --positive ITEM")
    if positives and not implicit:
        raise click.UsageError(f"--positive: {run_dir} holds a rating model; give the user's "
                               "ratings as --rated ITEM:RATING")
    if user_id is None and not pairs and not positives:
        click.secho(f"note: no --user and no {'--positive' if implicit else '--rated'}: the "
                    "pure cold case, popular items ranked by the model's prior", fg="yellow",
                    err=True)
    with open_store(dataset, store_kind, neo4j_uri, neo4j_user, data=data) as store:
        _observe_graph(model, store)
        top = run_recommend(store, model, user_id=user_id, rated=pairs, positives=positives,
                            k=k, pool=pool)
    _print_ranked(top, "item_id", as_json=as_json, explain=explain)


def _load_model(run_dir: Path):
    """The rating model of a run; a run that holds an implicit model instead is an error
    saying so (the commands that call this work with rating models only)."""
    from graph_meta.model import GraphMetaRecommender
    from training.implicit_cli import IMPLICIT_MODEL

    model_path = run_dir / "model.pt"
    if not model_path.is_file() and (run_dir / IMPLICIT_MODEL).is_file():
        raise GraphMetaError(f"{run_dir} holds an implicit model ({IMPLICIT_MODEL}); this "
                             "command needs a rating model (model.pt)")
    if not model_path.is_file():
        raise GraphMetaError(f"{model_path} not found: train first (graph-meta train)")
    return GraphMetaRecommender.load(model_path)


def _load_model_with_dataset(run_dir: Path, dataset: Path | None):
    """``(model, dataset read or None)``: the run's model (rating or implicit); the items of
    DATASET/items.csv that are newer than the model are added in memory
    (:meth:`GraphMetaRecommender.add_items`, :meth:`GraphMetaImplicit.add_items`) with a
    note."""
    from training.implicit_cli import load_run_model

    model = load_run_model(run_dir)
    data = None
    if dataset is not None and (dataset / "dataset.json").is_file():
        from loaders.folder import read_dataset

        data = read_dataset(dataset, tasks=False)
        _fit_to(model, data, run_dir, dataset)
    return model, data


def _fit_to(model, data, run_dir: Path, dataset: Path) -> None:
    """The run's model ready for DATASET: a clear error when it was trained on another
    catalogue (fewer than half of its items in DATASET's items.csv) or, a rating model, on
    another rating scale; else DATASET's items newer than the model added
    (:func:`_add_newer_items`)."""
    known = set(model.item_pos)
    shared = len(known & set(data.items.index.astype(str)))
    if known and shared < len(known) / 2:
        raise GraphMetaError(f"{run_dir} was trained on another catalogue: only {shared} of "
                             f"its {len(known)} items are in {dataset}'s items.csv (is --run "
                             "the model of this dataset?)")
    scale = getattr(model, "fit_info", {}).get("rating_scale")
    if scale and not data.spec.implicit and tuple(map(float, scale)) != tuple(
            map(float, data.spec.rating_scale)):
        raise GraphMetaError(f"{run_dir} was trained on ratings on [{scale[0]:g}, "
                             f"{scale[1]:g}], {dataset} is rated on "
                             f"[{data.spec.rating_scale[0]:g}, {data.spec.rating_scale[1]:g}] "
                             "(is --run the model of this dataset?)")
    _add_newer_items(model, data, dataset)


def _add_newer_items(model, data, dataset: Path) -> None:
    """Score ``data``'s items that the model has not seen (added after training); a model
    that cannot (see :meth:`GraphMetaRecommender.add_items`) goes on without them."""
    try:
        added = model.add_items(data)
    except RuntimeError as exc:
        click.secho(f"note: {dataset} has items newer than the model, left unscored: {exc}",
                    fg="yellow", err=True)
        return
    if added:
        click.secho(f"note: {len(added)} item(s) of {dataset} are newer than the model; "
                    "scored from their side features and graph paths (`graph-meta "
                    "add-items` keeps them in the run)", fg="yellow", err=True)


def _observe_graph(model, store) -> None:
    """The ratings the store holds that the model was not trained on (ingest-ratings) move
    its predictions now (:meth:`GraphMetaRecommender.observe_store`, or an implicit model's
    :meth:`~graph_meta.implicit.GraphMetaImplicit.observe_store`), with a note."""
    if not hasattr(model, "observe_store"):
        return
    n = model.observe_store(store)
    if n:
        click.secho(f"note: {n} rating(s) in the graph are newer than the model; read live "
                    "(no retraining)", fg="yellow", err=True)


def _path_text(path) -> str:
    return " -> ".join(f"{label}:{node}" for label, node in path)


def _score_field(r) -> tuple[str, float]:
    """``("predicted_rating", rating)``, or ``("relevance", score)`` for an implicit model's
    row (``predicted`` None: no rating, no scale)."""
    return ("relevance", r.score) if r.predicted is None else ("predicted_rating", r.predicted)


def _print_ranked(rows, id_field: str, *, as_json: bool, explain: bool) -> None:
    """Recommendations or audience members, as JSON or one line each; a rating model's
    scores as ``predicted 4.21``, an implicit model's as ``relevance 0.83``."""
    if as_json:
        click.echo(json.dumps([{id_field: getattr(r, id_field),
                                _score_field(r)[0]: round(_score_field(r)[1], 4),
                                "reason": r.reason,
                                "path": [list(p) for p in r.path]} for r in rows], indent=2))
        return
    for rank, r in enumerate(rows, 1):
        label = "relevance" if r.predicted is None else "predicted"
        click.echo(f"{rank:>3}. {getattr(r, id_field):<20} {label} {_score_field(r)[1]:.2f}  "
                   f"({r.reason})" + (f"  {_path_text(r.path)}" if explain else ""))


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path))
@click.option("--item", "item_id", required=True, help="The item, typically a new one.")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
@store_options
def audience(dataset: Path, run_dir: Path, item_id: str, k: int, as_json: bool,
             store_kind: str, neo4j_uri: str | None, neo4j_user: str) -> None:
    """The users an item would be recommended to, each with the graph path behind it."""
    from graph_meta.recommend import audience as run_audience

    model, data = _load_model_with_dataset(run_dir, dataset)
    with open_store(dataset, store_kind, neo4j_uri, neo4j_user, data=data) as store:
        _observe_graph(model, store)
        top = run_audience(store, model, item_id, k=k)
    _print_ranked(top, "user_id", as_json=as_json, explain=True)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the synthetic catalog (default: a temporary folder).")
@click.option("--seed", default=0, show_default=True)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config of the model (default: built-in defaults).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--wipe", is_flag=True,
              help="With --store neo4j: delete everything in the database first.")
@click.option("--implicit", is_flag=True,
              help="Implicit feedback: the shop's views, carts and purchases, graph-meta's "
                   "implicit model, recall@20 / nDCG@20, scores shown as relevance.")
@click.option("--quick", is_flag=True,
              help="A fast run: configs/quick.toml, or with --implicit the implicit model's "
                   "small grid.")
@store_options
def demo(out: Path | None, seed: int, config_path: Path | None, device: str, wipe: bool,
         implicit: bool, quick: bool, store_kind: str, neo4j_uri: str | None,
         neo4j_user: str) -> None:
    """The whole product on a synthetic shop: graph, meta-training, the four cold-start
    scenarios, a new user's top 10 with paths, a new product's audience (--implicit: the
    same on views, carts and purchases)."""
    if quick and config_path is not None:
        raise click.UsageError("--quick: give either --quick or --config, not both")
    if implicit:
        if config_path is not None:
            raise click.UsageError("--config: the implicit model (--implicit) has no config "
                                   "file; --quick makes it fast")
        if device != "auto":
            raise click.UsageError("--device: the implicit model (--implicit) runs on the "
                                   "CPU (closed forms), leave --device out")
        from training.implicit_demo import run_implicit_demo

        run_implicit_demo(click.echo, out=out, seed=seed, store_kind=store_kind,
                          neo4j_uri=neo4j_uri, neo4j_user=neo4j_user, wipe=wipe, quick=quick)
        return
    from training.demo import run_demo

    if quick:
        config_path = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    run_demo(click.echo, out=out, seed=seed, store_kind=store_kind, neo4j_uri=neo4j_uri,
             neo4j_user=neo4j_user, wipe=wipe, config_path=config_path, device=device)


if __name__ == "__main__":
    main()
