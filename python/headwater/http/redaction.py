"""Keeping secrets out of log lines, exceptions and cassettes.

Every credential an :mod:`headwater.http` auth holds (tokens, passwords, API keys, OAuth client
secrets, and the access tokens it obtains) is registered here with :func:`register_secret`.
:func:`redact` replaces registered secrets in any text; :func:`redact_url` also hides the values
of query parameters whose names say they are secret (``token``, ``api_key`` ...) and the
password of a URL. A logging filter installed on ``httpx``, ``httpcore`` and ``headwater.http``
applies :func:`redact` to every record they log, so neither headwater's lines nor httpx's own
``HTTP Request: GET ...`` lines show a secret.

Example:
    >>> from headwater.http.redaction import redact, redact_url, register_secret
    >>> register_secret("s3cr3t-t0ken")
    >>> redact("Authorization: Bearer s3cr3t-t0ken")
    'Authorization: Bearer ***'
    >>> redact_url("https://api.example.com/items?api_key=abc123&page=2")
    'https://api.example.com/items?api_key=***&page=2'
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping

__all__ = [
    "MASK",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "redact",
    "redact_headers",
    "redact_url",
    "register_secret",
]

#: What a secret is replaced with.
MASK = "***"

#: Query parameters (lowercase) whose values are always hidden in URLs.
SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "api-key",
        "apikey",
        "client_secret",
        "password",
        "refresh_token",
        "secret",
        "signature",
        "token",
    }
)

#: Headers (lowercase) whose values are always hidden.
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

# Shorter values are not registered: masking every "ab" in a message hides more than it protects.
_MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_extra_params: set[str] = set()
_extra_headers: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(
    secret: str | None, *, param: str | None = None, header: str | None = None
) -> None:
    """Hide ``secret`` from now on in every log line and error headwater writes.

    Args:
        secret: The secret value (a token, a password, an API key). ``None`` and values
            shorter than four characters are ignored. Its URL-encoded form is hidden too.
        param: A query parameter whose value is secret from now on.
        header: A header whose value is secret from now on.
    """
    global _pattern
    with _lock:
        if param:
            _extra_params.add(param.lower())
        if header:
            _extra_headers.add(header.lower())
        if not secret or len(secret) < _MIN_SECRET_LENGTH:
            return
        forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
        if forms <= _secrets:
            return
        _secrets.update(forms)
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def is_secret_param(name: str) -> bool:
    """Whether the values of query parameter ``name`` are hidden."""
    lowered = name.lower()
    return lowered in SECRET_PARAMS or lowered in _extra_params


def is_secret_header(name: str) -> bool:
    """Whether the values of header ``name`` are hidden."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or lowered in _extra_headers


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_url(url: object) -> str:
    """A URL with its password, secret query parameters and registered secrets hidden."""
    text = str(url)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return redact(text)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = parts.query
    if query:
        pairs = query.split("&")
        for index, pair in enumerate(pairs):
            name, sep, _ = pair.partition("=")
            if sep and is_secret_param(urllib.parse.unquote_plus(name)):
                pairs[index] = f"{name}={MASK}"
        query = "&".join(pairs)
    return redact(
        urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    )


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict, with secret headers' values and registered secrets hidden."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: MASK if is_secret_header(name) else redact(value) for name, value in items}


class RedactingFilter(logging.Filter):
    """A logging filter that hides registered secrets in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record is left to logging to report
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()
#: Loggers that may show URLs, headers or bodies of requests.
LOGGERS = (
    "headwater.http",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


def install_log_filter() -> None:
    """Add the redacting filter to the loggers of :data:`LOGGERS` (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


install_log_filter()
