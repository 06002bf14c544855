"""Reading ``--spec``: inline JSON, or a YAML or JSON file, with ``${ENV_VAR}`` expansion.

A ``.json`` file and inline JSON (``--spec '{...}'``) are parsed as strict JSON: no trailing
commas, no comments, no ``NaN``, no key given twice. Any other file is YAML. YAML anchors and
aliases are allowed, but the values aliases add to the document are capped at
:data:`MAX_ALIAS_VALUES` (a few hundred bytes of nested aliases can otherwise expand to
billions of values, the "billion laughs"), and an alias inside its own anchor is refused.
Every spec is refused past :data:`MAX_SPEC_DEPTH` levels of nested mappings and lists.

Expansion happens in the string values of the parsed document (never in its syntax), so a
variable holding quotes or colons cannot break the file; ``$${`` stands for a literal ``${``.
Errors say where the document breaks, never what it holds: it may hold secrets.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from headwater.errors import SpecError

__all__ = ["MAX_ALIAS_VALUES", "MAX_SPEC_DEPTH", "expand_env", "load_spec", "parse_json_spec"]

#: Levels of nested mappings and lists a spec may have (``{"a": [1]}`` has two).
MAX_SPEC_DEPTH = 100
#: Values (scalars, mappings and lists) that YAML aliases may add to a spec in all.
MAX_ALIAS_VALUES = 10_000

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_spec(value: str | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The spec that ``--spec`` names.

    Args:
        value: Inline JSON (starting with ``{``), or the path of a YAML file or of a JSON
            file (named ``*.json``); ``None`` for no spec.
        environ: Variables for ``${NAME}`` (default ``os.environ``).

    Returns:
        The spec as a mapping, variables expanded.

    Raises:
        SpecError: The file does not exist or does not parse, nests deeper than
            :data:`MAX_SPEC_DEPTH`, expands aliases past :data:`MAX_ALIAS_VALUES`, is not a
            mapping, or uses an unset variable.
    """
    if value is None:
        return {}
    if value.lstrip().startswith("{"):
        where = "the --spec JSON"
        data = parse_json_spec(value, where)
    else:
        path = Path(value).expanduser()
        where = f"spec file {str(path)!r}"
        try:
            # utf-8-sig: editors on Windows start files with a byte order mark.
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise SpecError(f"{where} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{where} cannot be read: {exc}") from None
        if path.suffix.lower() == ".json":
            data = parse_json_spec(text, where)
        else:
            data = _parse_yaml(text, where)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{where} must hold a mapping of spec fields, not a {type(data).__name__}")
    expanded: dict[str, Any] = expand_env(data, os.environ if environ is None else environ, where)
    return expanded


def parse_json_spec(text: str | bytes, where: str) -> Any:
    """Parse a JSON spec document strictly, refusing what would exhaust the parser.

    Args:
        text: The JSON text (bytes are decoded as UTF-8).
        where: What the text is, for error messages (e.g. ``"spec file 'a.json'"``).

    Returns:
        The parsed value (``None`` for ``null``).

    Raises:
        SpecError: The text is not UTF-8 or not strict JSON (the message gives the line and
            column), has a key twice in one object, holds ``NaN`` or ``Infinity``, or nests
            deeper than :data:`MAX_SPEC_DEPTH`.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"{where} is not UTF-8 text: {exc.reason} at byte {exc.start}"
            ) from None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except _NotJson as exc:
        raise SpecError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        # Python's parser gives up around a thousand levels, before the check below can run.
        raise _too_deep(where) from None
    if _depth(data) > MAX_SPEC_DEPTH:
        raise _too_deep(where)
    return data


class _NotJson(ValueError):
    """What Python's parser accepts but JSON does not have (its position is not known)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            # The key names a field; the values, which may be secrets, stay out.
            raise _NotJson(f"the key {key!r} appears twice in one object")
        result[key] = item
    return result


def _no_constant(name: str) -> NoReturn:
    raise _NotJson(f"{name} is not a JSON value (JSON numbers are finite)")


def _too_deep(where: str, at: str = "") -> SpecError:
    return SpecError(f"{where} is nested deeper than {MAX_SPEC_DEPTH} levels{at}")


def _depth(value: Any) -> int:
    """Levels of nested dicts and lists in ``value``, counted without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_SPEC_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


class _SpecLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader with bounded nesting and alias expansion, refusing duplicate keys.

    PyYAML composes nested nodes recursively, and aliases share one node wherever they
    appear: the composer measures every node it makes (values it expands to, levels below
    it) to stop both before Python's stack, or the copies made of shared values, give out.
    """

    def __init__(self, text: str, where: str) -> None:
        super().__init__(text)
        self.where = where
        self._level = 0
        self._aliased = 0
        # id(node) -> (values it expands to, levels of mappings and lists it holds).
        self._measures: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._check_alias(event, target)
            return super().compose_node(parent, index)
        nests = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if nests:
            self._level += 1
            if self._level > MAX_SPEC_DEPTH:
                raise _too_deep(self.where, _at(self.peek_event().start_mark))
        try:
            node = super().compose_node(parent, index)
        finally:
            if nests:
                self._level -= 1
        self._measures[id(node)] = self._measure(node)
        return node

    def _check_alias(self, event: Any, target: Any) -> None:
        measures = self._measures.get(id(target))
        if measures is None:
            raise SpecError(
                f"{self.where}: the alias *{event.anchor}{_at(event.start_mark)} is inside "
                f"the value its anchor &{event.anchor} names; a spec cannot contain itself"
            )
        size, height = measures
        self._aliased += size
        if self._aliased > MAX_ALIAS_VALUES:
            raise SpecError(
                f"{self.where}: the aliases up to *{event.anchor}{_at(event.start_mark)} "
                f"expand to more than {MAX_ALIAS_VALUES} values; write the values out, or "
                "use fewer aliases of large anchors"
            )
        if self._level + height > MAX_SPEC_DEPTH:
            raise _too_deep(
                self.where, f" (through the alias *{event.anchor}{_at(event.start_mark)})"
            )

    def _measure(self, node: Any) -> tuple[int, int]:
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            return 1, 0
        size, height = 1, 0
        for child in children:
            child_size, child_height = self._measures[id(child)]
            size += child_size
            height = max(height, child_height)
        return size, height + 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[tuple[str, str], Any] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue  # keys merged in with << may be overridden, as YAML says
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                raise SpecError(
                    f"{self.where}: the key {key.value!r}{_at(key.start_mark)} appears twice "
                    f"in one mapping (first{_at(first.start_mark)})"
                )
        return super().construct_mapping(node, deep=deep)


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _parse_yaml(text: str, where: str) -> Any:
    loader = _SpecLoader(text, where)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise SpecError(
            f"{where} is not valid YAML: {problem}{_at(getattr(exc, 'problem_mark', None))}"
        ) from None
    finally:
        loader.dispose()


def expand_env(value: Any, environ: Mapping[str, str], where: str, path: str = "") -> Any:
    """``value`` with ``${NAME}`` replaced in every string inside it.

    Raises:
        SpecError: A variable is not set; the message names it and the field.
    """
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "${"
            if name not in environ:
                raise SpecError(
                    f"{where}: field {path or '(top)'!r} uses ${{{name}}}, but the environment "
                    f"variable {name} is not set"
                )
            return environ[name]

        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {
            key: expand_env(item, environ, where, f"{path}.{key}" if path else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [expand_env(item, environ, where, f"{path}[{i}]") for i, item in enumerate(value)]
    return value
