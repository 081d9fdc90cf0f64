"""The service definition: roles and what they expose. Fixed for a deployment (Azure's .csdef).

Shapes and defaults follow Azure's published schema ("Azure Cloud Services (classic)
Definition Schema", learn.microsoft.com/azure/cloud-services/schema-csdef-file and its
WebRole/WorkerRole/LoadBalancerProbe pages). Names are camelCase on the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from ._base import Model, Name, Port

__all__ = [
    "CertificateDefinition",
    "EntryPoint",
    "EnvironmentVariable",
    "ExecutionContext",
    "InputEndpoint",
    "InternalEndpoint",
    "LoadBalancerProbe",
    "LocalStorage",
    "RoleDefinition",
    "RoleKind",
    "ServiceDefinition",
    "SettingDefinition",
    "StartupTask",
    "TaskType",
]

MAX_ROLES = 25  # "It can contain up to 25 roles" (csdef schema)
MAX_UPDATE_DOMAINS = 20  # "The max number of upgrade domains is 20 and the default is 5"


class RoleKind(StrEnum):
    """What kind of role: Azure's WebRole, WorkerRole or (VM role) VirtualMachineRole."""

    WEB = "web"
    WORKER = "worker"
    VM = "vm"


class ExecutionContext(StrEnum):
    LIMITED = "limited"
    ELEVATED = "elevated"


class TaskType(StrEnum):
    SIMPLE = "simple"
    BACKGROUND = "background"
    FOREGROUND = "foreground"


class InputEndpoint(Model):
    """An endpoint reachable from outside the service, through its load balancer."""

    name: Name = Field(description="Endpoint name, unique in the role.")
    protocol: Literal["http", "https", "tcp", "udp"] = Field(
        description="Transport protocol: http, https, tcp or udp."
    )
    port: Port = Field(description="Public port on the service's address; unique in the service.")
    local_port: Port | None = Field(
        default=None, description="Port the instance listens on; defaults to `port`."
    )
    certificate: str | None = Field(
        default=None, description="Certificate (declared by the role) for https endpoints."
    )
    load_balancer_probe: str | None = Field(
        default=None, description="Name of a load balancer probe checking this endpoint."
    )

    @property
    def effective_local_port(self) -> int:
        return self.local_port if self.local_port is not None else self.port


class InternalEndpoint(Model):
    """An endpoint reachable only from other instances of the service."""

    name: Name = Field(description="Endpoint name, unique in the role.")
    protocol: Literal["http", "tcp", "udp", "any"] = Field(
        description="Transport protocol: http, tcp, udp or any."
    )
    port: Port | None = Field(
        default=None, description="Fixed port; omitted means the fabric assigns one."
    )


class SettingDefinition(Model):
    """A configuration setting the role reads; its value is given by the configuration."""

    name: Name = Field(description="Setting name, unique in the role.")
    secret: bool = Field(
        default=False,
        description="The value is a secret: kept secret in state and never printed.",
    )


class CertificateDefinition(Model):
    """A certificate installed on each instance; the configuration gives its thumbprint."""

    name: Name = Field(description="Certificate name, unique in the role.")
    store_location: Literal["LocalMachine", "CurrentUser"] = Field(
        default="LocalMachine", description="Certificate store location."
    )
    store_name: str = Field(
        default="My", min_length=1, description="Store name: My, Root, CA, ... or a custom store."
    )
    permission_level: Literal["limitedOrElevated", "elevated"] = Field(
        default="limitedOrElevated", description="Which processes may read the private key."
    )


class LocalStorage(Model):
    """A scratch directory on the instance's local disk."""

    name: Name = Field(description="Local storage name, unique in the role.")
    size_mb: int = Field(
        default=100, ge=1, description="Size in MB (Azure's default is 100, minimum 1)."
    )
    clean_on_role_recycle: bool = Field(
        default=True, description="Empty the directory when the role restarts."
    )


