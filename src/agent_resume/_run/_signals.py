"""SIGINT and SIGTERM during a run: the first stops admitting items, the second aborts."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from agent_resume._run._state import RunState
from agent_resume._stop import StopReason

__all__ = ["RunSignals"]


class RunSignals:
    """Installs SIGINT and SIGTERM handlers for a run, in the main thread only.

    The first signal stops admitting items and starts the grace period; the
    second restores the previous handlers and hands the signal to them (a
    ``KeyboardInterrupt`` for SIGINT, the default action, death, for SIGTERM).
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
        state.signals += 1
        if state.signals == 1:
            state.grace_at = state.clock() + state.config.grace_seconds
            name = signal.Signals(signum).name
            state.stop("signal", StopReason("signal", f"received {name}"))
            if self.wake is not None:
                self.wake()
            return
        state.aborted = True
        handler = self.previous.get(signum, signal.SIG_DFL)
        self._restore()
        if callable(handler):
            handler(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
