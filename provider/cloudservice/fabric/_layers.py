"""A VM role's image chain on one host: a whole base image, then one qcow2 layer per release.

    <role>-l0.vhd            the first image, uploaded once, given to qemu as `vpc`
    <role>-l1.qcow2 ...      one layer per later release: only the clusters that changed,
                             backed by the layer below (qemu misreads differencing VHDs)

Each layer's block manifest (`<layer>.manifest.json`, also cached locally) lets the next
release be diffed without fetching the image back. Past a depth limit a release is uploaded
whole as a new base (the chain is coalesced).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from .. import vhd
from ..model import Model
from ..virt import Host, VolumeInfo, VolumeSpec

_HASH_CHUNK = 1 << 20


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ancestry(layers: Sequence[Layer], volume: str) -> list[str]:
    """`volume` and the layers it reads through, down to its base."""
    by_volume = {layer.volume: layer for layer in layers}
    chain: list[str] = []
    current: str | None = volume
    while current is not None and current in by_volume:
        chain.append(current)
        current = by_volume[current].backing
    return chain


def _manifest_volume(layer_volume: str) -> str:
    return f"{layer_volume}.manifest.json"


def _cache_dir() -> Path:
    root = os.environ.get("CLOUDSERVICE_CACHE") or Path.home() / ".cache" / "cloudservice"
    path = Path(root) / "manifests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _next_index(layers: Sequence[Layer]) -> int:
    indexes = [int(layer.volume.rsplit("-l", 1)[1].split(".")[0]) for layer in layers]
    return max(indexes, default=-1) + 1


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

    def layer_name(self, index: int, fmt: str) -> str:
        return f"{self.role}-l{index}.{'vhd' if fmt == 'vpc' else 'qcow2'}"

    def release(
        self, image: str, sha: str, layers: Sequence[Layer], max_depth: int
    ) -> tuple[Layer, list[Layer]]:
        """The release's layer (found on the host, or uploaded), and the chain with it."""
        known = next((layer for layer in layers if layer.image_sha256 == sha), None)
        if known is not None:
            # Already on the host: a stopped rollout carrying on, or a rollback.
            return known, list(layers)
        if not layers or len(ancestry(layers, layers[-1].volume)) >= max_depth:
            layer = self.upload_base(image, sha, index=_next_index(layers))
        else:
            layer = self._upload_layer(image, sha, layers)
        return layer, [*layers, layer]

    def upload_base(self, image: str, sha: str, index: int = 0) -> Layer:
        """Upload a whole image as the bottom of a new chain (first deploy, or a coalesce)."""
        with vhd.open_image(image, format="vhd") as opened:
            info = opened.info()
            if info.type == "differencing":
                raise vhd.ImageUsageError(
                    f"{image} is a differencing VHD: the first release of a role needs a whole "
                    "image (fixed or dynamic)"
                )
            manifest = vhd.make_manifest(opened)
        volume = self.layer_name(index, "vpc")
        size = Path(image).stat().st_size
        uploaded = self.host.upload_volume(
            self.pool, VolumeSpec(name=volume, capacity=size, format="vpc"), Path(image)
        )
        self._store_manifest(volume, manifest, sha)
        return Layer(
            volume=volume,
            format="vpc",
            path=uploaded.path,
            image_sha256=sha,
            unique_id=info.unique_id,
            virtual_size=info.virtual_size,
            uploaded_bytes=size,
            blocks_changed=manifest.block_count,
        )

    def _upload_layer(self, image: str, sha: str, layers: Sequence[Layer]) -> Layer:
        """Diff the release against the newest layer's manifest and upload only what changed."""
        top = layers[-1]
        manifest = self._load_manifest(top)
        volume = self.layer_name(_next_index(layers), "qcow2")
        with _open_release(image, top) as opened, tempfile.TemporaryDirectory() as work:
            overlay = Path(work) / volume
            result = vhd.qcow2_overlay_from_manifest(
                manifest, opened, overlay, backing_file=top.path, backing_format=top.format
            )
            new_manifest = vhd.make_manifest(opened)
            unique_id = opened.info().unique_id
            uploaded = self.host.upload_volume(
                self.pool,
                VolumeSpec(name=volume, capacity=manifest.virtual_size, format="qcow2"),
                overlay,
            )
        self._store_manifest(volume, new_manifest, sha)
        return Layer(
            volume=volume,
            format="qcow2",
            backing=top.volume,
            path=uploaded.path,
            image_sha256=sha,
            unique_id=unique_id,
            virtual_size=manifest.virtual_size,
            uploaded_bytes=result.file_size,
            blocks_changed=result.blocks_changed,
        )

    def preview(self, image: str, sha: str, layers: Sequence[Layer]) -> str:
        """Blocks changed and bytes to upload, computed as the release would, uploading nothing."""
        if any(layer.image_sha256 == sha for layer in layers):
            return "image already on the host: 0 bytes to upload"
        top = layers[-1]
        manifest = self._load_manifest(top)
        with _open_release(image, top) as opened, tempfile.TemporaryDirectory() as work:
            result = vhd.qcow2_overlay_from_manifest(
                manifest, opened, Path(work) / "preview.qcow2", backing_file=top.path
            )
        return (
            f"image: {result.blocks_changed} of {result.blocks_total} blocks changed, "
            f"{result.file_size} bytes to upload"
        )

    def keep(self, layers: Sequence[Layer], needed: set[str]) -> list[Layer]:
        """Delete the layers not in `needed` (no instance reads through them); the rest."""
        for layer in layers:
            if layer.volume not in needed:
                self.delete(layer.volume)
        return [layer for layer in layers if layer.volume in needed]

    def delete(self, volume: str) -> None:
        self.host.delete_volume(self.pool, volume)
        self.host.delete_volume(self.pool, _manifest_volume(volume))

    def present(self, layers: Sequence[Layer]) -> list[Layer]:
        return [layer for layer in layers if self.host.volume(self.pool, layer.volume)]

    def _store_manifest(self, volume: str, manifest: vhd.BlockManifest, sha: str) -> None:
        """Keep the manifest on the host (the source of truth) and in the local cache."""
        text = json.dumps(manifest.to_json()).encode()
        cached = _cache_dir() / f"{sha}.json"
        cached.write_bytes(text)
        name = _manifest_volume(volume)
        self.host.delete_volume(self.pool, name)
        self.host.upload_volume(self.pool, VolumeSpec(name=name, capacity=len(text)), cached)

    def _load_manifest(self, layer: Layer) -> vhd.BlockManifest:
        cached = _cache_dir() / f"{layer.image_sha256}.json"
        if not cached.exists():
            with open(cached, "wb") as sink:
                self.host.download_volume(self.pool, _manifest_volume(layer.volume), sink)
        return vhd.BlockManifest.load(str(cached))
