"""Progress a person can watch while an `up` runs: a status line beside the resource.

The provider gives each create and update call a reporter (a context variable, like
`cancel`, so the call's worker thread sees it); the layers below say where they are with
`status()` (bytes sent of total, the update domain rolling) and what they did with
`summary()`. The provider sends statuses to the engine as ephemeral messages, the line
`pulumi up` shows beside the resource and replaces, and a summary as a lasting info message.
Outside a call (the CLI, tests) both do nothing. Statuses are throttled: a person reads a
couple a second, and each is a message to the engine.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Report = Callable[[str, bool], None]  # (message, ephemeral)
INTERVAL = 0.5  # seconds between two statuses, unless one is forced


class _Reporter:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.last = 0.0
        self.lock = threading.Lock()

    def status(self, message: str, force: bool) -> None:
        now = time.monotonic()
        with self.lock:
            if not force and now - self.last < INTERVAL:
                return
            self.last = now
        self.report(message, True)


_current: contextvars.ContextVar[_Reporter | None] = contextvars.ContextVar(
    "cloudservice_progress", default=None
)


@contextmanager
def reporting(report: Report) -> Iterator[None]:
    """Send the block's statuses and summaries to `report`."""
    token = _current.set(_Reporter(report))
    try:
        yield
    finally:
        _current.reset(token)


def status(message: str, *, force: bool = False) -> None:
    """Where the work is now (replaced by the next status); `force` skips the throttle, for
    a step a person should see even when it follows the last status at once."""
    if (reporter := _current.get()) is not None:
        reporter.status(message, force)


def summary(message: str) -> None:
    """What the work did, in one line that stays."""
    if (reporter := _current.get()) is not None:
        reporter.report(message, False)
