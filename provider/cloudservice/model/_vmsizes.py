"""VM sizes: Azure's Cloud Services size names mapped to vCPUs, memory and local disk.

Values follow Azure's published table "Sizes for Cloud Services (classic)"
(learn.microsoft.com/azure/cloud-services/cloud-services-sizes-specs): memory in GiB there is
converted to MiB here. A subset is kept: the classic A-series names and their ``Standard_A*``
spellings, A5-A7, Av2 and Dv2. Lookup ignores case, as Azure does for ``vmsize``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownVmSize

__all__ = ["VM_SIZES", "LibvirtResources", "VmSize", "lookup_vm_size"]


@dataclass(frozen=True)
class VmSize:
    """One VM size: what a role instance of this size gets."""

    name: str
    vcpus: int
    memory_mib: int
    local_disk_gib: int
    """Temporary disk; the role's local storage resources must fit in it."""

    def libvirt(self) -> LibvirtResources:
        """The libvirt domain resources for one instance of this size."""
        return LibvirtResources(vcpu=self.vcpus, memory_kib=self.memory_mib * 1024)


@dataclass(frozen=True)
class LibvirtResources:
    """What ``virt/`` puts in ``<vcpu>`` and ``<memory unit='KiB'>``."""

    vcpu: int
    memory_kib: int


def _gib(value: float) -> int:
    return int(value * 1024)


_TABLE: tuple[VmSize, ...] = (
    VmSize("ExtraSmall", 1, 768, 20),
    VmSize("Small", 1, _gib(1.75), 225),
    VmSize("Medium", 2, _gib(3.5), 490),
    VmSize("Large", 4, _gib(7), 1000),
    VmSize("ExtraLarge", 8, _gib(14), 2040),
    VmSize("A5", 2, _gib(14), 490),
    VmSize("A6", 4, _gib(28), 1000),
    VmSize("A7", 8, _gib(56), 2040),
    VmSize("Standard_A1_v2", 1, _gib(2), 10),
    VmSize("Standard_A2_v2", 2, _gib(4), 20),
    VmSize("Standard_A4_v2", 4, _gib(8), 40),
    VmSize("Standard_A8_v2", 8, _gib(16), 80),
    VmSize("Standard_A2m_v2", 2, _gib(16), 20),
    VmSize("Standard_A4m_v2", 4, _gib(32), 40),
    VmSize("Standard_A8m_v2", 8, _gib(64), 80),
    VmSize("Standard_D1_v2", 1, _gib(3.5), 50),
    VmSize("Standard_D2_v2", 2, _gib(7), 100),
    VmSize("Standard_D3_v2", 4, _gib(14), 200),
    VmSize("Standard_D4_v2", 8, _gib(28), 400),
    VmSize("Standard_D5_v2", 16, _gib(56), 800),
    VmSize("Standard_D11_v2", 2, _gib(14), 100),
    VmSize("Standard_D12_v2", 4, _gib(28), 200),
    VmSize("Standard_D13_v2", 8, _gib(56), 400),
    VmSize("Standard_D14_v2", 16, _gib(112), 800),
)

# Azure accepts these newer spellings of the classic sizes (same hardware).
_ALIASES = {
    "Standard_A0": "ExtraSmall",
    "Standard_A1": "Small",
    "Standard_A2": "Medium",
    "Standard_A3": "Large",
    "Standard_A4": "ExtraLarge",
    "Standard_A5": "A5",
    "Standard_A6": "A6",
    "Standard_A7": "A7",
}

VM_SIZES: dict[str, VmSize] = {size.name: size for size in _TABLE}
_BY_FOLDED = {name.casefold(): size for name, size in VM_SIZES.items()} | {
    alias.casefold(): VM_SIZES[target] for alias, target in _ALIASES.items()
}


def lookup_vm_size(name: str) -> VmSize:
    """The size called ``name`` (any case, classic or ``Standard_`` spelling)."""
    try:
        return _BY_FOLDED[name.casefold()]
    except KeyError:
        raise UnknownVmSize(name, [*VM_SIZES, *_ALIASES]) from None
