"""The dev stack's program end to end: the real CLI and Python language host, pulumi-libvirt's
plugin for the pool and ours for the roles, a real libvirtd and a real guest."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from cloudservice.virt import Host
from pulumi import automation as auto
from pulumi.automation import OpType

VMROLE = "cloudservice:index:VmRole"


def _resource_types(stack: auto.Stack) -> list[str]:
    return sorted(r["type"] for r in stack.export_stack().deployment.get("resources", []))


def test_stack_lifecycle(stack: auto.Stack, host: Host) -> None:
    preview = stack.preview()
    # The stack, pulumi-libvirt's pool, the CloudService component and its VmRole.
    assert preview.change_summary == {OpType.CREATE: 4}

    up = stack.up()
    assert up.summary.resource_changes == {"create": 4}
    pool = host.pool(up.outputs["pool"].value)
    assert pool is not None and pool.active
    assert pool.path == stack.get_config("poolPath").value
    assert "libvirt:index/pool:Pool" in _resource_types(stack)
    (instance,) = up.outputs["instances"].value
    assert "cloudservice web v1" in requests.get(instance["urls"][0], timeout=10).text

    assert stack.up().summary.resource_changes == {"same": 4}

    # One more instance: an in-place update of the role, shown property by property.
    stack.set_config("webInstances", auto.ConfigValue("2"))
    preview = stack.preview(diff=True)
    assert preview.change_summary.get(OpType.UPDATE) == 1
    assert OpType.REPLACE not in preview.change_summary
    assert "~ instanceCount" in preview.stdout

    stack.destroy()
    assert host.pool(pool.name) is None and not Path(pool.path).exists()
    assert host.domain(instance["name"]) is None
    assert _resource_types(stack) == []


def test_bad_input_is_one_clear_error_and_keeps_what_is_deployed(
    stack: auto.Stack, project: Path, host: Host
) -> None:
    up = stack.up()
    (instance,) = up.outputs["instances"].value
    missing = project / "missing.vhd"
    stack.set_config("webImage", auto.ConfigValue(str(missing)))
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert f"{missing} does not exist" in message
    assert "Traceback" not in message
    assert host.domain(instance["name"]) is not None  # the deployed role is untouched
    assert "cloudservice web v1" in requests.get(instance["urls"][0], timeout=10).text

    # A service document the fabric cannot run: every problem named, by file and field.
    document = project / "sample" / "vm-role.yaml"
    document.write_text(document.read_text().replace("instances: 2", "instances: 0"))
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert f"{document}: configuration.roles[Web].instances" in message
    assert "Traceback" not in message
    assert "cloudservice web v1" in requests.get(instance["urls"][0], timeout=10).text

    # A stack config key the program does not read (a typo), then a value it cannot use: one
    # line naming the key and the stack's file, before anything is touched.
    document.write_text(document.read_text().replace("instances: 0", "instances: 2"))
    stack.set_config("webInstancess", auto.ConfigValue("2"))
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    where = f"stacks/Pulumi.{stack.name}.yaml"
    assert f"{where}: unknown config key sample-service:webInstancess" in message
    assert "Traceback" not in message
    stack.remove_config("webInstancess")
    stack.set_config("healthTimeoutSeconds", auto.ConfigValue("soon"))
    with pytest.raises(auto.CommandError) as failure:
        stack.preview()
    assert f"{where}: config sample-service:healthTimeoutSeconds: Input should be a valid" in str(
        failure.value
    )
    assert host.domain(instance["name"]) is not None
    assert "cloudservice web v1" in requests.get(instance["urls"][0], timeout=10).text


def test_a_host_that_is_down_is_one_clear_error(stack: auto.Stack, tmp_path: Path) -> None:
    stack.set_config(
        "cloudservice:uri", auto.ConfigValue(f"qemu:///system?socket={tmp_path}/absent")
    )
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert "cannot connect to libvirt" in message and "is libvirtd running" in message, message
    assert f"{tmp_path}/absent" in message and "Traceback" not in message
    stack.remove_config("cloudservice:uri")
