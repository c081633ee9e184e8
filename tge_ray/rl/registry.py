"""The learner registry: each learner module registers its name, its config section and its builder.

    @register_learner("iql", IQLConfig, section="rl.iql")
    class IQL(StackedLearner): ...

Nothing here imports a learner: importing :mod:`tge_ray.rl` imports the learner modules, and
each registers itself (d3rlpy's ``register_learnable``). Whatever builds a learner or keys its
output asks :func:`learner_entry` for the section and reads that config object from the
experiment config, so the object a builder consumes and the object a policy's artifact key is
made of are the same one, and a new field can never be missing from the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner.

    Attributes:
        name: the learner's name (``iql``, ``rebrac``, ``bc``).
        config_type: the dataclass of its hyper-parameters.
        section: dotted path of that dataclass in the experiment config (``rl.iql``).
        builder: the learner class; called as ``builder(problem, policies, table, compile=...)``,
            each policy's :class:`tge_ray.rl.learner.PolicySpec` carrying its ``config_type``
            object (the section, with this policy's per-policy values).
        revision: raised when a change of the learner's code changes what one config trains
            (ReBRAC 1: its target actor follows the actor before the actor's step, as CORL's).
            From 1 on it is part of a policy's artifact key, so a stored policy of an earlier
            revision is trained again rather than reused; at 0 the key leaves it out.
    """

    name: str
    config_type: type
    section: str
    builder: Callable[..., Any]
    revision: int = 0

    def config_of(self, experiment: Any) -> Any:
        """This learner's config object inside an experiment config."""
        node = experiment
        for part in self.section.split("."):
            node = getattr(node, part)
        if not isinstance(node, self.config_type):
            raise TypeError(f"{self.section} is a {type(node).__name__}, {self.name} needs {self.config_type.__name__}")
        return node


_REGISTRY: dict[str, LearnerEntry] = {}


def register_learner(name: str, config_type: type, *, section: str, revision: int = 0) -> Callable[[T], T]:
    """Class decorator: register ``cls`` as learner ``name`` configured by ``section``, at ``revision``
    (:attr:`LearnerEntry.revision`)."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name].builder is not cls:
            raise ValueError(f"learner {name!r} is registered twice")
        _REGISTRY[name] = LearnerEntry(name, config_type, section, cls, revision)
        return cls

    return decorate


def learner_entry(name: str) -> LearnerEntry:
    """The registered learner ``name``; a ValueError naming the known ones otherwise."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none (import tge_ray.rl)"
        raise ValueError(f"unknown learner {name!r}: registered learners are {known}")
    return _REGISTRY[name]


def learner_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))
