"""Plugin specs: the configuration a user passes to a sync, validated by pydantic.

A plugin declares its spec as a subclass of :class:`Spec` (a pydantic ``BaseModel`` that
rejects unknown fields); its JSON Schema is what ``GetSpecSchema`` returns. Secrets are typed
:class:`SecretStr`: pydantic masks them in ``repr``, :func:`validate_spec` never puts the
value of a secret field (or of an unknown field, which may be a misspelt secret) in an error,
and registers every secret value of the validated spec (nested ones too) with
:mod:`headwater.redaction`, so that logs, errors and progress lines show ``***`` in its place.

Example:
    >>> import headwater as hw
    >>> class Spec(hw.Spec):
    ...     token: hw.SecretStr
    ...     accounts: list[str] = ["a"]
    >>> Spec(token="s3cret")
    Spec(token=SecretStr('**********'), accounts=['a'])
"""

from __future__ import annotations

import dataclasses
import json
import typing
import weakref
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic import SecretBytes, SecretStr
from pydantic.config import JsonDict

from headwater.errors import SpecError
from headwater.redaction import register_secret

__all__ = ["SecretStr", "Spec", "spec_schema", "validate_spec"]

_MAX_INPUT_REPR = 80

# Spec classes whose docstring headwater wrote: it is for help(), not for the JSON Schema.
_generated_docs: weakref.WeakSet[type] = weakref.WeakSet()


def _schema_extra(schema: JsonDict, model: type) -> None:
    if model in _generated_docs:
        schema.pop("description", None)


class Spec(pydantic.BaseModel):
    """The configuration of a plugin: subclass it and declare the fields a user sets.

    A spec is a pydantic model (fields are typed, validated and documented in the JSON
    Schema that ``headwater spec`` prints and CloudQuery's ``GetSpecSchema`` returns) that
    refuses unknown fields, so a misspelt option is an error rather than silently ignored.
    The plugin's ``connect(spec)`` receives the validated instance (resolvers receive it as
    their client when there is no ``connect``).

    Secrets: type credentials as :class:`SecretStr` (``hw.SecretStr``). Their ``repr`` shows
    ``'**********'``, a validation error never shows their value, and once the spec is
    validated (:meth:`headwater.Plugin.sync`, ``headwater sync``, ``Init``) every secret
    value in it, nested models and lists included, is registered with
    :mod:`headwater.redaction`: log lines, tracebacks, errors, the progress display and the
    summary show ``***`` in its place. Read the value with ``get_secret_value()`` only where
    it is sent. Values shorter than six characters are too common to mask everywhere (see
    :data:`headwater.redaction.MIN_SECRET_LENGTH`).

    Example:
        >>> import headwater as hw
        >>> class GitHubSpec(hw.Spec):
        ...     \"\"\"Settings of the GitHub plugin.\"\"\"
        ...
        ...     token: hw.SecretStr
        ...     orgs: list[str] = []
        ...     base_url: str = "https://api.github.com"
        >>> spec = GitHubSpec(token="ghp_example_token", orgs=["octo"])
        >>> spec
        GitHubSpec(token=SecretStr('**********'), orgs=['octo'], base_url='https://api.github.com')
        >>> spec.token.get_secret_value()
        'ghp_example_token'

    A subclass without a docstring of its own gets one listing its fields, for ``help()``.
    """

    model_config = pydantic.ConfigDict(extra="forbid", json_schema_extra=_schema_extra)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Give a subclass without a docstring one that lists its fields."""
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__dict__.get("__doc__") is None:
            cls.__doc__ = _describe_model(cls)
            _generated_docs.add(cls)


def _describe_model(model: type[pydantic.BaseModel]) -> str:
    lines = [
        "The spec of a headwater plugin: a pydantic model that refuses unknown fields.",
        "",
        "Fields:",
    ]
    for name, info in model.model_fields.items():
        secret = _mentions_secret(info.annotation)
        kind = _annotation_name(info.annotation)
        if info.is_required():
            how = "required"
        elif secret:
            how = "optional"
        elif info.default_factory is not None:
            how = "default from a factory"
        else:
            how = f"default {info.default!r}"
        what = f"    {name} ({kind}, {how}{', secret' if secret else ''})"
        if info.description:
            what += f": {info.description}"
        lines.append(what)
    if len(lines) == 3:
        lines.append("    (none)")
    lines += [
        "",
        "Secret fields show as '**********' in repr and errors, and their values are masked",
        "as *** in headwater's logs and errors once the spec is validated. See headwater.Spec.",
    ]
    return "\n".join(lines)


def _annotation_name(annotation: object) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pydantic.types.", "")


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
        _register_secrets(spec)
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
        validated = model.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = [_describe(model, error) for error in exc.errors()]
        count = f"{len(lines)} error" + ("s" if len(lines) != 1 else "")
        raise SpecError(
            f"invalid spec ({model.__name__}): {count}:\n"
            + "\n".join(f"  - {line}" for line in lines),
            lines,
        ) from None
    _register_secrets(validated)
    return validated


def _register_secrets(value: object, seen: set[int] | None = None) -> None:
    """Register every secret value in a validated spec, however deep, for redaction."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (str, bytes, int, float, type(None))):
        return
    seen.add(id(value))
    reveal = getattr(value, "get_secret_value", None)
    if callable(reveal) and not isinstance(value, type):
        secret = reveal()
        if isinstance(secret, (bytes, bytearray)):
            secret = bytes(secret).decode("utf-8", errors="replace")
        if isinstance(secret, (str, int)):
            register_secret(str(secret))
        else:
            _register_secrets(secret, seen)
        return
    if isinstance(value, pydantic.BaseModel):
        children: list[object] = [getattr(value, name) for name in type(value).model_fields]
        children += list((value.__pydantic_extra__ or {}).values())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = [getattr(value, field.name) for field in dataclasses.fields(value)]
    elif isinstance(value, Mapping):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    else:
        return
    for child in children:
        _register_secrets(child, seen)


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
