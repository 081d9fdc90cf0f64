"""A harness that runs the real guest agent as a subprocess, on plain files instead of devices.

The agent is copied to a temporary directory as the top-level package ``cloudservice_agent``
and started with ``python -S -m cloudservice_agent``, as the guest runs it: no site-packages
and nothing else of ``cloudservice`` on the path, so a stray import fails here too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudservice.model import StartupTask, build_package

AGENT_SOURCE = Path(__file__).resolve().parents[2] / "provider" / "cloudservice" / "agent"
PYTHON = sys.executable
DEFAULT_TIMEOUT = 15.0

# An entry point that records what it sees into $OUT/events (one JSON object a line).
APP = """\
import json, os, signal, stat, sys, time
OUT = os.environ["OUT"]
def record(event, **extra):
    role_json = os.environ["CLOUDSERVICE_ROLE_ENVIRONMENT"]
    line = {"event": event, "pid": os.getpid(), "version": VERSION, "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("CLOUDSERVICE_")},
            "roleJson": json.load(open(role_json)),
            "roleJsonMode": stat.S_IMODE(os.stat(role_json).st_mode), **extra}
    with open(os.path.join(OUT, "events"), "a") as handle:
        handle.write(json.dumps(line) + "\\n")
signal.signal(signal.SIGHUP, lambda *_: record("hup"))
record("start", data=open("data.txt").read())
print("app started", flush=True)
while True:
    time.sleep(0.05)
"""


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.site = tmp / "site"
        shutil.copytree(AGENT_SOURCE, self.site / "cloudservice_agent")
        self.root = tmp / "root"
        self.out = tmp / "out"
        self.out.mkdir()
        self.config_device = tmp / "sr0"
        self.package_device = tmp / "vdb"
        self.status_channel = tmp / "status"
        self.console = tmp / "console"
        for device in (self.status_channel, self.console):
            device.touch()
        self.generation = 0
        self.document: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.packages = 0

    # ------------------------------------------------------------ inputs

    def package(
        self,
        files: dict[str, str] | None = None,
        *,
        entry_point: str | None = None,
        startup_tasks: list[StartupTask] | None = None,
        version: int = 1,
    ) -> dict[str, Any]:
        """Build a package and put it on the package disk; its ``package`` config entry."""
        self.packages += 1
        source = self.tmp / f"source{self.packages}"
        source.mkdir()
        files = files if files is not None else default_files(version)
        for name, text in files.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(text)
        built = build_package(
            source,
            self.tmp / f"role{self.packages}.cspkg",
            entry_point=entry_point,
            startup_tasks=startup_tasks or [],
        )
        self.put_package(built.path.read_bytes())
        return {"sha256": built.digest, "size": built.size}

    def put_package(self, data: bytes) -> None:
        padded = data + b"\0" * (-len(data) % 512)
        temp = self.package_device.with_suffix(".new")
        temp.write_bytes(padded)
        os.replace(temp, self.package_device)

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Write a new generation of the configuration document (the cdrom swap)."""
        self.generation += 1
        document = {
            "service": "sample",
            "role": "Web",
            "instanceId": "Web_IN_0",
            "instanceIndex": 0,
            "updateDomain": 1,
            "faultDomain": 0,
            "osVersion": "debian-12/2026.11.30-1",
            "environment": {"OUT": str(self.out)},
            "settings": {"Greeting": "hello"},
            "localStorage": [],
            "onConfigurationChange": "signal",
            "topology": {"roles": {}},
        }
        document.update(self.document)
        document.update(fields)
        document["generation"] = self.generation
        self.document = document
        data = json.dumps(document).encode() + b"\0" * 2048
        temp = self.config_device.with_suffix(".new")
        temp.write_bytes(data)
        os.replace(temp, self.config_device)
        return document

    # ------------------------------------------------------------ the agent

    def start(self, *extra: str, user: str | None = None) -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(self.site), "HOME": str(self.tmp)}
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-S",
                "-m",
                "cloudservice_agent",
                "--config-device",
                str(self.config_device),
                "--package-device",
                str(self.package_device),
                "--status-channel",
                str(self.status_channel),
                "--console",
                str(self.console),
                "--root",
                str(self.root),
                *(["--user", user] if user else ["--no-user-switch"]),
                "--poll-interval",
                "0.1",
                "--stop-timeout",
                "2",
                "--backoff",
                "0.2",
                "--backoff-max",
                "1",
                "--ready-after",
                "0.2",
                "--media-settle",
                "0.3",
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self.process

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # ------------------------------------------------------------ outputs

    def statuses(self) -> list[dict[str, Any]]:
        lines = self.status_channel.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def last_status(self) -> dict[str, Any]:
        statuses = self.statuses()
        return statuses[-1] if statuses else {}

    def events(self) -> list[dict[str, Any]]:
        path = self.out / "events"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """The first status (from now on) for which ``check`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited: {self.process.stderr!r}")
            status = self.last_status()
            if status and check(status):
                return status
            time.sleep(0.05)
        raise AssertionError(f"timed out; last status {self.last_status()}")

    def wait_state(self, state: str, timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> dict:
        return self.wait_for(
            lambda s: s["state"] == state and all(s.get(k) == v for k, v in fields.items()),
            timeout,
        )

    def wait_events(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {count} events: {self.events()}")


def default_files(version: int = 1) -> dict[str, str]:
    return {"app.py": f"VERSION = {version}\n" + APP, "data.txt": f"data v{version}"}


APP_COMMAND = f"{PYTHON} -S app.py"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.stop()
