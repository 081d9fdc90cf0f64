"""`cloudservice:index:VmRole`: a VM Role, whose package is a whole `.vhd` disk.

On the host a role is an image chain plus instances:

    <name>-l0.vhd            the first image, uploaded once, given to qemu as `vpc`
    <name>-l1.qcow2 ...      one layer per later release: only the clusters that changed,
                             backed by the layer below (qemu misreads differencing VHDs)
    <name>-<i>.qcow2         instance i's scratch overlay: reimage = drop it
    <name>-<i>               instance i's domain, in update domain i mod updateDomainCount

Each layer's block manifest (`<layer>.manifest.json`, also cached locally) lets the next release
be diffed without fetching the image back. A new release rolls out one update domain at a time
behind a health gate; a failed gate stops the rollout, records which instances moved (a partial
update), and the next `pulumi up` carries on, or rolls back when given the previous image.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .. import vhd
from ..model import ModelError, lookup_vm_size
from ..virt import DomainSpec, Host, PortForward, VolumeInfo, VolumeSpec, detect_accelerator
from ..virt._health import Probe, ProbeAnswer, free_loopback_port, wait_healthy
from ..virt._rollout import UpgradeMode, rollout_waves, update_domain_of
from ._base import Changes, Failures, FieldChange, Model, PartialFailure, Resource
from ._base import replace_on_changes as _replace
from .volume import file_sha256

LOOPBACK = "127.0.0.1"
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"


class EndpointArgs(Model):
    name: str = Field(default="http", description="Endpoint name, as in the service definition.")
    protocol: Literal["http", "tcp"] = Field(default="http", description="http or tcp.")
    port: int = Field(default=80, ge=1, le=65535, description="Port the guest listens on.")


class ProbeArgs(Model):
    protocol: Literal["http", "tcp"] = Field(default="http", description="http or tcp.")
    path: str = Field(default="/", description="Path of an http probe; 200 means healthy.")
    port: int | None = Field(default=None, description="Guest port; default the first endpoint's.")
    interval_seconds: float = Field(default=2.0, gt=0, description="Seconds between probes.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Seconds one probe may take.")


class VmRoleArgs(Model):
    name: str = Field(
        description="Prefix of the role's objects on the host, e.g. cs-dev-web.",
        pattern=r"^[a-z0-9][a-z0-9-]{0,40}$",
        json_schema_extra=_replace(),
    )
    pool: str = Field(
        description="Storage pool for images and overlays.", json_schema_extra=_replace()
    )
    image: str = Field(
        description="Absolute path of the role's .vhd: fixed, dynamic, or a "
        "differencing disk whose parent is the image deployed now."
    )
    image_sha256: str | None = Field(default=None, description="Filled in by the provider.")
    instance_count: int = Field(ge=1, le=100, description="Number of instances.")
    # Azure upgrades a role in place, update domain by update domain, for a new VM size or
    # endpoint set ("Allowed service changes during an update"); so does this provider.
    vm_size: str = Field(default="ExtraSmall", description="Azure VM size name.")
    update_domain_count: int = Field(
        default=5,
        ge=1,
        le=20,
        json_schema_extra=_replace(),
        description="Update domains instances are spread over.",
    )
    upgrade_mode: UpgradeMode = Field(default="auto", description="auto, manual or simultaneous.")
    manual_upgrade_domain: int | None = Field(
        default=None, ge=0, description="In manual mode, the last update domain to upgrade."
    )
    endpoints: list[EndpointArgs] = Field(
        default_factory=lambda: [EndpointArgs()],
        description="Input endpoints; each is forwarded from a port on the host's loopback.",
    )
    probe: ProbeArgs | None = Field(
        default=None, description="Health probe; default: GET / on the first endpoint."
    )
    health_timeout_seconds: float = Field(default=300, gt=0, description="Health gate deadline.")
    max_chain_depth: int = Field(
        default=4, ge=1, le=16, description="Layers above which a release is uploaded whole."
    )


class LayerState(Model):
    volume: str
    format: Literal["vpc", "qcow2"]
    backing: str | None = None  # the layer below (None for a whole image)

    @model_validator(mode="after")
    def _qcow2_layers_have_a_backing(self) -> LayerState:
        # Layers are deleted once no instance reads through them: the chain must be explicit.
        if (self.format == "qcow2") != (self.backing is not None):
            raise ValueError(f"layer {self.volume}: a qcow2 layer, and only one, has a backing")
        return self

    path: str
    image_sha256: str
    unique_id: str | None
    virtual_size: int
    uploaded_bytes: int
    blocks_changed: int


class InstanceState(Model):
    name: str
    update_domain: int
    host: str = Field(description="The libvirt host the instance runs on (its URI).")
    address: str = Field(description="Where its endpoints answer: the host's loopback.")
    ports: dict[str, int]
    urls: list[str]
    layer: str
    settings: str = Field(
        default="", description="Digest of the VM size and endpoints it was started with."
    )
    started_at: float = Field(description="When the instance was last (re)started, Unix time.")
    healthy_after_seconds: float | None = Field(
        default=None, description="Seconds from start to the first healthy probe answer."
    )


class VmRoleState(VmRoleArgs):
    layers: list[LayerState] = Field(description="The image chain, base first.")
    instances: list[InstanceState] = Field(description="The role's instances.")
    rollout_complete: bool = Field(description="False after a failed health gate.")
    update_domains_upgraded: list[int] = Field(
        description="Update domains the last release reached, in order."
    )
    last_upload_bytes: int = Field(description="Bytes streamed to the host by the last release.")
    summary: str = Field(description="What the last change did, in service terms.")


class GateFailed(RuntimeError):
    """A health gate timed out; the message names the instance, the probe and its last answer."""


class VmRole(Resource[VmRoleArgs, VmRoleState]):
    token = "cloudservice:index:VmRole"
    args_model = VmRoleArgs
    state_model = VmRoleState
    description = "A VM Role: a .vhd run as it is, on instances spread over update domains."
    delete_before_replace = True

    # -- check / diff --------------------------------------------------------------------------

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        if "vmSize" in inputs and "vmSize" not in unknown:
            try:
                lookup_vm_size(str(inputs["vmSize"]))
            except ModelError as exc:
                failures.append(("vmSize", str(exc)))
        image = inputs.get("image")
        if not isinstance(image, str) or "image" in unknown:
            return inputs, failures
        if not os.path.isabs(image) or not os.path.isfile(image):
            return inputs, [*failures, ("image", f"{image} is not an absolute path to a file")]
        try:
            with vhd.open_image(image, format="vhd", resolve_parent=False) as opened:
                opened.info()
        except vhd.VhdError as exc:
            return inputs, [*failures, ("image", str(exc))]
        return {**inputs, "imageSha256": file_sha256(Path(image))}, failures

    def diff(
        self,
        old_state: dict[str, Any],
        new_inputs: dict[str, Any],
        unknown: set[str],
        ignore: set[str],
    ) -> Changes:
        changes = super().diff(old_state, new_inputs, unknown, ignore)
        # A rollout a health gate stopped is unfinished business, even with the same inputs.
        if old_state.get("rolloutComplete") is False and not changes.fields:
            changes.fields.append(FieldChange("imageSha256", replace=False))
        return changes

    def preview_id(self, args: VmRoleArgs) -> str:
        return args.name

    def preview_update(self, old: VmRoleState, new: VmRoleArgs) -> dict[str, Any]:
        """The change in service terms, for `pulumi preview --diff`: the `summary` output."""
        parts = []
        restart = any(i.settings != _settings_digest(new) for i in old.instances)
        if old.image_sha256 != new.image_sha256 or not old.rollout_complete or restart:
            with self.connect() as host:
                parts.append(_preview_release(host, new, old))
            if restart:
                parts.append(f"restart on VM size {new.vm_size} and the endpoints given")
            moving = [(i.name, i.update_domain) for i in old.instances]
            waves = rollout_waves(moving, new.upgrade_mode, new.manual_upgrade_domain)
            touched = ", ".join(str(d) for wave in waves for d in wave.update_domains)
            parts.append(f"update domains {touched or 'none'} ({new.upgrade_mode})")
        if len(old.instances) != new.instance_count:
            parts.append(f"instances {len(old.instances)} -> {new.instance_count}")
        return {"summary": "will: " + ("; ".join(parts) or "change settings only")}

    # -- create / read / update / delete -------------------------------------------------------

    def create(self, args: VmRoleArgs) -> tuple[str, VmRoleState]:
        with self.connect() as host:
            try:
                layer = _upload_base(host, args, layer_index=0)
                state = _scale(host, args, _empty_state(args, [layer], host.bytes_uploaded))
            except PartialFailure:
                raise  # the role exists, some instance is unhealthy: Pulumi records it
            except BaseException:
                _remove_what_create_made(host, args)
                raise
        return args.name, state

    def read(self, resource_id: str, state: VmRoleState) -> VmRoleState | None:
        with self.connect() as host:
            layers = [layer for layer in state.layers if host.volume(state.pool, layer.volume)]
            instances = [i for i in state.instances if _instance_alive(host, state.pool, i)]
        if not layers and not instances:
            return None
        changes: dict[str, Any] = {"instances": instances, "layers": layers}
        if len(instances) != len(state.instances):
            # Report what runs, so the next `up` scales back to what the program asks for.
            changes["instance_count"] = max(len(instances), 1)
        if len(layers) != len(state.layers):
            changes["image_sha256"] = "(missing on the host)"
        return state.model_copy(update=changes)

    def update(self, resource_id: str, old: VmRoleState, new: VmRoleArgs) -> VmRoleState:
        with self.connect() as host:
            state = old.model_copy(
                update={name: getattr(new, name) for name in VmRoleArgs.model_fields}
            )
            stale = [i for i in old.instances if i.settings != _settings_digest(new)]
            if old.image_sha256 != new.image_sha256 or not old.rollout_complete or stale:
                state = _release(host, new, state)
            return _scale(host, new, state)

    def delete(self, resource_id: str, state: VmRoleState) -> None:
        with self.connect() as host:
            for name in _instance_names_on_host(host, state):
                _drop_instance(host, state.pool, name)
            for layer in reversed(state.layers):
                host.delete_volume(state.pool, layer.volume)
                host.delete_volume(state.pool, _manifest_volume(layer.volume))


# -- images --------------------------------------------------------------------------------


def _layer_name(args: VmRoleArgs, index: int, fmt: str) -> str:
    return f"{args.name}-l{index}.{'vhd' if fmt == 'vpc' else 'qcow2'}"


def _manifest_volume(layer_volume: str) -> str:
    return f"{layer_volume}.manifest.json"


def _cache_dir() -> Path:
    root = os.environ.get("CLOUDSERVICE_CACHE") or Path.home() / ".cache" / "cloudservice"
    path = Path(root) / "manifests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _store_manifest(
    host: Host, pool: str, layer_volume: str, manifest: vhd.BlockManifest, image_sha256: str
) -> None:
    """Keep the manifest on the host (the source of truth) and in the local cache."""
    text = json.dumps(manifest.to_json()).encode()
    cached = _cache_dir() / f"{image_sha256}.json"
    cached.write_bytes(text)
    name = _manifest_volume(layer_volume)
    host.delete_volume(pool, name)
    host.upload_volume(pool, VolumeSpec(name=name, capacity=len(text)), cached)


def _load_manifest(host: Host, pool: str, layer: LayerState) -> vhd.BlockManifest:
    cached = _cache_dir() / f"{layer.image_sha256}.json"
    if not cached.exists():
        with open(cached, "wb") as sink:
            host.download_volume(pool, _manifest_volume(layer.volume), sink)
    return vhd.BlockManifest.load(str(cached))


def _upload_base(host: Host, args: VmRoleArgs, layer_index: int) -> LayerState:
    """Upload a whole image as the bottom of a new chain (first deploy, or a coalesce)."""
    with vhd.open_image(args.image, format="vhd") as image:
        info = image.info()
        if info.type == "differencing":
            raise vhd.ImageUsageError(
                f"{args.image} is a differencing VHD: the first release of a role needs a whole "
                "image (fixed or dynamic)"
            )
        manifest = vhd.make_manifest(image)
    volume = _layer_name(args, layer_index, "vpc")
    size = Path(args.image).stat().st_size
    uploaded = host.upload_volume(
        args.pool, VolumeSpec(name=volume, capacity=size, format="vpc"), Path(args.image)
    )
    sha = args.image_sha256 or file_sha256(Path(args.image))
    _store_manifest(host, args.pool, volume, manifest, sha)
    return LayerState(
        volume=volume,
        format="vpc",
        path=uploaded.path,
        image_sha256=sha,
        unique_id=info.unique_id,
        virtual_size=info.virtual_size,
        uploaded_bytes=size,
        blocks_changed=manifest.block_count,
    )


@contextmanager
def _new_release(path: str, top: LayerState) -> Iterator[vhd.Image]:
    """Open a release; a differencing VHD must be a child of the image deployed now."""
    with vhd.open_image(path, format="vhd", resolve_parent=False) as unresolved:
        info = unresolved.info()
    if info.type == "differencing" and info.parent_unique_id != top.unique_id:
        raise vhd.ParentMismatchError(
            f"{path} is a differencing VHD of parent {info.parent_unique_id}, but the image "
            f"deployed is {top.unique_id}: build the update against the deployed image"
        )
    with vhd.open_image(path, format="vhd") as image:
        yield image


def _upload_layer(host: Host, args: VmRoleArgs, layers: list[LayerState]) -> LayerState:
    """Diff the release against the newest layer's manifest and upload only what changed."""
    top = layers[-1]
    manifest = _load_manifest(host, args.pool, top)
    volume = _layer_name(args, _next_index(layers), "qcow2")
    with _new_release(args.image, top) as image, tempfile.TemporaryDirectory() as work:
        overlay = Path(work) / volume
        result = vhd.qcow2_overlay_from_manifest(
            manifest, image, overlay, backing_file=top.path, backing_format=top.format
        )
        new_manifest = vhd.make_manifest(image)
        unique_id = image.info().unique_id
        uploaded = host.upload_volume(
            args.pool,
            VolumeSpec(name=volume, capacity=manifest.virtual_size, format="qcow2"),
            overlay,
        )
    sha = args.image_sha256 or file_sha256(Path(args.image))
    _store_manifest(host, args.pool, volume, new_manifest, sha)
    return LayerState(
        volume=volume,
        format="qcow2",
        backing=top.volume,
        path=uploaded.path,
        image_sha256=sha,
        unique_id=unique_id,
        virtual_size=manifest.virtual_size,
        uploaded_bytes=result.file_size,
        blocks_changed=result.blocks_changed,
    )


