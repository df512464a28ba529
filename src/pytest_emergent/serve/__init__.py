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

from pytest_emergent.serve.cli import main
from pytest_emergent.serve.request import RequestError as RequestError
from pytest_emergent.serve.server import FAULT_MODES as FAULT_MODES
from pytest_emergent.serve.server import MAX_TOP_LOGPROBS as MAX_TOP_LOGPROBS
from pytest_emergent.serve.server import ModelServer

__all__ = ["ModelServer", "main"]