class EnvironmentVariable(Model):
    """An environment variable: a fixed value, or a value read from the role environment."""

    name: Name = Field(description="Variable name.")
    value: str | None = Field(default=None, description="Fixed value.")
    role_instance_value: str | None = Field(
        default=None,
        description="XPath into the role environment (Azure's RoleInstanceValue), e.g. "
        "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='HttpIn']/@port.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvironmentVariable:
        if (self.value is None) == (self.role_instance_value is None):
            raise ValueError(
                f"variable {self.name!r} needs exactly one of value or roleInstanceValue"
            )
        return self


class StartupTask(Model):
    """A command run on each instance before the role starts."""

    command_line: str = Field(min_length=1, description="Command, run in the package root.")
    execution_context: ExecutionContext = Field(
        default=ExecutionContext.LIMITED, description="limited, or elevated (administrator)."
    )
    task_type: TaskType = Field(
        default=TaskType.SIMPLE,
        description="simple (run to completion before the next), background or foreground.",
    )
    environment: list[EnvironmentVariable] = Field(
        default_factory=list, description="Environment of the task."
    )


class EntryPoint(Model):
    """What the role runs: a program command line or a .NET assembly."""

    command_line: str | None = Field(default=None, description="Program to run.")
    assembly_name: str | None = Field(default=None, description=".NET entry assembly.")
    target_framework_version: str | None = Field(
        default=None, description=".NET framework of the assembly, e.g. v4.0."
    )
    set_ready_on_process_start: bool = Field(
        default=False, description="Report the instance ready as soon as the process starts."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> EntryPoint:
        if (self.command_line is None) == (self.assembly_name is None):
            raise ValueError("an entry point needs exactly one of commandLine or assemblyName")
        return self


class LoadBalancerProbe(Model):
    """A health probe the load balancer uses to take instances in and out of rotation."""

    name: Name = Field(description="Probe name, referenced by input endpoints.")
    protocol: Literal["http", "tcp"] = Field(description="http (expects 200) or tcp (connect).")
    path: str | None = Field(default=None, description="URI path probed; required for http.")
    port: Port | None = Field(
        default=None, description="Port probed; defaults to the endpoint's local port."
    )
    interval_in_seconds: int = Field(
        default=15, ge=5, description="Seconds between probes (Azure default 15, minimum 5)."
    )
    timeout_in_seconds: int = Field(
        default=31, ge=11, description="Seconds without answer before removal (default 31)."
    )

    @model_validator(mode="after")
    def _http_needs_path(self) -> LoadBalancerProbe:
        if self.protocol == "http" and not self.path:
            raise ValueError(f"http probe {self.name!r} needs a path, e.g. /health")
        return self


class RoleDefinition(Model):
    """One role: what its instances run, expose and need."""

    name: Name = Field(description="Role name, unique in the service.")
    kind: RoleKind = Field(description="web, worker or vm.")
    vm_size: str = Field(default="Small", description="VM size name, e.g. Small, Standard_D2_v2.")
    input_endpoints: list[InputEndpoint] = Field(
        default_factory=list, description="Endpoints reachable from outside."
    )
    internal_endpoints: list[InternalEndpoint] = Field(
        default_factory=list, description="Endpoints reachable inside the service."
    )
    settings: list[SettingDefinition] = Field(
        default_factory=list, description="Configuration settings the role reads."
    )
    certificates: list[CertificateDefinition] = Field(
        default_factory=list, description="Certificates installed on each instance."
    )
    local_storage: list[LocalStorage] = Field(
        default_factory=list, description="Local scratch directories."
    )
    startup_tasks: list[StartupTask] = Field(
        default_factory=list, description="Commands run before the role starts, in order."
    )
    execution_context: ExecutionContext = Field(
        default=ExecutionContext.LIMITED,
        description="Privileges of the role's entry point: limited or elevated.",
    )
    environment: list[EnvironmentVariable] = Field(
        default_factory=list, description="Environment of the role's entry point."
    )
    entry_point: EntryPoint | None = Field(
        default=None, description="What the role runs; web roles may leave it to the package."
    )

    def setting(self, name: str) -> SettingDefinition | None:
        return next((item for item in self.settings if item.name == name), None)


class ServiceDefinition(Model):
    """The roles of a service and what they expose (Azure's ServiceDefinition.csdef)."""

    name: Name = Field(description="Service name; the configuration must use the same name.")
    update_domain_count: int = Field(
        default=5,
        ge=1,
        le=MAX_UPDATE_DOMAINS,
        # Azure's .csdef attribute says "upgrade"; its documentation says "update domain".
        validation_alias=AliasChoices(
            "updateDomainCount", "update_domain_count", "upgradeDomainCount"
        ),
        description="Update domains instances are spread across (default 5, at most 20). "
        "Azure's upgradeDomainCount is accepted too.",
    )
    topology_change_discovery: Literal["Blast", "UpgradeDomainWalk"] | None = Field(
        default=None, description="How instances learn of topology changes."
    )
    roles: list[RoleDefinition] = Field(
        min_length=1, max_length=MAX_ROLES, description="The roles (1 to 25)."
    )
    load_balancer_probes: list[LoadBalancerProbe] = Field(
        default_factory=list, description="Health probes referenced by input endpoints."
    )

    def role(self, name: str) -> RoleDefinition | None:
        return next((item for item in self.roles if item.name == name), None)
