"""A libvirt host: storage pools, volumes (filled by stream upload) and networks.

Every libvirt call goes through `libvirt_errors`, so only `HypervisorError`s leave this module,
and every call is bounded (`_connect`): a host that stops answering fails it with HostUnavailable.
XML comes from `xml.py`; objects are looked up by name and described by small frozen records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import ipaddress
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import libvirt

from .. import cancel, progress
from ..files import sparse_sections
from . import xml
from ._connect import connect
from ._errors_map import libvirt_errors
from ._specs import AttachedDisk, DomainSpec, NetworkSpec, PoolSpec, VolumeSpec
from .errors import (
    DomainNotFound,
    HostUnavailable,
    ObjectExists,
    ObjectNotFound,
    OperationFailed,
)

DEFAULT_URI = "qemu:///system"
_UPLOAD_CHUNK = 4 * 1024 * 1024
_ZEROS = memoryview(bytes(1 << 20))


class Sink(Protocol):
    """Where downloaded bytes go: a file, a buffer, a digest."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class PoolInfo:
    name: str
    path: str
    active: bool


@dataclass(frozen=True)
class VolumeInfo:
    pool: str
    name: str
    path: str
    format: str
    capacity: int
    allocation: int
    modified: str = ""  # the file's mtime as the host reports it: changes when its bytes do
    sha256: str = ""  # of the bytes an upload sent (a hole as zeros); "" when not from one


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    bridge: str
    cidr: str
    mode: str
    dhcp: bool
    active: bool


@dataclass(frozen=True)
class DomainInfo:
    name: str
    running: bool
    vcpus: int
    memory_mib: int
    disk_path: str
    metadata: dict[str, str]


def _refresh(pool: libvirt.virStoragePool) -> None:
    """Re-read the pool's directory, to see files changed behind libvirt's back.

    libvirt refuses while a volume of the pool streams (another role's upload, in parallel);
    its own view of the pool is current then, since it made every change it is streaming.
    """
    try:
        pool.refresh(0)
    except libvirt.libvirtError as exc:
        if "asynchronous jobs running" not in (exc.get_error_message() or ""):
            raise


