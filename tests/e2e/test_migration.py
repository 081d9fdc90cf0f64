"""Moving a stack from 0.1 (README, "Moving a stack from 0.1"), on a recorded 0.1 state.

`fixtures/stack-0.1.json` is `pulumi stack export` of the 0.1 sample program (our own
StoragePool, Network and Volume, the CloudService and its VmRole), with this machine's names
and paths made placeholders. The test puts on the host what that stack had there, imports the
state, follows the README's steps with the real CLI, and checks what a user would: the pool and
the role are kept (the role still serves), the old network and volume are gone, the old
resource types are out of the state, and a second `up` has nothing to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import requests
from cloudservice import fabric
from cloudservice.virt import Host, NetworkSpec, PoolSpec, VolumeSpec
from pulumi import automation as auto

from .project import BIN, REPO

FIXTURE = Path(__file__).parent / "fixtures" / "stack-0.1.json"
RETIRED = {f"cloudservice:index:{kind}" for kind in ("StoragePool", "Network", "Volume")}


def _recorded(values: dict[str, str]) -> dict[str, Any]:
    text = FIXTURE.read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return dict(json.loads(text)["deployment"])


def _cli(stack: auto.Stack, *args: str) -> str:
    env = {**os.environ, **stack.workspace.env_vars}
    run = subprocess.run(
        [str(BIN / "pulumi"), *args, "--stack", stack.name, "--non-interactive"],
        cwd=stack.workspace.work_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_a_stack_made_by_0_1_moves_to_pulumi_libvirt(
    stack: auto.Stack, project: Path, host: Host
) -> None:
    prefix = f"cs-{stack.name}"
    pool_path = stack.get_config("poolPath").value
    content = project / "welcome.html"
    content.write_text("<h1>0.1</h1>\n")
    values = {
        "stack": stack.name,
        "pool_path": pool_path,
        "image": str(REPO / ".cache/images/web-v1.vhd"),
        "content": str(content),
        "cidr": f"10.218.{uuid.uuid4().int % 250}.0/24",
        "bridge": f"csv-{prefix}-net"[:15],
    }
    deployment = _recorded(values)

    # The host as 0.1 left it: its pool, network and volume, and the VM role in the pool.
    host.ensure_pool(PoolSpec(name=f"{prefix}-pool", path=pool_path))
    network = host.ensure_network(NetworkSpec(name=f"{prefix}-net", cidr=values["cidr"]))
    spec = VolumeSpec(name="welcome.html", capacity=content.stat().st_size)
    host.upload_volume(f"{prefix}-pool", spec, content)
    role = next(r for r in deployment["resources"] if r["type"] == "cloudservice:index:VmRole")
    running = fabric.VmRole(host, fabric.VmRoleSpec.model_validate(role["inputs"])).deploy()
    role["outputs"] = {**role["inputs"], **running.wire()}
    stack.import_stack(auto.Deployment(version=3, deployment=deployment))

    try:
        # The README's steps.
        uuid_of_pool = subprocess.run(
            ["virsh", "-c", "qemu:///system", "pool-uuid", f"{prefix}-pool"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        _cli(stack, "import", "libvirt:index/pool:Pool", "pool", uuid_of_pool,
             "--yes", "--protect=false", "--generate-code=false")  # fmt: skip
        up = stack.up()
        network_left = host.network(network.name) is not None
    finally:
        host.delete_network(network.name)  # whatever happened: no network outlives the test

    changes = up.summary.resource_changes or {}
    assert changes.get("delete") == 3 and set(changes) == {"same", "delete"}, changes
    types = {r["type"] for r in stack.export_stack().deployment["resources"]}
    assert not types & RETIRED and "libvirt:index/pool:Pool" in types
    assert not network_left  # the up deleted it
    assert host.volume(f"{prefix}-pool", "welcome.html") is None
    assert host.pool(f"{prefix}-pool") is not None  # kept: pulumi-libvirt's now
    (instance,) = running.instances
    assert "cloudservice web v1" in requests.get(instance.urls[0], timeout=10).text
    assert stack.up().summary.resource_changes == {"same": changes["same"]}
