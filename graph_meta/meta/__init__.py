"""Meta-learners over ``torch.func``: the interface (:mod:`graph_meta.meta.base`) and the
registered learners, one module each (importing a module registers its learners)."""

from graph_meta.meta.base import (
    NO_LEARNER,
    InnerRule,
    MetaLearner,
    ServingRule,
    learner_names,
    make_learner,
    register_learner,
    register_rule,
)
from graph_meta.meta.leo import LEO, LEORule
from graph_meta.meta.lstm import LSTMLearner, LSTMRule
from graph_meta.meta.maml import FOMAML, MAML
from graph_meta.meta.metasgd import MetaSGD
from graph_meta.meta.proto import ProtoAttention, ProtoRule
from graph_meta.meta.reptile import Reptile

__all__ = ["FOMAML", "LEO", "MAML", "NO_LEARNER", "InnerRule", "LEORule", "LSTMLearner",
           "LSTMRule", "MetaLearner", "MetaSGD", "ProtoAttention", "ProtoRule", "Reptile",
           "ServingRule", "learner_names", "make_learner", "register_learner", "register_rule"]
