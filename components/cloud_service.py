"""`CloudService`: a whole service from its definition, configuration and role packages.

The program hands over a `ServiceSpec` (see docs/model.md); the component validates it the
way the fabric would, then declares one `VmRole` per VM role and one `WebRole` or `WorkerRole`
per Web or Worker role. Web and Worker instances sit on the service's network at addresses
fixed by their role's place in the definition, so every role is told the whole topology. Its
outputs give every instance's name, host, update domain and endpoint URLs, and each role's
image chain.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from cloudservice.fabric import fault_domain_indices, fault_domain_of, instance_address
from cloudservice.model import (
    ModelError,
    Problem,
    RoleConfiguration,
    RoleDefinition,
    ServiceDefinition,
    ServiceSpec,
    Sources,
    ValidationProblems,
    build_package,
    load_spec,
    validate_service,
)
from pulumi_cloudservice import (
    BackendServerArgs,
    EndpointArgs,
    FrontDoor,
    FrontDoorListenerArgs,
    LocalStorageArgs,
    ProbeArgs,
    StartupTaskArgs,
    VmRole,
    WebRole,
    WorkerRole,
)
from pydantic import SecretStr, ValidationError

from .promotion import RoleRelease, gated, role_release

# Web and Worker role k takes host numbers ADDRESS_BASE + k * ADDRESS_BLOCK + i of the subnet.
ADDRESS_BASE = 10
ADDRESS_BLOCK = 20
# Internal endpoints without a fixed port get one from here, in definition order.
FIRST_ASSIGNED_PORT = 20000
PACKAGE_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloudservice" / "packages"
)


@dataclass(frozen=True)
class ServiceHost:
    """One more libvirt host of a service: a fault domain. Its pool, the service network on
    it (with a subnet of its own) and our provider, connected to it."""

    pool: pulumi.Input[str]
    provider: pulumi.ProviderResource | None  # None: the stack's default (cloudservice:uri)
    network: pulumi.Input[str] | None = None
    cidr: str | None = None


def load_service(path: str | os.PathLike[str]) -> ServiceSpec:
    """The service document at `path`, validated as the fabric would. A problem with it is one
    line naming the file, the key and what is wrong (`pulumi.RunError`: no traceback)."""
    try:
        spec = load_spec(path)
        validate_service(spec, Sources.document(str(path)))
    except ModelError as exc:
        raise pulumi.RunError(exc.one_line()) from None
    return spec


def _instance_counts(spec: ServiceSpec, overrides: Mapping[str, Any] | None) -> dict[str, int]:
    """Each role's instance count: the configuration's, or the override given for the stack,
    checked by the configuration's own rule."""
    counts = {role.name: role.instances for role in spec.configuration.roles}
    where = f"service {spec.definition.name}"
    problems = []
    for role, count in (overrides or {}).items():
        if role not in counts:
            known = ", ".join(counts)
            problems.append(Problem(where, f"instances of {role}", f"no such role ({known})"))
            continue
        try:
            counts[role] = RoleConfiguration(name=role, instances=count).instances
        except ValidationError as exc:
            problems += [Problem(where, f"instances of {role}", e["msg"]) for e in exc.errors()]
    if problems:
        raise pulumi.RunError(ValidationProblems(problems).one_line())
    return counts


