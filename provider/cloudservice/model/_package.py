"""Role packages: this model's ``.cspkg``, one per role.

A package is a gzip-compressed tar holding ``manifest.json`` followed by the role's files
under ``content/``. Building is deterministic: entries are sorted, and mtime, owner and mode
are normalised (0644, or 0755 when any execute bit is set), and the gzip header carries no
time or name, so the same files give the same bytes and digest whatever the mtimes, umask or
directory listing order. Empty directories are not kept.

Reading checks every entry before anything is written: names (no absolute paths, no ``..``,
no backslashes, no duplicates, also none differing only in case because Windows guests fold
case), types (regular files and symlinks that stay inside the root), caps on total size,
compression ratio and entry count, and that the content matches the manifest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import Field, ValidationError

from ..files import AtomicFile, path_problem
from ._base import Model
from ._definition import StartupTask
from ._spec import ServiceSpec
from .errors import PackageCorrupt, PackageError, PackageTooLarge, UnsafePackageEntry

__all__ = [
    "FileChange",
    "PackageDiff",
    "PackageFile",
    "PackageLimits",
    "PackageLink",
    "PackageManifest",
    "RolePackage",
    "build_package",
    "diff_packages",
    "extract_package",
    "fill_package_digests",
    "read_package",
]

MANIFEST_NAME = "manifest.json"
CONTENT_PREFIX = "content/"
FIXED_MTIME = 315532800  # 1980-01-01, the earliest time every archive tool accepts
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackageLimits:
    """Caps applied when reading a package; raise them only for packages you trust."""

    max_total_bytes: int = 4 << 30
    """Sum of the sizes of all entries once expanded."""
    max_ratio: float = 200.0
    """Expanded bytes per archive byte; beyond this the archive is treated as a bomb."""
    ratio_floor_bytes: int = 64 << 20
    """The ratio is only enforced past this many expanded bytes (small files compress well)."""
    max_entries: int = 100_000
    max_manifest_bytes: int = 16 << 20


class PackageFile(Model):
    """One file in a package."""

    path: str = Field(description="Path relative to the package root, '/'-separated.")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the content, hex.")
    executable: bool = Field(default=False, description="Installed with execute permission.")


class PackageLink(Model):
    """A symbolic link in a package; its target stays inside the package root."""

    path: str = Field(description="Path of the link relative to the package root.")
    target: str = Field(description="Relative link target.")


class PackageManifest(Model):
    """What a package holds and how the role starts."""

    format: Literal[1] = Field(default=1, description="Package format version.")
    entry_point: str | None = Field(default=None, description="Command that runs the role.")
    startup_tasks: list[StartupTask] = Field(
        default_factory=list, description="Commands run before the role starts, in order."
    )
    files: list[PackageFile] = Field(default_factory=list, description="Files, sorted by path.")
    links: list[PackageLink] = Field(default_factory=list, description="Symlinks, by path.")

    @property
    def total_size(self) -> int:
        return sum(item.size for item in self.files)


@dataclass(frozen=True)
class RolePackage:
    """A package file that has passed every check."""

    path: Path
    digest: str
    """sha256 of the package file: what the planner compares to detect new code."""
    size: int
    manifest: PackageManifest


# ---------------------------------------------------------------- names


def _unsafe_name(name: str) -> str | None:
    """Why ``name`` (relative to the package root) is unsafe, or None."""
    if not name:
        return "has an empty name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if "\\" in name:
        return "contains a backslash, a path separator on Windows guests"
    parts = name.split("/")
    if ".." in parts:
        return "contains a '..' component"
    if "" in parts or "." in parts:
        # Our builder never writes these; "." or "a//b" could name the root or a parent.
        return "contains an empty or '.' component"
    if any(ord(char) < 32 for char in name):
        return "contains a control character"
    return None


def _link_escapes(path: str, target: str) -> bool:
    """True when the link at ``path`` could point outside the root (or nowhere sane)."""
    if not target or any(ord(char) < 32 for char in target):
        return True  # an empty target cannot even be created
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target) or "\\" in target:
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


class _NameRegistry:
    """Rejects duplicates (case-insensitively), paths under a symlink, and a name used both
    as a file and as a directory."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.seen: dict[str, str] = {}
        self.links: set[str] = set()
        self.directories: set[str] = set()

    def add(self, path: str, *, link: bool = False) -> None:
        key = path.casefold()
        if key in self.seen:
            raise UnsafePackageEntry(
                f"{self.where}: {path!r} is a duplicate of {self.seen[key]!r} "
                "(names differing only in case collide on Windows guests); rename one"
            )
        if key in self.directories:
            raise UnsafePackageEntry(f"{self.where}: {path!r} is both a file and a directory")
        parts = key.split("/")
        parents = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        for parent in parents:
            if parent in self.links:
                raise UnsafePackageEntry(
                    f"{self.where}: {path!r} lies under a symlink; links may only be leaves"
                )
            if parent in self.seen:
                raise UnsafePackageEntry(
                    f"{self.where}: {self.seen[parent]!r} is both a file and a directory"
                )
        self.seen[key] = path
        self.directories.update(parents)
        if link:
            self.links.add(key)


