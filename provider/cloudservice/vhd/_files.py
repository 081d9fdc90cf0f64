"""New files are written under a temporary name and renamed into place when complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

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
