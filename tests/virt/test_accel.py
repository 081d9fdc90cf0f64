"""The KVM probe's decision, with stand-in qemu binaries, and the probe guest itself."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cloudservice.virt import _accel


def _fake_qemu(tmp_path: Path, body: str) -> str:
    script = tmp_path / "qemu-system-x86_64"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.fixture
def kvm_device(tmp_path: Path) -> str:
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    return str(device)


def test_probe_boot_sector_is_a_bootable_mbr() -> None:
    sector = _accel._probe_boot_sector()
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")


def test_clean_probe_means_kvm(tmp_path: Path, kvm_device: str) -> None:
    qemu = _fake_qemu(tmp_path, "printf 'KVM-OK\\n'; exit 3")
    assert _accel.probe_kvm(qemu, device=kvm_device).domain_type == "kvm"


def test_missing_cpu_features_mean_tcg(tmp_path: Path, kvm_device: str) -> None:
    qemu = _fake_qemu(
        tmp_path,
        "printf 'KVM-OK\\n'; echo \"warning: host doesn't support requested feature\" >&2; exit 3",
    )
    report = _accel.probe_kvm(qemu, device=kvm_device)
    assert report.domain_type == "qemu" and "lacks CPU features" in report.reason


def test_hanging_probe_means_tcg(tmp_path: Path, kvm_device: str) -> None:
    qemu = _fake_qemu(tmp_path, "sleep 30")
    report = _accel.probe_kvm(qemu, device=kvm_device, timeout=1)
    assert report.domain_type == "qemu" and "hung" in report.reason


def test_no_device_means_tcg(tmp_path: Path) -> None:
    report = _accel.probe_kvm(device=str(tmp_path / "absent"))
    assert report.domain_type == "qemu" and "not accessible" in report.reason


def test_probe_guest_really_runs_under_tcg() -> None:
    # The same guest, under TCG, must print its line and exit through isa-debug-exit;
    # otherwise a "KVM works" answer could never be trusted.
    assert _accel.run_probe_guest("tcg").ok