def _preview_release(host: Host, args: VmRoleArgs, state: VmRoleState) -> str:
    """Blocks changed and bytes to upload, computed as the update would, uploading nothing."""
    if any(layer.image_sha256 == args.image_sha256 for layer in state.layers):
        return "image already on the host: 0 bytes to upload"
    top = state.layers[-1]
    manifest = _load_manifest(host, args.pool, top)
    with _new_release(args.image, top) as image, tempfile.TemporaryDirectory() as work:
        result = vhd.qcow2_overlay_from_manifest(
            manifest, image, Path(work) / "preview.qcow2", backing_file=top.path
        )
    return (
        f"image: {result.blocks_changed} of {result.blocks_total} blocks changed, "
        f"{result.file_size} bytes to upload"
    )


def _release(host: Host, args: VmRoleArgs, state: VmRoleState) -> VmRoleState:
    """Find or upload the release's layer, then roll instances onto it."""
    layers = list(state.layers)
    streamed_before = host.bytes_uploaded
    known = next((layer for layer in layers if layer.image_sha256 == args.image_sha256), None)
    if known is not None:
        # Already on the host: a stopped rollout carrying on, or a rollback. Nothing to upload.
        layer = known
    elif not layers or len(_ancestry(layers, layers[-1].volume)) >= args.max_chain_depth:
        # Coalesce: past the depth limit the release is uploaded whole as a new base.
        layer = _upload_base(host, args, layer_index=_next_index(layers))
        layers.append(layer)
    else:
        layer = _upload_layer(host, args, layers)
        layers.append(layer)
    uploaded = host.bytes_uploaded - streamed_before  # the layer and its manifest, as streamed
    state = state.model_copy(update={"layers": layers, "last_upload_bytes": uploaded})
    state = _roll_out(host, args, state, layer)
    return _drop_unused_layers(host, state)


