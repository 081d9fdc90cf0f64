"""Several hosts: each answers before anything is declared, or the program stops naming it.

A stack's `hosts` are its fault domains (components/cloud_service.py spreads instances over
them). A host that does not answer stops the `up` (and the preview) before any resource is
declared: what runs on every host, that one included, keeps running as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
from cloudservice.virt import Host, HypervisorError

from .stack_config import HostConfig


def check_hosts(hosts: Sequence[HostConfig], where: str) -> None:
    """Connect to every host once (within libvirt's deadline); one error names the first that
    does not answer, and what to do."""
    for number, host in enumerate(hosts):
        try:
            with Host(host.uri, label=host.uri) as connection:
                connection.version()
        except HypervisorError as exc:
            raise pulumi.RunError(
                f"host {host.uri} ({where}: hosts[{number}]) does not answer ({exc}); nothing "
                "was changed on any host: bring it back and run `up` again, or take it out of "
                "hosts (its instances move to the others)"
            ) from None
