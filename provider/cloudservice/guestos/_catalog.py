"""The catalog of built guest OS images: `~/.cache/cloudservice/guestos/catalog.json`.

One JSON document, rewritten atomically (temp file + rename) under an exclusive lock, so two
builds recording at once both land. Versions of a family sort by build order: `sequence`
grows with every recorded build, and "*" resolves to the newest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..files import write_atomically
from .bootdisk import cache_root
from .errors import UnknownOsVersion

FAMILY_PATTERN = r"^[a-z][a-z0-9]*-[0-9]+$"
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"
LATEST = "*"


def catalog_path() -> Path:
    """The catalog; CLOUDSERVICE_GUESTOS_CATALOG names another (a test's, a team's share)."""
    override = os.environ.get("CLOUDSERVICE_GUESTOS_CATALOG")
    return Path(override) if override else cache_root() / "guestos" / "catalog.json"


class OsVersion(BaseModel):
    """One built guest OS image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str = Field(pattern=FAMILY_PATTERN, description="e.g. debian-12")
    version: str = Field(pattern=VERSION_PATTERN, description="e.g. 2026.11.30-1")
    sequence: int = Field(ge=1, description="Build order in the catalog; newest is highest.")
    kernel_package: str
    kernel_version: str
    kernel_release: str = Field(description="uname -r of the kernel")
    packages_digest: str = Field(description="SHA-256 of the sorted `dpkg-query -W` list")
    package_count: int = Field(ge=0)
    includes: tuple[str, ...] = Field(default=(), description="Packages added to minbase")
    agent_digest: str | None = Field(description="SHA-256 of the agent sources; None: no agent")
    build_key: str = Field(description="Digest of every build input; equal keys, equal bytes")
    source_date_epoch: int
    built_at: str = Field(description="When it was built (ISO 8601, UTC)")
    image_path: str
    image_sha256: str
    image_size: int = Field(ge=0, description="Bytes of the VHD file")
    virtual_size: int = Field(ge=0, description="Bytes of the disk the guest sees")

    @property
    def name(self) -> str:
        return f"{self.family}/{self.version}"


class Catalog(BaseModel):
    """Every recorded image, in build order."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    versions: list[OsVersion] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        """The catalog at `path` (default `catalog_path()`); empty when there is none yet."""
        path = path or catalog_path()
        if not path.exists():
            return cls()
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path | None = None) -> None:
        """Write atomically: readers see the old document or the new one, never a partial."""
        path = path or catalog_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, (self.model_dump_json(indent=2) + "\n").encode())

    def families(self) -> list[str]:
        return sorted({v.family for v in self.versions})

    def of(self, family: str) -> list[OsVersion]:
        """The family's versions, oldest first."""
        return sorted((v for v in self.versions if v.family == family), key=lambda v: v.sequence)

    def find(self, family: str, version: str) -> OsVersion | None:
        return next((v for v in self.of(family) if v.version == version), None)

    def resolve(self, family: str, version: str = LATEST) -> OsVersion:
        """The entry for `family`/`version`; `version="*"` is the newest of the family."""
        versions = self.of(family)
        if not versions:
            known = ", ".join(self.families()) or "none yet"
            raise UnknownOsVersion(
                f"no guest OS of family {family!r} in the catalog (families: {known}): "
                f"run `cloudservice os build --family {family}`"
            )
        if version == LATEST:
            return versions[-1]
        found = self.find(family, version)
        if found is None:
            known = ", ".join(v.version for v in versions)
            raise UnknownOsVersion(
                f"{family} has no version {version!r} (known: {known}): pick one from "
                f"`cloudservice os list`, use '*' for the newest, or run "
                f"`cloudservice os build --family {family} --version {version}`"
            )
        return found

    def next_sequence(self) -> int:
        return max((v.sequence for v in self.versions), default=0) + 1

    def next_version(self, family: str, date: str) -> str:
        """`<date>-<n>`: n counts this family's builds of that day (`2026.11.30-1`, `-2`, ...)."""
        taken = {v.version for v in self.of(family)}
        n = 1
        while f"{date}-{n}" in taken:
            n += 1
        return f"{date}-{n}"

    def with_version(self, entry: OsVersion) -> Catalog:
        """A copy with `entry` added (replacing an entry of the same family and version)."""
        kept = [
            v for v in self.versions
            if (v.family, v.version) != (entry.family, entry.version)
        ]  # fmt: skip
        return Catalog(format=self.format, versions=[*kept, entry])


@contextlib.contextmanager
def locked(path: Path | None = None) -> Iterator[Path]:
    """Hold the catalog's lock (a sibling `.lock` file) while reading, changing and saving."""
    path = path or catalog_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
