"""A program in any directory uses the provider installed by `make setup`, through the SDK.

Its Pulumi.yaml names no plugin path: the engine finds `cloudservice` among the installed
plugins (`pulumi plugin ls`), and the program imports only the SDKs (pulumi_cloudservice,
pulumi_libvirt).
"""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import BIN, REPO, local_workspace

PROGRAM = """
import pulumi
import pulumi_cloudservice as cloudservice
import pulumi_libvirt as libvirt

config = pulumi.Config()
prefix = f"cs-{pulumi.get_stack()}"
pool = libvirt.Pool(
    "pool", name=f"{prefix}-pool", type="dir",
    target=libvirt.PoolTargetArgs(path=config.require("poolPath")),
)
web = cloudservice.VmRole(
    "web", name=f"{prefix}-web", pool=pool.name, image=config.require("image"),
    instance_count=1, update_domain_count=1,
)
pulumi.export("url", web.instances[0]["urls"][0])
"""


@pytest.fixture
def stack(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Iterator[auto.Stack]:
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(
        textwrap.dedent(f"""\
            name: elsewhere
            runtime:
              name: python
              options:
                virtualenv: {REPO / ".venv"}
            """)
    )
    (work / "__main__.py").write_text(PROGRAM)
    name = f"inst{uuid.uuid4().hex[:6]}"
    created = auto.Stack.create(name, local_workspace(work, tmp_path / "state"))
    created.set_config("libvirt:uri", auto.ConfigValue("qemu:///system"))
    created.set_config("poolPath", auto.ConfigValue(f"/var/lib/cloudservice/pools/{name}"))
    created.set_config("image", auto.ConfigValue(str(REPO / ".cache/images/web-v1.vhd")))
    yield created
    created.destroy()
    created.workspace.remove_stack(created.name)


def test_a_program_elsewhere_uses_the_installed_plugin(stack: auto.Stack, host: Host) -> None:
    plugins = subprocess.run([BIN / "pulumi", "plugin", "ls"], capture_output=True, text=True)
    assert any(
        line.split()[:2] == ["cloudservice", "resource"] for line in plugins.stdout.splitlines()
    )
    up = stack.up()
    assert "cloudservice web v1" in requests.get(up.outputs["url"].value, timeout=10).text
    stack.destroy()
    assert host.pool(f"cs-{stack.name}-pool") is None
