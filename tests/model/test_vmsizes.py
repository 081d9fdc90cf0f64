"""The VM size table and its libvirt mapping."""

from __future__ import annotations

import pytest
from cloudservice.model import VM_SIZES, UnknownVmSize, lookup_vm_size


def test_classic_sizes_match_azure_table() -> None:
    small = lookup_vm_size("Small")
    assert (small.vcpus, small.memory_mib, small.local_disk_gib) == (1, 1792, 225)
    assert lookup_vm_size("ExtraLarge").vcpus == 8
    assert lookup_vm_size("Standard_D14_v2").memory_mib == 112 * 1024


@pytest.mark.parametrize(
    ("alias", "name"), [("Standard_A1", "Small"), ("standard_a0", "ExtraSmall")]
)
def test_standard_spellings_and_case_are_accepted(alias: str, name: str) -> None:
    assert lookup_vm_size(alias) is VM_SIZES[name]


def test_libvirt_resources() -> None:
    resources = lookup_vm_size("Medium").libvirt()
    assert (resources.vcpu, resources.memory_kib) == (2, 3584 * 1024)


def test_unknown_size_lists_known_sizes() -> None:
    with pytest.raises(UnknownVmSize) as info:
        lookup_vm_size("Huge")
    message = str(info.value)
    assert "'Huge'" in message and "Small" in message and "Standard_D2_v2" in message
    assert isinstance(info.value, LookupError)


def test_every_size_is_sane() -> None:
    for size in VM_SIZES.values():
        assert size.vcpus >= 1 and size.memory_mib >= 768 and size.local_disk_gib >= 10
