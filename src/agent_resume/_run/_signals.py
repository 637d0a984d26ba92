"""SIGINT and SIGTERM during a run: the first stops admitting items, the second aborts."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from agent_resume._run._state import RunState

__all__ = ["RunSignals"]


class RunSignals:
    """Installs SIGINT and SIGTERM handlers for a run, in the main thread only.

    The first signal stops admitting items and starts the grace period. The
    second aborts: for SIGINT with Python's default handler (or asyncio's) in
    place it raises a ``KeyboardInterrupt`` that, if nothing catches it,
    prints one line instead of a traceback, and the process ends as Python
    ends on any uncaught ``KeyboardInterrupt``: killed by SIGINT. Otherwise
    the previous handlers are put back and the signal handed to them (for
    SIGTERM, the default action: death).
    """

    def __init__(self, state: RunState, wake: Callable[[], None] | None) -> None:
        self.state = state
        self.wake = wake
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> RunSignals:
        if not self.state.config.handle_signals:
            return self
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        previous, self.previous = self.previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        state = self.state
        name = signal.Signals(signum).name
        if state.signal(name) == 1:
            if self.wake is not None:
                self.wake()
            return
        in_flight = state.in_flight
        state.abort()
        handler = self.previous.get(signum, signal.SIG_DFL)
        self._restore()
        if signum == signal.SIGINT and _interrupts(handler):
            raise _aborted(f"{name} again: run aborted, {in_flight} item(s) in flight not recorded")
        if callable(handler):
            handler(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _interrupts(handler: object) -> bool:
    """Whether a SIGINT handler is Python's or asyncio's: one that raises ``KeyboardInterrupt``."""
    if handler is signal.default_int_handler:
        return True
    func = getattr(handler, "func", handler)  # asyncio.Runner installs a partial
    return getattr(func, "__module__", None) == "asyncio.runners"


def _aborted(message: str) -> KeyboardInterrupt:
    """A ``KeyboardInterrupt`` that, left uncaught, prints ``message`` as one line.

    Python's own (not a subclass): only that one makes the interpreter end by
    SIGINT, as a shell expects of an interrupted program.
    """
    error = KeyboardInterrupt(message)
    previous = sys.excepthook

    def one_line(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if value is error:
            sys.stderr.write(f"agent-resume: {message}\n")
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    sys.excepthook = one_line
    return error
