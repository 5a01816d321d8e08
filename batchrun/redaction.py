"""One redaction for every error text, whatever path it came by (an HTTP error body, an
``event: error`` in a stream, an exception's message), applied before the text is stored,
printed or exported.

Two things are taken out: the secrets this process was given (each API key an endpoint is made
with is remembered here), and anything shaped like a credential even when it is not ours: a
``sk-...`` key (Anthropic's ``sk-ant-``, MiniMax's ``sk-api-``/``sk-cp-``), a JSON Web Token (an
older MiniMax key), a ``Bearer`` token, and the user name and password of a URL.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
_MIN_SECRET = 8  # shorter values are not keys, and masking them would mangle ordinary text

_known: set[str] = set()
_lock = threading.Lock()

_SHAPES = (
    re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{15,}"),  # sk-ant-..., sk-api-..., sk-cp-...
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # a JWT
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@")


def keep_secret(value: str | None) -> None:
    """Remember ``value`` (an API key) so that every later :func:`redact` takes it out."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every remembered secret and anything shaped like a credential masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # a key that holds another goes first
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for shape in _SHAPES:
        text = shape.sub(MASK, text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
