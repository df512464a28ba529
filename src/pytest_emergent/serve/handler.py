"""The HTTP side of the server: routes `/v1/models`, `/v1/chat/completions` and the fault
control endpoints to a `ModelServer`, checks the key, and plays injected faults."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from pytest_emergent.serve.request import RequestError

if TYPE_CHECKING:
    from pytest_emergent.serve.server import ModelServer

__all__ = ["handler_for"]


def handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class of `server`: routes, auth, faults, JSON in and out."""

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