def _next_index(layers: list[LayerState]) -> int:
    indexes = [int(layer.volume.rsplit("-l", 1)[1].split(".")[0]) for layer in layers]
    return max(indexes, default=-1) + 1


def _ancestry(layers: list[LayerState], volume: str) -> list[str]:
    """`volume` and the layers it reads through, down to its base."""
    by_volume = {layer.volume: layer for layer in layers}
    chain: list[str] = []
    current: str | None = volume
    while current is not None and current in by_volume:
        chain.append(current)
        current = by_volume[current].backing
    return chain


def _drop_unused_layers(host: Host, state: VmRoleState) -> VmRoleState:
    """After a complete rollout, layers no instance reads through are deleted."""
    if not state.rollout_complete:
        return state
    needed = {v for i in state.instances for v in _ancestry(state.layers, i.layer)}
    for layer in state.layers:
        if layer.volume not in needed:
            host.delete_volume(state.pool, layer.volume)
            host.delete_volume(state.pool, _manifest_volume(layer.volume))
    return state.model_copy(update={"layers": [x for x in state.layers if x.volume in needed]})


# -- instances -----------------------------------------------------------------------------


def _empty_state(args: VmRoleArgs, layers: list[LayerState], uploaded: int) -> VmRoleState:
    return VmRoleState(
        **args.model_dump(),
        layers=layers,
        instances=[],
        rollout_complete=True,
        update_domains_upgraded=[],
        last_upload_bytes=uploaded,
        summary="",
    )


