r"""Baselines of the implicit protocol (:mod:`graph_meta.eval.ranking`): what shops run today.

Every model here implements :class:`~graph_meta.eval.ranking.RankingModel`:
``fit(dataset)`` on the training positives (``weight`` = confidence where ``train.csv`` has
it, else 1) and the side information, and ``score_items(user_id, support_items,
candidate_item_ids)``; ``predict`` (the rating protocol's call) returns the same scores.
Nothing assumes a particular dataset: side features come from every declared column
(:func:`graph_meta.baselines.side_features`: one-hot categorical columns, numeric columns,
hashed text, multi-hot node columns such as categories, brands, genres, directors).

* :class:`Popularity`: a training item scores :math:`\log(1 + n_i)` (:math:`n_i` its users);
  an item without training rows scores the popularity its attributes predict: a ridge map
  (rows weighted by :math:`\sqrt{n_i}`) from side features to :math:`\log(1 + n_i)` fitted on
  the training items, i.e. the popularity of its category, brand, ... learned jointly. Not
  personalised; the support is ignored.
* :class:`ImplicitALS`: implicit ALS with confidences :math:`c = 1 + \alpha w`
  (:mod:`graph_meta.ials`; trained by the ``implicit`` package where it is installed, else by
  our numpy ALS: the same objective), then per task the **fold-in**: the user step on the
  user's training positives plus the support (:func:`graph_meta.ials.fold_in`), toward a
  prior that is 0 for a training user and a side-feature ridge map of the training users'
  factors for a new user. An item without training rows gets factors from a side-feature
  ridge map of the training items' factors (rows weighted by :math:`\sqrt{n_i}`).
* :class:`LightFMBaseline`: LightFM (WARP loss) with item features = identity (training items
  only) + side features, and user features = side features + the bag of items the user took
  (normalised): a new user is represented by their side features and their support items,
  without retraining; a new item by its side features. Needs the ``lightfm`` package.
* :class:`ContentProfile`: the cosine between the user's profile (the sum of the centred
  unit-norm side-feature rows of their training positives, weighted by confidence, and of
  their support items) and each candidate's centred side-feature row; a user with no
  positive at all (a new user with K = 0) gets the :class:`Popularity` order.

**Positives after training** (the online replay, :func:`graph_meta.eval.ranking.
evaluate_implicit_online`): :class:`Popularity`, :class:`ImplicitALS` and
:class:`LightFMBaseline` have ``observe(positives)`` / ``reset_observed()``. Popularity counts
grow (a new item's predicted count plus its own observed takers); implicit ALS folds the
positives into its users' states and gives a new item the item step over its takers; LightFM
puts them into its users' bags (its items stay as trained). :class:`ContentProfile` stays
blind: it ranks by item attributes, which no positive changes, and the one thing it could
take in (a user's own earlier positives in their profile) is not what the replay measures.

With ``tune=True`` :class:`ImplicitALS` chooses its factors, regularisation, confidence scale
and ridge strengths on a grid by the mean recall@20 on pseudo-tasks carved from ``train.csv``
(:func:`carve_implicit`; never on task files).
"""

from graph_meta.implicit_baselines.als import ImplicitALS
from graph_meta.implicit_baselines.content import ContentProfile
from graph_meta.implicit_baselines.data import Interactions, carve_implicit, interactions
from graph_meta.implicit_baselines.lightfm import LightFMBaseline, lightfm_available
from graph_meta.implicit_baselines.popularity import Popularity

__all__ = [
    "ContentProfile",
    "ImplicitALS",
    "Interactions",
    "LightFMBaseline",
    "Popularity",
    "carve_implicit",
    "interactions",
    "lightfm_available",
]
