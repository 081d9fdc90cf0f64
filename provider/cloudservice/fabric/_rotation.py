"""The front door's rotation, as rollouts drive it: instances leave before they are touched and
come back only once healthy (Azure's load balancer does the same per update domain).

A front door's servers are named after the instances they balance to, so an instance is found
in every listener it serves. Without a front door (or when it is not running: the next `up`
restores it) there is nothing to drive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..frontdoor import FrontDoor, FrontDoorError
from ._instances import Instance
from ._placement import Wave
from .errors import GateFailed


@dataclass(frozen=True)
class Rotation:
    directory: str | None  # the front door's directory; None: the role has no front door
    drain_seconds: float = 30.0  # in-flight requests get this long to finish
    join_seconds: float = 60.0  # how long a healthy instance may take to be seen UP

    def leave(self, instances: Sequence[Instance]) -> list[Instance]:
        """No new connections for these instances; in-flight ones finish (bounded). Returns
        them marked out of the rotation."""
        for door, listener, server in self._servers(instances):
            door.drain(listener, server)
        for door, listener, server in self._servers(instances):
            door.wait_drained(listener, server, self.drain_seconds)
        return self._marked(instances, "out")

    def join(self, instances: Sequence[Instance]) -> list[Instance]:
        """Back in rotation, once the front door's own probe sees them UP. Returns them
        marked in the rotation."""
        for door, listener, server in self._servers(instances):
            door.ready(listener, server)
        for door, listener, server in self._servers(instances):
            try:
                door.wait_up(listener, server, self.join_seconds)
            except FrontDoorError as exc:
                raise GateFailed(f"instance {server} did not rejoin the rotation: {exc}") from exc
        return self._marked(instances, "in")

    def _marked(self, instances: Sequence[Instance], where: Literal["in", "out"]) -> list[Instance]:
        if self.directory is None:
            return list(instances)
        return [instance.model_copy(update={"rotation": where}) for instance in instances]

    def _servers(self, instances: Sequence[Instance]) -> list[tuple[FrontDoor, str, str]]:
        if self.directory is None:
            return []
        door = FrontDoor(Path(self.directory))
        if not door.running():
            return []
        names = {instance.name for instance in instances}
        return [(door, s.listener, s.server) for s in door.servers() if s.server in names]


NO_ROTATION = Rotation(None)


def leaving_in_turn(waves: Sequence[Wave], leaving: set[str]) -> str:
    """For a preview: which instances leave the rotation, wave by wave."""
    steps = []
    for wave in waves:
        names = [name for name in wave.instances if name in leaving]
        if names:
            domains = ", ".join(map(str, wave.update_domains))
            steps.append(f"{', '.join(names)} (update domain {domains})")
    if not steps:
        return "nothing leaves the front door's rotation"
    return "out of the front door's rotation in turn, back once healthy: " + ", then ".join(steps)
