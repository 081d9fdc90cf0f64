"""Import and export Azure's ServiceDefinition.csdef and ServiceConfiguration.cscfg.

Files are read as Azure tools wrote them: UTF-8 or UTF-16 with or without BOM, comments,
the ServiceHosting namespaces (or none), extra ``xmlns:xsd``/``xmlns:xsi`` declarations.
Elements with no meaning here (Sites, Imports, NetworkConfiguration, ...) produce a warning
and are skipped instead of failing the import; anything malformed is a Problem naming the
file and the element. Element names follow Azure's published schemas
(learn.microsoft.com/azure/cloud-services/schema-csdef-file, .../schema-cscfg-file).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from ..files import why_unreadable
from ._base import problems_from
from ._configuration import ServiceConfiguration, reveal
from ._definition import ExecutionContext, RoleDefinition, RoleKind, ServiceDefinition
from ._spec import RoleArtifacts, ServiceSpec
from ._validate import Sources, validate_service
from .errors import AzureFormatError, Problem, ValidationProblems

__all__ = [
    "CSCFG_NAMESPACE",
    "CSDEF_NAMESPACE",
    "AzureImport",
    "export_cscfg",
    "export_csdef",
    "import_azure",
    "parse_cscfg",
    "parse_csdef",
]

CSDEF_NAMESPACE = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"
CSCFG_NAMESPACE = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"

# Settings whose names look like credentials are imported as secrets: a false positive only
# hides a value, a false negative leaks one into state and logs.
_SECRET_NAME = re.compile(r"password|secret|key|token|connectionstring|credential|sas", re.I)

# Imported modules (<Imports>) add settings and certificates named after the module; the
# modules (Azure's agents) do not exist here, so their entries in the .cscfg are dropped.
_PLUGIN_PREFIX = "Microsoft.WindowsAzure.Plugins."

# Service files are a few KiB; refuse anything that cannot be one before parsing it.
_MAX_XML_BYTES = 16 << 20

_T = TypeVar("_T")

# Why an element is skipped; anything not listed and not understood gets a generic warning.
_NO_MEANING = {
    "Sites": "IIS sites do not exist here; the role's entry point serves its endpoints",
    "Imports": "Azure plugin modules (Diagnostics, RemoteAccess, ...) do not exist here",
    "Contents": "package the files into the role package instead",
    "NetworkTrafficRules": "traffic between roles is not restricted here",
    "NetworkConfiguration": "virtual networks, DNS and ACLs are not modelled here",
    "InstanceInputEndpoint": "per-instance public ports are not supported here",
    "FixedPortRange": "port ranges are not supported; use a fixed port",
}

_ROLE_KINDS = {
    "WebRole": RoleKind.WEB,
    "WorkerRole": RoleKind.WORKER,
    "VirtualMachineRole": RoleKind.VM,
}
_ROLE_ELEMENTS = {kind: tag for tag, kind in _ROLE_KINDS.items()}


@dataclass(frozen=True)
class AzureImport:
    """A service imported from Azure files, and what was skipped on the way."""

    spec: ServiceSpec
    warnings: list[Problem] = field(default_factory=list)


def _local(tag: str) -> tuple[str, str]:
    namespace, _, name = tag.rpartition("}")
    return namespace.lstrip("{"), name


class _Reader:
    """Walks one file's elements, building alias-keyed dicts and collecting warnings."""

    def __init__(self, source: str, namespace: str) -> None:
        self.source = source
        self.namespace = namespace
        self.warnings: list[Problem] = []

    def parse(self, data: bytes, root_name: str) -> ET.Element:
        # ElementTree never fetches external entities, and the expat bundled with
        # Python >= 3.11 caps entity expansion ("billion laughs"); _read caps the size.
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            line, column = exc.position
            reason = re.sub(r": line \d+, column \d+$", "", str(exc))
            raise AzureFormatError(
                [
                    Problem(
                        self.source,
                        f"line {line}, column {column}",
                        f"not well-formed XML: {reason}",
                    )
                ]
            ) from exc
        except (LookupError, ValueError) as exc:  # unknown or unsupported declared encoding
            raise AzureFormatError(
                [Problem(self.source, "line 1", f"cannot decode the XML: {exc}")]
            ) from exc
        namespace, name = _local(root.tag)
        if name != root_name:
            raise AzureFormatError(
                [Problem(self.source, name, f"expected a <{root_name}> document, found <{name}>")]
            )
        if namespace not in ("", self.namespace):
            self.warn(name, f"unexpected namespace {namespace!r}; read as {self.namespace}")
        return root

    def warn(self, location: str, message: str) -> None:
        self.warnings.append(Problem(self.source, location, message))

    def children(
        self,
        element: ET.Element,
        path: str,
        handlers: Mapping[str, Callable[[ET.Element, str], None]],
    ) -> None:
        """Dispatch each child element by name; warn about the ones with no handler."""
        for child in element:
            if not isinstance(child.tag, str):  # comments, processing instructions
                continue
            _, name = _local(child.tag)
            label = f"{name}[@name='{child.get('name')}']" if child.get("name") else name
            where = f"{path}/{label}"
            handler = handlers.get(name)
            if handler is not None:
                handler(child, where)
            elif name in _NO_MEANING:
                self.warn(where, f"has no meaning here and was skipped: {_NO_MEANING[name]}")
            else:
                self.warn(where, "is not understood here and was skipped")

    def items(
        self, element: ET.Element, path: str, item: str, read: Callable[[ET.Element, str], Any]
    ) -> list[Any]:
        found: list[Any] = []
        self.children(element, path, {item: lambda child, where: found.append(read(child, where))})
        return found


