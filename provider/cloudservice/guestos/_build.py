"""Build a guest OS image: Debian minbase + python3 + the agent, as a bootable dynamic VHD.

    MBR (syslinux mbr.bin, fixed signature)
    partition 1  1 MiB .. 64 MiB   FAT16, active: syslinux, vmlinuz, initrd.gz
    partition 2  64 MiB .. 1 GiB   ext4: the root file system (mmdebstrap --variant=minbase)

No loop devices or mounts: the root file system is made by `mkfs.ext4 -d` from a directory,
the FAT partition by mkfs.fat/mtools/syslinux at an offset (`bootdisk`). Reproducible for the
same package versions and SOURCE_DATE_EPOCH: mmdebstrap honours the epoch, every file time
is clamped to it, mke2fs runs with a fixed UUID, hash seed and E2FSPROGS_FAKE_TIME, and
`debugfs` then sets atime/ctime (which `mkfs.ext4 -d` copies from the host) to the epoch.

Builds are keyed on their inputs (family, extra packages, agent sources, this builder's
sources, kernel, busybox, the epoch and the host tools' versions): the same inputs reuse the
image already in the catalog. `force` rebuilds (e.g. to pick up updated Debian packages).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..files import AtomicFile
from . import bootdisk
from ._catalog import Catalog, OsVersion, locked
from ._scripts import GUEST_INIT, INITRAMFS_INIT, SYSLINUX_CFG, UDHCPC_SCRIPT
from .bootdisk import MIB, BuildError, Kernel, Partition, run, sha256_file

FAMILIES = {"debian-12": "bookworm"}  # family -> Debian suite
DEFAULT_FAMILY = "debian-12"
DEFAULT_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when SOURCE_DATE_EPOCH is not set
BASE_PACKAGES = ("python3",)

DISK_SIZE = 1024 * MIB
BOOT = Partition(start=1 * MIB, size=63 * MIB, type=0x0E, bootable=True)  # FAT16 (LBA)
ROOT = Partition(start=64 * MIB, size=DISK_SIZE - 64 * MIB, type=0x83)  # Linux
DISK_SIGNATURE = 0xC10D5E02
FAT_VOLUME_ID = "c10d5e02"
ROOT_UUID = "c10d5e02-0000-4000-8000-000000000001"
ROOT_HASH_SEED = "c10d5e02-0000-4000-8000-000000000002"
ROOT_LABEL = "cloudservice"
ROLE_USER, ROLE_UID = "role", 1000

# Loaded in this order, each after its dependencies (modinfo adds those).
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "failover", "net_failover", "virtio_net", "virtio_blk", "virtio_console",
    "af_packet", "crc16", "crc32c_generic", "mbcache", "jbd2", "ext4",
    "scsi_common", "scsi_mod", "libata", "ata_piix", "cdrom", "sr_mod",
)  # fmt: skip

# Debian package -> a file it installs that the build runs.
REQUIRED_PACKAGES = {
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "e2fsprogs": "/usr/sbin/mkfs.ext4",
    "syslinux": "/usr/bin/syslinux",
    "syslinux-common": str(bootdisk.MBR_BIN),
    "mtools": "/usr/bin/mcopy",
    "dosfstools": "/usr/sbin/mkfs.fat",
    "busybox-static": str(bootdisk.BUSYBOX),
    "cpio": "/usr/bin/cpio",
    "kmod": "/usr/bin/kmod",
    "qemu-utils": "/usr/bin/qemu-img",
}

# Left out of the root file system (dpkg path-exclude): docs, manuals, translations.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/lintian/*",
)  # fmt: skip
# Removed after mmdebstrap: apt's lists and caches, logs, host leftovers.
DROP = (
    "var/lib/apt/lists", "var/cache/apt", "var/log", "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old",
    "etc/resolv.conf", "etc/hostname",
)  # fmt: skip

AGENT_DIR = Path(__file__).resolve().parents[1] / "agent"


def cache_dir() -> Path:
    return bootdisk.cache_root() / "guestos"


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    family: str = DEFAULT_FAMILY
    version: str | None = None  # default: <today>-<n>
    includes: tuple[str, ...] = ()  # Debian packages besides minbase and python3
    out: Path | None = None  # default: <cache>/guestos/images
    force: bool = False  # rebuild even when the catalog has an image of the same inputs
    epoch: int | None = None  # default: $SOURCE_DATE_EPOCH, else DEFAULT_EPOCH
    agent_dir: Path = AGENT_DIR
    catalog: Path | None = None  # default: catalog_path()
    install: bool = True  # apt-get install missing host tools (as root)


@dataclasses.dataclass(frozen=True)
class BuildResult:
    entry: OsVersion
    reused: bool  # True: no build, the catalog had an image of the same inputs
    seconds: dict[str, float]  # timings of the steps that ran (mmdebstrap, total, ...)


def say(msg: str) -> None:
    bootdisk.log(msg, prefix="cloudservice os")


# --- inputs --------------------------------------------------------------------------------------


def resolve_epoch(epoch: int | None) -> int:
    if epoch is not None:
        return epoch
    return int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)


def agent_files(agent_dir: Path) -> list[Path]:
    """The agent's *.py files (relative paths, sorted); none when the directory is absent."""
    if not agent_dir.is_dir():
        return []
    return sorted(
        p.relative_to(agent_dir) for p in agent_dir.rglob("*.py") if "__pycache__" not in p.parts
    )


