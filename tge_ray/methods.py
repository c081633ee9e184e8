"""What a method of a run is: its name, its result label, its learner and the reward it learns from.

    tge     the configured backbone (``rl.backbone``) on the TGE reward; ``fbc`` is the BC
            learner on the episodes that the TGE reward ranks highest
    bc      the BC learner on all of D_mu, no reward
    oracle  IQL on D_mu's true reward (an upper reference)

This is the one list of methods: the config checks ``methods`` against it, the policy stage asks
it which learner and reward a method uses, the report orders its tables by it. Nothing here
imports the config or the learners; a method reads what it needs from the ``rl`` section it is
given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

BACKBONE_LEARNER = {"iql": "iql", "rebrac": "rebrac", "fbc": "bc"}  # rl.backbone -> learner


@dataclass(frozen=True)
class Method:
    """One method.

    Attributes:
        name: its name in ``methods`` (``tge``, ``bc``, ``oracle``).
        rewards: what it learns from: ``tge`` (the reward stage's scaled reward), ``true``
            (D_mu's own reward, CORL-scaled) or ``none`` (behaviour cloning).
        learner: the registered learner it trains with; ``None`` for ``tge``, whose learner
            is the backbone's.
    """

    name: str
    rewards: Literal["tge", "true", "none"]
    learner: str | None = None

    def learner_of(self, rl: Any) -> str:
        """The learner this method trains with under the ``rl`` config section."""
        return BACKBONE_LEARNER[rl.backbone] if self.learner is None else self.learner

    def label(self, rl: Any) -> str:
        """Result key: ``tge-iql``, ``tge-rebrac``, ``tge-fbc``, ``bc``, ``oracle-iql``."""
        if self.name == "tge":
            return f"tge-{rl.backbone}"
        if self.name == "oracle":
            return f"oracle-{self.learner}"
        return self.name

    def filtered(self, rl: Any) -> bool:
        """Whether it trains on the episodes the TGE reward ranks highest (filtered BC)."""
        return self.name == "tge" and rl.backbone == "fbc"


METHODS: dict[str, Method] = {
    "tge": Method("tge", "tge"),
    "bc": Method("bc", "none", "bc"),
    "oracle": Method("oracle", "true", "iql"),
}
METHOD_NAMES = tuple(METHODS)
# Every label a run can report, in the order tables show them.
LABEL_ORDER = (*(f"tge-{backbone}" for backbone in BACKBONE_LEARNER), "bc", "oracle-iql")


def method(name: str) -> Method:
    """The method ``name``; a ValueError naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: use one of {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def label_sort_key(label: str) -> tuple[int, str]:
    """Sort labels (``tge-iql[beta=1]`` included) in table order, unknown ones last."""
    base = label.split("[", 1)[0]
    return (LABEL_ORDER.index(base) if base in LABEL_ORDER else len(LABEL_ORDER), label)
