"""What the fabric says to a guest agent and hears back (docs/guest.md)."""

from __future__ import annotations

import json

import pytest
from cloudservice.fabric import ServiceNetwork, instance_address
from cloudservice.fabric._guest import (
    configuration_medium,
    document_digest,
    last_status,
    package_medium,
)


def test_the_configuration_medium_is_the_document_and_nul_padding_in_whole_sectors() -> None:
    document = {"generation": 7, "role": "Web", "settings": {"Greeting": "hé"}}
    medium = configuration_medium(document)
    assert len(medium) % 2048 == 0 and medium.endswith(b"\0")
    assert json.loads(medium.rstrip(b"\0")) == document


def test_a_package_medium_keeps_the_package_bytes_first() -> None:
    medium = package_medium(b"\x1f\x8b" + b"x" * 3000)
    assert len(medium) == 4096 and medium.startswith(b"\x1f\x8b" + b"x" * 3000)


def test_the_document_digest_ignores_the_generation_only() -> None:
    document = {"generation": 1, "settings": {"Greeting": "hello"}}
    assert document_digest(document) == document_digest({**document, "generation": 2})
    assert document_digest(document) != document_digest({**document, "settings": {}})


def test_the_newest_well_formed_status_line_wins() -> None:
    raw = (
        b'{"state": "starting", "generation": 1}\n'
        b'{"state": "ready", "generation": 2, "uptimeSeconds": 12.5}\n'
        b'{"state": "rea'  # cut short by the read's deadline
    )
    status = last_status(raw)
    assert status is not None and status.state == "ready" and status.uptime_seconds == 12.5
    assert last_status(b"") is None and last_status(b"garbage\n") is None


def test_addresses_are_fixed_per_role_block_and_instance() -> None:
    assert instance_address("10.213.0.0/24", 10, 0) == "10.213.0.10"
    assert ServiceNetwork("net", "10.213.0.0/24", 30).address(2) == "10.213.0.32"
    with pytest.raises(ValueError, match="does not fit"):
        instance_address("10.213.0.0/28", 10, 5)
    mac = ServiceNetwork.mac("cs-dev-web-0")
    assert mac.startswith("52:54:00:") and mac == ServiceNetwork.mac("cs-dev-web-0")
    assert mac != ServiceNetwork.mac("cs-dev-web-1")
