"""The one place where libvirt's exceptions become ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from .errors import (
    DomainNotFound,
    HostUnavailable,
    HypervisorError,
    ObjectExists,
    ObjectNotFound,
    OperationFailed,
)

_NOT_FOUND = {
    libvirt.VIR_ERR_NO_STORAGE_POOL: ObjectNotFound,
    libvirt.VIR_ERR_NO_STORAGE_VOL: ObjectNotFound,
    libvirt.VIR_ERR_NO_NETWORK: ObjectNotFound,
    libvirt.VIR_ERR_NO_DOMAIN: DomainNotFound,
}
_UNAVAILABLE = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_RPC}
# The connection itself failing: keepalive closed it ("connection closed due to keepalive
# timeout", then "client socket is closed") or the socket broke ("Cannot recv data: ...").
# The daemon's own refusals keep their domain (storage, qemu, ...), whatever their code.
_CONNECTION_LOST = {libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_SYSTEM_ERROR}


def _host_lost(exc: libvirt.libvirtError) -> bool:
    code = exc.get_error_code()
    return code in _UNAVAILABLE or (
        exc.get_error_domain() == libvirt.VIR_FROM_RPC and code in _CONNECTION_LOST
    )


def translate(exc: libvirt.libvirtError, what: str, host: str) -> HypervisorError:
    """Map a libvirt error about `what` (e.g. "volume 'a' in pool 'b'") on the host labelled
    `host` to our tree."""
    code = exc.get_error_code()
    detail = exc.get_error_message() or str(exc)
    if _host_lost(exc):
        return HostUnavailable(
            f"libvirt at {host!r} stopped answering while handling {what} ({detail}): "
            "is libvirtd running and responsive?"
        )
    if code in _NOT_FOUND:
        return _NOT_FOUND[code](f"{what} does not exist")
    if code == libvirt.VIR_ERR_OPERATION_FAILED and "already exists" in detail:
        return ObjectExists(f"{what} already exists: {detail}")
    return OperationFailed(f"{what}: {detail}")


@contextmanager
def libvirt_errors(what: str, host: str) -> Iterator[None]:
    """libvirt calls about `what` on the host labelled `host`: their errors become ours."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, what, host) from exc
