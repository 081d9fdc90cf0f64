"""Property tests: damaged Azure files give Problems, never another exception."""

from __future__ import annotations

from cloudservice.model import ValidationProblems, parse_cscfg, parse_csdef
from hypothesis import given, settings
from hypothesis import strategies as st

from ._helpers import EVERY_ELEMENT

CSDEF = (EVERY_ELEMENT / "ServiceDefinition.csdef").read_bytes()
CSCFG = (EVERY_ELEMENT / "ServiceConfiguration.cscfg").read_bytes()


@st.composite
def _damaged(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, min(len(data), start + 40)))
        data[start:end] = draw(st.binary(max_size=8))
        if not data:
            break
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(_damaged(CSDEF), st.binary(max_size=200)))
def test_damaged_csdef_gives_problems(data: bytes) -> None:
    try:
        parse_csdef(data, "x.csdef")
    except ValidationProblems as exc:
        assert all(problem.source == "x.csdef" for problem in exc.problems)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(_damaged(CSCFG), st.binary(max_size=200)))
def test_damaged_cscfg_gives_problems(data: bytes) -> None:
    try:
        parse_cscfg(data, "x.cscfg")
    except ValidationProblems as exc:
        assert all(problem.source == "x.cscfg" for problem in exc.problems)
