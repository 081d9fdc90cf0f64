"""New files are written under a temporary name and renamed into place when complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from types import TracebackType
from typing import Self

from ._image import pwrite_all
from .errors import ImageIOError


def temp_path(path: str) -> str:
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{tail}.tmp-{os.getpid()}")


def create_file(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise ImageIOError(exc.errno, f"cannot create image: {exc.strerror}", path) from exc


def finish_file(fd: int, tmp: str, path: str, mark_done: Callable[[], None]) -> int:
    """fsync, close, rename ``tmp`` over ``path``, fsync the directory; returns the size."""
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
        os.close(fd)
        mark_done()
        os.replace(tmp, path)
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        unlink_quiet(tmp)
        raise ImageIOError(exc.errno, f"cannot finish image: {exc.strerror}", path) from exc
    return size


def unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class NewFile:
    """A file built under a temporary name: ``commit()`` renames it into place, ``abort()``
    (or leaving a ``with`` block by an exception) deletes it.  Subclasses write their
    metadata in ``commit()`` and end with ``super().commit()``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._tmp = temp_path(self.path)
        self._fd = create_file(self._tmp)
        self._done = False

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        pwrite_all(self._fd, data, offset, self._tmp)

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise ImageIOError(exc.errno, f"truncate failed: {exc.strerror}", self._tmp) from exc

    def fsync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise ImageIOError(exc.errno, f"fsync failed: {exc.strerror}", self._tmp) from exc

    def commit(self) -> int:
        """fsync and move into place; returns the file size."""
        return finish_file(self._fd, self._tmp, self.path, self._mark_done)

    def abort(self) -> None:
        if not self._done:
            self._done = True
            os.close(self._fd)
            unlink_quiet(self._tmp)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is not None:
            self.abort()
        elif not self._done:
            self.commit()

    def _mark_done(self) -> None:
        self._done = True
