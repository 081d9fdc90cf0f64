"""Serve the provider over gRPC, as Pulumi's `server.main` does, with clean user errors.

The SDK's servicer appends a Python traceback to every error. For errors that are the user's
(bad input, a host that is down, an object in the way) that is noise, so they are sent as one
line; anything else is a bug and keeps its traceback.

Work stops when nobody waits for it (`cancel`): each call is cancelled when the engine abandons
it (its connection gone: `pulumi` killed), everything when the engine sends `Cancel` or its
address stops answering; the process then exits, as the engine would have stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from pulumi.provider.experimental import server as sdk_server
from pulumi.provider.experimental.property_value import PropertyValue
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc, status_pb2
from pydantic import ValidationError

from .. import cancel
from ..fabric import FabricError
from ..model import ModelError
from ..vhd import VhdError
from ..virt import HypervisorError
from .provider import CloudServiceProvider, PartialUpdate
from .schema import VERSION

USER_ERRORS: tuple[type[Exception], ...] = (
    HypervisorError,
    VhdError,
    ModelError,
    FabricError,
    ValidationError,
    cancel.Cancelled,
)
ENGINE_POLL_SECONDS = 1.0
# After the engine is gone: how long work may take to reach a safe point before the exit.
WIND_DOWN_SECONDS = 30.0


def _find(exc: BaseException | None, kinds: Any) -> Any:
    """The first exception of `kinds` in the chain (the SDK re-raises ours inside its own)."""
    while exc is not None:
        if isinstance(exc, kinds):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _user_error(exc: BaseException | None) -> BaseException | None:
    return _find(exc, USER_ERRORS)


def _partial_status(partial: PartialUpdate) -> grpc.Status:
    """The status the engine reads as "changed part way": it records the properties sent."""
    detail = provider_pb2.ErrorResourceInitFailed(
        id=partial.resource_id,
        properties=PropertyValue.marshal_map(partial.properties),
        inputs=PropertyValue.marshal_map(partial.inputs),
        reasons=[str(partial)],
    )
    status = status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0], message=str(partial))
    status.details.add().Pack(detail)
    return _Status(
        grpc.StatusCode.UNKNOWN,
        str(partial),
        (("grpc-status-details-bin", status.SerializeToString()),),
    )


class _Status(grpc.Status):  # grpc.Status is an abstract record
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _one_line_errors(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = cancel.Cancellation()
        context.add_done_callback(lambda _context: call.cancel("the engine abandoned the call"))
        try:
            with cancel.scope(call):
                return await method(self, request, context)
        except asyncio.CancelledError:
            call.cancel("the engine abandoned the call")
            raise
        except Exception as exc:
            partial = _find(exc, PartialUpdate)
            if partial is not None:
                await context.abort_with_status(_partial_status(partial))
            user_error = _user_error(exc)
            if user_error is None:
                raise
            await context.abort(grpc.StatusCode.UNKNOWN, str(user_error))

    return wrapper


class _Servicer(sdk_server.ProviderServicer):
    pass


for _name in ("Check", "Diff", "Create", "Read", "Update", "Delete", "Configure"):
    setattr(_Servicer, _name, _one_line_errors(getattr(sdk_server.ProviderServicer, _name)))


def _engine_answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except ConnectionRefusedError:
        return False
    except (OSError, ValueError):
        return True  # not a clear "gone": keep working


def _watch_engine(address: str) -> None:
    """Cancel everything and exit once the engine's address refuses connections (the
    `pulumi` process is gone and nobody will stop this plugin)."""
    while _engine_answers(address) or _engine_answers(address):
        time.sleep(ENGINE_POLL_SECONDS)
    cancel.EVERYTHING.cancel("the Pulumi engine is gone")
    deadline = time.monotonic() + WIND_DOWN_SECONDS
    while cancel.working() and time.monotonic() < deadline:
        time.sleep(0.2)
    os._exit(0)


def main(argv: list[str]) -> None:
    engine_address = next((arg for arg in argv if not arg.startswith("-")), "")
    if engine_address:
        threading.Thread(target=_watch_engine, args=(engine_address,), daemon=True).start()

    async def serve() -> None:
        server = grpc.aio.server(options=sdk_server._GRPC_CHANNEL_OPTIONS)
        servicer = _Servicer(
            argv, VERSION, CloudServiceProvider(engine_address), engine_address=engine_address
        )
        provider_pb2_grpc.add_ResourceProviderServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        # stdout is the protocol: the engine reads the port from it, and nothing else goes there.
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await server.wait_for_termination()

    with contextlib.suppress(KeyboardInterrupt):  # the engine stops plugins with SIGINT
        asyncio.run(serve())
