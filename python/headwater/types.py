"""CloudQuery's Arrow extension types: ``uuid``, ``json``, ``inet`` and ``mac``.

The types serialise exactly as the CloudQuery Go SDK's do (same ``ARROW:extension:name``,
``ARROW:extension:metadata`` and storage type), so a column typed with them reads back as the same
type in any CloudQuery destination. Importing this module registers all four with pyarrow.

Example:
    >>> import pyarrow as pa
    >>> from headwater import types
    >>> pa.field("id", types.uuid())
    pyarrow.Field<id: extension<uuid<UUIDType>>>

pyarrow's own canonical ``arrow.uuid`` and ``arrow.json`` types are different types with different
names; CloudQuery does not read them.
"""

from __future__ import annotations

import ipaddress
import json as _json
import uuid as _uuid
from typing import Any, ClassVar

import pyarrow as pa

from headwater.errors import SchemaError

__all__ = [
    "InetScalar",
    "InetType",
    "JSONScalar",
    "JSONType",
    "MACScalar",
    "MACType",
    "UUIDScalar",
    "UUIDType",
    "extension_name",
    "inet",
    "json",
    "mac",
    "uuid",
]


class UUIDScalar(pa.ExtensionScalar):  # type: ignore[misc]
    """A ``uuid`` value; :meth:`as_py` returns a :class:`uuid.UUID`."""

    def as_py(self, *, maps_as_pydicts: str | None = None) -> _uuid.UUID | None:
        """Return the value as a :class:`uuid.UUID`, or ``None`` when null."""
        if self.value is None:
            return None
        return _uuid.UUID(bytes=self.value.as_py())


class JSONScalar(pa.ExtensionScalar):  # type: ignore[misc]
    """A ``json`` value; :meth:`as_py` returns the parsed JSON document."""

    def as_py(self, *, maps_as_pydicts: str | None = None) -> Any:
        """Return the parsed JSON value (``dict``, ``list``, ``str``, number, ``bool``).

        JSON ``null`` and a null scalar both return ``None``.
        """
        if self.value is None:
            return None
        return _json.loads(self.value.as_py())


class InetScalar(pa.ExtensionScalar):  # type: ignore[misc]
    """An ``inet`` value; :meth:`as_py` returns an :func:`ipaddress.ip_interface` object."""

    def as_py(
        self, *, maps_as_pydicts: str | None = None
    ) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        """Return the address with its prefix, e.g. ``IPv4Interface('192.0.2.1/24')``."""
        if self.value is None:
            return None
        return ipaddress.ip_interface(self.value.as_py().decode())


class MACScalar(pa.ExtensionScalar):  # type: ignore[misc]
    """A ``mac`` value; :meth:`as_py` returns the address as ``aa:bb:cc:dd:ee:ff`` text."""

    def as_py(self, *, maps_as_pydicts: str | None = None) -> str | None:
        """Return the hardware address as lowercase, colon-separated hex octets."""
        if self.value is None:
            return None
        return ":".join(f"{octet:02x}" for octet in self.value.as_py())


class _CloudQueryType(pa.ExtensionType):  # type: ignore[misc]
    """Shared behaviour of the four types: a fixed name, storage type and serialisation."""

    NAME: ClassVar[str]
    STORAGE: ClassVar[pa.DataType]
    SERIALIZED: ClassVar[bytes]
    SCALAR: ClassVar[type[pa.ExtensionScalar]]

    def __init__(self) -> None:
        super().__init__(self.STORAGE, self.NAME)

    def __arrow_ext_serialize__(self) -> bytes:
        return self.SERIALIZED

    @classmethod
    def __arrow_ext_deserialize__(
        cls, storage_type: pa.DataType, serialized: bytes
    ) -> _CloudQueryType:
        if storage_type != cls.STORAGE:
            raise SchemaError(
                f"Arrow extension type {cls.NAME!r} must be stored as {cls.STORAGE}, "
                f"got {storage_type} (metadata {serialized!r})"
            )
        return cls()

    def __arrow_ext_scalar_class__(self) -> type[pa.ExtensionScalar]:
        return self.SCALAR

    # pyarrow's ExtensionType defines __eq__ but not __hash__; hashing lets a type sit in a
    # frozen dataclass (Column) or a set, like every built-in pyarrow DataType.
    def __hash__(self) -> int:
        return hash((type(self), self.NAME))


class UUIDType(_CloudQueryType):
    """CloudQuery ``uuid``: 16 raw bytes stored as ``fixed_size_binary(16)``."""

    NAME = "uuid"
    STORAGE = pa.binary(16)
    SERIALIZED = b"uuid-serialized"
    SCALAR = UUIDScalar


class JSONType(_CloudQueryType):
    """CloudQuery ``json``: UTF-8 JSON text stored as ``binary``."""

    NAME = "json"
    STORAGE = pa.binary()
    SERIALIZED = b"json-serialized"
    SCALAR = JSONScalar


class InetType(_CloudQueryType):
    """CloudQuery ``inet``: UTF-8 ``address/prefix`` text, e.g. ``192.0.2.1/24``, as ``binary``."""

    NAME = "inet"
    STORAGE = pa.binary()
    SERIALIZED = b"inet-serialized"
    SCALAR = InetScalar


class MACType(_CloudQueryType):
    """CloudQuery ``mac``: the raw 6, 8 or 20 hardware-address bytes stored as ``binary``."""

    NAME = "mac"
    STORAGE = pa.binary()
    SERIALIZED = b"mac-serialized"
    SCALAR = MACScalar


_UUID = UUIDType()
_JSON = JSONType()
_INET = InetType()
_MAC = MACType()


def uuid() -> UUIDType:
    """Return the CloudQuery ``uuid`` extension type."""
    return _UUID


def json() -> JSONType:
    """Return the CloudQuery ``json`` extension type."""
    return _JSON


def inet() -> InetType:
    """Return the CloudQuery ``inet`` extension type."""
    return _INET


def mac() -> MACType:
    """Return the CloudQuery ``mac`` extension type."""
    return _MAC


def extension_name(data_type: pa.DataType) -> str | None:
    """Return the extension name of ``data_type``, or ``None`` if it is not an extension type.

    Args:
        data_type: Any pyarrow type.

    Returns:
        ``"uuid"``, ``"json"``, ``"inet"`` or ``"mac"`` for headwater's types, the name of any
        other extension type (e.g. ``"arrow.uuid"``), or ``None`` for a plain Arrow type.
    """
    if isinstance(data_type, pa.BaseExtensionType):
        name: str = data_type.extension_name
        return name
    return None


def _register(extension_type: _CloudQueryType) -> None:
    # A reloaded module defines new classes; replace the stale registration so IPC reads
    # produce instances of the current ones.
    try:
        pa.register_extension_type(extension_type)
    except pa.ArrowKeyError:
        pa.unregister_extension_type(extension_type.extension_name)
        pa.register_extension_type(extension_type)


for _type in (_UUID, _JSON, _INET, _MAC):
    _register(_type)
del _type
