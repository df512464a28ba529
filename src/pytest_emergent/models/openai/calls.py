"""Running one call's requests on an event loop: from any thread (`run_sync`), stopping the
rest once one fails (`outcomes_failing_fast`), and what the call then returns or raises
with the results that came back (`settled`). Used by the `openai:` and `inspect:`
backends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pytest_emergent.errors import BackendError, PartialBatchError

_T = TypeVar("_T")


class NotSent(BackendError):
    """A request of a call that was stopped, or never sent, because another one failed."""


async def outcomes_failing_fast(calls: Sequence[Awaitable[Any]]) -> list[Any]:
    """Each call's result, or the exception it failed with; once one fails, those not done
    are cancelled and read as `NotSent`. So a dead endpoint fails the call after one
    request's retries, not after every request's, and what finished is kept."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # after a failure, and when the caller is interrupted
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [NotSent("not sent: another request of the call failed first") if t.cancelled()
            else t.exception() or t.result() for t in tasks]


def settled(outcomes: Sequence[Any], what: str) -> list[Any]:
    """The results of every request of a call, or the error of its failures, with the
    results of the requests that succeeded (`PartialBatchError.done`) so they are kept; an
    error that is not a `BackendError` is a bug and is raised."""
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for outcome in failed:
        if not isinstance(outcome, BackendError):
            raise outcome
    if not failed:
        return list(outcomes)
    real = [o for o in failed if not isinstance(o, NotSent)] or failed
    if len(outcomes) == 1:
        raise real[0]
    skipped = len(failed) - len(real)
    message = (f"{len(real)} of {len(outcomes)} {what} requests failed"
               + (f" ({skipped} more not sent after it)" if skipped else "") + f": {real[0]}")
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
