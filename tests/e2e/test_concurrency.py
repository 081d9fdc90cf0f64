"""The provider never blocks: resources Pulumi runs in parallel really run in parallel.

The program (`programs/two_roles/`) has two independent VM roles. Each instance records when
it started and how long it took to answer its probe; if the provider ran one resource's work
at a time, the second role's instance would start only after the first one's was healthy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from .project import REPO, make_project


@pytest.fixture
def project(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Path:
    return make_project(tmp_path / "project", program="two_roles")


def test_independent_roles_deploy_concurrently(stack: auto.Stack) -> None:
    stack.set_config("webImage", auto.ConfigValue(str(REPO / ".cache/images/web-v1.vhd")))
    stack.up()

    resources = stack.export_stack().deployment["resources"]
    roles = [r["outputs"] for r in resources if r["type"] == "cloudservice:index:VmRole"]
    first, second = (role["instances"][0] for role in roles)
    spans: list[Any] = [
        (i["startedAt"], i["startedAt"] + i["healthyAfterSeconds"]) for i in (first, second)
    ]
    (start_a, healthy_a), (start_b, healthy_b) = spans
    # Each role's instance started before the other's was healthy: the two creates overlapped.
    assert start_a < healthy_b and start_b < healthy_a, spans
