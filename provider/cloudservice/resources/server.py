"""Serve the provider over gRPC, as Pulumi's `server.main` does, with clean user errors.

The SDK's servicer appends a Python traceback to every error. For errors that are the user's
(bad input, a host that is down, an object in the way) that is noise, so they are sent as one
line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from pulumi.provider.experimental import server as sdk_server
from pulumi.runtime.proto import provider_pb2_grpc
from pydantic import ValidationError

from ..virt import HypervisorError
from .provider import CloudServiceProvider
from .schema import VERSION

USER_ERRORS: tuple[type[Exception], ...] = (HypervisorError, ValidationError)


def _user_error(exc: BaseException | None) -> BaseException | None:
    while exc is not None:
        if isinstance(exc, USER_ERRORS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _one_line_errors(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            user_error = _user_error(exc)
            if user_error is None:
                raise
            await context.abort(grpc.StatusCode.UNKNOWN, str(user_error))

    return wrapper


class _Servicer(sdk_server.ProviderServicer):
    pass


for _name in ("Check", "Diff", "Create", "Read", "Update", "Delete", "Configure"):
    setattr(_Servicer, _name, _one_line_errors(getattr(sdk_server.ProviderServicer, _name)))


def main(argv: list[str]) -> None:
    engine_address = next((arg for arg in argv if not arg.startswith("-")), "")

    async def serve() -> None:
        server = grpc.aio.server(options=sdk_server._GRPC_CHANNEL_OPTIONS)
        servicer = _Servicer(argv, VERSION, CloudServiceProvider(), engine_address=engine_address)
        provider_pb2_grpc.add_ResourceProviderServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        # stdout is the protocol: the engine reads the port from it, and nothing else goes there.
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await server.wait_for_termination()

    with contextlib.suppress(KeyboardInterrupt):  # the engine stops plugins with SIGINT
        asyncio.run(serve())
