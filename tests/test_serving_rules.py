"""Saving the learners' serving rules: the gradient-step learners keep the step-size format
(``lr_theta`` / ``lr_head`` / ``lr_item``, what older files carry and still load), a learned
rule travels as ``rule.<role>.<kind>.*`` arrays and comes back as the same rule, and a file
with an unknown or doubled rule is an error naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_parity import _cfg, _task

from graph_meta.dataset import Dataset
from graph_meta.meta import InnerRule, LEORule, LSTMRule, ProtoRule, make_learner
from graph_meta.meta.base import rule_arrays, rule_from_arrays
from graph_meta.model import GraphMetaRecommender
from graph_meta.nn.support import support_loss, support_loss_grad
from graph_meta.serving.state import PredictorState


def test_a_gradient_step_model_saves_step_sizes_as_before(catalog: Dataset,
                                                          tmp_path: Path) -> None:
    """Meta-SGD: the fast path is unchanged (step sizes, no rule arrays); a file without rule
    arrays (every older file) serves the step sizes it carries."""
    torch.manual_seed(0)
    model = GraphMetaRecommender(_cfg("metasgd", "head+vector")).fit(catalog)
    keys = set(model.state)
    assert {"lr_theta", "lr_head", "lr_item"} <= keys
    assert not any(k.startswith("rule.") for k in keys)
    assert type(model.state.user_rule(0.1)) is InnerRule
    blob = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    assert not any(k.startswith("rule.") for k in blob["cache"])
    loaded = GraphMetaRecommender.load(tmp_path / "m.pt")
    user, support, query = _task(model, catalog, "new user with support")
    np.testing.assert_array_equal(loaded.predict(user, support, query),
                                  model.predict(user, support, query))
    # the same arrays without the net: what a file of an older version holds
    old = PredictorState.from_mapping({k: model.state[k] for k in keys})
    rule = old.user_rule(0.1)
    assert type(rule) is InnerRule
    np.testing.assert_array_equal(rule.rates["theta"], model.state.lr_theta)


@pytest.mark.parametrize(("kind", "rule_type"),
                         [("lstm", LSTMRule), ("leo", LEORule), ("proto", ProtoRule)])
def test_a_learned_rule_round_trips_through_its_arrays(kind: str, rule_type: type) -> None:
    torch.manual_seed(0)
    learner = make_learner(kind, support_loss, shapes={"theta": (4,)}, steps=2, inner_lr=0.1)
    rule = learner.serving_rule({"theta": 4, "head": 2})
    arrays = rule_arrays("user", rule)
    assert all(k.startswith(f"rule.user.{kind}.") for k in arrays)
    state = PredictorState.from_mapping({"lr_theta": np.zeros((2, 4)), **arrays})
    again = state.user_rule(0.1)  # the rule wins over step sizes
    assert type(again) is rule_type and again.steps == 2
    assert rule_from_arrays("item", state) is None
    b = {"items": np.eye(4)[:3], "y": np.array([5.0, 1.0, 3.0]), "mu": 3.0,
         "theta": np.zeros(4), "head": np.zeros(2)}
    p0 = {"theta": np.full(4, 0.1), "head": np.zeros(2)}
    for got, want in zip(again.trajectory(p0, b, support_loss_grad),
                         rule.trajectory(p0, b, support_loss_grad), strict=True):
        np.testing.assert_array_equal(got["theta"], want["theta"])
        np.testing.assert_array_equal(got["head"], p0["head"])  # not adapted


def test_unknown_or_doubled_rules_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown serving rule 'gru'"):
        rule_from_arrays("user", {"rule.user.gru.w": np.zeros(1)})
    with pytest.raises(ValueError, match="more than one user serving rule"):
        rule_from_arrays("user", {"rule.user.leo.rate": np.zeros((1, 1)),
                                  "rule.user.lstm.b": np.zeros(1)})
