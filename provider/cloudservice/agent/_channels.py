"""Where the agent talks: the status channel (virtio-serial) and the console (serial log).

Both are devices that may be missing or unconnected: every write is best effort, errors close
the descriptor and the next write opens it again. Nothing written here may carry a setting's
value: callers pass text through a Redactor first.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Console", "Redactor", "StatusChannel"]

MIN_SECRET_LENGTH = 4
"""Shorter setting values ("1", "yes") are not masked: masking them would garble all output."""


class Redactor:
    """Replaces every setting value in a text by ``***``."""

    def __init__(self) -> None:
        self.secrets: tuple[str, ...] = ()

    def update(self, values: Iterable[Any]) -> None:
        texts = {str(value) for value in values if value is not None}
        # Longest first, so a value containing another is masked whole.
        self.secrets = tuple(
            sorted((t for t in texts if len(t) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class _Device:
    """A file descriptor opened on demand and dropped on any error."""

    def __init__(self, path: str, flags: int) -> None:
        self.path = path
        self.flags = flags
        self.fd: int | None = None
        self.lock = threading.Lock()

    def _open(self) -> int | None:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, self.flags)
            except OSError:
                return None
        return self.fd

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def write(self, data: bytes) -> bool:
        """Write ``data`` whole or not at all; False when it was dropped."""
        with self.lock:
            fd = self._open()
            if fd is None:
                return False
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                return False  # nobody reads the other end right now: drop the line
            except OSError:
                self._close()  # ENXIO, EPIPE, EIO...: the port went away; reopen next time
                return False
            if written < len(data):
                # A partial line would corrupt the next one: finish it with a newline.
                with contextlib.suppress(OSError):
                    os.write(fd, b"\n")
                return False
            return True


class Console(_Device):
    """``/dev/console``: the serial log. Lines are written as they come, never buffered."""

    def __init__(self, path: str) -> None:
        super().__init__(path, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC)

    def line(self, text: str) -> None:
        self.write((text.rstrip("\n") + "\n").encode("utf-8", "replace"))


class StatusChannel(_Device):
    """The status channel: one JSON object per line, on every change and at least once a
    second (a thread repeats the last status with a fresh uptime)."""

    def __init__(self, path: str, uptime: Callable[[], float], *, interval: float = 1.0) -> None:
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC
        super().__init__(path, flags)
        self.uptime = uptime
        self.interval = interval
        self.status: dict[str, Any] = {}
        self.last_write = 0.0
        self.state_lock = threading.Lock()
        self.thread = threading.Thread(target=self._heartbeat, name="status", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def publish(self, status: dict[str, Any]) -> bool:
        """Record ``status``; write it now when it differs from the last one. True if it
        changed."""
        with self.state_lock:
            changed = status != self.status
            self.status = dict(status)
        if changed:
            self._emit()
        return changed

    def _emit(self) -> None:
        with self.state_lock:
            line = {**self.status, "uptimeSeconds": round(self.uptime(), 2)}
            self.last_write = time.monotonic()
        self.write((json.dumps(line, sort_keys=False) + "\n").encode())

    def _heartbeat(self) -> None:
        while True:
            time.sleep(self.interval / 4)
            if self.status and time.monotonic() - self.last_write >= self.interval * 0.9:
                with contextlib.suppress(Exception):
                    self._emit()
