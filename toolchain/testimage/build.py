#!/usr/bin/env python3
"""Build small bootable VHD disk images (web-v1/v2/v3) for the VM-role tests, offline.

Each image is a raw MBR disk (syslinux mbr.bin, one active FAT partition at 1 MiB) holding
syslinux, a Debian kernel, a busybox initramfs and a /www directory, converted to a dynamic
VHD. The guest serves /www on port 80 and prints `CLOUDSERVICE-READY <version>` on ttyS0.

Everything is built without loop devices or mounts: mkfs.fat --offset, mtools and syslinux's
mtools-based installer write straight into the image file. The layout is deterministic, so
versions differ only in the blocks holding their web pages (and an optional changed filler
file). See README.md beside this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

# The disk-building pieces are shared with the guest OS builder (cloudservice.guestos.bootdisk,
# standard library only, so this script still runs under the system python3).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "provider"))

from cloudservice.guestos import bootdisk  # noqa: E402
from cloudservice.guestos.bootdisk import (  # noqa: E402
    BUSYBOX,
    MBR_BIN,
    MIB,
    SECTOR,
    BuildError,
    Kernel,
    Partition,
    default_kernel_package,
    package_version,
    sha256_file,
    write_cpio_gz,
    write_executable,
)

PART_START = MIB  # the partition starts at 1 MiB (LBA 2048), aligned for any block size
VHD_BLOCK = 2 * MIB  # qemu-img's dynamic VHD block size
DIFF_UNIT = 4096
# Fixed values keep the build byte-for-byte reproducible: timestamps, volume id, disk id.
EPOCH = 1704067200  # 2024-01-01T00:00:00Z
VOLUME_ID = "c10d5e01"
DISK_SIGNATURE = 0xC10D5E01
VERSIONS = ("v1", "v2", "v3")
FILL_CHUNK_MIB = 64
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloudservice" / "testimage"
)
KERNEL_CMDLINE = "console=ttyS0,115200 panic=10 quiet"

# Load order matters: each module after the ones it needs (dependencies are added too).
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "failover", "net_failover", "virtio_net", "virtio_blk",
    "fat", "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
)  # fmt: skip

# Debian package -> a file it installs that this script uses.
REQUIRED_PACKAGES = {
    "syslinux": "/usr/bin/syslinux",
    "syslinux-common": str(MBR_BIN),
    "mtools": "/usr/bin/mcopy",
    "dosfstools": "/usr/sbin/mkfs.fat",
    "busybox-static": str(BUSYBOX),
    "cpio": "/usr/bin/cpio",
    "kmod": "/usr/bin/kmod",
    "qemu-utils": "/usr/bin/qemu-img",
}

INIT_SCRIPT = r"""#!/bin/busybox sh
# testimage init: load virtio + FAT modules, mount the boot disk, serve its /www on port 80.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log() { echo "testimage: $*" > /dev/ttyS0; }
fail() {  # say so on the console (tests stop waiting) and keep PID 1 alive
    echo "CLOUDSERVICE-FAILED $*" > /dev/ttyS0
    while :; do sleep 3600; done
}
wait_for() {  # wait up to 10 s for a path to appear (devices show up asynchronously)
    i=0
    while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e "$1" ] || log "$1 did not appear"
}
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done
wait_for /dev/vda1
mkdir -p /disk /www
mount -t vfat -o ro /dev/vda1 /disk || fail "cannot mount /dev/vda1"
mount -t tmpfs -o size=16m tmpfs /www
cp -a /disk/www/. /www/ || fail "cannot copy /www from the disk"
version=$(cat /www/version) || fail "no /www/version on the disk"
wait_for /sys/class/net/eth0
ip link set lo up
ip link set eth0 up
# Static config for QEMU user-mode networking; DHCP (briefly, in the background) for others.
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
udhcpc -i eth0 -n -q -t 3 -T 1 -s /etc/udhcpc.script > /dev/null 2>&1 &
httpd -p 80 -h /www
echo "CLOUDSERVICE-READY $version" > /dev/ttyS0
while :; do sleep 3600; done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# Add the leased address next to the static one; take the router as default gateway.
case "$1" in
    bound|renew)
        ip addr add "$ip/${mask:-24}" dev "$interface" 2>/dev/null
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        echo "testimage: dhcp $ip" > /dev/ttyS0
        ;;
