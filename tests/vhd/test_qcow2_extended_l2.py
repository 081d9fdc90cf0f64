"""qcow2 overlays with extended L2 entries (32 subclusters per cluster): a changed 4 KiB page
travels as 4 KiB, not as a 64 KiB cluster.  Checked with qemu-img (check, info, compare, map)
and qemu-io; the standard mode is checked unchanged here and in test_vhd_manifest_qcow2.py."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cloudservice.vhd import ImageUsageError
from cloudservice.vhd._qcow2_writer import Qcow2OverlayWriter
from vhd_helpers import MIB, make_raw, pattern, qemu_img, qemu_json

C = 64 * 1024  # cluster
PAGE = 4096  # two 2 KiB subclusters
SIZE = 4096 * C + 3 * C + 20 * 1024  # two L2 tables (4096 entries each); last cluster 20 KiB
LAST = SIZE // C  # 4099, the partial cluster: 10 subclusters
_TO_VPC = ("-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on")


def _pages(*pages: int) -> int:
    """The subcluster mask of these 4 KiB pages."""
    return sum(0b11 << (2 * p) for p in pages)


@pytest.fixture
def backing_raw(tmp_path: Path) -> Path:
    """Random data in the clusters the tests change (so zeros and holes would show)."""
    clusters = [0, 3, 4095, 4096, 4097, 4098, LAST]
    return make_raw(
        tmp_path / "backing.raw",
        SIZE,
        [(c * C, pattern(min(C, SIZE - c * C), c)) for c in clusters],
    )


class _Both:
    """The overlay writer and the raw image it must read as (the backing with the changes)."""

    def __init__(self, writer: Qcow2OverlayWriter, backing: Path, want: Path) -> None:
        self.writer = writer
        self.backing = backing
        self.want = want
        shutil.copyfile(backing, want)

    def put(self, offset: int, data: bytes) -> None:
        with open(self.want, "r+b") as fh:
            fh.seek(offset)
            fh.write(data)

    def pages(self, index: int, changes: dict[int, bytes | None]) -> None:
        """Change 4 KiB pages of cluster ``index``: new bytes, or None for zeros."""
        with open(self.backing, "rb") as fh:
            fh.seek(index * C)
            new = bytearray(fh.read(min(C, SIZE - index * C)))
        allocated = zero = 0
        for page, data in changes.items():
            if data is None:
                zero |= _pages(page)
                data = bytes(PAGE)
            else:
                allocated |= _pages(page)
            new[page * PAGE : (page + 1) * PAGE] = data
            self.put(index * C + page * PAGE, data)
        self.writer.add_subclusters(index, new, allocated, zero)

    def cluster(self, index: int, data: bytes) -> None:
        n = min(C, SIZE - index * C)
        self.put(index * C, data + bytes(n - len(data)))
        self.writer.add_cluster(index, data)

    def zero_cluster(self, index: int) -> None:
        self.put(index * C, bytes(min(C, SIZE - index * C)))
        self.writer.add_zero_cluster(index)


def _writer(path: Path, backing: str, fmt: str, size: int = SIZE) -> Qcow2OverlayWriter:
    return Qcow2OverlayWriter(
        path, size, backing_file=backing, backing_format=fmt, extended_l2=True
    )


def _l2_entry(path: Path, index: int) -> tuple[int, int]:
    """(standard entry, subcluster bitmap) of guest cluster ``index``, read from the file."""
    with open(path, "rb") as fh:
        head = fh.read(112)
        assert struct.unpack_from(">Q", head, 72)[0] & 16, "extended L2 bit not set"
        l1_at = struct.unpack_from(">Q", head, 40)[0]
        l1_index, slot = divmod(index, C // 16)
        fh.seek(l1_at + 8 * l1_index)
        l2_at = struct.unpack(">Q", fh.read(8))[0] & ((1 << 56) - 512)
        fh.seek(l2_at + 16 * slot)
        entry, bitmap = struct.unpack(">QQ", fh.read(16))
    return entry, bitmap


def _check(overlay: Path, want: Path) -> None:
    qemu_img("check", overlay)  # refcounts, L1/L2 and every subcluster bitmap consistent
    info = qemu_json("info", overlay)
    assert isinstance(info, dict)
    assert info["format-specific"]["data"]["extended-l2"] is True
    assert "Images are identical" in qemu_img("compare", "-F", "raw", overlay, want).stdout


def _depth0(overlay: Path, kind: str) -> int:
    """Bytes qemu maps in the overlay itself as ``kind`` ("data" or "zero")."""
    entries = qemu_json("map", overlay)
    assert isinstance(entries, list)
    return sum(e["length"] for e in entries if e["depth"] == 0 and e[kind])


def _qemu_io(image: Path, command: str) -> None:
    if shutil.which("qemu-io") is None:
        pytest.fail("qemu-io not found: install the Debian package qemu-utils")
    proc = subprocess.run(["qemu-io", "-c", command, str(image)], capture_output=True, text=True)
    assert proc.returncode == 0 and "failed" not in proc.stdout + proc.stderr, proc


@pytest.mark.parametrize("fmt", ["raw", "vpc"])
def test_pages_zeros_and_clusters_read_back_through_qemu(
    tmp_path: Path, backing_raw: Path, fmt: str
) -> None:
    backing = backing_raw
    if fmt == "vpc":
        backing = tmp_path / "backing.vhd"
        qemu_img("convert", *_TO_VPC, backing_raw, backing)
    overlay = tmp_path / "over.qcow2"
    with _writer(overlay, backing.name, fmt) as writer:
        both = _Both(writer, backing_raw, tmp_path / "want.raw")
        both.pages(0, {1: pattern(PAGE, 10)})
        both.pages(3, {0: pattern(PAGE, 11), 5: None, 15: pattern(PAGE, 12)})
        both.pages(4095, {2: None})  # zeros only: no host cluster; last entry of L2 table 0
        both.cluster(4096, pattern(C, 13))  # first entry of L2 table 1
        both.pages(4097, {p: pattern(PAGE, 20 + p) for p in range(16)})  # every page
        both.zero_cluster(4098)
        both.pages(LAST, {0: None, 4: pattern(PAGE, 14)})  # the disk's last 4 KiB
        writer.commit()
    _check(overlay, both.want)

    assert _depth0(overlay, "data") == 4 * PAGE + 2 * C
    assert _depth0(overlay, "zero") == 3 * PAGE + C
    assert _l2_entry(overlay, 4095) == (0, _pages(2) << 32)
    assert _l2_entry(overlay, 4098) == (0, 0xFFFFFFFF << 32)  # zero bits, not the zero flag
    entry, bitmap = _l2_entry(overlay, 3)
    assert entry >> 63 == 1 and bitmap == _pages(0, 15) | _pages(5) << 32

    # qemu writes into it as into its own: into the holes of a partly stored cluster, over
    # zero subclusters, over a cluster left to the backing file
    for offset, seed in ((3 * C + 8 * PAGE, 0x31), (4095 * C + 2 * PAGE, 0x32), (5 * C, 0x33)):
        _qemu_io(overlay, f"write -P {seed} {offset} {PAGE}")
        both.put(offset, bytes([seed]) * PAGE)
    _check(overlay, both.want)


@pytest.mark.parametrize("how", ["cluster", "short cluster", "zero cluster"])
def test_last_partial_cluster_marks_only_its_subclusters(
    tmp_path: Path, backing_raw: Path, how: str
) -> None:
    overlay = tmp_path / "over.qcow2"
    with _writer(overlay, "backing.raw", "raw") as writer:
        both = _Both(writer, backing_raw, tmp_path / "want.raw")
        if how == "zero cluster":
            both.zero_cluster(LAST)
        else:
            both.cluster(LAST, pattern(20 * 1024 if how == "cluster" else 5000, 15))
        writer.commit()
    _check(overlay, both.want)
    entry, bitmap = _l2_entry(overlay, LAST)
    # as qemu itself does: 10 subclusters of 2 KiB cover the last 20 KiB
    assert bitmap == (0x3FF << 32 if how == "zero cluster" else 0x3FF)
    assert (entry == 0) == (how == "zero cluster")


def test_single_pages_cost_pages_not_clusters(tmp_path: Path) -> None:
    size = 64 * MIB
    backing = make_raw(tmp_path / "backing.raw", size, [(0, pattern(size, 1))])
    changes = [(i * 21, i % 16, pattern(PAGE, 100 + i)) for i in range(48)]  # 48 clusters

    def blocks(extended: bool) -> int:
        overlay = tmp_path / f"over-{extended}.qcow2"
        with Qcow2OverlayWriter(
            overlay, size, backing_file="backing.raw", backing_format="raw", extended_l2=extended
        ) as writer:
            with open(backing, "rb") as fh:
                for index, page, data in changes:
                    fh.seek(index * C)
                    cluster = bytearray(fh.read(C))
                    cluster[page * PAGE : (page + 1) * PAGE] = data
                    if extended:
                        writer.add_subclusters(index, cluster, _pages(page))
                    else:
                        writer.add_cluster(index, cluster)
            writer.commit()
        check = qemu_json("check", overlay)
        assert isinstance(check, dict) and check["allocated-clusters"] == 48
        return os.stat(overlay).st_blocks * 512

    want = tmp_path / "want.raw"
    shutil.copyfile(backing, want)
    with open(want, "r+b") as fh:
        for index, page, data in changes:
            fh.seek(index * C + page * PAGE)
            fh.write(data)
    extended, standard = blocks(True), blocks(False)
    _check(tmp_path / "over-True.qcow2", want)
    assert "Images are identical" in (
        qemu_img("compare", "-F", "raw", tmp_path / "over-False.qcow2", want).stdout
    )
    # 48 pages of data, plus header, L2, L1 and refcount pages (their zeros stay holes) and
    # the file system's own extent blocks
    assert 48 * PAGE <= extended <= 48 * PAGE + 16 * PAGE
    assert standard >= 48 * C


@pytest.mark.parametrize(
    "index, data, allocated, zero, message",
    [
        (1, bytes(C), 1 << 32, 0, r"allocated mask 0x100000000 is not a 32-bit mask"),
        (1, bytes(C), -1, 0, r"allocated mask -0x1 is not a 32-bit mask"),
        (1, bytes(C), 0, 1 << 32, r"zero mask 0x100000000 is not a 32-bit mask"),
        (1, bytes(C), 0b0110, 0b1100, r"subclusters 0x4 are both allocated and zero"),
        (LAST, bytes(20 * 1024), 0, 1 << 10, r"subclusters 0x400 lie past the end"),
        (LAST, bytes(20 * 1024), 1 << 12, 0, r"subclusters 0x1000 lie past the end"),
        (1, bytes(PAGE), _pages(15), 0, r"data is 4096 bytes; .* need 65536"),
        (1, bytes(C + 1), 1, 0, r"data is 65537 bytes"),
        (LAST, bytes(16 * 1024), _pages(4), 0, r"data is 16384 bytes; .* need 20480"),
        (0, bytes(C), 1, 0, r"cluster 0 out of order"),
        (LAST + 1, bytes(C), 1, 0, r"cluster 4100 out of order or past the end"),
    ],
)
def test_bad_calls_are_refused_and_leave_the_writer_usable(
    tmp_path: Path, index: int, data: bytes, allocated: int, zero: int, message: str
) -> None:
    overlay = tmp_path / "over.qcow2"
    with _writer(overlay, "backing.raw", "raw") as writer:
        writer.add_subclusters(0, bytes(C), 1)
        with pytest.raises(ImageUsageError, match=message):
            writer.add_subclusters(index, data, allocated, zero)
        writer.add_subclusters(1, bytes(C), 1)  # index 1 was not used up by the refusal
        writer.add_subclusters(LAST, bytes(20 * 1024), 0x3FF)
        writer.commit()
    make_raw(tmp_path / "backing.raw", SIZE, [])
    qemu_img("check", overlay)


def test_subclusters_need_extended_l2_and_16k_clusters(tmp_path: Path) -> None:
    with (
        pytest.raises(ImageUsageError, match="create the writer with extended_l2=True"),
        Qcow2OverlayWriter(
            tmp_path / "std.qcow2", SIZE, backing_file="b.raw", backing_format="raw"
        ) as writer,
    ):
        writer.add_subclusters(0, bytes(C), 1)
    with pytest.raises(ImageUsageError, match="clusters of at least 16384 bytes, not 8192"):
        Qcow2OverlayWriter(
            tmp_path / "small.qcow2",
            SIZE,
            backing_file="b.raw",
            backing_format="raw",
            cluster_bits=13,
            extended_l2=True,
        )
    assert os.listdir(tmp_path) == []  # nothing left behind, not even a partial file


def test_standard_mode_header_is_unchanged(tmp_path: Path, backing_raw: Path) -> None:
    overlay = tmp_path / "std.qcow2"
    with Qcow2OverlayWriter(
        overlay, SIZE, backing_file="backing.raw", backing_format="raw"
    ) as writer:
        writer.add_cluster(3, pattern(C, 1))
        writer.add_zero_cluster(4)
        writer.commit()
    with open(overlay, "rb") as fh:
        head = fh.read(104)
    assert struct.unpack_from(">Q", head, 72)[0] == 0  # no incompatible feature
    assert struct.unpack_from(">I", head, 100)[0] == 104  # header length
    qemu_img("check", overlay)
    info = qemu_json("info", overlay)
    assert isinstance(info, dict)
    assert info["format-specific"]["data"]["extended-l2"] is False