def agent_digest(agent_dir: Path) -> str | None:
    files = agent_files(agent_dir)
    if not files:
        return None
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{rel.as_posix()}\0".encode())
        digest.update(hashlib.sha256((agent_dir / rel).read_bytes()).digest())
    return digest.hexdigest()


def build_key(opts: BuildOptions, kernel: Kernel, initrd: Path, epoch: int) -> str:
    """Every input that changes the image bytes (besides the Debian archive's state)."""
    here = Path(__file__).parent
    parts = [
        "guestos-1", opts.family, FAMILIES[opts.family], ",".join(packages(opts)),
        agent_digest(opts.agent_dir) or "no-agent", str(epoch),
        kernel.package, kernel.version, sha256_file(initrd),
        *(hashlib.sha256((here / n).read_bytes()).hexdigest()
          for n in ("_build.py", "_scripts.py", "bootdisk.py")),
        *(f"{p}={bootdisk.package_version(p)}" for p in sorted(REQUIRED_PACKAGES)),
    ]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def packages(opts: BuildOptions) -> list[str]:
    return sorted({*BASE_PACKAGES, *opts.includes})


# --- initramfs -----------------------------------------------------------------------------------


def prepare_initramfs(kernel: Kernel, epoch: int) -> Path:
    """busybox, the modules, init and the DHCP hook as a gzip'd newc cpio; cached by inputs."""
    digest = hashlib.sha256()
    for part in (INITRAMFS_INIT, UDHCPC_SCRIPT, kernel.package, kernel.version, str(epoch)):
        digest.update(part.encode() + b"\0")
    digest.update(sha256_file(bootdisk.BUSYBOX).encode())
    cached = cache_dir() / f"initramfs-{digest.hexdigest()[:16]}.gz"
    if cached.exists():
        return cached
    say("building the initramfs")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        root = Path(tmp) / "root"
        for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "newroot"):
            (root / sub).mkdir(parents=True)
        (root / "lib" / "modules").mkdir(parents=True)
        shutil.copy2(bootdisk.BUSYBOX, root / "bin" / "busybox")
        for name in kernel.load_order():
            shutil.copy2(kernel.directory / "modules" / f"{name}.ko", root / "lib" / "modules")
        shutil.copy2(kernel.directory / "load-order", root / "lib" / "modules" / "load-order")
        bootdisk.write_executable(root / "init", INITRAMFS_INIT)
        bootdisk.write_executable(root / "etc" / "udhcpc.script", UDHCPC_SCRIPT)
        out = Path(tmp) / "initrd.gz"
        bootdisk.write_cpio_gz(root, out, epoch)
        out.rename(cached)
    return cached


# --- root file system ----------------------------------------------------------------------------


def mmdebstrap(suite: str, pkgs: Sequence[str], root: Path, epoch: int) -> None:
    cmd: list[str | Path] = [
        "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(pkgs)}",
        "--format=directory", *(f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES),
        "--aptopt=Acquire::Languages \"none\"", suite, root,
    ]  # fmt: skip
    run(cmd, env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "LC_ALL": "C.UTF-8"})


def installed_packages(root: Path) -> list[str]:
    """`dpkg-query -W` of the root file system, sorted: `name<TAB>version` lines."""
    out = run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W"])
    return sorted(line for line in out.splitlines() if line.strip())


