"""The front door against a real HAProxy and real HTTP backends on 127.0.0.1."""

from __future__ import annotations

import socket
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from cloudservice.frontdoor import FrontDoor, FrontDoorError, FrontDoorSpec, HealthCheck, Listener
from cloudservice.frontdoor import Server as ServerSpec

from .backends import Backend, Load, free_port, get

PROBE = HealthCheck(interval_seconds=0.3, timeout_seconds=0.25, fall=2, rise=1)

Start = Callable[..., list[Backend]]


def spec_for(port: int, *backends: Backend, name: str = "web") -> FrontDoorSpec:
    servers = tuple(ServerSpec(name=b.name, address="127.0.0.1", port=b.port) for b in backends)
    return FrontDoorSpec(
        name="svc",
        drain_timeout_seconds=5,
        listeners=(Listener(name=name, port=port, probe=PROBE, servers=servers),),
    )


def serve(door: FrontDoor, backends: list[Backend]) -> int:
    port = free_port()
    door.apply(spec_for(port, *backends))
    for backend in backends:
        door.wait_up("web", backend.name, timeout=5)
    return port


def test_requests_spread_round_robin_over_healthy_servers(door: FrontDoor, backends: Start) -> None:
    port = serve(door, backends("a", "b", "c"))
    answers = Counter(get(port) for _ in range(30))
    assert answers == {"a": 10, "b": 10, "c": 10}
    assert door.running()
    assert [(s.server, s.state, s.admin) for s in door.servers()] == [
        ("a", "UP", "READY"),
        ("b", "UP", "READY"),
        ("c", "UP", "READY"),
    ]


def test_a_stopped_backend_leaves_rotation_and_no_request_fails(
    door: FrontDoor, backends: Start
) -> None:
    a, b, c = backends("a", "b", "c")
    port = serve(door, [a, b, c])
    with Load(port) as load:
        time.sleep(0.3)
        b.stop()
        stopped = time.monotonic()
        while door.server("web", "b").state != "DOWN":
            assert time.monotonic() - stopped < 5, "b never marked DOWN"
            time.sleep(0.02)
        detected = time.monotonic() - stopped
        served_before = load.answers.get("b", 0)
        time.sleep(0.5)
    # Down within fall (2) probe intervals of 0.3 s, plus scheduling slack.
    assert detected < PROBE.fall * PROBE.interval_seconds + 0.5, detected
    # Requests that reached the dead server were retried on another one (redispatch).
    assert load.failures == []
    assert load.answers["b"] == served_before
    assert load.answers["a"] > 0 and load.answers["c"] > 0
    status = door.server("web", "b")
    assert status.check == "L4CON" and "refused" in status.check_detail.lower()


def test_drain_sends_no_new_requests_and_lets_the_one_in_flight_finish(
    door: FrontDoor, backends: Start
) -> None:
    a, b = backends("a", "b")
    port = serve(door, [a, b])
    door.maint("web", "a")  # so that the slow request lands on b
    slow: list[str] = []
    request = threading.Thread(target=lambda: slow.append(get(port, "/slow")))
    request.start()
    time.sleep(0.1)
    door.ready("web", "a")
    door.drain("web", "b")
    assert door.server("web", "b").admin == "DRAIN"
    assert door.server("web", "b").sessions == 1
    assert Counter(get(port) for _ in range(20)) == {"a": 20}
    assert door.wait_drained("web", "b", timeout=5)
    request.join()
    assert slow == ["b"]
    door.ready("web", "b")
    assert Counter(get(port) for _ in range(20)) == {"a": 10, "b": 10}


def test_wait_drained_says_false_when_sessions_remain(door: FrontDoor, backends: Start) -> None:
    (a,) = backends("a")
    a.slow_seconds = 1.5
    port = serve(door, [a])
    request = threading.Thread(target=lambda: get(port, "/slow"))
    request.start()
    time.sleep(0.1)
    door.drain("web", "a")
    assert not door.wait_drained("web", "a", timeout=0.3)
    assert door.wait_drained("web", "a", timeout=5)
    request.join()


