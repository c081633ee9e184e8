"""Offline RL backbones (IQL, ReBRAC, BC, TGE-filtered BC) and policy evaluation.

    learner = make_learner("iql", rl_cfg, obs_dim, act_dim, low, high, obs_mean, obs_std)
    sampler = learner.make_sampler(transitions)
    metrics = learner.update(sampler.sample())

``tge_ray.rl.train.train_policy`` runs a whole training with Ray evaluations;
``tge_ray.rl.evaluation`` holds the rollouts; ``tge_ray.rl.filtered`` picks filtered BC's episodes.
"""

from tge_ray.rl.buffer import Batch, Transitions, TransitionSampler
from tge_ray.rl.learner import Learner, make_learner

__all__ = ["Batch", "Learner", "TransitionSampler", "Transitions", "make_learner"]
