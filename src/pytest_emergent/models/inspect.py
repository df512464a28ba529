"""inspect-ai in both directions (see docs/api-judges.md).

- `InspectBackend` (`inspect:PROVIDER/MODEL`): any inspect-ai model as our model under test
  or judge, through `inspect_ai.model.get_model(...).generate(...)`. Judging asks for one
  token at temperature 0 with the top-20 logprobs, like the `openai:` backend; a provider that
  returns no logprobs (e.g. `mockllm/model`) makes every judgment fail, which the judge records
  as unscored with the error, never as a score.
- `EmergentModelAPI`, the inspect model provider `emergent/SPEC`: any of our specs (the embedded
  model, a checkpoint, an adapter) as an inspect model, so `inspect eval pytest_emergent/core
  --model emergent/smollm2-135m-instruct` samples exactly what the pytest plugin samples for
  the same seed. Concurrent inspect samples are decoded together in one batch.

inspect_ai is imported only when one of these is used. inspect allows one `eval` at a time per
process; the backend's own calls run on a private event loop (in a helper thread when a loop
is already running).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from pytest_emergent.errors import BackendError, MissingDependencyError, ModelSpecError
from pytest_emergent.models.base import (
    Backend,
    CandidateProbs,
    Messages,
    SampleRequest,
    ScoreRequest,
)
from pytest_emergent.models.openai.backend import TOP_LOGPROBS
from pytest_emergent.models.openai.calls import outcomes_failing_fast, run_sync, settled
from pytest_emergent.models.openai.responses import map_top_logprobs

__all__ = ["InspectBackend", "from_spec", "inspect_messages", "register_model_api"]


def _require() -> None:
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        raise MissingDependencyError("inspect-ai", "inspect", "inspect-ai models") from None


def inspect_messages(messages: Messages) -> list[Any]:
    """Our (role, content) pairs as inspect chat messages."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser,
             "assistant": ChatMessageAssistant}
    out = []
    for role, content in messages:
        if role not in kinds:
            raise BackendError(f"inspect models take system/user/assistant messages, not {role!r}")
        out.append(kinds[role](content=content))
    return out


class InspectBackend:
    """An inspect-ai model behind our Backend protocol (`inspect:PROVIDER/MODEL`)."""

    is_local = False

    def __init__(self, name: str, *, spec: str | None = None, concurrency: int = 8,
                 model: Any = None) -> None:
        _require()
        import hashlib

        self.name = name
        self.spec = spec or f"inspect:{name}"
        self.fingerprint = "inspect-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        self.concurrency = concurrency
        self._model = model  # a ready inspect Model (tests pass mockllm with custom outputs)

    def _get(self) -> Any:
        if self._model is None:
            from inspect_ai.model import get_model

            try:
                self._model = get_model(self.name)
            except Exception as exc:
                raise ModelSpecError(f"model spec {self.spec!r}: inspect-ai says: {exc}") from None
        return self._model

    def _run(self, calls: Sequence[Any]) -> list[Any]:
        """Each call's output, or the `BackendError` it failed with (`outcomes_failing_fast`)."""
        model = self._get()

        async def main() -> list[Any]:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(call: Any) -> Any:
                async with gate:
                    messages, config = call
                    try:
                        return await model.generate(messages, config=config)
                    except Exception as exc:
                        raise BackendError(f"{self.spec}: {type(exc).__name__}: {exc}") from None

            return await outcomes_failing_fast([one(c) for c in calls])

        try:
            return run_sync(main)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"{self.spec}: {type(exc).__name__}: {exc}") from None

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        from inspect_ai.model import GenerateConfig

        outputs = self._run([
            (inspect_messages(r.messages),
             GenerateConfig(temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed))
            for r in requests
        ])

        def answer(out: Any) -> Any:
            if isinstance(out, BackendError):
                return out
            if getattr(out, "error", None):
                return BackendError(f"{self.spec}: {out.error}")
            return str(out.completion).strip()

        return settled([answer(out) for out in outputs], "generation")

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        from inspect_ai.model import GenerateConfig

        config = GenerateConfig(temperature=0.0, max_tokens=1, seed=0, logprobs=True,
                                top_logprobs=TOP_LOGPROBS)
        outputs = self._run([(inspect_messages(r.messages), config) for r in requests])

        def probs(request: ScoreRequest, out: Any) -> Any:
            if isinstance(out, BackendError):
                return out
            choice = out.choices[0] if out.choices else None
            content = choice.logprobs.content if choice and choice.logprobs else None
            if not content:
                return BackendError(
                    f"{self.spec}: the model returned no logprobs; a logprob judge needs a "
                    "provider that supports logprobs and top_logprobs"
                )
            first = content[0]
            top = first.top_logprobs or [first]
            return map_top_logprobs([(t.token, t.logprob) for t in top], request.candidates)

        return settled([probs(r, out) for r, out in zip(requests, outputs, strict=True)],
                       "judgment")

    def close(self) -> None:
        return None


