"""OpenAI-compatible chat-completions backend (`openai:MODEL`), for models and judges.

Works with api.openai.com and with any server that speaks the chat-completions protocol
(vLLM, llama.cpp server, Ollama, `python -m pytest_emergent.serve`). See docs/api-judges.md.

- Generation: one chat completion per answer, with the request's `seed`, `temperature` and
  `max_tokens`, so a server that honours seeds reproduces every answer.
- Judging: one completion with `max_tokens=1`, temperature 0, `logprobs=True`,
  `top_logprobs=20`; the top-20 first tokens are mapped onto the judge's candidates (a token
  that strips to an integer 0..100 is that number; a token that starts `REFUSAL`, `CODE` or a
  label is that word). Candidates outside the top 20 are absent (`exact=False`).
- Requests run concurrently on one event loop, at most `concurrency` at a time; 429s, 5xx,
  timeouts, connection errors and malformed bodies are retried with exponential backoff
  (honouring `Retry-After`); after `max_retries` the call raises `BackendError` naming the
  cause. The requests not done by then are cancelled (a dead endpoint fails after one
  request's retries), and the results of those that finished go with the error
  (`PartialBatchError.done`), so they are cached and judged. Nothing is ever returned for a
  failed request.
- The API key never appears in messages, reprs or fingerprints: it is held in a `_Secret`
  and scrubbed from every error text.

The `openai` package is imported only when a request is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pytest_emergent.errors import (
    BackendError,
    MissingDependencyError,
    ModelSpecError,
    PartialBatchError,
)
from pytest_emergent.models.base import (
    CandidateProbs,
    SampleRequest,
    ScoreRequest,
    as_dicts,
)
from pytest_emergent.models.openai.calls import outcomes_failing_fast, run_sync, settled
from pytest_emergent.models.openai.digits import digit_probs
from pytest_emergent.models.openai.redact import _Secret, public_url, scrub
from pytest_emergent.models.openai.responses import (
    error_text,
    first_top_logprobs,
    map_top_logprobs,
    message_content,
    retry_after,
)

__all__ = ["ApiOptions", "OpenAICompatBackend", "from_spec", "map_top_logprobs", "scrub"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: how many first-token alternatives a judge asks for (the OpenAI maximum)
TOP_LOGPROBS = 20
#: requests in flight by default against a self-hosted server (vLLM batches what arrives
#: together); the OpenAI API keeps `ApiOptions.concurrency`, sized for its rate limits
SERVER_CONCURRENCY = 64
_T = TypeVar("_T")


@dataclass(frozen=True)
class ApiOptions:
    """Transport settings; each has an environment variable (see docs/api-judges.md)."""

    #: requests in flight at once (PYTEST_EMERGENT_API_CONCURRENCY)
    concurrency: int = 8
    #: seconds per request before it counts as timed out (PYTEST_EMERGENT_API_TIMEOUT)
    timeout: float = 60.0
    #: retries after the first attempt (PYTEST_EMERGENT_API_RETRIES)
    max_retries: int = 5
    #: first backoff in seconds, doubled per retry with jitter (PYTEST_EMERGENT_API_BACKOFF)
    backoff: float = 1.0
    #: longest single wait, Retry-After included
    max_backoff: float = 30.0

    @classmethod
    def from_env(cls, **overrides: Any) -> ApiOptions:
        """Defaults, then environment variables, then explicit `overrides` (None = unset)."""
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        for name, env, kind in (("concurrency", "CONCURRENCY", int), ("timeout", "TIMEOUT", float),
                                ("max_retries", "RETRIES", int), ("backoff", "BACKOFF", float)):
            raw = os.environ.get(f"PYTEST_EMERGENT_API_{env}")
            if raw not in (None, ""):
                source[name] = f"PYTEST_EMERGENT_API_{env}"
                try:
                    values[name] = kind(raw)
                except ValueError:
                    wanted = "an integer" if kind is int else "a number"
                    raise ModelSpecError(
                        f"PYTEST_EMERGENT_API_{env}: expected {wanted}, got {raw!r}"
                    ) from None
        for k, v in overrides.items():
            if v is not None:
                values[k] = v
                source[k] = k
        opts = cls(**values)
        for name, low, strict in (("concurrency", 1, False), ("timeout", 0, True),
                                  ("max_retries", 0, False), ("backoff", 0, False)):
            value = getattr(opts, name)
            bad = (not math.isfinite(value)) or (value <= low if strict else value < low)
            if bad:
                need = f"more than {low}" if strict else f"at least {low}"
                raise ModelSpecError(f"{source.get(name, name)}: must be a finite number "
                                     f"{need}, got {value!r}")
        return opts


class _Retryable(Exception):
    """A failure worth another attempt; `wait` is the server's Retry-After, if it sent one."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class OpenAICompatBackend:
    """A chat model behind an OpenAI-compatible HTTP API (see the module docstring)."""

    is_local = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        options: ApiOptions | None = None,
        spec: str | None = None,
        digits: bool = False,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        #: score numbers digit by digit (`openai-digits:`; see models/openai/digits.py)
        self.digits = digits
        self.spec = spec or f"{'openai-digits' if digits else 'openai'}:{model}"
        self.options = options or ApiOptions()
        self._key = _Secret(api_key or "")
        kind = "openai-digits" if digits else "openai"
        blob = f"{kind}\x00{public_url(self.base_url)}\x00{model}".encode()
        self.fingerprint = "api-" + hashlib.sha256(blob).hexdigest()[:16]
        #: requests sent (attempts, retries included), for the curious and for tests
        self.attempts = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAICompatBackend({self.model!r}, base_url={public_url(self.base_url)!r})"

    # -- the Backend protocol -----------------------------------------------------------------

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        """One chat completion per request, `seed` included; raises `BackendError`."""

        def one(client: Any) -> Callable[[SampleRequest], Awaitable[str]]:
            async def call(request: SampleRequest) -> str:
                body = await self._create(
                    client,
                    messages=as_dicts(request.messages),
                    temperature=float(request.temperature),
                    max_tokens=int(request.max_tokens),
                    seed=int(request.seed),
                )
                return message_content(body).strip()

            return call

        return self._run_all(requests, one, what="generation")

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        """Top-20 first-token logprobs mapped onto the candidates; raises `BackendError`."""

        def one(client: Any) -> Callable[[ScoreRequest], Awaitable[CandidateProbs]]:
            async def top(request: ScoreRequest, text: str) -> list[tuple[str, float]]:
                """The next token's top logprobs after the assistant turn so far + `text`."""
                extra: dict[str, Any] = {}
                messages = as_dicts(request.messages)
                started = (request.assistant_prefix or "") + text
                if started:
                    # continue a started assistant turn (vLLM's and our server's convention)
                    messages.append({"role": "assistant", "content": started})
                    extra = {"continue_final_message": True, "add_generation_prompt": False}
                body = await self._create(
                    client,
                    messages=messages,
                    temperature=0.0,
                    max_tokens=1,
                    logprobs=True,
                    top_logprobs=TOP_LOGPROBS,
                    seed=0,
                    extra_body=extra or None,
                )
                return first_top_logprobs(body)

            async def call(request: ScoreRequest) -> CandidateProbs:
                if self.digits:
                    return await digit_probs(lambda text: top(request, text),
                                             request.candidates)
                return map_top_logprobs(await top(request, ""), request.candidates)

            return call

        return self._run_all(requests, one, what="judgment")

    def close(self) -> None:
        return None

    # -- transport ------------------------------------------------------------------------

    def _run_all(
        self,
        requests: Sequence[Any],
        make: Callable[[Any], Callable[[Any], Awaitable[_T]]],
        *,
        what: str,
    ) -> list[_T]:
        if not requests:
            return []

        async def main() -> list[_T]:
            client = self._client()
            gate = asyncio.Semaphore(self.options.concurrency)
            call = make(client)

            async def bounded(request: Any) -> _T:
                async with gate:
                    return await call(request)

            try:
                outcomes = await outcomes_failing_fast([bounded(r) for r in requests])
            finally:
                await client.close()
            return settled(outcomes, what)

        try:
            return run_sync(main)
        except PartialBatchError as exc:  # the successful requests' results travel with it
            raise PartialBatchError(self._clean(f"{self.spec}: {what} failed: {exc}"),
                                    exc.done) from None
        except BackendError as exc:
            raise BackendError(self._clean(f"{self.spec}: {what} failed: {exc}")) from None

    def _client(self) -> Any:
        try:
            import openai
        except ImportError:
            raise MissingDependencyError(
                "openai", "openai", f"the API model {self.spec!r}"
            ) from None
        # retries are ours (so every cause is counted and reported); the client does none
        return openai.AsyncOpenAI(
            api_key=self._key.get() or "EMPTY",
            base_url=self.base_url,
            timeout=self.options.timeout,
            max_retries=0,
        )

    async def _create(self, client: Any, **params: Any) -> Any:
        """One completion with retries; returns the parsed body (a dict)."""
        params = {k: v for k, v in params.items() if v is not None}
        last = "no attempt made"
        wait: float | None = None
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, wait))
            with self._lock:
                self.attempts += 1
            try:
                return await self._attempt(client, params)
            except _Retryable as exc:
                last, wait = str(exc), exc.wait
        raise BackendError(
            f"gave up after {self.options.max_retries + 1} attempts; last error: {last}"
        )

    def _delay(self, attempt: int, wait: float | None) -> float:
        base = self.options.backoff * (2 ** (attempt - 1))
        delay = base * (0.5 + random.random() / 2)  # jitter spreads concurrent retries
        if wait is not None:
            delay = max(delay, wait)
        return float(min(delay, self.options.max_backoff))

    async def _attempt(self, client: Any, params: dict[str, Any]) -> Any:
        import openai

        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=self.model, **params
            )
        except openai.APITimeoutError:
            raise _Retryable(f"timed out after {self.options.timeout:g}s") from None
        except openai.APIConnectionError as exc:
            raise _Retryable(f"connection error: {self._clean(str(exc))}") from None
        except openai.RateLimitError as exc:
            raise _Retryable(
                f"rate limited (HTTP 429): {self._clean(error_text(exc))}", retry_after(exc)
            ) from None
        except openai.APIStatusError as exc:
            message = f"HTTP {exc.status_code}: {self._clean(error_text(exc))}"
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise _Retryable(message, retry_after(exc)) from None
            # 4xx: the request itself is wrong (bad key, unknown model); retrying cannot help
            raise BackendError(message) from None
        except openai.APIError as exc:
            raise _Retryable(f"bad response: {self._clean(str(exc))}") from None
        try:
            body = raw.http_response.json()
        except Exception:
            snippet = raw.http_response.text[:120]
            raise _Retryable(f"malformed response body: {self._clean(repr(snippet))}") from None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body[
            "choices"
        ]:
            raise _Retryable(f"malformed response: no choices in {self._clean(repr(body))[:160]}")
        return body

    def _clean(self, text: str) -> str:
        return scrub(text, [self._key.get()])


