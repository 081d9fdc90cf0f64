"""The service document: one file holding a service's definition, configuration and artifacts.

``ServiceSpec`` is what ``import-azure`` writes and ``validate``/``plan`` read, and what the
provider's resources take as input. YAML or JSON, camelCase keys (see docs/model.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, model_validator

from ..files import why_unreadable
from ._base import Model, validate_as
from ._configuration import RoleConfiguration, ServiceConfiguration
from ._definition import ServiceDefinition
from .errors import Problem, ValidationProblems

__all__ = ["API_VERSION", "RoleArtifacts", "ServiceSpec", "dump_spec", "load_spec"]

API_VERSION: Literal["cloudservice.model/v1"] = "cloudservice.model/v1"


class RoleArtifacts(Model):
    """What a role's instances boot from: an application package, or (VM roles) a disk image."""

    package: str | None = Field(
        default=None, description="Role package (built by `cloudservice package build`)."
    )
    package_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the package file; a change means new code (rolling upgrade).",
    )
    image: str | None = Field(default=None, description="Disk image of a VM role (path or id).")


class ServiceSpec(Model):
    """A whole service: definition, configuration and per-role artifacts."""

    api_version: Literal["cloudservice.model/v1"] = Field(
        default=API_VERSION, description="Document format version."
    )
    definition: ServiceDefinition = Field(description="Roles and what they expose.")
    configuration: ServiceConfiguration = Field(description="Counts, settings, certificates, OS.")
    artifacts: dict[str, RoleArtifacts] = Field(
        default_factory=dict, description="Package or disk image per role name."
    )

    @model_validator(mode="before")
    @classmethod
    def _mark_defined_secrets(cls, data: Any) -> Any:
        # A setting defined `secret: true` is secret whatever form its value was given in;
        # wrap it before validation so every secret value is a SecretStr from here on.
        if not isinstance(data, Mapping):
            return data
        secret = _defined_secrets(data.get("definition"))
        if not secret:
            return data
        return {**data, "configuration": _wrap_secrets(data.get("configuration"), secret)}

    def secret_settings(self) -> dict[str, list[str]]:
        """Role name -> names of its settings whose values are secret (for Output.secret)."""
        return {
            role.name: names
            for role in self.configuration.roles
            if (names := role.secret_setting_names())
        }

    def artifacts_for(self, role: str) -> RoleArtifacts:
        return self.artifacts.get(role, RoleArtifacts())


# These helpers run before validation, on whatever the document holds: they only act on
# well-formed parts and leave the rest for pydantic to report.


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def _items(item: Any, key: str) -> list[Any] | tuple[Any, ...]:
    value = _get(item, key)
    return value if isinstance(value, list | tuple) else ()


def _name(item: Any) -> str | None:
    name = _get(item, "name")
    return name if isinstance(name, str) else None


def _defined_secrets(definition: Any) -> dict[str, set[str]]:
    secret: dict[str, set[str]] = {}
    for role in _items(definition, "roles"):
        names = {
            name
            for setting in _items(role, "settings")
            if _get(setting, "secret") is True and (name := _name(setting))
        }
        if names and (role_name := _name(role)):
            secret.setdefault(role_name, set()).update(names)
    return secret


def _wrap_secrets(configuration: Any, secret: dict[str, set[str]]) -> Any:
    roles = _items(configuration, "roles")
    if not roles:
        return configuration
    wrapped = [_wrap_role(role, secret.get(_name(role) or "", set())) for role in roles]
    if isinstance(configuration, ServiceConfiguration):
        return configuration.model_copy(update={"roles": wrapped})
    return {**configuration, "roles": wrapped}


def _wrap_role(role: Any, names: set[str]) -> Any:
    settings = _get(role, "settings")
    if not names or not isinstance(settings, Mapping):
        return role
    new = {
        key: SecretStr(value) if key in names and isinstance(value, str) else value
        for key, value in settings.items()
    }
    if isinstance(role, RoleConfiguration):
        return role.model_copy(update={"settings": new})
    return {**role, "settings": new} if isinstance(role, Mapping) else role


def load_spec(path: str | os.PathLike[str]) -> ServiceSpec:
    """Read a service document (YAML, or JSON which is YAML too). Raises ValidationProblems."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValidationProblems([Problem(source, "", why_unreadable(exc))]) from exc
    except UnicodeDecodeError as exc:
        raise ValidationProblems([Problem(source, "", f"not UTF-8 text: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationProblems([Problem(source, "", f"not valid YAML/JSON: {exc}")]) from exc
    if not isinstance(data, Mapping):
        raise ValidationProblems(
            [Problem(source, "", "expected a mapping with definition and configuration")]
        )
    return validate_as(ServiceSpec, data, source)


def dump_spec(spec: ServiceSpec, *, fmt: Literal["yaml", "json"], reveal_secrets: bool) -> str:
    """The document text. Secrets are ``{"secret": "**********"}`` unless ``reveal_secrets``."""
    data = spec.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        context={"reveal_secrets": reveal_secrets},
    )
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
