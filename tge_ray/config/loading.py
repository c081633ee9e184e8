"""Configs from YAML and dotted overrides, checked and converted against the schema's annotations.

    cfg = load_config(resolve_config_path("smoke"), ["reward.sigma=0.5", "windows.horizon=16"])

Types are checked by a small coercer (:func:`_coerce`) rather than a validation library: it
gives one line per bad value (field, value, what is allowed), refuses unknown keys, and never
converts silently (``true`` is not an integer, ``"5"`` is not a number).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from tge_ray.config.schema import ExperimentConfig
from tge_ray.errors import ConfigError, TGEError
from tge_ray.io import write_text
from tge_ray.pipeline.upgrade import MOVED_KEYS, SCHEMA_VERSION, VERSION_KEY, upgrade_config

# ----------------------------------------------------------------------------- type checks


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{name}={value!r} is not allowed: expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping of its fields, got {value!r}")
        return _from_dict(tp, value, name)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return value
        raise bad
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError:
                continue
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"unsupported config annotation {tp!r} for {name}")


def _from_dict(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            if dotted in MOVED_KEYS:
                raise ConfigError(f"config key {dotted!r} is {MOVED_KEYS[dotted]!r} now: rename it")
            raise ConfigError(f"unknown config key {dotted!r}: allowed keys here are {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


# ----------------------------------------------------------------------------- dicts and YAML


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-YAML form of a config or one of its sections (tuples become lists)."""
    return to_plain(dataclasses.asdict(cfg))


def key_part(section: Any) -> dict[str, Any]:
    """A config section as a part of an artifact's key: every field, nested sections included,
    except those the schema marks as changing no result (``NO_RESULT``: batch sizes, where the
    data comes from) and those at the value that artifacts made before the field computed
    (``keyed_unless``). A field added to a section is in the key of every stage that consumes it."""
    part: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if not f.metadata.get("changes_results", True):
            continue
        value = getattr(section, f.name)
        if "keyed_unless" in f.metadata and value == f.metadata["keyed_unless"]:
            continue
        part[f.name] = key_part(value) if dataclasses.is_dataclass(value) else to_plain(value)
    return part


def to_plain(value: Any) -> Any:
    """A config value in plain-YAML form (tuples become lists)."""
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` from a nested mapping."""
    return _from_dict(ExperimentConfig, data)


def read_yaml(path: Path, what: str = "config file") -> Any:
    """Parse a YAML file; a missing file or a syntax error is one ConfigError line."""
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where} does not parse{at}: {problem}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of config keys")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``a.b.c=value`` to the nested mapping ``data``; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value (e.g. reward.sigma=0.5)")
    key, raw = override.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def resolve_config_path(name: str | None) -> Path | None:
    """A config file path, or the name of a packaged config (``default``, ``smoke``, ``paper``)."""
    if name is None:
        return None
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    packaged = resources.files("tge_ray") / "configs" / f"{name}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    available = sorted(p.name.removesuffix(".yaml") for p in (resources.files("tge_ray") / "configs").iterdir())
    raise TGEError(f"config {name!r} is neither a YAML file nor a packaged config ({', '.join(available)})")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then dotted overrides; checked on the way.

    A file with ``schema_version`` (a run's config.yaml) is read as the version it was written
    in (:func:`tge_ray.pipeline.upgrade.upgrade_config`); one without is a config as written
    today, whose missing keys take today's defaults.
    """
    data: dict[str, Any] = _read_config_file(Path(path)) if path is not None else {}
    if VERSION_KEY in data:
        data = upgrade_config(data, f"config file {str(path)!r}")
    for override in overrides:
        apply_override(data, override)
    return config_from_dict(data)


def dump_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), stamped with the schema version."""
    write_text(path, yaml.safe_dump({VERSION_KEY: SCHEMA_VERSION, **to_dict(cfg)}, sort_keys=False))


# ----------------------------------------------------------------------------- field documentation


def field_docs(cls: Any) -> dict[str, str]:
    """Field name -> its one entry under ``Attributes:`` in ``cls``'s docstring, joined into a line."""
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    if not any(line.strip() == "Attributes:" for line in lines):
        return docs
    start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    current = None
    for line in lines[start:]:
        if not line.strip():
            break
        entry = re.match(r"^\s{8}(\w+): (.*)$", line)
        if entry:
            current = entry.group(1)
            docs[current] = entry.group(2).strip()
        elif current is not None:
            docs[current] += " " + line.strip()
    return docs


def describe_fields(cls: Any = ExperimentConfig, prefix: str = "", instance: Any = None) -> list[tuple[str, str, str, str]]:
    """(dotted key, value, type, what it does) rows for every leaf field; used by ``tge config --fields``.
    The values are ``instance``'s (a resolved config), or the dataclasses' own defaults without one."""
    rows = []
    if instance is None:
        instance = cls()
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), dotted + ".", value))
        else:
            shown = list(value) if isinstance(value, tuple) else value
            # One line whatever the value: YAML ends a bare scalar with "...", folds long ones.
            dumped = yaml.safe_dump(shown, default_flow_style=True, width=10**9)
            text = dumped.strip().removesuffix("...").strip().replace("\n", " ")
            rows.append((dotted, text, _type_name(hints[f.name]), docs.get(f.name, "")))
    return rows
