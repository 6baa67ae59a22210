"""Read a YAML config into a validated experiment config, with located errors.

Errors name the file, the line and the dotted key, for example
``configs/x.yaml:7: data.alpha: Input should be greater than 0 (got -1)``.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from . import experiments
from .errors import ConfigError

LineMap = dict[tuple, int]
FIT_METHODS = ("ridge", "gradient_descent")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e6 (YAML 1.1 requires 1.0e6) and inf as floats."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse YAML text; return the data and a map from key paths to 1-based lines."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        raise ConfigError(f"invalid YAML: {error.problem}", source, line) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", source) from None
    if node is None:
        raise ConfigError("the file is empty; expected a mapping with at least 'kind'", source, 1)
    lines: LineMap = {(): node.start_mark.line + 1}
    _walk(node, (), lines, source)
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", source) from None
    finally:
        loader.dispose()
    return data, lines


def _walk(node: yaml.Node, path: tuple, lines: LineMap, source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError("duplicate key", source, key_node.start_mark.line + 1, _dotted(path + (key,)))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk(item, path + (index,), lines, source)


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f".{part}" if text else str(part)
    return text


def apply_overrides(data: dict, overrides: list[str]) -> dict[tuple, str]:
    """Apply ``key.sub=value`` overrides in place; return the paths they set, with their text."""
    applied: dict[tuple, str] = {}
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"invalid override {text!r}: expected KEY=VALUE, e.g. data.alpha=0.5", "--set")
        key, raw = text.split("=", 1)
        path = tuple(part for part in key.strip().split("."))
        if not all(path):
            raise ConfigError(f"invalid key {key!r}: expected dotted names such as data.alpha", "--set")
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"invalid value {raw!r}", "--set", key=key) from None
        path = tuple(int(part) if part.isdigit() else part for part in path)
        target = data
        for part, following in zip(path[:-1], path[1:]):
            target = _child(target, part, following, key)
        _assign(target, path[-1], value, key)
        applied[path] = text
    return applied


def _child(container, part, following, key: str):
    """Return container[part], creating a mapping (or reporting a missing list item) on the way."""
    if isinstance(container, list):
        if not isinstance(part, int) or part >= len(container):
            raise ConfigError(f"no item {part} in a list of {len(container)}", "--set", key=key)
        return container[part]
    if not isinstance(container, dict):
        raise ConfigError(f"cannot set a key inside a {type(container).__name__}", "--set", key=key)
    if part == 0 and isinstance(part, int):
        # A single block written as a mapping is item 0 of its list.
        return container
    child = container.get(part)
    if child is None:
        child = container[part] = {}
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"cannot set a key inside {part!r}, which is a {type(child).__name__}", "--set", key=key)
    if isinstance(child, dict) and isinstance(following, int) and following != 0:
        raise ConfigError(f"{part!r} is a single block, so its only item is 0, not {following}", "--set", key=key)
    return child


def _assign(container, part, value, key: str) -> None:
    if isinstance(container, list):
        if not isinstance(part, int) or part >= len(container):
            raise ConfigError(f"no item {part} in a list of {len(container)}", "--set", key=key)
    container[part] = value


def load_config(path: str | Path, overrides: list[str] | None = None):
    """Read, override and validate a config file; raise ConfigError with file:line:key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the file: {error}", source) from None
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", source, lines[()])
    applied = apply_overrides(data, overrides or [])
    return validate_config(data, source, lines, applied)


def validate_config(data: dict, source: str, lines: LineMap | None = None, applied: dict | None = None):
    """Validate a config mapping, locating the first error."""
    lines = lines or {}
    applied = applied or {}
    kind = data.get("kind")
    known = sorted(experiments.CONFIG_CLASSES)
    if kind is None:
        raise ConfigError(f"missing required key; expected one of {', '.join(known)}", source, lines.get(()), "kind")
    if kind not in experiments.CONFIG_CLASSES:
        where = "--set" if ("kind",) in applied else source
        if kind in experiments.PLANNED_KINDS:
            message = f"experiment kind {kind!r} is not available in this version; available: {', '.join(known)}"
        else:
            message = f"unknown experiment kind {kind!r}; expected one of {', '.join(known)}"
        raise ConfigError(message, where, lines.get(("kind",)), "kind")
    try:
        return experiments.config_adapter().validate_python(data)
    except ValidationError as error:
        raise _located(error, kind, source, lines, applied) from None


