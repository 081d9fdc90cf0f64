"""`CloudService`: a whole service from its definition, configuration and role packages.

The program hands over a `ServiceSpec` (see docs/model.md); the component validates it the
way the fabric would, then declares one `VmRole` per VM role. Its outputs give every instance's
name, host, update domain and endpoint URLs, and each role's image chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
from cloudservice.model import (
    ModelError,
    RoleDefinition,
    ServiceDefinition,
    ServiceSpec,
    validate_service,
)
from pulumi_cloudservice import EndpointArgs, ProbeArgs, VmRole


def _endpoints(role: RoleDefinition) -> list[EndpointArgs]:
    return [
        EndpointArgs(
            name=endpoint.name,
            protocol="http" if endpoint.protocol in ("http", "https") else "tcp",
            port=endpoint.local_port or endpoint.port,
        )
        for endpoint in role.input_endpoints
    ]


def _probe(definition: ServiceDefinition, role: RoleDefinition) -> ProbeArgs | None:
    """The load balancer probe of the role's first endpoint that names one."""
    names = [e.load_balancer_probe for e in role.input_endpoints if e.load_balancer_probe]
    probes = {probe.name: probe for probe in definition.load_balancer_probes}
    if not names or names[0] not in probes:
        return None
    probe = probes[names[0]]
    endpoint = next(e for e in role.input_endpoints if e.load_balancer_probe == names[0])
    return ProbeArgs(
        protocol=probe.protocol,
        path=probe.path or "/",
        port=probe.port or endpoint.local_port or endpoint.port,
        # Azure's timeoutInSeconds is how long a silent instance stays in rotation; one probe
        # must simply answer within the interval.
        interval_seconds=probe.interval_in_seconds,
        timeout_seconds=probe.interval_in_seconds,
    )


def _volumes(layers: list[dict[str, Any]]) -> list[str]:
    # Nested outputs reach apply() as plain dicts of the schema's (camelCase) names.
    return [layer["volume"] for layer in layers]


class CloudService(pulumi.ComponentResource):
    """A cloud service on a libvirt host: one `VmRole` per VM role of `spec`.

    `images` and `instance_counts` override the spec per role, for what differs per stack.
    """

    roles: dict[str, VmRole]
    instances: pulumi.Output[list[dict[str, Any]]]
    image_chains: pulumi.Output[dict[str, list[str]]]

    def __init__(
        self,
        name: str,
        spec: ServiceSpec,
        *,
        pool: pulumi.Input[str],
        prefix: str,
        base_dir: Path,
        images: Mapping[str, str] | None = None,
        instance_counts: Mapping[str, int] | None = None,
        manual_update_domain: int | None = None,
        health_timeout_seconds: float | None = None,
        max_chain_depth: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("cloudservice:index:CloudService", name, None, opts)
        try:
            validate_service(spec)
        except ModelError as exc:
            # A RunError is shown as one message, without a Python traceback.
            raise pulumi.RunError(f"service {spec.definition.name}: {exc}") from exc
        # Per-stack overrides: a release's image, an environment's instance count.
        counts = {role.name: role.instances for role in spec.configuration.roles}
        counts.update(instance_counts or {})
        images = {name: a.image for name, a in spec.artifacts.items() if a.image} | dict(
            images or {}
        )
        self.roles = {}
        for role in spec.definition.roles:
            if role.kind != "vm":
                message = f"role {role.name}: only VM roles run on this fabric so far"
                pulumi.log.warn(message, self)
                continue
            image = Path(images.get(role.name, ""))
            optional = {
                "manual_update_domain": manual_update_domain,
                "health_timeout_seconds": health_timeout_seconds,
                "max_chain_depth": max_chain_depth,
                "probe": _probe(spec.definition, role),
            }
            self.roles[role.name] = VmRole(
                f"{name}-{role.name}",
                name=f"{prefix}-{role.name.lower()}",
                pool=pool,
                image=str(image if image.is_absolute() else (base_dir / image).resolve()),
                instance_count=counts[role.name],
                vm_size=role.vm_size,
                update_domain_count=spec.definition.update_domain_count,
                upgrade_mode=spec.configuration.upgrade_mode,
                endpoints=_endpoints(role),
                **{key: value for key, value in optional.items() if value is not None},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.instances = pulumi.Output.all(*[role.instances for role in self.roles.values()]).apply(
            lambda groups: [instance for group in groups for instance in group]
        )
        names = list(self.roles)
        self.image_chains = pulumi.Output.all(*[r.layers for r in self.roles.values()]).apply(
            lambda chains: dict(zip(names, map(_volumes, chains), strict=True))
        )
        self.register_outputs({"instances": self.instances, "imageChains": self.image_chains})