# ---------------------------------------------------------------- build


@dataclass(frozen=True)
class _SourceEntry:
    path: str
    full: Path
    link_target: str | None = None


def _walk(root: Path, exclude: set[Path]) -> Iterator[_SourceEntry]:
    """Files and links under ``root``, sorted, whatever order the directory lists them."""
    with os.scandir(root) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        full = Path(entry.path)
        if full.absolute() in exclude:
            continue
        yield from _walk_entry(entry, full, root, exclude)


def _walk_entry(
    entry: os.DirEntry[str], full: Path, root: Path, exclude: set[Path]
) -> Iterator[_SourceEntry]:
    if entry.is_symlink():
        yield _SourceEntry(entry.path, full, os.readlink(full))
    elif entry.is_dir():
        yield from _walk(full, exclude)
    elif entry.is_file():
        yield _SourceEntry(entry.path, full)
    else:
        raise UnsafePackageEntry(
            f"{full}: not a regular file, directory or symlink (device, FIFO or socket); "
            "remove it from the package directory"
        )


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _collect(source: Path, exclude: set[Path]) -> tuple[list[PackageFile], list[PackageLink]]:
    files: list[PackageFile] = []
    links: list[PackageLink] = []
    registry = _NameRegistry(str(source))
    for entry in _walk(source, exclude):
        rel = entry.full.relative_to(source).as_posix()
        reason = _unsafe_name(rel)
        if reason:
            raise UnsafePackageEntry(f"{entry.full}: the name {reason}; rename it")
        registry.add(rel, link=entry.link_target is not None)
        if entry.link_target is not None:
            if _link_escapes(rel, entry.link_target):
                raise UnsafePackageEntry(
                    f"{entry.full}: the link points outside {source} ({entry.link_target!r}); "
                    "copy the file into the package directory instead"
                )
            links.append(PackageLink(path=rel, target=entry.link_target))
            continue
        size, digest = _hash_file(entry.full)
        executable = bool(entry.full.stat().st_mode & 0o111)
        files.append(PackageFile(path=rel, size=size, sha256=digest, executable=executable))
    return files, links


