"""A VM Role on the fabric: a whole `.vhd` run as it is, on instances over update domains.

On the host a role is an image chain (`_layers.ImageChain`) plus instances (`<role>-<i>`, each
on its own scratch overlay of a layer, in update domain i mod updateDomainCount). A new release
or new instance settings roll out one update domain at a time behind health gates
(`_rollout`); a failed gate stops the rollout and raises RolloutStopped carrying the deployment
as it is, and the next change carries on, or rolls back when given the previous image.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import Field

from .. import progress as report
from .. import vhd
from ..model import ChangeKind, Model, properties_of_kind
from ..virt import Host
from ._health import Probe
from ._instances import (
    Endpoint,
    Instance,
    InstanceTemplate,
    RoleSpec,
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
from ._scans import Scan, scan_release
from .errors import RolloutStopped


class VmRoleSpec(RoleSpec):
    """What a VM role is asked to be."""

    image: str = Field(
        description="Absolute path of the role's .vhd: fixed, dynamic, or a "
        "differencing disk whose parent is the image deployed now."
    )
    image_sha256: str | None = Field(default=None, description="Filled in by the provider.")
    endpoints: list[Endpoint] = Field(
        default_factory=lambda: [Endpoint()],
        min_length=1,
        description="Input endpoints; each is forwarded from a port on the host's loopback.",
    )
    probe: Probe | None = Field(
        default=None, description="Health probe; default: GET / on the first endpoint."
    )

    def sha256(self) -> str:
        return self.image_sha256 or scan_release(self.image).sha256

    def settings_digest(self) -> str:
        """What an instance starts with besides its disk: the properties whose change is a
        rolling upgrade (the image aside: it is the instance's layer)."""
        wire = self.wire()
        rolling = properties_of_kind(ChangeKind.ROLLING_UPGRADE)
        upgrade = [p for p in rolling if p in wire and "image" not in p]
        settings = {name: wire.get(name) for name in upgrade}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def gate(self) -> HealthGate:
        return HealthGate.for_role(self.endpoints, self.probe, self.health_timeout_seconds)


class VmRoleDeployment(Model):
    """What runs on the host for a VM role."""

    layers: list[Layer] = Field(description="The image chain, base first.")
    instances: list[Instance] = Field(description="The role's instances.")
    rollout_complete: bool = Field(description="False after a failed health gate.")
    update_domains_upgraded: list[int] = Field(
        description="Update domains the last release reached, in order."
    )
    last_upload_bytes: int = Field(description="Bytes streamed to the host by the last release.")
    summary: str = Field(description="What the last change did, in service terms.")


class VmRole:
    """The fabric's operations on one VM role of one host."""

    def __init__(self, host: Host, spec: VmRoleSpec) -> None:
        self.host, self.spec = host, spec
        self.chain = ImageChain(host, spec.pool, spec.name)
        self.network = spec.service_network()
        self.rotation = Rotation(spec.front_door)
        # Once per operation: the image's digest may mean reading the whole file.
        self.sha256 = spec.sha256()
        self.settings = spec.settings_digest()

    # -- deploy / observe / remove -------------------------------------------------------------

    def deploy(self) -> VmRoleDeployment:
        """First deploy: the image to the host, the instances behind their gates (what an
        interrupted first deploy left is adopted or replaced). A failure before any instance
        runs leaves nothing behind."""
        nothing = VmRoleDeployment(
            layers=[],
            instances=[],
            rollout_complete=True,
            update_domains_upgraded=[],
            last_upload_bytes=0,
            summary="",
        )
        try:
            return self.change(nothing, ChangeKind.ROLLING_UPGRADE)
        except RolloutStopped:
            raise  # the role exists, some instance is unhealthy: the caller records it
        except BaseException:
            self.remove(nothing)
            raise

    def observe(self, deployment: VmRoleDeployment, repair: bool = False) -> VmRoleDeployment:
        """The deployment as the host has it: its layers and running instances, read back from
        their records (an interrupted run's included). With `repair`, what an interrupted run
        left half done is deleted."""
        layers = self.chain.reconcile(deployment.layers, repair)
        instances = observed_instances(
            self.host,
            self.spec.pool,
            self.spec.name,
            [layer.volume for layer in layers],
            deployment.instances,
        )
        live = deployment.model_copy(update={"instances": instances, "layers": layers})
        return live.model_copy(update={"rollout_complete": not self.needs_rollout(live)})

    def remove(self, deployment: VmRoleDeployment) -> None:
        """Delete the role's instances and layers, recorded or left by an interrupted run."""
        pool = self.spec.pool
        recorded = [i.name for i in deployment.instances]
        for name in instance_names_on_host(
            self.host, pool, self.spec.name, recorded, self.chain.owns
        ):
            drop_instance(self.host, pool, name, self.network)
        self.chain.remove(deployment.layers)

    # -- change --------------------------------------------------------------------------------

    def needs_rollout(self, deployment: VmRoleDeployment) -> bool:
        """A new image, instances started with other settings or never confirmed healthy, or
        a rollout left unfinished."""
        return not deployment.rollout_complete or any(
            self._outdated(i, self._release_volume(deployment)) for i in deployment.instances
        )

    def change(self, deployment: VmRoleDeployment, kind: ChangeKind | None) -> VmRoleDeployment:
        """Apply a change of `kind` (the planner's verdict) to the role as the host has it:
        roll out when it is a rolling upgrade or the host differs from the spec, then scale to
        the instance count."""
        deployment = self.observe(deployment, repair=True)
        if kind is ChangeKind.ROLLING_UPGRADE or self.needs_rollout(deployment):
            deployment = self._release(deployment)
        return self._scale(deployment)

    def preview(self, deployment: VmRoleDeployment) -> str:
        """The change in service terms, for `pulumi preview --diff`, computed without side
        effects: blocks and bytes to upload, update domains that roll, instance counts."""
        parts = []
        restart = any(i.settings != self.settings for i in deployment.instances)
        if self.needs_rollout(deployment):
            parts.append(
                self.chain.preview(
                    self._scan(), self.spec.image, deployment.layers, self.spec.max_chain_depth
                )
            )
            if restart:
                parts.append("restart on the VM size, endpoints and probe given")
            moving = [(i.name, i.update_domain) for i in deployment.instances]
            waves = rollout_waves(moving, self.spec.upgrade_mode, self.spec.manual_update_domain)
            touched = ", ".join(str(d) for wave in waves for d in wave.update_domains)
            parts.append(f"update domains {touched or 'none'} ({self.spec.upgrade_mode})")
            if self.spec.front_door:
                parts.append(leaving_in_turn(waves, {name for name, _ in moving}))
        wanted = len(self.spec.instance_indexes())
        if len(deployment.instances) != wanted:
            parts.append(f"instances {len(deployment.instances)} -> {wanted}")
        return "will: " + ("; ".join(parts) or "change settings only")

    # -- internals -----------------------------------------------------------------------------

    def _scan(self) -> Scan:
        """The release image as scanned: the one the preview showed, or an error."""
        scanned = scan_release(self.spec.image)
        if scanned.sha256 != self.sha256:
            raise vhd.ImageUsageError(
                f"{self.spec.image} changed after `pulumi up` checked it (its SHA-256 is now"
                f" {scanned.sha256[:12]}, not {self.sha256[:12]}): run the `up` again"
            )
        return scanned

    def _release_volume(self, deployment: VmRoleDeployment) -> str | None:
        return next((x.volume for x in deployment.layers if x.image_sha256 == self.sha256), None)

    def _outdated(self, instance: Instance, release: str | None) -> bool:
        return (
            instance.layer != release
            or instance.settings != self.settings
            or instance.healthy_after_seconds is None  # started, never confirmed
        )

    def _gate(self) -> RecordedGate:
        return RecordedGate(self.spec.gate(), self.host, self.spec.name)

    def _template(self, layer: Layer) -> InstanceTemplate:
        spec = self.spec
        return InstanceTemplate.of(spec, spec.endpoints, layer.disk(spec.pool), self.settings)

    def _release(self, deployment: VmRoleDeployment) -> VmRoleDeployment:
        """Find or upload the release's layer, then roll instances onto it."""
        streamed_before = self.host.bytes_uploaded
        layer, layers = self.chain.release(
            self._scan(), self.spec.image, deployment.layers, self.spec.max_chain_depth
        )
        deployment = deployment.model_copy(
            update={
                "layers": layers,
                # the layer and its manifest, as streamed
                "last_upload_bytes": self.host.bytes_uploaded - streamed_before,
            }
        )
        template = self._template(layer)
        try:
            progress = roll(
                deployment.instances,
                outdated=lambda i: self._outdated(i, layer.volume),
                restart=lambda i: start_instance(self.host, template, instance_index(i.name)),
                gate=self._gate(),
                mode=self.spec.upgrade_mode,
                manual_limit=self.spec.manual_update_domain,
                rotation=self.rotation,
            )
        except RolloutStopped as stopped:
            progress = stopped.state
            partial = self._progressed(deployment, progress, layer)
            raise RolloutStopped(str(stopped), partial) from stopped
        deployment = self._progressed(deployment, progress, layer)
        report.summary(deployment.summary)
        if not deployment.rollout_complete:
            return deployment
        needed = needed_by(layers, [layer.volume, *(i.layer for i in deployment.instances)])
        return deployment.model_copy(update={"layers": self.chain.keep(layers, needed)})

    @staticmethod
    def _progressed(
        deployment: VmRoleDeployment, progress: Progress, layer: Layer
    ) -> VmRoleDeployment:
        reached = ", ".join(map(str, progress.update_domains)) or "none"
        summary = (
            f"image {layer.volume}: {layer.blocks_changed} blocks changed, "
            f"{deployment.last_upload_bytes} bytes uploaded; update domains {reached} upgraded"
        )
        return deployment.model_copy(
            update={
                "instances": progress.instances,
                "update_domains_upgraded": progress.update_domains,
                "rollout_complete": progress.complete,
                "summary": summary,
            }
        )

    def _scale(self, deployment: VmRoleDeployment) -> VmRoleDeployment:
        """Start missing instances on the top layer, drop those past the count, behind the gate."""
        template = self._template(deployment.layers[-1])
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
