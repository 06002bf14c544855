"""Reading ``--spec``: inline JSON, or a YAML or JSON file, with ``${ENV_VAR}`` expansion.

Expansion happens in the string values of the parsed document (never in its syntax), so a
variable holding quotes or colons cannot break the file; ``$${`` stands for a literal ``${``.
Errors say where the document breaks, never what it holds: it may hold secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from headwater.errors import SpecError

__all__ = ["expand_env", "load_spec"]

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_spec(value: str | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The spec that ``--spec`` names.

    Args:
        value: Inline JSON (starting with ``{``), or the path of a YAML or JSON file; ``None``
            for no spec.
        environ: Variables for ``${NAME}`` (default ``os.environ``).

    Returns:
        The spec as a mapping, variables expanded.

    Raises:
        SpecError: The file does not exist or does not parse, is not a mapping, or uses an
            unset variable.
    """
    if value is None:
        return {}
    if value.lstrip().startswith("{"):
        where, text = "the --spec JSON", value
    else:
        path = Path(value).expanduser()
        where = f"spec file {str(path)!r}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"{where} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{where} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid syntax"
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(f"{where} is not valid YAML or JSON: {problem}{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{where} must hold a mapping of spec fields, not a {type(data).__name__}")
    expanded: dict[str, Any] = expand_env(data, os.environ if environ is None else environ, where)
    return expanded


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
