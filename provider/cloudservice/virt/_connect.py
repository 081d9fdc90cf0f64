"""Connections with a deadline: a libvirt host that stops answering fails within a bound.

libvirt's own mechanism does it. With an event loop registered (libvirt's default one, run in a
daemon thread), a connection's keepalive pings the daemon whenever it has been silent for an
interval, and closes the connection when `count` pings in a row go unanswered: every call
blocked on it, stream sends and receives included, then returns an error (`_errors_map` makes
it HostUnavailable). Opening has no keepalive yet (a daemon that accepts the socket but never
answers the handshake blocks `libvirt.open` forever), so it runs in a thread that is abandoned
at the deadline.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from functools import cache

import libvirt

from .errors import HostUnavailable, HypervisorError

TIMEOUT_ENV = "CLOUDSERVICE_LIBVIRT_TIMEOUT"
DEFAULT_TIMEOUT = 15.0  # seconds a host may stay silent; a slow link may need more
_KEEPALIVE_COUNT = 2  # closed after count + 1 silent intervals

_events_lock = threading.Lock()


def timeout_seconds() -> float:
    """How long a host may stay silent: `CLOUDSERVICE_LIBVIRT_TIMEOUT`, else 15 s."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not (math.isfinite(seconds) and seconds > 0):
        raise HypervisorError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds above 0")
    return seconds


def keepalive(seconds: float) -> tuple[int, int]:
    """libvirt's keepalive (interval, count) that closes a silent connection after ~`seconds`."""
    return max(1, round(seconds / (_KEEPALIVE_COUNT + 1))), _KEEPALIVE_COUNT


def connect(uri: str, label: str) -> libvirt.virConnect:
    """A connection to `uri` whose calls fail once the host stays silent past the deadline."""
    _start_event_loop()
    seconds = timeout_seconds()
    outcome: queue.Queue[libvirt.virConnect | libvirt.libvirtError] = queue.Queue(maxsize=1)
    opener = threading.Thread(
        target=_open, args=(uri, keepalive(seconds), outcome), name="libvirt-open", daemon=True
    )
    opener.start()
    try:
        result = outcome.get(timeout=seconds)
    except queue.Empty:
        # The stuck thread is left behind; a connection it opens late is closed when dropped.
        raise HostUnavailable(
            f"libvirt at {label!r} did not answer within {seconds:g} s: "
            "is libvirtd running and responsive?"
        ) from None
    if isinstance(result, libvirt.libvirtError):
        raise HostUnavailable(
            f"cannot connect to libvirt at {label!r}: {result.get_error_message()}; "
            "is libvirtd running (`make setup` starts it locally)?"
        ) from result
    return result


def _open(
    uri: str,
    pings: tuple[int, int],
    outcome: queue.Queue[libvirt.virConnect | libvirt.libvirtError],
) -> None:
    try:
        conn = libvirt.open(uri)
        try:
            conn.setKeepAlive(*pings)
        except libvirt.libvirtError as exc:
            # Drivers in this process (test:///default) have no connection to lose.
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                conn.close()
                raise
        outcome.put(conn)
    except libvirt.libvirtError as exc:
        outcome.put(exc)


def _start_event_loop() -> None:
    # Registered once per process, before the first connection opens: keepalive needs it.
    with _events_lock:
        _event_loop()


@cache
def _event_loop() -> threading.Thread:
    libvirt.virEventRegisterDefaultImpl()
    thread = threading.Thread(target=_run_events, name="libvirt-events", daemon=True)
    thread.start()
    return thread


def _run_events() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()
