"""Web and Worker roles on the fabric: a package run by the guest agent on an OS we supply.

On the host a role is: the guest OS image chain (`<role>-os-l0.vhd`, then one qcow2 layer per
newer OS version: `_layers.ImageChain`), one package medium per package version
(`<role>-pkg-<sha>.raw`, shared by every instance), and instances (`<role>-<i>`) on the
service network, each on its own overlay of the OS, with its configuration medium
(`<role>-<i>-config-<generation>.raw`, a cdrom) and the agent's status channel.

What changes decides what moves (docs/guest.md):
- a new OS version, VM size or input endpoints: instances are reimaged, update domain by
  update domain, onto the newest OS layer, keeping package and settings;
- a new package: its medium is uploaded once, then update domain by update domain each
  instance's media are swapped and its agent restarts the role on it (no reboot);
- settings, environment or topology only: a new configuration medium, in place; the agent
  signals the role (or recycles it when the role asks).
Every move waits for the agent's `ready` on the new package and configuration (a `failed`
report stops the rollout with the agent's reason), then for the role's probe if it has one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .. import progress as report
from ..files import sha256_of_file
from ..model import Model, ModelError, diff_packages, read_package
from ..virt import AttachedDisk, Host, HypervisorError, VolumeInfo
from ._guest import (
    STATUS_CHANNEL,
    AgentGate,
    configuration_medium,
    document_digest,
    package_medium,
    program_digest,
)
from ._health import Probe
from ._instances import (
    Attachments,
    Endpoint,
    Instance,
    InstanceTemplate,
    RoleSpec,
    ServiceNetwork,
    drop_instance,
    instance_index,
    instance_names_on_host,
    observed_instances,
    start_instance,
)
from ._layers import ImageChain, Layer, needed_by
from ._placement import rollout_waves
from ._rollout import HealthGate, Progress, RecordedGate, roll, scale
from ._rotation import Rotation, leaving_in_turn
from ._scans import scan_release
from .errors import FabricError, RolloutStopped


class StartupTask(Model):
    command_line: str = Field(min_length=1, description="Command, run in the package root.")
    execution_context: Literal["limited", "elevated"] = Field(
        default="limited", description="limited (the role's user) or elevated (root)."
    )
    task_type: Literal["simple", "background", "foreground"] = Field(
        default="simple", description="simple (must exit 0 first), background or foreground."
    )


class LocalStorage(Model):
    name: str = Field(description="Local storage name.")
    size_mb: int = Field(default=100, ge=1, description="Size in MB.")
    clean_on_role_recycle: bool = Field(default=True, description="Emptied when the role restarts.")


class RoleCertificate(Model):
    """A certificate the role defines, filled from the stack's secrets by its thumbprint."""

    name: str = Field(description="Certificate name, as the role defines it.")
    store_name: str = Field(default="My", description="Store name: My, Root, CA, ...")
    permission_level: Literal["limitedOrElevated", "elevated"] = Field(
        default="limitedOrElevated", description="Who may read the key: the role, or root only."
    )
    thumbprint: str = Field(description="SHA-1 thumbprint (hex), as the configuration says.")
    pem: str = Field(description="The certificate and its key, PEM.")

    def actual_thumbprint(self) -> str | None:
        """The SHA-1 of the first certificate in `pem` (its DER), or None when there is none."""
        match = re.search(
            r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", self.pem, re.DOTALL
        )
        if match is None:
            return None
        try:
            der = base64.b64decode("".join(match.group(1).split()), validate=True)
        except ValueError:
            return None
        return hashlib.sha1(der).hexdigest()  # noqa: S324 - what Azure's thumbprints are


