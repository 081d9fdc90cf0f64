"""PropertyValue <-> plain Python: numbers, nesting, secrets and unknowns."""

from __future__ import annotations

from cloudservice.resources import _wire
from pulumi.provider.experimental.property_value import PropertyValue
from pulumi.runtime.rpc import UNKNOWN


def test_numbers_come_back_as_ints_when_whole() -> None:
    decoded = _wire.decode({"a": PropertyValue(3.0), "b": PropertyValue(2.5)})
    assert decoded.values == {"a": 3, "b": 2.5} and isinstance(decoded.values["a"], int)


def test_nested_values_round_trip() -> None:
    value = {"list": [1, "x", {"deep": True}], "map": {"k": None}}
    assert _wire.decode(_wire.encode(value)).values == value


def test_secrets_are_remembered_and_reapplied() -> None:
    secret = PropertyValue("hunter2").with_secret(True)
    nested = PropertyValue({"inner": PropertyValue("s").with_secret(True)})
    decoded = _wire.decode({"password": secret, "nested": nested, "plain": PropertyValue("x")})
    assert decoded.secret == {"password", "nested"}
    encoded = _wire.encode(decoded.values, decoded.secret)
    assert encoded["password"].is_secret and encoded["nested"].is_secret
    assert not encoded["plain"].is_secret


def test_unknowns_in_either_form_are_set_aside_and_sent_as_the_wire_sentinel() -> None:
    decoded = _wire.decode(
        {
            "a": PropertyValue(UNKNOWN),
            "b": PropertyValue.computed(),
            "c": PropertyValue([PropertyValue(UNKNOWN)]),
        }
    )
    assert decoded.unknown == {"a", "b", "c"} and decoded.values == {}
    assert _wire.encode({}, unknown={"a"})["a"].value == UNKNOWN
