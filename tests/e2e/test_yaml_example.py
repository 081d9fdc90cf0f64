"""examples/yaml-vm-role end to end: a Pulumi YAML program using pulumi-libvirt and our provider.

What it covers beyond the Python program: the YAML language host, pulumi-libvirt's plugin (built
by setup) making the pool, and our plugin's schema serving a program with no SDK of ours.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import REPO, local_workspace

EXAMPLE = REPO / "examples" / "yaml-vm-role"

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Iterator[auto.Stack]:
    # A copy, so that stack files stay out of the repository; the provider named by absolute path.
    work = tmp_path / "example"
    work.mkdir()
    settings = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
    settings["plugins"]["providers"][0]["path"] = str(REPO / "provider")
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    # The stack name is the example's prefix on the host: unique, so nothing collides.
    workspace = local_workspace(work, tmp_path / "state")
    created = auto.Stack.create(f"yaml{uuid.uuid4().hex[:6]}", workspace)
    created.set_config("image", auto.ConfigValue(str(REPO / ".cache/images/web-v1.vhd")))
    created.set_config("instances", auto.ConfigValue("1"))
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)


def _resources(stack: auto.Stack) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in stack.export_stack().deployment.get("resources", [])}


def test_yaml_example_up_and_down(stack: auto.Stack, host: Host) -> None:
    up = stack.up()
    assert up.summary.resource_changes == {"create": 3}  # the stack, the pool, the role
    pool = up.outputs["pool"].value
    assert pool == f"cs-{stack.name}-yaml-pool"
    # Made by pulumi-libvirt, on the host, and handed to our VmRole by name.
    resources = _resources(stack)
    assert "libvirt:index/pool:Pool" in resources
    assert resources["cloudservice:index:VmRole"]["outputs"]["pool"] == pool
    pool_info = host.pool(pool)
    assert pool_info is not None and pool_info.active

    # What a user checks: the instance is up and serves the release it was given.
    instances = up.outputs["instances"].value
    assert len(instances) == 1
    assert host.domain(instances[0]["name"]) is not None
    answer = requests.get(up.outputs["url"].value + "index.html", timeout=10)
    assert answer.status_code == 200 and "cloudservice web v1" in answer.text

    assert stack.up().summary.resource_changes == {"same": 3}

    stack.destroy()
    assert host.domain(instances[0]["name"]) is None
    assert host.pool(pool) is None
    assert not Path(pool_info.path).exists()
    assert _resources(stack) == {}
