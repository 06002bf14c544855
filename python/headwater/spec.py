"""Plugin specs: the configuration a user passes to a sync, validated by pydantic.

A plugin declares its spec as a subclass of :class:`Spec` (a pydantic ``BaseModel`` that
rejects unknown fields); its JSON Schema is what ``GetSpecSchema`` returns. Secrets are typed
:class:`SecretStr`: pydantic masks them in ``repr``, and :func:`validate_spec` never puts the
value of a secret field (or of an unknown field, which may be a misspelt secret) in an error.

Example:
    >>> import headwater as hw
    >>> class Spec(hw.Spec):
    ...     token: hw.SecretStr
    ...     accounts: list[str] = ["a"]
    >>> Spec(token="s3cret")
    Spec(token=SecretStr('**********'), accounts=['a'])
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic import SecretBytes, SecretStr

from headwater.errors import SpecError

__all__ = ["SecretStr", "Spec", "spec_schema", "validate_spec"]

_MAX_INPUT_REPR = 80


class Spec(pydantic.BaseModel):
    """Base class of plugin specs: a pydantic model that forbids unknown fields."""

    model_config = pydantic.ConfigDict(extra="forbid")


def spec_schema(model: type[pydantic.BaseModel] | None) -> dict[str, Any]:
    """Return the JSON Schema of a spec model (an empty object schema when there is none)."""
    if model is None:
        return {"type": "object", "properties": {}, "additionalProperties": False}
    return model.model_json_schema()


def validate_spec(model: type[pydantic.BaseModel] | None, spec: object) -> Any:
    """Validate a spec given as a mapping, JSON text, or an instance of the model.

    Args:
        model: The plugin's spec model, or ``None`` for a plugin that takes no spec.
        spec: A mapping, JSON text (``str`` or ``bytes``), an instance of ``model``, or
            ``None`` (an empty spec).

    Returns:
        The validated model instance (``None`` when ``model`` is ``None``).

    Raises:
        SpecError: The spec is not valid JSON, not an object, or fails validation; every
            field error is listed, with secret values left out.
    """
    if model is not None and isinstance(spec, model):
        return spec
    data = _as_mapping(spec)
    if model is None:
        if data:
            raise SpecError(
                f"this plugin takes no spec, but one was given with fields "
                f"{', '.join(sorted(map(str, data)))}"
            )
        return None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = [_describe(model, error) for error in exc.errors()]
        count = f"{len(lines)} error" + ("s" if len(lines) != 1 else "")
        raise SpecError(
            f"invalid {model.__name__} spec ({count}):\n"
            + "\n".join(f"  - {line}" for line in lines),
            lines,
        ) from None


def _as_mapping(spec: object) -> Mapping[str, Any]:
    if spec is None:
        return {}
    if isinstance(spec, (str, bytes, bytearray)):
        text = spec if isinstance(spec, str) else bytes(spec).decode("utf-8", errors="replace")
        if not text.strip():
            return {}
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            # The document itself may hold secrets: say where it breaks, not what it says.
            raise SpecError(
                f"the spec is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    if not isinstance(spec, Mapping):
        raise SpecError(f"the spec must be an object (a mapping), not {type(spec).__name__}")
    return spec


def _describe(model: type[pydantic.BaseModel], error: Mapping[str, Any]) -> str:
    location = _location(error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    value = error.get("input")
    if error.get("type") == "missing":
        return f"{location}: {message}"
    if error.get("type") == "extra_forbidden":
        return f"{location}: unknown field (the spec has no such field)"
    if _is_secret(model, tuple(error.get("loc", ()))):
        return f"{location}: {message} (got a {type(value).__name__}; the value is secret)"
    shown = repr(value)
    if len(shown) > _MAX_INPUT_REPR:
        shown = shown[: _MAX_INPUT_REPR - 3] + "..."
    return f"{location}: {message} (got {type(value).__name__} {shown})"


def _location(loc: object) -> str:
    parts: list[str] = []
    for part in loc if isinstance(loc, tuple) else ():
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "spec"


def _is_secret(model: type[pydantic.BaseModel], loc: tuple[object, ...]) -> bool:
    """Whether the field at ``loc`` is, or lies inside, a secret-typed field.

    Unknown paths count as secret: better to leave a value out than to leak one.
    """
    annotation: object = model
    for part in loc:
        if _mentions_secret(annotation):
            return True
        if isinstance(part, int):
            annotation = _item_annotation(annotation)
            continue
        fields = _model_fields(annotation)
        if fields is not None and part in fields:
            annotation = fields[part]
        elif _is_mapping(annotation):
            annotation = typing.get_args(annotation)[1]
        else:
            # A union member's tag, a validator's location: can't tell, so hide the value.
            return True
    return _mentions_secret(annotation)


def _is_mapping(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    return (
        isinstance(origin, type)
        and issubclass(origin, Mapping)
        and len(typing.get_args(annotation)) == 2
    )


def _model_fields(annotation: object) -> dict[str, object] | None:
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            return {name: info.annotation for name, info in candidate.model_fields.items()}
    return None


def _item_annotation(annotation: object) -> object:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else Any


def _mentions_secret(annotation: object) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, (SecretStr, SecretBytes)):
        return True
    origin = typing.get_origin(annotation)
    if (
        origin is not None
        and isinstance(origin, type)
        and issubclass(origin, (pydantic.Secret, SecretStr, SecretBytes))
    ):
        return True
    return any(_mentions_secret(arg) for arg in typing.get_args(annotation))
