"""Rollouts and scaling behind health gates, for any role kind.

A role kind says how to (re)start one instance; this module decides which instances move,
in which order (update domain by update domain, `_placement.rollout_waves`), waits for each
wave's health gate, and on a failed gate stops where it is, reporting what moved so that the
caller records the truth and the next run carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .. import cancel, progress
from ..model import UpgradeMode
from ..virt import Host
from ._health import Probe, wait_healthy
from ._instances import Endpoint, Instance, instance_index, record_instance, sorted_instances
from ._placement import rollout_waves
from ._rotation import NO_ROTATION, Rotation
from .errors import GateFailed, RolloutStopped


class Gate(Protocol):
    def wait(self, instances: Sequence[Instance]) -> list[Instance]:
        """The instances once healthy (with their boot-to-healthy time), or GateFailed."""
        ...


@dataclass(frozen=True)
class HealthGate:
    """Wait for instances to answer the role's probe, each within `deadline_seconds`."""

    probe: Probe
    endpoint: str  # whose forwarded port the probe targets
    deadline_seconds: float

    @classmethod
    def for_role(
        cls, endpoints: Sequence[Endpoint], probe: Probe | None, deadline_seconds: float
    ) -> HealthGate:
        """The role's probe, else GET / (or a connect) on its first input endpoint."""
        probe = probe or Probe(protocol=endpoints[0].protocol)
        port = probe.port or endpoints[0].port
        endpoint = next((e.name for e in endpoints if e.port == port), endpoints[0].name)
        return cls(probe, endpoint, deadline_seconds)

    def wait(self, instances: Sequence[Instance]) -> list[Instance]:
        """The instances with their boot-to-healthy time, or GateFailed for the first that
        does not answer."""
        healthy = []
        for instance in instances:
            port = instance.ports[self.endpoint]
            answer = wait_healthy(instance.address, port, self.probe, self.deadline_seconds)
            if not answer.healthy:
                target = f"{self.probe.protocol} {instance.address}:{port}{self.probe.path}"
                raise GateFailed(
                    f"instance {instance.name} (update domain {instance.update_domain}) failed "
                    f"its health probe {target} for {self.deadline_seconds:.0f} s; last answer: "
                    f"{answer.answer}"
                )
            seconds = round(time.time() - instance.started_at, 1)
            healthy.append(instance.model_copy(update={"healthy_after_seconds": seconds}))
        return healthy


@dataclass(frozen=True)
class RecordedGate:
    """A gate whose passes are written into the instances' domains: a later run (after an
    interruption) knows which instances were confirmed healthy, and which never were."""

    gate: Gate
    host: Host
    role: str

    def wait(self, instances: Sequence[Instance]) -> list[Instance]:
        healthy = self.gate.wait(instances)
        for instance in healthy:
            record_instance(self.host, self.role, instance)
        return healthy


@dataclass
class Progress:
    """Where a rollout got to: every instance as it is now, and the update domains moved."""

    instances: list[Instance]
    update_domains: list[int] = field(default_factory=list)
    complete: bool = True


def roll(
    instances: Sequence[Instance],
    outdated: Callable[[Instance], bool],
    restart: Callable[[Instance], Instance],
    gate: Gate,
    mode: UpgradeMode,
    manual_limit: int | None = None,
    rotation: Rotation = NO_ROTATION,
    disrupts: Callable[[Instance], bool] = lambda _instance: True,
) -> Progress:
    """Restart the outdated instances one wave (update domain) at a time, each behind the gate:
    those the restart `disrupts` leave the front door's rotation first and rejoin once healthy
    (a change applied in place keeps serving).

    Raises RolloutStopped with the Progress so far when a gate fails (that wave stays out).
    """
    current = {i.name: i for i in instances}
    waves = rollout_waves(
        [(i.name, i.update_domain) for i in instances if outdated(i)], mode, manual_limit
    )
    done = Progress(sorted_instances(current.values()))
    try:
        for number, wave in enumerate(waves, 1):
            cancel.checkpoint()  # between waves: every instance is old, or new and gated
            domains = ", ".join(map(str, wave.update_domains))
            where = f"update domain {domains} ({number} of {len(waves)})"
            progress.status(f"{where}: restarting {', '.join(wave.instances)}", force=True)
            leaving = rotation.leave([current[n] for n in wave.instances if disrupts(current[n])])
            current.update({i.name: i for i in leaving})
            # A restarted instance keeps its place in (or out of) the rotation.
            moved = [
                restart(current[name]).model_copy(update={"rotation": current[name].rotation})
                for name in wave.instances
            ]
            current.update({i.name: i for i in moved})
            done.update_domains.extend(wave.update_domains)
            progress.status(f"{where}: waiting for health", force=True)
            healthy = gate.wait(moved)
            current.update({i.name: i for i in healthy})
            left = {i.name for i in leaving}
            current.update(
                {i.name: i for i in rotation.join([i for i in healthy if i.name in left])}
            )
    except (GateFailed, cancel.Cancelled) as exc:
        done.instances, done.complete = sorted_instances(current.values()), False
        raise RolloutStopped(f"rollout stopped: {exc}", done) from exc
    done.instances = sorted_instances(current.values())
    done.complete = not any(outdated(i) for i in done.instances)
    return done


def scale(
    instances: Sequence[Instance],
    indexes: Sequence[int],
    start: Callable[[int], Instance],
    drop: Callable[[Instance], None],
    gate: Gate,
    rotation: Rotation = NO_ROTATION,
) -> tuple[list[Instance], bool]:
    """The instances of `indexes`: missing ones started (behind the gate, then into the
    rotation), the others dropped (out of the rotation first).

    Returns (instances, whether any was started or dropped). Raises RolloutStopped with the
    instances as they are when a new instance fails its gate.
    """
    kept = {instance_index(i.name): i for i in instances}
    dropped = [kept.pop(index) for index in sorted(kept) if index not in indexes]
    rotation.leave(dropped)
    for instance in dropped:
        drop(instance)
    started: list[Instance] = []
    try:
        for index in indexes:
            if index not in kept:
                cancel.checkpoint()
                progress.status(f"starting instance {index} of {len(indexes)}", force=True)
                started.append(start(index))
        healthy = rotation.join(gate.wait(started))
    except (GateFailed, cancel.Cancelled) as exc:
        raise RolloutStopped(str(exc), sorted_instances([*kept.values(), *started])) from exc
    return sorted_instances([*kept.values(), *healthy]), bool(started or dropped)
