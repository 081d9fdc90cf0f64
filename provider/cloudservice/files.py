"""Files: why an input path cannot be used, outputs written atomically, digests, and what of
a file is data (for sparse copies).

Every package may import this module (it uses only the standard library); each turns the
``OSError`` raised here into its own errors at its boundary.

An output is built under a partial name beside it, ``.<name>.<random>.partial``, fsynced and
renamed over ``<name>`` only when complete, so a crash or a ``kill -9`` at any moment leaves
at ``<name>`` what was there before or the whole new file, never part of one. A writer holds
an exclusive ``flock`` on its partial file for as long as it lives (the kernel drops it when
the process dies, however it dies), so the next writer of the same output can tell a killed
run's partial files, which it deletes, from a running one's, which it leaves alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Self

__all__ = [
    "PARTIAL_SUFFIX",
    "AtomicFile",
    "data_bytes",
    "partial_files",
    "path_problem",
    "sha256_of_file",
    "sparse_sections",
    "why_unreadable",
    "write_atomically",
]

PARTIAL_SUFFIX = ".partial"
_SECTOR = 512  # the granularity of a sparse copy's data map
_ZERO_SECTOR = bytes(_SECTOR)
_PIECE = 64 * 1024
_ZERO_PIECE = bytes(_PIECE)
_SPARSE_CHUNK = 4 * 1024 * 1024


def path_problem(
    path: str | os.PathLike[str], *, directory: bool = False, absolute: bool = False
) -> str | None:
    """Why ``path`` cannot be read as the user's file (or ``directory``), in their words;
    None when it can. ``absolute``: a relative path is a problem of its own."""
    text = os.fspath(path)
    if absolute and not os.path.isabs(text):
        return f"{text} is not an absolute path"
    try:
        mode = os.stat(text).st_mode
    except OSError as exc:
        return f"{text} {why_unreadable(exc)}"
    if directory and not stat.S_ISDIR(mode):
        return f"{text} is a file, not a directory"
    if not directory and stat.S_ISDIR(mode):
        return f"{text} is a directory, not a file"
    if not directory and not stat.S_ISREG(mode):
        return f"{text} is not a regular file"
    return None


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The file's data regions, (start, end), as the filesystem reports them (SEEK_DATA and
    SEEK_HOLE). Both move the descriptor's position: readers of `fd` use `os.pread`."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from `offset` to the end
                return
            if exc.errno == errno.EINVAL:  # a filesystem that cannot tell: all of it is data
                yield offset, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


def _sector_runs(chunk: bytes) -> Iterator[tuple[bool, int]]:
    """`chunk` as runs of data and of all-zero 512-byte sectors, in order: (is_data, length).

    By 64 KiB pieces first (a piece without 512 zero bytes in a row is all data, an all-zero
    one all hole), sector by sector only inside pieces that are both."""
    kind, length = True, 0
    for piece in range(0, len(chunk), _PIECE):
        end = min(piece + _PIECE, len(chunk))
        if (end - piece) % _SECTOR == 0 and chunk.find(_ZERO_SECTOR, piece, end) < 0:
            sectors: Iterable[tuple[bool, int]] = ((True, end - piece),)
        elif chunk[piece:end] == _ZERO_PIECE[: end - piece]:
            sectors = ((False, end - piece),)
        else:
            sectors = (
                (
                    chunk[at : at + _SECTOR] != _ZERO_SECTOR[: min(_SECTOR, end - at)],
                    min(_SECTOR, end - at),
                )
                for at in range(piece, end, _SECTOR)
            )
        for is_data, size in sectors:
            if length and is_data != kind:
                yield kind, length
                length = 0
            kind, length = is_data, length + size
    if length:
        yield kind, length


def sparse_sections(fd: int) -> Iterator[memoryview | int]:
    """The file as a sparse stream carries it, in order: data (its bytes) or a hole (its length).

    Holes are the file's own and the runs of all-zero 512-byte sectors in its data, merged
    when they touch: a copy into a fresh file that reads zeros there is the same file. Data is
    read once, a chunk at a time (so a long data run is not scanned whole before it is sent).
    """
    size = os.fstat(fd).st_size
    position = hole = 0
    for start, end in _data_extents(fd, size):
        hole += start - position
        for offset in range(start, end, _SPARSE_CHUNK):
            chunk = os.pread(fd, min(_SPARSE_CHUNK, end - offset), offset)
            view, at = memoryview(chunk), 0
            for is_data, length in _sector_runs(chunk):
                if not is_data:
                    hole += length
                else:
                    if hole:
                        yield hole
                        hole = 0
                    yield view[at : at + length]
                at += length
        position = end
    hole += size - position
    if hole:
        yield hole


def data_bytes(path: str | os.PathLike[str]) -> int:
    """The bytes of data a sparse copy of the file carries (see `sparse_sections`)."""
    with open(path, "rb") as reader:
        return sum(len(s) for s in sparse_sections(reader.fileno()) if not isinstance(s, int))


def why_unreadable(exc: OSError) -> str:
    """What an ``OSError`` about a user's path means, in their words: "does not exist", ..."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "does not exist"
    if exc.errno == errno.EISDIR:
        return "is a directory, not a file"
    return f"cannot be read: {exc.strerror}"