def customize(root: Path, agent_dir: Path, epoch: int) -> None:
    """Shrink, add the `role` user, the init script and the agent."""
    for rel in DROP:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for sub in ("var/log", "var/cache/apt", "var/lib/apt/lists/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "hostname").write_text("cloudservice\n")
    (root / "etc" / "resolv.conf").write_text("")  # the initramfs writes the DHCP servers
    for name in ("hostname", "resolv.conf"):
        (root / "etc" / name).chmod(0o644)
    add_user(root, ROLE_USER, ROLE_UID, epoch)
    lib = root / "usr" / "lib" / "cloudservice"
    lib.mkdir(parents=True, exist_ok=True)
    bootdisk.write_executable(lib / "init", GUEST_INIT)
    for source in agent_files(agent_dir):
        target = lib / "cloudservice_agent" / source
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(agent_dir / source, target)
        target.chmod(0o644)


def add_user(root: Path, name: str, uid: int, epoch: int) -> None:
    """An unprivileged user and its group, written into the files as useradd would."""
    etc = root / "etc"
    days = epoch // 86400
    home = root / "home" / name
    lines = {
        "passwd": f"{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n",
        "group": f"{name}:x:{uid}:\n",
        "shadow": f"{name}:!:{days}:0:99999:7:::\n",
        "gshadow": f"{name}:!::\n",
    }
    for file, line in lines.items():
        path = etc / file
        text = path.read_text() if path.exists() else ""
        if not any(existing.split(":")[0] == name for existing in text.splitlines()):
            path.write_text(text + line)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, uid, uid)
    home.chmod(0o750)


def clamp_times(root: Path, epoch: int) -> list[str]:
    """Every file's atime/mtime set to min(mtime, epoch); returns the paths (sorted, "/"-based)."""
    paths = ["/"]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            full = os.path.join(dirpath, name)
            paths.append("/" + os.path.relpath(full, root))
    for rel in reversed(paths):  # children first: touching a child leaves its parent alone
        full = os.path.join(root, rel.lstrip("/")) if rel != "/" else str(root)
        mtime = min(int(os.lstat(full).st_mtime), epoch)
        os.utime(full, (mtime, mtime), follow_symlinks=False)
    return paths


def make_ext4(root: Path, image: Path, size: int, epoch: int) -> None:
    """ext4 of `root` in a sparse file; then inode atime/ctime fixed to the epoch."""
    paths = clamp_times(root, epoch)
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(size)
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch), "SOURCE_DATE_EPOCH": str(epoch)}
    run([
        "mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "1",
        "-L", ROOT_LABEL, "-U", ROOT_UUID,
        "-E", f"hash_seed={ROOT_HASH_SEED},lazy_itable_init=0,lazy_journal_init=0",
        "-d", root, image,
    ], env=env)  # fmt: skip
    # mkfs.ext4 -d copies the host's atime and ctime (which cannot be set): overwrite them.
    script = image.with_suffix(".debugfs")
    with script.open("w") as f:
        for path in paths:
            if '"' in path or "\n" in path:
                raise BuildError(f"cannot fix the times of {path!r} in the root file system")
            for field in ("atime", "ctime"):
                f.write(f'sif "{path}" {field} @{epoch}\n')
    proc = subprocess.run(
        ["debugfs", "-w", "-f", str(script), str(image)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("debugfs ")]
    if proc.returncode != 0 or errors:
        raise BuildError(f"debugfs failed ({proc.returncode}): {' '.join(errors[:5])}")
    script.unlink()
    run(["e2fsck", "-f", "-n", image], env=env)


# --- disk ----------------------------------------------------------------------------------------


def make_raw(raw: Path, kernel: Kernel, initrd: Path, rootfs: Path, epoch: int) -> None:
    staging = raw.parent / "boot"
    staging.mkdir()
    (staging / "syslinux.cfg").write_text(SYSLINUX_CFG)
    shutil.copyfile(kernel.vmlinuz, staging / "vmlinuz")
    shutil.copyfile(initrd, staging / "initrd.gz")
    raw.unlink(missing_ok=True)
    with raw.open("wb") as f:
        f.truncate(DISK_SIZE)
    bootdisk.format_fat(raw, BOOT, 16, 8, FAT_VOLUME_ID, "CSBOOT", epoch)
    bootdisk.copy_in(
        raw, BOOT.start, "/", [staging / n for n in ("syslinux.cfg", "vmlinuz", "initrd.gz")],
        epoch,
    )  # fmt: skip
    if rootfs.stat().st_size != ROOT.size:
        raise BuildError(f"{rootfs} is not {ROOT.size} bytes")
    run([
        "dd", f"if={rootfs}", f"of={raw}", "bs=1M", f"seek={ROOT.start // MIB}",
        "conv=sparse,notrunc", "status=none",
    ])  # fmt: skip
    with raw.open("r+b") as f:
        f.write(bootdisk.master_boot_record([BOOT, ROOT], DISK_SIGNATURE))


# --- the build -----------------------------------------------------------------------------------


def check_options(opts: BuildOptions) -> None:
    if opts.family not in FAMILIES:
        raise BuildError(f"unknown family {opts.family!r}: the builder makes {', '.join(FAMILIES)}")
    for pkg in opts.includes:
        if not pkg or pkg.startswith("-") or "," in pkg or " " in pkg:
            raise BuildError(f"--include {pkg!r} is not a Debian package name")


def build(opts: BuildOptions) -> BuildResult:
    """Build (or reuse) the image for `opts` and record it in the catalog."""
    check_options(opts)
    started = time.monotonic()
    seconds: dict[str, float] = {}
    epoch = resolve_epoch(opts.epoch)
    bootdisk.ensure_packages(REQUIRED_PACKAGES, opts.install)
    cache_dir().mkdir(parents=True, exist_ok=True)
    kernel = bootdisk.prepare_kernel(bootdisk.default_kernel_package(), MODULES, cache_dir())
    initrd = prepare_initramfs(kernel, epoch)
    key = build_key(opts, kernel, initrd, epoch)
    out = opts.out or cache_dir() / "images"
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    with locked(opts.catalog) as catalog_file:
        catalog = Catalog.load(catalog_file)
        same = [v for v in catalog.of(opts.family) if v.build_key == key and _intact(v)]
        if opts.version is not None:
            existing = catalog.find(opts.family, opts.version)
            if existing is not None and existing.build_key != key and not opts.force:
                raise BuildError(
                    f"{existing.name} exists and was built from other inputs: choose another "
                    f"--version, or omit it for {catalog.next_version(opts.family, _day(now))}"
                )
            if existing and existing.build_key == key and _intact(existing) and not opts.force:
                return BuildResult(existing, True, {"total": time.monotonic() - started})
        if same and not opts.force and opts.version is None:
            return BuildResult(same[-1], True, {"total": time.monotonic() - started})
        version = opts.version or catalog.next_version(opts.family, _day(now))
        image = out / f"{opts.family}-{version}.vhd"

    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="build-") as tmp:
        work = Path(tmp)
        if same and not opts.force:  # the same bytes under another version: copy, no build
            with AtomicFile(image) as copy:
                shutil.copyfile(same[-1].image_path, copy.partial)
            pkgs_digest, pkg_count = same[-1].packages_digest, same[-1].package_count
        else:
            pkgs_digest, pkg_count = _build_image(
                opts, kernel, initrd, key, epoch, work, image, seconds
            )
    seconds["total"] = time.monotonic() - started

    with locked(opts.catalog) as catalog_file:
        catalog = Catalog.load(catalog_file)
        entry = OsVersion(
            family=opts.family, version=version, sequence=catalog.next_sequence(),
            kernel_package=kernel.package, kernel_version=kernel.version,
            kernel_release=kernel.release, packages_digest=pkgs_digest,
            package_count=pkg_count, includes=tuple(sorted(set(opts.includes))),
            agent_digest=agent_digest(opts.agent_dir), build_key=key,
            source_date_epoch=epoch, built_at=now.isoformat(timespec="seconds"),
            image_path=str(image), image_sha256=sha256_file(image),
            image_size=image.stat().st_size, virtual_size=DISK_SIZE,
        )  # fmt: skip
        catalog.with_version(entry).save(catalog_file)
    return BuildResult(entry, False, seconds)


