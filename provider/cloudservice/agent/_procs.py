"""Role processes: started in their own session and process group, output teed, reaped.

As PID 1 the agent inherits every orphan in the guest, so it reaps all children itself with
``waitpid(-1, WNOHANG)`` (``Reaper.reap``, called from the main loop) and never lets
``subprocess`` wait. On the host (tests) it asks to be the *child subreaper*, so the tasks'
grandchildren come back to it as they would in the guest.

A command line is run directly (split like a POSIX shell would) when it is a plain command
of words and quotes, and by ``/bin/sh -c`` when it uses anything else of the shell (pipes,
``&&``, redirections, variables, globs, ``NAME=value`` prefixes). Signals such as SIGHUP go
to the process the agent started; stopping kills its whole process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Credentials", "Proc", "Reaper", "command_argv"]

_SHELL_CHARS = set("|&;<>()$`*?[]{}~#\n\\")
PR_SET_CHILD_SUBREAPER = 36


def command_argv(command_line: str) -> list[str]:
    """The argv that runs ``command_line`` (see the module docstring)."""
    if not _SHELL_CHARS.intersection(command_line):
        try:
            words = shlex.split(command_line)
        except ValueError:
            words = []
        if words and "=" not in words[0]:
            return words
    return ["/bin/sh", "-c", command_line]


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (Linux; best effort)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class Reaper:
    """Reaps every child; keeps the exit code of the ones the agent tracks."""

    def __init__(self) -> None:
        self.tracked: set[int] = set()
        self.exited: dict[int, int] = {}

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid in self.tracked:
                self.tracked.discard(pid)
                self.exited[pid] = os.waitstatus_to_exitcode(status)


class Credentials:
    """Who a role process runs as: a user (uid, gid, home), or the agent's own user."""

    def __init__(self, uid: int | None = None, gid: int | None = None, home: str = "/") -> None:
        self.uid = uid
        self.gid = gid
        self.home = home

    def popen_args(self) -> dict[str, Any]:
        if self.uid is None or self.uid == os.geteuid():
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


class Proc:
    """One role process (startup task or entry point) in its own process group.

    Its stdout and stderr go through a pipe to a thread that appends each line to the log
    file, writes it to the console prefixed with the process's name (setting values masked),
    and keeps the last lines for the status detail.
    """

    def __init__(
        self,
        name: str,
        command_line: str,
        *,
        cwd: Path,
        env: dict[str, str],
        credentials: Credentials,
        log_path: Path,
        console: Callable[[str], None],
        redact: Callable[[str], str],
        reaper: Reaper,
        tail: int = 20,
    ) -> None:
        self.name = name
        self.command_line = command_line
        self.reaper = reaper
        self.tail: deque[str] = deque(maxlen=tail)
        self.console = console
        self.redact = redact
        self.returncode: int | None = None
        self.started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed by the pump
        self.log.write(f"==> {name}: {command_line}\n".encode())
        read_fd, write_fd = os.pipe()
        try:
            self.popen = subprocess.Popen(
                command_argv(command_line),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                close_fds=True,
                **credentials.popen_args(),
            )
        except BaseException:
            os.close(read_fd)
            self.log.close()
            raise
        finally:
            os.close(write_fd)
        self.pid = self.popen.pid
        reaper.tracked.add(self.pid)
        self.pump = threading.Thread(target=self._pump, args=(read_fd,), daemon=True)
        self.pump.start()

    def _pump(self, fd: int) -> None:
        with open(fd, "rb", buffering=0) as pipe, self.log:
            buffered = b""
            while chunk := pipe.read(65536):
                with contextlib.suppress(OSError):
                    self.log.write(chunk)
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                if len(buffered) > 4096:  # a very long line: show it in pieces
                    lines.append(buffered)
                    buffered = b""
                for line in lines:
                    self._line(line)
            if buffered:
                self._line(buffered)

    def _line(self, raw: bytes) -> None:
        text = self.redact(raw.decode("utf-8", "replace").rstrip("\r"))
        self.tail.append(text)
        self.console(f"[{self.name}] {text}")

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        if self.returncode is None and self.pid in self.reaper.exited:
            self.returncode = self.reaper.exited.pop(self.pid)
            self.popen.returncode = self.returncode  # so subprocess never waits for it
        return self.returncode

    def output_tail(self, timeout: float = 1.0) -> list[str]:
        """The last lines of output, once the pipe is drained (or after ``timeout``)."""
        self.pump.join(timeout)
        return list(self.tail)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process itself."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process and everything it started in its group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def group_alive(self) -> bool:
        if self.poll() is None:
            return True
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def terminate_all(procs: list[Proc]) -> None:
    for proc in procs:
        proc.signal_group(signal.SIGTERM)


def kill_all(procs: list[Proc]) -> None:
    for proc in procs:
        proc.signal_group(signal.SIGKILL)