def _tarinfo(name: str, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_package(
    source_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    entry_point: str | None = None,
    startup_tasks: Sequence[StartupTask] = (),
) -> RolePackage:
    """Build a package of everything under ``source_dir`` and write it to ``output``.

    The output is written under a partial name and renamed when complete, so a failed or
    killed build leaves no partial package behind (or the previous one, unchanged).
    """
    source = Path(source_dir)
    if problem := path_problem(source, directory=True):
        raise PackageError(f"{problem}; give the role's directory")
    target = Path(output).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(target) as out, open(out.fd, "wb", closefd=False) as raw:
        # The output (and its partial file) may be inside the directory: never packaged.
        files, links = _collect(source, exclude={target, Path(out.partial)})
        manifest = PackageManifest(
            entry_point=entry_point, startup_tasks=list(startup_tasks), files=files, links=links
        )
        _write_archive(raw, source, manifest)
    return read_package(target)


def _write_archive(raw: IO[bytes], source: Path, manifest: PackageManifest) -> None:
    manifest_bytes = (
        json.dumps(manifest.model_dump(mode="json", by_alias=True), indent=2, sort_keys=True) + "\n"
    ).encode()
    # filename="" and mtime=0 keep the gzip header free of the output name and build time.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_tarinfo(MANIFEST_NAME, len(manifest_bytes)), io.BytesIO(manifest_bytes))
        entries: list[tuple[str, PackageFile | PackageLink]] = [
            *((item.path, item) for item in manifest.files),
            *((item.path, item) for item in manifest.links),
        ]
        for path, item in sorted(entries, key=lambda pair: pair[0]):
            name = CONTENT_PREFIX + path
            if isinstance(item, PackageLink):
                info = _tarinfo(name, mode=0o777)
                info.type = tarfile.SYMTYPE
                info.linkname = item.target
                tar.addfile(info)
                continue
            mode = 0o755 if item.executable else 0o644
            with (source / path).open("rb") as handle:
                tar.addfile(_tarinfo(name, item.size, mode), handle)


# ---------------------------------------------------------------- read


class _CappedReader(io.RawIOBase):
    """Counts decompressed bytes and stops a compression bomb before it is expanded."""

    def __init__(
        self, inner: IO[bytes] | gzip.GzipFile, where: str, limit: int, reason: str
    ) -> None:
        self.inner = inner
        self.where = where
        self.limit = limit
        self.reason = reason
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise PackageTooLarge(f"{self.where}: {self.reason}")
        buffer[: len(data)] = data
        return len(data)


@dataclass
class _Scan:
    manifest: PackageManifest | None = None
    files: dict[str, tuple[int, str, bool]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _open_stream(path: Path, limits: PackageLimits) -> Iterator[tarfile.TarFile]:
    archive_size = path.stat().st_size
    ratio_limit = max(int(limits.max_ratio * archive_size), limits.ratio_floor_bytes)
    with path.open("rb") as raw:
        capped = _CappedReader(
            gzip.GzipFile(fileobj=raw, mode="rb"),
            str(path),
            ratio_limit,
            f"expands more than {limits.max_ratio:g} times its size; refusing a likely "
            "compression bomb (raise PackageLimits.max_ratio only if you trust it)",
        )
        try:
            with tarfile.open(fileobj=io.BufferedReader(capped), mode="r|") as tar:
                yield tar
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise PackageCorrupt(
                f"{path}: not a readable role package ({exc}); rebuild it with "
                "`cloudservice package build`"
            ) from exc


def _check_member(member: tarfile.TarInfo, where: str, registry: _NameRegistry) -> str | None:
    """The member's path inside ``content/`` (None for the manifest), or raise."""
    if member.name == MANIFEST_NAME and member.isfile():
        registry.add(MANIFEST_NAME)
        return None
    if not member.name.startswith(CONTENT_PREFIX):
        reason = _unsafe_name(member.name)
        raise UnsafePackageEntry(
            f"{where}: entry {member.name!r} "
            + (reason or f"is outside {CONTENT_PREFIX!r}")
            + "; the package was not made by `cloudservice package build`"
        )
    path = member.name[len(CONTENT_PREFIX) :]
    reason = _unsafe_name(path)
    if reason:
        raise UnsafePackageEntry(f"{where}: entry {member.name!r} {reason}")
    if member.issym():
        if _link_escapes(path, member.linkname):
            raise UnsafePackageEntry(
                f"{where}: link {member.name!r} -> {member.linkname!r} leaves the package root "
                "or has no target"
            )
    elif member.islnk():
        raise UnsafePackageEntry(
            f"{where}: hard link {member.name!r} -> {member.linkname!r}: packages hold regular "
            "files and symlinks only"
        )
    elif member.isdir():
        return path
    elif not member.isfile():
        raise UnsafePackageEntry(
            f"{where}: entry {member.name!r} is a device, FIFO or other special file"
        )
    registry.add(path, link=member.issym())
    return path


def _scan(path: Path, limits: PackageLimits) -> _Scan:
    where = str(path)
    scan = _Scan()
    registry = _NameRegistry(where)
    total = entries = 0
    with _open_stream(path, limits) as tar:
        for member in tar:
            entries += 1
            if entries > limits.max_entries:
                raise PackageTooLarge(f"{where}: more than {limits.max_entries} entries")
            total += member.size
            if total > limits.max_total_bytes:
                raise PackageTooLarge(
                    f"{where}: expands to more than {limits.max_total_bytes} bytes"
                )
            rel = _check_member(member, where, registry)
            if rel is None:
                scan.manifest = _read_manifest(tar, member, where, limits)
            elif member.issym():
                scan.links[rel] = member.linkname
            elif member.isfile():
                scan.files[rel] = (*_hash_member(tar, member), bool(member.mode & 0o111))
    return scan


def _hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> tuple[int, str]:
    handle = tar.extractfile(member)
    assert handle is not None  # regular files always have a data stream
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _read_manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo, where: str, limits: PackageLimits
) -> PackageManifest:
    if member.size > limits.max_manifest_bytes:
        raise PackageTooLarge(f"{where}: {MANIFEST_NAME} is larger than the manifest cap")
    handle = tar.extractfile(member)
    assert handle is not None
    try:
        return PackageManifest.model_validate_json(handle.read())
    except ValidationError as exc:
        raise PackageCorrupt(f"{where}: {MANIFEST_NAME} is not a valid manifest: {exc}") from exc


def _check_against_manifest(scan: _Scan, where: str) -> PackageManifest:
    if scan.manifest is None:
        raise PackageCorrupt(f"{where}: no {MANIFEST_NAME}; not a role package")
    manifest = scan.manifest
    listed = {item.path: (item.size, item.sha256, item.executable) for item in manifest.files}
    if listed != scan.files:
        names = sorted(set(listed).symmetric_difference(scan.files)) or sorted(
            name for name in listed if listed[name] != scan.files.get(name)
        )
        raise PackageCorrupt(
            f"{where}: content does not match {MANIFEST_NAME} (first: {names[0]!r}); rebuild it"
        )
    if {item.path: item.target for item in manifest.links} != scan.links:
        raise PackageCorrupt(f"{where}: symlinks do not match {MANIFEST_NAME}; rebuild it")
    return manifest


def read_package(path: str | os.PathLike[str], limits: PackageLimits | None = None) -> RolePackage:
    """Check every entry of the package at ``path`` and return its manifest and digest."""
    package_path = Path(path)
    if problem := path_problem(package_path):
        raise PackageError(f"{problem}: give a role package file")
    scan = _scan(package_path, limits or PackageLimits())
    manifest = _check_against_manifest(scan, str(package_path))
    size, digest = _hash_file(package_path)
    return RolePackage(package_path, digest, size, manifest)


def extract_package(
    path: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    limits: PackageLimits | None = None,
) -> RolePackage:
    """Check the whole package, then extract its content into an empty ``destination``.

    Each file is hashed again while it is written, so a package changed between the check
    and the extraction is caught (PackageCorrupt; discard the destination). Symlinks are
    created last, so no file is written through one.
    """
    package = read_package(path, limits)
    root = Path(destination)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise PackageError(f"{root}: destination is not empty; extract into an empty directory")
    expected = {item.path: item for item in package.manifest.files}
    with _open_stream(package.path, limits or PackageLimits()) as tar:
        for member in tar:
            if member.name == MANIFEST_NAME or not member.isfile():
                continue  # links come from the checked manifest; directories are implied
            # Only names checked in the first pass are written: the file may have changed.
            item = expected.pop(member.name.removeprefix(CONTENT_PREFIX), None)
            if item is None or not member.name.startswith(CONTENT_PREFIX):
                raise PackageCorrupt(f"{package.path}: changed while extracting; rebuild it")
            _extract_file(tar, member, root / item.path, item, str(package.path))
    for link in package.manifest.links:
        target = root / link.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link.target, target)
    return package


