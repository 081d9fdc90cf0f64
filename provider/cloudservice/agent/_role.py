"""One start of the role: its startup tasks in order, then the entry point, kept running.

A ``RoleRun`` never blocks: the agent's main loop calls ``tick`` several times a second, so the
configuration medium is still polled while a startup task runs or the role is stopping.

Phases: ``tasks`` (simple tasks one after the other; background and foreground tasks are
started and left running beside the role) -> ``running`` (the entry point, restarted with
backoff when it exits) -> ``stopping`` (SIGTERM to every process group, SIGKILL after the stop
timeout) -> ``stopped``. A simple task that exits non-zero, or cannot be started, ends in
``failed``: the entry point is never started.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._config import RolePlan, TaskSpec
from ._procs import Credentials, Proc, Reaper

__all__ = ["RoleRun", "Timing"]

KILL_GRACE = 5.0
"""After SIGKILL, how long to wait for the groups to vanish before giving up on them."""


@dataclass(frozen=True)
class Timing:
    """The agent's clocks; the defaults are the contract (docs/guest.md), tests shorten them."""

    poll_interval: float = 1.0
    stop_timeout: float = 10.0
    backoff: float = 1.0
    backoff_max: float = 30.0
    ready_after: float = 1.0
    media_settle: float = 10.0  # how long a just-swapped package medium may take to read right


