"""`cloudservice:index:Volume`: a volume in a storage pool holding a local file's bytes.

The bytes go up by libvirt stream, as they are: a qcow2 or VHD file must be declared with that
`format`. `check` hashes the file, so a changed file shows as an update in `preview --diff`
even when its path stays the same, and the upload happens again in place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..virt import VolumeInfo, VolumeSpec
from ._base import Failures, Model, Resource, replace_on_changes

_HASH_CHUNK = 8 * 1024 * 1024


class VolumeArgs(Model):
    pool: str = Field(description="Storage pool name.", json_schema_extra=replace_on_changes())
    name: str = Field(
        description="Volume name in the pool.", json_schema_extra=replace_on_changes()
    )
    source: str = Field(description="Absolute path of the local file whose bytes fill the volume.")
    format: Literal["raw", "qcow2", "vpc"] = Field(
        default="raw",
        description="Format of the file's bytes (`vpc` is VHD); they are uploaded unchanged.",
        json_schema_extra=replace_on_changes(),
    )
    source_sha256: str | None = Field(
        default=None,
        description="SHA-256 of the file. Filled in by the provider; set it to pin the content.",
    )


class VolumeState(VolumeArgs):
    path: str = Field(description="Path of the volume on the host.")
    capacity: int = Field(description="Virtual size in bytes.")
    allocation: int = Field(description="Bytes allocated on the host.")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _state(args: VolumeArgs, info: VolumeInfo) -> VolumeState:
    inputs = args.model_dump(include=set(VolumeArgs.model_fields))
    return VolumeState(**inputs, path=info.path, capacity=info.capacity, allocation=info.allocation)


class Volume(Resource[VolumeArgs, VolumeState]):
    token = "cloudservice:index:Volume"
    args_model = VolumeArgs
    state_model = VolumeState
    description = "A libvirt storage volume filled with a local file's bytes by stream upload."

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        source = inputs.get("source")
        if not isinstance(source, str) or "source" in unknown:
            return inputs, failures
        path = Path(source)
        if not path.is_absolute():
            return inputs, [*failures, ("source", f"must be an absolute path, got {source!r}")]
        if not path.is_file():
            return inputs, [*failures, ("source", f"file {source} does not exist")]
        digest = file_sha256(path)
        pinned = inputs.get("sourceSha256")
        if pinned and pinned != digest:
            failure = f"file {source} has SHA-256 {digest}, not the pinned {pinned}"
            return inputs, [*failures, ("sourceSha256", failure)]
        return {**inputs, "sourceSha256": digest}, failures

    def preview_id(self, args: VolumeArgs) -> str:
        return f"{args.pool}/{args.name}"

    def _spec(self, args: VolumeArgs) -> VolumeSpec:
        return VolumeSpec(
            name=args.name, capacity=Path(args.source).stat().st_size, format=args.format
        )

    def create(self, args: VolumeArgs) -> tuple[str, VolumeState]:
        with self.connect() as host:
            info = host.upload_volume(args.pool, self._spec(args), Path(args.source))
        return self.preview_id(args), _state(args, info)

    def read(self, resource_id: str, state: VolumeState) -> VolumeState | None:
        with self.connect() as host:
            info = host.volume(state.pool, state.name)
        return None if info is None else _state(state, info)

    def update(self, resource_id: str, old: VolumeState, new: VolumeArgs) -> VolumeState:
        with self.connect() as host:
            info = host.overwrite_volume(new.pool, self._spec(new), Path(new.source))
        return _state(new, info)

    def delete(self, resource_id: str, state: VolumeState) -> None:
        with self.connect() as host:
            host.delete_volume(state.pool, state.name)
