"""The agent's main loop: poll the configuration, keep the role running, report status.

Single-threaded except for the status heartbeat and one output pump per role process. The
loop never ends on an exception: it reports state ``failed`` with the reason and keeps
polling, so a new configuration generation can always repair the instance.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._channels import Console, Redactor, StatusChannel
from ._config import (
    CONFIG_CHANGE_KEYS,
    base_environment,
    certificate_path,
    read_config,
    role_document,
    role_environment,
    role_plan,
    storage_dir_name,
)
from ._procs import Credentials, Reaper, become_subreaper
from ._role import RoleRun, Timing
from ._unpack import unpack_package
from .errors import AgentError, ConfigurationInvalid, DigestMismatch, PackageRejected

__all__ = ["Agent", "Options", "main"]

TICK = 0.05


@dataclass(frozen=True)
class Options:
    """Where the agent finds its devices and files; the defaults are the guest's."""

    config_device: str = "/dev/sr0"
    package_device: str = "/dev/sr1"
    status_channel: str = "/dev/virtio-ports/org.cloudservice.agent.0"
    console: str = "/dev/console"
    root: Path = Path("/")
    user: str | None = "role"
    """Role processes run as this user unless elevated; None: as the agent's own user."""
    uptime_file: str = "/proc/uptime"
    timing: Timing = field(default_factory=Timing)

    @property
    def role_dir(self) -> Path:
        return self.root / "srv" / "role"

    @property
    def run_dir(self) -> Path:
        return self.root / "run" / "cloudservice"

    @property
    def local_dir(self) -> Path:
        return self.root / "var" / "lib" / "cloudservice" / "local"

    @property
    def log_dir(self) -> Path:
        return self.root / "var" / "log" / "cloudservice"


