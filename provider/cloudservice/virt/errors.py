"""Errors of the libvirt fabric driver.

    HypervisorError                  root: anything the host or libvirt refused
     ├── HostUnavailable             cannot connect (daemon down, bad URI), or it stopped answering
     ├── ObjectNotFound              a pool, volume, network or domain is not there
     │    └── DomainNotFound
     ├── ObjectExists                the name is taken by an object we did not create
     └── OperationFailed             libvirt refused an operation; the message says which

`libvirt.libvirtError` is caught only inside this package and mapped here by error code
(see `_errors_map.translate`), so callers never import libvirt to handle failures.
"""

from __future__ import annotations


class HypervisorError(Exception):
    """Something on the libvirt host failed; the message names the object and the cause."""


class HostUnavailable(HypervisorError, ConnectionError):
    """libvirtd cannot be reached, or stopped answering within the deadline
    (`CLOUDSERVICE_LIBVIRT_TIMEOUT`). Start it (`make setup` does locally) or check the URI."""


class ObjectNotFound(HypervisorError, LookupError):
    """The named object does not exist on the host."""


class DomainNotFound(ObjectNotFound):
    """The named domain does not exist on the host."""


class ObjectExists(HypervisorError):
    """An object of that name already exists; pick another name or import it."""


class OperationFailed(HypervisorError):
    """libvirt refused the operation."""
