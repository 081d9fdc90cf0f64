"""Web and Worker roles and the front door, end to end: real `pulumi up`, real libvirtd, TCG
guests running the real agent, a real HAProxy.

One story on the sample service (a Web role of 2 instances in 2 update domains, a Worker role
of 1, a VM role beside them), as a team lives it:
- the page answers with the package's version and a setting, through the front door, spread
  over both instances; the worker does jobs it takes from the web role's internal endpoint;
- package v2 rolls domain by domain while the other keeps serving, and a request loop against
  the front door sees no failure;
- a setting reaches both roles in place (agent-reported uptime keeps growing);
- a newer guest OS reimages Web and Worker instances, keeps their packages, leaves the VM role;
- an instance killed outside Pulumi leaves the rotation by the probe alone;
- scale in with the loop running: no failure;
- a package whose startup task fails stops at the first update domain with the task's output;
- secret settings never show; destroy leaves nothing, front door included.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudservice.fabric import read_status
from cloudservice.guestos import Catalog
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import REPO, make_project, make_stack
from .review import review

WEBROLE = "cloudservice:index:WebRole"
WORKERROLE = "cloudservice:index:WorkerRole"
VMROLE = "cloudservice:index:VmRole"
FRONTDOOR = "cloudservice:index:FrontDoor"
SECRET = "e2e-api-key-7f3c9d"
CATALOG = "CLOUDSERVICE_GUESTOS_CATALOG"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A catalog of this test's own, starting from the newest OS `make setup` built: publishing
    a newer version here moves no other stack."""
    newest = Catalog.load().resolve("debian-12", "*")
    path = tmp_path / "guestos" / "catalog.json"
    path.parent.mkdir()
    Catalog(versions=[newest]).save(path)
    return path


@pytest.fixture
def stack(
    tmp_path: Path, pulumi_cli: Path, libvirt_uri: str, catalog: Path
) -> Iterator[auto.Stack]:
    project = make_project(tmp_path / "project")
    created = make_stack(project, tmp_path / "state", prefix="ww")
    created.workspace.env_vars[CATALOG] = str(catalog)
    created.set_config("serviceFile", auto.ConfigValue("sample/service.yaml"))
    created.remove_config("webImage")
    created.remove_config("webInstances")
    legacy = str(REPO / ".cache" / "images" / "web-v1.vhd")
    created.set_config("images", auto.ConfigValue(json.dumps({"Legacy": legacy})))
    ports = {"Web.HttpIn": _free_port(), "Legacy.HttpIn": _free_port()}
    created.set_config("frontDoorPorts", auto.ConfigValue(json.dumps(ports)))
    created.set_config(
        "secretSettings.Web.ApiKey", auto.ConfigValue(SECRET, secret=True), path=True
    )
    created.set_config("healthTimeoutSeconds", auto.ConfigValue("120"))
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)


def _outputs(stack: auto.Stack, kind: str) -> dict[str, Any]:
    """A resource's recorded state: the truth even after a failed `up`."""
    resources = stack.export_stack().deployment.get("resources", [])
    return dict(next(r["outputs"] for r in resources if r["type"] == kind))


def _page(url: str) -> str:
    return requests.get(url, timeout=5).text.strip()


def _uptimes(host: Host, instances: list[dict[str, Any]]) -> dict[str, float]:
    uptimes = {}
    for instance in instances:
        status = read_status(host, instance["name"])
        assert status is not None, f"no status from {instance['name']}'s agent"
        uptimes[instance["name"]] = status.uptime_seconds
    return uptimes


def _job(web: str, job: str, deadline: float = 60) -> dict[str, Any]:
    """Submit a job to one web instance and wait for the worker's result there."""
    requests.get(f"{web}submit", params={"job": job}, timeout=5).raise_for_status()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for result in requests.get(f"{web}results", timeout=5).json():
            if result["job"] == job:
                return dict(result)
        time.sleep(1)
    raise AssertionError(f"the worker did not do job {job!r} within {deadline} s")


class RequestLoop:
    """A bounded client: `rate` requests a second against `url` until stopped (at most
    `limit`), each answer recorded with its time."""

    def __init__(self, url: str, rate: float = 10, limit: int = 3000) -> None:
        self.url, self.rate, self.limit = url, rate, limit
        self.answers: list[tuple[float, str]] = []  # (time, page or "error: ...")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.answers) < self.limit:
            try:
                answer = _page(self.url)
            except requests.RequestException as exc:
                answer = f"error: {type(exc).__name__}"
            self.answers.append((time.monotonic(), answer))
            self._stop.wait(1 / self.rate)

    @property
    def failures(self) -> list[tuple[float, str]]:
        return [(t, a) for t, a in self.answers if not a.startswith("web v")]

    def first(self, text: str) -> float:
        return min(t for t, answer in self.answers if text in answer)


def _release(tmp_path: Path, version: str, fail_startup: bool = False) -> Path:
    """The sample web role's directory, as a new version."""
    package = tmp_path / f"web-{version}"
    shutil.copytree(REPO / "sample" / "roles" / "web", package)
    app = package / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"', f'VERSION = "{version}"'))
    if fail_startup:
        failing = "echo 'migration failed: schema v9 is unknown'\nexit 3\n"
        (package / "migrate.sh").write_text(failing)
    return package


