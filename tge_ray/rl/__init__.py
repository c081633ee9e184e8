"""Offline RL: learners that hold many policies at once, their registry, training and evaluation.

Importing this package registers every learner (:mod:`tge_ray.rl.registry`): IQL, ReBRAC, BC.
"""

from tge_ray.rl import bc, iql, rebrac  # noqa: F401  (each registers itself)
