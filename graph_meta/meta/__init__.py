"""Meta-learners over ``torch.func`` (MAML, FOMAML, Meta-SGD, Reptile)."""

from graph_meta.meta.learners import FOMAML, MAML, MetaLearner, MetaSGD, Reptile, make_learner

__all__ = ["FOMAML", "MAML", "MetaLearner", "MetaSGD", "Reptile", "make_learner"]
