"""`cloudservice.files`: user-given paths in the user's words, outputs written atomically."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from cloudservice.files import (
    AtomicFile,
    data_bytes,
    partial_files,
    path_problem,
    sparse_sections,
    why_unreadable,
    write_atomically,
)


def test_a_committed_file_replaces_the_old_one_and_leaves_no_partial(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with AtomicFile(out) as new:
        new.write(b"new bytes")
        assert out.read_bytes() == b"old"  # nothing at the real name until the commit
        assert partial_files(out) == [new.partial]
    assert out.read_bytes() == b"new bytes"
    assert partial_files(out) == []


def test_an_error_deletes_the_partial_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicFile(out) as new:
        new.write(b"half")
        raise RuntimeError("the writer failed")
    assert out.read_bytes() == b"old"
    assert partial_files(out) == []


def test_a_dead_writers_partial_is_removed_a_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    dead = tmp_path / ".out.bin.0123456789ab.partial"  # no one holds its lock
    dead.write_bytes(b"left by a killed run")
    other_output = tmp_path / ".out.bin.old.0123456789ab.partial"  # out.bin.old's, not ours
    other_output.write_bytes(b"x")
    with AtomicFile(out) as live:
        assert partial_files(out) == [live.partial]
        with AtomicFile(out) as second:  # a concurrent writer of the same output
            assert sorted(partial_files(out)) == sorted([live.partial, second.partial])
            second.write(b"second")
        live.write(b"first")
    assert out.read_bytes() == b"first"
    assert other_output.exists() and partial_files(out) == []


def test_private_files_are_created_owner_only(tmp_path: Path) -> None:
    write_atomically(tmp_path / "secret", b"s", mode=0o600)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_an_output_that_is_a_directory_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a directory"):
        AtomicFile(tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name, directory, absolute, problem",
    [
        ("missing", False, True, "{path} does not exist"),
        ("missing/below", False, True, "{path} does not exist"),
        ("file/below", False, True, "{path} does not exist"),  # ENOTDIR: still not there
        ("file", True, False, "{path} is a file, not a directory"),
        ("dir", False, False, "{path} is a directory, not a file"),
        ("file", False, True, None),
        ("dir", True, True, None),
    ],
)
def test_path_problems_in_the_users_words(
    tmp_path: Path, name: str, directory: bool, absolute: bool, problem: str | None
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    path = tmp_path / name
    expected = problem.format(path=path) if problem else None
    assert path_problem(path, directory=directory, absolute=absolute) == expected


def test_only_a_relative_path_is_not_absolute() -> None:
    assert path_problem("relative/file", absolute=True) == "relative/file is not an absolute path"
    assert path_problem("/no/such/file", absolute=True) == "/no/such/file does not exist"


def test_an_output_in_a_missing_directory_is_named_as_given(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "out.bin"
    with pytest.raises(FileNotFoundError, match="its directory does not exist") as info:
        AtomicFile(out)
    assert info.value.filename == str(out)


def test_why_a_path_could_not_be_opened(tmp_path: Path) -> None:
    for path, why in (
        (tmp_path / "gone", "does not exist"),
        (tmp_path, "is a directory, not a file"),
    ):
        with pytest.raises(OSError) as info:
            open(path, "rb")  # noqa: SIM115 (it fails)
        assert why_unreadable(info.value) == why


def _sector_by_sector(data: bytes) -> list[tuple[bool, int]]:
    """What a sparse copy's data map means: each 512-byte sector is data unless all zero."""
    runs: list[tuple[bool, int]] = []
    for at in range(0, len(data), 512):
        sector = data[at : at + 512]
        is_data = sector != bytes(len(sector))
        if runs and runs[-1][0] == is_data:
            runs[-1] = (is_data, runs[-1][1] + len(sector))
        else:
            runs.append((is_data, len(sector)))
    return runs


def test_a_files_data_map_is_its_non_zero_sectors(tmp_path: Path) -> None:
    rng = random.Random(3)
    for _ in range(200):
        data = bytearray(rng.randrange(1, 300_000))
        for _ in range(rng.randrange(1, 24)):  # runs of data and of zeros, any alignment
            at = rng.randrange(len(data))
            n = min(rng.randrange(1, 20_000), len(data) - at)
            data[at : at + n] = rng.randbytes(n) if rng.random() < 0.5 else bytes(n)
        path = tmp_path / "file"
        path.write_bytes(data)
        with open(path, "rb") as reader:
            sections = list(sparse_sections(reader.fileno()))
        rebuilt = b"".join(bytes(s) for s in sections)  # a hole's length: as many zeros
        assert rebuilt == bytes(data)  # data as it is, holes as zeros
        expected = _sector_by_sector(bytes(data))
        assert data_bytes(path) == sum(length for is_data, length in expected if is_data)
