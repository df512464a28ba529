"""The one backend Protocol and the plain data types that cross it.

A backend does two things: sample answers to chat conversations (`generate`) and report
the probability of a set of candidate strings as the assistant's next reply
(`candidate_probs`), which is all a logprob judge needs. The judge is just another backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pytest_emergent.spec.schema import Messages, Role

__all__ = ["Backend", "CandidateProbs", "Messages", "Role", "SampleRequest", "ScoreRequest",
           "as_dicts", "as_messages"]


def weights_fingerprint(backend: Any) -> str:
    """`backend`'s fingerprint as it is with its weights in float32: its own
    `weights_fingerprint` where it has one (the local backend, the judges over it, the cache
    wrapper), else its `fingerprint` (a precision other than float32 is part of that)."""
    return str(getattr(backend, "weights_fingerprint", None) or backend.fingerprint)


def as_messages(items: Iterable[Mapping[str, str] | tuple[str, str]]) -> Messages:
    """Normalise OpenAI-style message dicts (or tuples) to the hashable `Messages` form."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, Mapping):
            out.append((str(item["role"]), str(item["content"])))
        else:
            role, content = item
            out.append((str(role), str(content)))
    return tuple(out)


def as_dicts(messages: Messages) -> list[dict[str, str]]:
    """The OpenAI / chat-template form of `messages`."""
    return [{"role": role, "content": content} for role, content in messages]


@dataclass(frozen=True)
class SampleRequest:
    """One answer to sample. `seed` is per sample, so answers do not depend on batching."""

    messages: Messages
    temperature: float = 1.0
    max_tokens: int = 256
    seed: int = 0


@dataclass(frozen=True)
class ScoreRequest:
    """Ask for P(candidate is the whole next reply) for each candidate string.

    `assistant_prefix` is text already placed at the start of the assistant turn (it steers a
    small local judge into answering with a number). For a candidate made only of digits the
    backend includes the probability that no further digit follows, so P("4") excludes "42".
    """

    messages: Messages
    candidates: tuple[str, ...]
    assistant_prefix: str = ""


@dataclass(frozen=True)
class CandidateProbs:
    """Probabilities of candidate replies, not renormalised.

    `exact` is True when every candidate's full-string probability was computed (local
    backends); False when read from an API's top-k first-token logprobs, in which case
    candidates outside the top-k are absent. `top` keeps the most likely raw next tokens for
    the record (token text -> probability), so an unscored judgment can be explained.
    """

    probs: dict[str, float]
    exact: bool
    top: dict[str, float] = field(default_factory=dict)

    @property
    def mass(self) -> float:
        return float(sum(self.probs.values()))


@runtime_checkable
class Backend(Protocol):
    """What every model backend provides. Implementations live beside this module."""

    #: the spec string the backend was made from, e.g. "smollm2-135m-instruct"
    spec: str
    #: content hash of weights/adapter/config: a cache key that changes when the model does
    fingerprint: str
    #: True for in-process models, whose judge scores are exact full-string probabilities
    #: and which accept an `assistant_prefix`; False for API backends (top-k logprobs)
    is_local: bool

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        """Sample one answer per request, in order. Raises `BackendError` on failure."""
        ...

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        """Score the candidates of each request, in order. Raises `BackendError` on failure."""
        ...

    def close(self) -> None:
        """Release resources (servers, sessions). Safe to call twice."""
        ...


@runtime_checkable
class CountsCache(Protocol):
    """A backend that counts its cache hits (`CachedBackend`, or the stand-in for one that ran
    on xdist workers); the terminal's cache line reads these."""

    hits: int
    misses: int
