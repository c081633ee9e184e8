"""Value checks of the config sections (each raises one ConfigError line naming field, value and
rule), and the mark of a field that changes no result."""

from __future__ import annotations

from typing import Any

from tge_ray.errors import ConfigError

NO_RESULT = {"changes_results": False}
"""``field(metadata=NO_RESULT)``: the field says how a stage runs (a batch size, where data comes
from), never what it computes, so it stays out of artifact keys. Every other field is in them."""


def keyed_unless(value: Any) -> dict[str, Any]:
    """``field(metadata=keyed_unless(v))``: a field added after artifacts were keyed without it,
    whose value ``v`` computes what they computed. It enters a key only when set to something
    else, so the artifacts made before it keep their keys."""
    return {"keyed_unless": value}


def check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: {allowed}")


def positive(name: str, value: float) -> None:
    check(value > 0, name, value, "must be > 0")


def in_range(name: str, value: float, low: float, high: float, *, closed: bool = True) -> None:
    ok = low <= value <= high if closed else low < value < high
    bracket = f"[{low}, {high}]" if closed else f"({low}, {high})"
    check(ok, name, value, f"must lie in {bracket}")


def positive_values(name: str, value: float | tuple[float, ...]) -> None:
    """``value`` > 0, or each of a list of per-policy values (one per RL seed)."""
    for item in value if isinstance(value, tuple) else (value,):
        check(item > 0, name, value, "must be > 0 (one number, or a list of one per RL seed)")
