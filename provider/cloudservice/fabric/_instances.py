"""Role instances, whatever the role's kind: a domain booting from its own scratch overlay.

An instance keeps no state worth keeping: starting one drops whatever was left of it first,
so "start" is also "reimage". Its endpoints are forwarded from free ports on the host's
loopback (QEMU user-mode networking; libvirt 9.0 has no working port forwarding of its own).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..model import Model, lookup_vm_size
from ..virt import DomainSpec, Host, PortForward, VolumeInfo, detect_accelerator
from ._health import free_loopback_port
from ._placement import update_domain_of

LOOPBACK = "127.0.0.1"
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"


class Endpoint(Model):
    name: str = Field(default="http", description="Endpoint name, as in the service definition.")
    protocol: Literal["http", "tcp"] = Field(default="http", description="http or tcp.")
    port: int = Field(default=80, ge=1, le=65535, description="Port the guest listens on.")


class Instance(Model):
    name: str
    update_domain: int
    host: str = Field(description="The libvirt host the instance runs on (its URI).")
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
    ports = {endpoint.name: free_loopback_port() for endpoint in template.endpoints}
    size = lookup_vm_size(template.vm_size)
    domain = update_domain_of(index, template.update_domain_count)
    host.define_domain(
        DomainSpec(
            name=name,
            domain_type=detect_accelerator().domain_type,
            vcpus=size.vcpus,
            memory_mib=size.memory_mib,
            disk_path=overlay.path,
            serial_log=f"{SERIAL_LOG_DIR}/{name}-serial.log",
            forwards=tuple(
                PortForward(host_port=ports[e.name], guest_port=e.port) for e in template.endpoints
            ),
            metadata={"role": template.role, "updateDomain": str(domain), "layer": disk.name},
        )
    )
    host.start_domain(name)
    return Instance(
        name=name,
        update_domain=domain,
        host=host.uri,
        address=LOOPBACK,
        ports=ports,
        urls=[f"{e.protocol}://{LOOPBACK}:{ports[e.name]}/" for e in template.endpoints],
        layer=disk.name,
        settings=template.settings,
        started_at=time.time(),
    )


def drop_instance(host: Host, pool: str, name: str) -> None:
    host.delete_domain(name)
    host.delete_volume(pool, f"{name}.qcow2")


def instance_alive(host: Host, pool: str, instance: Instance) -> bool:
    domain = host.domain(instance.name)
    return domain is not None and host.volume(pool, f"{instance.name}.qcow2") is not None


def instance_names_on_host(
    host: Host, pool: str, role: str, recorded: Iterable[Instance]
) -> set[str]:
    """The recorded instances, and any whose overlay outlived a refresh that dropped them."""
    pattern = re.compile(rf"^({re.escape(role)}-\d+)\.qcow2$")
    leftovers = {m.group(1) for v in host.volume_names(pool) if (m := pattern.match(v))}
    return {instance.name for instance in recorded} | leftovers