def _build_image(
    opts: BuildOptions, kernel: Kernel, initrd: Path, key: str, epoch: int, work: Path,
    image: Path, seconds: dict[str, float],
) -> tuple[str, int]:  # fmt: skip
    """The image's bytes into `image` (atomically); returns the packages digest and count."""
    root = work / "root"
    step = time.monotonic()
    say(f"mmdebstrap {FAMILIES[opts.family]} with {' '.join(packages(opts))}")
    mmdebstrap(FAMILIES[opts.family], packages(opts), root, epoch)
    seconds["mmdebstrap"] = time.monotonic() - step
    listing = installed_packages(root)
    pkgs_digest = hashlib.sha256("".join(f"{line}\n" for line in listing).encode()).hexdigest()
    customize(root, opts.agent_dir, epoch)
    step = time.monotonic()
    say("making the ext4 root file system")
    rootfs = work / "root.ext4"
    make_ext4(root, rootfs, ROOT.size, epoch)
    shutil.rmtree(root)
    seconds["mkfs"] = time.monotonic() - step
    step = time.monotonic()
    raw = work / "disk.raw"
    make_raw(raw, kernel, initrd, rootfs, epoch)
    rootfs.unlink()
    bootdisk.to_vhd(raw, image, key, epoch)
    seconds["disk"] = time.monotonic() - step
    say(f"wrote {image}")
    return pkgs_digest, len(listing)


def _intact(entry: OsVersion) -> bool:
    path = Path(entry.image_path)
    return path.is_file() and path.stat().st_size == entry.image_size


def _day(now: datetime.datetime) -> str:
    return now.strftime("%Y.%m.%d")