def _extract_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, item: PackageFile, where: str
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tar.extractfile(member)
    assert handle is not None
    digest = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(target, flags, 0o755 if item.executable else 0o644), "wb") as out:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != item.sha256:
        raise PackageCorrupt(f"{where}: {item.path!r} changed while extracting; rebuild it")


def fill_package_digests(
    spec: ServiceSpec, base_dir: str | os.PathLike[str], limits: PackageLimits | None = None
) -> ServiceSpec:
    """``spec`` with ``packageDigest`` filled from each role's package file, when missing.

    Relative package paths are taken from ``base_dir`` (the document's directory). Each
    package is fully checked on the way, so a plan never rests on an unsafe package.
    """
    filled = {}
    for role, artifacts in spec.artifacts.items():
        if artifacts.package and artifacts.package_digest is None:
            package = read_package(Path(base_dir) / artifacts.package, limits)
            artifacts = artifacts.model_copy(update={"package_digest": package.digest})
        filled[role] = artifacts
    return spec.model_copy(update={"artifacts": filled})


# ---------------------------------------------------------------- diff


class FileChange(Model):
    """A file or link that differs between two packages (sizes None for links)."""

    path: str = Field(description="Path relative to the package root.")
    old_size: int | None = Field(default=None, description="Size in the old package.")
    new_size: int | None = Field(default=None, description="Size in the new package.")


