"""A VM role's image chain on one host: a whole base image, then one qcow2 layer per release.

    <role>-l0.vhd            the first image, uploaded once, given to qemu as `vpc`
    <role>-l1.qcow2 ...      one layer per later release: only the 4 KiB pages that changed
                             (extended L2 subclusters; the rest of the file is holes, and a
                             sparse upload sends none), backed by the layer below (qemu
                             misreads differencing VHDs)

A release is diffed by its page manifest (`_scans`) against the top layer's: nothing is fetched
back, and only the changed pages of the image are read. Each layer's record
(`<layer>.manifest.json`: the layer as uploaded, the digest of its bytes and its volume's
modification time, with the image's manifest for a base, the manifest's changes for a layer)
is written after the layer's bytes, so a layer with a record is complete: a later run (after an
interruption) adopts it, once the digest of its bytes matches the record, and deletes a layer
without one. Whole manifests are cached locally, each used only when it describes the host's
layer; without one, the top's manifest is rebuilt from the chain's records. A chain with a
layer replaced on the host, or past the depth limit, starts again: the release goes up whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from .. import vhd
from ..files import write_atomically
from ..model import Model
from ..virt import Host, ObjectNotFound, VolumeInfo, VolumeSpec
from ._cache import cache_dir
from ._scans import Scan


class Layer(Model):
    volume: str
    format: Literal["vpc", "qcow2"]
    backing: str | None = None  # the layer below (None for a whole image)

    @model_validator(mode="after")
    def _qcow2_layers_have_a_backing(self) -> Layer:
        # Layers are deleted once no instance reads through them: the chain must be explicit.
        if (self.format == "qcow2") != (self.backing is not None):
            raise ValueError(f"layer {self.volume}: a qcow2 layer, and only one, has a backing")
        return self

    path: str
    image_sha256: str
    unique_id: str | None
    virtual_size: int
    uploaded_bytes: int
    blocks_changed: int
    uploaded_sha256: str | None = None  # of the bytes as uploaded: how an adopted one is checked
    # The volume's modification time on the host after the upload: a layer whose bytes were
    # replaced since (same name, other bytes) is not diffed against.
    host_modified: str | None = None

    def disk(self, pool: str) -> VolumeInfo:
        """The layer as the read-only disk instances' overlays back onto."""
        return VolumeInfo(
            pool=pool,
            name=self.volume,
            path=self.path,
            format=self.format,
            capacity=self.virtual_size,
            allocation=0,
        )


class _Digest:
    """A sink that only hashes: what a volume's bytes digest to, fetched from the host."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return len(data)


def ancestry(layers: Sequence[Layer], volume: str) -> list[str]:
    """`volume` and the layers it reads through, down to its base."""
    by_volume = {layer.volume: layer for layer in layers}
    chain: list[str] = []
    current: str | None = volume
    while current is not None and current in by_volume:
        chain.append(current)
        current = by_volume[current].backing
    return chain


def needed_by(layers: Sequence[Layer], tops: Iterable[str]) -> set[str]:
    """The layers that `tops` (a release's layer, instances' layers) read through."""
    return {volume for top in tops for volume in ancestry(layers, top)}


def _manifest_volume(layer_volume: str) -> str:
    return f"{layer_volume}.manifest.json"


def _cached(layer: Layer) -> Path:
    return cache_dir("manifests") / f"{layer.image_sha256}.json"


def _index(volume: str) -> int:
    return int(volume.rsplit("-l", 1)[1].split(".")[0])


def _next_index(layers: Sequence[Layer]) -> int:
    return max((_index(layer.volume) for layer in layers), default=-1) + 1


def _record(layer: Layer, manifest: vhd.BlockManifest | vhd.ManifestChanges) -> bytes:
    """A layer's record: the layer, with its image's whole manifest (a base, and every entry
    of the local cache) or the changes from its backing layer's (a layer on the host: its
    record's size follows the change, and travels with it)."""
    key = "manifest" if isinstance(manifest, vhd.BlockManifest) else "changes"
    return json.dumps({"layer": layer.wire(), key: manifest.to_json()}).encode()


def _describes(document: bytes, layer: Layer) -> bool:
    """Whether a record is the record of `layer` (the same upload of the same image)."""
    try:
        recorded = Layer.model_validate(json.loads(document)["layer"])
    except (ValueError, KeyError, TypeError):
        return False
    return recorded == layer


