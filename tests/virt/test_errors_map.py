"""libvirt's errors as ours: a lost connection is HostUnavailable naming the host's label."""

from __future__ import annotations

import libvirt
import pytest
from cloudservice.virt import HostUnavailable, HypervisorError, ObjectNotFound, OperationFailed
from cloudservice.virt._errors_map import translate

LABEL = "cloudservice:uri (secret)"


def _error(code: int, domain: int, message: str) -> libvirt.libvirtError:
    """A libvirtError as libvirt raises it: (code, domain, message, level, ...)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, -1, -1)
    return exc


# What libvirt's RPC client reports when a daemon stops answering (keepalive closes the
# connection, and later calls find it closed) or its socket breaks.
LOST = [
    (libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: connection closed due to keepalive timeout"),
    (libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: client socket is closed"),
    (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer"),
    (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot write data: Broken pipe"),
]


@pytest.mark.parametrize(("code", "message"), LOST)
def test_a_lost_connection_is_host_unavailable_naming_the_label(code: int, message: str) -> None:
    error = translate(_error(code, libvirt.VIR_FROM_RPC, message), "volume 'v' in pool 'p'", LABEL)
    assert isinstance(error, HostUnavailable)
    assert str(error) == (
        f"libvirt at {LABEL!r} stopped answering while handling volume 'v' in pool 'p' "
        f"({message}): is libvirtd running and responsive?"
    )


@pytest.mark.parametrize(
    ("code", "domain", "kind"),
    [
        # The daemon's own refusals keep their kind, whatever their code.
        (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_STORAGE, OperationFailed),
        (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, OperationFailed),
        (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_FROM_STORAGE, ObjectNotFound),
        (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_FROM_NONE, HostUnavailable),
    ],
)
def test_other_errors_keep_their_kind(code: int, domain: int, kind: type[HypervisorError]) -> None:
    error = translate(_error(code, domain, "no"), "volume 'v' in pool 'p'", LABEL)
    assert type(error) is kind
