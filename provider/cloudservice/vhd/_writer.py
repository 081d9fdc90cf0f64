"""Writing new VHD files in one streaming pass.

A new file is built under a partial name next to the target and renamed into place only
when complete, so a crash never leaves a half-written image under the real name.  Inside the
temp file the order is still qemu's: blocks (bitmap + data) -> footer -> fsync -> BAT and
header -> fsync -> rename -> fsync of the directory.  Memory is the BAT (4 bytes a block)
plus whatever buffer the caller passes in.
"""

from __future__ import annotations

import os
import sys
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from ._files import NewFile
from ._format import (
    DEFAULT_BLOCK_SIZE,
    DISK_DIFFERENCING,
    DISK_DYNAMIC,
    DISK_FIXED,
    FOOTER_SIZE,
    HEADER_SIZE,
    MAX_BLOCK_SIZE,
    MAX_VIRTUAL_SIZE,
    PLAT_W2KU,
    PLAT_W2RU,
    SECTOR,
    UNALLOCATED,
    DynamicHeader,
    Footer,
    Locator,
    bitmap_size,
    table_entries,
    vhd_timestamp,
)
from ._image import ExtentKind, Image, is_zero
from ._walk import data_blocks, resolved_status
from .errors import ImageIOError, ImageUsageError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ParentRef:
    """What a differencing child records about its parent (which need not be on this host).

    ``timestamp`` is the parent *footer's* time stamp: the parent may be known only by its
    manifest, and file mtimes change with every copy, so the footer value is the stable one.
    """

    unique_id: bytes
    virtual_size: int
    timestamp: int
    path: str  # where the child should look for it: a relative path is kept relative

    @classmethod
    def of(cls, parent: Image, child_path: str) -> ParentRef:
        footer = getattr(parent, "footer", None)
        if footer is None:
            raise ImageUsageError(
                f"{parent.path}: a differencing child needs a VHD parent (it records the"
                " parent's unique id); convert the parent to VHD first"
            )
        rel = os.path.relpath(
            os.path.abspath(parent.path), os.path.dirname(os.path.abspath(child_path))
        )
        return cls(footer.unique_id, parent.virtual_size, footer.timestamp, rel)


class VhdWriter(NewFile):
    """Build a dynamic or differencing VHD; blocks may come in any order, each once."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        virtual_size: int,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        parent: ParentRef | None = None,
        unique_id: bytes | None = None,
    ) -> None:
        check_size(virtual_size)
        if not (4096 <= block_size <= MAX_BLOCK_SIZE and block_size & (block_size - 1) == 0):
            raise ImageUsageError(
                f"block size {block_size} must be a power of two from 4096 to {MAX_BLOCK_SIZE}"
            )
        if parent is not None and parent.virtual_size != virtual_size:
            raise ImageUsageError(
                f"a differencing disk must be its parent's size ({parent.virtual_size}),"
                f" not {virtual_size}"
            )
        super().__init__(path)
        self.virtual_size = virtual_size
        self.block_size = block_size
        self._parent = parent
        self._uid = unique_id or uuid.uuid4().bytes
        self._bitmap_size = bitmap_size(block_size)
        entries = table_entries(virtual_size, block_size)
        self._bat = array("I", [UNALLOCATED]) * entries
        self._table_offset = FOOTER_SIZE + HEADER_SIZE
        self._locators = self._make_locators(self._table_offset + _round_up(entries * 4))
        self._next = max(
            [self._table_offset + _round_up(entries * 4)]
            + [loc.data_offset + _round_up(loc.data_length) for loc in self._locators]
        )

    @property
    def blocks_written(self) -> int:
        return sum(1 for e in self._bat if e != UNALLOCATED)

    def full_bitmap(self) -> bytes:
        used = self.block_size // SECTOR // 8
        return b"\xff" * used + bytes(self._bitmap_size - used)

    def write_block(
        self, index: int, data: bytes | bytearray | memoryview, bitmap: bytes | None = None
    ) -> None:
        """Store block ``index``: ``data`` (at most a block; the rest reads as zeros)."""
        if self._bat[index] != UNALLOCATED:
            raise ImageUsageError(f"block {index} was already written to {self.path}")
        if len(data) > self.block_size:
            raise ImageUsageError(
                f"block data is {len(data)} bytes, block size is {self.block_size}"
            )
        bits = self.full_bitmap() if bitmap is None else bitmap
        try:
            os.pwritev(self.fd, [bits, data], self._next)
        except OSError as exc:
            raise ImageIOError(exc.errno, f"write failed: {exc.strerror}", self.path) from exc
        self._bat[index] = self._next // SECTOR
        self._next += self._bitmap_size + self.block_size

    def commit(self) -> int:
        """Finish the file and move it into place; returns the file size."""
        footer = Footer(
            disk_type=DISK_DIFFERENCING if self._parent else DISK_DYNAMIC,
            current_size=self.virtual_size,
            unique_id=self._uid,
            data_offset=FOOTER_SIZE,
            timestamp=vhd_timestamp(),
        ).pack()
        header = DynamicHeader(
            table_offset=self._table_offset,
            max_table_entries=len(self._bat),
            block_size=self.block_size,
            parent_unique_id=self._parent.unique_id if self._parent else bytes(16),
            parent_timestamp=self._parent.timestamp if self._parent else 0,
            parent_name=PurePosixPath(self._parent.path).name if self._parent else "",
            locators=self._locators,
        ).pack()
        bat = array("I", self._bat)
        if sys.byteorder == "little":
            bat.byteswap()
        table = bat.tobytes()
        self.pwrite(footer, self._next)  # data -> footer -> fsync -> BAT/header -> fsync
        self.fsync()
        self.pwrite(table + b"\xff" * (_round_up(len(table)) - len(table)), self._table_offset)
        for loc in self._locators:
            self.pwrite(loc.data, loc.data_offset)
        self.pwrite(footer + header, 0)
        return super().commit()

    def _make_locators(self, at: int) -> tuple[Locator, ...]:
        if self._parent is None:
            return ()
        rel = self._parent.path
        win_rel = rel.replace("/", "\\") if rel.startswith("..") else ".\\" + rel.replace("/", "\\")
        absolute = os.path.join(os.path.dirname(os.path.abspath(self.path)), rel)
        absolute = os.path.normpath(absolute)
        out = []
        for code, text in ((PLAT_W2RU, win_rel), (PLAT_W2KU, absolute)):
            data = text.encode("utf-16-le")
            out.append(Locator(code, _round_up(len(data)), len(data), at, data))
            at += _round_up(len(data))
        return tuple(out)


class FixedWriter(NewFile):
    """Build a fixed VHD (raw data + footer) in Azure's layout: size a multiple of 1 MiB."""

    def __init__(
        self, path: str | os.PathLike[str], virtual_size: int, unique_id: bytes | None = None
    ) -> None:
        check_size(virtual_size)
        if virtual_size % MIB:
            raise ImageUsageError(
                f"fixed VHD size {virtual_size} is not a multiple of 1 MiB, which Azure requires;"
                f" round it up to {-(-virtual_size // MIB) * MIB}"
            )
        self.virtual_size = virtual_size
        self._uid = unique_id or uuid.uuid4().bytes
        super().__init__(path)

    def commit(self) -> int:
        footer = Footer(
            disk_type=DISK_FIXED,
            current_size=self.virtual_size,
            unique_id=self._uid,
            timestamp=vhd_timestamp(),
        ).pack()
        self.pwrite(footer, self.virtual_size)
        return super().commit()


