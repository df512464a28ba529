"""What a chat-completions request asks for: its messages and integer fields, checked;
`RequestError` (a 4xx) for a request that is wrong."""

from __future__ import annotations

from typing import Any

from pytest_emergent.models.base import Messages, as_messages

__all__ = ["RequestError", "int_field", "parse_messages"]


class RequestError(Exception):
    """A 4xx: the request is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer in {low}..{high}")
    return value


def parse_messages(body: dict[str, Any]) -> tuple[Messages, str]:
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