def _attrs(element: ET.Element, **names: str) -> dict[str, str]:
    """Attributes renamed to model aliases, e.g. ``sizeMb="sizeInMB"``; absent ones left out."""
    return {key: element.attrib[xml] for key, xml in names.items() if xml in element.attrib}


# ---------------------------------------------------------------- .csdef


class _CsdefReader(_Reader):
    def __init__(self, source: str) -> None:
        super().__init__(source, CSDEF_NAMESPACE)
        self.imports: dict[str, list[str]] = {}

    def read(self, data: bytes) -> dict[str, Any]:
        root = self.parse(data, "ServiceDefinition")
        service: dict[str, Any] = _attrs(
            root,
            name="name",
            upgradeDomainCount="upgradeDomainCount",  # Azure's name; the model accepts it
            topologyChangeDiscovery="topologyChangeDiscovery",
        )
        service["roles"] = roles = []
        service["loadBalancerProbes"] = probes = []
        role_handlers = {
            tag: lambda child, where, kind=kind: roles.append(self.role(child, where, kind))
            for tag, kind in _ROLE_KINDS.items()
        }
        self.children(
            root,
            "ServiceDefinition",
            {
                **role_handlers,
                "LoadBalancerProbes": lambda child, where: probes.extend(
                    self.items(child, where, "LoadBalancerProbe", self.probe)
                ),
            },
        )
        return service

    def probe(self, element: ET.Element, _: str) -> dict[str, Any]:
        return _attrs(
            element,
            name="name",
            protocol="protocol",
            path="path",
            port="port",
            intervalInSeconds="intervalInSeconds",
            timeoutInSeconds="timeoutInSeconds",
        )

    def role(self, element: ET.Element, path: str, kind: RoleKind) -> dict[str, Any]:
        role: dict[str, Any] = {"kind": kind.value, **_attrs(element, name="name", vmSize="vmsize")}
        lists: dict[str, list[Any]] = {
            key: []
            for key in (
                "inputEndpoints",
                "internalEndpoints",
                "settings",
                "certificates",
                "localStorage",
                "startupTasks",
            )
        }
        role.update(lists)

        def runtime(child: ET.Element, where: str) -> None:
            role.update(self.runtime(child, where))

        def imports(child: ET.Element, where: str) -> None:
            modules = [i.get("moduleName", "") for i in child if _local(str(i.tag))[1] == "Import"]
            self.imports[role.get("name", "")] = modules
            self.warn(where, f"has no meaning here and was skipped: {_NO_MEANING['Imports']}")

        self.children(
            element,
            path,
            {
                "ConfigurationSettings": lambda c, w: lists["settings"].extend(
                    self.items(c, w, "Setting", _setting_definition)
                ),
                "Certificates": lambda c, w: lists["certificates"].extend(
                    self.items(c, w, "Certificate", _certificate_definition)
                ),
                "LocalResources": lambda c, w: lists["localStorage"].extend(
                    self.items(c, w, "LocalStorage", _local_storage)
                ),
                "Startup": lambda c, w: lists["startupTasks"].extend(
                    self.items(c, w, "Task", self.task)
                ),
                "Endpoints": lambda c, w: self.endpoints(c, w, lists),
                "Runtime": runtime,
                "Imports": imports,
            },
        )
        return role

    def endpoints(self, element: ET.Element, path: str, lists: dict[str, list[Any]]) -> None:
        def internal(child: ET.Element, where: str) -> dict[str, Any]:
            endpoint = _attrs(child, name="name", protocol="protocol", port="port")
            self.children(
                child, where, {"FixedPort": lambda c, _: endpoint.update(_attrs(c, port="port"))}
            )
            return endpoint

        self.children(
            element,
            path,
            {
                "InputEndpoint": lambda c, _: lists["inputEndpoints"].append(
                    _attrs(
                        c,
                        name="name",
                        protocol="protocol",
                        port="port",
                        localPort="localPort",
                        certificate="certificate",
                        loadBalancerProbe="loadBalancerProbe",
                    )
                ),
                "InternalEndpoint": lambda c, w: lists["internalEndpoints"].append(internal(c, w)),
            },
        )

    def environment(self, element: ET.Element, path: str) -> list[dict[str, Any]]:
        def variable(child: ET.Element, where: str) -> dict[str, Any]:
            found = _attrs(child, name="name", value="value")
            self.children(
                child,
                where,
                {
                    "RoleInstanceValue": lambda c, _: found.update(
                        _attrs(c, roleInstanceValue="xpath")
                    )
                },
            )
            return found

        return self.items(element, path, "Variable", variable)

    def task(self, element: ET.Element, path: str) -> dict[str, Any]:
        task: dict[str, Any] = _attrs(
            element,
            commandLine="commandLine",
            executionContext="executionContext",
            taskType="taskType",
        )
        self.children(
            element,
            path,
            {"Environment": lambda c, w: task.update(environment=self.environment(c, w))},
        )
        return task

    def runtime(self, element: ET.Element, path: str) -> dict[str, Any]:
        runtime: dict[str, Any] = _attrs(element, executionContext="executionContext")

        def entry_point(child: ET.Element, where: str) -> None:
            self.children(
                child,
                where,
                {
                    "ProgramEntryPoint": lambda c, _: runtime.update(
                        entryPoint=_attrs(
                            c,
                            commandLine="commandLine",
                            setReadyOnProcessStart="setReadyOnProcessStart",
                        )
                    ),
                    "NetFxEntryPoint": lambda c, _: runtime.update(
                        entryPoint=_attrs(
                            c,
                            assemblyName="assemblyName",
                            targetFrameworkVersion="targetFrameworkVersion",
                        )
                    ),
                },
            )

        self.children(
            element,
            path,
            {
                "Environment": lambda c, w: runtime.update(environment=self.environment(c, w)),
                "EntryPoint": entry_point,
            },
        )
        return runtime


