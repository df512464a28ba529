"""A small OpenAI-compatible server for a local model (the transformers backend).

    python -m pytest_emergent.serve --model smollm2-135m-instruct --port 8000

serves `POST /v1/chat/completions` and `GET /v1/models` on 127.0.0.1 with the standard library
only. It exists so that the `openai:` backend can be tested against a real HTTP server with a
real model, and so that a self-hosted judge can be tried without installing vLLM. It honours
`messages`, `max_tokens` / `max_completion_tokens`, `temperature`, `seed`, `n` (choice `i`
uses seed `seed + i`), `logprobs`, `top_logprobs` (0..20, per generated token, from the
model's raw next-token distribution) and, like vLLM, `continue_final_message: true` with a
final assistant message (the reply continues that text). Sampling goes through the same
`HFBackend` code as in-process evaluation, so an answer with a given seed is the answer the
direct path samples. Streaming and tools are not supported.

Requests that arrive together are decoded together: a worker thread collects whatever is
queued (up to `max_batch`) and sends it through the backend's batched decode loop.

With `faults=True` (`--enable-faults`) a control endpoint `POST /_faults` with
`{"mode": M, "count": K}` makes the next K chat requests fail with mode M: `429`, `500`,
`hang` (no reply for `hang_s` seconds), `malformed` (a 200 with a body that is not JSON),
`no_logprobs` (a normal reply without logprobs) or `401_echo` (a 401 whose message echoes the
presented key, as some servers do). `GET /_stats` counts requests; `DELETE /_faults` clears.
Never enable faults on a server someone else uses.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pytest_emergent.models.base import Messages, SampleRequest, as_messages

__all__ = ["ModelServer", "main"]

MAX_TOP_LOGPROBS = 20
FAULT_MODES = ("429", "500", "hang", "malformed", "no_logprobs", "401_echo")


class RequestError(Exception):
    """A 4xx: the request is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
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
        messages, prefix = _parse_messages(body)
        n = _int(body, "n", 1, 1, 128)
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
            top = _int(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
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


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer in {low}..{high}")
    return value


def _parse_messages(body: dict[str, Any]) -> tuple[Messages, str]:
    """(messages, assistant prefix) of a request; content parts are joined as text."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list")
    items: list[dict[str, str]] = []
    for m in raw:
        if not isinstance(m, dict) or "role" not in m:
            raise RequestError("each message needs a role and content")
        content = m.get("content") or ""
        if isinstance(content, list):
            content = "".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict)
                and p.get("type") == "text"
            )
        items.append({"role": str(m["role"]), "content": str(content)})
    prefix = ""
    if body.get("continue_final_message") or body.get("add_generation_prompt") is False:
        if items[-1]["role"] != "assistant":
            raise RequestError("continue_final_message needs a final assistant message")
        prefix = items.pop()["content"]
        if not items:
            raise RequestError("messages must hold more than the assistant prefix")
    return as_messages(items), prefix


def _handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return None

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up
                pass

        def _error(self, status: int, message: str, kind: str,
                   headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}},
                       headers)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _authorised(self) -> bool:
            if not server.api_key:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {server.api_key}":
                return True
            self._error(401, "Incorrect API key provided.", "invalid_request_error")
            return False

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                if self._authorised():
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model_name, "object": "model", "owned_by": "local"}]})
            elif self.path == "/_stats" and server.faults_enabled:
                self._send(200, dict(server.stats))
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_DELETE(self) -> None:
            if self.path == "/_faults" and server.faults_enabled:
                server.clear_faults()
                self._send(200, {"ok": True})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self) -> None:
            try:
                body = self._body()
            except ValueError:
                self._error(400, "request body is not JSON", "invalid_request_error")
                return
            if self.path == "/_faults" and server.faults_enabled:
                try:
                    server.inject(str(body.get("mode")), int(body.get("count", 1)),
                                  float(body.get("hang_s", 30.0)))
                except (ValueError, TypeError) as exc:
                    self._error(400, str(exc), "invalid_request_error")
                    return
                self._send(200, {"ok": True})
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "not_found")
                return
            fault = server._take_fault() if server.faults_enabled else None
            mode = fault[0] if fault else None
            if mode == "401_echo":
                presented = self.headers.get("Authorization", "")
                self._error(401, f"Incorrect API key provided: {presented}",
                            "invalid_request_error")
                return
            if not self._authorised():
                return
            if mode == "429":
                self._error(429, "Rate limit reached (injected)", "rate_limit_error",
                            {"Retry-After": "0"})
                return
            if mode == "500":
                self._error(500, "internal error (injected)", "server_error")
                return
            if mode == "hang":
                time.sleep(fault[1] if fault else 0.0)
                self.close_connection = True
                return
            if mode == "malformed":
                self._send(200, None, raw=b'{"choices": [{"message": ')
                return
            if not isinstance(body, dict):
                self._error(400, "request body must be a JSON object", "invalid_request_error")
                return
            try:
                reply = server.chat(body)
            except RequestError as exc:
                self._error(exc.status, str(exc), "invalid_request_error")
                return
            except Exception as exc:
                self._error(500, f"{type(exc).__name__}: {exc}", "server_error")
                return
            if mode == "no_logprobs":
                for choice in reply["choices"]:
                    choice["logprobs"] = None
            server.stats["ok"] += 1
            self._send(200, reply)

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.serve",
        description="Serve a local model over an OpenAI-compatible chat-completions API.",
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="local model spec")
    parser.add_argument("--name", default=None, help="model name reported by /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-env", default=None,
                        help="require the key held in this environment variable")
    parser.add_argument("--batch-size", type=int, default=32, help="rows decoded together")
    parser.add_argument("--enable-faults", action="store_true",
                        help="enable the /_faults control endpoint (tests only)")
    args = parser.parse_args(argv)

    from pytest_emergent.models.registry import resolve

    backend = resolve(args.model, batch_size=args.batch_size)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = ModelServer(backend, model_name=args.name or args.model, host=args.host,
                         port=args.port, api_key=key, faults=args.enable_faults,
                         max_batch=args.batch_size)
    server.start()
    print(f"serving {args.model} at {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
