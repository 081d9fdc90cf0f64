"""Web and Worker roles end to end: real `pulumi up`, real libvirtd, TCG guests, the real agent.

One story, as a team lives it, on the sample service (a Web role of 2 instances in 2 update
domains, a Worker role of 1, a VM role beside them): the page answers with the package's
version and a setting; the worker does jobs it takes from the web role's internal endpoint;
package v2 rolls domain by domain while the other domain keeps serving; a setting change
reaches both roles without a reboot; a newer guest OS reimages Web and Worker instances and
leaves the VM role alone; a package whose startup task fails stops at the first update
domain with the task's output; a secret setting never shows; destroy leaves nothing.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudservice.fabric import read_status
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import REPO, make_project, make_stack

WEBROLE = "cloudservice:index:WebRole"
WORKERROLE = "cloudservice:index:WorkerRole"
VMROLE = "cloudservice:index:VmRole"
SECRET = "e2e-api-key-7f3c9d"


@pytest.fixture
def stack(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str, guest_os: Path) -> Iterator[auto.Stack]:
    project = make_project(tmp_path / "project")
    created = make_stack(project, tmp_path / "state", prefix="ww")
    created.set_config("serviceFile", auto.ConfigValue("sample/service.yaml"))
    created.remove_config("webImage")
    created.remove_config("webInstances")
    legacy = str(REPO / ".cache/images/web-v1.vhd")
    created.set_config("images.Legacy", auto.ConfigValue(legacy), path=True)
    created.set_config(
        "secretSettings.Web.ApiKey", auto.ConfigValue(SECRET, secret=True), path=True
    )
    created.set_config("healthTimeoutSeconds", auto.ConfigValue("120"))
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)


def _resources(stack: auto.Stack, kind: str) -> dict[str, Any]:
    resources = stack.export_stack().deployment.get("resources", [])
    return next(r["outputs"] for r in resources if r["type"] == kind)


def _page(instance: dict[str, Any]) -> str:
    return requests.get(instance["urls"][0], timeout=5).text.strip()


def _uptime(host: Host, instance: dict[str, Any]) -> float:
    status = read_status(host, instance["name"])
    assert status is not None, f"no status from {instance['name']}'s agent"
    return status.uptime_seconds


def _wait_for_result(web: dict[str, Any], job: str, deadline: float = 60) -> dict[str, Any]:
    base = web["urls"][0]
    requests.get(f"{base}submit", params={"job": job}, timeout=5).raise_for_status()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for result in requests.get(f"{base}results", timeout=5).json():
            if result["job"] == job:
                return dict(result)
        time.sleep(1)
    raise AssertionError(f"the worker did not do job {job!r} within {deadline} s")


class Poller:
    """Ask every web instance for its page, several times a second, while an `up` runs."""

    def __init__(self, instances: list[dict[str, Any]]) -> None:
        self.instances = instances
        self.answers: list[tuple[float, int, str]] = []  # (time, update domain, page or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for instance in self.instances:
                try:
                    answer = _page(instance)
                except requests.RequestException as exc:
                    answer = f"error: {type(exc).__name__}"
                self.answers.append((time.monotonic(), instance["updateDomain"], answer))
            time.sleep(0.3)

    def first(self, domain: int, text: str) -> float:
        return min(t for t, d, answer in self.answers if d == domain and text in answer)


def _release(tmp_path: Path, version: str, fail_startup: bool = False) -> Path:
    """The sample web role's directory, as a new version."""
    package = tmp_path / f"web-{version}"
    shutil.copytree(REPO / "sample" / "roles" / "web", package)
    app = package / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"', f'VERSION = "{version}"'))
    if fail_startup:
        (package / "migrate.sh").write_text("echo 'migration failed: schema v9 is unknown'\nexit 3\n")
    return package


