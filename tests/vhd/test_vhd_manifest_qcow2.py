"""Block manifests, manifest diffs and qcow2 overlays, checked with qemu-img and libvhdi."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from cloudservice.vhd import (
    BlockManifest,
    ChainError,
    ImageUsageError,
    ManifestError,
    coalesce,
    diff_against_manifest,
    diff_images,
    layer_from_manifests,
    make_manifest,
    open_image,
    qcow2_overlay_from_manifest,
    scan_child,
    scan_image,
    write_qcow2_overlay,
)
from vhd_helpers import MIB, libvhdi_sha256, qemu_img, qemu_json, sha256_file

ZERO_PAGE = hashlib.sha256(bytes(4096)).digest()[:16]


@pytest.fixture
def parent_vhd(tmp_path: Path, base_raw: Path) -> Path:
    with open_image(base_raw, format="raw") as src:
        coalesce(src, tmp_path / "parent.vhd")
    return tmp_path / "parent.vhd"


def test_manifest_lists_page_digests_of_data_blocks(parent_vhd: Path, tmp_path: Path) -> None:
    with open_image(parent_vhd) as img:
        manifest = make_manifest(img)
        uid = img.info().unique_id
    doc = json.loads(json.dumps(manifest.to_json()))
    assert doc["unique_id"] == uid and doc["block_size"] == 2 * MIB
    assert sorted(map(int, doc["blocks"])) == [0, 1, 5, 31]
    # 512 pages of 4 KiB per 2 MiB block, 16 bytes of SHA-256 each
    assert all(len(base64.b64decode(d)) == 512 * 16 for d in doc["blocks"].values())
    block1 = base64.b64decode(doc["blocks"]["1"])
    data_pages = [p for p in range(512) if block1[p * 16 : p * 16 + 16] != ZERO_PAGE]
    assert data_pages == [1, 2]  # the 8 KiB written at 2 MiB + 4 KiB
    manifest.save(tmp_path / "m.json")
    assert BlockManifest.load(tmp_path / "m.json") == manifest


def test_manifest_diff_equals_local_diff_without_the_parent(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    with open_image(parent_vhd) as img:
        make_manifest(img).save(tmp_path / "m.json")
    away = tmp_path / "away"
    away.mkdir()
    os.rename(parent_vhd, away / "parent.vhd")  # the parent is no longer here
    manifest = BlockManifest.load(tmp_path / "m.json")
    with open_image(new_raw) as new:
        result = diff_against_manifest(manifest, new, away / "child.vhd")
    assert result.blocks_changed == 3 and result.parent_unique_id == manifest.unique_id
    assert 3 * (2 * MIB + 512) < result.file_size < 3 * (2 * MIB + 512) + 8192
    with open_image(away / "child.vhd") as child:  # found by name next to the child
        assert child.parent is not None and child.parent.path.endswith("parent.vhd")
    assert libvhdi_sha256(away / "child.vhd", away / "parent.vhd") == sha256_file(new_raw)


def test_overlay_from_child_is_compared_identical_by_qemu(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    with open_image(parent_vhd) as p, open_image(new_raw) as n:
        diff_images(p, n, tmp_path / "child.vhd")
    with open_image(tmp_path / "child.vhd") as child:
        result = write_qcow2_overlay(child, tmp_path / "over.qcow2")
    assert result.blocks_changed == 3
    _check_overlay(tmp_path / "over.qcow2", "parent.vhd", new_raw)
    # only changed pages: 1 (block 0) + 32 now zero (block 5) + 5 (block 20), 6 of them data
    allocated = [
        e
        for e in qemu_json("map", tmp_path / "over.qcow2")  # type: ignore[union-attr]
        if e["depth"] == 0 and e["present"]
    ]
    assert sum(e["length"] for e in allocated) == 38 * 4096
    assert sum(e["length"] for e in allocated if e["data"]) == 6 * 4096


def test_overlay_from_manifest(tmp_path: Path, parent_vhd: Path, new_raw: Path) -> None:
    with open_image(parent_vhd) as img:
        manifest = make_manifest(img)
    with open_image(new_raw) as new:
        qcow2_overlay_from_manifest(
            manifest, new, tmp_path / "over.qcow2", backing_file="parent.vhd", backing_format="vpc"
        )
    _check_overlay(tmp_path / "over.qcow2", "parent.vhd", new_raw)


def test_overlay_refuses_differencing_parent(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    with open_image(parent_vhd) as p, open_image(new_raw) as n:
        diff_images(p, n, tmp_path / "c1.vhd")
    with open_image(tmp_path / "c1.vhd") as p, open_image(new_raw) as n:
        diff_images(p, n, tmp_path / "c2.vhd")
    with (
        open_image(tmp_path / "c2.vhd") as c2,
        pytest.raises(ChainError, match="itself a differencing VHD, which qemu"),
    ):
        write_qcow2_overlay(c2, tmp_path / "o.qcow2")


def _check_overlay(overlay: Path, backing: str, want_raw: Path) -> None:
    qemu_img("check", overlay)  # refcounts and L1/L2 consistent
    chain = qemu_json("info", "--backing-chain", overlay)
    assert isinstance(chain, list)
    assert [(c["format"], os.path.basename(c["filename"])) for c in chain] == [
        ("qcow2", overlay.name),
        ("vpc", backing),
    ]
    assert chain[0]["backing-filename"] == backing
    assert chain[0]["backing-filename-format"] == "vpc"
    out = qemu_img("compare", "-F", "raw", overlay, want_raw)
    assert "Images are identical" in out.stdout


_V2 = {"format": "cloudservice-vhd-manifest", "version": 2, "hash": "sha256-128", "page_size": 4096}


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"format": "x"}, "not a block manifest"),
        (
            {"format": "cloudservice-vhd-manifest", "version": 1, "hash": "sha256"},
            r"unsupported manifest version 1 .*make it again with `cloudservice vhd manifest`",
        ),
        ({**_V2, "virtual_size": 4096, "block_size": 3000, "blocks": {}}, "block_size 3000"),
        (
            {**_V2, "virtual_size": 8192, "block_size": 4096, "blocks": {"2": "A" * 24}},
            r"block index '2' is not in 0..1",
        ),
        (
            {**_V2, "virtual_size": 8192, "block_size": 4096, "blocks": {"0": "zz"}},
            "block 0: its page digests must be 16 bytes in base64",
        ),
        (
            {**_V2, "virtual_size": 8192, "block_size": 8192, "blocks": {"0": "A" * 24}},
            "block 0: its page digests must be 32 bytes in base64",
        ),
    ],
)
def test_bad_manifests_are_refused(doc: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        BlockManifest.from_json(doc)


def test_page_diff_between_manifests_reads_only_changed_pages(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    """The provider's path: both manifests known, the layer built from the changed pages."""
    with open_image(parent_vhd) as p, open_image(new_raw) as n:
        parent, (target, _sha) = make_manifest(p), scan_image(n)
        result = layer_from_manifests(
            parent, target, n, tmp_path / "over.qcow2", backing_file="parent.vhd"
        )
    assert (result.blocks_changed, result.bytes_changed) == (3, 38 * 4096)
    assert result.bytes_read == 6 * 4096 + 32 * 4096  # the changed pages, nothing else
    assert list(parent.changed_blocks(target)) == [
        (0, [2]),
        (5, list(range(16, 48))),
        (20, [3, 4, 5, 6, 7]),
    ]
    _check_overlay(tmp_path / "over.qcow2", "parent.vhd", new_raw)


