"""The built image: MBR layout, file systems, what the root holds, and reproducibility."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cloudservice.guestos import BuildOptions, Catalog, build
from cloudservice.guestos._build import (
    BOOT,
    DISK_SIZE,
    ROOT,
    ROOT_UUID,
    BuildResult,
    agent_digest,
)
from cloudservice.guestos.bootdisk import sha256_file

MIB = 1 << 20


def raw_copy(vhd: Path, out: Path) -> Path:
    """The VHD as a sparse raw disk (qemu-img: an independent reader of the VHD)."""
    subprocess.run(
        ["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(vhd), str(out)], check=True
    )
    return out


def debugfs(partition: Path, request: str) -> str:
    proc = subprocess.run(
        ["debugfs", "-R", request, str(partition)], capture_output=True, text=True, check=True
    )
    return proc.stdout


def names(partition: Path, directory: str) -> set[str]:
    """The entries of a directory (debugfs `ls -p`: /inode/mode/uid/gid/name/size/)."""
    lines = debugfs(partition, f"ls -p {directory}").splitlines()
    return {line.split("/")[5] for line in lines if line.startswith("/")} - {".", ".."}


@pytest.fixture(scope="module")
def raw_disk(guest_image: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return raw_copy(Path(guest_image.entry.image_path), tmp_path_factory.mktemp("raw") / "d.raw")


def test_the_catalog_entry_describes_the_file(guest_image: BuildResult) -> None:
    entry = guest_image.entry
    image = Path(entry.image_path)
    assert entry.family == "debian-12"
    assert image.stat().st_size == entry.image_size
    assert sha256_file(image) == entry.image_sha256
    assert entry.virtual_size == DISK_SIZE == 1024 * MIB
    assert len(entry.packages_digest) == 64 and entry.package_count > 50
    assert entry.kernel_release.endswith("-amd64")
    assert Catalog.load().resolve("debian-12", entry.version) == entry
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert '"format": "vpc"' in info and f'"virtual-size": {DISK_SIZE}' in info
    print(
        f"\n{entry.name}: {entry.virtual_size // MIB} MiB virtual, VHD file "
        f"{entry.image_size / MIB:.1f} MiB, {entry.package_count} packages"
    )


def test_mbr_has_a_bootable_fat_and_an_ext4_partition(raw_disk: Path) -> None:
    with raw_disk.open("rb") as f:
        mbr = f.read(512)
        f.seek(BOOT.start)
        fat = f.read(512)
        f.seek(ROOT.start + 1024)
        ext4 = f.read(1024)
    assert raw_disk.stat().st_size == DISK_SIZE
    assert mbr[510:] == b"\x55\xaa"
    entries = [mbr[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    parts = [(e[0], e[4], *struct.unpack("<II", e[8:16])) for e in entries]
    assert parts[0] == (0x80, 0x0E, BOOT.start // 512, BOOT.size // 512)
    assert parts[1] == (0x00, 0x83, ROOT.start // 512, ROOT.size // 512)
    assert parts[2] == parts[3] == (0, 0, 0, 0)
    assert ROOT.start + ROOT.size == DISK_SIZE
    assert fat[54:62] == b"FAT16   " and fat[510:] == b"\x55\xaa"
    assert struct.unpack("<H", ext4[56:58])[0] == 0xEF53  # ext4 superblock magic
    assert ext4[104:120].hex() == ROOT_UUID.replace("-", "")


def test_boot_partition_holds_syslinux_kernel_and_initramfs(raw_disk: Path) -> None:
    listing = subprocess.run(
        ["mdir", "-a", "-b", "-i", f"{raw_disk}@@{BOOT.start}", "::"],
        capture_output=True, text=True, check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    names = {line.split("/")[-1].lower() for line in listing.split()}
    assert {"ldlinux.sys", "ldlinux.c32", "syslinux.cfg", "vmlinuz", "initrd.gz"} <= names


def test_root_file_system_has_init_user_and_agent(
    guest_image: BuildResult, raw_disk: Path, tmp_path: Path
) -> None:
    part = tmp_path / "root.ext4"
    subprocess.run(
        ["dd", f"if={raw_disk}", f"of={part}", "bs=1M", f"skip={ROOT.start // MIB}",
         "conv=sparse", "status=none"],
        check=True,
    )  # fmt: skip
    subprocess.run(["e2fsck", "-f", "-n", str(part)], capture_output=True, check=True)
    assert "role:x:1000:1000::/home/role:/bin/sh" in debugfs(part, "cat /etc/passwd")
    init = debugfs(part, "cat /usr/lib/cloudservice/init")
    assert "exec python3 -m cloudservice_agent" in init
    assert "0755" in debugfs(part, "stat /usr/lib/cloudservice/init").split("Mode:")[1][:12]
    assert "python3.11" in names(part, "/usr/bin")
    assert names(part, "/usr/share/man") == set()  # docs and manuals are left out
    assert names(part, "/var/lib/apt/lists") == {"partial"}
    agent = "cloudservice_agent" in names(part, "/usr/lib/cloudservice")
    assert agent == (guest_image.entry.agent_digest is not None)


def test_same_inputs_reuse_the_catalog_entry(guest_image: BuildResult) -> None:
    again = build(BuildOptions())
    assert again.reused and again.entry == guest_image.entry
    assert again.seconds["total"] < 30


def test_a_forced_rebuild_gives_the_same_bytes(
    guest_image: BuildResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Full rebuild (mmdebstrap included) into another directory and catalog: same SHA-256.

    Only the Debian archive may move between two builds; then the packages digest differs
    and a second rebuild is compared to the first instead.
    """
    opts = BuildOptions(out=tmp_path / "a", catalog=tmp_path / "catalog.json", force=True)
    first = build(opts)
    reference = guest_image.entry
    if first.entry.packages_digest != reference.packages_digest:
        reference = first.entry
        first = build(BuildOptions(out=tmp_path / "b", catalog=opts.catalog, force=True))
    assert first.entry.packages_digest == reference.packages_digest
    assert first.entry.image_sha256 == reference.image_sha256
    assert agent_digest(BuildOptions().agent_dir) == reference.agent_digest
    with capsys.disabled():
        times = ", ".join(f"{k} {v:.1f} s" for k, v in first.seconds.items())
        print(f"\nguest OS rebuild: {times}")
    shutil.rmtree(tmp_path / "a", ignore_errors=True)


def test_an_added_package_publishes_a_newer_version(
    guest_image: BuildResult, tmp_path: Path
) -> None:
    """`--include` is how a test publishes "a newer version with updated packages"."""
    catalog_file = tmp_path / "catalog.json"
    Catalog(versions=[guest_image.entry]).save(catalog_file)
    newer = build(BuildOptions(includes=("less",), out=tmp_path, catalog=catalog_file)).entry
    catalog = Catalog.load(catalog_file)
    assert catalog.resolve(newer.family, "*") == newer
    assert newer.sequence == guest_image.entry.sequence + 1
    assert newer.includes == ("less",) and newer.build_key != guest_image.entry.build_key
    assert newer.packages_digest != guest_image.entry.packages_digest
    assert newer.package_count > guest_image.entry.package_count
    assert newer.version != guest_image.entry.version
