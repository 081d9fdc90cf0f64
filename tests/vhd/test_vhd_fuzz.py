"""Fuzz the parser: any bytes either open (and then read) or raise a VhdError; never
another exception, a hang or a huge allocation.  Bounded: a few hundred examples."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cloudservice.vhd import VhdError, VhdWriter, image_map, open_image
from cloudservice.vhd._writer import ParentRef
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vhd_helpers import pattern

SIZE = 1024 * 1024
BLOCK = 65536


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("fuzz-seeds")
    with VhdWriter(d / "dyn.vhd", SIZE, block_size=BLOCK) as w:
        w.write_block(1, pattern(BLOCK, 1))
        w.write_block(7, pattern(4096, 2))
    with VhdWriter(
        d / "diff.vhd",
        SIZE,
        block_size=BLOCK,
        parent=ParentRef(uuid.uuid4().bytes, SIZE, 0, "p.vhd"),
    ) as w:
        w.write_block(3, pattern(BLOCK, 3), bytes([0xFF, 0, 0x0F]) + bytes(509))
    return {name: (d / name).read_bytes() for name in ("dyn.vhd", "diff.vhd")}


def _exercise(path: Path, strict: bool) -> None:
    try:
        with open_image(path, format="vhd", strict=strict, resolve_parent=False) as img:
            image_map(img)
            if img.parent is None and img.info().type != "differencing":
                img.read(0, img.virtual_size)
    except VhdError:
        pass


mutations = st.lists(
    st.tuples(st.one_of(st.integers(0, 3 * 1024), st.integers(-512, -1)), st.integers(0, 255)),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=250, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from(["dyn.vhd", "diff.vhd"]),
    muts=mutations,
    strict=st.booleans(),
    cut=st.integers(0, 4096),
)
def test_mutated_metadata(
    tmp_path: Path,
    seeds: dict[str, bytes],
    which: str,
    muts: list[tuple[int, int]],
    strict: bool,
    cut: int,
) -> None:
    data = bytearray(seeds[which])
    for pos, value in muts:
        data[pos] = value
    if cut % 7 == 0:  # sometimes truncate as well
        data = data[: max(0, len(data) - cut)]
    path = tmp_path / "fuzz.vhd"
    path.write_bytes(bytes(data))
    _exercise(path, strict)


@settings(
    max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=3000), footer_of=st.sampled_from([None, "dyn.vhd", "diff.vhd"]))
def test_random_bytes(
    tmp_path: Path, seeds: dict[str, bytes], blob: bytes, footer_of: str | None
) -> None:
    data = blob + (seeds[footer_of][-512:] if footer_of else b"")
    path = tmp_path / "fuzz.vhd"
    path.write_bytes(data)
    _exercise(path, strict=False)
