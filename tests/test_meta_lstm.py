"""The LSTM meta-learner (:mod:`graph_meta.meta.lstm`): it starts as SGD at ``inner_lr``, its
numpy serving rule equals its torch trajectory, training reaches its weights, and a model
fitted with it serves what it trained (:mod:`learner_checks`)."""

from __future__ import annotations

from pathlib import Path

import torch
from learner_checks import (
    check_fitted,
    check_gradient_reaches,
    check_rule_equals_torch,
    random_tasks,
)

from graph_meta.dataset import Dataset
from graph_meta.meta import MAML, LSTMLearner
from graph_meta.nn.support import support_loss


def test_it_starts_as_sgd_at_the_inner_rate() -> None:
    """First step SGD (to the float32 rounding of the rate's softplus parametrisation); later
    ones within the forget gate's 1 - sigmoid(8)."""
    batch = random_tasks()
    start = {"theta": batch["theta"], "head": batch["head"]}
    shapes = {"theta": (5,), "head": (2,)}
    lstm = LSTMLearner(support_loss, shapes=shapes, steps=3, init_lr=0.07).double()
    sgd = MAML(support_loss, shapes=shapes, steps=3, inner_lr=0.07)
    got = lstm.adapt_batch(start, batch, params_batched=True, return_trajectory=True)
    want = sgd.adapt_batch(start, batch, params_batched=True, return_trajectory=True)
    for name in shapes:
        torch.testing.assert_close(got[1][name], want[1][name], rtol=1e-6, atol=0)
        moved = (want[-1][name] - start[name]).abs().max()
        assert (got[-1][name] - want[-1][name]).abs().max() < 1e-3 * moved


def test_the_served_rule_is_the_torch_rule() -> None:
    check_rule_equals_torch("lstm")


def test_training_reaches_every_weight() -> None:
    check_gradient_reaches("lstm", ("w_gate", "b_gate"))


def test_a_fitted_lstm_model(catalog: Dataset, tmp_path: Path) -> None:
    check_fitted("lstm", catalog, tmp_path, moved=("w_gate",))
