"""cloudservice:index:Volume via the provider: check, diff, preview, create/update/delete."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from cloudservice.resources.provider import CloudServiceProvider
from cloudservice.virt import Host
from pulumi.provider.experimental.provider import PropertyDiffKind

from .conftest import Driver

TOKEN = "cloudservice:index:Volume"


@pytest.fixture
def volume(provider: CloudServiceProvider) -> Driver:
    return Driver(provider, TOKEN)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.html"
    path.write_bytes(b"<h1>v1</h1>\n")
    return path


def test_check_fills_in_the_digest_and_defaults(volume: Driver, page: Path) -> None:
    inputs = volume.checked({"pool": "p", "name": "v", "source": str(page)})
    assert inputs["sourceSha256"] == hashlib.sha256(page.read_bytes()).hexdigest()
    assert inputs["format"] == "raw"


@pytest.mark.parametrize(
    ("inputs", "prop", "reason"),
    [
        ({"pool": "p", "name": "v", "source": "/no/such/file"}, "source", "does not exist"),
        ({"pool": "p", "name": "v", "source": "relative.txt"}, "source", "absolute path"),
        ({"pool": "p", "source": "/etc/hostname"}, "name", "Field required"),
        ({"pool": "p", "name": "v", "source": "/etc/hostname", "format": "vmdk"}, "format", "raw"),
        ({"pool": "p", "name": "v", "source": "/etc/hostname", "colour": 1}, "colour", "Extra"),
    ],
)
def test_check_reports_bad_inputs_by_property(
    volume: Driver, inputs: dict[str, object], prop: str, reason: str
) -> None:
    failures = {f.property: f.reason for f in volume.check(inputs).failures}
    assert prop in failures and reason in failures[prop]


def test_check_refuses_content_that_does_not_match_a_pinned_digest(
    volume: Driver, page: Path
) -> None:
    response = volume.check(
        {"pool": "p", "name": "v", "source": str(page), "sourceSha256": "0" * 64}
    )
    assert [f.property for f in response.failures] == ["sourceSha256"]


def test_check_waits_for_unknown_inputs(volume: Driver, page: Path) -> None:
    response = volume.check({"name": "v", "source": str(page)}, unknown={"pool"})
    assert not response.failures


def test_diff_content_is_an_update_and_pool_or_name_a_replace(volume: Driver, page: Path) -> None:
    old = volume.checked({"pool": "p", "name": "v", "source": str(page)})
    assert volume.diff(old, old).changes is False
    page.write_bytes(b"<h1>v2</h1>\n")
    new = volume.checked({"pool": "p", "name": "v", "source": str(page)})
    content = volume.diff(old, new)
    assert content.changes and not content.replaces
    assert content.detailed_diff["sourceSha256"].kind == PropertyDiffKind.UPDATE
    moved = volume.diff(old, {**old, "pool": "q"})
    assert moved.replaces == ["pool"] and moved.delete_before_replace
    assert moved.detailed_diff["pool"].kind == PropertyDiffKind.UPDATE_REPLACE


def test_diff_treats_an_unknown_pool_as_a_replace(volume: Driver, page: Path) -> None:
    old = volume.checked({"pool": "p", "name": "v", "source": str(page)})
    assert volume.diff(old, {k: v for k, v in old.items() if k != "pool"}, {"pool"}).replaces == [
        "pool"
    ]


def test_preview_has_no_side_effects(
    volume: Driver, page: Path, host: Host, test_pool: str
) -> None:
    inputs = volume.checked({"pool": test_pool, "name": "v", "source": str(page)})
    resource_id, outputs = volume.create(inputs, preview=True)
    assert resource_id == f"{test_pool}/v"
    assert {"path", "capacity", "allocation"} <= outputs.unknown
    assert host.volume(test_pool, "v") is None


def test_create_read_update_delete(volume: Driver, page: Path, host: Host, test_pool: str) -> None:
    inputs = volume.checked({"pool": test_pool, "name": "v", "source": str(page)})
    resource_id, created = volume.create(inputs)
    state = created.values
    assert state["capacity"] == page.stat().st_size
    assert _content(host, test_pool, "v") == page.read_bytes()

    assert volume.read(resource_id, state) == (resource_id, state)

    page.write_bytes(b"<h1>version two, longer</h1>\n")
    news = volume.checked({"pool": test_pool, "name": "v", "source": str(page)})
    updated = volume.update(resource_id, state, news).values
    assert updated["path"] == state["path"] and updated["capacity"] == page.stat().st_size
    assert _content(host, test_pool, "v") == page.read_bytes()

    volume.delete(resource_id, updated)
    assert host.volume(test_pool, "v") is None
    assert volume.read(resource_id, updated)[0] == ""  # gone: refresh drops it


def _content(host: Host, pool: str, name: str) -> bytes:
    sink = io.BytesIO()
    host.download_volume(pool, name, sink)
    return sink.getvalue()
