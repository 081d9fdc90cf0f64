"""Promotion's checks: what a stack exports as its releases, and what a promoted stack refuses."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.promotion import RoleRelease, _check_role, _releases, role_release
from components.stack_config import parse_stack_config

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / ".cache" / "images" / "web-v1.vhd"


def test_a_role_exports_its_digests_only_after_a_complete_rollout() -> None:
    outputs = {"image_sha256": "ab" * 32, "rollout_complete": True}
    assert role_release(outputs) == {"imageSha256": "ab" * 32}
    assert role_release({**outputs, "rollout_complete": False}) is None
    package = {
        "package_sha256": "cd" * 32,
        "os_resolved": "debian-12/2026.12.01-1",
        "os_image_sha256": "ef" * 32,
        "rollout_complete": True,
    }
    assert role_release(package) == {
        "packageSha256": "cd" * 32,
        "osVersion": "debian-12/2026.12.01-1",
        "osImageSha256": "ef" * 32,
    }


def test_a_source_without_releases_is_one_clear_error() -> None:
    with pytest.raises(
        pulumi.RunError, match=r"from staging: that stack exports no releases: `pulumi up` it"
    ):
        _releases("staging", None)


def test_an_image_staging_never_ran_is_refused_naming_its_digest(tmp_path: Path) -> None:
    ran = RoleRelease(image_sha256="0" * 64)
    with pytest.raises(pulumi.RunError) as refused:
        _check_role("staging", "Web", "vm", ran, {"Web": IMAGE}, "debian-12")
    message = str(refused.value)
    assert message.startswith("promotion from staging: role Web: image sha256:")
    assert "(web-v1.vhd) has not run healthy on staging (it runs sha256:" + "0" * 64 in message


def test_the_image_staging_ran_passes() -> None:
    from cloudservice.fabric import scan_release

    ran = RoleRelease(image_sha256=scan_release(str(IMAGE)).sha256)
    _check_role("staging", "Web", "vm", ran, {"Web": IMAGE}, "debian-12")


def test_a_role_without_a_healthy_release_there_is_refused() -> None:
    with pytest.raises(pulumi.RunError, match="role Worker has no release that ran healthy"):
        _check_role("staging", "Worker", "worker", None, {}, "debian-12")


def test_a_promoted_stack_takes_its_os_from_the_source() -> None:
    values = {"promoteFrom": "staging", "osVersion": "*"}
    with pytest.raises(pulumi.RunError, match="osVersion: a promoted stack runs the guest OS"):
        parse_stack_config(values, "sample-service", "stacks/Pulumi.production.yaml")
    assert parse_stack_config({"promoteFrom": "staging"}, "p", "f").promote_from == "staging"
