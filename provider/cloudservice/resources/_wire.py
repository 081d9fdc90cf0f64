"""The only module that touches Pulumi's `PropertyValue`.

Inputs arrive as PropertyValues: numbers as floats, lists as tuples, maps read-only, secrecy on
the value, and unknowns (in previews) as a Computed marker. `decode` turns them into plain Python
for pydantic, remembering which top-level keys were secret or unknown; `encode` goes back,
re-applying secrecy so a secret input is never returned in the clear.

SDK 3.260 neither marshals nor unmarshals its `Computed` marker: on the wire an unknown is the
string `pulumi.runtime.rpc.UNKNOWN`, so both forms are recognised here and that string is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi.provider.experimental.property_value import Computed, PropertyValue
from pulumi.runtime.rpc import UNKNOWN


@dataclass
class Decoded:
    values: dict[str, Any]
    secret: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)


def _plain(value: PropertyValue) -> Any:
    inner = value.value
    if isinstance(inner, Computed) or inner == UNKNOWN:
        raise _Unknown
    if isinstance(inner, float) and inner.is_integer():
        return int(inner)
    if isinstance(inner, Mapping):
        return {key: _plain(item) for key, item in inner.items()}
    if isinstance(inner, (list, tuple)):
        return [_plain(item) for item in inner]
    return inner


class _Unknown(Exception):
    """A Computed value somewhere inside a property."""


def decode(properties: Mapping[str, PropertyValue]) -> Decoded:
    decoded = Decoded(values={})
    for key, value in properties.items():
        if value.contains_secret():
            decoded.secret.add(key)
        try:
            decoded.values[key] = _plain(value)
        except _Unknown:
            decoded.unknown.add(key)
    return decoded


def _property(value: Any) -> PropertyValue:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return PropertyValue(value)
    if isinstance(value, int | float):
        return PropertyValue(float(value))
    if isinstance(value, Mapping):
        return PropertyValue({str(key): _property(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return PropertyValue([_property(item) for item in value])
    raise TypeError(f"cannot send {type(value).__name__} to Pulumi")


def encode(
    values: Mapping[str, Any], secret: Iterable[str] = (), unknown: Iterable[str] = ()
) -> dict[str, PropertyValue]:
    secret_keys = set(secret)
    encoded = {
        key: _property(value).with_secret(key in secret_keys) for key, value in values.items()
    }
    for key in unknown:
        encoded[key] = PropertyValue(UNKNOWN).with_secret(key in secret_keys)
    return encoded
