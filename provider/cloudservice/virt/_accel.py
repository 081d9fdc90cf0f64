"""Does KVM really work on this host, or must guests run under TCG?

`/dev/kvm` existing is not enough: on some nested hosts KVM opens, then guests hang in the
kernel decompressor because the virtual CPU lacks features the guest CPU model needs (qemu then
warns "host doesn't support requested feature"). So we boot a 512-byte real-mode probe that
prints a line on the serial port and exits through isa-debug-exit, and accept KVM only when it
ran cleanly: the line printed, the expected exit code, and no missing-feature warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from typing import Literal

Accelerator = Literal["kvm", "qemu"]  # libvirt's domain types: "qemu" means TCG
_READY = b"KVM-OK\n"
_DEBUG_EXIT_PORT = 0xF4
_EXPECTED_EXIT = (1 << 1) | 1  # isa-debug-exit turns value v into exit status (v << 1) | 1


def _probe_boot_sector() -> bytes:
    code = bytearray(b"\xba\xf8\x03")  # mov dx, 0x3f8 (COM1)
    for char in _READY:
        code += bytes([0xB0, char, 0xEE])  # mov al, char; out dx, al
    code += bytes([0xB0, 0x01, 0xE6, _DEBUG_EXIT_PORT])  # mov al, 1; out 0xf4, al
    code += b"\xfa\xf4\xeb\xfd"  # cli; hlt; jmp back to hlt
    return bytes(code) + bytes(510 - len(code)) + b"\x55\xaa"


@dataclass(frozen=True)
class AcceleratorReport:
    domain_type: Accelerator
    reason: str


@dataclass(frozen=True)
class ProbeRun:
    ok: bool  # printed its line and exited through isa-debug-exit
    stderr: str
    hung: bool = False


def run_probe_guest(
    accel: str, qemu: str = "qemu-system-x86_64", timeout: float = 20.0
) -> ProbeRun:
    """Boot the probe sector with `-accel ACCEL`."""
    binary = shutil.which(qemu) or qemu
    with tempfile.NamedTemporaryFile(suffix=".img") as image:
        image.write(_probe_boot_sector())
        image.flush()
        command = [
            binary,
            "-accel",
            accel,
            "-machine",
            "pc",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-device",
            f"isa-debug-exit,iobase={_DEBUG_EXIT_PORT:#x},iosize=0x04",
            "-drive",
            f"file={image.name},format=raw,if=ide",
        ]
        try:
            run = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return ProbeRun(ok=False, stderr="", hung=True)
    ok = run.returncode == _EXPECTED_EXIT and _READY in run.stdout
    return ProbeRun(ok=ok, stderr=run.stderr.decode(errors="replace").strip())


def probe_kvm(
    qemu: str = "qemu-system-x86_64", device: str = "/dev/kvm", timeout: float = 20.0
) -> AcceleratorReport:
    if not os.access(device, os.R_OK | os.W_OK):
        return AcceleratorReport("qemu", f"{device} is missing or not accessible: using TCG")
    if shutil.which(qemu) is None:
        return AcceleratorReport("qemu", f"{qemu} is not installed: cannot probe KVM")
    run = run_probe_guest("kvm", qemu, timeout)
    if run.hung:
        return AcceleratorReport("qemu", f"a KVM probe guest hung for {timeout:.0f} s: using TCG")
    if not run.ok:
        return AcceleratorReport("qemu", f"the KVM probe guest failed ({run.stderr}): using TCG")
    if "doesn't support requested feature" in run.stderr:
        return AcceleratorReport("qemu", f"KVM lacks CPU features guests need: {run.stderr}")
    return AcceleratorReport("kvm", "a KVM probe guest ran cleanly")


@cache
def detect_accelerator() -> AcceleratorReport:
    """The probe's answer, once per process. `CLOUDSERVICE_ACCEL=kvm|qemu` overrides it."""
    match os.environ.get("CLOUDSERVICE_ACCEL"):
        case "kvm":
            return AcceleratorReport("kvm", "set by CLOUDSERVICE_ACCEL")
        case "qemu":
            return AcceleratorReport("qemu", "set by CLOUDSERVICE_ACCEL")
    return probe_kvm()
