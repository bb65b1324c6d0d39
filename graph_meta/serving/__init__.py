"""Serving a fitted :class:`~graph_meta.model.GraphMetaRecommender`, one idea per module.

* :mod:`graph_meta.serving.state` — :class:`~graph_meta.serving.state.PredictorState`, the
  typed arrays prediction reads, and how training builds it from the network;
* :mod:`graph_meta.serving.adapt` — a user's fold-in and the learner's inner loop in numpy
  (the learners' own rule, tested equal to training's torch path);
* :mod:`graph_meta.serving.neighborhood` — the residual correction along attribute and
  co-rating paths, and the learned co-rating weights;
* :mod:`graph_meta.serving.catalogue` — products added after training (``add_items``);
* :mod:`graph_meta.serving.persistence` — ``save`` / ``load``.

Ratings observed after training: :mod:`graph_meta.live_state`.
"""