@contextmanager
def _layer_file(
    path: str, top: Layer, parent: vhd.BlockManifest, target: vhd.BlockManifest, name: str
) -> Iterator[tuple[Path, vhd.DiffResult]]:
    """The layer that takes `top` (whose manifest is `parent`) to the release at `path`
    (whose manifest is `target`), in a temporary directory: only the changed pages are read."""
    with _open_release(path, top) as opened, tempfile.TemporaryDirectory() as work:
        overlay = Path(work) / name
        result = vhd.layer_from_manifests(
            parent, target, opened, overlay, backing_file=top.path, backing_format=top.format
        )
        yield overlay, result


@contextmanager
def _whole(path: str, differencing: bool) -> Iterator[str]:
    """The release as one whole image: itself, or its chain merged into a temporary VHD."""
    if not differencing:
        yield path
        return
    with vhd.open_image(path, format="vhd") as chain, tempfile.TemporaryDirectory() as work:
        merged = os.path.join(work, "merged.vhd")
        vhd.coalesce(chain, merged)
        yield merged


@contextmanager
def _open_release(path: str, top: Layer) -> Iterator[vhd.Image]:
    """Open a release; a differencing VHD must be a child of the image deployed now."""
    with vhd.open_image(path, format="vhd", resolve_parent=False) as unresolved:
        info = unresolved.info()
    if info.type == "differencing" and info.parent_unique_id != top.unique_id:
        raise vhd.ParentMismatchError(
            f"{path} is a differencing VHD of parent {info.parent_unique_id}, but the image "
            f"deployed is {top.unique_id}: build the update against the deployed image"
        )
    with vhd.open_image(path, format="vhd") as image:
        yield image