def _endpoints(role: RoleDefinition) -> list[EndpointArgs]:
    return [
        EndpointArgs(
            name=endpoint.name,
            protocol="http" if endpoint.protocol in ("http", "https") else "tcp",
            port=endpoint.effective_local_port,
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
        port=probe.port or endpoint.effective_local_port,
        # Azure's timeoutInSeconds is how long a silent instance stays in rotation; one probe
        # must simply answer within the interval.
        interval_seconds=probe.interval_in_seconds,
        timeout_seconds=probe.interval_in_seconds,
    )


def _certificates(
    spec: ServiceSpec, role: RoleDefinition, given: pulumi.Input[Mapping[str, str]] | None
) -> dict[str, Any]:
    """The role's certificates, each filled by its thumbprint from `given`: a secret input."""
    if not role.certificates:
        return {}
    configuration = next(r for r in spec.configuration.roles if r.name == role.name)
    slots = [(c, configuration.certificates[c.name].thumbprint.lower()) for c in role.certificates]

    def fill(pems: Mapping[str, str]) -> list[dict[str, str]]:
        by_thumbprint = {str(k).lower(): str(v) for k, v in dict(pems).items()}
        return [
            {
                "name": definition.name,
                "storeName": definition.store_name,
                "permissionLevel": definition.permission_level,
                "thumbprint": thumbprint,
                "pem": by_thumbprint.get(thumbprint, ""),
            }
            for definition, thumbprint in slots
        ]

    pems = pulumi.Output.from_input(given or {}).apply(fill)
    return {"certificates": pulumi.Output.secret(pems)}


@functools.cache  # one build per program run (the promotion check and the role share it)
def _package_file(role: str, source: Path) -> str:
    """A .cspkg as it is, or one built from a role directory (deterministic: same files, same
    bytes, so an unchanged directory is no change)."""
    if not source.is_dir():
        return str(source)
    PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
    staging = PACKAGE_CACHE / f".{role}-{os.getpid()}.cspkg"
    try:
        built = build_package(source, staging)
    except ModelError as exc:  # an unsafe name, a link out of the directory, too big...
        raise pulumi.RunError(f"role {role}: cannot package {source}: {exc}") from None
    final = PACKAGE_CACHE / f"{role}-{built.digest[:16]}.cspkg"
    os.replace(staging, final)
    return str(final)


def role_artifacts(
    spec: ServiceSpec,
    base_dir: Path,
    images: Mapping[str, str] | None = None,
    packages: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Each role's release file: a VM role's image, a Web or Worker role's package (built from
    its directory when it is one). `images` and `packages` override the spec's artifacts."""
    images = {n: a.image for n, a in spec.artifacts.items() if a.image} | dict(images or {})
    sources = {n: a.package for n, a in spec.artifacts.items() if a.package}
    sources |= dict(packages or {})
    files = {}
    for role in spec.definition.roles:
        given = images.get(role.name, "") if role.kind == "vm" else sources.get(role.name)
        if given is None:
            raise pulumi.RunError(
                f"role {role.name}: no package: give artifacts.{role.name}.package "
                "(a .cspkg or the role's directory)"
            )
        path = Path(given) if Path(given).is_absolute() else (base_dir / given).resolve()
        files[role.name] = path if role.kind == "vm" else Path(_package_file(role.name, path))
    return files


def _topology(
    spec: ServiceSpec, counts: Mapping[str, int], address: Callable[[int, int], str]
) -> str:
    """Every role's instances, addresses (`address(slot, index)`) and endpoints
    (docs/guest.md)."""
    roles: dict[str, Any] = {}
    assigned = FIRST_ASSIGNED_PORT
    for slot, role in enumerate(spec.definition.roles):
        endpoints: dict[str, Any] = {}
        for endpoint in role.input_endpoints:
            port = endpoint.effective_local_port
            endpoints[endpoint.name] = {"protocol": endpoint.protocol, "port": port}
        for internal in role.internal_endpoints:
            port = internal.port or assigned
            assigned += internal.port is None
            endpoints[internal.name] = {"protocol": internal.protocol, "port": port}
        roles[role.name] = {
            "instances": [
                {
                    "id": f"{role.name}_IN_{index}",
                    "address": address(slot, index),
                    "updateDomain": index % spec.definition.update_domain_count,
                    "endpoints": endpoints,
                }
                for index in range(counts[role.name])
            ]
        }
    return json.dumps({"roles": roles}, sort_keys=True)


def _with_probe(
    optional: dict[str, Any], definition: ServiceDefinition, role: RoleDefinition
) -> dict[str, Any]:
    probe = _probe(definition, role)
    return {**optional, "probe": probe} if probe is not None else optional


def _role_program(role: RoleDefinition) -> dict[str, Any]:
    """What the agent runs, from the definition (the package's manifest fills what is absent)."""
    program: dict[str, Any] = {
        "execution_context": str(role.execution_context),
        "environment": {v.name: v.value for v in role.environment if v.value is not None},
        "local_storage": [
            LocalStorageArgs(
                name=item.name,
                size_mb=item.size_mb,
                clean_on_role_recycle=item.clean_on_role_recycle,
            )
            for item in role.local_storage
        ],
        "startup_tasks": [
            StartupTaskArgs(
                command_line=task.command_line,
                execution_context=str(task.execution_context),
                task_type=str(task.task_type),
            )
            for task in role.startup_tasks
        ],
    }
    if role.entry_point is not None and role.entry_point.command_line:
        program["entry_point"] = role.entry_point.command_line
        program["set_ready_on_process_start"] = role.entry_point.set_ready_on_process_start
    return program


def _settings(
    spec: ServiceSpec, role: str, overrides: pulumi.Input[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Plain settings, and secret ones as Pulumi secrets (secret in state, masked in previews);
    `overrides` (a stack's secret values, by role and name) win over the document's."""
    configuration = next(r for r in spec.configuration.roles if r.name == role)
    plain = {k: v for k, v in configuration.settings.items() if not isinstance(v, SecretStr)}
    secret = {
        k: v.get_secret_value()
        for k, v in configuration.settings.items()
        if isinstance(v, SecretStr)
    }
    merged = pulumi.Output.from_input(overrides or {}).apply(
        lambda given: {**secret, **{k: str(v) for k, v in dict(given).get(role, {}).items()}}
    )
    return {"settings": plain, "secret_settings": pulumi.Output.secret(merged)}


def _release(placed: list[VmRole | WebRole | WorkerRole]) -> pulumi.Output[dict[str, str] | None]:
    """The role's release: what it runs once its rollout completed on every host it runs on,
    all of them running the same (a host a failed `up` never reached still runs the old one)."""
    on_hosts = [pulumi.Output.all(**_digests(role)).apply(role_release) for role in placed]
    return pulumi.Output.all(*on_hosts).apply(
        lambda releases: releases[0] if all(r == releases[0] for r in releases) else None
    )


def _digests(role: VmRole | WebRole | WorkerRole) -> dict[str, pulumi.Output[Any]]:
    digests: dict[str, pulumi.Output[Any]] = {"rollout_complete": role.rollout_complete}
    if isinstance(role, VmRole):
        digests["image_sha256"] = role.image_sha256
    else:
        digests |= {
            "package_sha256": role.package_sha256,
            "os_resolved": role.os_resolved,
            "os_image_sha256": role.os_image_sha256,
        }
    return digests


def _volumes(layers: list[dict[str, Any]]) -> list[str]:
    # Nested outputs reach apply() as plain dicts of the schema's (camelCase) names.
    return [layer["volume"] for layer in layers]


class CloudService(pulumi.ComponentResource):
    """A cloud service on a libvirt host: one `VmRole` per VM role of `spec`, one `WebRole` or
    `WorkerRole` per Web or Worker role.

    With a `network` (and its `cidr`), every role's instances sit on it at fixed addresses and
    the service gets a `FrontDoor`: one load-balanced address per input endpoint, on
    `front_door_address`, at the definition's port unless `front_door_ports` (by listener name,
    `<role>.<endpoint>`) says otherwise. Web and Worker roles need the network.

    `images`, `packages`, `instance_counts`, `os_version` and `secret_settings` override the
    spec per role, `upgrade_mode` the configuration's, for what differs per stack.
    `certificates` (thumbprint -> certificate and key as PEM, from the stack's secrets) fills
    the certificates roles define, as Azure's uploaded service certificates did.

    A `spec` the fabric cannot run, or an instance count the configuration's rules refuse, is
    one `pulumi.RunError` line naming each key and problem; `load_service` reads a document
    so that they name its file.
    """

    roles: dict[str, VmRole | WebRole | WorkerRole]  # on the first host
    fault_domains: dict[str, list[VmRole | WebRole | WorkerRole]]  # on each host, in order
    front_door: FrontDoor | None
    instances: pulumi.Output[list[dict[str, Any]]]
    image_chains: pulumi.Output[dict[str, list[str]]]
    endpoints: pulumi.Output[dict[str, str]]
    releases: pulumi.Output[dict[str, dict[str, str]]]

    def __init__(
        self,
        name: str,
        spec: ServiceSpec,
        *,
        pool: pulumi.Input[str],
        prefix: str,
        base_dir: Path,
        network: pulumi.Input[str] | None = None,
        cidr: str | None = None,
        front_door_address: str = "127.0.0.1",
        front_door_ports: Mapping[str, int] | None = None,
        images: Mapping[str, str] | None = None,
        packages: Mapping[str, str] | None = None,
        instance_counts: Mapping[str, Any] | None = None,
        os_version: str | None = None,
        upgrade_mode: str | None = None,
        secret_settings: pulumi.Input[Mapping[str, Any]] | None = None,
        certificates: pulumi.Input[Mapping[str, str]] | None = None,
        manual_update_domain: int | None = None,
        health_timeout_seconds: float | None = None,
        max_chain_depth: int | None = None,
        promoted: pulumi.Output[dict[str, RoleRelease]] | None = None,
        more_hosts: Sequence[ServiceHost] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("cloudservice:index:CloudService", name, None, opts)
        try:
            validate_service(spec, Sources.document(f"service {spec.definition.name}"))
        except ModelError as exc:
            # A RunError is shown as its message alone, without a Python traceback.
            raise pulumi.RunError(exc.one_line()) from None
        self.spec, self.prefix, self.base_dir = spec, prefix, base_dir
        self.promoted = promoted
        # Per-stack overrides: a release's image, an environment's instance count.
        self.counts = _instance_counts(spec, instance_counts)
        common: dict[str, Any] = {
            key: value
            for key, value in {
                "manual_update_domain": manual_update_domain,
                "health_timeout_seconds": health_timeout_seconds,
                "max_chain_depth": max_chain_depth,
            }.items()
            if value is not None
        }
        self.hosts = [ServiceHost(pool, None, network, cidr), *more_hosts]
        networked = network is not None and cidr is not None
        if networked and any(h.network is None or h.cidr is None for h in self.hosts):
            raise pulumi.RunError(
                f"service {spec.definition.name}: every host needs the service network and a "
                "subnet of its own (more_hosts' network and cidr)"
            )
        if not networked and any(role.kind != "vm" for role in spec.definition.roles):
            raise pulumi.RunError(
                f"service {spec.definition.name}: Web and Worker roles sit on the service's "
                "network: give CloudService a network and its cidr"
            )
        self.front_door = None
        if networked:
            self.front_door = self._front_door(name, front_door_address, front_door_ports or {})
            topology = self._topology()
            if self.front_door is not None:
                common["front_door"] = self.front_door.directory
        artifacts = role_artifacts(spec, base_dir, images, packages)
        self.roles, self.fault_domains = {}, {}
        for slot, role in enumerate(spec.definition.roles):
            args: dict[str, Any] = {
                **common,
                "name": gated(self.promoted, self._host_name(role)),
                "instance_count": self.counts[role.name],
                "vm_size": role.vm_size,
                "update_domain_count": spec.definition.update_domain_count,
                "upgrade_mode": upgrade_mode or spec.configuration.upgrade_mode,
                "endpoints": _endpoints(role),
                **_with_probe({}, spec.definition, role),
            }
            if networked:
                args["address_offset"] = _offset(slot)
            if role.kind == "vm":
                args["image"] = str(artifacts[role.name])
                kind: type[VmRole | WebRole | WorkerRole] = VmRole
            else:
                kind = WebRole if role.kind == "web" else WorkerRole
                args |= {
                    "service": spec.definition.name,
                    "role": role.name,
                    "package": str(artifacts[role.name]),
                    "os_family": spec.configuration.os_family or "debian-12",
                    "os_version": self._os_version(
                        role.name, os_version or spec.configuration.os_version
                    ),
                    "topology": topology,
                    **_role_program(role),
                    **_settings(spec, role.name, secret_settings),
                    **_certificates(spec, role, certificates),
                }
            self.fault_domains[role.name] = self._placed(f"{name}-{role.name}", kind, args)
            self.roles[role.name] = self.fault_domains[role.name][0]
        placed = [resource for group in self.fault_domains.values() for resource in group]
        self.instances = pulumi.Output.all(*[r.instances for r in placed]).apply(
            lambda groups: [instance for group in groups for instance in group]
        )
        names = list(self.roles)
        self.image_chains = pulumi.Output.all(*[r.layers for r in self.roles.values()]).apply(
            lambda chains: dict(zip(names, map(_volumes, chains), strict=True))
        )
        self.endpoints = (
            self.front_door.endpoints if self.front_door else pulumi.Output.from_input({})
        )
        self.releases = pulumi.Output.all(*map(_release, self.fault_domains.values())).apply(
            lambda entries: {n: e for n, e in zip(names, entries, strict=True) if e is not None}
        )
        self.register_outputs(
            {
                "instances": self.instances,
                "imageChains": self.image_chains,
                "endpoints": self.endpoints,
                "releases": self.releases,
            }
        )

    def _os_version(self, role: str, version: str) -> pulumi.Input[str]:
        """The configured guest OS version, or the one the promotion's source ran."""
        if self.promoted is None:
            return version
        return self.promoted.apply(lambda ran: str(ran[role].os_version).split("/", 1)[1])

    def _host_name(self, role: RoleDefinition) -> str:
        return f"{self.prefix}-{role.name.lower()}"

    def _placed(
        self, name: str, kind: type[VmRole | WebRole | WorkerRole], args: dict[str, Any]
    ) -> list[VmRole | WebRole | WorkerRole]:
        """The role on each host (fault domain) that holds some of its instances. Each host's
        rollout starts once the one before it is done, so a host that fails stops the rollout
        there and the others keep running what they ran."""
        count, domains = len(self.hosts), args["update_domain_count"]
        placed: list[VmRole | WebRole | WorkerRole] = []
        for fault_domain, host in enumerate(self.hosts):
            if not fault_domain_indices(args["instance_count"], domains, count, fault_domain):
                continue
            on_host = {**args, "pool": host.pool}
            if host.network is not None:
                on_host |= {"network": host.network, "cidr": host.cidr}
            if count > 1:
                on_host |= {"fault_domain": fault_domain, "fault_domain_count": count}
            options = pulumi.ResourceOptions(
                parent=self, provider=host.provider, depends_on=placed[-1:]
            )
            suffix = f"-fd{fault_domain}" if fault_domain else ""
            placed.append(kind(f"{name}{suffix}", **on_host, opts=options))
        return placed

    def _topology(self) -> str:
        return _topology(self.spec, self.counts, self._address)

    def _front_door(self, name: str, address: str, ports: Mapping[str, int]) -> FrontDoor | None:
        """One listener per input endpoint, over the role's instances at their fixed addresses
        (none for a service without input endpoints: it has no front door)."""
        listeners = []
        for slot, role in enumerate(self.spec.definition.roles):
            probe = _probe(self.spec.definition, role)
            for endpoint in role.input_endpoints:
                if endpoint.protocol == "udp":
                    pulumi.log.warn(f"{role.name}.{endpoint.name}: udp is not balanced", self)
                    continue
                servers = [
                    BackendServerArgs(
                        name=f"{self._host_name(role)}-{index}",
                        address=self._address(slot, index),
                        port=endpoint.effective_local_port,
                    )
                    for index in range(self.counts[role.name])
                ]
                listeners.append(
                    FrontDoorListenerArgs(
                        name=f"{role.name}.{endpoint.name}",
                        protocol="http" if endpoint.protocol == "http" else "tcp",
                        port=ports.get(f"{role.name}.{endpoint.name}", endpoint.port),
                        probe=probe,
                        servers=servers,
                    )
                )
        if not listeners:
            return None
        return FrontDoor(
            f"{name}-front-door",
            name=gated(self.promoted, self.prefix),
            bind_address=address,
            listeners=listeners,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _address(self, slot: int, index: int) -> str:
        """Instance `index` of the role in `slot`, on its fault domain's subnet."""
        domains = self.spec.definition.update_domain_count
        cidr = self.hosts[fault_domain_of(index, domains, len(self.hosts))].cidr
        try:
            return instance_address(str(cidr), _offset(slot), index)
        except ValueError as exc:
            raise pulumi.RunError(f"service {self.spec.definition.name}: {exc}") from exc


def _offset(slot: int) -> int:
    """Role `slot` (its place in the definition) takes a block of the subnet's addresses."""
    return ADDRESS_BASE + slot * ADDRESS_BLOCK
