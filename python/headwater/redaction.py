"""Keeping secrets out of everything headwater writes: log lines, errors, progress, files.

Secrets are *registered* (:func:`register_secret`) and from then on :func:`redact` replaces
them with ``***`` in any text. headwater registers on its own:

- every ``SecretStr`` (and ``SecretBytes``, ``pydantic.Secret``) value of a spec validated by
  :func:`headwater.spec.validate_spec`, nested models, lists and dicts included;
- the credentials of a :mod:`headwater.http` auth, and the tokens it obtains (OAuth2);
- the value of every secret-named query parameter and header a :mod:`headwater.http` client
  sends, so an error body that echoes the request is masked by the value too;
- the password of a PostgreSQL destination URL (user info, ``?password=``,
  ``?sslpassword=``).

Values shorter than :data:`MIN_SECRET_LENGTH` characters are not registered: masking every
``"true"`` or ``"2026"`` in every line would hide more than it protects. Such a value is still
hidden where its place says it is secret (a URL's password, a secret query parameter or header,
a ``SecretStr``'s repr).

Every log record is redacted when it is made, whatever logger makes it (a
:func:`logging.setLogRecordFactory` wrapper, installed on import): its message, its arguments,
its traceback and its stack. So a plain :class:`logging.Handler` of an application that never
calls :func:`headwater.configure_logging` sees no secret either. The factory runs before the
logger adds ``extra`` fields; headwater's own formatters (:mod:`headwater.logs`) redact those.

Example:
    >>> from headwater.redaction import redact, redact_url, register_secret
    >>> register_secret("s3cr3t-t0ken")
    >>> redact("Authorization: Bearer s3cr3t-t0ken")
    'Authorization: Bearer ***'
    >>> redact_url("https://api.example.com/items?api_key=abc123&page=2")
    'https://api.example.com/items?api_key=***&page=2'
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "TRANSIENT_LIMIT",
    "is_secret_header",
    "is_secret_param",
    "redact",
    "redact_bytes",
    "redact_headers",
    "redact_record",
    "redact_url",
    "register_header_secrets",
    "register_query_secrets",
    "register_secret",
    "register_url_secrets",
]

#: What a secret is replaced with.
MASK = "***"

#: Values shorter than this many characters are not registered (see the module docs).
MIN_SECRET_LENGTH = 6

#: How many values seen in requests (:func:`register_secret` with ``transient=True``) are kept.
TRANSIENT_LIMIT = 256

#: Query parameters (lowercase) whose values are always hidden in URLs, and registered as
#: secrets when a request sends them.
SECRET_PARAMS = frozenset(
    {
        "access_key",
        "access_token",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "auth_token",
        "client_secret",
        "id_token",
        "key",
        "passwd",
        "password",
        "private_token",
        "refresh_token",
        "secret",
        "secret_key",
        "session_token",
        "sig",
        "signature",
        "sslpassword",
        "token",
        "x-amz-security-token",
        "x-amz-signature",
        "x-goog-signature",
    }
)

#: Headers (lowercase) whose values are always hidden, and registered as secrets when sent.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
    }
)

_lock = threading.Lock()
_permanent: set[str] = set()
# Oldest first: dropped first once there are more than TRANSIENT_LIMIT.
_transient: collections.OrderedDict[str, None] = collections.OrderedDict()
# Every registered form, longest first, so a secret that contains another is masked whole;
# kept sorted as forms come and go, and copied into _ordered, which readers take without the
# lock (it is replaced whole).
_sorted: list[str] = []
_ordered: tuple[str, ...] = ()
_extra_params: set[str] = set()
_extra_headers: set[str] = set()


def _forms(secret: str) -> set[str]:
    """The ways a secret shows up in text: as is, URL-encoded, and escaped in JSON."""
    escaped = json.dumps(secret)[1:-1]
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        escaped,
        escaped.replace("/", "\\/"),
    }


def _longest_first(form: str) -> int:
    return -len(form)


def register_secret(
    secret: str | None,
    *,
    param: str | None = None,
    header: str | None = None,
    transient: bool = False,
) -> None:
    """Hide ``secret`` from now on in every log line, error and file headwater writes.

    Args:
        secret: The secret value (a token, a password, an API key). ``None``, and values
            shorter than :data:`MIN_SECRET_LENGTH` characters (leading and trailing spaces
            aside), are ignored. Its URL-encoded and JSON-escaped forms are hidden too.
        param: A query parameter whose value is secret from now on.
        header: A header whose value is secret from now on.
        transient: The value was seen in one request (a signature, a per-request key): only
            the latest :data:`TRANSIENT_LIMIT` such values are kept, so a sync that signs every
            request does not grow the list every line is checked against without end.
    """
    global _ordered
    if param or header:
        with _lock:
            if param:
                _extra_params.add(param.lower())
            if header:
                _extra_headers.add(header.lower())
    if not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET_LENGTH:
        return
    if secret in _permanent or (transient and secret in _transient):
        return  # the common case (the same key on every request), without the lock
    with _lock:
        forms = _forms(secret)
        new = forms - _permanent - _transient.keys()
        if transient:
            for form in new:
                _transient[form] = None
            while len(_transient) > TRANSIENT_LIMIT:
                _sorted.remove(_transient.popitem(last=False)[0])
        else:
            _permanent.update(forms)
            for form in forms:
                _transient.pop(form, None)
        for form in new:
            bisect.insort(_sorted, form, key=_longest_first)
        _ordered = tuple(_sorted)


def is_secret_param(name: str) -> bool:
    """Whether the values of query parameter ``name`` are hidden."""
    lowered = name.lower()
    return lowered in SECRET_PARAMS or lowered in _extra_params


def is_secret_header(name: str) -> bool:
    """Whether the values of header ``name`` are hidden."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or lowered in _extra_headers


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``.

    A substring test per secret (C speed, no regular expression to rebuild when a secret is
    added) finds the few secrets a line holds, usually none.
    """
    ordered = _ordered
    if not ordered or not text:
        return text
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    """``data`` with the UTF-8 form of every registered secret replaced by ``***``."""
    ordered = _ordered
    if not ordered or not data:
        return data
    mask = MASK.encode()
    for secret in ordered:
        encoded = secret.encode()
        if encoded in data:
            data = data.replace(encoded, mask)
    return data


def _query_pairs(query: str) -> list[tuple[str, str, str]]:
    """``(raw pair, decoded name, decoded value)`` of each ``&``-separated pair."""
    pairs = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        pairs.append((pair, urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(value)))
    return pairs


def _end_of(text: str, delimiters: str, start: int) -> int:
    ends = [i for i in (text.find(d, start) for d in delimiters) if i >= 0]
    return min(ends) if ends else len(text)


def _url_parts(text: str) -> tuple[str, int, int, str, int]:
    """``(user info, its end, end of the authority, query, start of the query)``.

    Split as :func:`urllib.parse.urlsplit` splits (the authority ends at the first ``/``,
    ``?`` or ``#``; the user info at its last ``@``), but never raising on a malformed host
    or port: a URL that fails to parse may still hold a password. Missing parts are empty,
    their positions -1.
    """
    scheme_end = text.find("://")
    userinfo, userinfo_end, authority_end = "", -1, 0
    if scheme_end >= 0:
        start = scheme_end + 3
        authority_end = _end_of(text, "/?#", start)
        at = text.rfind("@", start, authority_end)
        if at >= 0:
            userinfo, userinfo_end = text[start:at], at
    query_start = text.find("?", authority_end)
    if query_start < 0 or 0 <= text.find("#", authority_end) < query_start:
        return userinfo, userinfo_end, authority_end, "", -1
    query_end = _end_of(text, "#", query_start)
    return userinfo, userinfo_end, authority_end, text[query_start + 1 : query_end], query_start


def register_url_secrets(url: object, *, transient: bool = True) -> None:
    """Register the password of ``url`` and the values of its secret query parameters.

    Args:
        url: The URL (text, or anything whose ``str`` is one, such as ``httpx.URL``).
        transient: As for :func:`register_secret`: values a client sends with one request
            are transient; a destination's password is not.
    """
    userinfo, _, _, query, _ = _url_parts(str(url))
    if ":" in userinfo:
        password = userinfo.partition(":")[2]
        register_secret(password, transient=transient)
        register_secret(urllib.parse.unquote(password), transient=transient)
    if query:
        register_query_secrets(query, transient=transient)


def register_query_secrets(query: str, *, transient: bool = True) -> None:
    """Register the values of the secret parameters of a query string (without its ``?``)."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = urllib.parse.unquote_plus(name)
        if is_secret_param(name):
            register_secret(urllib.parse.unquote_plus(value), transient=transient)


def register_header_secrets(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], *, transient: bool = True
) -> None:
    """Register the values of secret headers.

    Of ``Authorization: Bearer <token>`` (any scheme), the token: messages keep showing the
    scheme (``Bearer ***``).
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if not is_secret_header(name):
            continue
        _, space, credentials = value.partition(" ")
        if space and name.lower() in ("authorization", "proxy-authorization"):
            register_secret(credentials.strip(), transient=transient)
        else:
            register_secret(value, transient=transient)


def redact_url(url: object) -> str:
    """A URL with its password, secret query parameters and registered secrets hidden.

    Only those parts change: the rest is left exactly as written (``duckdb:///./x.duckdb``
    stays so), and a URL too malformed to parse still has its password hidden.
    """
    text = str(url)
    userinfo, userinfo_end, _, query, query_start = _url_parts(text)
    if query:
        masked = "&".join(
            f"{raw.partition('=')[0]}={MASK}" if "=" in raw and is_secret_param(name) else raw
            for raw, name, _ in _query_pairs(query)
        )
        text = text[: query_start + 1] + masked + text[query_start + 1 + len(query) :]
    if ":" in userinfo:
        start = userinfo_end - len(userinfo)
        text = f"{text[:start]}{userinfo.partition(':')[0]}:{MASK}{text[userinfo_end:]}"
    return redact(text)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict, with secret headers' values and registered secrets hidden."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: MASK if is_secret_header(name) else redact(value) for name, value in items}


def _format_exception(exc_info: Any) -> str:
    text = "".join(traceback.format_exception(*exc_info))
    return text[:-1] if text.endswith("\n") else text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a log record in place: message, arguments, traceback and stack.

    A record without a secret is left as it was (its ``msg`` and ``args`` intact, for
    handlers that group by the template). The traceback is formatted here only when it holds
    a secret: then the redacted text is stored as ``exc_text``, which :class:`logging.Formatter`
    prints instead of formatting the exception itself. ``extra`` fields are not seen here
    (the logger adds them after the record is made); headwater's formatters redact them.
    """
    if not _ordered:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: logging reports it when a handler formats it
        message = None
    if message is not None:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = _format_exception(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:
            record.exc_text = cleaned
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _install_record_factory() -> None:
    """Wrap the current log record factory with :func:`redact_record` (once)."""
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
    if getattr(previous, "_headwater_redacting", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    make_record._headwater_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


_install_record_factory()
