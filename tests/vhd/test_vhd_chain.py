"""Chains: finding and verifying parents, loops, depth, coalescing; writes and rollback."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from cloudservice.vhd import (
    MAX_CHAIN_DEPTH,
    ChainError,
    ChainLoopError,
    DifferencingImage,
    ExtentKind,
    ImageIOError,
    ImageUsageError,
    ParentMismatchError,
    ParentNotFoundError,
    ReadOnlyImageError,
    VhdWriter,
    coalesce,
    create_differencing,
    create_dynamic,
    open_image,
    verify_chain,
    write_raw,
)
from cloudservice.vhd._writer import ParentRef
from vhd_helpers import MIB, pattern, qemu_img, sha256_file

SIZE = 8 * MIB


@pytest.fixture
def base(tmp_path: Path) -> Path:
    with VhdWriter(tmp_path / "base.vhd", SIZE) as w:
        w.write_block(0, pattern(2 * MIB, 1))
        w.write_block(3, pattern(MIB, 2))
    return tmp_path / "base.vhd"


def _child(parent: Path, path: Path) -> Path:
    with open_image(parent) as p:
        create_differencing(path, p)
    return path


def test_parent_found_by_relative_locator_after_moving_both(tmp_path: Path, base: Path) -> None:
    child = _child(base, tmp_path / "child.vhd")
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(base, moved / "base.vhd")
    shutil.move(child, moved / "child.vhd")
    with open_image(moved / "child.vhd") as c:
        assert c.parent is not None and Path(c.parent.path).resolve() == moved / "base.vhd"
        assert c.info().parent_locators[0] == ".\\base.vhd"
        assert c.block_status(0).kind is ExtentKind.BACKING
        assert c.read(0, 4096) == pattern(2 * MIB, 1)[:4096]


def test_missing_parent(tmp_path: Path, base: Path) -> None:
    child = _child(base, tmp_path / "child.vhd")
    os.unlink(base)
    with pytest.raises(
        ParentNotFoundError,
        match=r"parent [0-9a-f-]{36} \(base.vhd\) not found;"
        r" tried .*base.vhd.*; put the parent disk at one of those paths, or give its path$",
    ):
        open_image(child)
    with open_image(child, resolve_parent=False) as c:  # info works without the parent
        assert c.info().parent_name == "base.vhd"
        with pytest.raises(ChainError, match="opened without its parent"):
            c.read(0, 512)


def test_parent_with_other_unique_id(tmp_path: Path, base: Path) -> None:
    child = _child(base, tmp_path / "child.vhd")
    create_dynamic(tmp_path / "other.vhd", SIZE)
    with pytest.raises(
        ParentMismatchError,
        match=r"parent unique id is [0-9a-f-]{36} \(.*other.vhd\) but the child"
        r" was made against [0-9a-f-]{36}: .*other.vhd is not its parent; use the disk it was"
        r" made from$",
    ):
        open_image(child, parent=tmp_path / "other.vhd")
    os.replace(tmp_path / "other.vhd", base)  # same name, different disk
    with pytest.raises(ParentMismatchError):
        open_image(child)


def test_chain_loop_of_one_and_two(tmp_path: Path) -> None:
    uid_a, uid_b = uuid.uuid4().bytes, uuid.uuid4().bytes
    VhdWriter(
        tmp_path / "self.vhd", SIZE, unique_id=uid_a, parent=ParentRef(uid_a, SIZE, 0, "self.vhd")
    ).commit()
    with pytest.raises(ChainLoopError, match=r"parent .*self.vhd is already in this chain"):
        open_image(tmp_path / "self.vhd")
    VhdWriter(
        tmp_path / "a.vhd", SIZE, unique_id=uid_a, parent=ParentRef(uid_b, SIZE, 0, "b.vhd")
    ).commit()
    VhdWriter(
        tmp_path / "b.vhd", SIZE, unique_id=uid_b, parent=ParentRef(uid_a, SIZE, 0, "a.vhd")
    ).commit()
    with pytest.raises(ChainLoopError, match="the chain loops"):
        open_image(tmp_path / "a.vhd")


def test_over_deep_chain(tmp_path: Path, base: Path) -> None:
    top = base
    for i in range(MAX_CHAIN_DEPTH):
        top = _child(top, tmp_path / f"c{i}.vhd")
    with open_image(top) as img:  # exactly the limit: fine
        assert len(verify_chain(img)) == MAX_CHAIN_DEPTH + 1
    deeper = _child(top, tmp_path / "deeper.vhd")
    with pytest.raises(ChainLoopError, match=f"deeper than {MAX_CHAIN_DEPTH} levels"):
        open_image(deeper)


def test_writes_to_child_and_coalesce(tmp_path: Path, base: Path) -> None:
    child = _child(base, tmp_path / "child.vhd")
    with open_image(child, writable=True) as c:
        c.write(1000, b"x" * 100)  # partial sectors: completed from the parent
        c.write(5 * MIB, pattern(8192, 3))  # unallocated block in both
    with open_image(base) as b:
        want = bytearray(b.read(0, SIZE))
    want[1000:1100] = b"x" * 100
    want[5 * MIB : 5 * MIB + 8192] = pattern(8192, 3)
    with open_image(child) as c:
        assert isinstance(c, DifferencingImage)
        assert c.read(0, SIZE) == bytes(want)
        assert c.block_status(512).kind is ExtentKind.DATA
        assert c.block_status(1536).kind is ExtentKind.BACKING
        coalesce(c, tmp_path / "flat.vhd")
        write_raw(c, tmp_path / "flat.raw")
    (tmp_path / "want.raw").write_bytes(bytes(want))
    assert sha256_file(tmp_path / "flat.raw") == sha256_file(tmp_path / "want.raw")
    qemu_img("compare", "-f", "vpc", "-F", "raw", tmp_path / "flat.vhd", tmp_path / "want.raw")
    with open_image(tmp_path / "flat.vhd") as flat:
        assert flat.info().type == "dynamic" and flat.parent is None


def test_read_only_and_closed_misuse(tmp_path: Path, base: Path) -> None:
    img = open_image(base)
    with pytest.raises(ReadOnlyImageError, match="open it with writable=True"):
        img.write(0, b"x")
    with pytest.raises(ImageUsageError, match=r"outside the disk \(virtual size 8388608\)"):
        img.read(SIZE - 1, 2)
    img.close()
    with pytest.raises(ImageUsageError, match="image is closed"):
        img.read(0, 1)


def test_failed_allocation_rolls_back(
    tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        raise OSError(5, "Input/output error")

    with open_image(base, writable=True) as img:
        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(ImageIOError, match="fsync failed"):
            img.write(2 * MIB, b"y" * 512)  # block 1: unallocated
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert calls["n"] == 1
        assert img.block_status(2 * MIB).kind is ExtentKind.ZERO  # in-memory state unchanged
        img.write(2 * MIB, b"z" * 512)  # retry reuses the same place
    with open_image(base) as img:
        assert img.read(2 * MIB, 512) == b"z" * 512
        assert img.info().allocated_blocks == 3
