"""One HAProxy process tree serving one `FrontDoorSpec`, driven through files and its runtime API.

Lifecycle:

- `apply(spec)` renders haproxy.cfg (`config.render`), checks it with `haproxy -c` before it
  replaces the current one, then starts HAProxy, or reloads it when it runs: the runtime state
  (health, drain/maint) is dumped to the server-state file for the new process, which takes
  the listening sockets over from the old one (`-x admin.sock`) and tells it to finish its
  connections and leave (`-sf`). No connection is refused during a reload.
- `drain`/`ready`/`maint` set a server's admin state over the runtime API; `wait_drained` and
  `wait_up` poll it.
- `stop()` lets every process of this front door finish, then removes the directory.

Which processes belong to a front door is read from /proc: those whose command line names its
haproxy.cfg (a pid alone could have been reused). The directory is 0700 and the admin socket
0600, so no other user of the host can reach the runtime API.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..files import write_atomically
from ._runtime import RuntimeApi, parse_servers_state
from ._specs import FrontDoorSpec
from .config import Files, render
from .errors import FrontDoorError

OperationalState = Literal["UP", "DOWN"]
AdminState = Literal["READY", "DRAIN", "MAINT"]

# srv_admin_state bits of `show servers state` (HAProxy's SRV_ADMF_*).
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
_PASSED_CHECKS = ("L4OK", "L6OK", "L7OK")
_POLL = 0.05
# sun_path is 108 bytes with its terminating NUL.
_MAX_SOCKET_PATH = 107


class ServerStatus(BaseModel):
    """One server of one listener, as HAProxy sees it now."""

    model_config = ConfigDict(frozen=True)

    listener: str
    server: str
    state: OperationalState  # a server in MAINT is not checked and reads DOWN
    admin: AdminState
    sessions: int  # current sessions (requests or TCP connections in flight)
    check: str  # last check: L7OK, L4OK, L4CON, L7STS, INI (none yet), ...
    check_detail: str = ""


class FrontDoor:
    def __init__(
        self, directory: Path, *, haproxy: str = "haproxy", api_timeout: float = 5.0
    ) -> None:
        self.directory = Path(directory).absolute()
        self.files = Files(self.directory)
        self.haproxy = haproxy
        self.api = RuntimeApi(self.files.socket, timeout=api_timeout)
        if len(os.fsencode(self.files.socket)) > _MAX_SOCKET_PATH:
            raise FrontDoorError(
                f"the admin socket path {self.files.socket} is longer than the "
                f"{_MAX_SOCKET_PATH} bytes a unix socket allows: use a shorter directory"
            )

    # -- lifecycle ------------------------------------------------------------------------

    def apply(self, spec: FrontDoorSpec) -> None:
        """Serve `spec`: start HAProxy, or reload it seamlessly if it runs.

        An invalid config raises FrontDoorError and leaves the running HAProxy and its files
        as they were.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        with self._locked():
            candidate = self.directory / "haproxy.cfg.new"
            _write(candidate, render(spec, self.directory))
            try:
                self._validate(candidate)
            except FrontDoorError:
                candidate.unlink(missing_ok=True)
                raise
            if not self.files.state.exists():
                _write(self.files.state, "1\n")
            if self.running():
                self._reload(spec, candidate)
            else:
                os.replace(candidate, self.files.config)
                self._launch([])

    def running(self) -> bool:
        """Whether the HAProxy named in the pid file runs with this front door's config."""
        try:
            pid = int(self.files.pid.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return False
        return pid in self.pids()

    def pids(self) -> list[int]:
        """Every live process of this front door, the current one and old ones finishing."""
        config = os.fsencode(self.files.config)
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone meanwhile; a zombie has an empty command line
            if os.path.basename(argv[0]) == b"haproxy" and config in argv:
                found.append(int(entry.name))
        return sorted(found)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every process of this front door and remove its directory.

        The processes stop listening at once and finish the requests they have (at most the
        spec's drain_timeout_seconds, then HAProxy cuts them); after `timeout` they are killed.
        """
        if not self.directory.exists():
            return
        with self._locked():
            pids = self.pids()
            _signal(pids, signal.SIGUSR1)
            if not _wait(lambda: not self._alive(pids), timeout):
                _signal(pids, signal.SIGKILL)
                _wait(lambda: not self._alive(pids), 5.0)
            shutil.rmtree(self.directory)

    # -- runtime state ----------------------------------------------------------------------

    def servers(self) -> list[ServerStatus]:
        """Every server of every listener: health, admin state and current sessions."""
        stats = {(row["pxname"], row["svname"]): row for row in self.api.show_stat()}
        statuses = []
        for row in parse_servers_state(self.api.show_servers_state()):
            stat = stats.get((row["be_name"], row["srv_name"]), {})
            admin_bits = int(row["srv_admin_state"])
            admin: AdminState = (
                "MAINT"
                if admin_bits & _MAINT_BITS
                else "DRAIN"
                if admin_bits & _DRAIN_BITS
                else "READY"
            )
            statuses.append(
                ServerStatus(
                    listener=row["be_name"],
                    server=row["srv_name"],
                    state="DOWN" if row["srv_op_state"] == "0" else "UP",
                    admin=admin,
                    sessions=int(stat.get("scur") or 0),
                    check=(stat.get("check_status") or "").removeprefix("* ") or "-",
                    check_detail=": ".join(
                        text for text in (stat.get("check_desc"), stat.get("last_chk")) if text
                    ),
                )
            )
        return statuses

    def server(self, listener: str, server: str) -> ServerStatus:
        for status in self.servers():
            if (status.listener, status.server) == (listener, server):
                return status
        raise FrontDoorError(
            f"the front door in {self.directory} has no server {listener}/{server}: "
            "check the names against the applied spec"
        )

    def drain(self, listener: str, server: str) -> None:
        """No new requests for this server; those in flight finish. Health checks go on."""
        self.api.set_server_state(listener, server, "drain")

    def ready(self, listener: str, server: str) -> None:
        """Back in rotation (as soon as it passes its health check)."""
        self.api.set_server_state(listener, server, "ready")

    def maint(self, listener: str, server: str) -> None:
        """Out of rotation and unchecked, e.g. while the instance is being replaced."""
        self.api.set_server_state(listener, server, "maint")

    def wait_drained(self, listener: str, server: str, timeout: float) -> bool:
        """Wait until the server has no current sessions; False if some remain at `timeout`."""
        return _wait(lambda: self.server(listener, server).sessions == 0, timeout)

    def wait_up(self, listener: str, server: str, timeout: float) -> ServerStatus:
        """Wait until the server is UP and has passed a health check of this process."""
        status = self.server(listener, server)
        deadline = time.monotonic() + timeout
        while not (status.state == "UP" and status.check in _PASSED_CHECKS):
            if time.monotonic() >= deadline:
                raise FrontDoorError(
                    f"{listener}/{server} is not up after {timeout} s (state {status.state}, "
                    f"admin {status.admin}, last check {status.check} {status.check_detail}): "
                    "is the instance serving its probe on its address and port?"
                )
            time.sleep(_POLL)
            status = self.server(listener, server)
        return status

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # One apply/stop at a time per directory, across threads and processes.
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _validate(self, config: Path) -> None:
        result = self._run(["-c", "-f", str(config)])
        if result.returncode != 0:
            raise FrontDoorError(
                f"HAProxy rejects the front door's config, nothing was changed: "
                f"{_alerts(result.stderr + result.stdout)} (see {config.name} as rendered)"
            )

    def _reload(self, spec: FrontDoorSpec, candidate: Path) -> None:
        _write(self.files.state, _carry_over(self.api.show_servers_state(), spec))
        previous = self.files.config.read_text()
        old = self.pids()
        os.replace(candidate, self.files.config)
        try:
            self._launch(old)
        except FrontDoorError:
            _write(self.files.config, previous)  # the old process still serves it
            raise

    def _launch(self, old_pids: list[int]) -> None:
        args = ["-D", "-f", str(self.files.config)]
        if old_pids:
            # Take the listening sockets over from the running process, then let the old
            # processes finish their connections and leave.
            args += ["-x", str(self.files.socket), "-sf", *map(str, old_pids)]
        result = self._run(args)
        if result.returncode != 0:
            what = "reload" if old_pids else "start"
            kept = "; the running HAProxy is unchanged" if old_pids else ""
            raise FrontDoorError(
                f"HAProxy failed to {what}{kept}: {_alerts(result.stderr)} "
                "(is a listener's port taken by another program?)"
            )
        if not _wait(self._answers, 10.0):
            raise FrontDoorError(
                f"HAProxy started but its runtime API at {self.files.socket} does not answer: "
                f"see {self.files.log}"
            )

    def _answers(self) -> bool:
        if not self.running():
            return False
        try:
            self.api.command("show info")
        except FrontDoorError:
            return False
        return True

    def _alive(self, pids: list[int]) -> bool:
        return bool(set(pids) & set(self.pids()))

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        # stderr to a file, not a pipe: the daemon inherits it and would hold a pipe open.
        with open(self.files.log, "w+") as log:
            try:
                result = subprocess.run(
                    [self.haproxy, *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if "-c" in args else subprocess.DEVNULL,
                    stderr=log,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise FrontDoorError(
                    f"{self.haproxy} is not installed: install the haproxy package "
                    "(`make setup` does)"
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise FrontDoorError(f"haproxy {' '.join(args)} did not finish in 30 s") from exc
            log.seek(0)
            return subprocess.CompletedProcess(
                result.args, result.returncode, result.stdout or "", log.read()
            )


def _carry_over(dump: str, spec: FrontDoorSpec) -> str:
    """The rows of a `show servers state` dump that still describe a server of `spec`.

    HAProxy applies a state row's address and port over the config's, so a server that moved
    (same name, new address or port) must start afresh, as must any server that is gone.
    """
    wanted = {
        (listener.name, server.name): (server.address, str(server.port))
        for listener in spec.listeners
        for server in listener.servers
    }
    lines = dump.splitlines()
    columns = next((line[2:].split() for line in lines if line.startswith("# ")), [])
    kept = []
    for line in lines:
        if not line or line == "1" or line.startswith("#"):
            kept.append(line)
            continue
        row = dict(zip(columns, line.split(), strict=False))
        if wanted.get((row.get("be_name", ""), row.get("srv_name", ""))) == (
            row.get("srv_addr"),
            row.get("srv_port"),
        ):
            kept.append(line)
    return "\n".join(kept) + "\n"


def _alerts(output: str) -> str:
    alerts = [
        re.sub(r"^\[ALERT\]\s+\(\d+\)\s+:\s+", "", line)
        for line in output.splitlines()
        if line.startswith("[ALERT]")
    ]
    return "; ".join(alerts) or output.strip() or "no diagnostics"


def _write(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, mode 0600."""
    write_atomically(path, text.encode(), mode=0o600)


def _signal(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
