"""Role instances, whatever the role's kind: a domain booting from its own scratch overlay.

An instance keeps no state worth keeping: starting one drops whatever was left of it first,
so "start" is also "reimage". On the service's network an instance has a fixed address (a
DHCP reservation of its MAC) and its endpoints answer there; without one, its endpoints are
forwarded from free ports on the host's loopback (QEMU user-mode networking).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from ..model import Model, UpgradeMode, lookup_vm_size
from ..virt import (
    AttachedDisk,
    DomainSpec,
    Host,
    NetworkInterface,
    PortForward,
    VolumeInfo,
    detect_accelerator,
)
from ._health import free_loopback_port
from ._placement import fault_domain_indices, update_domain_of

LOOPBACK = "127.0.0.1"
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"


class Endpoint(Model):
    name: str = Field(default="http", description="Endpoint name, as in the service definition.")
    protocol: Literal["http", "tcp"] = Field(default="http", description="http or tcp.")
    port: int = Field(default=80, ge=1, le=65535, description="Port the guest listens on.")


class Instance(Model):
    name: str
    update_domain: int
    host: str = Field(
        description="The libvirt host the instance runs on: its URI, unless that is a secret."
    )
    address: str = Field(description="Where its endpoints answer: the host's loopback.")
    ports: dict[str, int]
    urls: list[str]
    layer: str
    settings: str = Field(
        default="", description="Digest of the VM size and endpoints it was started with."
    )
    started_at: float = Field(description="When the instance was last (re)started, Unix time.")
    healthy_after_seconds: float | None = Field(
        default=None, description="Seconds from start to the first healthy probe answer."
    )
    # Web and Worker roles: what the guest agent runs (docs/guest.md).
    package: str = Field(default="", description="SHA-256 of the role package it runs.")
    configuration: str = Field(default="", description="Digest of its configuration document.")
    program: str = Field(
        default="", description="Digest of what its role runs (entry point, tasks, environment)."
    )
    generation: int = Field(default=0, description="Generation of its configuration medium.")
    uptime_seconds: float | None = Field(
        default=None, description="Guest uptime its agent reported at the last health gate."
    )
    rotation: Literal["in", "out"] | None = Field(
        default=None,
        description="In the front door's rotation, or out of it (a rollout stopped while it "
        "was moving); none without a front door.",
    )


class Placement(Model):
    """Where a role's instances sit: the service network and the front door, when it has them."""

    network: str | None = Field(
        default=None, description="The service's libvirt network; none: loopback forwards."
    )
    cidr: str | None = Field(default=None, description="The network's IPv4 subnet.")
    address_offset: int | None = Field(
        default=None,
        ge=2,
        description="Instance i gets host number addressOffset + i of cidr (default 10).",
    )
    front_door: str | None = Field(
        default=None,
        description="The service front door's directory: rollouts take instances out of its "
        "rotation and back.",
    )

    def service_network(self) -> ServiceNetwork | None:
        if self.network is None or self.cidr is None:
            return None
        return ServiceNetwork(self.network, self.cidr, self.address_offset or 10)


class RoleSpec(Placement):
    """What every role kind is asked for: where it lives, how many instances of what size, and
    how changes roll through its update domains."""

    name: str = Field(
        description="Prefix of the role's objects on the host, e.g. cs-dev-web.",
        pattern=r"^[a-z0-9][a-z0-9-]{0,40}$",
    )
    pool: str = Field(description="Storage pool for the role's images, media and overlays.")
    instance_count: int = Field(ge=1, le=100, description="Number of instances.")
    vm_size: str = Field(default="ExtraSmall", description="Azure VM size name.")
    update_domain_count: int = Field(
        default=5, ge=1, le=20, description="Update domains instances are spread over."
    )
    upgrade_mode: UpgradeMode = Field(
        default=UpgradeMode.AUTO, description="auto, manual or simultaneous."
    )
    manual_update_domain: int | None = Field(
        default=None, ge=0, description="In manual mode, the last update domain to upgrade."
    )
    health_timeout_seconds: float = Field(default=300, gt=0, description="Health gate deadline.")
    max_chain_depth: int = Field(
        default=4, ge=1, le=16, description="Layers above which a new image is uploaded whole."
    )
    fault_domain_count: int = Field(
        default=1,
        ge=1,
        le=20,
        description="Hosts the role's instances are spread over, one resource per host.",
    )
    fault_domain: int = Field(
        default=0,
        ge=0,
        description="The host this resource is: it runs the instances of that fault domain.",
    )

    @model_validator(mode="after")
    def _holds_instances(self) -> RoleSpec:
        if self.fault_domain >= self.fault_domain_count:
            raise ValueError(
                f"faultDomain {self.fault_domain} is not one of the {self.fault_domain_count} "
                "fault domains (0 to faultDomainCount - 1)"
            )
        if not self.instance_indexes():
            raise ValueError(
                f"fault domain {self.fault_domain} of {self.fault_domain_count} holds none of "
                f"the role's {self.instance_count} instances: declare no resource for it"
            )
        return self

    def instance_indexes(self) -> list[int]:
        """The indexes of the instances this host runs (all of them with one fault domain)."""
        return fault_domain_indices(
            self.instance_count,
            self.update_domain_count,
            self.fault_domain_count,
            self.fault_domain,
        )


