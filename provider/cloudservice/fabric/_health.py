"""Health gates: probe an instance's endpoint until it answers, or give up with its last answer."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Literal

import requests
from pydantic import Field

from .. import cancel
from ..model import Model


class Probe(Model):
    """What the load balancer asks an instance: an HTTP GET of `path`, or a TCP connect."""

    protocol: Literal["http", "tcp"] = Field(default="http", description="http or tcp.")
    path: str = Field(default="/", description="Path of an http probe; 200 means healthy.")
    port: int | None = Field(default=None, description="Guest port; default the first endpoint's.")
    interval_seconds: float = Field(default=2.0, gt=0, description="Seconds between probes.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Seconds one probe may take.")


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
        cancel.checkpoint()
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
