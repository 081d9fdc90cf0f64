"""The generic libvirt objects end to end: real CLI, real language host and plugin, real libvirtd.

The program is `programs/libvirt_objects/`: a pool, a network and a volume of a file's bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cloudservice.virt import Host
from pulumi import automation as auto
from pulumi.automation import OpType

from .project import make_project


@pytest.fixture
def project(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Path:
    return make_project(tmp_path / "project", program="libvirt_objects")


def _volume_bytes(host: Host, pool: str, name: str) -> bytes:
    sink = io.BytesIO()
    host.download_volume(pool, name, sink)
    return sink.getvalue()


def _resource_types(stack: auto.Stack) -> list[str]:
    return sorted(r["type"] for r in stack.export_stack().deployment.get("resources", []))


def test_stack_lifecycle(stack: auto.Stack, project: Path, host: Host, tmp_path: Path) -> None:
    page = project / "welcome.html"

    preview = stack.preview()
    # The stack, a pool, a network and a volume.
    assert preview.change_summary == {OpType.CREATE: 4}

    up = stack.up()
    assert up.summary.resource_changes == {"create": 4}
    pool, network = up.outputs["pool"].value, up.outputs["network"].value
    pool_info = host.pool(pool)
    assert pool_info is not None and pool_info.active
    assert pool_info.path == stack.get_config("poolPath").value
    network_info = host.network(network)
    assert network_info is not None and network_info.active
    assert _volume_bytes(host, pool, "welcome.html") == page.read_bytes()

    assert stack.up().summary.resource_changes == {"same": 4}

    # New content in the same file: an in-place update, shown property by property.
    page.write_text("<h1>second release</h1>\n")
    preview = stack.preview(diff=True)
    assert preview.change_summary[OpType.UPDATE] == 1
    assert OpType.REPLACE not in preview.change_summary
    assert "~ sourceSha256" in preview.stdout
    assert stack.up().summary.resource_changes == {"same": 3, "update": 1}
    assert _volume_bytes(host, pool, "welcome.html") == page.read_bytes()

    # A new subnet: the network is replaced, and the diff says why.
    new_cidr = "10.215.251.0/24"
    stack.set_config("cidr", auto.ConfigValue(new_cidr))
    preview = stack.preview(diff=True)
    assert preview.change_summary[OpType.REPLACE] == 1
    assert "cidr" in preview.stdout and "+-cloudservice:index:Network" in preview.stdout
    stack.up()
    replaced = host.network(network)
    assert replaced is not None and replaced.cidr == new_cidr

    # Deleted behind Pulumi's back: refresh notices, the next up puts it back.
    host.delete_volume(pool, "welcome.html")
    refresh = stack.refresh()
    assert refresh.summary.resource_changes == {"same": 3, "delete": 1}
    assert "cloudservice:index:Volume" not in _resource_types(stack)
    assert stack.up().summary.resource_changes == {"same": 3, "create": 1}
    assert _volume_bytes(host, pool, "welcome.html") == page.read_bytes()

    stack.destroy()
    assert host.pool(pool) is None and host.network(network) is None
    assert not Path(pool_info.path).exists()
    assert _resource_types(stack) == []


def test_bad_input_is_one_clear_error_and_keeps_what_is_deployed(
    stack: auto.Stack, project: Path, host: Host
) -> None:
    pool = stack.up().outputs["pool"].value
    stack.set_config("content", auto.ConfigValue(str(project / "missing.html")))
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert "missing.html does not exist" in message
    assert "Traceback" not in message
    assert host.volume(pool, "welcome.html") is not None  # the deployed volume is untouched


def test_a_host_that_is_down_is_one_clear_error(stack: auto.Stack, tmp_path: Path) -> None:
    stack.set_config(
        "cloudservice:uri", auto.ConfigValue(f"qemu:///system?socket={tmp_path}/absent")
    )
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert "cannot connect to libvirt" in message and "is libvirtd running" in message
    assert "Traceback" not in message
    stack.remove_config("cloudservice:uri")