class AtomicFile:
    """An output file built under a partial name: ``commit()`` fsyncs it and renames it over
    ``path``; ``abort()`` (or an exception leaving a ``with`` block) deletes it. Write through
    ``fd``, ``write()``, or (another program) the path ``partial``."""

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o644) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):  # found now, not after the whole output is written
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", self.path)
        _remove_stale(self.path)
        try:
            self.partial, self.fd = _create_partial(self.path, mode)
        except OSError as exc:  # named by the output the user gave, not the partial file
            missing = exc.errno == errno.ENOENT
            why = "its directory does not exist" if missing else exc.strerror
            raise OSError(exc.errno, why, self.path) from exc
        self._open = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (at the file position)."""
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self) -> int:
        """fsync, rename over ``path``, fsync the directory; returns the file size."""
        try:
            os.fsync(self.fd)
            size = os.fstat(self.fd).st_size
            os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise
        self._close()
        _fsync_directory(self.path)
        return size

    def abort(self) -> None:
        if self._open:
            self._close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.partial)

    def _close(self) -> None:
        self._open = False
        os.close(self.fd)  # also drops the lock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is not None:
            self.abort()
        elif self._open:
            self.commit()


def write_atomically(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """``path`` holds ``data``, or (after a crash) what it held before. ``mode`` 0o600 for
    secrets: the file never exists with wider permissions, not even briefly."""
    with AtomicFile(path, mode=mode) as out:
        out.write(data)


def partial_files(path: str | os.PathLike[str]) -> list[str]:
    """The partial files of output ``path`` there are now (running writers' and dead ones')."""
    head, tail = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(tail)}\.[0-9a-f]{{12}}{re.escape(PARTIAL_SUFFIX)}")
    try:
        names = os.listdir(head)
    except OSError:
        return []
    return sorted(os.path.join(head, name) for name in names if pattern.fullmatch(name))


def _create_partial(path: str, mode: int) -> tuple[str, int]:
    head, tail = os.path.split(os.path.abspath(path))
    while True:
        partial = os.path.join(head, f".{tail}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}")
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_at(fd, partial):
            return partial, fd
        os.close(fd)  # another writer's clean-up took it between open and flock: a new name


def _remove_stale(path: str) -> None:
    """Delete the partial files of ``path`` that no living writer holds. Best effort: one
    that cannot be deleted (another user's) stays, and only costs disk space."""
    for partial in partial_files(path):
        try:
            fd = os.open(partial, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
            if _is_at(fd, partial):
                os.unlink(partial)
        except OSError:
            pass
        finally:
            os.close(fd)


def _is_at(fd: int, path: str) -> bool:
    try:
        at, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (at.st_dev, at.st_ino) == (opened.st_dev, opened.st_ino)


def _fsync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
