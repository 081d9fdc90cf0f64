"""A throwaway copy of the project, driven by the real CLI through `pulumi.automation`.

Each test gets its own project directory, local state backend and stack name, so names on the
libvirt host never collide with the dev stack or another test; whatever a test leaves on the
host is destroyed at the end.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from ..conftest import BIN, REPO


@pytest.fixture
def project(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Path:
    """The repository's program and sample, with absolute paths to the plugin and virtualenv."""
    work = tmp_path / "project"
    work.mkdir()
    settings = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    settings["plugins"]["providers"][0]["path"] = str(REPO / "provider")
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    (work / "stacks").mkdir()
    shutil.copy(REPO / "__main__.py", work)
    shutil.copytree(REPO / "sample", work / "sample")
    return work


@pytest.fixture
def stack(project: Path, tmp_path: Path) -> Iterator[auto.Stack]:
    state = tmp_path / "state"
    state.mkdir()
    command = auto.PulumiCommand(root=str(BIN.parent), skip_version_check=True)
    workspace = auto.LocalWorkspace(
        work_dir=str(project),
        env_vars={
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": "e2e",
        },
        pulumi_command=command,
    )
    name = f"e2e{uuid.uuid4().hex[:6]}"
    created = auto.Stack.create(name, workspace)
    # Not under the test's tmp_path: guests run as libvirt's qemu user, who must reach the pool.
    created.set_config("poolPath", auto.ConfigValue(f"/var/lib/cloudservice/pools/{name}"))
    # The sample service's VM role, on the image `make setup` builds, one instance to be quick.
    created.set_config("webImage", auto.ConfigValue(str(REPO / ".cache/images/web-v1.vhd")))
    created.set_config("webInstances", auto.ConfigValue("1"))
    # A subnet of its own: libvirt refuses two networks on one subnet (the dev stack has one).
    created.set_config("cidr", auto.ConfigValue(f"10.215.{uuid.uuid4().int % 250}.0/24"))
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(name)
