"""A throwaway copy of the project with its own state backend: for e2e tests and benchmarks.

The copy has the repository's program and sample, with absolute paths to the provider plugin
and the virtualenv; its stack names prefix everything on the libvirt host, so nothing collides
with the dev stack.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import yaml
from pulumi import automation as auto

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".cache" / "bin"


PROGRAMS = Path(__file__).resolve().parent / "programs"


def make_project(work: Path, program: str | None = None, checkout: Path = REPO) -> Path:
    """A copy of the repository's program, or of the test program `programs/<program>/`,
    run with the provider and virtualenv of `checkout` (another clone, for benchmarks)."""
    work.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = str(checkout / ".venv")
    settings["plugins"]["providers"][0]["path"] = str(checkout / "provider")
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    (work / "stacks").mkdir(exist_ok=True)
    if program is None:
        shutil.copy(REPO / "__main__.py", work)
        shutil.copytree(REPO / "sample", work / "sample", dirs_exist_ok=True)
    else:
        shutil.copytree(PROGRAMS / program, work, dirs_exist_ok=True)
    return work


def local_workspace(project: Path, state: Path) -> auto.LocalWorkspace:
    """The project's workspace with the pinned CLI and a local backend in `state`."""
    state.mkdir(parents=True, exist_ok=True)
    return auto.LocalWorkspace(
        work_dir=str(project),
        env_vars={"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "e2e"},
        pulumi_command=auto.PulumiCommand(root=str(BIN.parent), skip_version_check=True),
    )


def make_stack(project: Path, state: Path, prefix: str = "e2e") -> auto.Stack:
    """A new stack on a local backend in `state`, set up to share the host with others."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    stack = auto.Stack.create(name, local_workspace(project, state))
    # Not under a test's tmp_path: guests run as libvirt's qemu user, who must reach the pool.
    stack.set_config("poolPath", auto.ConfigValue(f"/var/lib/cloudservice/pools/{name}"))
    # A subnet of its own: libvirt refuses two networks on one subnet (the dev stack has one).
    stack.set_config("cidr", auto.ConfigValue(f"10.215.{uuid.uuid4().int % 250}.0/24"))
    # The VM role sample, on the image `make setup` builds, one instance to be quick.
    stack.set_config("serviceFile", auto.ConfigValue("sample/vm-role.yaml"))
    stack.set_config("webImage", auto.ConfigValue(str(REPO / ".cache/images/web-v1.vhd")))
    stack.set_config("webInstances", auto.ConfigValue("1"))
    # pulumi-libvirt's default provider, for test programs that do not declare one.
    stack.set_config("libvirt:uri", auto.ConfigValue("qemu:///system"))
    return stack
