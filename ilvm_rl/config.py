"""Typed settings from plain dicts (YAML, JSON), with errors that name the file and key at fault.

A field can hold one of several settings classes, chosen by name, whose keys sit beside it in the
plain dict (``exploration: {bonus: rnd, output_dim: 64, int_coef: 1.0}``): give the field the
metadata ``{VARIANTS: {"rnd": RNDConfig, ...}}``. Only the chosen class's keys are accepted.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

import yaml

if TYPE_CHECKING:  # importlib.resources.abc is new in Python 3.11; the package supports 3.10
    from importlib.resources.abc import Traversable

T = TypeVar("T")
VARIANTS = "variants"
"""Metadata key of a field whose value is one of several settings classes, by name (see above)."""


class ConfigError(ValueError):
    """A settings file or dict that does not fit its schema."""


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` and ``3E5`` as numbers as YAML 1.2 does (PyYAML follows
    YAML 1.1, which wants a dot and a signed exponent, ``1.0e-4``, and reads ``1e-4`` as a string)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """The value a YAML text holds, read with :class:`ConfigLoader`.

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: builds plain values only


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation):
        return "mapping"
    if origin is collections.abc.Callable:
        return "schedule"
    return getattr(annotation, "__name__", str(annotation))


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against ``annotation`` and convert lists to tuples and dicts to dataclasses."""
    origin = typing.get_origin(annotation)
    fail = ConfigError(f"{where}: expected {_type_name(annotation)}, got {value!r}")
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        if len(options) == 1:  # Optional[X]: X's own error is the informative one
            return _convert(value, options[0], where)
        for option in options:
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise fail
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise fail
    if annotation is type(None):
        if value is None:
            return None
        raise fail
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail
        item = typing.get_args(annotation)[0]
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise fail
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise fail
        return from_dict(annotation, value, where)  # type: ignore[arg-type]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise fail
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise fail
    if annotation is str:
        if isinstance(value, str):
            return value
        raise fail
    if annotation is Any:
        return value
    raise TypeError(f"{where}: no converter for {annotation!r}")


def check_type(value: Any, annotation: Any, where: str) -> None:
    """Check a value that is passed on as it is (a setting of a third-party constructor) against its
    annotation; kinds YAML cannot spell (classes, objects) are left to the constructor.

    Raises:
        ConfigError: the value cannot be of the annotated type (naming ``where``).
    """
    if not _fits(value, annotation):
        raise ConfigError(f"{where}: expected {_type_name(annotation)}, got {value!r}")


def _fits(value: Any, annotation: Any) -> bool:
    origin, options = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(_fits(value, option) for option in options)
    if origin is collections.abc.Callable:
        return callable(value)
    if origin is tuple and len(options) > 1 and Ellipsis not in options:  # a fixed layout, e.g. (4, "step")
        return isinstance(value, (list, tuple)) and len(value) == len(options) and all(map(_fits, value, options))
    try:
        _convert(value, annotation, "")
    except ConfigError:
        return False
    except TypeError:  # no converter: not a kind a settings file holds
        return True
    return True


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build the dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass whose fields carry type annotations.
        data: plain values, e.g. parsed YAML.
        where: how to name ``data`` in errors, e.g. ``"agents/ppo.yaml: default.exploration"``.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    accepted = set(fields)
    for name, f in fields.items():
        if VARIANTS in f.metadata:
            kwargs[name], keys = _variant(name, f, data, where)
            accepted |= keys
    unknown = sorted(set(data) - accepted)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; accepted keys: {', '.join(sorted(accepted))}")
    for name, value in data.items():
        if name in fields and name not in kwargs:
            kwargs[name] = _convert(_over_default(fields[name], value), hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from error


def _over_default(field: dataclasses.Field[Any], value: Any) -> Any:
    """``value`` for a field whose default is a settings object: its keys merged over that default's,
    so that a key left out takes the value the field has in Python, not its class's own default."""
    if not isinstance(value, dict) or field.default_factory is dataclasses.MISSING:
        return value
    default = field.default_factory()
    if not dataclasses.is_dataclass(default) or isinstance(default, type):
        return value
    return merge_settings(type(default), to_dict(default), value)


