"""Validated configuration of :class:`graph_meta.model.GraphMetaRecommender`, from TOML.

A config has four sections, each a dataclass: ``[model]`` (:class:`ModelConfig`),
``[meta]`` (:class:`MetaConfig`), ``[episodes]`` (:class:`EpisodeConfig`) and ``[train]``
(:class:`TrainConfig`). :func:`load_config` reads a TOML file with :mod:`tomllib`; an
unknown section or key, a value of the wrong type or outside its range raises
:class:`ConfigError` naming the key (``"meta.inner_steps: must be >= 0, got -1"``).
Missing keys keep their defaults. ``Config.to_dict`` / ``Config.from_dict`` round-trip
through JSON (saved next to every checkpoint).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph_meta.meta import learner_names
from graph_meta.nn.convs import conv_names

__all__ = ["DEFAULT_FANOUT", "Config", "ConfigError", "EpisodeConfig", "MetaConfig",
           "ModelConfig", "TrainConfig", "load_config"]

DEFAULT_FANOUT = 20  # train.fanouts = []: in-edges kept per node and edge type at every hop


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


@dataclass
class ModelConfig:
    """Backbone and encoder."""

    dim: int = 8                  # d: size of the user/item vectors (state = 1 + d)
    hidden: int = 64              # encoder width H
    layers: int = 2               # message-passing rounds
    conv: str = "sage"            # graph_meta.nn.convs.conv_names(): "sage" | "hgt"
    heads: int = 2                # HGT heads
    use_graph: bool = True        # ablation "no graph": prior from features only
    use_co_engaged: bool = True   # ablation "no CO_ENGAGED"
    # relation files: user-user / item-item ones (priors, messages, links) and those reaching
    # the items' values two hops away (a brand's maker: prior, path block)
    use_relations: bool = True
    use_text: bool = True
    prior_mlp: int = 64
    dropout: float = 0.2
    min_attr_degree: int = 2      # attribute nodes seen fewer times share an id embedding
    text_dim: int = 256
    prior_gate: bool = True       # GNN prior correction scaled by a learned gate starting at 0
    neighbor_k: int = 200         # attribute-path neighbours kept per item (0: no correction)
    neighbor_power: float = 2.0   # p: neighbour weights s^p
    neighbor_shrink: float = 1.0  # beta: correction = sum s^p e / (beta + sum s^p)
    neighbor_rated_weight: float = 1.0  # weight of the co-rating neighbours (0: attributes only)
    # added to the path similarity of two items an item-item relation file links (a model and
    # its successor): their user's residuals carry over (0: relation links not in the lists)
    neighbor_relation_weight: float = 0.5
    # the path types' weights in the attribute-path lists: "auto" chosen on the carved
    # validation (graph_meta.fitting.path_weights); "equal": every attribute type 1, no
    # CO_ENGAGED paths and no paths through a relation file between attribute nodes
    path_weights: str = "auto"
    regression_l2: float = 300.0  # ridge of the learned co-rating residual regression (0: off)
    # "auto": exact (EASE) up to regression_exact_max rated items, one ridge per item over its
    # co-rating neighbours past it; "exact" | "local": always that one
    regression_solver: str = "auto"
    # "auto"'s limit: the exact solve holds one float64 [R, R] (1.8 GB at 15,000) and costs
    # O(R^3) time (about 80 s at 14,000 on one core); the local one is linear in the items
    regression_exact_max: int = 15_000
    # the users' history sums (one float64 D x D per user, D = 1 + dim: 0.65 GB at 1M users
    # with dim 8, 2.3 GB with 16) are kept when they take at most this many GB, else
    # computed from the histories when read
    history_sums_max_gb: float = 4.0
    collab_inputs: bool = False   # warm items' learned states enter message passing (DropoutNet)
    live_precision: float = 0.0   # item precision scale of live updates (0: chosen at fit)
    live_warm_items: bool = True  # ... also update items that had training ratings

    def relation_link_weight(self) -> float:
        """The weight item-item relation links get in the attribute-path lists
        (``neighbor_relation_weight``; 0 with ``use_relations = false``)."""
        return self.neighbor_relation_weight if self.use_relations else 0.0

    def check(self) -> None:
        _positive(self, "model", "dim", "hidden", "heads", "prior_mlp", "text_dim",
                  "neighbor_power", "neighbor_shrink")
        _at_least(self, "model", "layers", 0)
        _at_least(self, "model", "neighbor_k", 0)
        _at_least(self, "model", "regression_exact_max", 0)
        if not self.history_sums_max_gb >= 0:
            raise ConfigError(f"model.history_sums_max_gb: must be >= 0 (0: never kept), "
                              f"got {self.history_sums_max_gb!r}")
        if not self.live_precision >= 0:
            raise ConfigError(f"model.live_precision: must be >= 0 (0: chosen at fit time), "
                              f"got {self.live_precision!r}")
        for key in ("neighbor_rated_weight", "neighbor_relation_weight", "regression_l2"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key}: must be >= 0, got {getattr(self, key)}")
        _at_least(self, "model", "min_attr_degree", 1)
        _choice(self, "model", "conv", conv_names())
        _choice(self, "model", "regression_solver", ("auto", "exact", "local"))
        _choice(self, "model", "path_weights", ("auto", "equal"))
        _unit(self, "model", "dropout")


@dataclass
class MetaConfig:
    """The inner loop (what adapts, how) and the meta-learner."""

    learner: str = "metasgd"      # graph_meta.meta.learner_names(): "metasgd" | "maml" |
    #                               "fomaml" | "reptile" | "lstm" | "leo" | "proto" | "none"
    inner_steps: int = 2
    inner_lr: float = 0.05
    first_order: bool = False     # Meta-SGD without second-order terms
    multi_step_loss: bool = False  # MAML++: average the query loss over every step
    adapt: str = "head+vector"    # "vector" | "head" | "head+vector"
    ridge_on_support: bool = True  # the start point folds the support in (closed form)
    init_precision: float = 10.0  # initial ridge precision of the user state (and ALS reg)
    init_precision_bias: float = 0.0  # the same for the bias coordinate (0: init_precision)
    support_shrink: float = 5.0   # kappa: inner loss = sum of K squared errors / (K + kappa)
    learn_precision: bool = True

    def check(self) -> None:
        _choice(self, "meta", "learner", learner_names())
        _at_least(self, "meta", "inner_steps", 0)
        _positive(self, "meta", "inner_lr", "init_precision")
        if self.init_precision_bias < 0:
            raise ConfigError("meta.init_precision_bias: must be >= 0, got "
                              f"{self.init_precision_bias}")
        if self.support_shrink < 0:
            raise ConfigError(f"meta.support_shrink: must be >= 0, got {self.support_shrink}")
        _choice(self, "meta", "adapt", ("vector", "head", "head+vector"))


@dataclass
class EpisodeConfig:
    """Meta-training episodes (:mod:`graph_meta.sampling.episodes`)."""

    query_size: int = 10
    query_fraction: float = 0.2   # training user tasks query max(Q, fraction * ratings)
    max_support: int = 90
    history_fanout: int = 256
    item_max_support: int = 90
    item_history_fanout: int = 64
    cold_item_fraction: float = 0.15
    cold_newest_bias: float = 0.0  # cold sets favour new releases: weight exp(bias * quantile)
    kind_probs: list[float] = field(default_factory=lambda: [0.35, 0.2, 0.3, 0.15])
    p_zero_shot: float = 0.05
    batch_users: int = 256
    batch_items: int = 64
    item_task_weight: float = 0.5

    def check(self) -> None:
        _positive(self, "episodes", "query_size", "max_support", "item_max_support",
                  "batch_users")
        _at_least(self, "episodes", "batch_items", 0)
        _unit(self, "episodes", "cold_item_fraction", "p_zero_shot", "query_fraction")
        if self.cold_item_fraction >= 1.0:
            raise ConfigError("episodes.cold_item_fraction: must be < 1")
        if len(self.kind_probs) != 4 or any(p < 0 for p in self.kind_probs) or \
                sum(self.kind_probs) <= 0:
            raise ConfigError("episodes.kind_probs: must be 4 non-negative numbers "
                              f"(warm, user_cold, item_cold, user_item_cold), got "
                              f"{self.kind_probs}")
        if self.item_task_weight < 0:
            raise ConfigError("episodes.item_task_weight: must be >= 0")


@dataclass
class TrainConfig:
    """Optimisation, validation, checkpoints."""

    epochs: int = 12
    lr: float = 1e-3
    meta_lr: float = 3e-3          # Adam rate of the step sizes, precision, head init and mu
    weight_decay: float = 1e-4
    item_l2: float = 1e-3          # L2 of warm item states toward their graph prior
    prior_match: float = 1.0       # weight of the prior -> warm item state regression
    als_iters: int = 20            # ALS sweeps initialising the warm item states (0: random)
    # replace meta.init_precision (ALS's precision and the fold-in's starting one) by the
    # point of graph_meta.fitting.als.PRECISION_GRID whose ALS predicts held-out ratings of
    # train.csv more than 5 % better (graph_meta.fitting.als.choose_precision); false: as given
    precision_search: bool = True
    # the warm item states re-solved once against the final user states, the bias at its
    # empirical-Bayes precision sigma^2 / tau^2 (graph_meta.fitting.als.bias_precision)
    # instead of the ALS one (meta.init_precision_bias, else meta.init_precision), which
    # over-shrinks a thinly rated item's bias; the closed-form priors keep the ALS states
    item_bias_eb: bool = True
    # with item_bias_eb: the item factors' precision in that step is their empirical-Bayes
    # one too (graph_meta.fitting.als.factor_precision, at most meta.init_precision)
    item_factor_eb: bool = False
    # with item_bias_eb and linear_prior_alpha > 0: the warm items' states the model serves
    # with are that re-solve shrunk toward their side-feature prior (item_base) instead of
    # toward 0, so a thinly rated item leans on what its brand, category, ... say
    # (graph_meta.fitting.als.rebiased_items); training keeps the states shrunk toward 0
    item_prior_target: bool = True
    # ALS sweeps of the refit, warm-started from the validation phase's item states; -1:
    # auto, a fresh start with als_iters sweeps up to auto_sample_nodes User + Item nodes
    # (movielens-1m), above it max(3, als_iters // 4) warm sweeps
    refit_als_iters: int = -1
    # task users per epoch: 0 every one; else a random subset of that many, drawn afresh each
    # epoch (bounds an epoch's time on a large catalogue; early stopping counts such epochs)
    epoch_users: int = 0
    freeze_item_emb: bool = True   # keep the warm item states as ALS (item_bias_eb) set them
    query_holdout: float = 0.2     # per epoch: ratings reserved for queries, ALS refit without
    holdout_als_iters: int = 3
    linear_prior_alpha: float = 10.0  # closed-form side-feature ridge prior under the GNN (0: off)
    user_prior_alpha: float = 30.0  # the same for users (0: linear_prior_alpha)
    prior_weight: str = "sqrt"     # ridge rows weighted by sqrt(n) | n ratings ("count")
    prior_newest_bias: float = 16.0  # item ridge rows also weighted exp(bias * release quantile)
    # "drift": the lean above only where the rated items' mean rating drifts with their
    # release order (graph_meta.fitting.priors.release_drift; else 0); "always"
    prior_lean: str = "drift"
    # choose linear_prior_alpha and prior_newest_bias by a backtest on the newest rated
    # items' ALS states (graph_meta.fitting.prior_search); off by default: on movielens-1m
    # meta-training then stops at epoch 0 and item_cold / user_item_cold lose (README)
    prior_search: bool = False
    val_epoch0: bool = True        # validate before training: 0 epochs may win (no meta-training)
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"           # "auto" | "cpu" | "cuda"
    threads: int = 0               # torch threads during fit (0 = leave as is; restored after)
    validate: bool = True          # early stopping on pseudo-tasks carved from train
    val_max_tasks: int = 500
    val_new_user_fraction: float = 0.1
    val_new_item_fraction: float = 0.1
    val_warm_task_fraction: float = 0.1
    patience: int = 3
    refit: bool = True             # retrain on all of train for the best epoch count
    max_minutes: float = 0.0       # stop training after this long (0 = no limit)
    # what a meta-batch encodes: "full" graph, "sampled" k-hop neighbourhoods of the nodes
    # whose priors it reads, or "auto": sampled above auto_sample_nodes User + Item nodes
    encode: str = "auto"
    fanouts: list[int] = field(default_factory=list)  # sampled: in-edges kept per node and
    #                               edge type at each hop, one per model.layers (-1: all);
    #                               [] = DEFAULT_FANOUT at every hop
    auto_sample_nodes: int = 50_000  # "auto" samples above this many User + Item nodes
    memory_limit_gb: float = 0.0   # refuse to train when the estimate exceeds it (0: available)

    def large(self, nodes: int) -> bool:
        """Whether a graph of ``nodes`` User + Item nodes is past ``auto_sample_nodes``,
        where the "auto" settings take their large-catalogue choices."""
        return nodes > self.auto_sample_nodes

    def sampled(self, nodes: int) -> bool:
        """Whether meta-batches encode sampled neighbourhoods (``encode``) on such a graph."""
        return self.encode == "sampled" or (self.encode == "auto" and self.large(nodes))

    def check(self) -> None:
        _positive(self, "train", "epochs", "lr", "meta_lr", "val_max_tasks")
        _at_least(self, "train", "patience", 0)
        _at_least(self, "train", "threads", 0)
        _at_least(self, "train", "als_iters", 0)
        _at_least(self, "train", "refit_als_iters", -1)
        _at_least(self, "train", "epoch_users", 0)
        _at_least(self, "train", "seed", 0)
        _choice(self, "train", "device", ("auto", "cpu", "cuda"))
        _choice(self, "train", "prior_weight", ("sqrt", "count"))
        _choice(self, "train", "prior_lean", ("drift", "always"))
        for key in ("weight_decay", "item_l2", "prior_match", "grad_clip", "max_minutes",
                    "linear_prior_alpha", "user_prior_alpha", "prior_newest_bias",
                    "memory_limit_gb"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key}: must be >= 0, got {getattr(self, key)}")
        _unit(self, "train", "query_holdout")
        _at_least(self, "train", "holdout_als_iters", 1)
        _choice(self, "train", "encode", ("auto", "full", "sampled"))
        for k, f in enumerate(self.fanouts):
            if f < 1 and f != -1:
                raise ConfigError(f"train.fanouts[{k}]: must be >= 1 (or -1: all), got {f!r}")
        _at_least(self, "train", "auto_sample_nodes", 0)
        _unit(self, "train", "val_new_user_fraction", "val_new_item_fraction",
              "val_warm_task_fraction")


@dataclass
class Config:
    """The whole configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        self.model.check()
        self.meta.check()
        self.episodes.check()
        self.train.check()
        if self.train.fanouts and len(self.train.fanouts) != self.model.layers:
            raise ConfigError(f"train.fanouts: one per model.layers ({self.model.layers}), got "
                              f"{len(self.train.fanouts)}: {self.train.fanouts}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "config") -> Config:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: must be a table of sections")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown section in {source}; expected one of "
                              f"{sorted(sections)}")
        parts = {}
        hints = typing.get_type_hints(cls)
        for name in sections:
            section_cls = hints[name]
            parts[name] = _section(section_cls, raw.get(name, {}), name)
        return cls(**parts).validate()

    def replace(self, **overrides: Any) -> Config:
        """A copy with ``{"section.key": value}`` overrides applied and validated."""
        raw = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in raw or not key:
                raise ConfigError(f"{dotted}: overrides must be 'section.key'")
            raw[section][key] = value
        return Config.from_dict(raw, source="overrides")


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read a TOML config (None: the defaults), apply ``section.key`` overrides, validate."""
    if path is None:
        cfg = Config().validate()
    else:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        cfg = Config.from_dict(raw, source=str(path))
    return cfg.replace(**overrides) if overrides else cfg


def _section(section_cls: type, raw: Any, name: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: must be a table")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    hints = typing.get_type_hints(section_cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key; expected one of {sorted(fields)}")
    values = {}
    for key, value in raw.items():
        values[key] = _coerce(value, hints[key], f"{name}.{key}")
    return section_cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {value!r}")
        return value
    if origin is list:
        (inner,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{where}: unsupported type")
    return value


def _positive(obj: Any, section: str, *keys: str) -> None:
    for key in keys:
        v = getattr(obj, key)
        if not v > 0:
            raise ConfigError(f"{section}.{key}: must be > 0, got {v!r}")


def _at_least(obj: Any, section: str, key: str, low: int) -> None:
    v = getattr(obj, key)
    if v < low:
        raise ConfigError(f"{section}.{key}: must be >= {low}, got {v!r}")


def _unit(obj: Any, section: str, *keys: str) -> None:
    for key in keys:
        v = getattr(obj, key)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{section}.{key}: must be in [0, 1], got {v!r}")


def _choice(obj: Any, section: str, key: str, options: tuple[str, ...]) -> None:
    v = getattr(obj, key)
    if v not in options:
        raise ConfigError(f"{section}.{key}: must be one of {list(options)}, got {v!r}")