def _probe(args: VmRoleArgs) -> tuple[Probe, str]:
    """The probe and the endpoint it targets: the definition's probe, else the first endpoint."""
    probe = args.probe or ProbeArgs(protocol=args.endpoints[0].protocol)
    port = probe.port or args.endpoints[0].port
    endpoint = next((e.name for e in args.endpoints if e.port == port), args.endpoints[0].name)
    return Probe(
        probe.protocol, probe.path, probe.interval_seconds, probe.timeout_seconds
    ), endpoint


def _settings_digest(args: VmRoleArgs) -> str:
    """What an instance is started with besides its disk: a change means a rolling restart."""
    settings = {"vmSize": args.vm_size, "endpoints": [e.wire() for e in args.endpoints]}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _start_instance(host: Host, args: VmRoleArgs, index: int, layer: LayerState) -> InstanceState:
    name = f"{args.name}-{index}"
    _drop_instance(host, args.pool, name)  # reimage: whatever was left of it goes
    backing = VolumeInfo(
        pool=args.pool,
        name=layer.volume,
        path=layer.path,
        format=layer.format,
        capacity=layer.virtual_size,
        allocation=0,
    )
    overlay = host.create_overlay(args.pool, f"{name}.qcow2", backing, layer.virtual_size)
    ports = {endpoint.name: free_loopback_port() for endpoint in args.endpoints}
    size = lookup_vm_size(args.vm_size)
    domain = update_domain_of(index, args.update_domain_count)
    host.define_domain(
        DomainSpec(
            name=name,
            domain_type=detect_accelerator().domain_type,
            vcpus=size.vcpus,
            memory_mib=size.memory_mib,
            disk_path=overlay.path,
            serial_log=f"{SERIAL_LOG_DIR}/{name}-serial.log",
            forwards=tuple(
                PortForward(host_port=ports[e.name], guest_port=e.port) for e in args.endpoints
            ),
            metadata={"role": args.name, "updateDomain": str(domain), "layer": layer.volume},
        )
    )
    host.start_domain(name)
    urls = [f"{e.protocol}://{LOOPBACK}:{ports[e.name]}/" for e in args.endpoints]
    return InstanceState(
        name=name,
        update_domain=domain,
        host=host.uri,
        address=LOOPBACK,
        ports=ports,
        urls=urls,
        layer=layer.volume,
        settings=_settings_digest(args),
        started_at=time.time(),
    )


