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


def translate(exc: libvirt.libvirtError, what: str) -> HypervisorError:
    """Map a libvirt error about `what` (e.g. "volume 'a' in pool 'b'") to our tree."""
    code = exc.get_error_code()
    detail = exc.get_error_message() or str(exc)
    if code in _NOT_FOUND:
        return _NOT_FOUND[code](f"{what} does not exist")
    if code == libvirt.VIR_ERR_OPERATION_FAILED and "already exists" in detail:
        return ObjectExists(f"{what} already exists: {detail}")
    if code in _UNAVAILABLE:
        return HostUnavailable(f"libvirt host unavailable while handling {what}: {detail}")
    return OperationFailed(f"{what}: {detail}")


@contextmanager
def libvirt_errors(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, what) from exc