def test_web_and_worker_roles(
    stack: auto.Stack, host: Host, tmp_path: Path, newer_guest_os: Any
) -> None:
    up = stack.up()
    web = _resources(stack, WEBROLE)
    worker = _resources(stack, WORKERROLE)
    legacy = _resources(stack, VMROLE)
    instances = web["instances"]
    assert [i["updateDomain"] for i in instances] == [0, 1]
    assert {_page(i) for i in instances} == {
        "web v1: hello from Web_IN_0",
        "web v1: hello from Web_IN_1",
    }

    # The worker reaches the web role's internal endpoint at the topology's address.
    result = _wait_for_result(instances[0], "hello-e2e")
    assert result == {
        "job": "hello-e2e",
        "result": "HELLO-E2E",
        "by": "Worker_IN_0",
        "greeting": "hello",
    }

    # Package v2: one update domain at a time; the other keeps serving v1.
    uptimes = {i["name"]: _uptime(host, i) for i in instances}
    stack.set_config("packages.Web", auto.ConfigValue(str(_release(tmp_path, "v2"))), path=True)
    with Poller(instances) as poller:
        stack.up()
    web = _resources(stack, WEBROLE)
    assert web["updateDomainsUpgraded"] == [0, 1] and web["rolloutComplete"] is True
    assert poller.first(0, "web v2") < poller.first(1, "web v2")
    moved = poller.first(0, "web v2")
    assert all("v1" not in a for t, d, a in poller.answers if d == 0 and t > moved)
    for when in {t for t, _d, _a in poller.answers}:  # every round, someone answered
        round_ = [a for t, _d, a in poller.answers if abs(t - when) < 0.25]
        assert any(a.startswith("web v") for a in round_), round_
    # A new package restarts the role, not the instance: the guest keeps its uptime.
    for instance in web["instances"]:
        assert _uptime(host, instance) > uptimes[instance["name"]]

    # A setting: both roles, in place, no reboot.
    before = {i["name"]: _uptime(host, i) for i in [*web["instances"], *worker["instances"]]}
    service = Path(stack.workspace.work_dir) / "sample" / "service.yaml"
    service.write_text(service.read_text().replace("Greeting: hello", "Greeting: bonjour"))
    preview = stack.preview(diff=True)
    assert "settings changed: Greeting" in preview.stdout
    stack.up()
    web = _resources(stack, WEBROLE)
    worker = _resources(stack, WORKERROLE)
    assert {_page(i) for i in web["instances"]} == {
        "web v2: bonjour from Web_IN_0",
        "web v2: bonjour from Web_IN_1",
    }
    assert _wait_for_result(web["instances"][1], "again")["greeting"] == "bonjour"
    for instance in [*web["instances"], *worker["instances"]]:
        assert _uptime(host, instance) > before[instance["name"]]

    # A newer guest OS: Web and Worker reimaged onto it, packages kept; the VM role untouched.
    old_os = web["osResolved"]
    new_os = newer_guest_os(stack)
    preview = stack.preview(diff=True)
    assert f"os: {old_os} -> {new_os}" in preview.stdout
    stack.up()
    web = _resources(stack, WEBROLE)
    worker = _resources(stack, WORKERROLE)
    assert web["osResolved"] == new_os == worker["osResolved"]
    for instance in [*web["instances"], *worker["instances"]]:
        assert _uptime(host, instance) < 120  # rebooted onto the new OS
        status = read_status(host, instance["name"])
        assert status is not None and status.os == new_os
    assert {_page(i) for i in web["instances"]} == {
        "web v2: bonjour from Web_IN_0",
        "web v2: bonjour from Web_IN_1",
    }
    assert _resources(stack, VMROLE)["instances"] == legacy["instances"]

    # A release whose startup task fails: stopped at update domain 0, with the task's words.
    service.write_text(
        service.read_text().replace(
            "      entryPoint: {commandLine: python3 app.py}",
            "      entryPoint: {commandLine: python3 app.py}\n"
            "      startupTasks: [{commandLine: sh migrate.sh}]",
        )
    )
    broken = _release(tmp_path, "v3", fail_startup=True)
    stack.set_config("packages.Web", auto.ConfigValue(str(broken)), path=True)
    with pytest.raises(auto.CommandError) as stopped:
        stack.up()
    message = str(stopped.value)
    assert "migration failed: schema v9 is unknown" in message and "exit" in message, message
    assert "Traceback" not in message
    web = _resources(stack, WEBROLE)
    assert web["rolloutComplete"] is False and web["updateDomainsUpgraded"] == []
    serving = next(i for i in web["instances"] if i["updateDomain"] == 1)
    assert _page(serving) == "web v2: bonjour from Web_IN_1"

    # Secrets: never in state, outputs or what `up` printed.
    exported = json.dumps(stack.export_stack().deployment)
    assert SECRET not in exported and SECRET not in up.stdout and SECRET not in message
