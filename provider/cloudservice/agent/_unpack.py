"""Checking and unpacking the role's package from the package disk.

The package disk holds the ``.cspkg`` bytes zero-padded to a 512-byte multiple: exactly
``size`` bytes are the package. The agent hashes them first (a mismatch is reported before
anything is unpacked), then reads them again while unpacking and hashes them again, so a disk
that changes between the two passes is caught too.

Every member is checked before it is written: ``manifest.json`` or a name under
``content/``; no absolute path, ``..``, empty or ``.`` component, backslash or control
character; only regular files, directories and symlinks whose target stays inside the root;
nothing below a symlink. Files are created with ``O_EXCL|O_NOFOLLOW`` (a duplicate is
refused) and symlinks last, so nothing is ever written through a link. This is the same
contract as ``cloudservice.model.read_package``, written again with the standard library
because the agent runs in the guest without the rest of ``cloudservice``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from .errors import DigestMismatch, PackageRejected

__all__ = ["MAX_ENTRIES", "MAX_TOTAL_BYTES", "unpack_package", "verify_digest"]

_CHUNK = 1 << 20
MANIFEST_NAME = "manifest.json"
CONTENT_PREFIX = "content/"
MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 16 << 30
MAX_MANIFEST_BYTES = 16 << 20


def verify_digest(device: str | os.PathLike[str], size: int, sha256: str) -> None:
    """Raise DigestMismatch unless the first ``size`` bytes of ``device`` hash to ``sha256``."""
    digest = hashlib.sha256()
    read = 0
    try:
        with open(device, "rb") as handle:
            while read < size:
                chunk = handle.read(min(_CHUNK, size - read))
                if not chunk:
                    break
                digest.update(chunk)
                read += len(chunk)
    except OSError as exc:
        raise PackageRejected(f"cannot read the package disk {device}: {exc.strerror}") from exc
    if read < size:
        raise DigestMismatch(
            f"package disk {device} holds {read} bytes, the configuration says {size}; "
            "the fabric attached the wrong package disk"
        )
    if digest.hexdigest() != sha256:
        raise DigestMismatch(
            f"package digest mismatch: the package disk hashes to {digest.hexdigest()}, the "
            f"configuration expects {sha256}; the fabric attached the wrong package disk"
        )


class _Window(io.RawIOBase):
    """The first ``size`` bytes of a file, hashed as they are read."""

    def __init__(self, handle: io.BufferedReader, size: int) -> None:
        self.handle = handle
        self.left = size
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        data = self.handle.read(min(len(view), self.left))
        self.left -= len(data)
        self.digest.update(data)
        view[: len(data)] = data
        return len(data)

    def finish(self) -> str:
        while self.left and (data := self.handle.read(min(_CHUNK, self.left))):
            self.left -= len(data)
            self.digest.update(data)
        return self.digest.hexdigest()


def _unsafe_name(name: str) -> str | None:
    if not name:
        return "has an empty name"
    if name.startswith("/"):
        return "is an absolute path"
    if "\\" in name:
        return "contains a backslash"
    parts = name.split("/")
    if ".." in parts:
        return "contains a '..' component"
    if "" in parts or "." in parts:
        return "contains an empty or '.' component"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "contains a control character"
    return None


def _link_escapes(path: str, target: str) -> bool:
    if not target or target.startswith("/") or "\\" in target:
        return True
    if any(ord(char) < 32 for char in target):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


def _member_path(member: tarfile.TarInfo) -> str | None:
    """The member's path below ``content/`` (None for the manifest or the content dir)."""
    name = member.name
    if name == MANIFEST_NAME and member.isfile():
        return None
    if member.isdir() and name.rstrip("/") == "content":
        return None
    if not name.startswith(CONTENT_PREFIX):
        raise PackageRejected(f"package entry {name!r} is outside {CONTENT_PREFIX!r}; refused")
    rel = name[len(CONTENT_PREFIX) :]
    if member.isdir():
        rel = rel.rstrip("/")
    reason = _unsafe_name(rel)
    if reason:
        raise PackageRejected(f"package entry {name!r} {reason}; refused")
    if member.issym():
        if _link_escapes(rel, member.linkname):
            raise PackageRejected(
                f"package entry {name!r} is a link leaving the package ({member.linkname!r}); "
                "refused"
            )
    elif member.islnk():
        raise PackageRejected(f"package entry {name!r} is a hard link; refused")
    elif not (member.isfile() or member.isdir()):
        raise PackageRejected(f"package entry {name!r} is a device, FIFO or special file; refused")
    return rel


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    assert source is not None  # regular files always have a data stream
    mode = 0o755 if member.mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    written = 0
    with os.fdopen(os.open(target, flags, mode), "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            written += len(chunk)
    if written != member.size:
        raise PackageRejected(f"package entry {member.name!r} is truncated")


def _extract(tar: tarfile.TarFile, staging: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = {}
    links: dict[str, str] = {}
    names: set[str] = set()
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_ENTRIES:
            raise PackageRejected(f"the package has more than {MAX_ENTRIES} entries; refused")
        total += member.size
        if total > MAX_TOTAL_BYTES:
            raise PackageRejected(f"the package expands past {MAX_TOTAL_BYTES} bytes; refused")
        rel = _member_path(member)
        if rel is None:
            if member.isfile():
                manifest = _read_manifest(tar, member)
            continue
        if rel in names:
            raise PackageRejected(f"package entry {member.name!r} is a duplicate; refused")
        names.add(rel)
        if member.issym():
            links[rel] = member.linkname
        elif member.isdir():
            (staging / rel).mkdir(parents=True, exist_ok=True)
        else:
            _write_file(tar, member, staging / rel)
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise PackageRejected(f"package entry {name!r} lies below a symlink; refused")
    for rel, target in sorted(links.items()):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, staging / rel)
    return manifest


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    if member.size > MAX_MANIFEST_BYTES:
        raise PackageRejected(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    handle = tar.extractfile(member)
    assert handle is not None
    try:
        manifest = json.loads(handle.read())
    except ValueError as exc:
        raise PackageRejected(f"{MANIFEST_NAME} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise PackageRejected(f"{MANIFEST_NAME} is not a JSON object")
    return manifest


def unpack_package(
    device: str | os.PathLike[str], size: int, sha256: str, destination: str | os.PathLike[str]
) -> dict[str, Any]:
    """Check the package on ``device`` and unpack its content into ``destination``.

    ``destination`` is replaced as a whole: the content is unpacked next to it and renamed
    into place only once every member and the digest have passed. Returns the manifest
    (camelCase keys, as ``cloudservice.model.PackageManifest`` writes it).
    """
    verify_digest(device, size, sha256)
    final = Path(destination)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(final.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755)
    try:
        with open(device, "rb") as raw:
            window = _Window(raw, size)
            try:
                with tarfile.open(fileobj=io.BufferedReader(window), mode="r|gz") as tar:
                    manifest = _extract(tar, staging)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                raise PackageRejected(f"the package is not a readable .cspkg: {exc}") from exc
            if window.finish() != sha256:
                raise DigestMismatch("the package disk changed while it was unpacked; refused")
        os.chmod(staging, 0o755)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
