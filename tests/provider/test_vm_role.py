"""cloudservice:index:VmRole via the provider: check and diff (its lifecycle is in tests/e2e)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cloudservice.fabric import Layer
from cloudservice.resources.provider import CloudServiceProvider
from pulumi.provider.experimental.provider import PropertyDiffKind

from .conftest import Driver

IMAGE = Path(__file__).resolve().parents[2] / ".cache" / "images" / "web-v1.vhd"


@pytest.fixture
def role(provider: CloudServiceProvider) -> Driver:
    if not IMAGE.exists():
        pytest.fail(f"{IMAGE} is missing: run `make setup` (it builds the sample images)")
    return Driver(provider, "cloudservice:index:VmRole")


def _inputs(**overrides: Any) -> dict[str, Any]:
    return {"name": "cs-t-web", "pool": "p", "image": str(IMAGE), "instanceCount": 2, **overrides}


def test_check_fills_in_the_image_digest_and_defaults(role: Driver) -> None:
    checked = role.checked(_inputs())
    assert len(checked["imageSha256"]) == 64
    assert checked["vmSize"] == "ExtraSmall" and checked["updateDomainCount"] == 5
    assert checked["endpoints"] == [{"name": "http", "protocol": "http", "port": 80}]


@pytest.mark.parametrize(
    ("overrides", "prop", "reason"),
    [
        ({"vmSize": "Gigantic"}, "vmSize", "ExtraSmall"),  # the known sizes are listed
        ({"image": "web.vhd"}, "image", "web.vhd is not an absolute path"),
        ({"image": "/no/such/web.vhd"}, "image", "/no/such/web.vhd does not exist"),
        ({"image": "/"}, "image", "/ is a directory, not a file"),
        ({"image": __file__}, "image", "cookie"),  # not a VHD: the bad field is named
        ({"instanceCount": 0}, "instanceCount", "greater than or equal to 1"),
        ({"updateDomainCount": 21}, "updateDomainCount", "less than or equal to 20"),
        ({"name": "Web_Role"}, "name", "pattern"),
    ],
)
def test_check_reports_bad_inputs_by_property(
    role: Driver, overrides: dict[str, Any], prop: str, reason: str
) -> None:
    failures = {f.property: f.reason for f in role.check(_inputs(**overrides)).failures}
    assert prop in failures and reason in failures[prop], failures


def test_what_azure_upgrades_in_place_is_an_update(role: Driver) -> None:
    # New image, VM size or endpoints: a rolling upgrade; more instances: a scale out.
    old = role.checked(_inputs())
    assert role.diff(old, old).changes is False
    changes = [
        {"imageSha256": "f" * 64},
        {"vmSize": "Small"},
        {"instanceCount": 3},
        {"endpoints": [{"name": "http", "protocol": "http", "port": 8080}]},
    ]
    for change in changes:
        diff = role.diff(old, {**old, **change})
        (field,) = change
        assert diff.detailed_diff[field].kind == PropertyDiffKind.UPDATE and not diff.replaces


def test_what_needs_a_new_deployment_is_a_replace(role: Driver) -> None:
    # Azure cannot change the update domain count of a running deployment.
    old = role.checked(_inputs())
    moved = role.diff(old, {**old, "updateDomainCount": 3})
    assert moved.replaces == ["updateDomainCount"] and moved.delete_before_replace


def test_state_from_before_an_input_existed_reads_as_its_default(role: Driver) -> None:
    # A stack deployed by an older provider has no faultDomain inputs: not a replacement.
    new = role.checked(_inputs())
    old = {k: v for k, v in new.items() if k not in ("faultDomain", "faultDomainCount")}
    assert role.diff(old, new).changes is False
    moved = role.diff(old, {**new, "faultDomainCount": 2})
    assert list(moved.detailed_diff) == ["faultDomainCount"] and not moved.replaces


def test_a_stopped_rollout_is_a_change_even_with_the_same_inputs(role: Driver) -> None:
    old = role.checked(_inputs())
    diff = role.diff({**old, "rolloutComplete": False}, old)
    assert diff.changes and list(diff.detailed_diff) == ["imageSha256"]


def test_a_qcow2_layer_must_name_its_backing() -> None:
    layer = {"volume": "r-l1.qcow2", "format": "qcow2", "path": "/p/r-l1.qcow2",
             "imageSha256": "0" * 64, "uniqueId": None, "virtualSize": 1, "uploadedBytes": 1,
             "blocksChanged": 1}  # fmt: skip
    with pytest.raises(ValueError, match="a qcow2 layer, and only one, has a backing"):
        Layer.model_validate(layer)
    assert Layer.model_validate({**layer, "backing": "r-l0.vhd"}).backing == "r-l0.vhd"
