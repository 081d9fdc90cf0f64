"""Pieces for building bootable MBR disks offline, without loop devices or mounts.

Shared by the guest OS builder (`_build.py`) and the VM-role test images
(`toolchain/testimage/build.py`, which runs under the system python3): this module imports
only the standard library (and `cloudservice.files`, which does too). Every step is
deterministic for fixed inputs and a fixed `epoch`: kernel modules in dependency order from
`modinfo`, a reproducible initramfs (sorted newc cpio, fixed owners and mtimes, no gzip
timestamp), FAT written by `mkfs.fat --offset` + mtools, a syslinux boot sector, a
Python-written MBR and a dynamic VHD whose footer time and id are fixed.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..files import AtomicFile
from .errors import BuildError

__all__ = [
    "BUSYBOX",
    "MBR_BIN",
    "MIB",
    "SECTOR",
    "BuildError",
    "Kernel",
    "Partition",
    "cache_root",
    "candidate_version",
    "copy_in",
    "default_kernel_package",
    "ensure_packages",
    "fetch_deb",
    "format_fat",
    "log",
    "master_boot_record",
    "missing_packages",
    "module_closure",
    "mtools",
    "normalize_vhd_footer",
    "package_version",
    "prepare_kernel",
    "run",
    "sha256_file",
    "to_vhd",
    "write_cpio_gz",
    "write_executable",
]

MIB = 1 << 20
SECTOR = 512
VHD_EPOCH = 946684800  # VHD timestamps count seconds from 2000-01-01T00:00:00Z
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
BUSYBOX = Path("/bin/busybox")


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/cloudservice` (default `~/.cache/cloudservice`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloudservice"


# --- small helpers -------------------------------------------------------------------------------


def run(
    cmd: Sequence[str | Path], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Run a command; on failure raise with its output, so errors say what failed."""
    args = [str(c) for c in cmd]
    proc = subprocess.run(
        args, capture_output=True, text=True, check=False, cwd=cwd,
        env=dict(env) if env is not None else None,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return str(proc.stdout)


def log(msg: str, prefix: str = "cloudservice") -> None:
    print(f"{prefix}: {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


# --- host packages -------------------------------------------------------------------------------


def package_version(package: str) -> str | None:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", package],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    status, _, version = proc.stdout.partition(" ")
    return version if proc.returncode == 0 and status == "installed" else None


def missing_packages(required: Mapping[str, str]) -> list[str]:
    """The Debian packages of `required` (package -> a file it installs) that are missing."""
    return [
        pkg for pkg, path in required.items()
        if package_version(pkg) is None or not Path(path).exists()
    ]  # fmt: skip


def ensure_packages(required: Mapping[str, str], install: bool) -> None:
    """Install what is missing with apt-get (as root), or raise naming the command to run."""
    missing = missing_packages(required)
    if not missing:
        return
    command = f"apt-get install -y --no-install-recommends {' '.join(missing)}"
    if not install or os.geteuid() != 0:
        raise BuildError(f"missing Debian packages: {' '.join(missing)}\n  run: {command}")
    log(f"installing missing Debian packages: {' '.join(missing)}")
    if subprocess.run(command.split(), check=False, capture_output=True).returncode != 0:
        run(["apt-get", "update"])  # stale package lists are the usual cause
        run(command.split())
    if still := missing_packages(required):
        raise BuildError(f"still missing after apt-get install: {' '.join(still)}")


# --- kernel --------------------------------------------------------------------------------------


def default_kernel_package() -> str:
    """The versioned package the `linux-image-amd64` metapackage depends on."""
    for line in run(["apt-cache", "depends", "linux-image-amd64"]).splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Depends" and value.startswith("linux-image-"):
            return value
    raise BuildError("apt-cache depends linux-image-amd64 names no kernel package")


def candidate_version(package: str) -> str | None:
    for line in run(["apt-cache", "policy", package]).splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Candidate" and value != "(none)":
            return value
    return None


def fetch_deb(package: str, debs: Path) -> tuple[Path, str]:
    """The package's .deb in `debs`, downloaded once; offline reruns reuse it."""
    debs.mkdir(parents=True, exist_ok=True)
    version = candidate_version(package)
    if version is None:
        cached = sorted(debs.glob(f"{package}_*_amd64.deb"))
        if not cached:
            raise BuildError(f"apt knows no version of {package} and none is cached in {debs}")
        deb = cached[-1]
        return deb, deb.name.split("_")[1].replace("%3a", ":")
    deb = debs / f"{package}_{version.replace(':', '%3a')}_amd64.deb"
    if not deb.exists():
        log(f"downloading {package} {version}")
        run(["apt-get", "download", f"{package}={version}"], cwd=debs)
    return deb, version


@dataclasses.dataclass(frozen=True)
class Kernel:
    package: str
    version: str
    release: str  # uname -r
    directory: Path  # cache dir with vmlinuz, modules/<name>.ko and load-order

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    def load_order(self) -> list[str]:
        return (self.directory / "load-order").read_text().split()


def module_closure(modules_root: Path, wanted: Iterable[str]) -> list[tuple[str, Path]]:
    """Modules in load order (dependencies first), from `modinfo -F depends`.

    The kernel package ships no modules.dep (depmod makes it at install time), so ask modinfo.
    Modules built into the kernel are skipped.
    """
    paths = {p.name.removesuffix(".ko"): p for p in modules_root.rglob("*.ko")}
    builtin = (modules_root / "modules.builtin").read_text()
    order: list[tuple[str, Path]] = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in (n for n, _ in order):
            return
        if name not in paths:
            if f"/{name}.ko" in builtin:
                return  # built into the kernel: nothing to load
            raise BuildError(f"kernel module {name} not found under {modules_root}")
        for dep in run(["modinfo", "-F", "depends", paths[name]]).strip().split(","):
            if dep:
                visit(dep)
        order.append((name, paths[name]))

    for name in wanted:
        visit(name)
    return order


def prepare_kernel(package: str, modules: Sequence[str], cache: Path) -> Kernel:
    """vmlinuz and the module closure of `modules`, extracted once into `cache`."""
    deb, version = fetch_deb(package, cache / "debs")
    key = hashlib.sha256(f"{deb.name}:{','.join(modules)}".encode()).hexdigest()[:12]
    directory = cache / f"kernel-{package}-{key}"
    if not (directory / "release").exists():
        _extract_kernel(deb, modules, directory)
    release = (directory / "release").read_text().strip()
    return Kernel(package, version, release, directory)


def _extract_kernel(deb: Path, modules: Sequence[str], directory: Path) -> None:
    log(f"extracting {deb.name}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        root = Path(tmp) / "root"
        run(["dpkg-deb", "-x", deb, root])
        (vmlinuz,) = (root / "boot").glob("vmlinuz-*")
        release = vmlinuz.name.removeprefix("vmlinuz-")
        staged = Path(tmp) / "kernel"
        (staged / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz, staged / "vmlinuz")
        order = module_closure(root / "lib" / "modules" / release, modules)
        for name, path in order:
            shutil.copy2(path, staged / "modules" / f"{name}.ko")
        (staged / "load-order").write_text("".join(f"{name}\n" for name, _ in order))
        (staged / "release").write_text(release + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        staged.rename(directory)  # atomic: a half-extracted kernel is never reused


# --- initramfs -----------------------------------------------------------------------------------


def write_cpio_gz(root: Path, out: Path, epoch: int) -> None:
    """Reproducible archive: sorted names, fixed owner and mtimes, no gzip timestamp."""
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    for rel in paths:
        os.utime(root / rel, (epoch, epoch), follow_symlinks=False)
    names = "".join(f"{rel}\n" for rel in paths)
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet"],
        input=names.encode(), capture_output=True, cwd=root, check=False,
    )  # fmt: skip
    if cpio.returncode != 0:
        raise BuildError(f"cpio failed: {cpio.stderr.decode().strip()}")
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(cpio.stdout)


# --- disk layout ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Partition:
    start: int  # bytes, a multiple of SECTOR
    size: int  # bytes, a multiple of SECTOR
    type: int  # MBR partition type byte
    bootable: bool = False


def _chs(lba: int) -> bytes:
    """CHS triple for an MBR entry (255 heads, 63 sectors), clamped past cylinder 1023."""
    cyl, rest = divmod(lba, 255 * 63)
    head, sec = divmod(rest, 63)
    if cyl > 1023:
        cyl, head, sec = 1023, 254, 62
    return bytes((head, ((sec + 1) & 0x3F) | ((cyl >> 2) & 0xC0), cyl & 0xFF))


def master_boot_record(partitions: Sequence[Partition], signature: int) -> bytes:
    """syslinux's mbr.bin boot code, a fixed disk signature and up to four primary entries."""
    if len(partitions) > 4:
        raise ValueError("an MBR holds at most four primary partitions")
    entries = b""
    for part in partitions:
        start, count = part.start // SECTOR, part.size // SECTOR
        entries += (
            (b"\x80" if part.bootable else b"\x00") + _chs(start) + bytes((part.type,))
            + _chs(start + count - 1) + struct.pack("<II", start, count)
        )  # fmt: skip
    entries += bytes(16 * (4 - len(partitions)))
    code = MBR_BIN.read_bytes()[:440]
    mbr = code + struct.pack("<IH", signature, 0) + entries + b"\x55\xaa"
    assert len(mbr) == SECTOR
    return mbr


def mtools_env(epoch: int) -> dict[str, str]:
    # SOURCE_DATE_EPOCH fixes mtools' own timestamps (directories, ldlinux.sys).
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1", "SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC"}


def format_fat(
    raw: Path, part: Partition, fat_bits: int, cluster_sectors: int, volume_id: str,
    label: str, epoch: int,
) -> None:  # fmt: skip
    """A FAT file system in `part` of the (existing) raw disk, with syslinux installed on it."""
    run([
        "mkfs.fat", "--invariant", "--mbr=n", f"--offset={part.start // SECTOR}",
        "-F", str(fat_bits), "-s", str(cluster_sectors), "-g", "255/63",
        "-h", str(part.start // SECTOR), "-i", volume_id, "-n", label, raw,
        str(part.size // 1024),
    ], env=mtools_env(epoch))  # fmt: skip
    run(["syslinux", "--offset", str(part.start), "--install", raw], env=mtools_env(epoch))


def mtools(tool: str, raw: Path, offset: int, *args: str | Path, epoch: int) -> None:
    run([tool, "-i", f"{raw}@@{offset}", *args], env=mtools_env(epoch))


def copy_in(raw: Path, offset: int, target: str, files: Sequence[Path], epoch: int) -> None:
    """mcopy in argument order (that order fixes the cluster layout), keeping fixed mtimes."""
    for path in files:
        os.utime(path, (epoch, epoch))
    mtools("mcopy", raw, offset, "-m", "-o", *files, f"::{target}", epoch=epoch)


# --- output --------------------------------------------------------------------------------------


def to_vhd(raw: Path, vhd: Path, unique_seed: str, epoch: int) -> None:
    """Dynamic VHD of exactly the raw size (force_size: no CHS rounding), written atomically.

    The footer's unique id is derived from `unique_seed` and the raw bytes.
    """
    with AtomicFile(vhd) as out:
        partial = Path(out.partial)
        run([
            "qemu-img", "convert", "-f", "raw", "-O", "vpc",
            "-o", "subformat=dynamic,force_size=on", raw, partial,
        ])  # fmt: skip
        unique_id = hashlib.sha256(f"{unique_seed}:{sha256_file(raw)}".encode()).digest()[:16]
        normalize_vhd_footer(partial, unique_id, epoch)


def normalize_vhd_footer(vhd: Path, unique_id: bytes, epoch: int) -> None:
    """Fixed timestamp and a content-derived unique id, so the VHD bytes are reproducible.

    qemu-img stamps the creation time and a random UUID into the footer (copied at offset 0
    in a dynamic VHD); both are patched and the footer checksum recomputed.
    """
    size = vhd.stat().st_size
    with vhd.open("r+b") as f:
        footer = bytearray(f.read(SECTOR))
        if footer[:8] != b"conectix":
            raise BuildError(f"{vhd}: no VHD footer copy at offset 0")
        struct.pack_into(">I", footer, 24, epoch - VHD_EPOCH)
        footer[68:84] = unique_id
        footer[64:68] = bytes(4)
        struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
        for offset in (0, size - SECTOR):
            f.seek(offset)
            f.write(footer)
