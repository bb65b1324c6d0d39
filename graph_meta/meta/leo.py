r"""LEO, latent embedding optimisation (Rusu et al. 2019): the inner loop runs in a
low-dimensional latent code :math:`z \in \mathbb{R}^Z` from which the fast weights are decoded.

The adapted parameters, stacked in one vector :math:`p \in \mathbb{R}^P` (``theta`` ``[D]``
then ``head`` ``[2]``, those the learner adapts), are decoded linearly around their start
:math:`p_0` (the fold-in):

.. math:: p(z) = p_0 + W z, \qquad W \in \mathbb{R}^{P \times Z}.

The encoder maps the support to the initial code through the support gradient at the start,
:math:`\nabla_p \mathcal{L}_S(p_0) = \tfrac{2}{K+\kappa} \sum_k m_k e_k \,\partial \hat r_k /
\partial p` (a residual-weighted sum of the support rows: a linear set encoder),

.. math:: z_0 = -E\, \nabla_p \mathcal{L}_S(p_0), \qquad E \in \mathbb{R}^{Z \times P},

and :math:`T` gradient steps adapt the code, with learned positive per-step, per-dimension
rates :math:`\alpha_t = \operatorname{softplus}(a_t) \in \mathbb{R}^Z`:

.. math:: z_{t+1} = z_t - \alpha_t \odot W^\top \nabla_p \mathcal{L}_S\big(p(z_t)\big),
          \qquad p_{t+1} = p(z_{t+1})

(:math:`W^\top \nabla_p \mathcal{L}_S` is :math:`\nabla_z \mathcal{L}_S`). The trajectory's
fast weights carry the code as ``"z"`` ``[Z]`` beside the decoded parameters (the scorer
ignores it); :meth:`LEO.outer_loss` adds LEO's regulariser, the KL divergence of a
unit-variance Gaussian at the adapted code from the standard normal,
:math:`\beta \cdot \tfrac12 \lVert z_T \rVert^2` averaged over tasks.

Initialisation: :math:`W` semi-orthogonal, :math:`E = 0`, :math:`\alpha = ` ``meta.inner_lr``:
the first step is SGD projected on the decoder's span, :math:`p_1 = p_0 - \alpha W W^\top
\nabla_p \mathcal{L}_S(p_0)` (plain SGD when :math:`P \le Z`). A zero gradient (no support)
leaves :math:`p` where it is. Serving runs the same code (:func:`leo_trajectory`) on the
weights in float64 (:class:`LEORule`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from graph_meta.meta.base import (
    GradFn,
    LossFn,
    MetaLearner,
    Params,
    ServingRule,
    register_learner,
    register_rule,
    to_numpy,
)
from graph_meta.meta.metasgd import _softplus_inverse

__all__ = ["LEO", "LEORule", "leo_trajectory"]

#: the latent dimension ``Z``
LATENT_DIM = 8
#: :math:`\beta`, the weight of the KL-like term of the outer loss
KL_WEIGHT = 1e-3


def leo_trajectory(dec: Mapping[str, Any], enc: Mapping[str, Any], rates: Any, params: Params,
                   batch: Mapping[str, Any], steps: int, grad_fn: GradFn) -> list[Params]:
    """``[params_0, ..., params_steps]`` of LEO (module docstring), one task, in torch or
    numpy alike.

    Args:
        dec: name -> ``[n, Z]`` block of the decoder :math:`W` for each adapted parameter.
        enc: name -> ``[Z, n]`` block of the encoder :math:`E`.
        rates: ``[T, Z]`` the positive latent step sizes (steps past ``T``: the last row).
        params: name -> ``[n]`` start :math:`p_0` (parameters not in ``dec`` pass through).
        grad_fn: ``grad_fn(params, batch)`` -> the support gradient of each parameter.
    """
    names = tuple(dec)
    start = params

    def decode(z: Any) -> Params:
        return {**start, **{n: start[n] + dec[n] @ z for n in names}}

    g0 = grad_fn(params, batch)
    z = -sum(enc[n] @ g0[n] for n in names)
    out = [params]
    for t in range(steps):
        g = grad_fn(decode(z), batch)
        z = z - rates[min(t, len(rates) - 1)] * sum(g[n] @ dec[n] for n in names)
        out.append({**decode(z), "z": z})
    return out


@register_learner("leo")
class LEO(MetaLearner):
    """Latent embedding optimisation with a linear decoder (module docstring).

    Args:
        shapes: parameter name -> shape of one task's parameter; the parameters it adapts
            (one-dimensional).
        steps: inner steps ``T`` in the latent space.
        init_lr: the initial latent step size.
        latent: ``Z``.
        kl_weight: :math:`\\beta`.
        first_order: detach the inner gradients.
    """

    def __init__(self, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int = 1, init_lr: float = 0.1, latent: int = LATENT_DIM,
                 kl_weight: float = KL_WEIGHT, first_order: bool = False) -> None:
        super().__init__(loss_fn, steps=steps, shapes=shapes)
        self.first_order = bool(first_order)
        self.kl_weight = float(kl_weight)
        self.sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
        total = sum(self.sizes.values())
        dec = torch.empty(total, latent)
        if total:
            nn.init.orthogonal_(dec)
        self.dec = nn.Parameter(dec)                            # [P, Z]
        self.enc = nn.Parameter(torch.zeros(latent, total))     # [Z, P]
        self.raw_rate = nn.Parameter(torch.full((max(1, steps), latent),
                                                _softplus_inverse(init_lr)))

    def blocks(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(dec, enc)``: the decoder's and the encoder's blocks by parameter name."""
        dec, enc, at = {}, {}, 0
        for name, n in self.sizes.items():
            dec[name], enc[name] = self.dec[at:at + n], self.enc[:, at:at + n]
            at += n
        return dec, enc

    def rates(self) -> Tensor:
        """``[T, Z]`` the positive latent step sizes."""
        return nn.functional.softplus(self.raw_rate)

    def _trajectory(self, params: Params, batch: Mapping[str, Any],
                    steps: int) -> list[Params]:
        dec, enc = self.blocks()
        dec = {k: v for k, v in dec.items() if k in params}
        enc = {k: enc[k] for k in dec}
        return leo_trajectory(dec, enc, self.rates(), params, batch, steps, self._grad_fn())

    def outer_loss(self, start: Mapping[str, Tensor], final: Mapping[str, Tensor]) -> Tensor:
        r""":math:`\beta \cdot \tfrac12 \lVert z_T \rVert^2`, averaged over the tasks."""
        if "z" not in final:
            return super().outer_loss(start, final)
        return self.kl_weight * 0.5 * (final["z"] ** 2).sum(-1).mean()

    @torch.no_grad()
    def serving_rule(self, sizes: Mapping[str, int]) -> LEORule:
        """The same rule in numpy: the decoder's and encoder's blocks of the parameters of
        ``sizes`` it adapts and the rates, in float64."""
        dec, enc = self.blocks()
        keep = [k for k in sizes if k in dec]
        return LEORule({k: to_numpy(dec[k]) for k in keep}, {k: to_numpy(enc[k]) for k in keep},
                       to_numpy(nn.functional.softplus(self.raw_rate.double())))


@register_rule
@dataclass(frozen=True)
class LEORule(ServingRule):
    """LEO's serving rule (:func:`leo_trajectory`): decoder blocks ``dec.<name>`` ``[n, Z]``,
    encoder blocks ``enc.<name>`` ``[Z, n]`` and rates ``rate`` ``[T, Z]``."""

    kind = "leo"
    dec: Mapping[str, np.ndarray]
    enc: Mapping[str, np.ndarray]
    rate: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.rate)

    def trajectory(self, params: Params, batch: Mapping[str, Any], grad_fn: GradFn,
                   steps: int | None = None) -> list[Params]:
        return leo_trajectory(self.dec, self.enc, self.rate, params, batch,
                              self.steps if steps is None else steps, grad_fn)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"rate": self.rate, **{f"dec.{k}": v for k, v in self.dec.items()},
                **{f"enc.{k}": v for k, v in self.enc.items()}}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> LEORule:
        part = {p: {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(p + ".")}
                for p in ("dec", "enc")}
        return cls(part["dec"], part["enc"], arrays["rate"])
