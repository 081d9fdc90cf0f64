"""The catalog: resolving versions, errors that say what to run, atomic saves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cloudservice.guestos import Catalog, GuestOsError, OsVersion, UnknownOsVersion, catalog_path


def entry(version: str, sequence: int, family: str = "debian-12") -> OsVersion:
    return OsVersion(
        family=family, version=version, sequence=sequence, kernel_package="linux-image-x",
        kernel_version="1", kernel_release="6.1.0-x-amd64", packages_digest="a" * 64,
        package_count=100, includes=(), agent_digest=None, build_key="k" * 64,
        source_date_epoch=1704067200, built_at=f"2026-11-{sequence:02d}T00:00:00+00:00",
        image_path=f"/images/{family}-{version}.vhd", image_sha256="b" * 64,
        image_size=1, virtual_size=1 << 30,
    )  # fmt: skip


@pytest.fixture
def catalog() -> Catalog:
    # Build order, not string order: "2026.11.30-10" is newer than "2026.11.30-9".
    return Catalog(
        versions=[
            entry("2026.11.30-9", 1),
            entry("2026.11.30-10", 2),
            entry("2025.01.01-1", 3, family="debian-13"),
        ]
    )


def test_star_resolves_to_the_newest_build_of_the_family(catalog: Catalog) -> None:
    assert catalog.resolve("debian-12", "*").version == "2026.11.30-10"
    assert catalog.resolve("debian-12").version == "2026.11.30-10"
    assert catalog.resolve("debian-13", "*").version == "2025.01.01-1"


def test_an_exact_version_resolves_to_itself(catalog: Catalog) -> None:
    found = catalog.resolve("debian-12", "2026.11.30-9")
    assert (found.name, found.sequence) == ("debian-12/2026.11.30-9", 1)


def test_unknown_version_says_what_exists_and_what_to_run(catalog: Catalog) -> None:
    with pytest.raises(UnknownOsVersion) as info:
        catalog.resolve("debian-12", "2027.01.01-1")
    message = str(info.value)
    assert "2026.11.30-9, 2026.11.30-10" in message
    assert "cloudservice os build --family debian-12 --version 2027.01.01-1" in message
    assert isinstance(info.value, GuestOsError) and isinstance(info.value, LookupError)


def test_unknown_family_names_the_known_ones(catalog: Catalog) -> None:
    with pytest.raises(UnknownOsVersion, match=r"families: debian-12, debian-13.*os build"):
        catalog.resolve("ubuntu-24", "*")
    with pytest.raises(UnknownOsVersion, match="none yet"):
        Catalog().resolve("debian-12", "*")


def test_next_version_counts_builds_of_the_day(catalog: Catalog) -> None:
    assert catalog.next_version("debian-12", "2026.12.01") == "2026.12.01-1"
    newer = catalog.with_version(entry("2026.12.01-1", catalog.next_sequence()))
    assert newer.next_version("debian-12", "2026.12.01") == "2026.12.01-2"
    assert newer.resolve("debian-12", "*").version == "2026.12.01-1"
    assert len(catalog.versions) == 3  # with_version returns a copy


def test_save_and_load_round_trip(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "guestos" / "catalog.json"
    catalog.save(path)
    assert Catalog.load(path) == catalog
    assert json.loads(path.read_text())["format"] == 1
    assert Catalog.load(tmp_path / "missing.json") == Catalog()


def test_save_is_atomic_a_failed_write_keeps_the_old_catalog(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.json"
    catalog.save(path)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        Catalog().save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json"]  # no temp left


def test_the_catalog_lives_in_the_xdg_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert catalog_path() == tmp_path / "cloudservice" / "guestos" / "catalog.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert catalog_path() == Path.home() / ".cache" / "cloudservice" / "guestos" / "catalog.json"
