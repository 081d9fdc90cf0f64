"""`cloudservice:index:Network`: a libvirt virtual network (NAT or isolated) for a service."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import Field, ValidationError

from ..virt import NetworkInfo as _Info
from ..virt import NetworkSpec
from ._base import Failures, Model, Resource, replace_on_changes, validation_failures


class NetworkArgs(Model):
    name: str = Field(
        description="Network name on the host.", json_schema_extra=replace_on_changes()
    )
    cidr: str = Field(
        description="IPv4 subnet, e.g. 10.213.0.0/24; the host takes its first address.",
        json_schema_extra=replace_on_changes(),
    )
    mode: Literal["nat", "isolated"] = Field(
        default="nat",
        description="`nat` reaches outside through the host; `isolated` stays on the host.",
        json_schema_extra=replace_on_changes(),
    )
    dhcp: bool = Field(
        default=True,
        description="Serve DHCP on the subnet.",
        json_schema_extra=replace_on_changes(),
    )


class NetworkState(NetworkArgs):
    bridge: str = Field(description="The host bridge interface.")
    active: bool = Field(description="Whether the network is running.")


def _state(info: _Info) -> NetworkState:
    # Validated, not constructed: a network adopted from the host may have another forward mode.
    return NetworkState.model_validate(dataclasses.asdict(info))


class Network(Resource[NetworkArgs, NetworkState]):
    token = "cloudservice:index:Network"
    args_model = NetworkArgs
    state_model = NetworkState
    description = "A libvirt virtual network that a service's instances attach to."

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        if not failures and not unknown:
            try:
                NetworkSpec(**NetworkArgs.model_validate(inputs).model_dump())
            except ValidationError as exc:
                failures.extend(validation_failures(exc, unknown))
        return inputs, failures

    def preview_id(self, args: NetworkArgs) -> str:
        return args.name

    def create(self, args: NetworkArgs) -> tuple[str, NetworkState]:
        with self.connect() as host:
            info = host.ensure_network(NetworkSpec(**args.model_dump()))
        return info.name, _state(info)

    def read(self, resource_id: str, state: NetworkState) -> NetworkState | None:
        with self.connect() as host:
            info = host.network(resource_id)
        return None if info is None else _state(info)

    def update(self, resource_id: str, old: NetworkState, new: NetworkArgs) -> NetworkState:
        raise AssertionError("Network has no updatable inputs")

    def delete(self, resource_id: str, state: NetworkState) -> None:
        with self.connect() as host:
            host.delete_network(resource_id)