def test_reload_with_changed_servers_under_load_refuses_nothing(
    door: FrontDoor, backends: Start
) -> None:
    a, b, c = backends("a", "b", "c")
    port = serve(door, [a, b])
    first = door.pids()
    rounds = [[a, b, c], [b, c], [c], [c, a], [a, b, c]]
    with Load(port) as load:
        for servers in rounds:
            time.sleep(0.25)
            door.apply(spec_for(port, *servers))
        time.sleep(0.25)
    assert load.failures == []
    assert load.total > 50
    assert set(load.answers) == {"a", "b", "c"}
    assert door.pids() != first
    # Old processes finish and leave; one remains.
    deadline = time.monotonic() + 5
    while len(door.pids()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(door.pids()) == 1


def test_admin_states_survive_a_reload_unless_the_server_moved(
    door: FrontDoor, backends: Start
) -> None:
    a, b, c, d, e = backends("a", "b", "c", "d", "e")
    port = serve(door, [a, b, c])
    door.drain("web", "b")
    door.maint("web", "c")
    # c moves to e's port (same name, new place): it starts afresh, in rotation.
    moved = ServerSpec(name="c", address="127.0.0.1", port=e.port)
    spec = spec_for(port, a, b, d)
    listener = spec.listeners[0].model_copy(update={"servers": (*spec.listeners[0].servers, moved)})
    door.apply(spec.model_copy(update={"listeners": (listener,)}))
    admin = {s.server: s.admin for s in door.servers()}
    assert admin == {"a": "READY", "b": "DRAIN", "d": "READY", "c": "READY"}
    door.wait_up("web", "c", timeout=5)
    answers = Counter(get(port) for _ in range(30))
    assert answers == {"a": 10, "d": 10, "e": 10}


def test_directory_and_socket_are_for_the_owner_only(door: FrontDoor, backends: Start) -> None:
    serve(door, backends("a"))
    assert stat.S_IMODE(door.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(door.files.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(door.files.socket.stat().st_mode)
    for file in (door.files.config, door.files.state):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_stop_ends_every_process_and_removes_the_files(door: FrontDoor, backends: Start) -> None:
    a, b = backends("a", "b")
    port = serve(door, [a])
    door.apply(spec_for(port, a, b))  # a reload: briefly two processes
    pids = door.pids()
    door.stop()
    assert not door.directory.exists()
    assert door.pids() == [] and not door.running()
    for pid in pids:  # gone, or a zombie nobody reaped
        assert (
            not Path(f"/proc/{pid}/cmdline").exists()
            or not Path(f"/proc/{pid}/cmdline").read_bytes()
        )
    with pytest.raises(ConnectionRefusedError):
        get(port)


def test_an_invalid_config_is_refused_and_the_running_one_untouched(
    door: FrontDoor, backends: Start
) -> None:
    (a,) = backends("a")
    port = serve(door, [a])
    pids, config = door.pids(), door.files.config.read_text()
    unresolvable = FrontDoorSpec(
        name="svc",
        listeners=(
            Listener(
                name="web",
                port=port,
                servers=(ServerSpec(name="x", address="no-such-host.invalid", port=80),),
            ),
        ),
    )
    with pytest.raises(FrontDoorError, match=r"rejects.*no-such-host\.invalid"):
        door.apply(unresolvable)
    assert door.pids() == pids and door.files.config.read_text() == config
    assert get(port) == "a"
    assert not (door.directory / "haproxy.cfg.new").exists()


def test_a_reload_that_cannot_bind_keeps_the_running_one(door: FrontDoor, backends: Start) -> None:
    (a,) = backends("a")
    port = serve(door, [a])
    pids, config = door.pids(), door.files.config.read_text()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = spec_for(port, a)
        other = Listener(name="admin", port=taken.getsockname()[1], servers=())
        with pytest.raises(FrontDoorError, match="failed to reload; the running HAProxy"):
            door.apply(spec.model_copy(update={"listeners": (*spec.listeners, other)}))
    assert door.pids() == pids and door.files.config.read_text() == config
    assert get(port) == "a"


def test_wait_up_names_the_failing_check(door: FrontDoor, backends: Start) -> None:
    (a,) = backends("a")
    a.stop()
    door.apply(spec_for(free_port(), a))
    with pytest.raises(FrontDoorError, match=r"web/a is not up after 1 s .*L4CON"):
        door.wait_up("web", "a", timeout=1)


def test_the_runtime_api_refuses_unknown_servers(door: FrontDoor, backends: Start) -> None:
    serve(door, backends("a"))
    with pytest.raises(FrontDoorError, match="refused to set web/nope to drain: No such server"):
        door.drain("web", "nope")
    with pytest.raises(FrontDoorError, match="no server web/nope"):
        door.server("web", "nope")


def test_a_front_door_that_is_not_running_says_so(directory: Path) -> None:
    door = FrontDoor(directory)
    assert not door.running()
    with pytest.raises(FrontDoorError, match="is the front door running"):
        door.servers()
    door.stop()  # nothing to stop


def test_a_directory_too_long_for_a_socket_is_refused_early() -> None:
    with pytest.raises(FrontDoorError, match="shorter directory"):
        FrontDoor(Path("/tmp") / ("x" * 120))
