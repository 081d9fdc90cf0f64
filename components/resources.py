"""Program-side classes for the provider's custom resources.

Inputs are checked against the provider's own pydantic Args models (the same field names the
schema is generated from), so a misspelt argument fails in the program, not in the engine.
Python names are snake_case; on the wire they are camelCase.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pulumi
from cloudservice.model import Model
from cloudservice.resources import (
    NetworkArgs,
    NetworkState,
    StoragePoolArgs,
    StoragePoolState,
    VmRoleArgs,
    VmRoleState,
    VolumeArgs,
    VolumeState,
    wire_names,
)


class _ProviderResource(pulumi.CustomResource):
    _token: ClassVar[str]
    _args: ClassVar[type[Model]]
    _state: ClassVar[type[Model]]

    def __init__(
        self, resource_name: str, opts: pulumi.ResourceOptions | None = None, **inputs: Any
    ) -> None:
        allowed = wire_names(self._args)
        unexpected = sorted(set(inputs) - set(allowed))
        if unexpected:
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments {unexpected}; "
                f"it takes {sorted(allowed)}"
            )
        props: dict[str, Any] = {name: None for name in wire_names(self._state)}
        props.update(inputs)
        super().__init__(self._token, resource_name, props, opts)

    def translate_input_property(self, prop: str) -> str:
        return wire_names(self._state).get(prop, prop)

    def translate_output_property(self, prop: str) -> str:
        python_names = {wire: name for name, wire in wire_names(self._state).items()}
        return python_names.get(prop, prop)


class StoragePool(_ProviderResource):
    """A libvirt directory storage pool (see `cloudservice.resources.storage_pool`)."""

    _token = "cloudservice:index:StoragePool"
    _args = StoragePoolArgs
    _state = StoragePoolState
    name: pulumi.Output[str]
    path: pulumi.Output[str]
    active: pulumi.Output[bool]


class Network(_ProviderResource):
    """A libvirt virtual network (see `cloudservice.resources.network`)."""

    _token = "cloudservice:index:Network"
    _args = NetworkArgs
    _state = NetworkState
    name: pulumi.Output[str]
    cidr: pulumi.Output[str]
    bridge: pulumi.Output[str]
    active: pulumi.Output[bool]


class Volume(_ProviderResource):
    """A volume filled with a local file's bytes (see `cloudservice.resources.volume`)."""

    _token = "cloudservice:index:Volume"
    _args = VolumeArgs
    _state = VolumeState
    pool: pulumi.Output[str]
    name: pulumi.Output[str]
    path: pulumi.Output[str]
    capacity: pulumi.Output[int]
    source_sha256: pulumi.Output[str]


class VmRole(_ProviderResource):
    """A VM Role: a .vhd on instances over update domains (see `cloudservice.resources.vm_role`)."""

    _token = "cloudservice:index:VmRole"
    _args = VmRoleArgs
    _state = VmRoleState
    name: pulumi.Output[str]
    instance_count: pulumi.Output[int]
    layers: pulumi.Output[list[dict[str, Any]]]
    instances: pulumi.Output[list[dict[str, Any]]]
    rollout_complete: pulumi.Output[bool]
    update_domains_upgraded: pulumi.Output[list[int]]
    last_upload_bytes: pulumi.Output[int]
    summary: pulumi.Output[str]
