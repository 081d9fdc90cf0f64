"""Deadlines: a libvirt host that stops answering fails within a bound, with one clear error.

A hung libvirtd is played three ways: a socket that accepts and never answers (no daemon
needed), a proxy in front of the real libvirtd that stops forwarding (the daemon goes on serving
everyone else), and, end to end, the real libvirtd stopped with SIGSTOP.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cloudservice.virt import Host, HostUnavailable, HypervisorError, PoolSpec, VolumeSpec
from cloudservice.virt._connect import keepalive, timeout_seconds

TIMEOUT_ENV = "CLOUDSERVICE_LIBVIRT_TIMEOUT"
LIBVIRTD_SOCKET = "/var/run/libvirt/libvirt-sock"  # qemu:///system's
LABEL = "cloudservice:uri (secret)"  # as the provider names a secret URI
STOPPED_ANSWERING = re.escape(f"libvirt at {LABEL!r} stopped answering")


def _bound(deadline: float) -> float:
    """When a failure must have come: keepalive closes a connection 3 silent intervals
    (`deadline` / 3 each) after the host's last word, give or take an interval."""
    return deadline * 4 / 3 + 1


def _unix_uri(socket_path: Path) -> str:
    return f"qemu+unix:///system?socket={socket_path}"


@pytest.fixture
def silent_libvirtd(tmp_path: Path) -> Iterator[Path]:
    """A unix socket whose server accepts connections and never says a word."""
    path = tmp_path / "libvirt-sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield path
    server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
    server.close()
    for connection in accepted:  # the abandoned open fails and its thread ends
        connection.close()


class FreezingProxy:
    """A unix socket that forwards to libvirtd's until `freeze_after` bytes went upstream, then
    forwards nothing: to its clients libvirtd looks stopped, while it serves everyone else."""

    def __init__(self, path: Path, freeze_after: int = 0) -> None:
        self.path = path
        self.freeze_after = freeze_after  # 0: not until `freeze()`
        self.upstream_bytes = 0
        self.thawed = threading.Event()
        self.thawed.set()
        self.sockets: list[socket.socket] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.thawed.clear()

    def close(self) -> None:
        """Drop every connection: libvirtd sees its clients gone and lets go of their work."""
        self.server.shutdown(socket.SHUT_RDWR)
        for sock in [self.server, *self.sockets]:
            sock.close()
        self.thawed.set()  # pumps waiting to forward find their sockets closed

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client = self.server.accept()[0]
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(LIBVIRTD_SOCKET)
                self.sockets += [client, upstream]
                for source, sink, up in ((client, upstream, True), (upstream, client, False)):
                    pump = threading.Thread(target=self._pump, args=(source, sink, up), daemon=True)
                    pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if upstream:
                    self.upstream_bytes += len(data)
                    if self.freeze_after and self.upstream_bytes >= self.freeze_after:
                        self.freeze()
                self.thawed.wait()
                sink.sendall(data)


@pytest.fixture
def proxy(libvirt_uri: str, tmp_path: Path) -> Iterator[FreezingProxy]:
    frozen = FreezingProxy(tmp_path / "proxy-sock")
    yield frozen
    frozen.close()


def _delete_when_released(host: Host, pool: str, volume: str) -> None:
    """Delete a volume whose upload a lost connection left behind; libvirtd lets go of it a
    moment after it notices the client is gone."""
    deadline = time.monotonic() + 20
    while True:
        try:
            host.delete_volume(pool, volume)
            return
        except HypervisorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_deadline_is_15_s_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert timeout_seconds() == 15 and keepalive(15) == (5, 2)  # closed after 3 x 5 s
    monkeypatch.setenv(TIMEOUT_ENV, "40")
    assert timeout_seconds() == 40 and keepalive(40) == (13, 2)
    assert keepalive(1) == (1, 2)  # libvirt counts whole seconds
    for wrong in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv(TIMEOUT_ENV, wrong)
        with pytest.raises(HypervisorError, match=f"{TIMEOUT_ENV}='{wrong}' must be a number"):
            timeout_seconds()