def _setting_definition(element: ET.Element, _: str) -> dict[str, Any]:
    name = element.get("name", "")
    return {"name": name, "secret": bool(_SECRET_NAME.search(name))}


def _certificate_definition(element: ET.Element, _: str) -> dict[str, Any]:
    return _attrs(
        element,
        name="name",
        storeLocation="storeLocation",
        storeName="storeName",
        permissionLevel="permissionLevel",
    )


def _local_storage(element: ET.Element, _: str) -> dict[str, Any]:
    return _attrs(element, name="name", sizeMb="sizeInMB", cleanOnRoleRecycle="cleanOnRoleRecycle")


# ---------------------------------------------------------------- .cscfg


class _CscfgReader(_Reader):
    def __init__(self, source: str) -> None:
        super().__init__(source, CSCFG_NAMESPACE)
        self.images: dict[str, str] = {}

    def read(self, data: bytes) -> dict[str, Any]:
        root = self.parse(data, "ServiceConfiguration")
        config: dict[str, Any] = _attrs(
            root, serviceName="serviceName", osFamily="osFamily", osVersion="osVersion"
        )
        config["roles"] = roles = []
        self.children(
            root, "ServiceConfiguration", {"Role": lambda c, w: roles.append(self.role(c, w))}
        )
        return config

    def role(self, element: ET.Element, path: str) -> dict[str, Any]:
        role: dict[str, Any] = {"name": element.get("name", ""), "settings": {}, "certificates": {}}

        def settings(child: ET.Element, where: str) -> None:
            for item in self.items(child, where, "Setting", lambda c, _: c):
                role["settings"][item.get("name", "")] = item.get("value", "")

        def certificates(child: ET.Element, where: str) -> None:
            for item in self.items(child, where, "Certificate", lambda c, _: c):
                role["certificates"][item.get("name", "")] = _attrs(
                    item, thumbprint="thumbprint", thumbprintAlgorithm="thumbprintAlgorithm"
                )

        self.children(
            element,
            path,
            {
                "Instances": lambda c, _: role.update(_attrs(c, instances="count")),
                # A VM role's disk image: becomes the role's `image` artifact.
                "OsImage": lambda c, _: self.images.update({role["name"]: c.get("href", "")}),
                "ConfigurationSettings": settings,
                "Certificates": certificates,
            },
        )
        return role