esac
exit 0
"""

SYSLINUX_CFG = f"""SERIAL 0 115200
DEFAULT web
PROMPT 0
TIMEOUT 0
LABEL web
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND {KERNEL_CMDLINE}
"""


@dataclasses.dataclass(frozen=True)
class Options:
    out: Path
    size_mib: int
    versions: tuple[str, ...]
    fill_mib: int
    change_mib: int
    keep_raw: bool
    kernel_package: str | None
    force: bool


@dataclasses.dataclass(frozen=True)
class Layout:
    fat_bits: int
    cluster_sectors: int
    partition_type: int


# --- small helpers -------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"testimage: {msg}", file=sys.stderr, flush=True)


# --- host packages -------------------------------------------------------------------------------


def ensure_packages(install: bool) -> None:
    bootdisk.ensure_packages(REQUIRED_PACKAGES, install)


# --- kernel --------------------------------------------------------------------------------------


def prepare_kernel(package: str) -> Kernel:
    """vmlinuz and the needed modules of one kernel package, extracted once into the cache."""
    return bootdisk.prepare_kernel(package, MODULES, CACHE)


# --- initramfs -----------------------------------------------------------------------------------


def initramfs_key(kernel: Kernel) -> str:
    digest = hashlib.sha256()
    for part in (INIT_SCRIPT, UDHCPC_SCRIPT, kernel.package, kernel.version):
        digest.update(part.encode() + b"\0")
    digest.update(sha256_file(BUSYBOX).encode())
    return digest.hexdigest()[:16]


def prepare_initramfs(kernel: Kernel) -> Path:
    """A gzip'd newc cpio of busybox, init and the modules; built once per inputs, cached."""
    cached = CACHE / f"initramfs-{initramfs_key(kernel)}.gz"
    if not cached.exists():
        log("building the initramfs")
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            stage_initramfs(kernel, Path(tmp) / "root")
            tmp_out = Path(tmp) / "initrd.gz"
            write_cpio_gz(Path(tmp) / "root", tmp_out, EPOCH)
            tmp_out.rename(cached)
    return cached


def stage_initramfs(kernel: Kernel, root: Path) -> None:
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "lib/modules"):
        (root / sub).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in kernel.load_order():
        shutil.copy2(kernel.directory / "modules" / f"{name}.ko", root / "lib" / "modules")
    shutil.copy2(kernel.directory / "load-order", root / "lib" / "modules" / "load-order")
    write_executable(root / "init", INIT_SCRIPT)
    write_executable(root / "etc" / "udhcpc.script", UDHCPC_SCRIPT)


# --- disk layout ---------------------------------------------------------------------------------


def choose_layout(size_mib: int) -> Layout:
    """FAT16 for small disks, FAT32 from 512 MiB; 4 KiB clusters where the FAT type allows.

    Clusters of 4 KiB (or 8 KiB) and mkfs.fat's alignment keep every file 4 KiB-aligned on disk.
    """
    part_mib = size_mib - 1
    if part_mib >= 512:
        return Layout(fat_bits=32, cluster_sectors=8, partition_type=0x0C)
    return Layout(fat_bits=16, cluster_sectors=8 if part_mib < 256 else 16, partition_type=0x0E)


def master_boot_record(size: int, partition_type: int) -> bytes:
    part = Partition(PART_START, size - PART_START, partition_type, bootable=True)
    return bootdisk.master_boot_record([part], DISK_SIGNATURE)


