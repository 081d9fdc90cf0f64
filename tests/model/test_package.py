"""Role packages: deterministic builds, every rejection when reading, diffs."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudservice.model._package as package_module
import pytest
from cloudservice.files import partial_files
from cloudservice.model import (
    PackageCorrupt,
    PackageError,
    PackageLimits,
    PackageTooLarge,
    StartupTask,
    UnsafePackageEntry,
    build_package,
    diff_packages,
    extract_package,
    read_package,
)

FILES = {
    "bin/server.exe": b"MZ" + bytes(range(256)) * 40,
    "bin/run.cmd": b"@echo off\r\nserver.exe\r\n",
    "config/app.json": b'{"greeting": "hello"}\n',
    "README.txt": b"role files\n",
    "assets/empty.dat": b"",
}


def _make_tree(root: Path, order: list[str], mtime: float, umask: int) -> Path:
    old = os.umask(umask)
    try:
        for name in order:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(FILES[name])
            os.utime(path, (mtime, mtime))
        (root / "bin/run.cmd").chmod(0o750 & ~umask | 0o100)
        (root / "bin" / "current").symlink_to("run.cmd")
    finally:
        os.umask(old)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _make_tree(tmp_path / "role", sorted(FILES), 1_000_000_000, 0o022)


# ---------------------------------------------------------------- build


def test_same_files_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = sorted(FILES)
    first = _make_tree(tmp_path / "a", names, 1_000_000_000, 0o022)
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    second = _make_tree(tmp_path / "b", shuffled, 1_700_000_000, 0o077)
    one = build_package(first, tmp_path / "one.rpkg", entry_point="bin/run.cmd")

    # Whatever order the directory lists its entries in.
    real_scandir = os.scandir

    @contextlib.contextmanager
    def reversed_scandir(path: Any) -> Iterator[list[os.DirEntry[str]]]:
        with real_scandir(path) as entries:
            yield list(reversed(list(entries)))

    monkeypatch.setattr(package_module.os, "scandir", reversed_scandir)
    two = build_package(second, tmp_path / "two.rpkg", entry_point="bin/run.cmd")
    assert (tmp_path / "one.rpkg").read_bytes() == (tmp_path / "two.rpkg").read_bytes()
    assert (
        one.digest == two.digest == hashlib.sha256((tmp_path / "one.rpkg").read_bytes()).hexdigest()
    )


def test_different_content_gives_a_different_digest(tree: Path, tmp_path: Path) -> None:
    one = build_package(tree, tmp_path / "one.rpkg")
    (tree / "README.txt").write_bytes(b"changed\n")
    assert build_package(tree, tmp_path / "two.rpkg").digest != one.digest


def test_archive_entries_are_normalised(tree: Path, tmp_path: Path) -> None:
    build_package(tree, tmp_path / "p.rpkg")
    with tarfile.open(tmp_path / "p.rpkg") as tar:
        members = tar.getmembers()
    assert members[0].name == "manifest.json"
    names = [m.name for m in members[1:]]
    assert names == sorted(names)
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == package_module.FIXED_MTIME
    modes = {m.name: m.mode for m in members if m.isfile()}
    assert modes["content/bin/run.cmd"] == 0o755
    assert modes["content/README.txt"] == 0o644
    with gzip.open(tmp_path / "p.rpkg") as zipped:
        zipped.read(1)
    header = (tmp_path / "p.rpkg").read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # no timestamp in the gzip header


def test_manifest_lists_files_sizes_digests_entry_point_and_tasks(
    tree: Path, tmp_path: Path
) -> None:
    tasks = [StartupTask(command_line="install.cmd", execution_context="elevated")]
    package = build_package(
        tree, tmp_path / "p.rpkg", entry_point="bin/run.cmd", startup_tasks=tasks
    )
    manifest = package.manifest
    assert manifest.entry_point == "bin/run.cmd"
    assert manifest.startup_tasks == tasks
    listed = {f.path: f for f in manifest.files}
    assert set(listed) == set(FILES)
    for name, data in FILES.items():
        assert listed[name].size == len(data)
        assert listed[name].sha256 == hashlib.sha256(data).hexdigest()
    assert listed["bin/run.cmd"].executable and not listed["README.txt"].executable
    assert [(link.path, link.target) for link in manifest.links] == [("bin/current", "run.cmd")]
    assert manifest.total_size == sum(len(d) for d in FILES.values())


def test_output_inside_the_source_is_not_packaged(tree: Path) -> None:
    first = build_package(tree, tree / "out.rpkg")
    second = build_package(tree, tree / "out.rpkg")
    assert "out.rpkg" not in {f.path for f in second.manifest.files}
    assert first.digest == second.digest


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: (root / "up").symlink_to("../outside"), "points outside"),
        (lambda root: (root / "abs").symlink_to("/etc/passwd"), "points outside"),
        (lambda root: os.mkfifo(root / "pipe"), "not a regular file"),
        (lambda root: (root / "back\\slash").write_text("x"), "backslash"),
        (lambda root: (root / "readme.TXT").write_text("x"), "duplicate"),
    ],
    ids=["escaping-link", "absolute-link", "fifo", "backslash", "case-duplicate"],
)
def test_build_refuses_what_reading_would_reject(
    tree: Path, tmp_path: Path, make: Callable[[Path], Any], message: str
) -> None:
    make(tree)
    with pytest.raises(UnsafePackageEntry, match=message):
        build_package(tree, tmp_path / "p.rpkg")
    assert not (tmp_path / "p.rpkg").exists()
    assert partial_files(tmp_path / "p.rpkg") == []  # no partial file left behind


def test_build_needs_a_directory_that_exists(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(PackageError, match=f"^{missing} does not exist; give the role's dir"):
        build_package(missing, tmp_path / "p.rpkg")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PackageError, match=f"^{tmp_path / 'file'} is a file, not a directory"):
        build_package(tmp_path / "file", tmp_path / "p.rpkg")


def test_reading_a_package_that_is_not_there_says_so(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=f"^{tmp_path / 'gone.rpkg'} does not exist"):
        read_package(tmp_path / "gone.rpkg")
    with pytest.raises(PackageError, match=f"^{tmp_path} is a directory, not a file"):
        read_package(tmp_path)


def test_a_build_into_its_own_directory_packages_neither_the_output_nor_partial_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / ".p.rpkg.0123456789ab.partial").write_bytes(b"left by a killed build")
    build_package(tmp_path, tmp_path / "p.rpkg")
    package = build_package(tmp_path, tmp_path / "p.rpkg")  # over the first one
    assert [f.path for f in package.manifest.files] == ["app.py"]
    assert partial_files(tmp_path / "p.rpkg") == []


# ---------------------------------------------------------------- read


def _hostile(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], manifest: bool = True
) -> Path:
    """A gzip'd tar with exactly these entries (and an empty manifest first)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if manifest:
            data = json.dumps({"files": []}).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in entries:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    path = tmp_path / "hostile.rpkg"
    path.write_bytes(buffer.getvalue())
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([(_entry("/etc/passwd"), b"x")], "is an absolute path"),
        ([(_entry("content//abs"), b"x")], "is an absolute path"),
        ([(_entry("content/C:/win.ini"), b"x")], "is an absolute path"),
        ([(_entry("content/../evil"), b"x")], "contains a '..' component"),
        ([(_entry("content/a/../../evil"), b"x")], "contains a '..' component"),
        ([(_entry("content/a\\b"), b"x")], "contains a backslash"),
        ([(_entry("content/."), b"x")], "contains an empty or '.' component"),
        ([(_entry("content/a//b"), b"x")], "contains an empty or '.' component"),
        ([(_entry("elsewhere/file"), b"x")], "is outside 'content/'"),
        (
            [(_entry("content/l", tarfile.SYMTYPE, "../../etc/passwd"), b"")],
            "leaves the package root",
        ),
        ([(_entry("content/l", tarfile.SYMTYPE, "/etc/passwd"), b"")], "leaves the package root"),
        ([(_entry("content/d/l", tarfile.SYMTYPE, "../../x"), b"")], "leaves the package root"),
        ([(_entry("content/l", tarfile.SYMTYPE, ""), b"")], "leaves the package root"),
        (
            [(_entry("content/d", tarfile.SYMTYPE, "."), b""), (_entry("content/d/f"), b"x")],
            "lies under a symlink",
        ),
        (
            [(_entry("content/a"), b"1"), (_entry("content/a/b"), b"2")],
            "both a file and a directory",
        ),
        (
            [(_entry("content/a/b"), b"1"), (_entry("content/A"), b"2")],
            "both a file and a directory",
        ),
        ([(_entry("content/h", tarfile.LNKTYPE, "/etc/shadow"), b"")], "hard link"),
        ([(_entry("content/dev", tarfile.CHRTYPE), b"")], "device, FIFO or other special"),
        ([(_entry("content/dev", tarfile.BLKTYPE), b"")], "device, FIFO or other special"),
        ([(_entry("content/fifo", tarfile.FIFOTYPE), b"")], "device, FIFO or other special"),
        ([(_entry("content/a"), b"1"), (_entry("content/a"), b"2")], "duplicate"),
        ([(_entry("content/A.txt"), b"1"), (_entry("content/a.TXT"), b"2")], "duplicate"),
    ],
    ids=[
        "absolute",
        "absolute-inside-content",
        "drive-letter",
        "dotdot",
        "nested-dotdot",
        "backslash",
        "dot",
        "empty-component",
        "outside-content",
        "escaping-symlink",
        "absolute-symlink",
        "nested-escaping-symlink",
        "empty-symlink",
        "through-symlink",
        "file-then-child",
        "child-then-file",
        "hardlink",
        "char-device",
        "block-device",
        "fifo",
        "duplicate",
        "case-duplicate",
    ],
)
def test_unsafe_entries_are_rejected_before_extraction(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    path = _hostile(tmp_path, entries)
    with pytest.raises(UnsafePackageEntry, match=message) as info:
        read_package(path)
    assert str(path) in str(info.value)
    destination = tmp_path / "out"
    with pytest.raises(UnsafePackageEntry):
        extract_package(path, destination)
    assert not destination.exists() or not any(destination.iterdir())


def test_size_cap(tree: Path, tmp_path: Path) -> None:
    package = build_package(tree, tmp_path / "p.rpkg")
    with pytest.raises(PackageTooLarge, match="expands to more than 1000 bytes"):
        read_package(package.path, PackageLimits(max_total_bytes=1000))


def test_entry_cap(tree: Path, tmp_path: Path) -> None:
    package = build_package(tree, tmp_path / "p.rpkg")
    with pytest.raises(PackageTooLarge, match="more than 3 entries"):
        read_package(package.path, PackageLimits(max_entries=3))


def test_ratio_cap_stops_a_compression_bomb(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    (bomb / "zeros").write_bytes(bytes(8 << 20))
    package = build_package(bomb, tmp_path / "bomb.rpkg")
    assert package.size < 64 << 10  # 8 MiB of zeros squeeze into a few KiB
    with pytest.raises(PackageTooLarge, match="compression bomb"):
        read_package(package.path, PackageLimits(ratio_floor_bytes=1 << 20))


def test_manifest_mismatch_is_corrupt(tmp_path: Path) -> None:
    path = _hostile(tmp_path, [(_entry("content/unlisted"), b"x")])
    with pytest.raises(PackageCorrupt, match="does not match manifest.json"):
        read_package(path)


def test_missing_manifest_is_corrupt(tmp_path: Path) -> None:
    path = _hostile(tmp_path, [(_entry("content/a"), b"x")], manifest=False)
    with pytest.raises(PackageCorrupt, match="no manifest.json"):
        read_package(path)


@pytest.mark.parametrize("data", [b"not a package", b""], ids=["garbage", "empty"])
def test_not_an_archive_is_corrupt(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.rpkg"
    path.write_bytes(data)
    with pytest.raises(PackageCorrupt, match="not a readable role package"):
        read_package(path)


def test_truncated_archive_is_corrupt(tree: Path, tmp_path: Path) -> None:
    package = build_package(tree, tmp_path / "p.rpkg")
    data = package.path.read_bytes()
    package.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PackageCorrupt):
        read_package(package.path)


def test_extract_recreates_the_tree(tree: Path, tmp_path: Path) -> None:
    package = build_package(tree, tmp_path / "p.rpkg")
    out = tmp_path / "out"
    extract_package(package.path, out)
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data
    assert os.readlink(out / "bin" / "current") == "run.cmd"
    assert os.access(out / "bin" / "run.cmd", os.X_OK)
    with pytest.raises(PackageError, match="not empty"):
        extract_package(package.path, out)


# ---------------------------------------------------------------- diff


def test_diff_lists_added_removed_and_changed_with_sizes(tree: Path, tmp_path: Path) -> None:
    old = build_package(tree, tmp_path / "old.rpkg", entry_point="bin/run.cmd")
    (tree / "README.txt").unlink()
    (tree / "config" / "app.json").write_bytes(b'{"greeting": "hello, world"}\n')
    (tree / "bin" / "new.dll").write_bytes(b"x" * 2048)
    new = build_package(tree, tmp_path / "new.rpkg", entry_point="bin/server.exe")
    diff = diff_packages(old.manifest, new.manifest)
    assert [(c.path, c.new_size) for c in diff.added] == [("bin/new.dll", 2048)]
    assert [(c.path, c.old_size) for c in diff.removed] == [("README.txt", 11)]
    assert [(c.path, c.old_size, c.new_size) for c in diff.changed] == [("config/app.json", 22, 29)]
    assert diff.entry_point_changed and not diff.startup_tasks_changed
    assert diff.summary() == (
        "1 added (+2.0 KiB), 1 removed (-11 B), 1 changed (+7 B), entry point changed"
    )
    assert diff.listing() == "+bin/new.dll, -README.txt, ~config/app.json"
    assert diff.listing(limit=1) == "+bin/new.dll and 2 more"


def test_diff_of_identical_packages_is_empty(tree: Path, tmp_path: Path) -> None:
    package = build_package(tree, tmp_path / "p.rpkg")
    diff = diff_packages(package.manifest, package.manifest)
    assert diff.is_empty and diff.summary() == "no changes"


def test_package_swapped_between_check_and_extraction_is_caught(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = build_package(tree, tmp_path / "good.rpkg")
    evil = _hostile(tmp_path, [(_entry("content/../../escape"), b"x")])
    real_read = package_module.read_package

    def read_then_swap(path: Any, limits: Any = None) -> Any:
        checked = real_read(path, limits)
        Path(path).write_bytes(evil.read_bytes())  # the file changes after its check
        return checked

    monkeypatch.setattr(package_module, "read_package", read_then_swap)
    with pytest.raises(PackageCorrupt, match="changed while extracting"):
        extract_package(good.path, tmp_path / "out")
    assert not (tmp_path / "escape").exists()