# ---------------------------------------------------------------- import


def parse_csdef(
    data: bytes, source: str = "ServiceDefinition.csdef"
) -> tuple[ServiceDefinition, list[Problem]]:
    """A definition and its warnings, from the bytes of a .csdef file."""
    reader = _CsdefReader(source)
    raw = reader.read(data)
    return _validated(ServiceDefinition, raw, source), reader.warnings


def parse_cscfg(
    data: bytes, source: str = "ServiceConfiguration.cscfg"
) -> tuple[ServiceConfiguration, list[Problem]]:
    """A configuration and its warnings, from the bytes of a .cscfg file."""
    reader = _CscfgReader(source)
    raw = reader.read(data)
    return _validated(ServiceConfiguration, raw, source), reader.warnings


def _validated(model: type[Any], raw: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationProblems(problems_from(exc, source, raw)) from exc


def _read(path: str | os.PathLike[str]) -> bytes:
    file = Path(path)
    try:
        if file.stat().st_size > _MAX_XML_BYTES:
            raise AzureFormatError(
                [
                    Problem(
                        str(path), "", f"larger than {_MAX_XML_BYTES >> 20} MiB; not a service file"
                    )
                ]
            )
        return file.read_bytes()
    except OSError as exc:
        raise ValidationProblems([Problem(str(path), "", why_unreadable(exc))]) from exc


class _Collect:
    """Runs steps that may raise ValidationProblems, keeping the problems of all of them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.format_error = False

    def __call__(self, step: Callable[[], _T]) -> _T | None:
        try:
            return step()
        except ValidationProblems as exc:
            self.problems.extend(exc.problems)
            self.format_error |= isinstance(exc, AzureFormatError)
            return None

    def raise_if_any(self) -> None:
        if self.problems:
            raise (AzureFormatError if self.format_error else ValidationProblems)(self.problems)


def import_azure(csdef: str | os.PathLike[str], cscfg: str | os.PathLike[str]) -> AzureImport:
    """Import a .csdef/.cscfg pair as a ServiceSpec, checked across both files.

    Raises ValidationProblems (AzureFormatError for unreadable XML) listing every problem
    in both files.
    """
    def_source, cfg_source = str(csdef), str(cscfg)
    def_reader, cfg_reader = _CsdefReader(def_source), _CscfgReader(cfg_source)
    collect = _Collect()
    raw_def = collect(lambda: def_reader.read(_read(csdef)))
    raw_cfg = collect(lambda: cfg_reader.read(_read(cscfg)))
    collect.raise_if_any()
    assert raw_def is not None and raw_cfg is not None  # raise_if_any saw no problem
    cfg_reader.warnings.extend(_drop_plugin_entries(raw_cfg, def_reader.imports, cfg_source))
    definition = collect(lambda: _validated(ServiceDefinition, raw_def, def_source))
    configuration = collect(lambda: _validated(ServiceConfiguration, raw_cfg, cfg_source))
    collect.raise_if_any()
    assert definition is not None and configuration is not None
    artifacts = {role: RoleArtifacts(image=href) for role, href in cfg_reader.images.items()}
    spec = ServiceSpec(definition=definition, configuration=configuration, artifacts=artifacts)
    validate_service(spec, Sources.azure(def_source, cfg_source))
    return AzureImport(spec, def_reader.warnings + cfg_reader.warnings)


def _drop_plugin_entries(
    raw_cfg: dict[str, Any], imports: dict[str, list[str]], source: str
) -> list[Problem]:
    warnings = []
    for role in raw_cfg.get("roles", []):
        prefixes = tuple(f"{_PLUGIN_PREFIX}{module}." for module in imports.get(role["name"], []))
        if not prefixes:
            continue
        for kind in ("settings", "certificates"):
            dropped = [name for name in role[kind] if name.startswith(prefixes)]
            for name in dropped:
                del role[kind][name]
            if dropped:
                warnings.append(
                    Problem(
                        source,
                        f"ServiceConfiguration/Role[@name='{role['name']}']",
                        f"{kind} of imported Azure modules were skipped: {', '.join(dropped)}",
                    )
                )
    return warnings


# ---------------------------------------------------------------- export


def _sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    # Tags stay unqualified: the root's xmlns attribute (see _serialize) puts them all in
    # the schema's namespace; ElementTree's default_namespace refuses unqualified attributes.
    return ET.SubElement(
        parent,
        tag,
        {key: _xml_value(value) for key, value in attrs.items() if value is not None},
    )


def _xml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _serialize(root: ET.Element, namespace: str) -> bytes:
    root.attrib = {"xmlns": namespace, **root.attrib}
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")


def export_csdef(definition: ServiceDefinition) -> bytes:
    """The definition as a .csdef file (Azure's schema, default namespace, UTF-8)."""
    root = ET.Element(
        "ServiceDefinition",
        {
            key: str(value)
            for key, value in (
                ("name", definition.name),
                ("upgradeDomainCount", definition.update_domain_count),
                ("topologyChangeDiscovery", definition.topology_change_discovery),
            )
            if value is not None
        },
    )
    if definition.load_balancer_probes:
        probes = _sub(root, "LoadBalancerProbes")
        for probe in definition.load_balancer_probes:
            _sub(
                probes,
                "LoadBalancerProbe",
                name=probe.name,
                protocol=probe.protocol,
                path=probe.path,
                port=probe.port,
                intervalInSeconds=probe.interval_in_seconds,
                timeoutInSeconds=probe.timeout_in_seconds,
            )
    for role in definition.roles:
        _export_role(root, role)
    return _serialize(root, CSDEF_NAMESPACE)


def _export_role(root: ET.Element, role: RoleDefinition) -> None:
    element = _sub(root, _ROLE_ELEMENTS[role.kind], name=role.name, vmsize=role.vm_size)
    if role.settings:
        settings = _sub(element, "ConfigurationSettings")
        for setting in role.settings:
            _sub(settings, "Setting", name=setting.name)
    if role.certificates:
        certificates = _sub(element, "Certificates")
        for cert in role.certificates:
            _sub(
                certificates,
                "Certificate",
                name=cert.name,
                storeLocation=cert.store_location,
                storeName=cert.store_name,
                permissionLevel=cert.permission_level,
            )
    if role.input_endpoints or role.internal_endpoints:
        endpoints = _sub(element, "Endpoints")
        for ep in role.input_endpoints:
            _sub(
                endpoints,
                "InputEndpoint",
                name=ep.name,
                protocol=ep.protocol,
                port=ep.port,
                localPort=ep.local_port,
                certificate=ep.certificate,
                loadBalancerProbe=ep.load_balancer_probe,
            )
        for internal in role.internal_endpoints:
            _sub(
                endpoints,
                "InternalEndpoint",
                name=internal.name,
                protocol=internal.protocol,
                port=internal.port,
            )
    if role.local_storage:
        resources = _sub(element, "LocalResources")
        for storage in role.local_storage:
            _sub(
                resources,
                "LocalStorage",
                name=storage.name,
                sizeInMB=storage.size_mb,
                cleanOnRoleRecycle=storage.clean_on_role_recycle,
            )
    if role.startup_tasks:
        startup = _sub(element, "Startup")
        for task in role.startup_tasks:
            task_element = _sub(
                startup,
                "Task",
                commandLine=task.command_line,
                executionContext=task.execution_context.value,
                taskType=task.task_type.value,
            )
            _export_environment(task_element, task.environment)
    _export_runtime(element, role)


def _export_environment(parent: ET.Element, variables: list[Any]) -> None:
    if not variables:
        return
    environment = _sub(parent, "Environment")
    for variable in variables:
        element = _sub(environment, "Variable", name=variable.name, value=variable.value)
        if variable.role_instance_value is not None:
            _sub(element, "RoleInstanceValue", xpath=variable.role_instance_value)


def _export_runtime(role_element: ET.Element, role: RoleDefinition) -> None:
    if role.execution_context is ExecutionContext.LIMITED and not (
        role.environment or role.entry_point
    ):
        return  # everything at Azure's defaults: no <Runtime> at all
    runtime = _sub(role_element, "Runtime", executionContext=role.execution_context.value)
    _export_environment(runtime, role.environment)
    entry = role.entry_point
    if entry is None:
        return
    entry_element = _sub(runtime, "EntryPoint")
    if entry.command_line is not None:
        _sub(
            entry_element,
            "ProgramEntryPoint",
            commandLine=entry.command_line,
            setReadyOnProcessStart=entry.set_ready_on_process_start,
        )
    else:
        _sub(
            entry_element,
            "NetFxEntryPoint",
            assemblyName=entry.assembly_name,
            targetFrameworkVersion=entry.target_framework_version,
        )


def export_cscfg(
    configuration: ServiceConfiguration, artifacts: Mapping[str, RoleArtifacts] | None = None
) -> bytes:
    """The configuration as a .cscfg file; VM role images from ``artifacts`` as <OsImage>.

    Secret values are written in clear: Azure's format has no other way; treat the file as
    a secret.
    """
    root = ET.Element(
        "ServiceConfiguration",
        {
            key: value
            for key, value in (
                ("serviceName", configuration.service_name),
                ("osFamily", configuration.os_family),
                ("osVersion", configuration.os_version),
            )
            if value is not None
        },
    )
    for role in configuration.roles:
        element = _sub(root, "Role", name=role.name)
        _sub(element, "Instances", count=role.instances)
        image = (artifacts or {}).get(role.name, RoleArtifacts()).image
        if image is not None:
            _sub(element, "OsImage", href=image)
        settings = _sub(element, "ConfigurationSettings")
        for name, value in role.settings.items():
            _sub(settings, "Setting", name=name, value=reveal(value))
        if role.certificates:
            certificates = _sub(element, "Certificates")
            for name, cert in role.certificates.items():
                _sub(
                    certificates,
                    "Certificate",
                    name=name,
                    thumbprint=cert.thumbprint,
                    thumbprintAlgorithm=cert.thumbprint_algorithm,
                )
    return _serialize(root, CSCFG_NAMESPACE)
