"""Block manifests, manifest diffs and qcow2 overlays, checked with qemu-img and libvhdi."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cloudservice.vhd import (
    BlockManifest,
    ChainError,
    ManifestError,
    coalesce,
    diff_against_manifest,
    diff_images,
    make_manifest,
    open_image,
    qcow2_overlay_from_manifest,
    write_qcow2_overlay,
)
from vhd_helpers import MIB, libvhdi_sha256, qemu_img, qemu_json, sha256_file


@pytest.fixture
def parent_vhd(tmp_path: Path, base_raw: Path) -> Path:
    with open_image(base_raw, format="raw") as src:
        coalesce(src, tmp_path / "parent.vhd")
    return tmp_path / "parent.vhd"


def test_manifest_lists_data_blocks_with_sha256(parent_vhd: Path, tmp_path: Path) -> None:
    with open_image(parent_vhd) as img:
        manifest = make_manifest(img)
        uid = img.info().unique_id
    doc = json.loads(json.dumps(manifest.to_json()))
    assert doc["unique_id"] == uid and doc["block_size"] == 2 * MIB
    assert sorted(map(int, doc["blocks"])) == [0, 1, 5, 31]
    assert all(len(d) == 64 for d in doc["blocks"].values())
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
    # only changed clusters: 1 (block 0) + 2 zero clusters (block 5) + 1 (block 20, 5 pages)
    allocated = [
        e
        for e in qemu_json("map", tmp_path / "over.qcow2")  # type: ignore[union-attr]
        if e["depth"] == 0 and e["present"]
    ]
    assert sum(e["length"] for e in allocated) == 4 * 65536


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


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"format": "x"}, "not a block manifest"),
        (
            {"format": "cloudservice-vhd-manifest", "version": 2, "hash": "sha256"},
            "unsupported manifest version 2",
        ),
        (
            {
                "format": "cloudservice-vhd-manifest",
                "version": 1,
                "hash": "sha256",
                "virtual_size": 4096,
                "block_size": 3000,
                "blocks": {},
            },
            "block_size 3000",
        ),
        (
            {
                "format": "cloudservice-vhd-manifest",
                "version": 1,
                "hash": "sha256",
                "virtual_size": 4096,
                "block_size": 4096,
                "blocks": {"1": "00" * 32},
            },
            r"block index '1' is not in 0..0",
        ),
        (
            {
                "format": "cloudservice-vhd-manifest",
                "version": 1,
                "hash": "sha256",
                "virtual_size": 4096,
                "block_size": 4096,
                "blocks": {"0": "zz"},
            },
            "is not sha256 hex",
        ),
    ],
)
def test_bad_manifests_are_refused(doc: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        BlockManifest.from_json(doc)
