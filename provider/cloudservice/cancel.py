"""Stopping work the engine no longer waits for, at safe points.

When `pulumi` is killed, or the engine cancels, the provider's call is abandoned but its worker
thread would carry on rolling out a change nobody records. The server gives each call a
`Cancellation` (a context variable, so the call's worker thread sees it); the layers below call
`checkpoint()` between steps that leave the host in a state the next run can read back (before
an upload chunk, before an instance restarts, between health probes), and stop there.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Cancelled(Exception):
    """The engine went away or cancelled: the work stopped at a safe point."""


class Cancellation:
    """Set once, by whoever learns the engine is gone; checked by the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


# Cancels every call at once: the engine's `Cancel`, or the engine process gone.
EVERYTHING = Cancellation()
_current: contextvars.ContextVar[Cancellation | None] = contextvars.ContextVar(
    "cloudservice_cancellation", default=None
)


@contextmanager
def scope(cancellation: Cancellation) -> Iterator[Cancellation]:
    """Run the block (and the threads it starts with the context copied) under `cancellation`."""
    token = _current.set(cancellation)
    try:
        yield cancellation
    finally:
        _current.reset(token)


_working = 0
_working_lock = threading.Lock()


@contextmanager
def work() -> Iterator[None]:
    """Mark a call's work in progress (what an exit waits for)."""
    global _working
    with _working_lock:
        _working += 1
    try:
        yield
    finally:
        with _working_lock:
            _working -= 1


def working() -> int:
    """Calls whose work is still in progress."""
    return _working


def checkpoint() -> None:
    """Raise Cancelled when this call, or everything, was cancelled; else nothing."""
    for cancellation in (_current.get(), EVERYTHING):
        if cancellation is not None and cancellation.cancelled:
            raise Cancelled(f"stopped at a safe point: {cancellation.reason}")
