"""Real HTTP backends for the front door tests and benchmark: threads on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Backend:
    """An HTTP server on an ephemeral port of 127.0.0.1 that answers every GET with its name.

    `/slow` answers after `slow_seconds`. `hits` counts the requests other than health checks
    (which HAProxy sends with `Host: localhost`; clients here send the host's address).
    """

    def __init__(self, name: str, slow_seconds: float = 0.5) -> None:
        self.name = name
        self.slow_seconds = slow_seconds
        self.hits = 0
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.headers.get("Host") != "localhost":
                    with backend._lock:
                        backend.hits += 1
                if self.path == "/slow":
                    time.sleep(backend.slow_seconds)
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: new connections are refused."""
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy closes idle keep-alive connections with a reset: expected


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str = "/", timeout: float = 5.0) -> str:
    """GET http://127.0.0.1:port/path on a new connection; the body, or an exception."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {body[:100]}")
        return body
    finally:
        connection.close()


class Load:
    """A thread sending requests in a loop, one new connection each, counting answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = get(self.port)
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures.append(repr(exc))
            else:
                self.answers[body] = self.answers.get(body, 0) + 1
