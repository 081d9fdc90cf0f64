"""The service's front door on the fabric: one load-balanced address per input endpoint.

A real HAProxy (`cloudservice.frontdoor`) runs on the machine that runs the provider, bound to
an address of the stack's choosing, one listener per input endpoint, balancing over the role's
instances on the service network (their addresses are fixed, so the servers are known before
the instances exist and join by the front door's own probe when they answer). Rollouts take
instances out of the rotation and back (`_rotation.Rotation`); this module starts, reloads,
observes and removes the front door itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..frontdoor import FrontDoor, FrontDoorError, FrontDoorSpec, HealthCheck, Listener, Server
from ..model import Model
from ._health import Probe
from .errors import FabricError


class BackendServer(Model):
    name: str = Field(description="The instance's name: rollouts find it by this name.")
    address: str = Field(description="The instance's address on the service network.")
    port: int = Field(ge=1, le=65535, description="The port the instance listens on.")


class FrontDoorListener(Model):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Role and endpoint, e.g. Web.HttpIn.",
    )
    protocol: Literal["http", "tcp"] = Field(default="http", description="http or tcp.")
    port: int = Field(ge=1, le=65535, description="The public port on the bind address.")
    probe: Probe | None = Field(
        default=None, description="The role's load balancer probe; default GET / (http) or connect."
    )
    servers: list[BackendServer] = Field(default_factory=list, description="The role's instances.")


class ServiceFrontDoorSpec(Model):
    """What a service's front door is asked to be."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,40}$", description="The service's prefix, e.g. cs-dev."
    )
    bind_address: str = Field(default="127.0.0.1", description="Address the listeners bind to.")
    drain_timeout_seconds: float = Field(
        default=30, gt=0, le=3600, description="How long in-flight requests may take to finish."
    )
    listeners: list[FrontDoorListener] = Field(
        min_length=1, description="One per input endpoint of the service."
    )

    def haproxy_spec(self) -> FrontDoorSpec:
        return FrontDoorSpec(
            name=self.name,
            drain_timeout_seconds=self.drain_timeout_seconds,
            listeners=tuple(
                Listener(
                    name=listener.name,
                    protocol=listener.protocol,
                    bind_address=self.bind_address,
                    port=listener.port,
                    probe=_health_check(listener),
                    servers=tuple(
                        Server(name=s.name, address=s.address, port=s.port)
                        for s in listener.servers
                    ),
                )
                for listener in self.listeners
            ),
        )


class RotationEntry(Model):
    listener: str
    server: str
    state: str = Field(description="UP or DOWN, as the front door's probe sees it.")
    admin: str = Field(description="READY, DRAIN (leaving) or MAINT.")


class FrontDoorDeployment(Model):
    directory: str = Field(description="Where the front door's configuration and socket live.")
    endpoints: dict[str, str] = Field(description="Listener name -> its public URL.")
    rotation: list[RotationEntry] = Field(description="Every instance's place in the rotation.")


def _health_check(listener: FrontDoorListener) -> HealthCheck:
    probe = listener.probe or Probe(protocol=listener.protocol)
    return HealthCheck(
        protocol=probe.protocol,
        path=probe.path,
        interval_seconds=probe.interval_seconds,
        timeout_seconds=min(probe.timeout_seconds, probe.interval_seconds),
    )


def state_directory(name: str) -> Path:
    """Per user, outside the repository: `$XDG_STATE_HOME/cloudservice/frontdoor/<name>`."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "cloudservice" / "frontdoor" / name


class ServiceFrontDoor:
    def __init__(self, spec: ServiceFrontDoorSpec, directory: str | None = None) -> None:
        self.spec = spec
        self.directory = Path(directory) if directory else state_directory(spec.name)
        self.door = FrontDoor(self.directory)

    def deploy(self) -> FrontDoorDeployment:
        """Start HAProxy, or reload it on the new listeners and servers without refusing any
        connection; a configuration HAProxy refuses leaves the running one as it was."""
        try:
            self.door.apply(self.spec.haproxy_spec())
        except FrontDoorError as exc:
            raise FabricError(f"front door {self.spec.name}: {exc}") from exc
        return self.observe()

    def observe(self) -> FrontDoorDeployment:
        rotation = []
        if self.door.running():
            rotation = [
                RotationEntry(listener=s.listener, server=s.server, state=s.state, admin=s.admin)
                for s in self.door.servers()
            ]
        return FrontDoorDeployment(
            directory=str(self.directory),
            endpoints={
                listener.name: f"{listener.protocol}://{self.spec.bind_address}:{listener.port}/"
                for listener in self.spec.listeners
            },
            rotation=rotation,
        )

    def running(self) -> bool:
        return self.door.running()

    def remove(self) -> None:
        self.door.stop()
