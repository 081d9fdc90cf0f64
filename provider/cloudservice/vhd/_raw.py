"""Raw images (diff input) and the sparse-file probing that fixed VHDs share.

Allocation comes from ``lseek(SEEK_DATA/SEEK_HOLE)``: a hole in the file reads as zeros
and is reported as ZERO, so a sparse raw or fixed image is never read where it has no data.
"""

from __future__ import annotations

import errno
import os

from ._image import Extent, ExtentKind, ImageBase, ImageInfo
from .errors import ImageIOError


class RawImage(ImageBase):
    """A plain disk image file: byte ``i`` of the disk is byte ``i`` of the file."""

    type_name = "raw"

    def __init__(self, path: str, fd: int, writable: bool, virtual_size: int) -> None:
        super().__init__(path, fd, writable)
        self.virtual_size = virtual_size

    def info(self) -> ImageInfo:
        return ImageInfo(
            path=self.path,
            type=self.type_name,
            virtual_size=self.virtual_size,
            block_size=None,
            file_size=os.fstat(self._fd).st_size,
        )

    def block_status(self, offset: int) -> Extent:
        self._check_range(offset, 1)
        end = self.virtual_size
        data_at = _seek(self._fd, offset, os.SEEK_DATA, end, self.path)
        if data_at > offset:
            return Extent(ExtentKind.ZERO, min(data_at, end) - offset)
        hole_at = _seek(self._fd, offset, os.SEEK_HOLE, end, self.path)
        return Extent(ExtentKind.DATA, min(hole_at, end) - offset, offset)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check_writable()
        self._check_range(offset, len(data))
        self._pwrite(data, offset)


def _seek(fd: int, offset: int, whence: int, end: int, path: str) -> int:
    """lseek that maps "no more data" (ENXIO) to ``end``, and unsupported to "all data"."""
    try:
        return os.lseek(fd, offset, whence)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return end
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return offset if whence == os.SEEK_DATA else end
        raise ImageIOError(exc.errno, f"lseek failed: {exc.strerror}", path) from exc
