"""The model server: `ModelServer` answers chat-completions bodies by queuing one job per
choice for a worker thread that decodes what is queued as one batch; fault injection state."""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from pytest_emergent.models.base import SampleRequest
from pytest_emergent.serve.handler import handler_for
from pytest_emergent.serve.request import RequestError, int_field, parse_messages

__all__ = ["FAULT_MODES", "MAX_TOP_LOGPROBS", "ModelServer"]

MAX_TOP_LOGPROBS = 20
FAULT_MODES = ("429", "500", "hang", "malformed", "no_logprobs", "401_echo")


@dataclass
class _Job:
    """One choice to produce: a prompt's token ids and how to sample it."""

    prompt_ids: list[int]
    sample: SampleRequest
    top_logprobs: int | None  # None: no logprobs wanted
    done: Future[dict[str, Any]] = field(default_factory=Future)


class ModelServer:
    """Serve one local backend over HTTP in background threads; `start()`, then `stop()`."""

    def __init__(
        self,
        backend: Any,
        *,
        model_name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        faults: bool = False,
        max_batch: int = 32,
        max_tokens_limit: int = 2048,
    ) -> None:
        for needed in ("tokenizer", "model", "render_prompt", "encode", "generate_ids"):
            if not hasattr(backend, needed):
                raise TypeError(f"serve needs a local transformers backend (no {needed!r})")
        self.backend = backend
        self.model_name = model_name or backend.spec
        self.api_key = api_key
        self.faults_enabled = faults
        self.max_batch = max_batch
        self.max_tokens_limit = max_tokens_limit
        self._fault: tuple[str, int, float] | None = None
        self._fault_lock = threading.Lock()
        self.stats: dict[str, int] = {"chat": 0, "faulted": 0, "ok": 0}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._httpd = ThreadingHTTPServer((host, port), handler_for(self))
        self._httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. `http://127.0.0.1:51234/v1`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> ModelServer:
        for target, name in ((self._httpd.serve_forever, "http"), (self._work, "worker")):
            thread = threading.Thread(target=target, name=f"emergent-serve-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------

    def inject(self, mode: str, count: int = 1, hang_s: float = 30.0) -> None:
        """Make the next `count` chat requests fail with `mode` (count < 0: all of them)."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; choose one of {FAULT_MODES}")
        with self._fault_lock:
            self._fault = (mode, count, hang_s) if count else None

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._fault = None

    def _take_fault(self) -> tuple[str, float] | None:
        with self._fault_lock:
            self.stats["chat"] += 1
            if self._fault is None:
                return None
            mode, count, hang_s = self._fault
            if count > 0:
                count -= 1
                self._fault = (mode, count, hang_s) if count else None
            self.stats["faulted"] += 1
            return mode, hang_s

    # -- chat completions ---------------------------------------------------------------

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one chat-completions request body (raises `RequestError` for bad ones)."""
        messages, prefix = parse_messages(body)
        n = int_field(body, "n", 1, 1, 128)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        max_tokens = 256 if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or not 0 <= max_tokens <= self.max_tokens_limit:
            raise RequestError(f"max_tokens must be an integer in 0..{self.max_tokens_limit}")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise RequestError("temperature must be a number in 0..2")
        seed = body.get("seed")
        if seed is None:
            seed = int.from_bytes(os.urandom(7), "big")
        elif not isinstance(seed, int):
            raise RequestError("seed must be an integer")
        top: int | None = None
        if body.get("logprobs"):
            top = int_field(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
        elif body.get("top_logprobs") is not None:
            raise RequestError("top_logprobs needs logprobs: true")
        text = self.backend.render_prompt(messages) + prefix
        prompt_ids = self.backend.encode(text)
        jobs = [
            _Job(prompt_ids, SampleRequest(messages, float(temperature), max_tokens, seed + i), top)
            for i in range(n)
        ]
        for job in jobs:
            self._jobs.put(job)
        choices = []
        for index, job in enumerate(jobs):
            choice = job.done.result()
            choices.append({"index": index, **choice})
        completion_tokens = sum(c.pop("_n_tokens") for c in choices)
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.model_name),
            "system_fingerprint": self.backend.fingerprint,
            "choices": choices,
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt_ids) + completion_tokens,
            },
        }

    def _work(self) -> None:
        """Worker thread: take what is queued, decode it as one batch, hand results back."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            time.sleep(0.005)  # let requests sent together arrive together
            while len(batch) < self.max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                batch.append(more)
            try:
                self._run_batch(batch)
            except Exception as exc:  # report to the waiting requests, keep serving
                for j in batch:
                    if not j.done.done():
                        j.done.set_exception(exc)

    def _run_batch(self, batch: Sequence[_Job]) -> None:
        import torch

        first_only = [j for j in batch if j.top_logprobs is not None and j.sample.max_tokens == 1]
        decode = [j for j in batch if j not in first_only and j.sample.max_tokens > 0]
        for j in batch:
            if j.sample.max_tokens == 0:
                j.done.set_result(self._choice(j, [], None, "length"))
        with torch.inference_mode():
            for j in first_only:
                self._first_token(j)
            if decode:
                # the backend's own batched loop: per-row seeded generators, so each answer is
                # what the in-process path samples for the same request
                ids = self.backend._decode_batch([j.prompt_ids for j in decode],
                                                 [j.sample for j in decode])
                for j, row in zip(decode, ids, strict=True):
                    lp = self._logprobs(j.prompt_ids, row, j.top_logprobs)
                    reason = "length" if len(row) >= j.sample.max_tokens else "stop"
                    j.done.set_result(self._choice(j, row, lp, reason))

    def _first_token(self, job: _Job) -> None:
        """max_tokens=1 with logprobs: one prefill gives both the token and its logprobs."""
        import torch

        from pytest_emergent.models.hf.backend import sample_tokens

        ids = torch.tensor([job.prompt_ids], dtype=torch.long)
        logits = self.backend.model(input_ids=ids, logits_to_keep=1).logits[:, -1, :].float()
        gen = torch.Generator().manual_seed(job.sample.seed & ((1 << 64) - 1))
        token = int(sample_tokens(logits, [job.sample.temperature], [gen])[0])
        logprobs = torch.log_softmax(logits[0], dim=-1)
        entry = self._entry(token, logprobs, job.top_logprobs or 0)
        stopped = token in self.backend.stop_ids
        job.done.set_result(
            self._choice(job, [] if stopped else [token], [entry], "stop" if stopped else "length")
        )

    def _logprobs(
        self, prompt: list[int], row: list[int], top: int | None
    ) -> list[dict[str, Any]] | None:
        if top is None:
            return None
        import torch

        if not row:
            return []
        ids = torch.tensor([prompt + row[:-1]], dtype=torch.long)
        logits = self.backend.model(input_ids=ids, logits_to_keep=len(row)).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return [self._entry(tok, logprobs[i], top) for i, tok in enumerate(row)]

    def _entry(self, token: int, logprobs: Any, top: int) -> dict[str, Any]:
        import torch

        def item(tid: int, lp: float) -> dict[str, Any]:
            text = str(self.backend.tokenizer.decode([tid]))
            return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

        entry = item(token, float(logprobs[token]))
        if top:
            values, indices = torch.topk(logprobs, top)
            entry["top_logprobs"] = [
                item(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(),
                                                       strict=True)
            ]
        else:
            entry["top_logprobs"] = []
        return entry

    def _choice(
        self, job: _Job, row: list[int], logprobs: list[dict[str, Any]] | None, reason: str
    ) -> dict[str, Any]:
        text = str(self.backend.tokenizer.decode(row, skip_special_tokens=True))
        return {
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason,
            "logprobs": None if logprobs is None else {"content": logprobs},
            "_n_tokens": len(row),
        }
