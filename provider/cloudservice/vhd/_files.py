"""New image files: built under a partial name and renamed into place when complete
(:class:`cloudservice.files.AtomicFile`), with the VHD engine's errors."""

from __future__ import annotations

import os

from ..files import AtomicFile
from ._image import pwrite_all
from .errors import ImageIOError


class NewFile(AtomicFile):
    """A new image file: ``commit()`` moves it into place, ``abort()`` (or leaving a ``with``
    block by an exception) deletes it; a kill at any moment leaves the old file or none.
    Subclasses write their metadata in ``commit()`` and end with ``super().commit()``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            super().__init__(path)
        except OSError as exc:
            raise ImageIOError(
                exc.errno, f"cannot create image: {exc.strerror}", os.fspath(path)
            ) from exc

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        pwrite_all(self.fd, data, offset, self.path)

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise ImageIOError(exc.errno, f"truncate failed: {exc.strerror}", self.path) from exc

    def fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise ImageIOError(exc.errno, f"fsync failed: {exc.strerror}", self.path) from exc

    def commit(self) -> int:
        """fsync and move into place; returns the file size."""
        try:
            return super().commit()
        except OSError as exc:
            raise ImageIOError(
                exc.errno, f"cannot finish image: {exc.strerror}", self.path
            ) from exc