@dataclass(frozen=True)
class ServiceNetwork:
    """The service's libvirt network, and the block of its addresses a role's instances take:
    instance i of the role is host number `offset + i` of `cidr`, whoever starts it."""

    name: str
    cidr: str
    offset: int

    def address(self, index: int) -> str:
        return instance_address(self.cidr, self.offset, index)

    @staticmethod
    def mac(instance: str) -> str:
        # Stable per instance name: the reservation outlives reimages. 52:54:00 is QEMU's prefix.
        digest = hashlib.sha256(instance.encode()).digest()
        return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def instance_address(cidr: str, offset: int, index: int) -> str:
    network = ipaddress.ip_network(cidr)
    number = offset + index
    if not 2 <= number < network.num_addresses - 1:  # .1 is the host's end of the bridge
        raise ValueError(f"instance {index} at offset {offset} does not fit in {cidr}")
    return str(network.network_address + number)


@dataclass(frozen=True)
class Attachments:
    """What a role kind attaches to an instance besides its boot disk (docs/guest.md)."""

    disks: tuple[AttachedDisk, ...] = ()
    channels: tuple[str, ...] = ()
    package: str = ""
    configuration: str = ""
    program: str = ""
    generation: int = 0


@dataclass(frozen=True)
class InstanceTemplate:
    """What every instance of a role starts from: the recipe for one more, or a reimage."""

    role: str  # the role's name on the host: instance i is `<role>-<i>`
    pool: str
    vm_size: str
    update_domain_count: int
    endpoints: Sequence[Endpoint]
    disk: VolumeInfo  # read-only: the instance's overlay backs onto it
    settings: str  # digest of what else the instance starts with
    network: ServiceNetwork | None = None  # None: loopback forwards (user-mode networking)
    # Called with the instance's name and index when it starts: its media and channels.
    attach: Callable[[str, int], Attachments] = field(default=lambda _name, _index: Attachments())

    @classmethod
    def of(
        cls,
        spec: RoleSpec,
        endpoints: Sequence[Endpoint],
        disk: VolumeInfo,
        settings: str,
        attach: Callable[[str, int], Attachments] | None = None,
    ) -> InstanceTemplate:
        """A role's template: its spec, on `disk`, started with `settings` (a digest)."""
        return cls(
            role=spec.name,
            pool=spec.pool,
            vm_size=spec.vm_size,
            update_domain_count=spec.update_domain_count,
            endpoints=endpoints,
            disk=disk,
            settings=settings,
            network=spec.service_network(),
            **({"attach": attach} if attach else {}),
        )


def instance_name(role: str, index: int) -> str:
    return f"{role}-{index}"


def instance_index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def sorted_instances(instances: Iterable[Instance]) -> list[Instance]:
    return sorted(instances, key=lambda i: instance_index(i.name))


