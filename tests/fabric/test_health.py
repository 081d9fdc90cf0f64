"""Health probes against a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from cloudservice.fabric import Probe, free_loopback_port, probe_once, wait_healthy


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()


def test_http_probe_wants_200(server: int) -> None:
    assert probe_once("127.0.0.1", server, Probe(path="/health")).healthy
    missing = probe_once("127.0.0.1", server, Probe(path="/nope"))
    assert not missing.healthy and missing.answer == "HTTP 404"


def test_tcp_probe_connects(server: int) -> None:
    assert probe_once("127.0.0.1", server, Probe(protocol="tcp")).healthy


def test_nothing_listening_gives_up_at_the_deadline_with_the_last_answer() -> None:
    port = free_loopback_port()
    answer = wait_healthy("127.0.0.1", port, Probe(interval_seconds=0.1), deadline_seconds=0.5)
    assert not answer.healthy and "connection refused" in answer.answer


def test_a_server_that_never_answers_is_given_up_at_the_probe_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog; nothing ever reads or answers
        port = int(silent.getsockname()[1])
        started = time.monotonic()
        answer = probe_once("127.0.0.1", port, Probe(timeout_seconds=0.5))
        assert time.monotonic() - started < 2
    assert not answer.healthy and answer.answer == "no answer (timed out)"
