"""Running one call's requests on an event loop: from any thread (`run_sync`), and what a
call returns once every request has settled (`settled`). Used by the `openai:` and
`inspect:` backends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pytest_emergent.errors import BackendError, PartialBatchError

_T = TypeVar("_T")


def settled(outcomes: Sequence[Any], what: str) -> list[Any]:
    """The results of every request of a call, or the error of its failures: a request that
    failed after its retries does not cancel the others, and their results go with the
    `PartialBatchError` (an error that is not a `BackendError` is a bug and is raised)."""
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for outcome in failed:
        if not isinstance(outcome, BackendError):
            raise outcome
    if not failed:
        return list(outcomes)
    first = failed[0]
    if len(outcomes) == 1:
        raise first
    message = f"{len(failed)} of {len(outcomes)} {what} requests: {first}"
    done = {i: o for i, o in enumerate(outcomes) if not isinstance(o, BaseException)}
    if not done:
        raise BackendError(message)
    raise PartialBatchError(message, done)


def run_sync(main: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())  # type: ignore[arg-type]
    # a loop already runs in this thread (inspect, pytest-asyncio): use a fresh one elsewhere
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(main()))  # type: ignore[arg-type]
        except BaseException as exc:  # handed back to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="pytest-emergent-api")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
