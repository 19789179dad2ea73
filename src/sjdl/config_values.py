"""Config values: dotted keys, YAML-typed ``key=value`` overrides and their conversion to
the declared dataclass field types (one-line errors naming the key)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .config_ranges import ConfigError
from .config_yaml import YamlError, YamlLimitError, safe_load


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        item = get_args(tp)[0]
        return f"a list of {getattr(item, '__name__', None) or _describe(item)}"
    name = getattr(tp, "__name__", str(tp))
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/command-line value to the declared type or raise ConfigError."""
    origin = get_origin(tp)
    bad = ConfigError(f"{key}: got {value!r}, expected {_describe(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise bad
        return value
    if origin in (Union, types.UnionType):
        raise TypeError(f"unsupported config type for {key}")
    if origin is list:
        (item_tp,) = get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.strip("[]()").replace(",", " ").split() if v]
        if not isinstance(value, list | tuple):
            raise bad
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad
    if tp in (int, float):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                value = float(value) if tp is float else int(value)
            except ValueError:
                raise bad from None
        if tp is int and isinstance(value, int) or tp is float and isinstance(value, int | float):
            return tp(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise TypeError(f"unsupported config type {tp} for {key}")


def _set(cfg: Any, dotted: str, value: Any) -> None:
    node: Any = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"{dotted}: '{'.'.join(parts[:i])}' is a value, not a section")
        ftypes = _field_types(type(node))
        if part not in ftypes:
            where = ".".join(parts[:i]) or "top level"
            allowed = ", ".join(sorted(ftypes))
            raise ConfigError(f"unknown key '{dotted}' ({where} allows: {allowed})")
        if i == len(parts) - 1:
            tp = ftypes[part]
            if dataclasses.is_dataclass(tp):
                raise ConfigError(f"{dotted}: is a section; set its keys, e.g. {dotted}.<key>=...")
            setattr(node, part, _coerce(dotted, value, tp))
        else:
            node = getattr(node, part)


def parse_overrides(overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Turn ``["model.split=conv3", "train.lr=1e-4"]`` into a flat dict of YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = safe_load(raw) if raw.strip() else ""
        except YamlLimitError as e:
            raise ConfigError(f"{key}: value refused ({e})") from None
        except YamlError:  # not YAML: taken as the text it is (lists may still parse)
            value = raw
        out[key] = raw if value is None else value
    return out