def create_dynamic(
    path: str | os.PathLike[str], virtual_size: int, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> None:
    """Create an empty dynamic VHD."""
    VhdWriter(path, virtual_size, block_size=block_size).commit()


def create_fixed(path: str | os.PathLike[str], virtual_size: int) -> None:
    """Create a zero-filled (sparse on disk) fixed VHD of a 1 MiB multiple."""
    FixedWriter(path, virtual_size).commit()


def create_differencing(
    path: str | os.PathLike[str], parent: Image, *, block_size: int | None = None
) -> None:
    """Create an empty differencing child of ``parent`` (a VHD)."""
    size = parent.virtual_size
    bs = block_size or getattr(parent, "block_size", None) or DEFAULT_BLOCK_SIZE
    VhdWriter(path, size, block_size=bs, parent=ParentRef.of(parent, os.fspath(path))).commit()


def coalesce(
    image: Image,
    out_path: str | os.PathLike[str],
    *,
    fixed: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> int:
    """Write the chain's content as one standalone VHD (dynamic, or fixed); returns its size.

    Only blocks with data anywhere in the chain are read; all-zero blocks stay unallocated.
    """
    if fixed:
        return _coalesce_fixed(image, out_path)
    buf = bytearray(block_size)
    view = memoryview(buf)
    with VhdWriter(out_path, image.virtual_size, block_size=block_size) as writer:
        for index in data_blocks(image, block_size):
            start = index * block_size
            n = min(block_size, image.virtual_size - start)
            image.readinto(start, view[:n])
            if not is_zero(buf, 0, n):
                writer.write_block(index, view[:n])
        return writer.commit()


def _coalesce_fixed(image: Image, out_path: str | os.PathLike[str]) -> int:
    with FixedWriter(out_path, image.virtual_size) as writer:
        for offset, view in _data_chunks(image):
            writer.pwrite(view, offset)
        return writer.commit()


def write_raw(image: Image, out_path: str | os.PathLike[str]) -> int:
    """Write the image's content to a sparse raw file; returns bytes of data written."""
    written = 0
    with NewFile(out_path) as out:
        out.truncate(image.virtual_size)
        for offset, view in _data_chunks(image):
            out.pwrite(view, offset)
            written += len(view)
    return written


def _data_chunks(image: Image, chunk_size: int = 4 * MIB) -> Iterator[tuple[int, memoryview]]:
    """(offset, bytes) of every DATA range of the chain, in chunks; zero ranges are skipped."""
    view = memoryview(bytearray(chunk_size))
    offset = 0
    while offset < image.virtual_size:
        ext, _ = resolved_status(image, offset)
        n = min(ext.length, chunk_size)
        if ext.kind is ExtentKind.DATA:
            image.readinto(offset, view[:n])
            yield offset, view[:n]
        offset += n


def check_size(virtual_size: int) -> None:
    if not 0 < virtual_size <= MAX_VIRTUAL_SIZE or virtual_size % SECTOR:
        raise ImageUsageError(
            f"virtual size {virtual_size} must be a multiple of 512 between 512 and"
            f" {MAX_VIRTUAL_SIZE} (2040 GiB, the VHD maximum)"
        )


def _round_up(n: int) -> int:
    return -(-n // SECTOR) * SECTOR