def _located(error: ValidationError, kind: str, source: str, lines: LineMap, applied: dict) -> ConfigError:
    details = error.errors(include_url=False)
    first = details[0]
    loc = tuple(first["loc"])
    if loc and loc[0] == kind and (kind,) not in lines:
        loc = loc[1:]
    key_path = _path_in_file(loc, lines)
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if first["type"] == "missing":
        message = "missing required key"
    elif first["type"] == "extra_forbidden":
        message = _unknown_key_message(kind, key_path)
    elif "input" in first and isinstance(first["input"], (int, float, str, bool)) and "got" not in message:
        message += f" (got {first['input']!r})"
    if len(details) > 1:
        message += f" [and {len(details) - 1} more error{'s' if len(details) > 2 else ''}]"
    override = next((text for p, text in applied.items() if loc[: len(p)] == p), None)
    key = _dotted(key_path) or None
    if override is not None:
        return ConfigError(message, f"--set {override}", None, key)
    return ConfigError(message, source, _line_of(key_path, lines), key)


def _unknown_key_message(kind: str, path: tuple) -> str:
    """Say that the last key of ``path`` is unknown and list the keys allowed beside it."""
    allowed = _allowed_keys(experiments.CONFIG_CLASSES[kind], path[:-1])
    if not allowed:
        return "unknown key (check the spelling; the README lists the keys of each section)"
    message = f"unknown key; allowed here: {', '.join(allowed)}"
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _allowed_keys(model: type, path: tuple) -> list[str]:
    """Return the field names of the config section at ``path`` (list indices skipped)."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _section_model(field.annotation)
        if model is None:
            return []
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return sorted(model.model_fields)


def _section_model(annotation) -> type | None:
    """Return the first pydantic model inside an annotation such as ``list[X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _section_model(argument)
        if found is not None:
            return found
    return None


def _strip_variant_tags(path: tuple) -> tuple:
    """Drop pydantic's union-branch markers such as 'int', 'float' or 'function-after[...]'."""
    tags = {"int", "float", "str", "bool", "list[int]", "list[union[int,float]]", "dict[any,any]", "none"}
    kept = []
    for position, part in enumerate(path):
        if isinstance(part, str) and (part in tags or "[" in part or part.startswith("function-")):
            continue
        # A discriminated fit section reports its method tag, as in fit.gradient_descent.eta.
        if kept == ["fit"] and part in FIT_METHODS and position + 1 < len(path):
            continue
        kept.append(part)
    return tuple(kept)


def _path_in_file(loc: tuple, lines: LineMap) -> tuple:
    """Map a validation location to the key path as the user wrote it.

    Union markers are dropped, and so is a list index that validation added
    where the file has a single block instead of a list.
    """
    path: list = []
    for part in _strip_variant_tags(loc):
        here = tuple(path)
        if isinstance(part, int) and here + (part,) not in lines and _is_mapping(here, lines):
            continue
        path.append(part)
    return tuple(path)


def _is_mapping(path: tuple, lines: LineMap) -> bool:
    return any(len(p) == len(path) + 1 and p[: len(path)] == path and isinstance(p[-1], str) for p in lines)


def _line_of(path: tuple, lines: LineMap) -> int | None:
    """Return the line of the longest prefix of ``path`` present in the file."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def config_text(config) -> str:
    """Return the resolved config as YAML text (defaults filled in)."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)


def config_hash(config) -> str:
    """Return a short stable hash of the resolved config."""
    return hashlib.sha256(config_text(config).encode()).hexdigest()[:10]


def config_from_text(text: str, source: str = "<stored config>"):
    """Validate a config stored as YAML text (as results files keep it)."""
    data, lines = parse_yaml(text, source)
    return validate_config(data, source, lines)