def format_disk(raw: Path, size_mib: int, layout: Layout) -> None:
    """Sparse raw disk, FAT at 1 MiB, syslinux boot sector + ldlinux, MBR with one partition."""
    size = size_mib * MIB
    raw.unlink(missing_ok=True)
    with raw.open("wb") as f:
        f.truncate(size)
    part = Partition(PART_START, size - PART_START, layout.partition_type, bootable=True)
    bootdisk.format_fat(
        raw, part, layout.fat_bits, layout.cluster_sectors, VOLUME_ID, "CLOUDSVC", EPOCH
    )
    with raw.open("r+b") as f:
        f.write(master_boot_record(size, layout.partition_type))


def mtools(tool: str, raw: Path, *args: str | Path) -> None:
    bootdisk.mtools(tool, raw, PART_START, *args, epoch=EPOCH)


def copy_in(raw: Path, target: str, files: Sequence[Path]) -> None:
    """mcopy in argument order (that order fixes the cluster layout), keeping fixed mtimes."""
    bootdisk.copy_in(raw, PART_START, target, files, EPOCH)


# --- content -------------------------------------------------------------------------------------


def web_files(version: str, directory: Path) -> list[Path]:
    """index.html, version and (not in v3, the probe-fails release) health.

    Pages have the same size in every version, so only their own clusters differ.
    """
    directory.mkdir(parents=True, exist_ok=True)
    note = "health probe fails: no /health" if version == "v3" else "healthy release"
    pages = {
        "index.html": (
            f"<!doctype html>\n<html><head><title>cloudservice web {version}</title></head>\n"
            f"<body><h1>cloudservice web {version}</h1><p>{note.ljust(32)}</p></body></html>\n"
        ),
        "version": f"{version}\n",
    }
    if version != "v3":
        pages["health"] = "ok"
    paths = []
    for name, text in pages.items():
        (directory / name).write_text(text)
        paths.append(directory / name)
    return paths


def pseudo_random_file(path: Path, mib: int, seed: str) -> Path:
    """Deterministic incompressible bytes (SHAKE-128 per MiB), so VHD blocks get allocated."""
    with path.open("wb") as f:
        for i in range(mib):
            f.write(hashlib.shake_128(f"cloudservice-testimage:{seed}:{i}".encode()).digest(MIB))
    return path


def fill_files(directory: Path, fill_mib: int, change_mib: int) -> list[Path]:
    """The filler shared by all versions: (fill - change) MiB in files of at most 64 MiB."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    remaining, index = fill_mib - change_mib, 0
    while remaining > 0:
        mib = min(FILL_CHUNK_MIB, remaining)
        files.append(pseudo_random_file(directory / f"fill{index:03d}.bin", mib, f"fill{index}"))
        remaining, index = remaining - mib, index + 1
    return files


def change_file(directory: Path, version: str, change_mib: int) -> Path:
    """The filler file each release rewrites: same name and size, bytes seeded by version."""
    directory.mkdir(parents=True, exist_ok=True)
    return pseudo_random_file(directory / "change.bin", change_mib, f"change:{version}")


def build_raw(
    version: str, opts: Options, kernel: Kernel, initrd: Path, fill: list[Path], work: Path
) -> Path:
    """One version's raw disk. The same operations in the same order for every version."""
    staging = work / version
    staging.mkdir()
    (staging / "syslinux.cfg").write_text(SYSLINUX_CFG)
    shutil.copyfile(kernel.vmlinuz, staging / "vmlinuz")
    shutil.copyfile(initrd, staging / "initrd.gz")
    raw = work / f"web-{version}.raw"
    format_disk(raw, opts.size_mib, choose_layout(opts.size_mib))
    copy_in(raw, "/", [staging / n for n in ("syslinux.cfg", "vmlinuz", "initrd.gz")])
    if fill or opts.change_mib:
        mtools("mmd", raw, "::fill")
        changed = (
            [change_file(staging / "fill", version, opts.change_mib)] if opts.change_mib else []
        )
        copy_in(raw, "/fill", changed + fill)
    mtools("mmd", raw, "::www")
    copy_in(raw, "/www", web_files(version, staging / "www"))
    return raw


