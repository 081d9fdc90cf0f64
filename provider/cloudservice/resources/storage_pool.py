"""`cloudservice:index:StoragePool`: a directory storage pool on the libvirt host."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..virt import PoolSpec
from ._base import Failures, Model, Resource, replace_on_changes


class StoragePoolArgs(Model):
    name: str = Field(description="Pool name on the host.", json_schema_extra=replace_on_changes())
    path: str = Field(
        description="Absolute directory for the pool's volumes; created if missing.",
        json_schema_extra=replace_on_changes(),
    )


class StoragePoolState(StoragePoolArgs):
    active: bool = Field(description="Whether the pool is running.")


class StoragePool(Resource[StoragePoolArgs, StoragePoolState]):
    token = "cloudservice:index:StoragePool"
    args_model = StoragePoolArgs
    state_model = StoragePoolState
    description = "A libvirt directory storage pool that holds a service's disk volumes."

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        path = inputs.get("path")
        if isinstance(path, str) and not path.startswith("/"):
            failures.append(("path", f"must be an absolute directory, got {path!r}"))
        return inputs, failures

    def preview_id(self, args: StoragePoolArgs) -> str:
        return args.name

    def create(self, args: StoragePoolArgs) -> tuple[str, StoragePoolState]:
        with self.connect() as host:
            info = host.ensure_pool(PoolSpec(name=args.name, path=args.path))
        return info.name, StoragePoolState(name=info.name, path=info.path, active=info.active)

    def read(self, resource_id: str, state: StoragePoolState) -> StoragePoolState | None:
        with self.connect() as host:
            info = host.pool(resource_id)
        if info is None:
            return None
        return StoragePoolState(name=info.name, path=info.path, active=info.active)

    def update(
        self, resource_id: str, old: StoragePoolState, new: StoragePoolArgs
    ) -> StoragePoolState:
        # Every input replaces the pool, so the engine never asks for an update.
        raise AssertionError("StoragePool has no updatable inputs")

    def delete(self, resource_id: str, state: StoragePoolState) -> None:
        with self.connect() as host:
            host.delete_pool(resource_id)
