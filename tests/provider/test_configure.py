"""Provider configuration: a secret `cloudservice:uri` never becomes an output."""

from __future__ import annotations

import asyncio

from cloudservice.resources import _wire
from cloudservice.resources.provider import SECRET_URI_LABEL, CloudServiceProvider
from pulumi.provider.experimental.provider import ConfigureRequest


def _configured(uri: str, secret: bool) -> CloudServiceProvider:
    provider = CloudServiceProvider()
    args = _wire.encode({"uri": uri}, {"uri"} if secret else ())
    asyncio.run(provider.configure(ConfigureRequest({}, args, True, True)))
    return provider


def test_a_plain_uri_names_the_host(libvirt_uri: str) -> None:
    with _configured(libvirt_uri, secret=False)._connect() as host:
        assert host.label == libvirt_uri


def test_a_secret_uri_is_used_but_never_named(libvirt_uri: str) -> None:
    with _configured(libvirt_uri, secret=True)._connect() as host:
        assert host.uri == libvirt_uri and host.label == SECRET_URI_LABEL
        assert host.version()  # it is the real connection


def test_progress_never_stops_the_work_when_the_engine_is_gone() -> None:
    """`pulumi` killed mid-update: its address refuses, and a status must not raise (the
    work stops at its next safe point instead, where the host's records are consistent)."""
    import socket

    from cloudservice import progress

    with socket.socket() as probe:  # a port nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{probe.getsockname()[1]}"
    provider = CloudServiceProvider(engine_address=gone)
    with provider._reporting("urn:pulumi:dev::p::cloudservice:index:VmRole::web"):
        progress.status("uploading web-l1.qcow2: 1 of 2 bytes", force=True)
        progress.summary("image web-l1.qcow2: 1 blocks changed")