def _remove_what_create_made(host: Host, args: VmRoleArgs) -> None:
    """A failed create leaves nothing behind: these are the only names it uses."""
    for index in range(args.instance_count):
        _drop_instance(host, args.pool, f"{args.name}-{index}")
    base = _layer_name(args, 0, "vpc")
    host.delete_volume(args.pool, _manifest_volume(base))
    host.delete_volume(args.pool, base)


def _instance_names_on_host(host: Host, state: VmRoleState) -> set[str]:
    """The instances in state, and any whose overlay outlived a refresh that dropped them."""
    pattern = re.compile(rf"^({re.escape(state.name)}-\d+)\.qcow2$")
    leftovers = {m.group(1) for v in host.volume_names(state.pool) if (m := pattern.match(v))}
    return {instance.name for instance in state.instances} | leftovers


def _drop_instance(host: Host, pool: str, name: str) -> None:
    host.delete_domain(name)
    host.delete_volume(pool, f"{name}.qcow2")


def _instance_alive(host: Host, pool: str, instance: InstanceState) -> bool:
    domain = host.domain(instance.name)
    return domain is not None and host.volume(pool, f"{instance.name}.qcow2") is not None


def _gate(args: VmRoleArgs, instances: list[InstanceState]) -> list[InstanceState]:
    """Wait for each instance to answer its probe; returns them with their boot-to-healthy time."""
    probe, endpoint = _probe(args)
    healthy = []
    for instance in instances:
        answer: ProbeAnswer = wait_healthy(
            instance.address, instance.ports[endpoint], probe, args.health_timeout_seconds
        )
        if not answer.healthy:
            target = f"{probe.protocol} {instance.address}:{instance.ports[endpoint]}{probe.path}"
            raise GateFailed(
                f"instance {instance.name} (update domain {instance.update_domain}) failed its "
                f"health probe {target} for {args.health_timeout_seconds:.0f} s; last answer: "
                f"{answer.answer}"
            )
        seconds = round(time.time() - instance.started_at, 1)
        healthy.append(instance.model_copy(update={"healthy_after_seconds": seconds}))
    return healthy