class PackageRoleSpec(RoleSpec):
    """What a Web or Worker role is asked to be."""

    service: str = Field(description="The service's name, as in its definition.")
    role: str = Field(description="The role's name, as in the service definition.")
    package: str = Field(description="Absolute path of the role's package (.cspkg).")
    package_sha256: str | None = Field(default=None, description="Filled in by the provider.")
    os_family: str = Field(default="debian-12", description="Guest OS family.")
    os_version: str = Field(default="*", description='Guest OS version; "*" is the newest.')
    os_resolved: str | None = Field(
        default=None,
        description="The OS version osVersion chose (family/version): by the provider.",
    )
    os_image: str | None = Field(default=None, description="That version's image: by the provider.")
    os_image_sha256: str | None = Field(default=None, description="Its SHA-256: by the provider.")
    endpoints: list[Endpoint] = Field(
        default_factory=list, description="Input endpoints: answered at each instance's address."
    )
    probe: Probe | None = Field(
        default=None, description="Health probe; without one, ready is what the agent reports."
    )
    entry_point: str | None = Field(
        default=None, description="Command line of the role; default the package's."
    )
    set_ready_on_process_start: bool = Field(
        default=False, description="Ready as soon as the entry point's process starts."
    )
    execution_context: Literal["limited", "elevated"] = Field(
        default="limited", description="The entry point runs as the role's user, or as root."
    )
    startup_tasks: list[StartupTask] = Field(
        default_factory=list, description="Run in order before the role; default the package's."
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Environment variables of the role's processes."
    )
    local_storage: list[LocalStorage] = Field(
        default_factory=list, description="Local scratch directories."
    )
    settings: dict[str, str] = Field(default_factory=dict, description="Setting values.")
    secret_settings: dict[str, str] = Field(
        default_factory=dict,
        description="Setting values that are secrets: secret in state, masked in previews.",
        json_schema_extra={"secret": True},
    )
    certificates: list[RoleCertificate] = Field(
        default_factory=list,
        description="Certificates installed on each instance: secret in state, never shown.",
        json_schema_extra={"secret": True},
    )
    on_configuration_change: Literal["signal", "recycle"] = Field(
        default="signal", description="signal (SIGHUP) or recycle the role on a setting change."
    )
    topology: str = Field(
        default="{}", description="JSON: every role's instances and endpoints (by the component)."
    )

    @model_validator(mode="after")
    def _on_the_service_network(self) -> PackageRoleSpec:
        if self.network is None or self.cidr is None:
            raise ValueError(
                "a Web or Worker role sits on the service network: give network and cidr"
            )
        return self

    def sha256(self) -> str:
        return self.package_sha256 or sha256_of_file(self.package)

    def package_volume_name(self) -> str:
        """The package's medium on the host: one per package version, shared by instances."""
        return f"{self.name}-pkg-{self.sha256()[:16]}.raw"

    def os_image_path(self) -> str:
        if not self.os_image or not self.os_image_sha256:
            raise FabricError(
                f"role {self.role}: no guest OS image resolved for {self.os_family}/"
                f"{self.os_version}; run `cloudservice os build`"
            )
        return self.os_image

    def machine_digest(self) -> str:
        """What an instance's machine is made with besides the OS: a change reimages it."""
        machine = {"vmSize": self.vm_size, "endpoints": [e.wire() for e in self.endpoints]}
        return hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:16]

    def document(self, index: int, generation: int, package_size: int) -> dict[str, Any]:
        """The configuration document of instance `index` (docs/guest.md)."""
        document: dict[str, Any] = {
            "generation": generation,
            "service": self.service,
            "role": self.role,
            "instanceId": f"{self.role}_IN_{index}",
            "instanceIndex": index,
            "updateDomain": index % self.update_domain_count,
            "faultDomain": 0,
            "osVersion": self.os_resolved or "",
            "package": {"sha256": self.sha256(), "size": package_size},
            "executionContext": self.execution_context,
            "environment": self.environment,
            "settings": {**self.settings, **self.secret_settings},
            "certificates": [
                {
                    "name": c.name,
                    "storeName": c.store_name,
                    "permissionLevel": c.permission_level,
                    "thumbprint": c.thumbprint.lower(),
                    "pem": c.pem,
                }
                for c in self.certificates
            ],
            "localStorage": [item.wire() for item in self.local_storage],
            "onConfigurationChange": self.on_configuration_change,
            "topology": json.loads(self.topology),
        }
        if self.entry_point:
            document["entryPoint"] = {
                "commandLine": self.entry_point,
                "setReadyOnProcessStart": self.set_ready_on_process_start,
            }
        if self.startup_tasks:
            document["startupTasks"] = [task.wire() for task in self.startup_tasks]
        return document

    def gate(self, host: Host) -> AgentGate:
        probe = None
        if self.endpoints:
            probe = HealthGate.for_role(self.endpoints, self.probe, self.health_timeout_seconds)
        return AgentGate(host, self.sha256(), self.health_timeout_seconds, then=probe)


