"""haproxy.cfg, built in this one place by a pure function over the spec (golden-tested).

Every file HAProxy uses lives in the front door's directory (`Files`): the config, the pid
file, the admin socket of the runtime API and the server-state file that carries admin states
(drain, maint) and health across reloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._specs import FrontDoorSpec, HealthCheck, Listener

# Connect fast, so a blackholed instance costs a client one short wait before the retry
# moves its request to another server; wait long for the answer of a slow one.
TIMEOUT_CONNECT_MS = 2000
TIMEOUT_CLIENT_S = 30
TIMEOUT_SERVER_S = 30
RETRIES = 3
MAXCONN = 4096


@dataclass(frozen=True)
class Files:
    """Where the front door in `directory` keeps its files."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def pid(self) -> Path:
        return self.directory / "haproxy.pid"

    @property
    def socket(self) -> Path:
        return self.directory / "admin.sock"

    @property
    def state(self) -> Path:
        return self.directory / "server-state"

    @property
    def log(self) -> Path:
        return self.directory / "haproxy.log"


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def render(spec: FrontDoorSpec, directory: Path) -> str:
    """The haproxy.cfg of `spec` for a front door living in `directory` (absolute)."""
    files = Files(directory)
    lines = [
        f"# Front door {spec.name}: written by cloudservice, do not edit.",
        "global",
        f"    pidfile {files.pid}",
        f"    maxconn {MAXCONN}",
        # The runtime API: 0600 in a 0700 directory, so only the owner drives it. Level admin
        # allows drain/ready/maint; expose-fd hands the listening sockets to the next process.
        f"    stats socket {files.socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        f"    server-state-file {files.state}",
        # An old process, after a reload or on stop, may finish its connections this long.
        f"    hard-stop-after {_ms(spec.drain_timeout_seconds)}",
        "",
        "defaults",
        f"    timeout connect {TIMEOUT_CONNECT_MS}ms",
        f"    timeout client {TIMEOUT_CLIENT_S}s",
        f"    timeout server {TIMEOUT_SERVER_S}s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 10s",
        # Admin states (drain/maint) and health from the state file the last process dumped.
        "    load-server-state-from-file global",
        # A failed attempt is retried on another server, not the same one.
        "    option redispatch 1",
        f"    retries {RETRIES}",
    ]
    for listener in spec.listeners:
        lines += ["", *_frontend(listener), "", *_backend(listener)]
    return "\n".join(lines) + "\n"


def _frontend(listener: Listener) -> list[str]:
    lines = [
        f"frontend {listener.name}",
        f"    mode {listener.protocol}",
        f"    bind {listener.bind_address}:{listener.port}",
    ]
    if listener.protocol == "http":
        lines.append("    option forwardfor")
    lines.append(f"    default_backend {listener.name}")
    return lines


def _backend(listener: Listener) -> list[str]:
    probe = listener.probe
    lines = [
        f"backend {listener.name}",
        f"    mode {listener.protocol}",
        "    balance roundrobin",
        *_probe(probe),
        f"    timeout check {_ms(probe.timeout_seconds)}",
        f"    default-server check inter {_ms(probe.interval_seconds)}"
        f" fall {probe.fall} rise {probe.rise}",
    ]
    if listener.protocol == "http":
        # Retry what never reached an application (refused, reset before an answer, silent
        # until the server timeout) on another server; the client sees no error.
        lines.append("    retry-on conn-failure empty-response response-timeout")
    lines += [f"    server {s.name} {s.address}:{s.port}" for s in listener.servers]
    return lines


def _probe(probe: HealthCheck) -> list[str]:
    if probe.protocol == "tcp":
        return []  # `check` alone: a TCP connect
    return [
        "    option httpchk",
        f"    http-check send meth GET uri {probe.path} ver HTTP/1.1 hdr Host localhost",
        "    http-check expect status 200",
    ]