class Agent:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.timing = options.timing
        self.reaper = Reaper()
        self.redact = Redactor()
        self.console = Console(options.console)
        self.status = StatusChannel(options.status_channel, self.uptime)
        self.started = time.monotonic()
        self.applied: dict[str, Any] | None = None
        self.seen_generation: int | None = None
        self.package_sha: str | None = None
        self.manifest: dict[str, Any] = {}
        self.run: RoleRun | None = None
        self.pending: dict[str, Any] | None = None
        self.pending_why = ""
        self.failure: str | None = None
        self.restarts_base = 0
        self.next_poll = 0.0
        self.exiting = False
        self.last_state: tuple[str, str] | None = None
        self.ready_uptime: float | None = None  # guest uptime when the role last became ready

    # ------------------------------------------------------------ small helpers

    def uptime(self) -> float:
        try:
            with open(self.options.uptime_file) as handle:
                return float(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self.console.line(self.redact(text))

    def credentials(self, elevated: bool) -> Credentials:
        if self.options.user is None:
            return Credentials(home=os.environ.get("HOME", "/root"))
        if elevated:
            return Credentials(home="/root")
        try:
            entry = pwd.getpwnam(self.options.user)
        except KeyError:
            raise AgentError(
                f"the user {self.options.user!r} does not exist in the guest; the OS image "
                "must create it"
            ) from None
        return Credentials(entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def _owner(self) -> tuple[int, int] | None:
        creds = self.credentials(False)
        if creds.uid is None or os.geteuid() != 0:
            return None
        return creds.uid, creds.gid if creds.gid is not None else creds.uid

    # ------------------------------------------------------------ the loop

    def run_forever(self) -> int:
        become_subreaper()
        self.status.start()
        self.say("CLOUDSERVICE-AGENT agent started")
        while True:
            try:
                if self.step():
                    return 0
            except Exception as exc:  # never die: report, keep polling
                reason = f"agent error: {type(exc).__name__}: {exc}"
                if reason != self.failure:  # the same error every tick is printed once
                    with contextlib.suppress(Exception):
                        self.say(traceback.format_exc())
                with contextlib.suppress(Exception):
                    self.fail(reason)
            time.sleep(TICK)

    def step(self) -> bool:
        """One turn of the loop; True when the agent has stopped the role and may exit."""
        self.reaper.reap()
        now = time.monotonic()
        if self.exiting:
            if self.run is not None and self.run.phase not in ("stopping", "stopped"):
                self.run.stop(now, "the agent is stopping")
            self.pending = None
        elif now >= self.next_poll:
            self.next_poll = now + self.timing.poll_interval
            self.poll()
            self.check_recycle_file()
        if self.run is not None:
            self.run.tick(now)
            if self.run.phase == "failed" and self.failure is None:
                self.fail(self.run.detail)
            if self.run.phase == "stopped":
                self.run = None
        if self.exiting and self.run is None:
            self.publish()
            return True
        if self.run is None and self.pending is not None:
            document, self.pending = self.pending, None
            self.start(document)
        self.publish()
        return False

    def publish(self) -> None:
        state, detail = self.current_state()
        detail = self.redact(detail)
        if (state, detail) != self.last_state:
            if state == "ready" and (self.last_state or ("",))[0] != "ready":
                self.ready_uptime = round(self.uptime(), 2)
            self.last_state = (state, detail)
            self.say(f"CLOUDSERVICE-AGENT {state} {detail}".rstrip())
        run = self.run
        self.status.publish(
            {
                "state": state,
                "role": (self.applied or {}).get("role"),
                "instanceId": (self.applied or {}).get("instanceId"),
                "generation": (self.applied or {}).get("generation"),
                "package": self.package_sha,
                "os": (self.applied or {}).get("osVersion"),
                "roleStartedSeconds": run.entry_started_uptime if run else None,
                "readySeconds": self.ready_uptime,
                "restarts": self.restarts_base + (run.restarts if run else 0),
                "detail": detail,
            }
        )

    def current_state(self) -> tuple[str, str]:
        if self.failure is not None:
            return "failed", self.failure
        if self.pending is not None:
            if self.run is not None:
                return "recycling", self.pending_why
            return "starting", self.pending_why
        if self.run is not None:
            return self.run.state()
        if self.exiting:
            return "recycling", "the agent stopped the role"
        if self.applied is None:
            return "starting", "waiting for the configuration medium"
        return "starting", self.pending_why

    def fail(self, reason: str) -> None:
        self.failure = reason
        if self.run is not None and self.run.phase not in ("stopping", "stopped"):
            self.run.stop(time.monotonic(), reason)  # background tasks must not linger

    # ------------------------------------------------------------ configuration

    def poll(self) -> None:
        try:
            document = read_config(self.options.config_device)
        except ConfigurationInvalid as exc:
            if self.applied is None or self.failure is not None:
                self.failure = str(exc)
            return
        if document is None or document["generation"] == self.seen_generation:
            return
        self.seen_generation = document["generation"]
        self.redact.update(
            [
                *(document.get("settings") or {}).values(),
                *(c.get("pem") for c in document.get("certificates") or []),
            ]
        )
        previous = self.applied
        if (
            previous is None
            or self.failure is not None
            or self.pending is not None
            or self.run is None
            or _restart_keys(previous, document)
        ):
            why = "a new package" if self._new_package(document) else "a new configuration"
            self.request_start(document, f"starting the role for {why}")
            return
        self.change_configuration(document)

    def _new_package(self, document: dict[str, Any]) -> bool:
        return bool(document["package"]["sha256"] != self.package_sha)

    def request_start(self, document: dict[str, Any], why: str, recycle: bool = False) -> None:
        """Stop the role (if it runs) and start it again from ``document``."""
        self.failure = None
        self.pending = document
        self.pending_why = why
        if self.run is not None:
            if recycle:
                self.restarts_base += self.run.restarts + 1
            self.run.stop(time.monotonic(), why)

    def change_configuration(self, document: dict[str, Any]) -> None:
        """Settings or topology changed: rewrite role.json, then signal or recycle."""
        local_paths = self.local_storage(document, clean=False)
        self.write_role_json(document, local_paths)
        self.applied = document
        generation = document["generation"]
        if document.get("onConfigurationChange", "signal") == "recycle":
            self.request_start(
                document, f"recycling the role for configuration {generation}", recycle=True
            )
        elif self.run is not None and self.run.hangup():
            self.say(f"CLOUDSERVICE-AGENT configuration {generation}: entry point sent SIGHUP")

    def check_recycle_file(self) -> None:
        marker = self.options.run_dir / "recycle"
        if self.run is None or self.pending is not None or self.applied is None:
            return
        try:
            marker.unlink()
        except FileNotFoundError:
            return
        self.request_start(self.applied, "recycling the role: it asked to", recycle=True)

    # ------------------------------------------------------------ starting the role

    def start(self, document: dict[str, Any]) -> None:
        self.applied = document
        try:
            self._start(document)
            self.pending_why = ""
        except AgentError as exc:
            self.fail(str(exc))
        except OSError as exc:
            self.fail(f"cannot prepare the role: {exc}")

    def _start(self, document: dict[str, Any]) -> None:
        package = document["package"]
        sha = package["sha256"]
        folder = self.options.role_dir / sha
        if sha != self.package_sha or not folder.is_dir():
            self.pending_why = f"unpacking package {sha[:12]}"
            self.package_sha = sha
            self.publish()
            self.manifest = {}
            self.restarts_base = 0
            self.manifest = self._unpack_settled(package["size"], sha, folder)
            self._point_current(folder)
            self._remove_old_packages(keep=folder)
        plan = role_plan(document, self.manifest)
        local_paths = self.local_storage(document, clean=True)
        role_json = self.write_role_json(document, local_paths)
        env = {
            **base_environment("/"),
            **role_environment(document, str(role_json), local_paths),
        }
        self.options.log_dir.mkdir(parents=True, exist_ok=True)
        self.credentials(False)  # fail now, clearly, when the role user is missing
        self.run = RoleRun(
            plan,
            cwd=folder,
            env=env,
            credentials=self.credentials,
            logs=self.options.log_dir,
            console=self.say,
            redact=self.redact,
            reaper=self.reaper,
            timing=self.timing,
            uptime=self.uptime,
        )

    def _unpack_settled(self, size: int, sha: str, folder: Path) -> dict[str, Any]:
        """Unpack the package medium, giving a medium the host has just swapped a few seconds
        to settle: the first reads after a cdrom change can fail (the drive reports the
        change) or still see the previous medium."""
        deadline = time.monotonic() + self.timing.media_settle
        while True:
            try:
                return unpack_package(self.options.package_device, size, sha, folder)
            except (PackageRejected, DigestMismatch):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _point_current(self, folder: Path) -> None:
        link = self.options.role_dir / "current"
        temp = self.options.role_dir / ".current.new"
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        os.symlink(folder.name, temp)
        os.replace(temp, link)

    def _remove_old_packages(self, keep: Path) -> None:
        for entry in self.options.role_dir.iterdir():
            if entry != keep and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)

    def local_storage(self, document: dict[str, Any], clean: bool) -> dict[str, str]:
        owner = self._owner()
        paths: dict[str, str] = {}
        for item in document.get("localStorage", []):
            folder = self.options.local_dir / storage_dir_name(item["name"])
            folder.mkdir(parents=True, exist_ok=True)
            if clean and item.get("cleanOnRoleRecycle", True):
                for child in folder.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            if owner is not None:
                os.chown(folder, *owner)
            paths[item["name"]] = str(folder)
        return paths

    def write_certificates(self, document: dict[str, Any]) -> None:
        """Each certificate as a PEM file, mode 0600: readable by the role's user unless its
        permission level is elevated (then root's only). Stale ones are removed."""
        root = self.options.run_dir / "certificates"
        shutil.rmtree(root, ignore_errors=True)
        owner = self._owner()
        for item in document.get("certificates", []):
            target = self.options.run_dir / certificate_path(item)
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(str(item.get("pem", "")))
            if owner is not None and item.get("permissionLevel") != "elevated":
                os.chown(target, *owner)

    def write_role_json(self, document: dict[str, Any], local_paths: dict[str, str]) -> Path:
        """role.json, atomically, mode 0600, owned by the role's user."""
        run_dir = self.options.run_dir
        self.write_certificates(document)
        run_dir.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is not None:
            os.chown(run_dir, *owner)  # the role may drop a `recycle` file here
        target = run_dir / "role.json"
        fd, temp = tempfile.mkstemp(prefix=".role-", dir=run_dir)
        try:
            os.fchmod(fd, 0o600)
            if owner is not None:
                os.fchown(fd, *owner)
            with os.fdopen(fd, "w") as handle:
                json.dump(role_document(document, local_paths), handle, indent=2)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return target


def _restart_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose change restarts the role (not just a configuration change)."""
    keys = (set(old) | set(new)) - CONFIG_CHANGE_KEYS
    return sorted(key for key in keys if old.get(key) != new.get(key))


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="cloudservice_agent",
        description="The guest agent of a Web or Worker role instance (docs/guest.md).",
    )
    defaults = Options()
    timing = Timing()
    parser.add_argument("--config-device", default=defaults.config_device)
    parser.add_argument("--package-device", default=defaults.package_device)
    parser.add_argument("--status-channel", default=defaults.status_channel)
    parser.add_argument("--console", default=defaults.console)
    parser.add_argument("--root", default="/", help="replaces / for /srv, /run and /var")
    parser.add_argument("--uptime-file", default=defaults.uptime_file)
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", default="role", help="user of non-elevated role processes")
    who.add_argument(
        "--no-user-switch", action="store_true", help="run role processes as the agent's user"
    )
    parser.add_argument("--poll-interval", type=float, default=timing.poll_interval)
    parser.add_argument("--stop-timeout", type=float, default=timing.stop_timeout)
    parser.add_argument("--backoff", type=float, default=timing.backoff)
    parser.add_argument("--backoff-max", type=float, default=timing.backoff_max)
    parser.add_argument("--ready-after", type=float, default=timing.ready_after)
    parser.add_argument("--media-settle", type=float, default=timing.media_settle)
    args = parser.parse_args(argv)
    return Options(
        config_device=args.config_device,
        package_device=args.package_device,
        status_channel=args.status_channel,
        console=args.console,
        root=Path(args.root),
        user=None if args.no_user_switch else args.user,
        uptime_file=args.uptime_file,
        timing=Timing(
            poll_interval=args.poll_interval,
            stop_timeout=args.stop_timeout,
            backoff=args.backoff,
            backoff_max=args.backoff_max,
            ready_after=args.ready_after,
            media_settle=args.media_settle,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    os.umask(0o022)
    agent = Agent(parse_args(argv))

    def _stop(signum: int, frame: object) -> None:
        agent.exiting = True

    if os.getpid() != 1:  # PID 1 has nowhere to return to: it ignores these
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    return agent.run_forever()
