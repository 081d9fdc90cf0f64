"""``cloudservice vhd diff -o OUT`` killed with SIGKILL at any moment leaves at OUT nothing (when
nothing was there), the previous file unchanged, or the complete new disk: never part of one.

The real console script runs as a subprocess on two 128 MiB dynamic VHDs made by our writer
(a quarter of the blocks unallocated, a changed page in most others), and is killed at moments
spread evenly over one measured run, then at moments of its progress (how much of its final
size the partial output holds), so that some kills surely land while it writes.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cloudservice.files import partial_files
from cloudservice.vhd import VhdError, VhdWriter, open_image
from vhd_helpers import MIB

CLI = Path(sys.executable).parent / "cloudservice"  # the virtualenv's console script
SIZE, BLOCK, PAGE = 128 * MIB, 2 * MIB, 4096
KILLS = 10  # at (i + 0.5) / KILLS of a full run's time
PROGRESS = (0.05, 0.35, 0.7, 1.0)  # once the partial output holds this share of its final size
PREVIOUS = random.Random(3).randbytes(MIB)  # what OUT held before a run, when it held something


@dataclass(frozen=True)
class Diff:
    parent: Path
    new: Path
    new_sha256: str  # of the new image's content
    seconds: float  # one full run, console script start to exit
    file_size: int  # of the finished output


@pytest.fixture(scope="module")
def diff(tmp_path_factory: pytest.TempPathFactory) -> Diff:
    directory = tmp_path_factory.mktemp("killed")
    parent, new = directory / "parent.vhd", directory / "new.vhd"
    _make_images(parent, new)
    out = directory / "measured.vhd"
    started = time.monotonic()
    run = _start(parent, new, out)
    _, stderr = run.communicate(timeout=120)
    seconds = time.monotonic() - started
    assert run.returncode == 0, stderr
    assert partial_files(out) == []  # a completed run leaves no partial file
    made = Diff(parent, new, _content_sha256(new), seconds, out.stat().st_size)
    assert _outcome(made, out, previous=None) == "new"
    return made


def test_killed_at_moments_spread_over_a_run(diff: Diff) -> None:
    out = diff.parent.with_name("timed.vhd")
    outcomes = []
    for i in range(KILLS):
        previous = _prepare(out, with_previous=i % 2 == 1)
        started = time.monotonic()
        run = _start(diff.parent, diff.new, out)
        time.sleep(max(0.0, started + diff.seconds * (i + 0.5) / KILLS - time.monotonic()))
        _kill(run)
        outcomes.append(_outcome(diff, out, previous))

    finished = _start(diff.parent, diff.new, out)
    assert finished.wait(timeout=120) == 0
    assert partial_files(out) == []  # its own, and those the killed runs left
    assert _outcome(diff, out, previous=None) == "new"
    print(f"run {diff.seconds:.2f} s; after the kills OUT was: {outcomes}")


def test_killed_while_writing(diff: Diff) -> None:
    out = diff.parent.with_name("progress.vhd")
    caught_writing = 0
    for i, share in enumerate(PROGRESS):
        previous = _prepare(out, with_previous=i % 2 == 0)
        run = _start(diff.parent, diff.new, out)
        caught_writing += _wait_for_partial(run, out, share * diff.file_size)
        _kill(run)
        _outcome(diff, out, previous)
    # A run may finish before the poll sees the last bytes; most must be caught mid-write.
    assert caught_writing >= len(PROGRESS) - 1


# -- helpers -------------------------------------------------------------------------------


def _make_images(parent: Path, new: Path) -> None:
    rng = random.Random(7)
    with VhdWriter(parent, SIZE) as old_disk, VhdWriter(new, SIZE) as new_disk:
        for index in range(SIZE // BLOCK):
            if index % 4 == 3:
                continue  # unallocated in both
            data = bytearray(rng.randbytes(BLOCK))
            old_disk.write_block(index, data)
            if index % 8 != 7:  # a changed page in most blocks
                at = rng.randrange(BLOCK // PAGE) * PAGE
                data[at : at + PAGE] = rng.randbytes(PAGE)
            new_disk.write_block(index, data)


def _start(parent: Path, new: Path, out: Path) -> subprocess.Popen[str]:
    if not CLI.exists():
        pytest.fail(f"{CLI} missing: run `make setup` (pip install -e . into the virtualenv)")
    return subprocess.Popen(
        [CLI, "vhd", "diff", parent, new, "-o", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill(run: subprocess.Popen[str]) -> None:
    run.send_signal(signal.SIGKILL)  # no-op if it has already exited
    run.communicate(timeout=60)


def _prepare(out: Path, *, with_previous: bool) -> bytes | None:
    """OUT as it is before a run: absent, or holding PREVIOUS."""
    if not with_previous:
        out.unlink(missing_ok=True)
        return None
    out.write_bytes(PREVIOUS)
    return PREVIOUS


def _wait_for_partial(run: subprocess.Popen[str], out: Path, size: float) -> bool:
    """Wait until the run's partial output holds ``size`` bytes; False if it exits first."""
    while run.poll() is None:
        for partial in partial_files(out):
            try:
                if Path(partial).stat().st_size >= size:
                    return True
            except FileNotFoundError:  # renamed into place, or a stale one just removed
                pass
        time.sleep(0.001)
    return False


def _outcome(diff: Diff, out: Path, previous: bytes | None) -> str:
    """What a run left at OUT: "absent", "previous" or "new"; fails on anything else."""
    # Each run removes the partial files killed runs left before it makes its own.
    assert len(partial_files(out)) <= 1, partial_files(out)
    if not out.exists():
        assert previous is None, "the previous output is gone"
        return "absent"
    if previous is not None and out.stat().st_size == len(previous):
        assert out.read_bytes() == previous, "the previous output was changed"
        return "previous"
    try:
        assert _content_sha256(out) == diff.new_sha256, f"{out} does not read as the new image"
    except VhdError as exc:
        pytest.fail(f"{out} is neither absent, the previous file nor a valid disk: {exc}")
    return "new"


def _content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(4 * MIB))
    with open_image(path) as image:  # a differencing disk: read through its parent
        for offset in range(0, image.virtual_size, len(buffer)):
            chunk = buffer[: min(len(buffer), image.virtual_size - offset)]
            image.readinto(offset, chunk)
            digest.update(chunk)
    return digest.hexdigest()
