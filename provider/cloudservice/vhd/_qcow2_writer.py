"""qcow2 (v3) overlays that hold only the changed clusters or subclusters over a backing file.

qemu silently misreads differencing VHDs, so a differencing layer is handed to qemu as a
qcow2 overlay instead.  Written in one streaming pass: header cluster, then data clusters
(and each L2 table once its range is done) in virtual order, then L1 and refcounts.
Memory: one L2 table (one cluster, 64 KiB) and the L1 table (8 bytes per L2 table's range).
All clusters have refcount 1, which ``qemu-img check`` confirms in the tests.  Metadata is
written page by page, skipping all-zero 4 KiB pages, and the file is extended to its last
cluster at the end, so the zero parts of L1/L2 tables and refcount blocks stay holes.

Standard L2 entries (8 bytes, 512 MiB per L2 table with 64 KiB clusters):
0 = "read the backing file", 1 = "reads as zeros" (v3 zero flag, no cluster), otherwise
host offset | COPIED.

Extended L2 entries (``extended_l2=True``, qemu's ``extended_l2=on``, incompatible feature
bit 4; clusters of at least 16 KiB): each 16-byte entry is the standard entry (its zero
flag unused) then a bitmap over the cluster's 32 subclusters (2 KiB with 64 KiB clusters):
bit i "subcluster i is stored in the host cluster", bit 32+i "subcluster i reads as zeros";
a subcluster with neither bit reads the backing file.  Why: a guest that changed one 4 KiB
page of a 64 KiB cluster then costs 4 KiB of data in the overlay (only the allocated
subclusters are written; the rest of the host cluster stays a hole in the file), not a
whole cluster copied together with 60 KiB of unchanged backing data.  ``add_cluster`` and
``add_zero_cluster`` set the allocated or zero bits of every subcluster that starts inside
the disk (for a last, partial cluster only those, as qemu does).  An L2 table then covers
256 MiB, and the header is 112 bytes (through the compression type byte, zlib, padded to 8),
as qemu writes it for such images (qemu 7.2 also opens a 104-byte one).
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator

from ._files import NewFile
from ._image import is_zero
from .errors import ImageUsageError

CLUSTER_BITS = 16
COPIED = 1 << 63
ZERO_FLAG = 1
EXTENDED_L2 = 1 << 4  # incompatible feature bit 4: extended L2 entries
SUBCLUSTERS = 32  # per cluster, with extended L2 entries
MIN_EXTENDED_L2_CLUSTER_BITS = 14  # qcow2.txt: subclusters of at least 512 bytes
ALL_SUBCLUSTERS = (1 << SUBCLUSTERS) - 1
_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")
_EXTENDED_HEADER_LENGTH = 112  # _HEADER, the compression type byte (0, zlib), padding
_EXT_BACKING_FORMAT = 0xE2792ACA
REFCOUNT_ORDER = 4  # 16-bit refcounts, qemu's default
_PAGE = 4096  # metadata is written in pages of this size; all-zero pages are left holes


class Qcow2OverlayWriter(NewFile):
    """Stream clusters (ascending index, each at most once) into a new qcow2 overlay.

    ``extended_l2=True`` writes extended L2 entries, so :meth:`add_subclusters` can store
    parts of a cluster; :meth:`add_cluster` and :meth:`add_zero_cluster` work in both modes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        virtual_size: int,
        *,
        backing_file: str,
        backing_format: str,
        cluster_bits: int = CLUSTER_BITS,
        extended_l2: bool = False,
    ) -> None:
        if extended_l2 and cluster_bits < MIN_EXTENDED_L2_CLUSTER_BITS:
            raise ImageUsageError(
                f"extended L2 entries need clusters of at least"
                f" {1 << MIN_EXTENDED_L2_CLUSTER_BITS} bytes, not {1 << cluster_bits}"
                f" (use cluster_bits >= {MIN_EXTENDED_L2_CLUSTER_BITS})"
            )
        self.virtual_size = virtual_size
        self.cluster_size = 1 << cluster_bits
        self.extended_l2 = extended_l2
        self.subcluster_size = self.cluster_size // SUBCLUSTERS if extended_l2 else 0
        self._bits = cluster_bits
        self._words = 2 if extended_l2 else 1  # 64-bit words per L2 entry
        self._l2_entries = self.cluster_size // (8 * self._words)
        self._header_length = _EXTENDED_HEADER_LENGTH if extended_l2 else _HEADER.size
        self._l1 = array("Q", [0]) * -(-virtual_size // (self.cluster_size * self._l2_entries))
        self._header_tail = self._header_extensions(backing_file, backing_format)
        self._l2: array[int] | None = None
        self._l2_index = -1
        self._last = -1
        self._next_cluster = 1
        self.data_clusters = 0
        self.zero_clusters = 0
        super().__init__(path)

    def add_cluster(self, index: int, data: bytes | bytearray | memoryview) -> None:
        """Store guest cluster ``index`` (``data`` is at most one cluster; the rest is zero)."""
        if memoryview(data).nbytes > self.cluster_size:
            raise ImageUsageError(
                f"cluster {index}: {memoryview(data).nbytes} bytes of data do not fit"
                f" in a cluster of {self.cluster_size}"
            )
        slot = self._slot(index)
        host = self._alloc(1)
        self.pwrite(data, host)
        self._set(slot, host | COPIED, self._in_disk(index))
        self.data_clusters += 1

    def add_zero_cluster(self, index: int) -> None:
        """Mark guest cluster ``index`` as reading zeros (hides the backing file's data)."""
        slot = self._slot(index)
        if self.extended_l2:  # no zero flag in extended entries: every subcluster's zero bit
            self._set(slot, 0, self._in_disk(index) << SUBCLUSTERS)
        else:
            self._set(slot, ZERO_FLAG, 0)
        self.zero_clusters += 1

    def add_subclusters(
        self,
        index: int,
        data: bytes | bytearray | memoryview,
        allocated: int,
        zero: int = 0,
    ) -> None:
        """Store part of guest cluster ``index`` (extended L2 entries only).

        ``data`` is the cluster's new contents from its start: a whole cluster, or up to the
        end of the disk for the last one (it must reach at least the end of the last
        allocated subcluster).  Bit i of ``allocated`` stores subcluster i (only those bytes
        are written; the rest of the host cluster stays a hole); bit i of ``zero`` makes
        subcluster i read as zeros; subclusters in neither mask read the backing file.  With
        ``allocated == 0`` no host cluster is used, only the entry's bitmap.
        """
        if not self.extended_l2:
            raise ImageUsageError(
                "add_subclusters needs extended L2 entries: create the writer with extended_l2=True"
            )
        for name, mask in (("allocated", allocated), ("zero", zero)):
            if not 0 <= mask <= ALL_SUBCLUSTERS:
                raise ImageUsageError(
                    f"cluster {index}: {name} mask {mask:#x} is not a {SUBCLUSTERS}-bit mask"
                )
        if allocated & zero:
            raise ImageUsageError(
                f"cluster {index}: subclusters {allocated & zero:#x} are both allocated and"
                " zero; a subcluster is one or the other"
            )
        self._check_index(index)
        past_end = (allocated | zero) & ~self._in_disk(index)
        if past_end:
            raise ImageUsageError(
                f"cluster {index}: subclusters {past_end:#x} lie past the end of the disk"
                f" ({self.virtual_size} bytes)"
            )
        view = memoryview(data).cast("B")
        sc = self.subcluster_size
        in_disk = min(self.cluster_size, self.virtual_size - index * self.cluster_size)
        need = min(allocated.bit_length() * sc, in_disk)
        if not need <= len(view) <= self.cluster_size:
            raise ImageUsageError(
                f"cluster {index}: data is {len(view)} bytes; the allocated subclusters"
                f" need {need} to {self.cluster_size} (the cluster's contents from its start)"
            )
        slot = self._slot(index)
        entry = 0
        if allocated:
            host = self._alloc(1)
            for first, end in _runs(allocated):
                self.pwrite(view[first * sc : min(end * sc, len(view))], host + first * sc)
            entry = host | COPIED
            self.data_clusters += 1
        self._set(slot, entry, allocated | zero << SUBCLUSTERS)

    def commit(self) -> int:
        self._flush_l2()
        l1_bytes = len(self._l1) * 8
        l1_at = self._alloc(-(-l1_bytes // self.cluster_size))
        self._pwrite_sparse(_be(self._l1), l1_at)
        rt_at, rt_clusters = self._write_refcounts()
        header = _HEADER.pack(
            b"QFI\xfb",
            3,
            self._backing_offset,
            self._backing_size,
            self._bits,
            self.virtual_size,
            0,
            len(self._l1),
            l1_at,
            rt_at,
            rt_clusters,
            0,
            0,
            EXTENDED_L2 if self.extended_l2 else 0,
            0,
            0,
            REFCOUNT_ORDER,
            self._header_length,
        )
        header = header.ljust(self._header_length, b"\0")
        self.pwrite(header + self._header_tail, 0)
        self.truncate(self._next_cluster * self.cluster_size)  # the unwritten tail: holes
        return super().commit()

    # -- internals -------------------------------------------------------------------------

    def _header_extensions(self, backing_file: str, backing_format: str) -> bytes:
        fmt = backing_format.encode()
        ext = struct.pack(">II", _EXT_BACKING_FORMAT, len(fmt)) + fmt.ljust(
            -(-len(fmt) // 8) * 8, b"\0"
        )
        ext += struct.pack(">II", 0, 0)
        name = backing_file.encode()
        self._backing_offset = self._header_length + len(ext)
        self._backing_size = len(name)
        if not name or self._backing_offset + len(name) > self.cluster_size or len(name) > 1023:
            raise ImageUsageError(f"backing file name {backing_file!r} must be 1-1023 bytes")
        return ext + name

    def _check_index(self, index: int) -> None:
        if index <= self._last or index * self.cluster_size >= self.virtual_size:
            raise ImageUsageError(
                f"cluster {index} out of order or past the end (last was {self._last})"
            )

    def _slot(self, index: int) -> int:
        self._check_index(index)
        self._last = index
        l2_index, slot = divmod(index, self._l2_entries)
        if l2_index != self._l2_index:
            self._flush_l2()
            self._l2 = array("Q", [0]) * (self._l2_entries * self._words)
            self._l2_index = l2_index
        return slot

    def _set(self, slot: int, entry: int, bitmap: int) -> None:
        """Fill L2 entry ``slot``; ``bitmap`` is ignored for standard entries."""
        assert self._l2 is not None
        self._l2[slot * self._words] = entry
        if self.extended_l2:
            self._l2[slot * 2 + 1] = bitmap

    def _in_disk(self, index: int) -> int:
        """The mask of cluster ``index``'s subclusters that start inside the disk."""
        left = self.virtual_size - index * self.cluster_size
        if not self.extended_l2 or left >= self.cluster_size:
            return ALL_SUBCLUSTERS
        return (1 << -(-left // self.subcluster_size)) - 1

    def _flush_l2(self) -> None:
        if self._l2 is not None:
            at = self._alloc(1)
            self._pwrite_sparse(_be(self._l2), at)
            self._l1[self._l2_index] = at | COPIED
            self._l2 = None

    def _pwrite_sparse(self, data: bytes, at: int) -> None:
        """Write ``data`` at ``at`` except its all-zero pages (``commit`` extends the file)."""
        start = None
        for page in range(0, len(data) + _PAGE, _PAGE):
            zero = page >= len(data) or is_zero(data, page, min(page + _PAGE, len(data)))
            if zero and start is not None:
                self.pwrite(memoryview(data)[start:page], at + start)
                start = None
            elif not zero and start is None:
                start = page

    def _alloc(self, clusters: int) -> int:
        at = self._next_cluster * self.cluster_size
        self._next_cluster += clusters
        return at

    def _write_refcounts(self) -> tuple[int, int]:
        """Refcount table + blocks sized for every cluster including themselves."""
        per_block = self.cluster_size * 8 // (1 << REFCOUNT_ORDER)
        base = self._next_cluster
        rb = rt = 0
        while True:
            total = base + rt + rb
            need_rb = -(-total // per_block)
            need_rt = -(-need_rb * 8 // self.cluster_size)
            if (need_rb, need_rt) == (rb, rt):
                break
            rb, rt = need_rb, need_rt
        rt_at = self._alloc(rt)
        rb_at = self._alloc(rb)
        table = array("Q", [rb_at + i * self.cluster_size for i in range(rb)])
        self.pwrite(_be(table), rt_at)
        self.pwrite(_be(array("H", [1]) * total), rb_at)  # the zeros after it: a hole
        return rt_at, rt


def _runs(mask: int) -> Iterator[tuple[int, int]]:
    """``(first, end)`` of each run of set bits in ``mask``, lowest first."""
    bit = 0
    while mask:
        gap = (mask & -mask).bit_length() - 1
        bit += gap
        mask >>= gap
        ones = (mask ^ (mask + 1)).bit_length() - 1
        yield bit, bit + ones
        bit += ones
        mask >>= ones


def _be(values: array[int]) -> bytes:
    out = array(values.typecode, values)
    if struct.pack("=H", 1) != struct.pack(">H", 1):
        out.byteswap()
    return out.tobytes()