def test_scan_digests_the_file_it_reads(tmp_path: Path, parent_vhd: Path) -> None:
    with open_image(parent_vhd) as img:
        manifest, sha = scan_image(img)
        assert manifest == make_manifest(img)
    assert sha == sha256_file(parent_vhd)


def test_a_file_changed_after_its_scan_is_not_shipped(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    with open_image(parent_vhd) as p, open_image(new_raw) as n:
        parent, (target, _sha) = make_manifest(p), scan_image(n)
    with open(new_raw, "r+b") as fh:  # block 20's new data changes again
        fh.seek(40 * MIB + 12288)
        fh.write(b"\xff" * 4096)
    with (
        open_image(new_raw) as n,
        pytest.raises(ImageUsageError, match=r"changed after it was scanned \(block 20, page 3"),
    ):
        layer_from_manifests(parent, target, n, tmp_path / "over.qcow2", backing_file="p.vhd")


def test_a_differencing_release_is_read_only_where_it_stores_pages(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    """An update shipped as a differencing disk: its manifest from the parent's and its own
    pages; the layer from reading only those."""
    with open_image(parent_vhd) as p, open_image(new_raw) as n:
        parent = make_manifest(p)
        diff_images(p, n, tmp_path / "child.vhd")
    with open_image(tmp_path / "child.vhd") as child:
        assert scan_child(child, parent) == make_manifest(child)  # what a whole scan gives
        result = qcow2_overlay_from_manifest(
            parent, child, tmp_path / "over.qcow2", backing_file="parent.vhd"
        )
    # The child stores 38 changed pages (a page is 4 KiB: 8 sectors of its bitmap).
    assert result.bytes_changed == 38 * 4096
    assert result.bytes_read <= 2 * 38 * 4096  # its pages once to digest, changed ones to ship
    _check_overlay(tmp_path / "over.qcow2", "parent.vhd", new_raw)