def _certificate(work: Path) -> tuple[str, str]:
    """A self-signed certificate and key (PEM), and the certificate's SHA-1 thumbprint."""
    key, cert = work / "key.pem", work / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=cloudservice-e2e", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    fingerprint = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha1"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return cert.read_text() + key.read_text(), fingerprint.split("=")[1].strip().replace(":", "")


def _publish_newer_os(catalog: Path, out: Path) -> str:
    """A newer guest OS version (updated packages: one more), as an operator would publish it."""
    command = [str(REPO / ".venv" / "bin" / "cloudservice"), "os", "build", "--include", "less"]
    command += ["--out", str(out)]
    subprocess.run(command, check=True, env={**os.environ, CATALOG: str(catalog)})
    return Catalog.load(catalog).resolve("debian-12", "*").name


def test_web_and_worker_roles_behind_the_front_door(
    stack: auto.Stack, host: Host, tmp_path: Path, catalog: Path
) -> None:
    up = stack.up()
    web = _outputs(stack, WEBROLE)["instances"]
    worker = _outputs(stack, WORKERROLE)["instances"]
    legacy = _outputs(stack, VMROLE)["instances"]
    door = stack.outputs()["endpoints"].value["Web.HttpIn"]
    assert [i["updateDomain"] for i in web] == [0, 1]
    assert {_page(i["urls"][0]) for i in web} == {
        "web v1: hello from Web_IN_0",
        "web v1: hello from Web_IN_1",
    }
    # The front door spreads requests over both instances.
    assert {_page(door) for _ in range(8)} == {
        "web v1: hello from Web_IN_0",
        "web v1: hello from Web_IN_1",
    }
    # The worker reaches the web role's internal endpoint at the topology's address.
    assert _job(web[0]["urls"][0], "hello-e2e") == {
        "job": "hello-e2e",
        "result": "HELLO-E2E",
        "by": "Worker_IN_0",
        "greeting": "hello",
    }

    # Package v2: update domain 0, then 1, each out of the rotation while it moves.
    before = _uptimes(host, web)
    stack.set_config("packages.Web", auto.ConfigValue(str(_release(tmp_path, "v2"))), path=True)
    # What the pull request's comment says (the same words `pulumi preview --diff` prints).
    shown = review(stack, "web-package", tmp_path)
    assert "#### **Web** (Web role): update" in shown, shown
    assert "package: 1 changed (" in shown and "): ~app.py" in shown
    assert "update domains 0, 1" in shown
    assert "out of the front door's rotation in turn, back once healthy: " in shown
    assert "Worker" not in shown and "Replaced" not in shown
    with RequestLoop(door) as loop:
        stack.up()
    role = _outputs(stack, WEBROLE)
    assert role["updateDomainsUpgraded"] == [0, 1] and role["rolloutComplete"] is True
    assert [i["rotation"] for i in role["instances"]] == ["in", "in"]
    assert loop.failures == [] and len(loop.answers) > 50
    assert {a.split(":")[0] for _, a in loop.answers} == {"web v1", "web v2"}
    moved = {d: loop.first(f"web v2: hello from Web_IN_{d}") for d in (0, 1)}
    assert moved[0] < moved[1]  # update domain 0 first
    for domain, when in moved.items():  # once moved, never old again
        old = f"web v1: hello from Web_IN_{domain}"
        assert not [a for t, a in loop.answers if t > when and a == old]
    # A new package restarts the role, not the instance: the guests keep their uptime.
    after = _uptimes(host, role["instances"])
    assert all(after[name] > before[name] for name in before)

    # A setting for both roles, and a certificate from the stack's secrets: in place, no reboot.
    before = _uptimes(host, [*role["instances"], *worker])
    service = Path(stack.workspace.work_dir) / "sample" / "service.yaml"
    pem, thumbprint = _certificate(tmp_path)
    text = service.read_text().replace("Greeting: hello", "Greeting: bonjour")
    text = text.replace(
        "      entryPoint: {commandLine: python3 app.py}",
        "      entryPoint: {commandLine: python3 app.py}\n      certificates: [{name: SiteCert}]",
    )
    text = text.replace(
        "      instances: 2\n",
        f"      instances: 2\n      certificates: {{SiteCert: {{thumbprint: {thumbprint}}}}}\n",
    )
    service.write_text(text)
    stack.set_config(f"certificates.{thumbprint}", auto.ConfigValue(pem, secret=True), path=True)
    shown = review(stack, "web-settings", tmp_path)
    assert "settings changed: Greeting" in shown and "nothing leaves" in shown, shown
    assert "`Greeting` `hello` → `bonjour`" in shown
    assert "certificates changed: SiteCert" in shown and "`certificates` (secret, masked)" in shown
    assert "PRIVATE KEY" not in shown and SECRET not in shown
    up = stack.up()
    assert requests.get(f"{door}certificates", timeout=5).json() == {"SiteCert": thumbprint.lower()}
    role = _outputs(stack, WEBROLE)
    worker = _outputs(stack, WORKERROLE)["instances"]
    assert {_page(i["urls"][0]) for i in role["instances"]} == {
        "web v2: bonjour from Web_IN_0",
        "web v2: bonjour from Web_IN_1",
    }
    assert _job(role["instances"][1]["urls"][0], "again")["greeting"] == "bonjour"
    after = _uptimes(host, [*role["instances"], *worker])
    assert all(after[name] > before[name] for name in before)

    # A newer guest OS: Web and Worker reimaged onto it, packages kept, the VM role untouched.
    old_os = role["osResolved"]
    new_os = _publish_newer_os(catalog, tmp_path / "os")
    shown = review(stack, "web-os", tmp_path)
    assert f"os: {old_os} -> {new_os}" in shown, shown
    assert "#### **Worker** (Worker role): update" in shown and "Legacy" not in shown
    with RequestLoop(door) as loop:
        stack.up()
    assert loop.failures == []
    role = _outputs(stack, WEBROLE)
    worker = _outputs(stack, WORKERROLE)["instances"]
    assert role["osResolved"] == new_os == _outputs(stack, WORKERROLE)["osResolved"]
    for instance in [*role["instances"], *worker]:
        status = read_status(host, instance["name"])
        assert status is not None and status.os == new_os
        assert status.uptime_seconds < after[instance["name"]]  # it rebooted
    assert {_page(i["urls"][0]) for i in role["instances"]} == {
        "web v2: bonjour from Web_IN_0",
        "web v2: bonjour from Web_IN_1",
    }
    assert _outputs(stack, VMROLE)["instances"] == legacy

    # An instance killed outside Pulumi leaves the rotation by the probe alone.
    with RequestLoop(door) as loop:
        time.sleep(3)
        host.stop_domain(role["instances"][1]["name"])
        time.sleep(12)
    interval = 5  # the sample's WebHealth probe
    assert len(loop.failures) <= interval * loop.rate, loop.failures
    assert loop.answers[-1][1] == "web v2: bonjour from Web_IN_0"

    # The front door stopped outside Pulumi too: refresh notices both, `up` restores both.
    directory = Path(_outputs(stack, FRONTDOOR)["directory"])
    for line in _haproxies(directory):
        os.kill(int(line.split()[0]), 9)
    stack.refresh()
    assert FRONTDOOR not in {
        r["type"] for r in stack.export_stack().deployment.get("resources", [])
    }
    stack.up()
    assert {_page(door) for _ in range(8)} == {
        "web v2: bonjour from Web_IN_0",
        "web v2: bonjour from Web_IN_1",
    }

    # Scale in with the loop running: no failure.
    stack.set_config("instances", auto.ConfigValue(json.dumps({"Web": 1})))
    shown = review(stack, "web-scale-in", tmp_path)
    assert "instances 2 -> 1" in shown and "`instanceCount` `2` → `1`" in shown, shown
    with RequestLoop(door) as loop:
        stack.up()
    assert loop.failures == [] and loop.answers[-1][1] == "web v2: bonjour from Web_IN_0"
    stack.set_config("instances", auto.ConfigValue(json.dumps({"Web": 2})))
    stack.up()

    # A release whose startup task fails: stopped at update domain 0, with the task's words.
    service.write_text(
        service.read_text().replace(
            "      entryPoint: {commandLine: python3 app.py}",
            "      entryPoint: {commandLine: python3 app.py}\n"
            "      startupTasks: [{commandLine: sh migrate.sh}]",
        )
    )
    stack.set_config(
        "packages.Web",
        auto.ConfigValue(str(_release(tmp_path, "v3", fail_startup=True))),
        path=True,
    )
    with pytest.raises(auto.CommandError) as stopped:
        stack.up()
    message = str(stopped.value)
    assert "migration failed: schema v9 is unknown" in message and "3" in message, message
    assert "Traceback" not in message
    role = _outputs(stack, WEBROLE)
    assert role["rolloutComplete"] is False
    assert [i["rotation"] for i in role["instances"]] == ["out", "in"]
    assert {_page(door) for _ in range(6)} == {"web v2: bonjour from Web_IN_1"}  # the other

    # Secrets: encrypted in the backend's files, never in what `up` printed or an error said.
    backend = tmp_path / "state"
    assert SECRET in json.dumps(stack.export_stack().deployment)  # automation shows secrets
    key = pem.splitlines()[-2]  # a line of the private key
    for secret in (SECRET, key):
        leaked = [
            f for f in backend.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()
        ]
        assert leaked == [] and secret not in up.stdout and secret not in message

    # Destroy leaves nothing: no domain, volume, reservation, front door process or file.
    stack.destroy()
    prefix = f"cs-{stack.name}-"
    assert not [d for d in _domains() if d.startswith(prefix)]
    assert not directory.exists()
    assert not _haproxies(directory)


def _domains() -> list[str]:
    listed = subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
        check=True,
        capture_output=True,
        text=True,
    )
    return listed.stdout.split()


def _haproxies(directory: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", "haproxy"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(directory) in line]
