"""haproxy.cfg is built only in frontdoor/config.py; the golden file pins what it builds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cloudservice.frontdoor import FrontDoorSpec, HealthCheck, Listener, Server
from cloudservice.frontdoor import config as frontdoor_config

GOLDEN = Path(__file__).parent / "golden"

SPEC = FrontDoorSpec(
    name="shop",
    drain_timeout_seconds=20,
    listeners=(
        Listener(
            name="web",
            port=8080,
            probe=HealthCheck(path="/healthz", interval_seconds=2, timeout_seconds=1.5),
            servers=(
                Server(name="web-0", address="10.213.0.10", port=80),
                Server(name="web-1", address="10.213.0.11", port=80),
            ),
        ),
        Listener(
            name="queue",
            protocol="tcp",
            bind_address="0.0.0.0",
            port=5672,
            probe=HealthCheck(protocol="tcp", interval_seconds=5, fall=3, rise=2),
            servers=(Server(name="worker-0", address="localhost", port=5672),),
        ),
    ),
)


def test_config_matches_golden() -> None:
    rendered = frontdoor_config.render(SPEC, Path("/run/cloudservice/frontdoor/shop"))
    assert rendered == (GOLDEN / "shop.cfg").read_text()


def test_golden_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(frontdoor_config.render(SPEC, tmp_path))
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Server(name="a", address="::1", port=80), "IPv6 is not supported"),
        (lambda: Server(name="a", address="bad host", port=80), "IPv4 address or host name"),
        (lambda: Server(name="a/b", address="10.0.0.1", port=80), "pattern"),
        (lambda: HealthCheck(path="health"), "must start with /"),
        (lambda: HealthCheck(interval_seconds=1, timeout_seconds=2), "must not exceed"),
        (
            lambda: Listener(
                name="l",
                port=1,
                servers=(Server(name="a", address="10.0.0.1", port=1),) * 2,
            ),
            "duplicate server names",
        ),
        (
            lambda: FrontDoorSpec(
                name="s", listeners=(Listener(name="a", port=1), Listener(name="b", port=1))
            ),
            "both use port 1",
        ),
        (lambda: FrontDoorSpec(name="s", listeners=()), "at least 1"),
    ],
)
def test_specs_reject_what_haproxy_would_misread(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
