"""Fitting :class:`graph_meta.model.GraphMetaRecommender` (what ``model.fit`` runs).

* :mod:`graph_meta.fitting.train` — the training loop: validation carved from ``train.csv``,
  early stopping, refit, checkpoints, the prediction cache (:func:`train_model`);
* :mod:`graph_meta.fitting.graphs` — the graph it trains on (from the folder, or a store's
  snapshot checked against the dataset);
* :mod:`graph_meta.fitting.als` — the ALS start (biased MF by alternating ridge solves; the
  one ALS, also the biased MF baseline's);
* :mod:`graph_meta.fitting.priors` — the closed-form side-feature priors of users and items
  (also used by ``add_items`` for products added after training);
* :mod:`graph_meta.fitting.memory` — the up-front memory estimate and its refusal;
* :mod:`graph_meta.fitting.progress` — timestamped progress lines with a heartbeat.

The network itself is :class:`graph_meta.nn.net.GraphMetaNet`. Import the modules
themselves (the package imports none of them: the biased MF baseline uses the ALS without
the training loop's dependencies).
"""
