"""Keeping the API key out of sight: a holder whose repr never shows it, and the scrubbing of
keys, bearer tokens and URL credentials from any text that may reach a message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["public_url", "scrub"]


class _Secret:
    """Holds the API key; its repr and str never show it (tracebacks with locals included)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"

    __str__ = __repr__


def public_url(url: str) -> str:
    """`url` without user:password@ and without a query string (which may carry keys)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret, bearer token and URL credential replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
        elif secret:  # a short key: only where it stands as a token, not inside words
            text = re.sub(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", "***", text)
    text = re.sub(r"(?i)(bearer\s+)[^\s'\",]+", r"\1***", text)
    text = re.sub(r"(?i)(api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s'\",&]+", r"\1***", text)
    return re.sub(r"(://)[^/\s@]+@", r"\1***@", text)
