"""Property tests: any tree builds deterministically; any accepted entry stays in the root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import tempfile
from pathlib import Path

from cloudservice.model import (
    PackageError,
    build_package,
    diff_packages,
    extract_package,
    read_package,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_NAME = st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=8).filter(
    lambda name: name not in (".", "..")
)
_TREE = st.dictionaries(
    st.lists(_NAME, min_size=1, max_size=3).map("/".join),
    st.binary(max_size=64),
    min_size=1,
    max_size=8,
)


def _write_tree(root: Path, files: dict[str, bytes], seed: int) -> bool:
    """Write ``files`` in a seeded order with seeded mtimes; False if the names clash."""
    names = list(files)
    random.Random(seed).shuffle(names)
    for name in names:
        path = root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[name])
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            return False  # a file and a directory with the same name: not a tree
        stamp = random.Random(seed + len(name)).randint(0, 2_000_000_000)
        os.utime(path, (stamp, stamp))
    return True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_TREE, seed=st.integers(0, 1000))
def test_any_tree_builds_to_the_same_bytes(files: dict[str, bytes], seed: int) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        if not (_write_tree(root / "a", files, seed) and _write_tree(root / "b", files, seed + 1)):
            return
        try:
            one = build_package(root / "a", root / "one.rpkg")
        except PackageError as exc:
            assert "duplicate" in str(exc)  # names differing only in case
            return
        two = build_package(root / "b", root / "two.rpkg")
        assert (root / "one.rpkg").read_bytes() == (root / "two.rpkg").read_bytes()
        assert diff_packages(one.manifest, two.manifest).is_empty
        extract_package(one.path, root / "out")
        for name, data in files.items():
            if (root / "a" / name).is_file():
                assert (root / "out" / name).read_bytes() == data


_SEGMENT = st.sampled_from(["a", "b", "..", ".", "", "C:", "x\\y", "/"])


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join),
            st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE]),
            st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_whatever_is_accepted_extracts_inside_the_root(
    entries: list[tuple[str, bytes, str]],
) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        path = root / "p.rpkg"
        path.write_bytes(_archive(entries))
        try:
            read_package(path)
        except PackageError:
            return  # rejected: fine, nothing was written
        out = root / "out"
        extract_package(path, out)
        real_out = _kernel_path(out)
        assert real_out is not None
        for item in out.rglob("*"):
            resolved = _kernel_path(item)
            if resolved is not None:
                assert os.path.commonpath([resolved, real_out]) == real_out, item


def _kernel_path(path: Path) -> str | None:
    """Where the kernel resolves ``path`` to; None for a link loop or a dangling link, which
    reach nothing. (os.path.realpath returns "/" for some loops, e.g. b -> "b//".)"""
    try:
        fd = os.open(path, os.O_PATH)
    except OSError:
        return None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _archive(entries: list[tuple[str, bytes, str]]) -> bytes:
    """A package whose manifest matches its entries, so only the entries' safety decides."""
    files, links, members = [], [], []
    for name, kind, target in entries:
        info = tarfile.TarInfo("content/" + name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = target
            links.append({"path": name, "target": target})
        else:
            files.append({"path": name, "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()})
            info.size = 1
        members.append(info)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        manifest = json.dumps({"files": files, "links": links}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for info in members:
            tar.addfile(info, io.BytesIO(b"x") if info.isfile() else None)
    return buffer.getvalue()