# --- output --------------------------------------------------------------------------------------


def to_vhd(raw: Path, vhd: Path) -> None:
    """Dynamic VHD of exactly the raw size, with a fixed footer time and content-derived id."""
    bootdisk.to_vhd(raw, vhd, vhd.name, EPOCH)


def chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def block_diff(a: Path, b: Path) -> dict[str, int]:
    """How many 4 KiB units, runs of them and 2 MiB VHD blocks differ between two raw disks."""
    units: list[int] = []
    for index, (ca, cb) in enumerate(zip(chunks(a, VHD_BLOCK), chunks(b, VHD_BLOCK), strict=True)):
        if ca == cb:
            continue
        base = index * (VHD_BLOCK // DIFF_UNIT)
        units += [
            base + i // DIFF_UNIT for i in range(0, len(ca), DIFF_UNIT)
            if ca[i:i + DIFF_UNIT] != cb[i:i + DIFF_UNIT]
        ]  # fmt: skip
    runs = sum(1 for i, u in enumerate(units) if i == 0 or units[i - 1] != u - 1)
    blocks = len({u * DIFF_UNIT // VHD_BLOCK for u in units})
    return {"units_4k": len(units), "runs_4k": runs, "blocks_2m": blocks}


def image_entry(version: str, raw: Path, vhd: Path, opts: Options) -> dict[str, object]:
    return {
        "version": version,
        "file": vhd.name,
        "format": "vpc",
        "subformat": "dynamic",
        "virtual_size": opts.size_mib * MIB,
        "file_size": vhd.stat().st_size,
        "sha256": sha256_file(vhd),
        "raw_file": raw.name if opts.keep_raw else None,
        "raw_sha256": sha256_file(raw),
        "ready_line": f"CLOUDSERVICE-READY {version}",
        "index_contains": f"<h1>cloudservice web {version}</h1>",
        "health_status": 404 if version == "v3" else 200,
    }


def build_key(opts: Options, kernel: Kernel, initrd: Path) -> str:
    """Inputs that change the output bytes; a matching manifest means nothing to do."""
    parts = [
        Path(__file__).read_text(), Path(bootdisk.__file__).read_text(),
        kernel.package, kernel.version, initrd.name,
        str(opts.size_mib), ",".join(opts.versions), str(opts.fill_mib), str(opts.change_mib),
        str(opts.keep_raw),
        *(f"{p}={package_version(p)}" for p in sorted(REQUIRED_PACKAGES)),
    ]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def up_to_date(opts: Options, key: str) -> bool:
    manifest = opts.out / "manifest.json"
    if opts.force or not manifest.exists():
        return False
    data = json.loads(manifest.read_text())
    images = data.get("images", [])
    return data.get("build_key") == key and all(
        (opts.out / img["file"]).exists()
        and (opts.out / img["file"]).stat().st_size == img["file_size"]
        for img in images
    )


def manifest(opts: Options, key: str, kernel: Kernel, initrd: Path) -> dict[str, object]:
    layout = choose_layout(opts.size_mib)
    return {
        "format": 1,
        "build_key": key,
        "kernel": {
            "package": kernel.package, "version": kernel.version, "release": kernel.release,
            "cmdline": KERNEL_CMDLINE, "modules": kernel.load_order(),
        },
        "vmlinuz_sha256": sha256_file(kernel.vmlinuz),
        "initramfs_sha256": sha256_file(initrd),
        "busybox": package_version("busybox-static"),
        "disk": {
            "size_mib": opts.size_mib, "partition_offset": PART_START,
            "filesystem": f"FAT{layout.fat_bits}", "partition_type": layout.partition_type,
            "cluster_bytes": layout.cluster_sectors * SECTOR, "volume_id": VOLUME_ID,
        },
        "fill_mib": opts.fill_mib,
        "change_mib": opts.change_mib,
        "guest": {"ip": "10.0.2.15/24", "gateway": "10.0.2.2", "http_port": 80},
        "images": [],
    }  # fmt: skip


def build(opts: Options) -> dict[str, object]:
    kernel = prepare_kernel(opts.kernel_package or default_kernel_package())
    initrd = prepare_initramfs(kernel)
    key = build_key(opts, kernel, initrd)
    if up_to_date(opts, key):
        log(f"{opts.out}/manifest.json is up to date")
        return dict(json.loads((opts.out / "manifest.json").read_text()))
    opts.out.mkdir(parents=True, exist_ok=True)
    result = manifest(opts, key, kernel, initrd)
    images: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir=opts.out, prefix=".build-") as tmp:
        work = Path(tmp)
        fill = fill_files(work / "fill", opts.fill_mib, opts.change_mib)
        raws: dict[str, Path] = {}
        for version in opts.versions:
            log(f"building web-{version}")
            raws[version] = build_raw(version, opts, kernel, initrd, fill, work)
            vhd = opts.out / f"web-{version}.vhd"
            to_vhd(raws[version], vhd)
            entry = image_entry(version, raws[version], vhd, opts)
            if "v1" in raws and version != "v1":
                entry["diff_vs_v1"] = block_diff(raws["v1"], raws[version])
            images.append(entry)
        for raw in raws.values() if opts.keep_raw else ():
            raw.rename(opts.out / raw.name)
    result["images"] = images
    (opts.out / "manifest.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--size-mib", type=int, default=64, help="disk size (default 64)")
    parser.add_argument(
        "--version", dest="versions", nargs="+", choices=VERSIONS, default=list(VERSIONS),
        help="versions to build (default: all)",
    )  # fmt: skip
    parser.add_argument("--fill-mib", type=int, default=0, help="MiB of filler, same in all")
    parser.add_argument(
        "--change-mib", type=int, default=0,
        help="MiB of the filler (part of --fill-mib) that each version rewrites",
    )  # fmt: skip
    parser.add_argument("--keep-raw", action="store_true", help="also keep web-vN.raw")
    parser.add_argument("--kernel-package", help="default: what linux-image-amd64 depends on")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--no-install", action="store_true", help="only report missing Debian packages"
    )
    ns = parser.parse_args(argv)
    opts = Options(
        out=ns.out.resolve(), size_mib=ns.size_mib, versions=tuple(dict.fromkeys(ns.versions)),
        fill_mib=ns.fill_mib, change_mib=ns.change_mib, keep_raw=ns.keep_raw,
        kernel_package=ns.kernel_package, force=ns.force,
    )  # fmt: skip
    check_options(parser, opts)
    return opts, not ns.no_install


def check_options(parser: argparse.ArgumentParser, opts: Options) -> None:
    if opts.size_mib < 32:
        parser.error("--size-mib must be at least 32 (kernel and initramfs take ~15 MiB)")
    if not 0 <= opts.change_mib <= opts.fill_mib:
        parser.error("--change-mib must be between 0 and --fill-mib")
    if opts.fill_mib > opts.size_mib - 32:
        parser.error("--fill-mib leaves no room: keep it at most --size-mib minus 32")


def main(argv: Sequence[str] | None = None) -> int:
    opts, install = parse_args(argv)
    try:
        ensure_packages(install)
        result = build(opts)
    except BuildError as err:
        print(f"testimage: error: {err}", file=sys.stderr)
        return 1
    for image in result["images"]:  # type: ignore[attr-defined]
        diff = image.get("diff_vs_v1")
        log(f"{opts.out / image['file']}" + (f"  diff vs v1: {diff}" if diff else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
