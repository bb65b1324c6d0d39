r"""Honest, fast baselines for the cold-start protocol (:mod:`graph_meta.eval.protocol`).

All three implement :class:`~graph_meta.eval.protocol.ColdStartModel`. :math:`\mu` is the
mean training rating; "train" is ``train.csv`` (a duplicated (user, item) pair keeps its
last row); ``S`` is the task's support set.

* :mod:`graph_meta.baselines.means` — :class:`GlobalMean` (:math:`\hat r = \mu`) and
  :class:`ItemMeanUserBias` (shrunk item mean plus a shrunk user bias from history and
  support);
* :mod:`graph_meta.baselines.mf` — :class:`BiasedMF` (ALS, closed-form fold-in of history and
  support, side-feature ridge priors for new items and users);
* :mod:`graph_meta.baselines.ratings` — what they share (ratings as integer codes, clipping,
  the pseudo-task summary).
"""

from graph_meta.baselines.means import GlobalMean, ItemMeanUserBias
from graph_meta.baselines.mf import BiasedMF

# their names here before graph_meta.side_features existed (code written then imports them
# from here; new code: graph_meta.side_features)
from graph_meta.side_features import RidgeMap as _RidgeMap  # noqa: F401
from graph_meta.side_features import side_features as side_features

__all__ = ["BiasedMF", "GlobalMean", "ItemMeanUserBias"]