class RoleRun:
    def __init__(
        self,
        plan: RolePlan,
        *,
        cwd: Path,
        env: dict[str, str],
        credentials: Callable[[bool], Credentials],
        logs: Path,
        console: Callable[[str], None],
        redact: Callable[[str], str],
        reaper: Reaper,
        timing: Timing,
        uptime: Callable[[], float],
    ) -> None:
        self.plan = plan
        self.cwd = cwd
        self.env = env
        self.credentials = credentials
        self.logs = logs
        self.console = console
        self.redact = redact
        self.reaper = reaper
        self.timing = timing
        self.uptime = uptime
        self.phase = "tasks"
        self.detail = "starting the role"
        self.next_task = 0
        self.current: Proc | None = None
        self.beside: list[Proc] = []
        self.entry: Proc | None = None
        self.entry_started_uptime: float | None = None
        self.restart_at: float | None = None
        self.backoff = timing.backoff
        self.restarts = 0
        self.stop_deadline = 0.0
        self.killed_at: float | None = None

    # ------------------------------------------------------------ processes

    def _spawn(self, name: str, command: str, elevated: bool, extra: dict[str, str]) -> Proc:
        creds = self.credentials(elevated)
        env = {**self.env, **extra, "HOME": creds.home}
        return Proc(
            name,
            command,
            cwd=self.cwd,
            env=env,
            credentials=creds,
            log_path=self.logs / f"{name}.log",
            console=self.console,
            redact=self.redact,
            reaper=self.reaper,
        )

    def processes(self) -> list[Proc]:
        return [p for p in (self.current, self.entry, *self.beside) if p is not None]

    # ------------------------------------------------------------ the loop

    def tick(self, now: float) -> None:
        if self.phase == "tasks":
            self._tasks()
        if self.phase == "running":
            self._running(now)
        if self.phase == "stopping":
            self._stopping(now)
        for proc in list(self.beside):
            code = proc.poll()
            if code is not None:
                self.beside.remove(proc)
                self.console(f"CLOUDSERVICE-AGENT {proc.name} exited with code {code}")

    def _tasks(self) -> None:
        while True:
            if self.current is not None:
                code = self.current.poll()
                if code is None:
                    return
                if code != 0:
                    self._task_failed(self.current, code)
                    return
                self.current = None
            if self.next_task >= len(self.plan.tasks):
                self.phase = "running"
                self._start_entry()
                return
            index = self.next_task
            task: TaskSpec = self.plan.tasks[index]
            self.next_task += 1
            name = f"startup-{index + 1}"
            self.detail = f"running startup task {index + 1} of {len(self.plan.tasks)}"
            try:
                proc = self._spawn(name, task.command_line, task.elevated, task.environment)
            except OSError as exc:
                self.phase = "failed"
                self.detail = (
                    f"startup task {index + 1} ({task.command_line!r}) could not be started: "
                    f"{exc.strerror or exc}"
                )
                return
            if task.task_type == "simple":
                self.current = proc
            else:
                self.beside.append(proc)

    def _task_failed(self, proc: Proc, code: int) -> None:
        lines = proc.output_tail()
        self.phase = "failed"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        index = proc.name.removeprefix("startup-")
        self.detail = f"startup task {index} ({proc.command_line!r}) {how}" + (
            "; last output:\n" + "\n".join(lines) if lines else "; it printed nothing"
        )
        self.current = None

    def _start_entry(self) -> None:
        self.restart_at = None
        try:
            self.entry = self._spawn("entrypoint", self.plan.entry_point, self.plan.elevated, {})
        except OSError as exc:
            self.entry = None
            self._schedule_restart(
                time.monotonic(),
                f"the entry point {self.plan.entry_point!r} could not be started: "
                f"{exc.strerror or exc}",
                ran=0.0,
            )
            return
        self.entry_started_uptime = self.uptime()
        self.detail = "entry point started"

    def _schedule_restart(self, now: float, why: str, ran: float) -> None:
        if ran >= self.timing.backoff_max:
            self.backoff = self.timing.backoff  # it ran well for a while: start over
        delay = self.backoff
        self.backoff = min(self.backoff * 2, self.timing.backoff_max)
        self.restart_at = now + delay
        self.detail = f"{why}; restarting in {delay:g} s"

    def _running(self, now: float) -> None:
        if self.entry is not None:
            code = self.entry.poll()
            if code is None:
                alive = now - self.entry.started
                if self.plan.ready_on_start or alive >= self.timing.ready_after:
                    self.detail = ""
                return
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self._schedule_restart(now, f"the entry point {how}", now - self.entry.started)
            self.console(f"CLOUDSERVICE-AGENT entrypoint {how}")
            self.entry = None
        if self.restart_at is not None and now >= self.restart_at:
            self.restarts += 1
            self._start_entry()

    def state(self) -> tuple[str, str]:
        """(state, detail) for the status channel."""
        if self.phase == "failed":
            return "failed", self.detail
        if self.phase in ("stopping", "stopped"):
            return "recycling", self.detail
        if self.phase == "running":
            if self.entry is None:
                return "busy", self.detail
            if self.detail == "":
                return "ready", ""
        return "starting", self.detail

    # ------------------------------------------------------------ stopping

    def stop(self, now: float, why: str) -> None:
        """SIGTERM to every process group; ``tick`` sends SIGKILL after the stop timeout."""
        if self.phase in ("stopping", "stopped"):
            return
        self.phase = "stopping"
        self.detail = why
        self.stop_deadline = now + self.timing.stop_timeout
        for proc in self.processes():
            proc.signal_group(signal.SIGTERM)

    def _stopping(self, now: float) -> None:
        alive = [proc for proc in self.processes() if proc.group_alive()]
        if not alive:
            self.phase = "stopped"
            return
        if self.killed_at is None and now >= self.stop_deadline:
            self.killed_at = now
            names = ", ".join(proc.name for proc in alive)
            self.console(f"CLOUDSERVICE-AGENT {names} ignored SIGTERM; sending SIGKILL")
            for proc in alive:
                proc.signal_group(signal.SIGKILL)
        elif self.killed_at is not None and now >= self.killed_at + KILL_GRACE:
            self.phase = "stopped"  # unkillable (D state): give up on them

    def hangup(self) -> bool:
        """SIGHUP to the entry point; False when it is not running."""
        if self.phase == "running" and self.entry is not None and self.entry.poll() is None:
            self.entry.signal(signal.SIGHUP)
            return True
        return False