def from_spec(spec: str) -> InspectBackend:
    """`inspect:PROVIDER/MODEL` -> InspectBackend (the model is created on first use)."""
    _, _, name = spec.partition(":")
    return InspectBackend(name.strip(), spec=spec)


# -- our backends as an inspect model provider ---------------------------------------------

class _Batcher:
    """Collects generation requests from concurrent callers and decodes them together."""

    def __init__(self, backend: Backend, max_batch: int = 32) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._jobs: queue.Queue[tuple[SampleRequest, Future[str]]] = queue.Queue()
        threading.Thread(target=self._work, name="emergent-inspect-batcher", daemon=True).start()

    def submit(self, request: SampleRequest) -> Future[str]:
        done: Future[str] = Future()
        self._jobs.put((request, done))
        return done

    def _work(self) -> None:
        while True:
            batch = [self._jobs.get()]
            time.sleep(0.01)  # let inspect's concurrent samples arrive together
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                answers = self.backend.generate([r for r, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for (_, done), answer in zip(batch, answers, strict=True):
                done.set_result(answer)


_BATCHERS: dict[tuple[str, int], _Batcher] = {}
_BATCHERS_LOCK = threading.Lock()


def _batcher(spec: str, max_batch: int = 32) -> _Batcher:
    with _BATCHERS_LOCK:
        if (spec, max_batch) not in _BATCHERS:
            from pytest_emergent.models.registry import resolve

            _BATCHERS[(spec, max_batch)] = _Batcher(resolve(spec), max_batch)
        return _BATCHERS[(spec, max_batch)]


_REGISTERED: list[Any] = []


def register_model_api() -> Any:
    """Register the `emergent` inspect model provider (idempotent); returns its class."""
    if _REGISTERED:
        return _REGISTERED[0]
    from inspect_ai.model import GenerateConfig, ModelAPI, ModelOutput, modelapi

    class EmergentModelAPI(ModelAPI):
        """`emergent/SPEC`: one of pytest-emergent's model specs as an inspect model.
        `model_args={"max_batch": N}` caps how many concurrent samples decode together
        (default 32); 1 makes answers independent of arrival timing (float32 kernels are
        not batch-invariant)."""

        def __init__(self, model_name: str, base_url: str | None = None,
                     api_key: str | None = None, config: GenerateConfig | None = None,
                     **model_args: Any) -> None:
            super().__init__(model_name=model_name, base_url=base_url, api_key=api_key,
                             config=config or GenerateConfig())
            # the backend loads on first generate, so a replayed log never loads it
            self.spec = model_name
            self.max_batch = max(1, int(model_args.get("max_batch", 32)))

        def max_connections(self) -> int:
            return 32

        async def generate(self, input: list[Any], tools: list[Any], tool_choice: Any,
                           config: GenerateConfig) -> ModelOutput:
            from pytest_emergent.models.base import as_messages

            messages = as_messages([(m.role, m.text) for m in input])
            request = SampleRequest(
                messages,
                temperature=1.0 if config.temperature is None else float(config.temperature),
                max_tokens=256 if config.max_tokens is None else int(config.max_tokens),
                seed=0 if config.seed is None else int(config.seed),
            )
            batcher = await asyncio.to_thread(_batcher, self.spec, self.max_batch)
            answer = await asyncio.wrap_future(batcher.submit(request))
            return ModelOutput.from_content(model=self.spec, content=answer)

    _REGISTERED.append(modelapi(name="emergent")(EmergentModelAPI))
    return _REGISTERED[0]