class ImageChain:
    """The layers of one role (`<role>-l<i>`) in one pool of one host."""

    def __init__(self, host: Host, pool: str, role: str) -> None:
        self.host, self.pool, self.role = host, pool, role
        self._pattern = re.compile(rf"^{re.escape(role)}-l\d+\.(vhd|qcow2)$")

    def layer_name(self, index: int, fmt: str) -> str:
        return f"{self.role}-l{index}.{'vhd' if fmt == 'vpc' else 'qcow2'}"

    def owns(self, volume: str) -> bool:
        """Whether `volume` is named as one of this chain's layers."""
        return self._pattern.match(volume) is not None

    def on_host(self) -> tuple[list[Layer], list[str]]:
        """The role's complete layers on the host, read from their records (base first), and
        the layer volumes an interrupted upload left: layers without a record, records without
        a layer (named by their layer)."""
        names = set(self.host.volume_names(self.pool))
        volumes = {name for name in names if self.owns(name)}
        recorded = {name for name in volumes if _manifest_volume(name) in names}
        # Records whose layer is gone are leftovers too, named by their layer.
        orphans = {
            described
            for name in names
            if name.endswith(".manifest.json")
            and self.owns(described := name.removesuffix(".manifest.json"))
            and described not in volumes
        }
        complete: list[Layer] = []
        partial = sorted((volumes - recorded) | orphans)
        for volume in sorted(recorded):
            read = self._recorded(volume)
            if read is None:
                partial.append(volume)
            else:
                complete.append(read)
        return sorted(complete, key=lambda layer: _index(layer.volume)), sorted(partial)

    def remove(self, layers: Sequence[Layer]) -> None:
        """Delete every layer of the chain on the host (recorded in `layers`, complete or
        partial), then the local cache's records of them."""
        found, partial = self.on_host()
        volumes = {layer.volume for layer in [*layers, *found]} | set(partial)
        for volume in sorted(volumes, reverse=True):
            self.delete(volume)
        self.forget([*layers, *found])

    def reconcile(self, layers: Sequence[Layer], repair: bool) -> list[Layer]:
        """The chain as the host holds it, base first: each complete layer as its record on the
        host says (recorded or not: an interrupted run's upload included). With `repair` (an
        update, not a refresh), leftovers that cannot be trusted are deleted: partial uploads,
        and unrecorded layers whose bytes do not match their record."""
        found, partial = self.on_host()
        recorded = {layer.volume for layer in layers}
        chain = []
        for layer in found:
            if repair and layer.volume not in recorded and not self._intact(layer):
                partial.append(layer.volume)
            else:
                chain.append(layer)
        if repair:
            for volume in partial:
                self.delete(volume)
        return chain

    def _recorded(self, volume: str) -> Layer | None:
        try:
            document = self.host.download_bytes(self.pool, _manifest_volume(volume))
            return Layer.model_validate(json.loads(document)["layer"])
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: not a record this provider wrote whole

    def _unchanged(self, layer: Layer) -> bool:
        """The layer's volume holds the bytes its record describes: same modification time as
        after its upload, or, for a layer (small, unlike a whole image), bytes that still hash
        to the record. Layers recorded before times were kept are taken as they are."""
        live = self.host.volume(self.pool, layer.volume)
        if live is None:
            return False
        if layer.host_modified is None or live.modified == layer.host_modified:
            return True
        return layer.format == "qcow2" and self._intact(layer)

    def _intact(self, layer: Layer) -> bool:
        """The layer's bytes on the host are the bytes its record says were uploaded."""
        if layer.uploaded_sha256 is None:
            return False
        digest = _Digest()
        self.host.download_volume(self.pool, layer.volume, digest)
        return digest.sha256.hexdigest() == layer.uploaded_sha256

    def release(
        self, image: Scan, path: str, layers: Sequence[Layer], max_depth: int
    ) -> tuple[Layer, list[Layer]]:
        """The release's layer (found on the host, or uploaded), and the chain with it."""
        known = next((layer for layer in layers if layer.image_sha256 == image.sha256), None)
        if known is not None:
            # Already on the host: a stopped rollout carrying on, or a rollback.
            return known, list(layers)
        parent = self._parent_manifest(layers, max_depth)
        if parent is None:  # a new chain, a coalesce, or no record to diff against
            layer = self.upload_base(image, path, index=_next_index(layers))
        else:
            layer = self._upload_layer(image, path, layers[-1], parent, _next_index(layers))
        return layer, [*layers, layer]

    def upload_base(self, image: Scan, path: str, index: int = 0) -> Layer:
        """Upload a whole image as the bottom of a new chain (first deploy, or a coalesce); a
        differencing release goes up merged with its parents (found locally)."""
        with vhd.open_image(path, format="vhd", resolve_parent=False) as opened:
            info = opened.info()
        volume = self.layer_name(index, "vpc")
        with _whole(path, info.type == "differencing") as whole:
            spec = VolumeSpec(name=volume, capacity=Path(whole).stat().st_size, format="vpc")
            before = self.host.bytes_uploaded
            uploaded = self._upload(volume, spec, whole)
        if whole == path and uploaded.sha256 != image.sha256:
            self.delete(volume)
            raise vhd.ImageUsageError(
                f"{path} changed while it was uploaded (its SHA-256 is no longer"
                f" {image.sha256[:12]}): run the `up` again"
            )
        layer = Layer(
            volume=volume,
            format="vpc",
            path=uploaded.path,
            host_modified=uploaded.modified or None,
            image_sha256=image.sha256,
            unique_id=info.unique_id,  # what a differencing release names as its parent
            virtual_size=info.virtual_size,
            uploaded_bytes=self.host.bytes_uploaded - before,
            blocks_changed=image.manifest.block_count,
            uploaded_sha256=uploaded.sha256,
        )
        self._store_record(layer, image.manifest, image.manifest)
        return layer

    def _upload_layer(
        self, image: Scan, path: str, top: Layer, parent: vhd.BlockManifest, index: int
    ) -> Layer:
        """Upload a layer of the pages where the release differs from the top layer."""
        volume = self.layer_name(index, "qcow2")
        with _layer_file(path, top, parent, image.manifest, volume) as (overlay, result):
            spec = VolumeSpec(name=volume, capacity=parent.virtual_size, format="qcow2")
            before = self.host.bytes_uploaded
            uploaded = self._upload(volume, spec, str(overlay), sparse=True)
        layer = Layer(
            volume=volume,
            format="qcow2",
            backing=top.volume,
            path=uploaded.path,
            host_modified=uploaded.modified or None,
            image_sha256=image.sha256,
            unique_id=image.manifest.unique_id,
            virtual_size=parent.virtual_size,
            uploaded_bytes=self.host.bytes_uploaded - before,
            blocks_changed=result.blocks_changed,
            uploaded_sha256=uploaded.sha256,
        )
        self._store_record(layer, image.manifest.changes_since(parent), image.manifest)
        return layer

    def _upload(
        self, volume: str, spec: VolumeSpec, source: str, sparse: bool = False
    ) -> VolumeInfo:
        """Upload a layer's bytes; a leftover of that name (no record: incomplete) goes first."""
        self.delete(volume)
        return self.host.upload_volume(self.pool, spec, Path(source), sparse=sparse)

    def preview(self, image: Scan, path: str, layers: Sequence[Layer], max_depth: int) -> str:
        """Pages changed and bytes to upload, computed as the release would, uploading nothing."""
        if any(layer.image_sha256 == image.sha256 for layer in layers):
            return "image already on the host: 0 bytes to upload"
        parent = self._parent_manifest(layers, max_depth)
        if parent is None:
            size = Path(path).stat().st_size
            if not layers:
                why = "a new image chain"
            elif len(ancestry(layers, layers[-1].volume)) >= max_depth:
                why = f"the chain is {max_depth} layers deep, so it starts again"
            else:
                why = f"{layers[-1].volume} has no record, or was replaced on the host"
            return f"image: {why}: uploaded whole, {size} bytes"
        top = layers[-1]
        with _layer_file(path, top, parent, image.manifest, "preview.qcow2") as (_, result):
            return (
                f"image: {result.bytes_changed // vhd.PAGE} pages changed in"
                f" {result.blocks_changed} of {result.blocks_total} blocks"
                f" ({result.bytes_changed} bytes), {result.upload_bytes} bytes to upload"
            )

    def _parent_manifest(self, layers: Sequence[Layer], max_depth: int) -> vhd.BlockManifest | None:
        """The top layer's manifest, to diff a release against; None for a new chain, a
        chain at its depth limit (coalesced by uploading whole), a top without a record, or
        a chain with a layer replaced on the host (a new layer over it would read wrong)."""
        if not layers or len(chain := ancestry(layers, layers[-1].volume)) >= max_depth:
            return None
        by_volume = {layer.volume: layer for layer in layers}
        if not all(self._unchanged(by_volume[volume]) for volume in chain):
            return None
        return self._load_manifest(layers[-1], layers)

    def keep(self, layers: Sequence[Layer], needed: set[str]) -> list[Layer]:
        """Delete the layers not in `needed` (no instance reads through them); the rest."""
        for layer in layers:
            if layer.volume not in needed:
                self.delete(layer.volume)
        return [layer for layer in layers if layer.volume in needed]

    def delete(self, volume: str) -> None:
        """Delete a layer, its record first: a layer without a record is never trusted."""
        self.host.delete_volume(self.pool, _manifest_volume(volume))
        self.host.delete_volume(self.pool, volume)

    def forget(self, layers: Sequence[Layer]) -> None:
        """Drop the local cache's records of these layers (the role is gone)."""
        for layer in layers:
            cached = _cached(layer)
            if cached.exists() and _describes(cached.read_bytes(), layer):
                cached.unlink()

    def _store_record(
        self,
        layer: Layer,
        on_host: vhd.BlockManifest | vhd.ManifestChanges,
        manifest: vhd.BlockManifest,
    ) -> None:
        """The layer's record, on the host (the truth, written last) and in the local cache
        (with the whole manifest, so the next release needs no walk down the chain)."""
        self.host.upload_bytes(self.pool, _manifest_volume(layer.volume), _record(layer, on_host))
        write_atomically(_cached(layer), _record(layer, manifest))

    def _load_manifest(self, layer: Layer, layers: Sequence[Layer]) -> vhd.BlockManifest | None:
        """The layer's manifest: the cached record when it is this layer's, else built from
        the host's records (the layer's changes over its backing layer's manifest, down to a
        whole one) and cached; None when a record is missing or describes another layer
        (never a wrong diff)."""
        cached = _cached(layer)
        document = cached.read_bytes() if cached.exists() else b""
        if _describes(document, layer):
            with contextlib.suppress(vhd.ManifestError, KeyError):
                return vhd.BlockManifest.from_json(json.loads(document)["manifest"])
        try:
            document = self.host.download_bytes(self.pool, _manifest_volume(layer.volume))
            if not _describes(document, layer):
                return None
            recorded = json.loads(document)
            if "manifest" in recorded:
                manifest = vhd.BlockManifest.from_json(recorded["manifest"])
            else:
                below = next((x for x in layers if x.volume == layer.backing), None)
                parent = self._load_manifest(below, layers) if below else None
                if parent is None:
                    return None
                manifest = parent.updated(vhd.ManifestChanges.from_json(recorded["changes"]))
        except (ObjectNotFound, vhd.ManifestError, KeyError):
            return None  # no record, or an older engine's: the release is uploaded whole
        write_atomically(cached, _record(layer, manifest))
        return manifest
