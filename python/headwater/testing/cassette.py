"""Record a plugin's HTTP interactions once, replay them in CI without a network.

A :class:`Cassette` is a JSON file of request/answer pairs. While one is in use
(:func:`use_cassette`, or the ``cassette`` fixture), every :mod:`headwater.http` client made
sends through it: in ``record`` mode the requests go out and the pairs are kept; in ``replay``
mode each request is answered from the file, and a request it has no answer for raises
:class:`CassetteError` saying which request and what the cassette holds. Mode ``once`` (the
default) records when the file does not exist and replays when it does; ``none`` only replays
(what CI wants); ``all`` records again.

Secrets never reach the file: secret headers (``Authorization``, ``Cookie``, API key headers),
secret query parameters (``key``, ``sig``, ``token``, ``api_key`` ...) in URLs, ``Location``
and ``Link`` headers and form bodies, JSON fields named like secrets (``access_token``,
``refresh_token``, ``password`` ...), and every registered secret (:mod:`headwater.redaction`:
the spec's ``SecretStr`` values, an auth's credentials, tokens obtained while recording, the
values of secret parameters a request sent) are replaced by ``***``: when an interaction is
recorded, and again when the cassette is saved, for secrets registered in between. Requests are
matched by method, path, query and body, scrubbed the same way, so replaying needs no real
credentials.

Example:
    >>> from headwater.testing import use_cassette
    >>> with use_cassette("tests/cassettes/issues.json", mode="none"):  # doctest: +SKIP
    ...     run = run_sync(plugin, spec)
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx

from headwater.errors import HeadwaterError
from headwater.http import transport as http_transport
from headwater.redaction import (
    MASK,
    is_secret_header,
    redact,
    redact_bytes,
    redact_url,
)

__all__ = ["Cassette", "CassetteError", "RecordMode", "use_cassette"]

#: ``once``: record if the file is missing, else replay; ``none``: replay only; ``all``:
#: record again.
RecordMode = Literal["once", "none", "all"]

_FORMAT_VERSION = 1
# JSON fields whose string values are secrets. Not every secret query parameter name: "key"
# and "sig" are ordinary fields of many APIs' answers (an issue's key), which a cassette keeps.
_SECRET_FIELDS = frozenset(
    {
        "access_token",
        "api-key",
        "api_key",
        "apikey",
        "auth_token",
        "client_secret",
        "id_token",
        "password",
        "private_token",
        "refresh_token",
        "secret",
        "session_token",
        "signature",
        "token",
    }
)
_SECRET_JSON = re.compile(
    r'("(?:'
    + "|".join(re.escape(f) for f in sorted(_SECRET_FIELDS))
    + r')"\s*:\s*)"(?:[^"\\]|\\.)*"'
)
_URL_IN_LINK = re.compile(r"<([^>]*)>")
_DROPPED_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding", "date"})


class CassetteError(HeadwaterError, LookupError):
    """A request has no recorded answer in the cassette being replayed."""


def _scrub_text(text: str, form: bool = False) -> str:
    if form:  # application/x-www-form-urlencoded: a query string without the "?"
        text = redact_url(f"?{text}")[1:]
    return redact(_SECRET_JSON.sub(lambda m: f'{m.group(1)}"{MASK}"', text))


def _scrub_body(content: bytes, content_type: str = "") -> dict[str, str]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(redact_bytes(content)).decode("ascii")}
    form = content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"
    return {"text": _scrub_text(text, form)}


def _rescrub_body(body: dict[str, str]) -> dict[str, str]:
    if "base64" in body:
        content = redact_bytes(base64.b64decode(body["base64"]))
        return {"base64": base64.b64encode(content).decode("ascii")}
    return {"text": redact(body.get("text", ""))}


def _body_bytes(body: dict[str, str]) -> bytes:
    if "base64" in body:
        return base64.b64decode(body["base64"])
    return body.get("text", "").encode("utf-8")


def _scrub_header(name: str, value: str) -> str:
    lowered = name.lower()
    if is_secret_header(lowered):
        return MASK
    if lowered in ("location", "content-location"):
        return redact_url(value)
    if lowered == "link":
        return redact(_URL_IN_LINK.sub(lambda m: f"<{redact_url(m.group(1))}>", value))
    return redact(value)


def _scrub_headers(headers: httpx.Headers) -> dict[str, str]:
    return {
        name: _scrub_header(name, value)
        for name, value in headers.items()
        if name.lower() not in _DROPPED_HEADERS
    }


def _interaction(request: httpx.Request, response: httpx.Response) -> dict[str, Any]:
    """A request and its read answer as the cassette stores them, secrets scrubbed."""
    scrubbed_request = _scrub_body(request.content, request.headers.get("content-type", ""))
    method, target, body = _request_key(
        request.method, request.url, scrubbed_request.get("text", "")
    )
    return {
        "request": {
            "method": method,
            "url": redact_url(request.url),
            "target": target,
            "headers": _scrub_headers(request.headers),
            "body": body,
        },
        "response": {
            "status": response.status_code,
            "headers": _scrub_headers(response.headers),
            "body": _scrub_body(response.content),
        },
    }


def _rescrub(interaction: dict[str, Any]) -> dict[str, Any]:
    """``interaction`` with the secrets registered since it was recorded scrubbed too."""
    request, response = interaction["request"], interaction["response"]
    return {
        "request": {
            **{key: redact(request[key]) for key in ("method", "url", "target", "body")},
            "headers": {name: redact(value) for name, value in request["headers"].items()},
        },
        "response": {
            "status": response["status"],
            "headers": {name: redact(value) for name, value in response["headers"].items()},
            "body": _rescrub_body(response["body"]),
        },
    }


def _request_key(method: str, url: httpx.URL, body: str) -> tuple[str, str, str]:
    target = redact_url(url.copy_with(scheme="http", host="host", port=None))
    split = urllib.parse.urlsplit(target)
    query = "&".join(sorted(split.query.split("&"))) if split.query else ""
    return method.upper(), split.path + (f"?{query}" if query else ""), body


class Cassette:
    """A file of recorded HTTP interactions; see the module documentation.

    Args:
        path: The JSON file.
        mode: ``once``, ``none`` or ``all``.
    """

    def __init__(self, path: str | Path, mode: RecordMode = "once") -> None:
        if mode not in ("once", "none", "all"):
            raise ValueError(f"cassette mode must be 'once', 'none' or 'all', not {mode!r}")
        self.path = Path(path)
        self.mode: RecordMode = mode
        self.recording = mode == "all" or (mode == "once" and not self.path.exists())
        self._lock = threading.Lock()
        self._recorded: list[dict[str, Any]] = []
        self.interactions: list[dict[str, Any]] = []
        self._used: set[int] = set()
        self.played = 0
        if not self.recording:
            if not self.path.exists():
                raise CassetteError(
                    f"cassette {str(self.path)!r} does not exist and mode is {mode!r} (replay "
                    "only); record it once with mode 'once' or 'all' (pytest "
                    "--headwater-record=once) where the API is reachable"
                )
            data = json.loads(self.path.read_text())
            if data.get("version") != _FORMAT_VERSION:
                raise CassetteError(
                    f"cassette {str(self.path)!r} has format version {data.get('version')!r}; "
                    f"this headwater reads version {_FORMAT_VERSION}: record it again"
                )
            self.interactions = list(data["interactions"])

    def __repr__(self) -> str:
        mode = "recording" if self.recording else "replaying"
        return f"Cassette({str(self.path)!r}, {mode})"

    # -- recording
    def record(self, request: httpx.Request, response: httpx.Response) -> None:
        """Keep a request and its (read) answer, secrets scrubbed (again when saved)."""
        # Scrubbed now, while the secrets this request sent are still registered: values
        # seen in requests are transient and a long recording may outlive them.
        interaction = _interaction(request, response)
        with self._lock:
            self._recorded.append(interaction)

    def save(self) -> None:
        """Write the recorded interactions, secrets scrubbed."""
        if not self.recording:
            return
        with self._lock:
            interactions = [_rescrub(interaction) for interaction in self._recorded]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps({"version": _FORMAT_VERSION, "interactions": interactions}, indent=2) + "\n"
        )
        self.interactions = interactions

    # -- replaying
    def play(self, request: httpx.Request) -> httpx.Response:
        """The recorded answer to ``request``.

        Matching interactions are used in the order recorded; once all are used, the last
        one answers again.

        Raises:
            CassetteError: No recorded request matches.
        """
        body = _scrub_body(request.content, request.headers.get("content-type", "")).get("text", "")
        key = _request_key(request.method, request.url, body)
        with self._lock:
            matching = [
                index
                for index, item in enumerate(self.interactions)
                if (
                    item["request"]["method"],
                    item["request"]["target"],
                    item["request"]["body"],
                )
                == key
            ]
            if not matching:
                raise CassetteError(self._missing(key))
            unused = [index for index in matching if index not in self._used]
            chosen = unused[0] if unused else matching[-1]
            self._used.add(chosen)
            self.played += 1
        answer = self.interactions[chosen]["response"]
        return httpx.Response(
            answer["status"],
            headers=answer["headers"],
            content=_body_bytes(answer["body"]),
            request=request,
        )

    def _missing(self, key: tuple[str, str, str]) -> str:
        method, target, body = key
        recorded = [f"{i['request']['method']} {i['request']['target']}" for i in self.interactions]
        shown = ", ".join(recorded[:10]) + (
            f" and {len(recorded) - 10} more" if len(recorded) > 10 else ""
        )
        with_body = f" with body {body[:100]!r}" if body else ""
        return (
            f"cassette {str(self.path)!r} has no recorded answer for {method} {target}"
            f"{with_body}; it holds {len(recorded)} interaction(s): {shown or 'none'}. "
            "Record it again (mode 'all', or pytest --headwater-record=all) where the API is "
            "reachable"
        )

    # -- transports
    def wrap(self, transport: Any, is_async: bool) -> Any:
        """A transport that records through ``transport``, or replays from the file."""
        return _AsyncTransport(self, transport) if is_async else _SyncTransport(self, transport)


class _SyncTransport(httpx.BaseTransport):
    def __init__(self, cassette: Cassette, inner: httpx.BaseTransport) -> None:
        self.cassette = cassette
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.cassette.recording:
            return self.cassette.play(request)
        response = self.inner.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        kept = httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )
        self.cassette.record(request, kept)
        return httpx.Response(
            response.status_code,
            headers=[
                (k, v) for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS
            ],
            content=content,
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, cassette: Cassette, inner: httpx.AsyncBaseTransport) -> None:
        self.cassette = cassette
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.cassette.recording:
            return self.cassette.play(request)
        response = await self.inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        kept = httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )
        self.cassette.record(request, kept)
        return httpx.Response(
            response.status_code,
            headers=[
                (k, v) for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS
            ],
            content=content,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.contextmanager
def use_cassette(path: str | Path, mode: RecordMode = "once") -> Iterator[Cassette]:
    """Send every :mod:`headwater.http` client made inside the block through a cassette.

    The cassette is saved when the block ends (in record mode).
    """
    cassette = Cassette(path, mode)
    previous = http_transport.transport_wrapper
    http_transport.transport_wrapper = cassette.wrap
    try:
        yield cassette
    finally:
        http_transport.transport_wrapper = previous
        cassette.save()


def interactions_summary(cassette: Cassette) -> Sequence[str]:
    """``METHOD target -> status`` of each interaction, for assertions and debugging."""
    return [
        f"{i['request']['method']} {i['request']['target']} -> {i['response']['status']}"
        for i in cassette.interactions
    ]
