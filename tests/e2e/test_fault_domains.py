"""Several hosts end to end: a second, real libvirtd on this machine (toolchain/second-host.sh:
its own mount and network namespaces, run and state directories, reached by its own URI) beside
the system one, as the stack's two fault domains.

- `up` spreads the VM role's instances over both hosts; each host gets the image once, and
  the front door balances over both;
- a host that does not answer stops the `up` before anything is touched, naming it, and the
  service keeps serving from both;
- with the host back, a new release rolls host by host, each getting only the changed pages.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import REPO, make_stack
from .review import review

SCRIPT = REPO / "toolchain" / "second-host.sh"
IMAGES = REPO / ".cache" / "images"
# A host of the tests' own, apart from one a developer may run for a staging stack.
SECOND_HOST = {
    "CS_HOST2_DIR": "/tmp/cloudservice-host2-tests",
    "CS_HOST2_NETNS": "cs-host2-tests",
    "CS_HOST2_VETH": "cs-h2t-root",
    "CS_HOST2_LINK": "10.219.254.0",
    "CS_HOST2_ROUTE": "10.221.0.0/16",
}


def _second_host(*command: str) -> str:
    ran = subprocess.run(
        ["bash", str(SCRIPT), *command],
        env={**os.environ, **SECOND_HOST},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, f"second-host.sh {' '.join(command)}: {ran.stderr}"
    return ran.stdout.strip()


@pytest.fixture(scope="module")
def second_host() -> Iterator[str]:
    _second_host("start")
    yield _second_host("uri")
    _second_host("stop")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stack(project: Path, tmp_path: Path, second_host: str) -> Iterator[auto.Stack]:
    created = make_stack(project, tmp_path / "state", prefix="fd")
    number = int(created.get_config("cidr").value.split(".")[2])
    hosts = [
        {"uri": "qemu:///system", "cidr": f"10.215.{number}.0/24"},
        {
            "uri": second_host,
            "cidr": f"10.221.{number}.0/24",
            "poolPath": f"{SECOND_HOST['CS_HOST2_DIR']}/pools/{created.name}",
        },
    ]
    created.set_config("hosts", auto.ConfigValue(json.dumps(hosts)))
    created.set_config("webInstances", auto.ConfigValue("2"))
    created.set_config("frontDoorPorts", auto.ConfigValue(json.dumps({"Web.HttpIn": _free_port()})))
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)


def _titles(url: str, times: int = 6) -> set[str]:
    pages = [requests.get(url, timeout=5).text for _ in range(times)]
    return {page.split("<title>")[1].split("</title>")[0] for page in pages}


def _by_host(instances: list[dict[str, object]]) -> dict[str, list[str]]:
    placed: dict[str, list[str]] = {}
    for instance in instances:
        placed.setdefault(str(instance["host"]), []).append(str(instance["name"]))
    return placed


def test_instances_spread_over_two_hosts_and_a_host_down_stops_the_rollout(
    stack: auto.Stack, second_host: str, tmp_path: Path
) -> None:
    up = stack.up()
    instances = up.outputs["instances"].value
    prefix = f"cs-{stack.name}-web"
    assert _by_host(instances) == {
        "qemu:///system": [f"{prefix}-0"],
        second_host: [f"{prefix}-1"],
    }
    assert [i["update_domain"] for i in instances] == [0, 1]
    with Host("qemu:///system") as first, Host(second_host) as second:
        assert first.domain(f"{prefix}-0") is not None and first.domain(f"{prefix}-1") is None
        assert second.domain(f"{prefix}-1") is not None and second.domain(f"{prefix}-0") is None
        # Each host got the image once: one base layer in each pool.
        pool = f"cs-{stack.name}-pool"
        assert first.volume_names(pool).count(f"{prefix}-l0.vhd") == 1
        assert second.volume_names(pool).count(f"{prefix}-l0.vhd") == 1
    door = up.outputs["endpoints"].value["Web.HttpIn"]
    assert _titles(door) == {"cloudservice web v1"}
    for instance in instances:  # each host's instance answers where the front door sends
        assert "cloudservice web v1" in requests.get(instance["urls"][0], timeout=5).text

    # The next release, as its pull request shows it: one role resource per host.
    stack.set_config("webImage", auto.ConfigValue(str(IMAGES / "web-v2.vhd")))
    shown = review(stack, "fault-domains", tmp_path, names={stack.name: "staging"})
    assert "#### **Web** (VM role, fault domain 0 of 2): update" in shown, shown
    assert "#### **Web** (VM role, fault domain 1 of 2): update" in shown

    # The second host stops answering: `up` stops before touching anything, naming it.
    _second_host("down")
    with pytest.raises(auto.CommandError) as stopped:
        stack.up()
    message = str(stopped.value)
    assert f"host {second_host} (stacks/Pulumi.{stack.name}.yaml: hosts[1]) does not answer" in (
        message
    )
    assert "nothing was changed on any host" in message and "Traceback" not in message
    assert _titles(door) == {"cloudservice web v1"}  # both hosts' instances still serve

    # Back: the release rolls host by host (the first, then the second), changed pages only.
    _second_host("up")
    up = stack.up()
    assert _titles(door) == {"cloudservice web v2"}
    resources = stack.export_stack().deployment["resources"]
    roles = {r["urn"].rsplit("::", 1)[1]: r["outputs"] for r in resources if "VmRole" in r["type"]}
    assert set(roles) == {"sample-Web", "sample-Web-fd1"}
    started = {i["name"]: i["startedAt"] for role in roles.values() for i in role["instances"]}
    assert started[f"{prefix}-0"] < started[f"{prefix}-1"]
    for role in roles.values():
        assert 0 < role["lastUploadBytes"] < 64 * 1024  # a layer of pages, on each host
        assert role["rolloutComplete"] is True