def from_spec(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    backoff: float | None = None,
) -> OpenAICompatBackend:
    """Build the backend for `openai:MODEL` (or `openai-digits:MODEL`, which scores numbers
    digit by digit).

    The base URL is `base_url` (`--judge-base-url`), else `$OPENAI_BASE_URL`, else the OpenAI
    API. The key is `api_key`, else `$PYTEST_EMERGENT_JUDGE_API_KEY` when `base_url` was given,
    else `$OPENAI_API_KEY`; a server on another host than api.openai.com may need none.
    """
    prefix, _, model = spec.partition(":")
    model = model.strip()
    if not model:
        raise ModelSpecError(f"model spec {spec!r}: nothing after '{prefix}:'")
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if not urlsplit(url).scheme.startswith("http"):
        raise ModelSpecError(
            f"model spec {spec!r}: base URL {public_url(url)!r} must start with http:// or https://"
        )
    key = api_key
    if key is None and base_url:
        key = os.environ.get("PYTEST_EMERGENT_JUDGE_API_KEY")
    if key is None:
        key = os.environ.get("OPENAI_API_KEY")
    if not key and urlsplit(url).hostname == "api.openai.com":
        raise ModelSpecError(
            f"model spec {spec!r}: the OpenAI API needs a key; set OPENAI_API_KEY (or point "
            "OPENAI_BASE_URL / --judge-base-url at a compatible server)"
        )
    if (concurrency is None and not os.environ.get("PYTEST_EMERGENT_API_CONCURRENCY")
            and urlsplit(url).hostname != "api.openai.com"):
        concurrency = SERVER_CONCURRENCY
    options = ApiOptions.from_env(
        concurrency=concurrency, timeout=timeout, max_retries=max_retries, backoff=backoff
    )
    return OpenAICompatBackend(model, base_url=url, api_key=key, options=options, spec=spec,
                               digits=prefix == "openai-digits")

