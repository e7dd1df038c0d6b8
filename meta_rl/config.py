"""Typed, validated configuration: frozen dataclasses loaded from YAML with dotted overrides.

Every field is declared with :func:`param`, which records its documentation and allowed range::

    @dataclass(frozen=True)
    class PPOConfig(Config):
        clip: float = param(0.2, "Clip range of the PPO ratio.", gt=0.0, lt=1.0)
        device: str = param("auto", "Where the learner runs.", choices=("auto", "cpu", "cuda"))

Subclassing :class:`Config` validates types and ranges on construction, so a config built in code
is checked exactly like one loaded from YAML. :func:`load_config` reads a YAML file, applies
``section.key=value`` overrides, refuses unknown keys, wrong types and out-of-range values with a
:class:`ConfigError` that names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "config_help",
    "from_dict",
    "load_config",
    "param",
    "save_config_yaml",
    "to_dict",
]

C = TypeVar("C")
_MISSING: Any = dataclasses.MISSING


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or out of its allowed range."""


def param(
    default: Any = _MISSING,
    doc: str = "",
    *,
    default_factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """Declare a config field with its documentation and allowed range.

    ``default_factory`` is for nested configs and other mutable defaults. Bounds apply to numbers
    (and to every element of a tuple of numbers); ``choices`` lists the allowed values.
    """
    if not doc:
        raise ValueError("param(...) needs a doc string: every config field is documented")
    metadata = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of all configs: validates every field on construction."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            key = f"{type(self).__name__}.{f.name}"
            value = _coerce(getattr(self, f.name), hints[f.name], key)
            _check_range(value, f, key)
            # Store the normalised value (an int given for a float, a list for a tuple).
            object.__setattr__(self, f.name, value)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------------------------
# Type handling


_HINT_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINT_CACHE:
        _HINT_CACHE[cls] = get_type_hints(cls)
    return _HINT_CACHE[cls]


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return f"a mapping for {tp.__name__}"
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to ``tp`` or raise a ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: got {value!r}; allowed: {_describe(tp)}")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: got {value!r}; expected {_describe(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: got {value!r}; expected null")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: got {value!r}; expected {_describe(tp)}")
        return from_dict(tp, value, _prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: got {value!r}; expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: got {value!r}; expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: got {value!r}; expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: got {value!r}; expected a string")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: got {value!r}; expected {_describe(tp)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: got {len(value)} values; expected {_describe(tp)}")
        return tuple(
            _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: got {value!r}; expected a mapping")
        return dict(value)
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _check_range(value: Any, f: dataclasses.Field[Any], key: str) -> None:
    meta = f.metadata
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: got {value!r}; allowed: {', '.join(repr(c) for c in choices)}")
    numbers: Iterable[Any] = value if isinstance(value, tuple) else (value,)
    for v in numbers:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for name, ok, sym in (
            ("ge", lambda b, x=v: x >= b, ">="),
            ("gt", lambda b, x=v: x > b, ">"),
            ("le", lambda b, x=v: x <= b, "<="),
            ("lt", lambda b, x=v: x < b, "<"),
        ):
            bound = meta.get(name)
            if bound is not None and not ok(bound):
                raise ConfigError(f"{key}: got {v!r}; must be {sym} {bound} ({_range_text(f)})")


def _range_text(f: dataclasses.Field[Any]) -> str:
    meta = f.metadata
    parts = []
    for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if meta.get(name) is not None:
            parts.append(f"{sym} {meta[name]}")
    if meta.get("choices") is not None:
        parts.append("one of " + ", ".join(repr(c) for c in meta["choices"]))
    return "allowed: " + " and ".join(parts) if parts else ""


# --------------------------------------------------------------------------------------------
# Loading, overriding, saving


def from_dict(cls: type[C], data: Mapping[str, Any], _prefix: str = "") -> C:
    """Build ``cls`` from a mapping, refusing unknown keys, wrong types and bad values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_prefix or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key '{_prefix}{unknown[0]}'; allowed keys here: {', '.join(sorted(fields))}"
        )
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        key = f"{_prefix}{name}"
        coerced = _coerce(value, hints[name], key)
        _check_range(coerced, f, key)
        kwargs[name] = coerced
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required key '{_prefix}{missing[0]}'")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-ready dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    result = plain(cfg)
    assert isinstance(result, dict)
    return result


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like 'section.key=value'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key; write 'section.key=value'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from e
    return key.split("."), value


def apply_overrides(cls: type, data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides to a raw config mapping, checking each path against ``cls``."""
    result: dict[str, Any] = _deep_copy(data)
    for text in overrides:
        path, value = _parse_override(text)
        node = result
        node_cls: Any = cls
        for i, part in enumerate(path):
            is_last = i == len(path) - 1
            if node_cls is not None:
                fields = {f.name: f for f in dataclasses.fields(node_cls)}
                if part not in fields:
                    where = ".".join(path[:i]) or "the top level"
                    raise ConfigError(
                        f"unknown key '{'.'.join(path[: i + 1])}' in override {text!r}; "
                        f"allowed keys in {where}: {', '.join(sorted(fields))}"
                    )
                sub = _hints(node_cls)[part]
                node_cls = sub if dataclasses.is_dataclass(sub) else None
            if is_last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Load ``cls`` from a YAML file (or its defaults when ``path`` is None) plus overrides.

    A file may start from another: ``base: <path>`` (relative to the file) loads that file
    first (itself possibly with a ``base``) and this file's keys replace its keys, section by
    section, so a config states only what differs from its base."""
    data: dict[str, Any] = {} if path is None else read_config_mapping(Path(path))
    return from_dict(cls, apply_overrides(cls, data, overrides))


def read_config_mapping(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of a YAML config file with its ``base`` chain merged in (see
    :func:`load_config`)."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from e
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(
            f"base: got {base!r} in {str(path)!r}; allowed: the path of another config file, "
            "relative to this one"
        )
    base_path = (path.parent / base).resolve()
    if base_path in _seen or base_path == path.resolve():
        raise ConfigError(f"base: {str(path)!r} names {base!r}, which leads back to itself")
    if not base_path.is_file():
        raise ConfigError(
            f"base: got {base!r} in {str(path)!r}; no such file {str(base_path)!r}; allowed: "
            "the path of another config file, relative to this one"
        )
    merged = read_config_mapping(base_path, (*_seen, path.resolve()))
    return _merge(merged, loaded)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over``'s keys replace ``base``'s; mappings are merged key by key (a list or a value
    replaces whatever was there)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def save_config_yaml(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_help(cls: type, prefix: str = "") -> list[str]:
    """One line per field, ``key (type, default, range): doc``, nested sections flattened."""
    lines = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            lines.append(f"{key}: {f.metadata.get('doc', '')}")
            lines.extend(config_help(tp, key + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rng = _range_text(f)
        extra = f"; {rng}" if rng else ""
        lines.append(f"{key} ({_describe(tp)}, default {default}{extra}): {f.metadata.get('doc')}")
    return lines
