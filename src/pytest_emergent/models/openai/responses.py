"""What an OpenAI-compatible server sent back: a completion's text, its first token's
top logprobs mapped onto a judge's candidates, and the message and Retry-After of an error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pytest_emergent.errors import BackendError
from pytest_emergent.models.base import CandidateProbs

__all__ = ["error_text", "first_top_logprobs", "map_top_logprobs", "message_content",
           "retry_after"]


def _candidate_for(token: str, candidates: Sequence[str]) -> str | None:
    """The candidate a first token stands for, or None."""
    text = token.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        value = int(text)
        name = str(value)
        return name if value <= 100 and name in candidates else None
    if text in candidates:
        return text
    # a word split into several tokens ("REF" of "REFUSAL"): the first piece stands for it
    # when it starts exactly one non-numeric candidate; two letters at least, so "C" is not
    # read as "CODE"
    if len(text) < 2:
        return None
    words = [c for c in candidates if not c.isdigit() and c.startswith(text)]
    return words[0] if len(words) == 1 else None


def map_top_logprobs(top: Sequence[tuple[str, float]], candidates: Sequence[str]) -> CandidateProbs:
    """Map (token, logprob) pairs of the first generated token onto the candidates."""
    probs: dict[str, float] = {}
    raw: dict[str, float] = {}
    for token, logprob in top:
        p = math.exp(logprob) if logprob is not None and logprob > -1e30 else 0.0
        raw[token] = raw.get(token, 0.0) + p
        candidate = _candidate_for(token, candidates)
        if candidate is not None:
            probs[candidate] = probs.get(candidate, 0.0) + p
    return CandidateProbs(probs=probs, exact=False, top=raw)


def error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", "") or exc)


def retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def message_content(body: dict[str, Any]) -> str:
    message = body["choices"][0].get("message") or {}
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise BackendError(f"malformed response: message content is {type(content).__name__}")
    return content


def first_top_logprobs(body: dict[str, Any]) -> list[tuple[str, float]]:
    logprobs = body["choices"][0].get("logprobs") or {}
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content or not isinstance(content, list):
        raise BackendError(
            "the response has no logprobs; a logprob judge needs a server that supports "
            "`logprobs` and `top_logprobs` on chat completions"
        )
    first = content[0]
    top = first.get("top_logprobs") or [first]
    try:
        return [(str(t["token"]), float(t["logprob"])) for t in top]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"malformed logprobs entry: {exc}") from None