class PackageRoleDeployment(Model):
    """What runs on the host for a Web or Worker role."""

    layers: list[Layer] = Field(description="The guest OS image chain, base first.")
    packages: list[str] = Field(description="Package media on the host (volume names).")
    instances: list[Instance] = Field(description="The role's instances.")
    rollout_complete: bool = Field(description="False after a failed health gate.")
    update_domains_upgraded: list[int] = Field(
        description="Update domains the last change reached, in order."
    )
    last_upload_bytes: int = Field(description="Bytes streamed to the host by the last change.")
    last_upload_seconds: float = Field(
        default=0.0, description="Seconds the last change spent uploading (OS layer, package)."
    )
    summary: str = Field(description="What the last change did, in service terms.")


class PackageRole:
    """The fabric's operations on one Web or Worker role of one host."""

    def __init__(self, host: Host, spec: PackageRoleSpec) -> None:
        self.host, self.spec = host, spec
        self.chain = ImageChain(host, spec.pool, f"{spec.name}-os")
        network = spec.service_network()
        assert network is not None  # the spec's validator
        self.network: ServiceNetwork = network
        self.rotation = Rotation(spec.front_door)
        self.sha256 = spec.sha256()
        self.machine = spec.machine_digest()
        self._package_pattern = re.compile(rf"^{re.escape(spec.name)}-pkg-[0-9a-f]+\.raw$")

    # -- deploy / observe / remove -------------------------------------------------------------

    def deploy(self) -> PackageRoleDeployment:
        """First deploy: OS image and package to the host, then the instances behind gates
        (what an interrupted first deploy left is adopted or replaced). A failure before any
        instance runs leaves nothing behind."""
        nothing = PackageRoleDeployment(
            layers=[],
            packages=[],
            instances=[],
            rollout_complete=True,
            update_domains_upgraded=[],
            last_upload_bytes=0,
            summary="",
        )
        try:
            return self.change(nothing)
        except RolloutStopped:
            raise
        except BaseException:
            self.remove(nothing)
            raise

    def observe(
        self, deployment: PackageRoleDeployment, repair: bool = False
    ) -> PackageRoleDeployment:
        """The deployment as the host has it, read back from its records (an interrupted run's
        starts and uploads included); with `repair`, half-done leftovers are deleted."""
        pool = self.spec.pool
        layers = self.chain.reconcile(deployment.layers, repair)
        instances = observed_instances(
            self.host,
            pool,
            self.spec.name,
            [layer.volume for layer in layers],
            deployment.instances,
        )
        packages = [p for p in self.host.volume_names(pool) if self._package_pattern.match(p)]
        live = deployment.model_copy(
            update={"instances": instances, "layers": layers, "packages": packages}
        )
        return live.model_copy(update={"rollout_complete": not self.needs_rollout(live)})

    def remove(self, deployment: PackageRoleDeployment) -> None:
        """Delete the role's instances, packages and OS layers, recorded or left over."""
        pool, prefix = self.spec.pool, self.spec.name
        recorded = [i.name for i in deployment.instances]
        for name in instance_names_on_host(self.host, pool, prefix, recorded, self.chain.owns):
            drop_instance(self.host, pool, name, self.network)
        for volume in self.host.volume_names(pool):
            if self._package_pattern.match(volume):
                self.host.delete_volume(pool, volume)
        self.chain.remove(deployment.layers)

    # -- change --------------------------------------------------------------------------------

    def needs_rollout(self, deployment: PackageRoleDeployment) -> bool:
        top = self._os_layer_of(deployment)
        return not deployment.rollout_complete or any(
            self._move(i, top) for i in deployment.instances
        )

    def change(self, deployment: PackageRoleDeployment) -> PackageRoleDeployment:
        """Bring the instances, as the host has them, to the spec (OS, machine, package,
        configuration), update domain by update domain, then scale to the instance count."""
        deployment = self.observe(deployment, repair=True)
        if self.needs_rollout(deployment) or not self._os_layer_of(deployment):
            deployment = self._rollout(deployment)
        deployment = self._scale(deployment)
        return self._collect(deployment)

    def preview(self, deployment: PackageRoleDeployment, old: PackageRoleSpec) -> str:
        """The change in service terms, for `pulumi preview --diff`, without side effects."""
        spec, parts = self.spec, []
        if old.os_resolved != spec.os_resolved:
            parts.append(f"os: {old.os_resolved} -> {spec.os_resolved}")
        if old.sha256() != self.sha256:
            parts.append(f"package: {self._package_changes(old)}")
        changed = _changed(old.settings, spec.settings)
        secret = _changed(old.secret_settings, spec.secret_settings)
        if changed or secret:
            shown = [*changed, *(f"{name} (secret, value masked)" for name in secret)]
            parts.append(f"settings changed: {', '.join(shown)}")
        if certificates := _changed(_thumbprints(old), _thumbprints(spec)):
            parts.append(f"certificates changed: {', '.join(certificates)}")
        if self.needs_rollout(deployment) or parts:
            moving = [(i.name, i.update_domain) for i in deployment.instances]
            waves = rollout_waves(moving, spec.upgrade_mode, spec.manual_update_domain)
            touched = ", ".join(str(d) for wave in waves for d in wave.update_domains)
            parts.append(f"update domains {touched or 'none'} ({spec.upgrade_mode})")
            if spec.front_door:
                top = self._os_layer_of(deployment)
                leaving = {i.name for i in deployment.instances if self._disrupts(i, top)}
                parts.append(leaving_in_turn(waves, leaving))
        if len(deployment.instances) != len(spec.instance_indexes()):
            parts.append(f"instances {len(deployment.instances)} -> {len(spec.instance_indexes())}")
        return "will: " + ("; ".join(parts) or "change nothing on the host")

    # -- internals -----------------------------------------------------------------------------

    def _os_sha256(self) -> str:
        return self.spec.os_image_sha256 or scan_release(self.spec.os_image_path()).sha256

    def _os_layer_of(self, deployment: PackageRoleDeployment) -> Layer | None:
        sha = self._os_sha256()
        return next((x for x in deployment.layers if x.image_sha256 == sha), None)

    @functools.cached_property
    def _package_volume(self) -> VolumeInfo:
        """The package's medium on the host: uploaded once per package version (and looked
        up once per operation, not once per instance)."""
        name = self.spec.package_volume_name()
        existing = self.host.volume(self.spec.pool, name)
        if existing is not None:
            return existing
        data = Path(self.spec.package).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise FabricError(f"package {self.spec.package} changed while it was being deployed")
        return self.host.upload_bytes(self.spec.pool, name, package_medium(data))

    def _document(self, instance: Instance) -> dict[str, Any]:
        """The instance's document as it should be now (its generation aside)."""
        return self.spec.document(instance_index(instance.name), 0, self._package_size)

    @functools.cached_property
    def _package_size(self) -> int:
        return Path(self.spec.package).stat().st_size

    def _move(self, instance: Instance, os_layer: Layer | None) -> bool:
        """Anything of the instance differs from the spec (OS, machine, package, document),
        or its last change was never confirmed healthy."""
        return (
            instance.healthy_after_seconds is None
            or self._reimages(instance, os_layer)
            or instance.package != self.sha256
            or instance.configuration != document_digest(self._document(instance))
        )

    def _reimages(self, instance: Instance, os_layer: Layer | None) -> bool:
        """A new OS or machine: the instance is started afresh."""
        return (
            os_layer is None
            or instance.layer != os_layer.volume
            or instance.settings != self.machine
        )

    def _disrupts(self, instance: Instance, os_layer: Layer | None) -> bool:
        """A reimage, or a restart of the role (a new package or program); settings and
        topology apply in place and keep the instance serving."""
        return (
            self._reimages(instance, os_layer)
            or instance.package != self.sha256
            or instance.program != program_digest(self._document(instance))
        )

    def _attach(self, name: str, index: int) -> Attachments:
        """Package and configuration media of an instance that starts now."""
        package = self._package_volume
        generation = time.time_ns() // 1_000_000
        document = self.spec.document(index, generation, self._package_size)
        config = self.host.upload_bytes(
            self.spec.pool, f"{name}-config-{generation}.raw", configuration_medium(document)
        )
        return Attachments(
            disks=(
                AttachedDisk(path=config.path, target="hdc", device="cdrom"),
                AttachedDisk(path=package.path, target="hdd", device="cdrom"),
            ),
            channels=(STATUS_CHANNEL,),
            package=self.sha256,
            configuration=document_digest(document),
            program=program_digest(document),
            generation=generation,
        )

    def _reconfigure(self, instance: Instance) -> Instance:
        """Swap a running instance's media to the current package and configuration."""
        name, pool = instance.name, self.spec.pool
        attachments = self._attach(name, instance_index(name))
        # The package first: the agent reads it when it sees the new configuration.
        for disk in sorted(attachments.disks, key=lambda d: d.target != "hdd"):
            self.host.change_media(name, disk)
        keep = {Path(disk.path).name for disk in attachments.disks}
        for volume in self.host.volume_names(pool):
            if volume.startswith(f"{name}-config-") and volume not in keep:
                self.host.delete_volume(pool, volume)
        return instance.model_copy(
            update={
                "package": attachments.package,
                "configuration": attachments.configuration,
                "program": attachments.program,
                "generation": attachments.generation,
            }
        )

    def _gate(self) -> RecordedGate:
        return RecordedGate(self.spec.gate(self.host), self.host, self.spec.name)

    def _template(self, layer: Layer) -> InstanceTemplate:
        spec = self.spec
        disk = layer.disk(spec.pool)
        return InstanceTemplate.of(spec, spec.endpoints, disk, self.machine, self._attach)

    def _rollout(self, deployment: PackageRoleDeployment) -> PackageRoleDeployment:
        streamed_before, started = self.host.bytes_uploaded, time.monotonic()
        layer, layers = self.chain.release(
            scan_release(self.spec.os_image_path()),
            self.spec.os_image_path(),
            deployment.layers,
            self.spec.max_chain_depth,
        )
        package = self._package_volume
        packages = sorted({*deployment.packages, package.name})
        uploading = round(time.monotonic() - started, 2)
        deployment = deployment.model_copy(
            update={"layers": layers, "packages": packages, "last_upload_seconds": uploading}
        )
        template = self._template(layer)

        def restart(instance: Instance) -> Instance:
            if self._reimages(instance, layer):
                return start_instance(self.host, template, instance_index(instance.name))
            return self._reconfigure(instance)

        try:
            progress = roll(
                deployment.instances,
                outdated=lambda i: self._move(i, layer),
                restart=restart,
                gate=self._gate(),
                mode=self.spec.upgrade_mode,
                manual_limit=self.spec.manual_update_domain,
                rotation=self.rotation,
                disrupts=lambda instance: self._disrupts(instance, layer),
            )
        except RolloutStopped as stopped:
            partial = self._progressed(deployment, stopped.state, streamed_before)
            raise RolloutStopped(str(stopped), partial) from stopped
        deployment = self._progressed(deployment, progress, streamed_before)
        report.summary(deployment.summary)
        return deployment

    def _progressed(
        self, deployment: PackageRoleDeployment, progress: Progress, streamed_before: int
    ) -> PackageRoleDeployment:
        reached = ", ".join(map(str, progress.update_domains)) or "none"
        uploaded = self.host.bytes_uploaded - streamed_before
        summary = (
            f"os {self.spec.os_resolved}, package {self.sha256[:12]}: {uploaded} bytes "
            f"uploaded; update domains {reached} upgraded"
        )
        return deployment.model_copy(
            update={
                "instances": progress.instances,
                "update_domains_upgraded": progress.update_domains,
                "rollout_complete": progress.complete,
                "last_upload_bytes": uploaded,
                "summary": summary,
            }
        )

    def _scale(self, deployment: PackageRoleDeployment) -> PackageRoleDeployment:
        layer = self._os_layer_of(deployment) or deployment.layers[-1]
        template = self._template(layer)
        try:
            instances, changed = scale(
                deployment.instances,
                self.spec.instance_indexes(),
                start=lambda index: start_instance(self.host, template, index),
                drop=lambda i: drop_instance(self.host, self.spec.pool, i.name, self.network),
                gate=self._gate(),
                rotation=self.rotation,
            )
        except RolloutStopped as stopped:
            partial = deployment.model_copy(update={"instances": stopped.state})
            raise RolloutStopped(str(stopped), partial) from stopped
        deployment = deployment.model_copy(update={"instances": instances})
        if changed:
            summary = f"{deployment.summary}; instances: {len(instances)}".lstrip("; ")
            deployment = deployment.model_copy(update={"summary": summary})
        return deployment

    def _collect(self, deployment: PackageRoleDeployment) -> PackageRoleDeployment:
        """Once every instance has moved: drop OS layers and packages no instance uses."""
        if not deployment.rollout_complete:
            return deployment
        current = self._os_layer_of(deployment)
        tops = [i.layer for i in deployment.instances] + ([current.volume] if current else [])
        layers = self.chain.keep(deployment.layers, needed_by(deployment.layers, tops))
        used = {self.spec.package_volume_name()}
        for name in set(deployment.packages) - used:
            self.host.delete_volume(self.spec.pool, name)
        return deployment.model_copy(update={"layers": layers, "packages": sorted(used)})

    def _package_changes(self, old: PackageRoleSpec) -> str:
        """Files added, removed and changed against the package on the host."""
        new_manifest = read_package(self.spec.package).manifest
        name = old.package_volume_name()
        with tempfile.TemporaryDirectory(prefix="cs-package-") as work:
            previous = Path(work) / "previous.cspkg"
            try:
                with previous.open("wb") as sink:
                    self.host.download_volume(old.pool, name, sink)
                # gzip reads past the medium's NUL padding
                old_manifest = read_package(previous).manifest
            except (HypervisorError, ModelError, OSError):  # gone: say what is known
                return f"{old.sha256()[:12]} -> {self.sha256[:12]}"
        changes = diff_packages(old_manifest, new_manifest)
        files = changes.listing()
        return changes.summary() + (f": {files}" if files else "")


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys whose value differs (added, removed or changed), sorted."""
    return sorted(key for key in {*old, *new} if old.get(key) != new.get(key))


def _thumbprints(spec: PackageRoleSpec) -> dict[str, str]:
    return {c.name: c.thumbprint.lower() for c in spec.certificates}
