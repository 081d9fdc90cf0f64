"""What the front door is asked to serve: plain pydantic models, rendered by `config.py`."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# HAProxy identifiers allow [A-Za-z0-9_.:-]; the colon is left out so that "listener/server"
# and "host:port" never become ambiguous in the runtime API or in messages.
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_PATH = re.compile(r"^/[\x21-\x7e]*$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Server(_Spec):
    """One role instance behind a listener."""

    name: str = Field(pattern=_NAME, description="Unique within its listener, e.g. web-0.")
    address: str = Field(description="IPv4 address or host name the instance answers on.")
    port: int = Field(ge=1, le=65535)

    @field_validator("address")
    @classmethod
    def _ipv4_or_hostname(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError as exc:
            if not _HOSTNAME.match(value):
                message = f"address must be an IPv4 address or host name, got {value!r}"
                raise ValueError(message) from exc
            return value
        if address.version != 4:
            raise ValueError(f"address must be IPv4 (IPv6 is not supported yet), got {value!r}")
        return str(address)


class HealthCheck(_Spec):
    """The active probe HAProxy sends to each server of a listener."""

    protocol: Literal["http", "tcp"] = "http"
    path: str = Field("/", description="HTTP probe: GET this path; healthy means status 200.")
    interval_seconds: float = Field(2.0, gt=0, le=3600)
    timeout_seconds: float = Field(1.0, gt=0, le=3600)
    fall: int = Field(2, ge=1, le=100, description="Failed probes in a row before DOWN.")
    rise: int = Field(1, ge=1, le=100, description="Passed probes in a row before UP again.")

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not _PATH.match(value):
            raise ValueError(f"path must start with / and have no spaces, got {value!r}")
        return value

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> HealthCheck:
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds}) must not exceed "
                f"interval_seconds ({self.interval_seconds})"
            )
        return self


class Listener(_Spec):
    """One endpoint: a frontend on bind_address:port and the servers it balances over."""

    name: str = Field(pattern=_NAME)
    protocol: Literal["http", "tcp"] = "http"
    bind_address: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    probe: HealthCheck = HealthCheck()
    servers: tuple[Server, ...] = ()

    @field_validator("bind_address")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        address = ipaddress.ip_address(value)
        if address.version != 4:
            raise ValueError(f"bind_address must be IPv4, got {value!r}")
        return str(address)

    @model_validator(mode="after")
    def _unique_servers(self) -> Listener:
        names = [server.name for server in self.servers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"listener {self.name!r} has duplicate server names {duplicates}")
        return self


class FrontDoorSpec(_Spec):
    """The whole front door of one service: its listeners."""

    name: str = Field(pattern=_NAME)
    listeners: tuple[Listener, ...] = Field(min_length=1)
    drain_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How long an old HAProxy (after a reload or stop) may keep serving the "
        "connections it has before they are cut.",
    )

    @model_validator(mode="after")
    def _unique_listeners(self) -> FrontDoorSpec:
        names = [listener.name for listener in self.listeners]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate listener names {duplicates}")
        binds: dict[int, str] = {}
        for listener in self.listeners:
            other = binds.get(listener.port)
            if other is not None:
                raise ValueError(
                    f"listeners {other!r} and {listener.name!r} both use port {listener.port}"
                )
            binds[listener.port] = listener.name
        return self

    def listener(self, name: str) -> Listener:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        raise KeyError(name)
