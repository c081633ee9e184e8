"""The learners ``tge data train-expert`` can use (``--algo``) and its budgets; imports no library.

All four are off-policy actor-critics of well-kept libraries with rl-zoo's MuJoCo settings
(``MlpPolicy`` 256x256, ``learning_starts=10000``, everything else the library's default). Which
one is the default is :data:`DEFAULT_ALGO`; ``benchmarks/bench_expert.py`` measures their speed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass

from tge_ray.errors import DataError

DEFAULT_STEPS = 400_000  # environment steps of a training, over all its sessions
DEFAULT_MAX_SECONDS = 3300.0  # wall time of one session: an hour's slot, less the shipping
SNAPSHOT_EVERY = 10_000  # environment steps between snapshots (and checkpoints)
LEARNING_STARTS = 10_000  # uniform random steps before learning (rl-zoo's MuJoCo setting)


@dataclass(frozen=True)
class Algo:
    """One library's off-policy learner as train-expert uses it.

    Attributes:
        name: the ``--algo`` value.
        distribution: the pip package that provides it.
        module, class_name: where the algorithm class lives.
        actor: ``torch`` (SB3-style ``latent_pi`` + ``mu``) or ``jax`` (SBX's Flax actor): how its
            deterministic actor is exported (:mod:`tge_ray.data.experts`).
        label: the record's name for it.
    """

    name: str
    distribution: str
    module: str
    class_name: str
    actor: str
    label: str

    def load(self) -> type:
        """The algorithm class; a missing library is one line that says what to install."""
        try:
            return getattr(importlib.import_module(self.module), self.class_name)
        except ImportError:
            raise DataError(f"--algo {self.name} needs the {self.distribution} package: pip install "
                            f"'tge-ray[experts]' (or pick --algo sac)") from None

    def versions(self) -> dict[str, str]:
        return {dist: importlib.metadata.version(dist) for dist in ("stable-baselines3", self.distribution)}


ALGOS = {algo.name: algo for algo in (
    Algo("sac", "stable-baselines3", "stable_baselines3", "SAC", "torch", "SB3 SAC"),
    Algo("tqc", "sb3-contrib", "sb3_contrib", "TQC", "torch", "sb3-contrib TQC"),
    Algo("sbx-sac", "sbx-rl", "sbx", "SAC", "jax", "SBX (JAX) SAC"),
    Algo("sbx-tqc", "sbx-rl", "sbx", "TQC", "jax", "SBX (JAX) TQC"),
)}
DEFAULT_ALGO = "sac"  # the learner train-expert uses unless --algo says otherwise
