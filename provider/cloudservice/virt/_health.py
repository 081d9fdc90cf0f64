"""Health gates: probe an instance's endpoint until it answers, or give up with its last answer."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Literal

import requests


@dataclass(frozen=True)
class Probe:
    """What the load balancer would ask: an HTTP GET of `path`, or a TCP connect."""

    protocol: Literal["http", "tcp"] = "http"
    path: str = "/"
    interval_seconds: float = 2.0
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class ProbeAnswer:
    healthy: bool
    answer: str  # e.g. "HTTP 200", "HTTP 404", "connection refused"


def probe_once(host: str, port: int, probe: Probe) -> ProbeAnswer:
    if probe.protocol == "tcp":
        try:
            with socket.create_connection((host, port), timeout=probe.timeout_seconds):
                return ProbeAnswer(True, "TCP connect ok")
        except OSError as exc:
            return ProbeAnswer(False, f"TCP connect failed: {exc.strerror or exc}")
    url = f"http://{host}:{port}{probe.path}"
    try:
        response = requests.get(url, timeout=probe.timeout_seconds)
    except requests.RequestException as exc:
        return ProbeAnswer(False, _reason(exc))
    return ProbeAnswer(response.status_code == 200, f"HTTP {response.status_code}")


def wait_healthy(host: str, port: int, probe: Probe, deadline_seconds: float) -> ProbeAnswer:
    """Probe until healthy or the deadline passes; returns the last answer either way."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        answer = probe_once(host, port, probe)
        if answer.healthy or time.monotonic() + probe.interval_seconds > deadline:
            return answer
        time.sleep(probe.interval_seconds)


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "no answer (connection refused or reset)"
    if isinstance(exc, requests.Timeout):
        return "no answer (timed out)"
    return type(exc).__name__


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for an instance's endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