class PackageDiff(Model):
    """What changed between two packages."""

    added: list[FileChange] = Field(default_factory=list, description="Only in the new one.")
    removed: list[FileChange] = Field(default_factory=list, description="Only in the old one.")
    changed: list[FileChange] = Field(default_factory=list, description="Different content.")
    entry_point_changed: bool = Field(default=False, description="The entry point differs.")
    startup_tasks_changed: bool = Field(default=False, description="Startup tasks differ.")

    @property
    def is_empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.entry_point_changed
            or self.startup_tasks_changed
        )

    def summary(self) -> str:
        if self.is_empty:
            return "no changes"
        parts = [
            f"{len(items)} {label} ({_signed_size(items)})"
            for label, items in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if items
        ]
        if self.entry_point_changed:
            parts.append("entry point changed")
        if self.startup_tasks_changed:
            parts.append("startup tasks changed")
        return ", ".join(parts)

    def listing(self, limit: int = 10) -> str:
        """The files, marked as a diff marks them (+ added, - removed, ~ changed), at most
        `limit` of them and how many more."""
        marked = [
            f"{mark}{change.path}"
            for mark, changes in (("+", self.added), ("-", self.removed), ("~", self.changed))
            for change in changes
        ]
        more = f" and {len(marked) - limit} more" if len(marked) > limit else ""
        return ", ".join(marked[:limit]) + more


def _signed_size(changes: list[FileChange]) -> str:
    delta = sum((c.new_size or 0) - (c.old_size or 0) for c in changes)
    size = float(abs(delta))
    unit = "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    number = f"{size:.0f}" if unit == "B" else f"{size:.1f}"
    return f"{'-' if delta < 0 else '+'}{number} {unit}"


def _entries(manifest: PackageManifest) -> dict[str, tuple[int | None, str]]:
    entries: dict[str, tuple[int | None, str]] = {
        item.path: (item.size, item.sha256) for item in manifest.files
    }
    entries.update({item.path: (None, "link:" + item.target) for item in manifest.links})
    return entries


def diff_packages(old: PackageManifest, new: PackageManifest) -> PackageDiff:
    """Files added, removed and changed from ``old`` to ``new``, with sizes."""
    before, after = _entries(old), _entries(new)
    return PackageDiff(
        added=[FileChange(path=p, new_size=after[p][0]) for p in sorted(after.keys() - before)],
        removed=[FileChange(path=p, old_size=before[p][0]) for p in sorted(before.keys() - after)],
        changed=[
            FileChange(path=p, old_size=before[p][0], new_size=after[p][0])
            for p in sorted(before.keys() & after.keys())
            if before[p] != after[p]
        ],
        entry_point_changed=old.entry_point != new.entry_point,
        startup_tasks_changed=old.startup_tasks != new.startup_tasks,
    )
