"""A memory and CPU budget for work a third-party file can make expensive: rendering a jinja2
template and compiling a regular expression.

The sandbox (`templates.py`) bounds repetition and powers, but filters (`center`, `format`,
`join`, `replace`), `~` joins, recursive macros and nested loops can still ask for gigabytes
or hours from a few hundred bytes of YAML, and the `regex` module expands counted repeats
(`(?:(?:a{1000}){1000}){1000}`) when it compiles. `bounded` runs such work with

- the process's address space capped at what it uses now plus `MEMORY` (`RLIMIT_AS`; the
  allocation that would pass it raises `MemoryError`), and
- a `SECONDS` budget of CPU time (`ITIMER_VIRTUAL`, whose signal interrupts Python code: a
  long C call such as one compile is stopped by the memory cap instead),

and turns either into `BudgetExceeded`. Both limits are restored afterwards. Where the
platform has no `resource` module or the caller is not the main thread (signals are
delivered there only), the CPU part is skipped and the memory part still applies if it can.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from pytest_emergent._io import proc_bytes

#: address space one bounded piece of work may add
MEMORY = 256 * 2**20
#: CPU seconds one bounded piece of work may take
SECONDS = 5.0


class BudgetExceeded(Exception):
    """Bounded work needed more memory or CPU time than its budget."""


@contextlib.contextmanager
def _memory_cap(extra: int) -> Iterator[None]:
    try:
        import resource
    except ImportError:  # not on this platform
        yield
        return
    used = proc_bytes("/proc/self/status", "VmSize")  # address space mapped now
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = None if used is None else used + extra
    if cap is None or (soft != resource.RLIM_INFINITY and soft <= cap) or (
            hard != resource.RLIM_INFINITY and hard < cap):
        yield  # unknown usage, or a lower cap is already set
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def _cpu_timer(seconds: float) -> Iterator[None]:
    usable = (threading.current_thread() is threading.main_thread()
              and hasattr(signal, "setitimer") and hasattr(signal, "SIGVTALRM"))
    if not usable:
        yield
        return

    armed = True

    def expired(_signum: int, _frame: Any) -> None:
        if armed:  # a signal still pending while the body ends must not escape from here
            raise BudgetExceeded(f"took more than {seconds:g} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, expired)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        # a handler installed from C reads as None: put the default back then
        signal.signal(signal.SIGVTALRM, signal.SIG_DFL if previous is None else previous)
        if old_delay > 0:  # someone else's timer: give it back
            signal.setitimer(signal.ITIMER_VIRTUAL, old_delay, old_interval)


@contextlib.contextmanager
def bounded(seconds: float | None = None, memory: int | None = None) -> Iterator[None]:
    """Run the body within `seconds` of CPU time and `memory` more bytes of address space
    (by default `SECONDS` and `MEMORY`); raises `BudgetExceeded` (see the module
    docstring)."""
    seconds = SECONDS if seconds is None else seconds
    memory = MEMORY if memory is None else memory
    try:
        with _memory_cap(memory), _cpu_timer(seconds):
            yield
    except MemoryError:
        raise BudgetExceeded(f"needed more than {memory // 2**20} MiB of memory") from None