@pytest.mark.parametrize("label", [LABEL, None])
def test_a_host_that_never_answers_fails_to_connect_within_the_deadline(
    silent_libvirtd: Path, monkeypatch: pytest.MonkeyPatch, label: str | None
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "2")
    uri = _unix_uri(silent_libvirtd)
    started = time.monotonic()
    with pytest.raises(HostUnavailable, match="did not answer within 2 s") as raised:
        Host(uri, label=label)
    assert time.monotonic() - started < _bound(2)
    message = str(raised.value)
    assert f"libvirt at {label or uri!r}" in message
    if label:  # the URI may hold secrets: a label stands for it everywhere
        assert str(silent_libvirtd) not in message and "qemu" not in message


def test_a_host_that_stops_answering_fails_the_call_naming_the_host(
    proxy: FreezingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    with Host(_unix_uri(proxy.path), label=LABEL) as host:
        host.version()
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(HostUnavailable, match=STOPPED_ANSWERING):
            host.version()
        assert time.monotonic() - started < _bound(3)
        with pytest.raises(HostUnavailable, match="stopped answering"):  # and at once after
            host.pool("default")


def test_an_upload_to_a_host_that_stops_answering_fails_within_the_deadline(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    pool = PoolSpec(name=f"cs-test-{uuid.uuid4().hex[:8]}", path=str(tmp_path / "pool"))
    source = tmp_path / "big.raw"
    with source.open("wb") as sparse:
        sparse.truncate(64 << 20)
    proxy = FreezingProxy(tmp_path / "proxy-sock", freeze_after=16 << 20)
    host.ensure_pool(pool)
    try:
        with Host(_unix_uri(proxy.path), label=LABEL) as hung:
            started = time.monotonic()
            with pytest.raises(HostUnavailable, match=f"{STOPPED_ANSWERING}.*keepalive"):
                hung.upload_volume(pool.name, VolumeSpec(name="big", capacity=64 << 20), source)
            assert time.monotonic() - started < _bound(3)
    finally:
        proxy.close()
        _delete_when_released(host, pool.name, "big")
        host.delete_pool(pool.name)


def _libvirtd_pid() -> int:
    found = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True)
    if not found.stdout.split():
        pytest.fail("libvirtd is not running: run `make setup`", pytrace=False)
    return int(found.stdout.split()[0])


@contextlib.contextmanager
def stopped_when(pid: int, condition: Callable[[], bool]) -> Iterator[list[float]]:
    """SIGSTOP `pid` as soon as `condition` holds (yields the time it was stopped, once it is),
    and SIGCONT it on the way out, always."""
    stopped_at: list[float] = []
    over = threading.Event()

    def watch() -> None:
        while not condition():
            if over.wait(0.005):
                return
        os.kill(pid, signal.SIGSTOP)
        stopped_at.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield stopped_at
    finally:
        over.set()
        watcher.join()  # so that no SIGSTOP comes after the SIGCONT
        os.kill(pid, signal.SIGCONT)


def test_a_stopped_libvirtd_fails_an_upload_within_the_deadline(
    libvirt_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the real daemon, SIGSTOPped mid-upload, at the default deadline."""
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    deadline = 15.0  # the documented default
    pid = _libvirtd_pid()
    pool = PoolSpec(name=f"cs-test-{uuid.uuid4().hex[:8]}", path=str(tmp_path / "pool"))
    source = tmp_path / "big.raw"
    with source.open("wb") as sparse:
        sparse.truncate(200 << 20)
    spec = VolumeSpec(name="big", capacity=200 << 20)
    try:
        with Host(libvirt_uri, label=LABEL) as host:
            host.ensure_pool(pool)

            def midway() -> bool:
                return host.bytes_uploaded >= 32 << 20

            with (
                stopped_when(pid, midway) as stopped_at,
                pytest.raises(HostUnavailable, match=STOPPED_ANSWERING) as raised,
            ):
                host.upload_volume(pool.name, spec, source)
            detected = time.monotonic() - stopped_at[0]
        print(f"a SIGSTOPped libvirtd was detected after {detected:.1f} s: {raised.value}")
        assert detected < _bound(deadline)
    finally:
        with Host(libvirt_uri) as cleanup:
            _delete_when_released(cleanup, pool.name, spec.name)
            cleanup.delete_pool(pool.name)
