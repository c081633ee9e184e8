"""Value checks of the config sections: each raises one ConfigError line naming field, value and rule."""

from __future__ import annotations

from typing import Any

from tge_ray.errors import ConfigError


def check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: {allowed}")


def positive(name: str, value: float) -> None:
    check(value > 0, name, value, "must be > 0")


def in_range(name: str, value: float, low: float, high: float, *, closed: bool = True) -> None:
    ok = low <= value <= high if closed else low < value < high
    bracket = f"[{low}, {high}]" if closed else f"({low}, {high})"
    check(ok, name, value, f"must lie in {bracket}")
