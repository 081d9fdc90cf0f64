"""Web and Worker roles: `pulumi up` from nothing and a package-only update, by phase; the front
door against one instance; failed requests during a rolling upgrade.

    .venv/bin/python benchmarks/web_worker.py [--rounds 3] [--build-os]

Each round, on a fresh stack of the sample service's Web (2 instances, 2 update domains) and
Worker (1) roles, real CLI, real libvirtd, TCG guests:
- `pulumi up` from nothing, whole process; of it, the upload (guest OS image and package, as the
  roles record it) and each instance's boot to ready (the guest uptime at which its agent first
  reported ready) and start to healthy (host clock, through the agent's report and the probe);
- `pulumi up` of a package-only change, whole process, with a request loop (10/s) against the
  front door counting failures;
- requests/s and p50/p99 through the front door and straight to one instance, same client,
  paired (benchmarks/frontdoor.py's `measure`);
then destroy. `--build-os` also times a cold guest OS build (`cloudservice os build --force`).
Medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from cloudservice.fabric import read_status  # noqa: E402
from cloudservice.virt import Host  # noqa: E402
from frontdoor import measure  # noqa: E402
from pulumi import automation as auto  # noqa: E402

from tests.e2e.project import REPO, make_project, make_stack  # noqa: E402


def _service(project: Path) -> None:
    """The sample service without its VM role: Web and Worker only."""
    path = project / "sample" / "service.yaml"
    text = path.read_text()
    legacy = text.index("    - name: Legacy\n      kind: vm")
    text = text[:legacy] + text[text.index("configuration:") :]
    text = text.replace("    - name: Legacy\n      instances: 1\n", "")
    text = text.replace(
        "    - {name: LegacyHealth, protocol: http, path: /health, intervalInSeconds: 5, "
        "timeoutInSeconds: 11}\n",
        "",
    )
    path.write_text(text[: text.index("  # Built by `make images`")])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _roles(stack: auto.Stack) -> list[dict[str, Any]]:
    kinds = ("cloudservice:index:WebRole", "cloudservice:index:WorkerRole")
    resources = stack.export_stack().deployment.get("resources", [])
    return [r["outputs"] for r in resources if r["type"] in kinds]


class Loop(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.ok, self.failed = url, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                requests.get(self.url, timeout=5).raise_for_status()
                self.ok += 1
            except requests.RequestException:
                self.failed += 1
            self.done.wait(0.1)


def one_round(work: Path, number: int) -> dict[str, Any]:
    project = make_project(work / "project")
    _service(project)
    stack = make_stack(project, work / "state", prefix="bench")
    stack.set_config("serviceFile", auto.ConfigValue("sample/service.yaml"))
    stack.remove_config("webImage")
    stack.remove_config("webInstances")
    stack.set_config("frontDoorPorts", auto.ConfigValue(json.dumps({"Web.HttpIn": _free_port()})))
    figures: dict[str, Any] = {}
    try:
        start = time.monotonic()
        stack.up()
        figures["up from nothing (s)"] = time.monotonic() - start
        roles = _roles(stack)
        figures["upload (s, both roles)"] = sum(r["lastUploadSeconds"] for r in roles)
        figures["upload (MB, both roles)"] = sum(r["lastUploadBytes"] for r in roles) / 1e6
        instances = [i for r in roles for i in r["instances"]]
        with Host() as host:
            ready = [read_status(host, i["name"]) for i in instances]
        figures["boot to ready (s, guest uptime)"] = statistics.median(
            s.ready_seconds for s in ready if s and s.ready_seconds
        )
        figures["start to healthy (s, host)"] = statistics.median(
            i["healthyAfterSeconds"] for i in instances
        )
        door = stack.outputs()["endpoints"].value["Web.HttpIn"]
        direct = next(i for i in instances if "-web-" in i["name"])["urls"][0]
        targets = [("direct", direct), ("front door", door)]
        for label, url in targets if number % 2 == 0 else reversed(targets):  # paired
            rate, p50, p99, _failed = measure(url, seconds=3, concurrency=1)
            figures[f"{label} req/s"], figures[f"{label} p50 ms"] = rate, p50
            figures[f"{label} p99 ms"] = p99
        release = work / "web-v2"
        shutil.copytree(REPO / "sample" / "roles" / "web", release)
        app = release / "app.py"
        app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
        stack.set_config("packages.Web", auto.ConfigValue(str(release)), path=True)
        loop = Loop(door)
        loop.start()
        start = time.monotonic()
        stack.up()
        figures["package-only update (s)"] = time.monotonic() - start
        loop.done.set()
        loop.join()
        figures["requests during the update"] = loop.ok + loop.failed
        figures["failed requests during the update"] = loop.failed
        web = next(r for r in _roles(stack) if r["role"] == "Web")
        figures["package update upload (bytes)"] = web["lastUploadBytes"]
    finally:
        stack.destroy()
        stack.workspace.remove_stack(stack.name)
    return figures


def build_os() -> float:
    with tempfile.TemporaryDirectory() as out:
        catalog = Path(out) / "catalog.json"
        shutil.copy(Path.home() / ".cache" / "cloudservice" / "guestos" / "catalog.json", catalog)
        start = time.monotonic()
        subprocess.run(
            [str(REPO / ".venv/bin/cloudservice"), "os", "build", "--force", "--out", out],
            check=True,
            env={**os.environ, "CLOUDSERVICE_GUESTOS_CATALOG": str(catalog)},
            stdout=subprocess.DEVNULL,
        )
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--build-os", action="store_true")
    args = parser.parse_args()
    if args.build_os:
        print(f"guest OS image build, cold: {build_os():.1f} s", flush=True)
    rounds = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory() as work:
            figures = one_round(Path(work), number)
        rounds.append(figures)
        print(f"round {number + 1}: " + json.dumps({k: round(v, 2) for k, v in figures.items()}))
    print("\nmedians over the rounds")
    for key in rounds[0]:
        print(f"  {key:40} {statistics.median(r[key] for r in rounds):10.2f}")
    ratio = statistics.median(r["front door req/s"] / r["direct req/s"] for r in rounds)
    print(f"  {'front door / direct req/s':40} {ratio:10.2f}")


if __name__ == "__main__":
    main()
