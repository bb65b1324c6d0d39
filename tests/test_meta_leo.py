"""LEO (:mod:`graph_meta.meta.leo`): the fast weights stay on the decoder's span around the
start, it is SGD when the decoder is square, its numpy serving rule equals its torch
trajectory, training reaches its weights, and a model fitted with it serves what it trained
(:mod:`learner_checks`)."""

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
from graph_meta.meta import LEO, MAML
from graph_meta.nn.support import support_loss


def test_the_adapted_state_is_decoded_from_the_latent_code() -> None:
    batch = random_tasks()
    learner = LEO(support_loss, shapes={"theta": (5,), "head": (2,)}, steps=2, latent=3,
                  init_lr=0.1).double()
    with torch.no_grad():
        learner.enc.normal_()
    start = {"theta": batch["theta"], "head": batch["head"]}
    fast = learner.adapt_batch(start, batch, params_batched=True)
    assert fast["z"].shape == (4, 3)
    moved = torch.cat([fast["theta"] - start["theta"], fast["head"] - start["head"]], -1)
    torch.testing.assert_close(moved, fast["z"] @ learner.dec.T)
    assert moved.abs().sum() > 1e-3
    # the KL-like term of the outer loss: beta * |z|^2 / 2
    torch.testing.assert_close(learner.outer_loss(start, fast),
                               learner.kl_weight * 0.5 * fast["z"].square().sum(-1).mean())


def test_a_square_decoder_starts_as_sgd() -> None:
    batch = random_tasks()
    start = {"head": batch["head"]}
    leo = LEO(support_loss, shapes={"head": (2,)}, steps=2, latent=2, init_lr=0.05).double()
    sgd = MAML(support_loss, shapes={"head": (2,)}, steps=2, inner_lr=0.05)
    got = leo.adapt_batch(start, batch, params_batched=True)["head"]
    torch.testing.assert_close(got, sgd.adapt_batch(start, batch, params_batched=True)["head"])


def test_the_served_rule_is_the_torch_rule() -> None:
    check_rule_equals_torch("leo")


def test_training_reaches_every_weight() -> None:
    check_gradient_reaches("leo", ("dec", "enc", "raw_rate"))


def test_a_fitted_leo_model(catalog: Dataset, tmp_path: Path) -> None:
    check_fitted("leo", catalog, tmp_path, moved=("enc",))
