"""One exception family. Messages name the file, the question and the field at fault."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class EmergentError(Exception):
    """Base class of every error this package raises on purpose."""


class QuestionError(EmergentError):
    """A question file is malformed: the message says where and what to change."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        question: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.question = question
        self.field = field
        self.detail = message
        parts = []
        if self.path:
            parts.append(self.path)
        if question is not None:
            parts.append(f"question {question!r}")
        if field is not None:
            parts.append(f"{field!r}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ModelSpecError(EmergentError):
    """A `--model` / `--judge` spec cannot be resolved to a backend."""


class MissingDependencyError(EmergentError):
    """An optional package is needed; the message says which extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'pytest-emergent[{extra}]'"
        )


class BackendError(EmergentError):
    """A backend failed to produce an answer or a judgment (after any retries)."""


class PartialBatchError(BackendError):
    """Some requests of one call failed (after any retries) and the rest succeeded: `done`
    maps each successful request's position in the call to its result, so that what was
    already computed (and, for an API, paid for) is kept and only the failures count."""

    def __init__(self, message: str, done: Mapping[int, Any]) -> None:
        super().__init__(message)
        self.done = dict(done)


def require(module: str, extra: str, purpose: str) -> object:
    """Import an optional module or raise an install hint naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
