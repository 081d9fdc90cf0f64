"""Walking ``block_status`` down a chain: the only source of allocation facts for diffs,
coalescing and maps (like ``qemu-img map``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ._image import Extent, ExtentKind, Image, fill_zero


@dataclass(frozen=True)
class MapEntry:
    """One run of a resolved map; ``depth`` is the chain level that supplies it (0 = top)."""

    start: int
    length: int
    depth: int
    data: bool

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "start": self.start,
            "length": self.length,
            "depth": self.depth,
            "data": self.data,
            "zero": not self.data,
        }


def resolved_status(image: Image, offset: int) -> tuple[Extent, int]:
    """Status at ``offset`` after following BACKING down the chain, and the depth answering.

    Returns DATA or ZERO only; the length is clamped to every layer it passed through.
    """
    depth = 0
    limit = image.virtual_size - offset
    layer: Image | None = image
    while layer is not None:
        if offset >= layer.virtual_size:
            return Extent(ExtentKind.ZERO, limit), depth
        ext = layer.block_status(offset)
        limit = min(limit, ext.length)
        if ext.kind is not ExtentKind.BACKING:
            return Extent(ext.kind, limit, ext.file_offset), depth
        layer = layer.parent
        depth += 1
    return Extent(ExtentKind.ZERO, limit), depth


def image_map(image: Image) -> list[MapEntry]:
    """Merged allocation map of the whole chain, like ``qemu-img map --output=json``."""
    out: list[MapEntry] = []
    offset = 0
    while offset < image.virtual_size:
        ext, depth = resolved_status(image, offset)
        data = ext.kind is ExtentKind.DATA
        last = out[-1] if out else None
        if last and last.depth == depth and last.data == data:
            out[-1] = MapEntry(last.start, last.length + ext.length, depth, data)
        else:
            out.append(MapEntry(offset, ext.length, depth, data))
        offset += ext.length
    return out


def next_data(image: Image, offset: int) -> int:
    """First offset >= ``offset`` that is not known to read as zeros (or the virtual size)."""
    while offset < image.virtual_size:
        ext, _ = resolved_status(image, offset)
        if ext.kind is ExtentKind.DATA:
            return offset
        offset += ext.length
    return image.virtual_size


def data_blocks(image: Image, block_size: int) -> Iterator[int]:
    """Indices of ``block_size`` blocks holding any DATA anywhere in the chain, ascending."""
    offset = 0
    while (offset := next_data(image, offset)) < image.virtual_size:
        index = offset // block_size
        yield index
        offset = (index + 1) * block_size


def merged_data_blocks(images: list[Image], block_size: int, size: int) -> Iterator[int]:
    """Ascending block indices where any of ``images`` has DATA; all-zero spans are skipped."""
    offset = 0
    while offset < size:
        starts = [next_data(img, offset) if offset < img.virtual_size else size for img in images]
        offset = min(starts)
        if offset >= size:
            return
        index = offset // block_size
        yield index
        offset = (index + 1) * block_size


def block_is_zero(image: Image, index: int, block_size: int) -> bool:
    """True if the block reads as zeros by allocation alone (no data read)."""
    start = index * block_size
    if start >= image.virtual_size:
        return True
    return next_data(image, start) >= min(start + block_size, image.virtual_size)


def read_block(image: Image, index: int, block_size: int, view: memoryview) -> int:
    """Fill ``view`` (one block long) with block ``index``, zero-padded past the disk end.

    Returns the bytes actually read from files: 0 when allocation alone says "zeros".
    """
    start = index * block_size
    n = max(0, min(block_size, image.virtual_size - start))
    if n == 0 or block_is_zero(image, index, block_size):
        fill_zero(view)
        return 0
    image.readinto(start, view[:n])
    fill_zero(view[n:])
    return n