def _field_names(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def variant_name(field: dataclasses.Field[Any], value: Any) -> str:
    """The name under which ``value``'s class is one of the variants of ``field``."""
    for name, cls in field.metadata[VARIANTS].items():
        if type(value) is cls:
            return str(name)
    raise TypeError(f"{field.name}: {type(value).__name__} is not one of {', '.join(field.metadata[VARIANTS])}")


def _variant(name: str, field: dataclasses.Field[Any], data: dict[str, Any], where: str) -> tuple[Any, set[str]]:
    """The settings class that ``data[name]`` chooses among ``field``'s variants, built from the keys of
    ``data`` that are its own, and those keys; a key of another variant is refused."""
    variants: dict[str, type] = field.metadata[VARIANTS]
    assert field.default_factory is not dataclasses.MISSING, f"{name}: a variant field needs a default_factory"
    chosen = data.get(name, variant_name(field, field.default_factory()))
    if chosen not in variants:
        raise ConfigError(f"{where}.{name}: expected {' or '.join(repr(v) for v in variants)}, got {chosen!r}")
    own = _field_names(variants[chosen])
    for other, other_cls in variants.items():
        foreign = sorted((_field_names(other_cls) - own) & set(data))
        if foreign:
            raise ConfigError(
                f"{where}: key {foreign[0]!r} belongs to {name} {other!r}, not {chosen!r}; "
                f"{name} {chosen!r} reads {', '.join(sorted(own)) or 'no keys of its own'}"
            )
    given = {key: data[key] for key in own if key in data}
    default = field.default_factory()
    # the field's own default, where it is the chosen variant, fills the keys left out
    base = to_dict(default) if type(default) is variants[chosen] else {}
    value: Any = from_dict(variants[chosen], {**base, **given}, where)
    return value, own


def merge_settings(cls: Any, base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged over ``base``, two plain dicts of settings for the dataclass ``cls`` (or of a
    plain mapping when ``cls`` is None): nested mappings merge key by key. Where ``update`` chooses
    another variant of a field than ``base`` holds, ``base``'s keys of its variant are dropped first,
    so that a recipe extending ``ppo_ilvm`` can say ``bonus: rnd`` without the ensemble's keys."""
    merged = dict(base)
    hints = typing.get_type_hints(cls) if cls is not None else {}
    for f in dataclasses.fields(cls) if cls is not None else ():
        if VARIANTS not in f.metadata or f.name not in update:
            continue
        assert f.default_factory is not dataclasses.MISSING, f"{f.name}: a variant field needs a default_factory"
        before = merged.get(f.name, variant_name(f, f.default_factory()))
        if update[f.name] != before and before in f.metadata[VARIANTS]:
            for key in _field_names(f.metadata[VARIANTS][before]):
                merged.pop(key, None)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(_settings_class(hints.get(key)), merged[key], value)
        else:
            merged[key] = value
    return merged


def _settings_class(annotation: Any) -> Any:
    """The dataclass an annotation holds (``ExplorationConfig | None`` holds ``ExplorationConfig``), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def read_yaml_mapping(path: Path, layout: str) -> dict[str, Any]:
    """The mapping a YAML file holds (an empty file is an empty mapping).

    Args:
        path: the file.
        layout: what the mapping should hold, for the error message.

    Raises:
        ConfigError: the file is not valid YAML or not a mapping.
    """
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {layout}")
    return data


def checked_seed(name: str, seed: int) -> int:
    """``seed``, if Gymnasium and numpy take it.

    Raises:
        ConfigError: a negative seed, naming the flag or setting ``name``.
    """
    if seed < 0:
        raise ConfigError(f"{name} must be >= 0 (Gymnasium and numpy take non-negative seeds), got {seed}")
    return seed


def checked_threshold(name: str, threshold: float | None) -> float | None:
    """``threshold``, if it is a finite return or None (none given).

    Raises:
        ConfigError: NaN or an infinity, which no return reaches or every return does, naming the
            flag or setting ``name``.
    """
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"{name} must be a finite return, got {threshold}")
    return threshold


def make_folder(path: Path, what: str) -> Path:
    """Create the folder ``path`` (and its parents) if needed; returns it.

    Args:
        what: how to name the folder in errors, e.g. ``"--runs-dir runs"``.

    Raises:
        ConfigError: a file stands where a folder must go, or the folder cannot be written.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), error.filename)
        raise ConfigError(f"{what}: {blocker} is a file, where a folder must go") from error
    except PermissionError as error:
        raise ConfigError(f"{what}: cannot create {error.filename} (permission denied)") from error
    return path


def shipped_names(folder: Traversable) -> list[str]:
    """Names of the ``.yaml`` files in a folder shipped with the package."""
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_or_path(name: str, folder: Traversable, kind: str) -> Path:
    """The file of a ``kind`` (recipe, suite) given by the name of a shipped one or by a path.

    Raises:
        ConfigError: no such file, naming the shipped ones and close matches.
    """
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"{kind} file {name} does not exist")
        return candidate
    shipped = folder / f"{name}.yaml"
    if not shipped.is_file():
        names = shipped_names(folder)
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown {kind} {name!r}{hint}; {kind}s: {', '.join(names)}, or a path to a .yaml file")
    return Path(str(shipped))


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts and lists (the inverse of :func:`from_dict`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        plain: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if VARIANTS in f.metadata:  # the variant's name, and its keys beside it
                plain[f.name] = variant_name(f, value)
                plain.update(to_dict(value))
            else:
                plain[f.name] = to_dict(value)
        return plain
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
