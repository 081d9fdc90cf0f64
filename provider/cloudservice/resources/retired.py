"""Resources of the first release, kept so that stacks made with them can move over.

`StoragePool`, `Network` and `Volume` were this provider's own; pulumi-libvirt makes these
objects now (README: "Moving a stack from 0.1"). A program that declares one gets one error
saying what to use instead. A stack that still holds one can refresh it and delete it: a
Network or Volume is deleted from the host as before, while a StoragePool is released, left on
the host for pulumi-libvirt to adopt (`pulumi import`), since the roles' disks live in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..virt import Host


@dataclass(frozen=True)
class Retired:
    token: str
    replacement: str
    remove: Callable[[Host, str, Mapping[str, Any]], None]  # what delete does on the host

    @property
    def message(self) -> str:
        return (
            f"{self.token} is retired: declare {self.replacement} instead and pass its name "
            "(see the README, 'Moving a stack from 0.1')"
        )


def _release_pool(host: Host, pool: str, state: Mapping[str, Any]) -> None:
    """Nothing to do: the pool and the roles' disks in it stay for pulumi-libvirt."""


RETIRED: dict[str, Retired] = {
    retired.token: retired
    for retired in (
        Retired("cloudservice:index:StoragePool", "pulumi-libvirt's libvirt.Pool", _release_pool),
        Retired(
            "cloudservice:index:Network",
            "pulumi-libvirt's libvirt.Network",
            lambda host, network, state: host.delete_network(network),
        ),
        Retired(
            "cloudservice:index:Volume",
            "pulumi-libvirt's libvirt.Volume",
            lambda host, _id, state: host.delete_volume(str(state["pool"]), str(state["name"])),
        ),
    )
}
