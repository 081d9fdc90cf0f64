"""The provider: one list of resources, and the protocol calls dispatched to them by type token.

Every call decodes PropertyValues (via `_wire`), validates with the resource's pydantic models
and hands typed values to the resource. In previews nothing on the host changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import grpc
from pulumi.provider.experimental.provider import (
    CheckFailure,
    CheckRequest,
    CheckResponse,
    ConfigureRequest,
    ConfigureResponse,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    DiffRequest,
    DiffResponse,
    GetSchemaRequest,
    GetSchemaResponse,
    PropertyDiff,
    PropertyDiffKind,
    Provider,
    ReadRequest,
    ReadResponse,
    UpdateRequest,
    UpdateResponse,
)
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

from .. import cancel, progress
from ..virt import DEFAULT_URI, Host
from . import _wire
from ._base import Model, PartialFailure, Resource, wire_names
from .front_door import FrontDoor
from .retired import RETIRED
from .schema import build_schema
from .vm_role import VmRole
from .web_role import WebRole
from .worker_role import WorkerRole

SECRET_URI_LABEL = "cloudservice:uri (secret)"

RESOURCES: tuple[type[Resource[Any, Any]], ...] = (VmRole, WebRole, WorkerRole, FrontDoor)


class CloudServiceProvider(Provider):
    def __init__(self, engine_address: str = "") -> None:
        self.uri = DEFAULT_URI
        self.uri_secret = False
        self.engine_address = engine_address
        self.resources: dict[str, Resource[Any, Any]] = {
            kind.token: kind(partial(self._connect)) for kind in RESOURCES
        }

    def log(self, urn: str, message: str, ephemeral: bool = False) -> None:
        """An info message on the resource, shown by `pulumi preview` and `up`; an ephemeral
        one is the status line beside the resource, replaced by the next."""
        if not self.engine_address:
            return
        with grpc.insecure_channel(self.engine_address) as channel:
            engine_pb2_grpc.EngineStub(channel).Log(
                engine_pb2.LogRequest(
                    severity=engine_pb2.INFO, message=message, urn=urn, ephemeral=ephemeral
                )
            )

    def _reporting(self, urn: str) -> contextlib.AbstractContextManager[None]:
        """The call's progress, as messages on its resource. Progress never stops the work: an
        engine that no longer answers (`pulumi` killed) is found out at the next safe point."""

        def report(message: str, ephemeral: bool) -> None:
            with contextlib.suppress(grpc.RpcError):
                self.log(urn, message, ephemeral)

        return progress.reporting(report)

    def _connect(self) -> Host:
        return Host(self.uri, label=SECRET_URI_LABEL if self.uri_secret else None)

    def _resource(self, urn_type: str) -> Resource[Any, Any]:
        token = _token(urn_type)
        try:
            return self.resources[token]
        except KeyError:
            raise ValueError(f"unknown resource type {token}") from None

    async def get_schema(self, request: GetSchemaRequest) -> GetSchemaResponse:
        return GetSchemaResponse(schema=json.dumps(build_schema(RESOURCES)))

    async def configure(self, request: ConfigureRequest) -> ConfigureResponse:
        config = _wire.decode(request.args)
        self.uri = str(
            config.values.get("uri")
            or request.variables.get("cloudservice:config:uri")
            or DEFAULT_URI
        )
        # A secret URI (credentials, a private host name) is never written into outputs.
        self.uri_secret = "uri" in config.secret
        return ConfigureResponse(accept_secrets=True, supports_preview=True)

    async def cancel(self) -> None:
        """The engine is shutting down: every call stops at its next safe point."""
        cancel.EVERYTHING.cancel("the Pulumi engine cancelled the operation")

    # The engine runs independent resources in parallel: every call that can block (libvirt,
    # disk, uploads, health gates) runs in a worker thread, so the event loop keeps serving.
    # The thread sees the call's cancellation (`asyncio.to_thread` copies the context).

    async def check(self, request: CheckRequest) -> CheckResponse:
        return await asyncio.to_thread(_working, self._check, request)

    async def diff(self, request: DiffRequest) -> DiffResponse:
        return await asyncio.to_thread(_working, self._diff, request)

    async def create(self, request: CreateRequest) -> CreateResponse:
        return await asyncio.to_thread(_working, self._create, request)

    async def read(self, request: ReadRequest) -> ReadResponse:
        return await asyncio.to_thread(_working, self._read, request)

    async def update(self, request: UpdateRequest) -> UpdateResponse:
        return await asyncio.to_thread(_working, self._update, request)

    async def delete(self, request: DeleteRequest) -> None:
        await asyncio.to_thread(_working, self._delete, request)

    def _check(self, request: CheckRequest) -> CheckResponse:
        if retired := RETIRED.get(_token(request.type)):
            return CheckResponse(request.new_inputs, [CheckFailure("", retired.message)])
        resource = self._resource(request.type)
        news = _wire.decode(request.new_inputs)
        inputs, failures = resource.check(news.values, news.unknown)
        return CheckResponse(
            inputs=_wire.encode(inputs, news.secret, news.unknown),
            failures=[CheckFailure(prop, reason) for prop, reason in failures],
        )

    def _diff(self, request: DiffRequest) -> DiffResponse:
        resource = self._resource(request.type)
        olds = _wire.decode(request.old_state)
        news = _wire.decode(request.new_inputs)
        changes = resource.diff(olds.values, news.values, news.unknown, set(request.ignore_changes))
        replaces = changes.replaces
        return DiffResponse(
            changes=bool(changes.fields),
            replaces=replaces,
            delete_before_replace=bool(replaces) and resource.delete_before_replace,
            diffs=[change.wire_name for change in changes.fields],
            detailed_diff={
                change.wire_name: PropertyDiff(
                    PropertyDiffKind.UPDATE_REPLACE if change.replace else PropertyDiffKind.UPDATE,
                    input_diff=True,
                )
                for change in changes.fields
            },
        )

    def _create(self, request: CreateRequest) -> CreateResponse:
        resource = self._resource(request.type)
        inputs = _wire.decode(request.properties)
        outputs = _output_names(resource)
        if request.preview and inputs.unknown:
            return CreateResponse(
                "", _wire.encode(inputs.values, inputs.secret, inputs.unknown | outputs)
            )
        args = resource.args_model.model_validate(inputs.values)
        if request.preview:
            return CreateResponse(
                resource.preview_id(args), _wire.encode(args.wire(), inputs.secret, outputs)
            )
        try:
            with self._reporting(request.urn):
                resource_id, state = resource.create(args)
        except PartialFailure as failure:
            raise _partial(resource, resource.preview_id(args), failure, inputs.secret) from None
        return CreateResponse(resource_id, _wire.encode(state.wire(), inputs.secret))

    def _read(self, request: ReadRequest) -> ReadResponse:
        if _token(request.type) in RETIRED:  # as recorded: it is on its way out
            return ReadResponse(request.resource_id, request.properties, request.inputs)
        resource = self._resource(request.type)
        current = _wire.decode(request.properties)
        state = resource.state_model.model_validate(current.values)
        live = resource.read(request.resource_id, state)
        if live is None:
            return ReadResponse(resource_id="")
        args_keys = set(wire_names(resource.args_model).values())
        wire_state = live.wire()
        return ReadResponse(
            resource_id=request.resource_id,
            properties=_wire.encode(wire_state, current.secret),
            inputs=_wire.encode(
                {k: v for k, v in wire_state.items() if k in args_keys}, current.secret
            ),
        )

    def _update(self, request: UpdateRequest) -> UpdateResponse:
        resource = self._resource(request.type)
        olds = _wire.decode(request.olds)
        news = _wire.decode(request.news)
        outputs = _output_names(resource)
        if request.preview and news.unknown:
            return UpdateResponse(_wire.encode(news.values, news.secret, news.unknown | outputs))
        old = resource.state_model.model_validate(olds.values)
        new = resource.args_model.model_validate(news.values)
        if request.preview:
            # What the update will do, where the resource can say it without side effects; the
            # engine shows a preview's messages beside the resource's diff.
            known = resource.preview_update(old, new)
            if "summary" in known:
                self.log(request.urn, str(known["summary"]))
            return UpdateResponse(
                _wire.encode({**news.values, **known}, news.secret, outputs - set(known))
            )
        try:
            with self._reporting(request.urn):
                state = resource.update(request.resource_id, old, new)
        except PartialFailure as failure:
            raise _partial(resource, request.resource_id, failure, news.secret) from None
        return UpdateResponse(_wire.encode(state.wire(), news.secret))

    def _delete(self, request: DeleteRequest) -> None:
        if retired := RETIRED.get(_token(request.type)):
            with self._connect() as host:
                retired.remove(host, request.resource_id, _wire.decode(request.properties).values)
            return
        resource = self._resource(request.type)
        state = resource.state_model.model_validate(_wire.decode(request.properties).values)
        resource.delete(request.resource_id, state)


R = TypeVar("R")


def _working(call: Callable[[Any], R], request: Any) -> R:
    with cancel.work():
        return call(request)


def _token(urn_type: str) -> str:
    # A URN's type names the parents too: "cloudservice:index:CloudService$...:VmRole".
    return urn_type.rsplit("$", 1)[-1]


def _output_names(resource: Resource[Any, Any]) -> set[str]:
    """Wire names of State fields that are not inputs: unknown until the host answers."""
    state: type[Model] = resource.state_model
    return set(wire_names(state).values()) - set(wire_names(resource.args_model).values())


class PartialUpdate(Exception):
    """Sent to the engine as ErrorResourceInitFailed: the error, plus the state to record."""

    def __init__(
        self, resource_id: str, properties: dict[str, Any], inputs: dict[str, Any], message: str
    ) -> None:
        super().__init__(message)
        self.resource_id = resource_id
        self.properties = properties
        self.inputs = inputs


def _partial(
    resource: Resource[Any, Any], resource_id: str, failure: PartialFailure, secret: set[str]
) -> PartialUpdate:
    state = failure.state.wire()
    args_keys = set(wire_names(resource.args_model).values())
    inputs = {key: value for key, value in state.items() if key in args_keys}
    return PartialUpdate(
        resource_id, _wire.encode(state, secret), _wire.encode(inputs, secret), str(failure)
    )
