"""A stack's configuration (`stacks/Pulumi.<stack>.yaml`), checked before anything is touched.

The program's own keys (`<project>:<key>`) are validated by one pydantic model: a key that is
not one of them, or a value of the wrong kind, is one error naming the key and the stack's
file (`pulumi.RunError`: no traceback), and nothing is created, changed or deleted. Other
namespaces (`libvirt:`, `cloudservice:`) belong to their providers, which check their own.
Secret values are never shown in an error: only where the problem is.
"""

from __future__ import annotations

import json
import typing
from ipaddress import IPv4Network, ip_address
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1, le=100)]


def _address(value: str) -> str:
    ip_address(value)  # raises ValueError: "does not appear to be an IPv4 or IPv6 address"
    return value


class HostConfig(BaseModel):
    """One libvirt host of the stack (a fault domain)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    uri: str = Field(min_length=1, description="libvirt URI, e.g. qemu+ssh://deploy@h2/system.")
    cidr: IPv4Network | None = Field(
        None, description="The service network's subnet on this host (each host its own)."
    )
    pool_path: str | None = Field(None, description="Its pool's directory (default poolPath).")


class StackConfig(BaseModel):
    """What may differ between stacks of the one program (dev, staging, production)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    pool_path: str | None = Field(None, description="Where the service's disks live on the host.")
    cidr: IPv4Network | None = Field(None, description="The service network's subnet.")
    front_door_address: Annotated[str, AfterValidator(_address)] | None = Field(
        None, description="Where the front door listens (default 127.0.0.1)."
    )
    front_door_ports: dict[str, Port] = Field(
        default_factory=dict, description='Its ports by listener, e.g. {"Web.HttpIn": 8080}.'
    )
    service_file: str | None = Field(None, description="The service document.")
    instances: dict[str, Count] = Field(
        default_factory=dict, description='Instance counts by role, e.g. {"Web": 3}.'
    )
    upgrade_mode: Literal["auto", "manual", "simultaneous"] | None = Field(
        None, description="How updates roll through update domains (default: the service's)."
    )
    images: dict[str, str] = Field(default_factory=dict, description="VM role images by role.")
    packages: dict[str, str] = Field(default_factory=dict, description="Role packages by role.")
    os_version: str | None = Field(None, description="Guest OS version of Web/Worker roles.")
    secret_settings: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Secret setting values by role (set with --secret)."
    )
    certificates: dict[str, str] = Field(
        default_factory=dict, description="Certificate and key (PEM) by thumbprint (secret)."
    )
    web_image: str | None = Field(None, description='The VM role "Web"\'s .vhd.')
    web_instances: Count | None = Field(None, description='The VM role "Web"\'s count.')
    manual_update_domain: NonNegativeInt | None = Field(
        None, description="In manual upgrade mode, the last update domain to upgrade."
    )
    health_timeout_seconds: PositiveFloat | None = Field(
        None, description="How long a health gate waits for an instance."
    )
    hosts: list[HostConfig] = Field(
        default_factory=list,
        description="The libvirt hosts instances are spread over (fault domains); the first "
        "is the one cloudservice:uri and libvirt:uri name.",
    )
    promote_from: str | None = Field(
        None,
        min_length=1,
        description="Run only what this stack (e.g. staging) ran healthy: its releases.",
    )

    @model_validator(mode="after")
    def _os_of_a_promotion(self) -> StackConfig:
        if self.promote_from and self.os_version:
            raise ValueError(
                "osVersion: a promoted stack runs the guest OS versions its source ran "
                "(remove osVersion, or promoteFrom)"
            )
        return self


def load_stack_config() -> StackConfig:
    """The running stack's configuration, validated; a problem is one `pulumi.RunError`."""
    project, stack = pulumi.get_project(), pulumi.get_stack()
    return parse_stack_config(_project_values(project), project, stack_file(stack))


def parse_stack_config(values: dict[str, str], project: str, where: str) -> StackConfig:
    """`values` (key -> the string Pulumi passes: JSON for objects) as a StackConfig."""
    fields = {info.alias or name: info for name, info in StackConfig.model_fields.items()}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise pulumi.RunError(
            f"{where}: unknown config key {project}:{unknown[0]} (this program reads: {known})"
        )
    decoded: dict[str, Any] = {}
    for key, text in values.items():
        decoded[key] = _decoded(text, fields[key].annotation)
        if decoded[key] is _NOT_JSON:
            kind = _KINDS.get(typing.get_origin(fields[key].annotation), "a value")
            raise pulumi.RunError(f"{where}: config {project}:{key} must be {kind}")
    try:
        return StackConfig.model_validate(decoded)
    except ValidationError as exc:
        raise pulumi.RunError(_one_line(exc, project, where)) from None


def stack_file(stack: str) -> str:
    """Where a stack's configuration lives, as the project's Pulumi.yaml says."""
    directory = "stacks" if Path("stacks").is_dir() else "."
    return f"{directory}/Pulumi.{stack}.yaml"


_NOT_JSON = object()
_KINDS: dict[Any, str] = {dict: "an object", list: "a list"}


def _project_values(project: str) -> dict[str, str]:
    everything = {**get_config_env(), **CONFIG.get()}
    prefix = f"{project}:"
    return {k.removeprefix(prefix): str(v) for k, v in everything.items() if k.startswith(prefix)}


def _decoded(text: str, annotation: Any) -> Any:
    """Objects arrive as JSON; anything else as the text given, for pydantic to read."""
    if not _is_json(annotation):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _is_json(annotation: Any) -> bool:
    """Objects and lists: what Pulumi passes as JSON."""
    return typing.get_origin(annotation) in (dict, list)


def _one_line(exc: ValidationError, project: str, where: str) -> str:
    """The problems, each as `<project>:<key path>: what is wrong`; never a secret's value."""
    problems = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        problems.append(f"config {project}:{path}: {error['msg']}")
    return f"{where}: " + "; ".join(problems)
