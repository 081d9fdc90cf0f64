"""What the driver is asked to build: plain pydantic models, turned into XML by `xml.py`."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolSpec(_Spec):
    name: str = Field(pattern=_NAME)
    path: str = Field(description="Absolute directory that holds the pool's volumes.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"pool path must be absolute, got {value!r}")
        return value


VolumeFormat = Literal["raw", "qcow2", "vpc"]


class VolumeSpec(_Spec):
    name: str = Field(pattern=_NAME)
    capacity: int = Field(ge=0, description="Virtual size in bytes.")
    format: VolumeFormat = "raw"
    backing_path: str | None = None
    backing_format: VolumeFormat | None = None


NetworkMode = Literal["nat", "isolated"]


class NetworkSpec(_Spec):
    name: str = Field(pattern=_NAME)
    cidr: str = Field(description="IPv4 subnet of the network, e.g. 10.213.0.0/24.")
    mode: NetworkMode = "nat"
    dhcp: bool = True

    @field_validator("cidr")
    @classmethod
    def _ipv4_subnet(cls, value: str) -> str:
        network = ipaddress.ip_network(value, strict=True)
        if network.version != 4 or network.prefixlen > 29:
            raise ValueError(f"cidr must be an IPv4 subnet of /29 or larger, got {value!r}")
        return str(network)

    @property
    def bridge(self) -> str:
        # Linux limits interface names to 15 characters.
        return ("csv-" + self.name)[:15]


class PortForward(_Spec):
    host_port: int = Field(ge=1, le=65535)
    guest_port: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"


class NetworkInterface(_Spec):
    """A NIC on a libvirt network: the network's DHCP reservation for `mac` gives its address."""

    network: str = Field(pattern=_NAME)
    mac: str = Field(pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class AttachedDisk(_Spec):
    """A disk beside the boot disk: read-only media (a package) or a cdrom that can be swapped."""

    path: str
    target: str = Field(pattern=r"^(vd|hd)[a-z]$", description="vdb, vdc (virtio) or hdc (IDE).")
    format: VolumeFormat = "raw"
    device: Literal["disk", "cdrom"] = "disk"
    readonly: bool = True


class DomainSpec(_Spec):
    """One role instance: a guest booting from its own overlay disk."""

    name: str = Field(pattern=_NAME)
    domain_type: Literal["kvm", "qemu"] = "qemu"
    vcpus: int = Field(ge=1, le=64)
    memory_mib: int = Field(ge=64)
    disk_path: str
    disk_format: VolumeFormat = "qcow2"
    serial_log: str
    # Endpoints reach the guest through QEMU user-mode networking, forwarded from the host's
    # loopback: libvirt 9.0 has no working port forwarding of its own (passt is ignored).
    forwards: tuple[PortForward, ...] = ()
    interfaces: tuple[NetworkInterface, ...] = ()
    disks: tuple[AttachedDisk, ...] = ()
    # virtio-serial ports the guest sees as /dev/virtio-ports/<name>, the host reads by stream.
    channels: tuple[str, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)
