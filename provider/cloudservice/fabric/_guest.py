"""What the fabric says to a Web/Worker instance's guest agent, and hears back (docs/guest.md).

Down: the configuration document on a swappable cdrom medium. Up: JSON status lines on a
virtio-serial channel, read through libvirt (so a remote host works the same).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from .. import cancel
from ..model import Model
from ..virt import Host
from ._instances import Instance
from .errors import GateFailed

STATUS_CHANNEL = "org.cloudservice.agent.0"
_MEDIUM_UNIT = 2048  # a cdrom sector


class AgentStatus(Model):
    state: Literal["starting", "ready", "busy", "recycling", "failed"]
    role: str = ""
    instance_id: str = ""
    generation: int = 0
    package: str = ""
    os: str = ""
    uptime_seconds: float = 0.0
    role_started_seconds: float | None = None
    ready_seconds: float | None = None
    restarts: int = 0
    detail: str = ""


def configuration_medium(document: dict[str, Any]) -> bytes:
    """The document as the agent reads it: UTF-8 JSON, NUL-padded to whole cdrom sectors."""
    data = json.dumps(document, sort_keys=True).encode()
    return data + b"\0" * (_MEDIUM_UNIT - len(data) % _MEDIUM_UNIT)


def package_medium(package: bytes) -> bytes:
    return package + b"\0" * (-len(package) % _MEDIUM_UNIT)


def document_digest(document: dict[str, Any]) -> str:
    """What the agent runs with, generation aside: equal digests need no new medium."""
    body = {k: v for k, v in document.items() if k != "generation"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


# What the agent applies in place (it signals the role): the rest restarts the role.
_IN_PLACE = ("generation", "settings", "certificates", "topology", "onConfigurationChange")


def program_digest(document: dict[str, Any]) -> str:
    """What the role runs: a change restarts it (so its instance leaves the rotation first)."""
    body = {k: v for k, v in document.items() if k not in _IN_PLACE}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def last_status(raw: bytes) -> AgentStatus | None:
    """The newest well-formed status line of what the channel carried."""
    for line in reversed(raw.decode(errors="replace").splitlines()):
        try:
            return AgentStatus.model_validate_json(line)
        except ValidationError:
            continue
    return None


def read_status(
    host: Host, instance: str, seconds: float = 2.5, attempts: int = 3
) -> AgentStatus | None:
    """The agent's newest status (it writes at least once a second), or None when it stays
    silent for `attempts` windows of `seconds` (a channel just reconnected may carry nothing
    for a moment)."""
    for _ in range(attempts):
        domain = host.domain(instance)
        if domain is None or not domain.running:
            return None
        # The agent writes a whole line at least once a second: the first one will do.
        raw = host.read_channel(instance, STATUS_CHANNEL, seconds, until=b"\n")
        status = last_status(raw)
        if status is not None:
            return status
    return None


@dataclass(frozen=True)
class AgentGate:
    """Wait until each instance's agent reports `ready` on the expected package and
    configuration; a `failed` report stops at once with the agent's reason."""

    host: Host
    package: str
    deadline_seconds: float
    then: Any = None  # a HealthGate probing the role's endpoint once the agent is ready

    def wait(self, instances: Sequence[Instance]) -> list[Instance]:
        ready = [self._wait_one(instance) for instance in instances]
        return self.then.wait(ready) if self.then is not None else ready

    def _wait_one(self, instance: Instance) -> Instance:
        deadline = time.monotonic() + self.deadline_seconds
        status: AgentStatus | None = None
        while time.monotonic() < deadline:
            cancel.checkpoint()
            status = read_status(self.host, instance.name, attempts=1)
            if status is None or status.package != self.package:
                continue
            if status.generation < instance.generation:
                continue
            if status.state == "failed":
                raise GateFailed(
                    f"instance {instance.name} (update domain {instance.update_domain}) "
                    f"failed: {status.detail}"
                )
            if status.state == "ready":
                seconds = round(time.time() - instance.started_at, 1)
                return instance.model_copy(
                    update={
                        "healthy_after_seconds": instance.healthy_after_seconds or seconds,
                        "uptime_seconds": status.uptime_seconds,
                    }
                )
        heard = f"{status.state}: {status.detail}" if status else "nothing from its agent"
        raise GateFailed(
            f"instance {instance.name} (update domain {instance.update_domain}) was not ready "
            f"within {self.deadline_seconds:.0f} s; last heard: {heard}"
        )