def _index(instance_name: str) -> int:
    return int(instance_name.rsplit("-", 1)[1])


def _with_instances(state: VmRoleState, instances: Iterable[InstanceState]) -> VmRoleState:
    return state.model_copy(update={"instances": sorted(instances, key=lambda i: _index(i.name))})


def _scale(host: Host, args: VmRoleArgs, state: VmRoleState) -> VmRoleState:
    """Start missing instances on the top layer, drop those past the count, behind the gate."""
    top = state.layers[-1]
    kept = {_index(i.name): i for i in state.instances}
    dropped = [kept.pop(index) for index in sorted(kept) if index >= args.instance_count]
    for instance in dropped:
        _drop_instance(host, args.pool, instance.name)
    started = [
        _start_instance(host, args, index, top)
        for index in range(args.instance_count)
        if index not in kept
    ]
    state = _with_instances(state, [*kept.values(), *started])
    try:
        healthy = _gate(args, started)
    except GateFailed as exc:
        raise PartialFailure(state, str(exc)) from exc
    state = _with_instances(state, [*kept.values(), *healthy])
    if started or dropped:
        summary = f"{state.summary}; instances: {len(state.instances)}".lstrip("; ")
        state = state.model_copy(update={"summary": summary})
    return state


def _roll_out(host: Host, args: VmRoleArgs, state: VmRoleState, layer: LayerState) -> VmRoleState:
    """Move instances onto `layer` and the current settings, one wave (update domain) at a time,
    each behind the gate."""
    settings = _settings_digest(args)
    placements = [
        (i.name, i.update_domain)
        for i in state.instances
        if i.layer != layer.volume or i.settings != settings
    ]
    waves = rollout_waves(placements, args.upgrade_mode, args.manual_upgrade_domain)
    instances = {i.name: i for i in state.instances}
    reached: list[int] = []
    for wave in waves:
        moved = [_start_instance(host, args, _index(name), layer) for name in wave.instances]
        instances.update({i.name: i for i in moved})
        reached.extend(wave.update_domains)
        try:
            instances.update({i.name: i for i in _gate(args, moved)})
        except GateFailed as exc:
            current = _with_progress(state, instances, reached, complete=False, layer=layer)
            raise PartialFailure(current, f"rollout stopped: {exc}") from exc
    pending = [i for i in instances.values() if i.layer != layer.volume or i.settings != settings]
    return _with_progress(state, instances, reached, complete=not pending, layer=layer)


def _with_progress(
    state: VmRoleState,
    instances: dict[str, InstanceState],
    reached: list[int],
    complete: bool,
    layer: LayerState,
) -> VmRoleState:
    ordered = sorted(instances.values(), key=lambda i: _index(i.name))
    summary = (
        f"image {layer.volume}: {layer.blocks_changed} blocks changed, "
        f"{state.last_upload_bytes} bytes uploaded; update domains "
        f"{', '.join(map(str, reached)) or 'none'} upgraded"
    )
    return state.model_copy(
        update={
            "instances": ordered,
            "update_domains_upgraded": reached,
            "rollout_complete": complete,
            "summary": summary,
        }
    )