def start_instance(host: Host, template: InstanceTemplate, index: int) -> Instance:
    """Start instance `index` afresh on the template's disk (whatever was left of it goes)."""
    name = instance_name(template.role, index)
    drop_instance(host, template.pool, name)
    disk = template.disk
    overlay = host.create_overlay(template.pool, f"{name}.qcow2", disk, disk.capacity)
    size = lookup_vm_size(template.vm_size)
    attachments = template.attach(name, index)
    forwards: tuple[PortForward, ...] = ()
    interfaces: tuple[NetworkInterface, ...] = ()
    if template.network is None:
        address = LOOPBACK
        ports = {endpoint.name: free_loopback_port() for endpoint in template.endpoints}
        forwards = tuple(
            PortForward(host_port=ports[e.name], guest_port=e.port) for e in template.endpoints
        )
    else:
        network = template.network
        address, mac = network.address(index), network.mac(name)
        host.reserve_address(network.name, mac, address, name)
        ports = {endpoint.name: endpoint.port for endpoint in template.endpoints}
        interfaces = (NetworkInterface(network=network.name, mac=mac),)
    instance = Instance(
        name=name,
        update_domain=update_domain_of(index, template.update_domain_count),
        host=host.label,
        address=address,
        ports=ports,
        urls=[f"{e.protocol}://{address}:{ports[e.name]}/" for e in template.endpoints],
        layer=disk.name,
        settings=template.settings,
        started_at=time.time(),
        package=attachments.package,
        configuration=attachments.configuration,
        program=attachments.program,
        generation=attachments.generation,
    )
    host.define_domain(
        DomainSpec(
            name=name,
            domain_type=detect_accelerator().domain_type,
            vcpus=size.vcpus,
            memory_mib=size.memory_mib,
            disk_path=overlay.path,
            serial_log=f"{SERIAL_LOG_DIR}/{name}-serial.log",
            forwards=forwards,
            interfaces=interfaces,
            disks=attachments.disks,
            channels=attachments.channels,
            metadata=_metadata(template.role, instance),
        )
    )
    host.start_domain(name)
    return instance


def _metadata(role: str, instance: Instance) -> dict[str, str]:
    """What the domain carries of its instance: the record a later run reads back."""
    return {
        "role": role,
        "updateDomain": str(instance.update_domain),
        "layer": instance.layer,
        "record": instance.model_dump_json(),
    }


def record_instance(host: Host, role: str, instance: Instance) -> None:
    """Write the instance's record (new media, a passed gate) into its domain's metadata."""
    host.set_domain_metadata(instance.name, _metadata(role, instance))


def observed_instances(
    host: Host, pool: str, role: str, layers: Iterable[str], recorded: Sequence[Instance]
) -> list[Instance]:
    """The role's instances as the host runs them, read back from their domains' records: an
    interrupted run's starts and reimages included. A record Pulumi holds for the same start
    is kept (it has what the gates saw); a domain that is not running, or that runs on
    another role's disks, is not an instance of the role."""
    ours, known = set(layers), {(i.name, i.started_at): i for i in recorded}
    pattern = re.compile(rf"^{re.escape(role)}-\d+$")
    instances = []
    for name in host.domain_names(f"{role}-"):
        domain = host.domain(name)
        if not pattern.match(name) or domain is None or not domain.running:
            continue
        if domain.metadata.get("layer") not in ours or "record" not in domain.metadata:
            continue
        if host.volume(pool, f"{name}.qcow2") is None:
            continue
        found = Instance.model_validate_json(domain.metadata["record"])
        instances.append(known.get((found.name, found.started_at), found))
    return sorted_instances(instances)


def drop_instance(host: Host, pool: str, name: str, network: ServiceNetwork | None = None) -> None:
    """Stop and delete an instance: its domain, overlay and media; with `network`, its
    address reservation too (a reimage keeps it)."""
    host.delete_domain(name)
    media = re.compile(rf"^{re.escape(name)}(\.qcow2|-config-\d+\.raw)$")
    for volume in host.volume_names(pool):
        if media.match(volume):
            host.delete_volume(pool, volume)
    if network is not None:
        host.release_address(network.name, network.mac(name))


def instance_names_on_host(
    host: Host, pool: str, role: str, recorded: Iterable[str], ours: Callable[[str], bool]
) -> set[str]:
    """The role's instances on the host: the recorded ones, and any whose overlay outlived a
    refresh that dropped them; not one whose domain runs on a layer that is not `ours` (a role
    of another kind that took the same name)."""
    pattern = re.compile(rf"^({re.escape(role)}-\d+)\.qcow2$")
    leftovers = {m.group(1) for v in host.volume_names(pool) if (m := pattern.match(v))}
    return {
        name
        for name in {*recorded, *leftovers}
        if (domain := host.domain(name)) is None or ours(domain.metadata.get("layer", ""))
    }
