"""Keeping secrets out of log lines, exceptions and cassettes of :mod:`headwater.http`.

The registry and the redaction functions live in :mod:`headwater.redaction` (they serve all
of headwater, not only HTTP); they are re-exported here. Every credential an auth holds
(tokens, passwords, API keys, OAuth client secrets, and the access tokens it obtains) is
registered with :func:`register_secret`, and so is the value of every secret-named query
parameter and header a client sends (:func:`register_request`): an error body that echoes
the request shows ``***`` in their place. :func:`redact_url` also hides the values of query
parameters whose names say they are secret (``key``, ``sig``, ``token``, ``api_key`` ...,
see :data:`SECRET_PARAMS`) and the password of a URL.

Example:
    >>> from headwater.http.redaction import redact, redact_url, register_secret
    >>> register_secret("s3cr3t-t0ken")
    >>> redact("Authorization: Bearer s3cr3t-t0ken")
    'Authorization: Bearer ***'
    >>> redact_url("https://api.example.com/items?key=abc123&page=2")
    'https://api.example.com/items?key=***&page=2'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.redaction import (
    MASK,
    MIN_SECRET_LENGTH,
    SECRET_HEADERS,
    SECRET_PARAMS,
    is_secret_header,
    is_secret_param,
    redact,
    redact_bytes,
    redact_headers,
    redact_url,
    register_header_secrets,
    register_query_secrets,
    register_secret,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "is_secret_header",
    "is_secret_param",
    "redact",
    "redact_bytes",
    "redact_headers",
    "redact_url",
    "register_request",
    "register_secret",
]


def register_request(request: httpx.Request) -> None:
    """Register the secret query parameters and headers ``request`` sends, as transient secrets.

    Called by the clients before each request goes out, so that an answer echoing the request
    (an error body, a debug endpoint) is masked by the values, whatever the names it uses.
    It runs for every request, so it reads httpx's raw forms and decodes only what it keeps.
    """
    url = request.url
    if url.query:
        register_query_secrets(url.query.decode("ascii", errors="replace"))
    if url.userinfo:
        register_secret(url.password, transient=True)
    secret = []
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1")
        if is_secret_header(name):
            secret.append((name, raw_value.decode("latin-1")))
    if secret:
        register_header_secrets(secret)
