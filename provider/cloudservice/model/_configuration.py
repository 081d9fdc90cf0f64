"""The service configuration: what may change while the service runs (Azure's .cscfg).

Setting values are strings. A value given as ``{"secret": "..."}`` (or defined with
``secret: true``) is held as a pydantic ``SecretStr``: ``repr`` and every dump show it masked
unless the caller passes ``context={"reveal_secrets": True}``, which only the explicit
export paths (``.cscfg`` export, writing a service document to a file) do.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import (
    Field,
    FieldSerializationInfo,
    SecretStr,
    field_serializer,
    field_validator,
)

from ._base import Model, Name

__all__ = [
    "MASK",
    "CertificateReference",
    "RoleConfiguration",
    "ServiceConfiguration",
    "SettingValue",
    "UpgradeMode",
    "reveal",
]

MASK = "**********"
"""What a secret looks like when printed. A document holding it has lost the real value."""

SettingValue = str | SecretStr  # str first: pydantic would otherwise take any str as secret


class UpgradeMode(StrEnum):
    """How an upgrade walks the update domains (Azure's Upgrade Deployment ``Mode``)."""

    AUTO = "auto"
    MANUAL = "manual"
    SIMULTANEOUS = "simultaneous"


def reveal(value: SettingValue) -> str:
    """The plain text of a setting value, secret or not. Call only where it must leave."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _coerce_setting_value(raw: Any) -> SettingValue:
    if isinstance(raw, SecretStr | str):
        return raw
    if isinstance(raw, bool):  # YAML `true` -> Azure's "true"; test bool before int
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return str(raw)
    if isinstance(raw, Mapping) and set(raw) == {"secret"}:
        inner = raw["secret"]
        if isinstance(inner, SecretStr):
            return inner
        return SecretStr(reveal(_coerce_setting_value(inner)))
    raise ValueError('a setting value is a string or {"secret": "..."}')


class CertificateReference(Model):
    """Which certificate (by thumbprint) fills a certificate the role defines."""

    thumbprint: str = Field(min_length=1, description="Certificate thumbprint (hex).")
    thumbprint_algorithm: str = Field(default="sha1", description="Thumbprint hash, e.g. sha1.")


class RoleConfiguration(Model):
    """Instance count, setting values and certificates of one role."""

    name: Name = Field(description="Role name; must match a role of the definition.")
    instances: int = Field(default=1, ge=1, description="Number of instances (at least 1).")
    settings: dict[str, SettingValue] = Field(
        default_factory=dict,
        description='Setting values by name: a string, or {"secret": "..."} for secrets.',
    )
    certificates: dict[str, CertificateReference] = Field(
        default_factory=dict, description="Certificate thumbprints by certificate name."
    )

    @field_validator("settings", mode="before")
    @classmethod
    def _coerce_settings(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        coerced = {}
        for name, value in raw.items():
            try:
                coerced[name] = _coerce_setting_value(value)
            except ValueError as exc:
                raise ValueError(f"setting {name!r}: {exc}") from exc
        return coerced

    @field_serializer("settings", when_used="always")
    def _dump_settings(
        self, settings: dict[str, SettingValue], info: FieldSerializationInfo
    ) -> Any:
        show = bool(info.context and info.context.get("reveal_secrets"))
        return {
            name: {"secret": value.get_secret_value() if show else MASK}
            if isinstance(value, SecretStr)
            else value
            for name, value in settings.items()
        }

    def secret_setting_names(self) -> list[str]:
        """Names of the settings whose values are secret."""
        return [name for name, value in self.settings.items() if isinstance(value, SecretStr)]


class ServiceConfiguration(Model):
    """What may change while the service runs (Azure's ServiceConfiguration.cscfg)."""

    service_name: Name = Field(description="Must equal the definition's name.")
    os_family: str | None = Field(
        default=None, description="Guest OS family (Azure: 2-7); not used by VM roles."
    )
    os_version: str = Field(
        default="*", min_length=1, description='Guest OS version; "*" follows the latest.'
    )
    upgrade_mode: UpgradeMode = Field(
        default=UpgradeMode.AUTO,
        description="auto (walk update domains), manual (one domain per request) or "
        "simultaneous (all at once, with downtime).",
    )
    roles: list[RoleConfiguration] = Field(min_length=1, description="One entry per role.")

    @field_validator("os_family", mode="before")
    @classmethod
    def _family_as_text(cls, raw: Any) -> Any:
        return str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw

    @property
    def follows_latest_os(self) -> bool:
        return self.os_version == "*"

    def role(self, name: str) -> RoleConfiguration | None:
        return next((item for item in self.roles if item.name == name), None)
