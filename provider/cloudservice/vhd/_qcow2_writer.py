"""Writing qcow2 (v3) overlays that hold only changed clusters over a backing file.

qemu silently misreads differencing VHDs, so a differencing layer is handed to qemu as a
qcow2 overlay instead.  Written in one streaming pass: header cluster, then data clusters
(and each L2 table once its 512 MiB range is done) in virtual order, then L1 and refcounts.
Memory: one L2 table (64 KiB) and the L1 table (8 bytes per 512 MiB).  All clusters have
refcount 1, which ``qemu-img check`` confirms in the tests.

L2 entries: 0 = "read the backing file", 1 = "reads as zeros" (v3 zero flag, no cluster),
otherwise host offset | COPIED.
"""

from __future__ import annotations

import os
import struct
from array import array

from ._files import NewFile
from .errors import ImageUsageError

CLUSTER_BITS = 16
COPIED = 1 << 63
ZERO_FLAG = 1
_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")
_EXT_BACKING_FORMAT = 0xE2792ACA
REFCOUNT_ORDER = 4  # 16-bit refcounts, qemu's default


class Qcow2OverlayWriter(NewFile):
    """Stream clusters (ascending index, each at most once) into a new qcow2 overlay."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        virtual_size: int,
        *,
        backing_file: str,
        backing_format: str,
        cluster_bits: int = CLUSTER_BITS,
    ) -> None:
        self.virtual_size = virtual_size
        self.cluster_size = 1 << cluster_bits
        self._bits = cluster_bits
        self._l2_entries = self.cluster_size // 8
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
        slot = self._slot(index)
        host = self._alloc(1)
        self.pwrite(data, host)
        assert self._l2 is not None
        self._l2[slot] = host | COPIED
        self.data_clusters += 1

    def add_zero_cluster(self, index: int) -> None:
        """Mark guest cluster ``index`` as reading zeros (hides the backing file's data)."""
        slot = self._slot(index)
        assert self._l2 is not None
        self._l2[slot] = ZERO_FLAG
        self.zero_clusters += 1

    def commit(self) -> int:
        self._flush_l2()
        l1_bytes = len(self._l1) * 8
        l1_at = self._alloc(-(-l1_bytes // self.cluster_size))
        self.pwrite(_be(self._l1), l1_at)
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
            0,
            0,
            0,
            REFCOUNT_ORDER,
            _HEADER.size,
        )
        self.pwrite(header + self._header_tail, 0)
        return super().commit()

    # -- internals -------------------------------------------------------------------------

    def _header_extensions(self, backing_file: str, backing_format: str) -> bytes:
        fmt = backing_format.encode()
        ext = struct.pack(">II", _EXT_BACKING_FORMAT, len(fmt)) + fmt.ljust(
            -(-len(fmt) // 8) * 8, b"\0"
        )
        ext += struct.pack(">II", 0, 0)
        name = backing_file.encode()
        self._backing_offset = _HEADER.size + len(ext)
        self._backing_size = len(name)
        if not name or self._backing_offset + len(name) > self.cluster_size or len(name) > 1023:
            raise ImageUsageError(f"backing file name {backing_file!r} must be 1-1023 bytes")
        return ext + name

    def _slot(self, index: int) -> int:
        if index <= self._last or index * self.cluster_size >= self.virtual_size:
            raise ImageUsageError(
                f"cluster {index} out of order or past the end (last was {self._last})"
            )
        self._last = index
        l2_index, slot = divmod(index, self._l2_entries)
        if l2_index != self._l2_index:
            self._flush_l2()
            self._l2 = array("Q", [0]) * self._l2_entries
            self._l2_index = l2_index
        return slot

    def _flush_l2(self) -> None:
        if self._l2 is not None:
            at = self._alloc(1)
            self.pwrite(_be(self._l2), at)
            self._l1[self._l2_index] = at | COPIED
            self._l2 = None

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
        ones = array("H", [1]) * total + array("H", [0]) * (rb * per_block - total)
        self.pwrite(_be(ones), rb_at)
        return rt_at, rt


def _be(values: array[int]) -> bytes:
    out = array(values.typecode, values)
    if struct.pack("=H", 1) != struct.pack(">H", 1):
        out.byteswap()
    return out.tobytes()