class _Meter:
    """An upload as it goes: where the stream stands in the file, the data bytes sent, and
    the SHA-256 of the bytes the volume receives (a hole as its zeros)."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.position = self.sent = 0
        self.digest = hashlib.sha256()

    def data(self, data: bytes) -> None:
        self.position += len(data)
        self.sent += len(data)
        self.digest.update(data)
        progress.status(
            f"uploading {self.name}: {self.position} of {self.size} bytes"
            f" ({self.sent} sent, holes skipped)"
        )

    def hole(self, length: int) -> None:
        self.position += length
        for at in range(0, length, len(_ZEROS)):
            self.digest.update(_ZEROS[: min(len(_ZEROS), length - at)])


class _SparseSource:
    """A file as `virStream.sparseSendAll` asks for it, through its three callbacks.

    sparseSendAll's hole handler must leave the read position where it is. There is none to
    move here: where the stream stands comes from the data map (`sparse_sections`), whose
    SEEK_DATA/SEEK_HOLE calls run ahead of it and whose reads are positionless (`os.pread`).
    """

    def __init__(self, fd: int) -> None:
        self._sections = sparse_sections(fd)
        self._data = memoryview(b"")
        self._hole = 0
        self.offset = 0

    def section(self) -> tuple[bool, int]:
        """(in data, length) of what comes next; (True, 0) at the end, where a read is empty."""
        if not self._data and not self._hole:
            section = next(self._sections, None)
            if isinstance(section, int):
                self._hole = section
            elif section is not None:
                self._data = section
        if self._hole:
            return False, self._hole
        return True, len(self._data)

    def read(self, nbytes: int) -> bytes:
        data, self._data = self._data[:nbytes], self._data[nbytes:]
        self.offset += len(data)
        return bytes(data)

    def skip(self, length: int) -> int:
        self._hole -= length
        self.offset += length
        return self.offset


def _silence_libvirt_stderr() -> None:
    # libvirt prints every error to stderr by default; we raise them instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class Host:
    """One connection to a libvirt URI. Use as a context manager, or call `close()`."""

    def __init__(self, uri: str = DEFAULT_URI, label: str | None = None) -> None:
        _silence_libvirt_stderr()
        self.uri = uri
        self.label = label or uri  # how records name this host: the URI, unless it is secret
        self.bytes_uploaded = 0  # what went through upload streams: the bytes a release costs
        self.holes_uploaded = 0  # holes sparse uploads sent instead of zeros
        self.hole_bytes_uploaded = 0  # the bytes those holes stand for
        self._conn = connect(uri, self.label)

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def version(self) -> str:
        """libvirt's version on the host, as "major.minor.micro"."""
        with libvirt_errors("the version query", self.label):
            number = self._conn.getLibVersion()
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    # -- storage pools -------------------------------------------------------------------------

    def ensure_pool(self, spec: PoolSpec) -> PoolInfo:
        """Define, build and start a dir pool, or adopt one of that name with the same path."""
        existing = self.pool(spec.name)
        if existing is not None:
            if existing.path != spec.path:
                raise ObjectExists(
                    f"storage pool {spec.name!r} already exists with path {existing.path!r}, "
                    f"not {spec.path!r}: choose another pool name"
                )
            self._start_pool(spec.name)
            return self._pool_info(self._lookup_pool(spec.name))
        what = f"storage pool {spec.name!r}"
        with libvirt_errors(what, self.label):
            pool = self._conn.storagePoolDefineXML(xml.pool_xml(spec), 0)
            pool.build(libvirt.VIR_STORAGE_POOL_BUILD_NEW)
            pool.setAutostart(1)
        self._start_pool(spec.name)
        return self._pool_info(pool)

    def pool(self, name: str) -> PoolInfo | None:
        try:
            return self._pool_info(self._lookup_pool(name))
        except ObjectNotFound:
            return None

    def delete_pool(self, name: str) -> None:
        """Stop, remove the (empty) directory and undefine. A missing pool is not an error."""
        try:
            pool = self._lookup_pool(name)
        except ObjectNotFound:
            return
        what = f"storage pool {name!r}"
        with libvirt_errors(what, self.label):
            if pool.isActive():
                pool.refresh(0)
                leftovers = pool.listVolumes()
                if leftovers:
                    raise OperationFailed(
                        f"{what} still holds volumes {sorted(leftovers)}: delete them first"
                    )
                pool.destroy()
            pool.delete(libvirt.VIR_STORAGE_POOL_DELETE_NORMAL)
            pool.undefine()

    def _lookup_pool(self, name: str) -> libvirt.virStoragePool:
        with libvirt_errors(f"storage pool {name!r}", self.label):
            return self._conn.storagePoolLookupByName(name)

    def _start_pool(self, name: str) -> None:
        pool = self._lookup_pool(name)
        with libvirt_errors(f"storage pool {name!r}", self.label):
            if not pool.isActive():
                pool.create(0)
            _refresh(pool)

    def _pool_info(self, pool: libvirt.virStoragePool) -> PoolInfo:
        with libvirt_errors(f"storage pool {pool.name()!r}", self.label):
            path = ET.fromstring(pool.XMLDesc(0)).findtext("target/path", default="")
            return PoolInfo(name=pool.name(), path=path, active=bool(pool.isActive()))

    # -- volumes -------------------------------------------------------------------------------

    def upload_volume(
        self, pool_name: str, spec: VolumeSpec, source: Path, *, sparse: bool = False
    ) -> VolumeInfo:
        """Create a volume and fill it with `source`'s bytes, as they are, by libvirt stream.

        `sparse=True` sends only the data: the file's holes and its runs of all-zero 512-byte
        sectors travel as holes (counted in `holes_uploaded` and `hole_bytes_uploaded`, not in
        `bytes_uploaded`). The volume is then made as a fresh raw file of the source's length
        that reads as zeros, whatever `spec.format` says: a volume libvirt formatted (a qcow2
        header and tables) would keep its bytes under the holes. The format is the content's:
        libvirt probes it from the uploaded bytes when it refreshes the pool, done here at once.
        (libvirt 9.0 refuses a refresh while it builds another volume of the pool: the volume
        is then listed as raw until a later refresh, which every lookup here makes.)
        """
        what = f"volume {spec.name!r} in pool {pool_name!r}"
        pool = self._active_pool(pool_name)
        created = spec
        if sparse:
            created = VolumeSpec(name=spec.name, capacity=source.stat().st_size, format="raw")
        with libvirt_errors(what, self.label):
            if spec.name in pool.listVolumes():
                raise ObjectExists(f"{what} already exists: choose another name or delete it")
            volume = pool.createXML(xml.volume_xml(created, 0 if sparse else None), 0)
        try:
            sent = self._upload(volume, source, what, sparse=sparse)
        except BaseException:
            # A host that stopped answering cannot clean up: the upload's error says so.
            with contextlib.suppress(HostUnavailable), libvirt_errors(what, self.label):
                volume.delete(0)
            raise
        if sparse:
            with libvirt_errors(what, self.label):
                _refresh(pool)
        return dataclasses.replace(self._volume_info(pool_name, volume), sha256=sent)

    def overwrite_volume(self, pool_name: str, spec: VolumeSpec, source: Path) -> VolumeInfo:
        """Replace a volume's bytes, keeping its name and path.

        libvirt refuses to shrink a volume below its allocation (a file's first block), so a
        source of another size gets a fresh volume of that size under the same name.
        """
        what = f"volume {spec.name!r} in pool {pool_name!r}"
        volume = self._lookup_volume(pool_name, spec.name)
        with libvirt_errors(what, self.label):
            same_size = volume.info()[1] == spec.capacity
            if not same_size:
                volume.delete(0)
        if not same_size:
            return self.upload_volume(pool_name, spec, source)
        sent = self._upload(volume, source, what)
        return dataclasses.replace(self._volume_info(pool_name, volume), sha256=sent)

    def volume(self, pool_name: str, name: str) -> VolumeInfo | None:
        try:
            return self._volume_info(pool_name, self._lookup_volume(pool_name, name))
        except ObjectNotFound:
            return None

    def volume_names(self, pool_name: str) -> list[str]:
        pool = self._active_pool(pool_name)
        with libvirt_errors(f"storage pool {pool_name!r}", self.label):
            return sorted(pool.listVolumes())

    def delete_volume(self, pool_name: str, name: str) -> None:
        """Delete a volume. A missing volume or pool is not an error: it is already gone."""
        try:
            volume = self._lookup_volume(pool_name, name)
        except ObjectNotFound:
            return
        with libvirt_errors(f"volume {name!r} in pool {pool_name!r}", self.label):
            volume.delete(0)

    def download_volume(self, pool_name: str, name: str, sink: Sink) -> int:
        """Stream a volume's bytes into `sink`; returns the number of bytes written."""
        what = f"volume {name!r} in pool {pool_name!r}"
        volume = self._lookup_volume(pool_name, name)
        written = 0

        def write(_stream: libvirt.virStream, data: bytes, _opaque: object) -> int:
            nonlocal written
            written += len(data)
            return sink.write(data)

        with libvirt_errors(what, self.label):
            stream = self._conn.newStream(0)
            volume.download(stream, 0, 0, 0)
            stream.recvAll(write, None)
            stream.finish()
        return written

    def download_bytes(self, pool_name: str, name: str) -> bytes:
        """A small volume's bytes (a record, a medium)."""
        sink = io.BytesIO()
        self.download_volume(pool_name, name, sink)
        return sink.getvalue()

    def upload_bytes(self, pool_name: str, name: str, data: bytes) -> VolumeInfo:
        """A small raw volume holding `data` (replacing one of that name): a medium to attach."""
        self.delete_volume(pool_name, name)
        with tempfile.NamedTemporaryFile(prefix=".cs-medium-") as temporary:
            temporary.write(data)
            temporary.flush()
            spec = VolumeSpec(name=name, capacity=len(data), format="raw")
            return self.upload_volume(pool_name, spec, Path(temporary.name))

    def _active_pool(self, name: str) -> libvirt.virStoragePool:
        pool = self._lookup_pool(name)
        with libvirt_errors(f"storage pool {name!r}", self.label):
            if not pool.isActive():
                raise OperationFailed(f"storage pool {name!r} is not running: start it first")
            _refresh(pool)
        return pool

    def _lookup_volume(self, pool_name: str, name: str) -> libvirt.virStorageVol:
        pool = self._active_pool(pool_name)
        with libvirt_errors(f"volume {name!r} in pool {pool_name!r}", self.label):
            return pool.storageVolLookupByName(name)

    def _upload(
        self, volume: libvirt.virStorageVol, source: Path, what: str, *, sparse: bool = False
    ) -> str:
        """Stream `source` into `volume`: every byte, or (`sparse`) its data and holes. Returns
        the SHA-256 of what the volume received, read as it was sent."""
        size = source.stat().st_size
        flags = libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM if sparse else 0
        meter = _Meter(volume.name(), size)
        with libvirt_errors(what, self.label), open(source, "rb") as reader:
            stream = self._conn.newStream(0)
            volume.upload(stream, 0, size, flags)
            try:
                if sparse:
                    self._send_sparse(stream, _SparseSource(reader.fileno()), meter)
                else:
                    stream.sendAll(
                        lambda _s, nbytes, _o: self._chunk(reader.read, nbytes, meter), None
                    )
                stream.finish()
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):  # the connection may be gone
                    stream.abort()
                raise
        return meter.digest.hexdigest()

    def _send_sparse(self, stream: libvirt.virStream, source: _SparseSource, meter: _Meter) -> None:
        def skip(_stream: libvirt.virStream, length: int, _opaque: object) -> int:
            # Called once the stream took the hole.
            self.holes_uploaded += 1
            self.hole_bytes_uploaded += length
            meter.hole(length)
            return source.skip(length)

        stream.sparseSendAll(
            lambda _s, nbytes, _o: self._chunk(source.read, nbytes, meter),
            lambda _s, _o: source.section(),
            skip,
            None,
        )

    def _chunk(self, read: Callable[[int], bytes], nbytes: int, meter: _Meter) -> bytes:
        """The next chunk a stream asks for, counted: the same for whole and sparse uploads."""
        cancel.checkpoint()  # a partial volume is a leftover the next run recognises
        data = read(min(nbytes, _UPLOAD_CHUNK))
        self.bytes_uploaded += len(data)
        meter.data(data)
        return data

    def _volume_info(self, pool_name: str, volume: libvirt.virStorageVol) -> VolumeInfo:
        with libvirt_errors(f"volume {volume.name()!r} in pool {pool_name!r}", self.label):
            _kind, capacity, allocation = volume.info()
            target = ET.fromstring(volume.XMLDesc(0)).find("target")
            fmt = target.find("format") if target is not None else None
            modified = target.findtext("timestamps/mtime", "") if target is not None else ""
            path = volume.path()
        return VolumeInfo(
            pool=pool_name,
            name=volume.name(),
            path=path,
            format=fmt.get("type", "raw") if fmt is not None else "raw",
            capacity=capacity,
            allocation=allocation,
            modified=modified,
        )

    # -- networks ------------------------------------------------------------------------------

    def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Define and start a network, or adopt a running one of that name with the same subnet."""
        existing = self.network(spec.name)
        if existing is not None:
            if existing.cidr != spec.cidr:
                raise ObjectExists(
                    f"network {spec.name!r} already exists with subnet {existing.cidr}, "
                    f"not {spec.cidr}: choose another network name"
                )
            return existing
        with libvirt_errors(f"network {spec.name!r}", self.label):
            network = self._conn.networkDefineXML(xml.network_xml(spec))
            try:
                network.setAutostart(1)
                network.create()
            except libvirt.libvirtError:
                network.undefine()
                raise
        return self._network_info(network)

    def network(self, name: str) -> NetworkInfo | None:
        try:
            with libvirt_errors(f"network {name!r}", self.label):
                return self._network_info(self._conn.networkLookupByName(name))
        except ObjectNotFound:
            return None

    def delete_network(self, name: str) -> None:
        """Stop and undefine a network. A missing network is not an error."""
        try:
            with libvirt_errors(f"network {name!r}", self.label):
                network = self._conn.networkLookupByName(name)
        except ObjectNotFound:
            return
        with libvirt_errors(f"network {name!r}", self.label):
            if network.isActive():
                network.destroy()
            network.undefine()

    def reserve_address(self, network_name: str, mac: str, address: str, name: str) -> None:
        """A DHCP reservation: the NIC with `mac` always gets `address` (live and persistent).

        Reservations of the same MAC or address made earlier (a reimage, a leftover) are
        replaced, so the call is idempotent.
        """
        what = f"network {network_name!r}"
        with libvirt_errors(what, self.label):
            network = self._conn.networkLookupByName(network_name)
            root = ET.fromstring(network.XMLDesc(0))
            for host in root.findall("ip/dhcp/host"):
                if (host.get("mac"), host.get("ip"), host.get("name")) == (mac, address, name):
                    return
                if host.get("mac") == mac or host.get("ip") == address:
                    self._update_dhcp_host(network, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, host)
            entry = ET.fromstring(xml.dhcp_host_xml(mac, address, name))
            self._update_dhcp_host(network, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, entry)

    def address_reservations(self, network_name: str) -> dict[str, tuple[str, str]]:
        """The network's DHCP reservations: MAC -> (address, name)."""
        with libvirt_errors(f"network {network_name!r}", self.label):
            root = ET.fromstring(self._conn.networkLookupByName(network_name).XMLDesc(0))
        return {
            h.get("mac", ""): (h.get("ip", ""), h.get("name", ""))
            for h in root.findall("ip/dhcp/host")
        }

    def release_address(self, network_name: str, mac: str) -> None:
        """Drop the reservation of `mac`. A missing network or reservation is not an error."""
        try:
            with libvirt_errors(f"network {network_name!r}", self.label):
                network = self._conn.networkLookupByName(network_name)
        except ObjectNotFound:
            return
        with libvirt_errors(f"network {network_name!r}", self.label):
            root = ET.fromstring(network.XMLDesc(0))
            for host in root.findall("ip/dhcp/host"):
                if host.get("mac") == mac:
                    self._update_dhcp_host(network, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, host)

    @staticmethod
    def _update_dhcp_host(network: libvirt.virNetwork, command: int, host: ET.Element) -> None:
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if network.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        entry = ET.tostring(host, encoding="unicode")
        network.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, entry, flags)

    def _network_info(self, network: libvirt.virNetwork) -> NetworkInfo:
        with libvirt_errors(f"network {network.name()!r}", self.label):
            root = ET.fromstring(network.XMLDesc(0))
            active = bool(network.isActive())
        ip = root.find("ip")
        address = ip.get("address", "0.0.0.0") if ip is not None else "0.0.0.0"
        netmask = ip.get("netmask", "255.255.255.255") if ip is not None else "255.255.255.255"
        cidr = str(ipaddress.ip_network(f"{address}/{netmask}", strict=False))
        forward = root.find("forward")
        bridge = root.find("bridge")
        return NetworkInfo(
            name=network.name(),
            bridge=bridge.get("name", "") if bridge is not None else "",
            cidr=cidr,
            mode=forward.get("mode", "nat") if forward is not None else "isolated",
            dhcp=root.find("ip/dhcp") is not None,
            active=active,
        )

    # -- domains -------------------------------------------------------------------------------

    def create_overlay(
        self, pool_name: str, name: str, backing: VolumeInfo, capacity: int
    ) -> VolumeInfo:
        """A qcow2 volume whose backing file is `backing`: writes land here, reads fall through."""
        spec = VolumeSpec(
            name=name,
            capacity=capacity,
            format="qcow2",
            backing_path=backing.path,
            backing_format=backing.format,  # type: ignore[arg-type]
        )
        what = f"volume {name!r} in pool {pool_name!r}"
        pool = self._active_pool(pool_name)
        with libvirt_errors(what, self.label):
            if name in pool.listVolumes():
                raise ObjectExists(f"{what} already exists")
            return self._volume_info(pool_name, pool.createXML(xml.volume_xml(spec), 0))

    def define_domain(self, spec: DomainSpec) -> DomainInfo:
        if self.domain(spec.name) is not None:
            raise ObjectExists(f"domain {spec.name!r} already exists: choose another name")
        with libvirt_errors(f"domain {spec.name!r}", self.label):
            return self._domain_info(self._conn.defineXML(xml.domain_xml(spec)))

    def start_domain(self, name: str) -> None:
        domain = self._lookup_domain(name)
        with libvirt_errors(f"domain {name!r}", self.label):
            if not domain.isActive():
                domain.create()

    def stop_domain(self, name: str) -> None:
        """Power off at once: instances keep no state worth a clean shutdown."""
        domain = self._lookup_domain(name)
        with libvirt_errors(f"domain {name!r}", self.label):
            if domain.isActive():
                domain.destroy()

    def delete_domain(self, name: str) -> None:
        """Stop and undefine. A missing domain is not an error."""
        try:
            self.stop_domain(name)
            domain = self._lookup_domain(name)
        except DomainNotFound:
            return
        with libvirt_errors(f"domain {name!r}", self.label):
            domain.undefine()

    def change_media(self, name: str, disk: AttachedDisk, attempts: int = 5) -> None:
        """Swap the medium of a domain's cdrom, live when it runs, and in its definition.

        A guest reading the drive at that moment may hold its tray shut: tried again a few
        times, a second apart, before the refusal is reported.
        """
        domain = self._lookup_domain(name)
        for attempt in range(attempts):
            try:
                with libvirt_errors(f"domain {name!r}", self.label):
                    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
                    if domain.isActive():
                        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
                    domain.updateDeviceFlags(xml.disk_xml(disk), flags)
                return
            except OperationFailed as exc:
                if "tray" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(1)

    def read_channel(
        self, name: str, channel: str, seconds: float, until: bytes | None = None
    ) -> bytes:
        """What the guest writes on a virtio-serial channel during `seconds` (b"" if nothing),
        or up to the first `until` (e.g. a newline: one whole line) when that comes sooner.

        The stream is read in a thread: libvirt streams block, and a guest may write nothing.
        """
        domain = self._lookup_domain(name)
        received = bytearray()
        with libvirt_errors(f"channel {channel!r} of domain {name!r}", self.label):
            stream = self._conn.newStream(0)
            domain.openChannel(channel, stream, libvirt.VIR_DOMAIN_CHANNEL_FORCE)

        def pump() -> None:
            try:
                while chunk := stream.recv(65536):
                    if isinstance(chunk, int):  # -2: would block
                        continue
                    received.extend(chunk)
                    if until is not None and until in chunk:
                        return
            except libvirt.libvirtError:
                pass  # aborted below, or the domain went away: what came is what we have

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        reader.join(seconds)
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        reader.join(1)
        return bytes(received)

    def domain_names(self, prefix: str) -> list[str]:
        """Names of the domains (running or not) that start with `prefix`."""
        with libvirt_errors("domains", self.label):
            names = [domain.name() for domain in self._conn.listAllDomains(0)]
        return sorted(name for name in names if name.startswith(prefix))

    def set_domain_metadata(self, name: str, metadata: dict[str, str]) -> None:
        """Replace the domain's cloudservice metadata, live and in its definition."""
        domain = self._lookup_domain(name)
        with libvirt_errors(f"domain {name!r}", self.label):
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if domain.isActive():
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            domain.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                xml.metadata_xml(metadata),
                "cloudservice",
                xml.METADATA_NS,
                flags,
            )

    def domain(self, name: str) -> DomainInfo | None:
        try:
            return self._domain_info(self._lookup_domain(name))
        except DomainNotFound:
            return None

    def _lookup_domain(self, name: str) -> libvirt.virDomain:
        with libvirt_errors(f"domain {name!r}", self.label):
            return self._conn.lookupByName(name)

    def _domain_info(self, domain: libvirt.virDomain) -> DomainInfo:
        with libvirt_errors(f"domain {domain.name()!r}", self.label):
            root = ET.fromstring(domain.XMLDesc(0))
            running, memory_kib = bool(domain.isActive()), domain.maxMemory()
        source = root.find("devices/disk/source")
        instance = root.find(f"metadata/{{{xml.METADATA_NS}}}instance")
        return DomainInfo(
            name=domain.name(),
            running=running,
            vcpus=int(root.findtext("vcpu", default="1")),
            memory_mib=memory_kib // 1024,
            disk_path=source.get("file", "") if source is not None else "",
            metadata=dict(instance.attrib) if instance is not None else {},
        )
