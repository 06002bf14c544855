""":class:`SyncOptions`: every option that tunes a sync, validated once, passed on unchanged.

Every way of running a sync (:meth:`headwater.Plugin.sync`, :meth:`headwater.Plugin.sync_to`
and ``headwater sync``, ``headwater serve``, :func:`headwater.testing.run_sync`) builds one
:class:`SyncOptions` and hands that object down to the Rust engine, which reads its fields by
these names. What a sync runs *on* (the spec, the starting state, the client, the logger) is
not an option: those are arguments of :meth:`headwater.Plugin.sync`.

Example:
    >>> import headwater as hw
    >>> options = hw.SyncOptions(concurrency=8, on_row_error="fail")
    >>> options.concurrency, options.batch_max_rows
    (8, 10000)
    >>> options.replace(concurrency=4).concurrency
    4
    >>> hw.SyncOptions(concurrency=0)
    Traceback (most recent call last):
    ...
    headwater.errors.SyncOptionsError: concurrency must be an int >= 1, not 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypedDict

import pydantic

from headwater.errors import SyncOptionsError

__all__ = [
    "DEFAULT_BATCH_MAX_BYTES",
    "DEFAULT_BATCH_MAX_LATENCY",
    "DEFAULT_BATCH_MAX_ROWS",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BUFFER_BYTES",
    "MAX_SECONDS",
    "TUNING_OPTIONS",
    "SyncOptionFields",
    "SyncOptions",
    "check_option",
]

DEFAULT_CONCURRENCY = 64
DEFAULT_MAX_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_MAX_ROWS = 10_000
DEFAULT_BATCH_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_BATCH_MAX_LATENCY = 1.0
#: The longest duration, in seconds, a timeout or latency option takes (about 31 years):
#: the engine cannot represent much longer ones.
MAX_SECONDS = 1e9
#: Counts stop below this: the engine holds them in 64 bits.
_COUNT_LIMIT = 2**63


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < _COUNT_LIMIT


def _duration(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= MAX_SECONDS
    )


def _patterns(value: object) -> bool:
    return not isinstance(value, (str, bytes)) and (
        isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value)
    )


def _pair_of_counts(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_count, value))


def _shard(value: object) -> bool:
    return _pair_of_counts(value) and value[0] <= value[1]  # type: ignore[index]


_SECONDS = f"a number of seconds above 0, at most {MAX_SECONDS:g}"

#: What each option takes, and its check; ``None`` is checked apart (see :func:`check_option`).
_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "tables": ("a list of table name patterns (str)", lambda v: isinstance(v, str) or _patterns(v)),
    "skip_tables": (
        "a list of table name patterns (str)",
        lambda v: isinstance(v, str) or _patterns(v),
    ),
    "skip_dependent_tables": ("a bool", lambda v: isinstance(v, bool)),
    "deterministic_cq_id": ("a bool", lambda v: isinstance(v, bool)),
    "concurrency": ("an int >= 1", _count),
    "table_concurrency": ("an int >= 1", _count),
    "depth_concurrency": (
        "a non-empty list of ints >= 1",
        lambda v: isinstance(v, (list, tuple)) and bool(v) and all(map(_count, v)),
    ),
    "strategy": (
        "'dfs', 'round-robin' or 'shuffle'",
        lambda v: v in ("dfs", "round-robin", "shuffle"),
    ),
    "shuffle_seed": (
        "an int from 0 to 2**64 - 1",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64,
    ),
    "max_buffer_bytes": ("an int >= 1", _count),
    "batch_max_rows": ("an int >= 1", _count),
    "batch_max_bytes": ("an int >= 1", _count),
    "batch_max_latency": (_SECONDS, _duration),
    "on_row_error": ("'skip' or 'fail'", lambda v: v in ("skip", "fail")),
    "resolver_timeout": (_SECONDS, _duration),
    "sync_timeout": (_SECONDS, _duration),
    "shard": ("a (num, total) pair of ints with 1 <= num <= total", _shard),
}

#: The options that tune how a sync runs, not what it syncs: those a plugin's
#: ``sync_options`` hook may set (see :meth:`headwater.Plugin.sync_options_from`).
TUNING_OPTIONS: tuple[str, ...] = (
    "concurrency",
    "table_concurrency",
    "depth_concurrency",
    "strategy",
    "shuffle_seed",
    "max_buffer_bytes",
    "batch_max_rows",
    "batch_max_bytes",
    "batch_max_latency",
    "on_row_error",
    "resolver_timeout",
    "sync_timeout",
)

#: Options for which ``None`` is a value of its own (the default, or no limit).
_NONE_ALLOWED = frozenset(
    {
        "table_concurrency",
        "depth_concurrency",
        "shuffle_seed",
        "resolver_timeout",
        "sync_timeout",
        "shard",
    }
)


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_option(name: str, value: object) -> str | None:
    """Whether ``value`` is one the sync option ``name`` takes.

    Returns:
        ``None`` if it is; else what the option takes (``"an int >= 1"``), for a message.

    Raises:
        KeyError: ``name`` is no sync option.
    """
    takes, valid = _CHECKS[name]
    if value is None and name in _NONE_ALLOWED:
        return None
    return None if valid(value) else takes


class SyncOptionFields(TypedDict, total=False):
    """The fields of :class:`SyncOptions` as keyword arguments (see :meth:`Plugin.sync`)."""

    tables: Iterable[str]
    skip_tables: Iterable[str]
    skip_dependent_tables: bool
    deterministic_cq_id: bool
    concurrency: int
    table_concurrency: int | None
    depth_concurrency: Iterable[int] | None
    strategy: Literal["dfs", "round-robin", "shuffle"]
    shuffle_seed: int | None
    max_buffer_bytes: int
    batch_max_rows: int
    batch_max_bytes: int
    batch_max_latency: float
    on_row_error: Literal["skip", "fail"]
    resolver_timeout: float | None
    sync_timeout: float | None
    shard: tuple[int, int] | None


class SyncOptions(pydantic.BaseModel):
    """Every option that tunes a sync.

    Which tables, how many resolvers at once, batching, memory, errors and time limits.

    Frozen and validated: a bad value raises :class:`~headwater.errors.SyncOptionsError`
    naming the option, the value and what it takes. Build a changed copy with
    :meth:`replace`. The defaults follow the CloudQuery Go SDK where it has one.

    Raises:
        SyncOptionsError: An option is unknown or its value is out of range.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", validate_default=False)

    tables: tuple[str, ...] = pydantic.Field(
        default=("*",),
        description="Table name patterns to sync (fnmatch globs: `*`, `?`, `[...]`); a parent "
        "is synced with any selected child. A pattern matching no table is an error.",
    )
    skip_tables: tuple[str, ...] = pydantic.Field(
        default=(),
        description="Patterns of tables to leave out, with their children.",
    )
    skip_dependent_tables: bool = pydantic.Field(
        default=False,
        description="Leave out children of selected tables unless they are selected themselves.",
    )
    deterministic_cq_id: bool = pydantic.Field(
        default=False,
        description="Accepted for CloudQuery compatibility (the CLI sends it). headwater "
        "derives `_cq_id` from the primary key whenever a table has one, as the Go SDK does "
        "for primary-key components, whatever this says; tables without a primary key get "
        "random ids either way.",
    )
    concurrency: int = pydantic.Field(
        default=DEFAULT_CONCURRENCY,
        ge=1,
        lt=_COUNT_LIMIT,
        description="Resolver invocations (one table, client and parent row) running at once, "
        "over all tables. Each running sync resolver holds a thread; async ones share one "
        "event loop.",
    )
    table_concurrency: int | None = pydantic.Field(
        default=None,
        ge=1,
        lt=_COUNT_LIMIT,
        description="Invocations of one table running at once (default: `concurrency`).",
    )
    depth_concurrency: tuple[int, ...] | None = pydantic.Field(
        default=None,
        min_length=1,
        description="Invocations at each depth running at once (index 0: top-level tables; "
        "deeper levels take the last value). Default: `concurrency` halved at every depth, as "
        "in the Go SDK.",
    )
    strategy: Literal["dfs", "round-robin", "shuffle"] = pydantic.Field(
        default="dfs",
        description="Order of the top-level (table, client) invocations: `dfs` (table by "
        "table), `round-robin` (clients interleaved) or `shuffle` (round-robin order shuffled "
        "with `shuffle_seed`).",
    )
    shuffle_seed: int | None = pydantic.Field(
        default=None,
        ge=0,
        lt=2**64,
        description="Seed of `shuffle`; by default derived from the selected tables' names, "
        "so runs repeat.",
    )
    max_buffer_bytes: int = pydantic.Field(
        default=DEFAULT_MAX_BUFFER_BYTES,
        ge=1,
        lt=_COUNT_LIMIT,
        description="Bytes of finished batches held for a slow consumer; resolvers block "
        "beyond it (backpressure).",
    )
    batch_max_rows: int = pydantic.Field(
        default=DEFAULT_BATCH_MAX_ROWS,
        ge=1,
        lt=_COUNT_LIMIT,
        description="A table's rows become a batch at this many rows...",
    )
    batch_max_bytes: int = pydantic.Field(
        default=DEFAULT_BATCH_MAX_BYTES,
        ge=1,
        lt=_COUNT_LIMIT,
        description="...or this many bytes...",
    )
    batch_max_latency: float = pydantic.Field(
        default=DEFAULT_BATCH_MAX_LATENCY,
        gt=0,
        le=MAX_SECONDS,
        description="...or when the oldest row has waited this many seconds.",
    )
    on_row_error: Literal["skip", "fail"] = pydantic.Field(
        default="skip",
        description="`skip` leaves a row that does not fit its table out (logged and counted "
        "in the summary); `fail` ends its resolver invocation with a `SyncError`.",
    )
    resolver_timeout: float | None = pydantic.Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="Seconds one resolver invocation may run. Past it the sync stops waiting "
        "for it, records a `SyncError` whose error is a `ResolverTimeoutError`, delivers "
        "nothing it yields afterwards, and goes on. An async resolver is cancelled; a threaded "
        "one blocked in C code is left to end on its own. `None`: no limit.",
    )
    sync_timeout: float | None = pydantic.Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="Seconds the whole sync may run; past it, iterating raises "
        "`SyncTimeoutError` (naming what was still running) and the sync is cancelled. "
        "`None`: no limit.",
    )
    shard: tuple[int, int] | None = pydantic.Field(
        default=None,
        description="`(num, total)`: sync only part `num` (from 1) of `total` disjoint parts "
        "of the top-level (table, client) invocations; the parts of all shards cover the "
        "sync exactly once.",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        # Checked here rather than by the field types, so a message names the option the way
        # the caller spelled it and refuses what pydantic would coerce ("8" for 8, True for 1).
        if not isinstance(data, Mapping):
            return data
        checked = dict(data)
        for name, value in data.items():
            if name not in _CHECKS:
                continue  # extra="forbid" reports it
            takes = check_option(name, value)
            if name == "shard" and takes is not None and _pair_of_counts(value):
                num, total = value
                raise ValueError(
                    f"shard {num} of {total}: the shard number must be between 1 and the total"
                )
            if takes is not None:
                raise ValueError(f"{name} must be {takes}, not {_shown(value)}")
            if name in ("tables", "skip_tables") and isinstance(value, str):
                checked[name] = (value,)
        return checked

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except pydantic.ValidationError as exc:
            raise SyncOptionsError(_describe(exc)) from None

    def replace(self, **changes: Any) -> SyncOptions:
        """A copy with ``changes`` applied, validated as a new one.

        The copy counts as setting every option this one sets, and those in ``changes``
        (see :meth:`with_defaults`).

        Raises:
            SyncOptionsError: A change names no option, or its value is out of range.
        """
        if not changes:
            return self
        return SyncOptions(**{**self.given(), **changes})

    def with_defaults(self, defaults: Mapping[str, Any]) -> SyncOptions:
        """These options layered over ``defaults`` (a plugin's ``sync_options``).

        An option set here wins; the others come from ``defaults``, then from the built-in
        defaults.

        Returns this very object when ``defaults`` is empty.

        Raises:
            SyncOptionsError: ``defaults`` names no option, or holds a value out of range.
        """
        if not defaults:
            return self
        return SyncOptions(**{**defaults, **self.given()})

    def given(self) -> dict[str, Any]:
        """The options set explicitly (at construction or by :meth:`replace`), by name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


def _describe(error: pydantic.ValidationError) -> str:
    """One line per invalid option: its name, the value and what it takes."""
    lines = []
    for problem in error.errors(include_url=False):
        name = ".".join(str(part) for part in problem["loc"][:1])
        if problem["type"] == "extra_forbidden":
            lines.append(f"{name!r} is not a sync option; the options are {', '.join(_CHECKS)}")
        elif problem["type"] == "value_error":
            lines.append(str(problem["ctx"]["error"]))
        else:
            lines.append(f"{name}: {problem['msg']}, not {_shown(problem.get('input'))}")
    return "; ".join(lines)
