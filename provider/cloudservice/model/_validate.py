"""Checks across the definition, the configuration and the artifacts of a service.

Field-level rules (types, ranges, at most 25 roles, counts >= 1) live on the models; this
module checks what no single model can see. Every check appends to one list so that all
problems are reported together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from ._configuration import MASK, ServiceConfiguration
from ._definition import RoleDefinition, RoleKind, ServiceDefinition
from ._spec import ServiceSpec
from ._vmsizes import lookup_vm_size
from .errors import Problem, UnknownVmSize, ValidationProblems

__all__ = ["Sources", "check_service", "validate_service"]


@dataclass(frozen=True)
class Sources:
    """Where each part of a spec came from, so a problem names the right file and path."""

    definition: str = "service"
    configuration: str = "service"
    definition_prefix: str = "definition"
    configuration_prefix: str = "configuration"

    @classmethod
    def document(cls, path: str) -> Sources:
        return cls(path, path)

    @classmethod
    def azure(cls, csdef: str, cscfg: str) -> Sources:
        return cls(csdef, cscfg, "", "")


class _Report:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.problems: list[Problem] = []

    def definition(self, location: str, message: str) -> None:
        self._add(self.sources.definition, self.sources.definition_prefix, location, message)

    def configuration(self, location: str, message: str) -> None:
        self._add(self.sources.configuration, self.sources.configuration_prefix, location, message)

    def artifacts(self, location: str, message: str) -> None:
        # Artifacts only exist in our own document, which is also the configuration's file.
        self._add(self.sources.configuration, "artifacts", location, message)

    def _add(self, source: str, prefix: str, location: str, message: str) -> None:
        path = ".".join(part for part in (prefix, location) if part)
        self.problems.append(Problem(source, path, message))


def validate_service(
    spec: ServiceSpec, sources: Sources | None = None, *, require_packages: bool = False
) -> None:
    """Raise ValidationProblems listing every problem ``check_service`` finds."""
    problems = check_service(spec, sources, require_packages=require_packages)
    if problems:
        raise ValidationProblems(problems)


def check_service(
    spec: ServiceSpec, sources: Sources | None = None, *, require_packages: bool = False
) -> list[Problem]:
    """Every problem across definition, configuration and artifacts; empty when valid.

    ``require_packages`` also demands a package for each web and worker role (the provider
    needs one; an imported Azure service does not have one yet).
    """
    report = _Report(sources or Sources())
    _check_definition(spec.definition, report)
    _check_configuration(spec.definition, spec.configuration, report)
    _check_artifacts(spec, report, require_packages)
    return report.problems


def _duplicates(names: Iterable[str]) -> list[str]:
    # Case-insensitive: names become Windows paths and host names, which fold case.
    folded = Counter(name.casefold() for name in names)
    seen: set[str] = set()
    duplicates = []
    for name in names:
        if folded[name.casefold()] > 1 and name.casefold() not in seen:
            seen.add(name.casefold())
            duplicates.append(name)
    return duplicates


def _check_unique(names: list[str], where: str, what: str, report: _Report) -> None:
    for name in _duplicates(names):
        report.definition(where, f"{what} {name!r} is defined more than once; rename one")


def _check_definition(definition: ServiceDefinition, report: _Report) -> None:
    _check_unique([role.name for role in definition.roles], "roles", "role", report)
    _check_unique(
        [probe.name for probe in definition.load_balancer_probes],
        "loadBalancerProbes",
        "load balancer probe",
        report,
    )
    _check_public_ports(definition, report)
    probes = {probe.name for probe in definition.load_balancer_probes}
    for role in definition.roles:
        _check_role(role, probes, report)


def _transport(protocol: str) -> str:
    return "udp" if protocol == "udp" else "tcp"


def _check_public_ports(definition: ServiceDefinition, report: _Report) -> None:
    # Input endpoints share the service's one public address, so ports are service-wide.
    owners: dict[tuple[str, int], str] = {}
    for role in definition.roles:
        for endpoint in role.input_endpoints:
            key = (_transport(endpoint.protocol), endpoint.port)
            where = f"roles[{role.name}].inputEndpoints[{endpoint.name}].port"
            if key in owners:
                report.definition(
                    where,
                    f"public {key[0]} port {endpoint.port} is already used by {owners[key]}; "
                    "input endpoint ports must be unique in the service",
                )
            else:
                owners[key] = f"{role.name}/{endpoint.name}"


def _check_role(role: RoleDefinition, probes: set[str], report: _Report) -> None:
    where = f"roles[{role.name}]"
    endpoint_names = [e.name for e in role.input_endpoints] + [
        e.name for e in role.internal_endpoints
    ]
    _check_unique(endpoint_names, f"{where}.endpoints", "endpoint", report)
    _check_unique([s.name for s in role.settings], f"{where}.settings", "setting", report)
    _check_unique(
        [c.name for c in role.certificates], f"{where}.certificates", "certificate", report
    )
    _check_unique(
        [s.name for s in role.local_storage], f"{where}.localStorage", "local storage", report
    )
    _check_local_ports(role, report)
    _check_endpoint_references(role, probes, report)
    _check_size(role, report)


def _check_local_ports(role: RoleDefinition, report: _Report) -> None:
    used: dict[tuple[str, int], str] = {}
    ports = [
        ("inputEndpoints", e.name, e.protocol, e.effective_local_port) for e in role.input_endpoints
    ] + [
        ("internalEndpoints", e.name, e.protocol, e.port)
        for e in role.internal_endpoints
        if e.port is not None
    ]
    for kind, name, protocol, port in ports:
        transports = ("tcp", "udp") if protocol == "any" else (_transport(protocol),)
        for transport in transports:
            key = (transport, port)
            if key in used:
                report.definition(
                    f"roles[{role.name}].{kind}[{name}]",
                    f"local {transport} port {port} is already used by endpoint {used[key]!r} "
                    "of this role; give each endpoint its own port",
                )
            used.setdefault(key, name)


def _check_endpoint_references(role: RoleDefinition, probes: set[str], report: _Report) -> None:
    certificates = {c.name for c in role.certificates}
    for endpoint in role.input_endpoints:
        where = f"roles[{role.name}].inputEndpoints[{endpoint.name}]"
        if endpoint.certificate and endpoint.certificate not in certificates:
            report.definition(
                f"{where}.certificate",
                f"certificate {endpoint.certificate!r} is not defined by role {role.name!r}; "
                "add it to the role's certificates",
            )
        if endpoint.protocol == "https" and not endpoint.certificate:
            report.definition(where, "an https endpoint needs a certificate")
        if endpoint.load_balancer_probe and endpoint.load_balancer_probe not in probes:
            report.definition(
                f"{where}.loadBalancerProbe",
                f"load balancer probe {endpoint.load_balancer_probe!r} is not defined; "
                "add it to loadBalancerProbes",
            )


def _check_size(role: RoleDefinition, report: _Report) -> None:
    where = f"roles[{role.name}].vmSize"
    try:
        size = lookup_vm_size(role.vm_size)
    except UnknownVmSize as exc:
        report.definition(where, str(exc))
        return
    total_mb = sum(storage.size_mb for storage in role.local_storage)
    if total_mb > size.local_disk_gib * 1024:
        report.definition(
            f"roles[{role.name}].localStorage",
            f"local storage totals {total_mb} MB but a {size.name} instance has "
            f"{size.local_disk_gib} GiB of local disk; shrink it or pick a larger vmSize",
        )


def _check_configuration(
    definition: ServiceDefinition, configuration: ServiceConfiguration, report: _Report
) -> None:
    if configuration.service_name != definition.name:
        report.configuration(
            "serviceName",
            f"{configuration.service_name!r} does not match the definition's name "
            f"{definition.name!r}",
        )
    configured = [role.name for role in configuration.roles]
    for name in _duplicates(configured):
        report.configuration("roles", f"role {name!r} is configured more than once")
    for role in definition.roles:
        if role.name not in configured:
            report.configuration(
                "roles", f"role {role.name!r} is defined but not configured; add it"
            )
    for role_config in configuration.roles:
        defined = definition.role(role_config.name)
        if defined is None:
            report.configuration(
                f"roles[{role_config.name}]",
                f"role {role_config.name!r} is not in the definition; remove it or define it",
            )
            continue
        _check_role_values(defined, role_config.settings, role_config.certificates, report)


def _check_role_values(
    role: RoleDefinition,
    settings: Mapping[str, str | SecretStr],
    certificates: Mapping[str, object],
    report: _Report,
) -> None:
    where = f"roles[{role.name}]"
    defined = {s.name for s in role.settings}
    for name, value in settings.items():
        if name not in defined:
            report.configuration(
                f"{where}.settings.{name}",
                f"setting {name!r} is not defined by role {role.name!r}; define it or remove it",
            )
        elif isinstance(value, SecretStr) and value.get_secret_value() == MASK:
            report.configuration(
                f"{where}.settings.{name}",
                "secret value is the mask printed in place of a secret; give the real value",
            )
    for name in sorted(defined - settings.keys()):
        report.configuration(f"{where}.settings", f"setting {name!r} has no value; give one")
    certs = {c.name for c in role.certificates}
    for name in certificates:
        if name not in certs:
            report.configuration(
                f"{where}.certificates.{name}",
                f"certificate {name!r} is not defined by role {role.name!r}",
            )
    for name in sorted(certs - certificates.keys()):
        report.configuration(
            f"{where}.certificates", f"certificate {name!r} has no thumbprint; give one"
        )


def _check_artifacts(spec: ServiceSpec, report: _Report, require_packages: bool) -> None:
    for name in spec.artifacts:
        if spec.definition.role(name) is None:
            report.artifacts(name, f"role {name!r} is not in the definition")
    for role in spec.definition.roles:
        artifacts = spec.artifacts_for(role.name)
        if role.kind is RoleKind.VM:
            if not artifacts.image:
                report.artifacts(
                    role.name,
                    "a VM role boots from a disk image; give `image` (in a .cscfg: <OsImage href>)",
                )
            if artifacts.package:
                report.artifacts(
                    f"{role.name}.package",
                    "a VM role has no application package; put the software in its image",
                )
            continue
        if artifacts.image:
            report.artifacts(
                f"{role.name}.image",
                f"a {role.kind.value} role runs a package on the managed OS, not an image; "
                "remove `image` or make it a VM role",
            )
        if require_packages and not artifacts.package:
            report.artifacts(role.name, f"{role.kind.value} role needs a `package`")
