"""Drive the provider in-process, through the same request objects the gRPC server builds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from cloudservice.resources import _wire
from cloudservice.resources.provider import CloudServiceProvider
from pulumi.provider.experimental.provider import (
    CheckRequest,
    ConfigureRequest,
    CreateRequest,
    DeleteRequest,
    DiffRequest,
    DiffResponse,
    ReadRequest,
    UpdateRequest,
)


def urn(token: str, name: str) -> str:
    return f"urn:pulumi:test::proj::{token}::{name}"


@dataclass
class Driver:
    """One resource of one type, driven through check, diff, create, read, update and delete."""

    provider: CloudServiceProvider
    token: str
    name: str = "r"

    @property
    def urn(self) -> str:
        return urn(self.token, self.name)

    def check(
        self,
        inputs: dict[str, Any],
        olds: dict[str, Any] | None = None,
        secret: set[str] = frozenset(),
        unknown: set[str] = frozenset(),
    ) -> Any:
        request = CheckRequest(
            self.urn, _wire.encode(olds or {}), _wire.encode(inputs, secret, unknown), b""
        )
        return asyncio.run(self.provider.check(request))

    def checked(self, inputs: dict[str, Any]) -> dict[str, Any]:
        response = self.check(inputs)
        assert not response.failures, [(f.property, f.reason) for f in response.failures]
        return _wire.decode(response.inputs).values

    def diff(
        self, state: dict[str, Any], news: dict[str, Any], unknown: set[str] = frozenset()
    ) -> DiffResponse:
        request = DiffRequest(
            self.urn, "id", _wire.encode(state), _wire.encode(news, (), unknown), []
        )
        return asyncio.run(self.provider.diff(request))

    def create(
        self, inputs: dict[str, Any], preview: bool = False, unknown: set[str] = frozenset()
    ) -> tuple[str, _wire.Decoded]:
        request = CreateRequest(self.urn, _wire.encode(inputs, (), unknown), 60, preview)
        response = asyncio.run(self.provider.create(request))
        return response.resource_id or "", _wire.decode(response.properties)

    def read(self, resource_id: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        request = ReadRequest(self.urn, resource_id, _wire.encode(state), _wire.encode(state))
        response = asyncio.run(self.provider.read(request))
        return response.resource_id or "", _wire.decode(response.properties).values

    def update(
        self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], preview: bool = False
    ) -> _wire.Decoded:
        request = UpdateRequest(
            self.urn, resource_id, _wire.encode(olds), _wire.encode(news), 60, [], preview
        )
        return _wire.decode(asyncio.run(self.provider.update(request)).properties)

    def delete(self, resource_id: str, state: dict[str, Any]) -> None:
        asyncio.run(
            self.provider.delete(DeleteRequest(self.urn, resource_id, _wire.encode(state), 60))
        )


@pytest.fixture
def provider(libvirt_uri: str) -> CloudServiceProvider:
    instance = CloudServiceProvider()
    asyncio.run(
        instance.configure(ConfigureRequest({}, _wire.encode({"uri": libvirt_uri}), True, True))
    )
    return instance
