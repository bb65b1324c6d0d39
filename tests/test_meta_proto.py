"""The prototype-attention learner (:mod:`graph_meta.meta.proto`): uniform attention is
Meta-SGD, the weights keep the support's size and follow the prototypes, its numpy serving
rule equals its torch trajectory, training reaches its weights, and a model fitted with it
serves what it trained (:mod:`learner_checks`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from learner_checks import (
    check_fitted,
    check_gradient_reaches,
    check_rule_equals_torch,
    random_tasks,
)

from graph_meta.dataset import Dataset
from graph_meta.meta import MetaSGD, ProtoAttention
from graph_meta.meta.ops import NUMPY, TORCH
from graph_meta.meta.proto import support_attention
from graph_meta.nn.support import support_loss


def test_uniform_attention_is_metasgd() -> None:
    batch = random_tasks()
    start = {"theta": batch["theta"], "head": batch["head"]}
    shapes = {"theta": (5,), "head": (2,)}
    torch.manual_seed(0)
    proto = ProtoAttention(support_loss, shapes=shapes, steps=2, init_lr=0.05).double()
    meta = MetaSGD(support_loss, shapes=shapes, steps=2, init_lr=0.05).double()
    got = proto.adapt_batch(start, batch, params_batched=True)
    want = meta.adapt_batch(start, batch, params_batched=True)
    for name in shapes:
        torch.testing.assert_close(got[name], want[name])


def test_attention_weights() -> None:
    """Weights sum to K over the support, are 0 off it, and (with a score rising in the
    distance to the own prototype) favour the rows far from their prototype."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    y = np.array([5.0, 5.0, 5.0, 1.0, 1.0, 1.0])
    x[:3] = 1.0 + 0.01 * x[:3]   # three typical "liked" rows
    x[2] = -3.0                   # ... and one far from the others
    w = {"att_a": np.zeros((1, 4)), "att_b": np.zeros(1), "att_v": np.ones(1)}
    w["att_a"][0, 0] = 1.0        # score = tanh(distance to the "above" prototype)
    mask = np.array([1.0, 1, 1, 1, 1, 0])
    out = support_attention(NUMPY, w, {"items": x, "y": y, "mask": mask})["mask"]
    assert out[5] == 0 and abs(out.sum() - 5) < 1e-12
    assert out[2] > out[0] and out[2] > out[1]
    tw = {k: torch.from_numpy(v) for k, v in w.items()}
    torch_out = support_attention(TORCH, tw, {"items": torch.from_numpy(x),
                                              "y": torch.from_numpy(y),
                                              "mask": torch.from_numpy(mask)})["mask"]
    np.testing.assert_allclose(torch_out.numpy(), out, atol=1e-14)


def test_the_served_rule_is_the_torch_rule() -> None:
    check_rule_equals_torch("proto")


def test_training_reaches_every_weight() -> None:
    check_gradient_reaches("proto", ("att_v", "raw_lr.theta", "raw_lr.head"))


def test_a_fitted_proto_model(catalog: Dataset, tmp_path: Path) -> None:
    check_fitted("proto", catalog, tmp_path, moved=("att_v",))
