"""``cloudservice vhd ...``: info, verify, diff, apply, merge, to-qcow2, manifest.

Every action prints a short human summary, or one JSON object with ``--json``.  Exit codes:
0 success, 1 invalid or mismatched disk (one line on stderr, no traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# Every action opens images; the diff, manifest and writer modules are imported by the actions
# that use them, so `cloudservice vhd info` starts without them.
from ._open import FORMATS, open_image, open_vhd, verify_chain
from .errors import ImageUsageError, VhdError

if TYPE_CHECKING:
    from ._diff import DiffResult
    from ._image import Image

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    vhd = subparsers.add_parser(
        "vhd", help="read, diff, merge and convert VHD disks", description=__doc__
    )
    vhd.set_defaults(func=lambda args: _usage(vhd))
    actions = vhd.add_subparsers(dest="vhd_action", metavar="ACTION")

    def action(
        name: str, func: Callable[[argparse.Namespace], Any], help: str
    ) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(func=lambda args: _run(func, args))
        return p

    p = action("info", _info, "show a VHD's type, sizes and parent (does not need the parent)")
    p.add_argument("file")
    p.add_argument("--no-strict", dest="strict", action="store_false", help="accept bad checksums")
    p = action("verify", _verify, "check a VHD's structures and, for a child, its whole chain")
    p.add_argument("file")
    p.add_argument("--parent", help="parent VHD (default: found from the child)")
    p = action(
        "diff",
        _diff,
        "write a layer over PARENT that reads as NEW: a differencing VHD, or a qcow2 overlay"
        " holding only the changed 4 KiB pages",
    )
    p.add_argument("parent", help="parent VHD, or a block manifest (.json) of it")
    p.add_argument("new", help="the new image (VHD, raw or qcow2)")
    p.add_argument("-o", "--output", required=True, help="the layer to write (.vhd or .qcow2)")
    p.add_argument(
        "--format",
        dest="layer_format",
        choices=("vhd", "qcow2"),
        help="the layer's format (default: from the output's extension, else vhd)",
    )
    p.add_argument("--new-format", choices=FORMATS, help="format of NEW (default: probe)")
    p.add_argument(
        "--parent-path",
        help="the parent's path as the layer should record it (default: the manifest's name,"
        " or the parent relative to the output)",
    )
    p.add_argument(
        "--backing-format", default="vpc", help="qcow2 layers: the parent's format for qemu"
    )
    p = action("apply", _apply, "write PARENT+CHILD as a raw image")
    p.add_argument("parent")
    p.add_argument("child")
    p.add_argument("-o", "--output", required=True)
    p = action("merge", _merge, "coalesce CHILD and its chain into one standalone VHD")
    p.add_argument("child")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--parent")
    p.add_argument(
        "--fixed", action="store_true", help="write a fixed VHD (size must be a multiple of 1 MiB)"
    )
    p = action("to-qcow2", _to_qcow2, "export a differencing VHD as a qcow2 overlay of its parent")
    p.add_argument("child")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--parent")
    p.add_argument(
        "--backing-file",
        help="backing file to record (default: the parent, relative to the output)",
    )
    p.add_argument("--backing-format", default="vpc")
    p = action("manifest", _manifest, "write a page manifest (a digest per 4 KiB page) of an image")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _run(
    func: Callable[[argparse.Namespace], tuple[dict[str, Any], str]], args: argparse.Namespace
) -> int:
    try:
        doc, text = func(args)
    except ImageUsageError as exc:
        print(f"cloudservice vhd {args.vhd_action}: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VhdError as exc:
        print(f"cloudservice vhd {args.vhd_action}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else text)
    return EXIT_OK


def _info(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    with open_vhd(args.file, strict=args.strict, resolve_parent=False) as img:
        doc = _info_doc(img)
    return doc, _lines(doc)


def _verify(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    with open_vhd(args.file, parent=args.parent) as img:
        chain = [dataclasses.asdict(i) for i in verify_chain(img)]
    text = "OK: " + " -> ".join(f"{c['path']} ({c['type']})" for c in chain)
    return {"ok": True, "chain": chain}, text


def _diff(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from ._diff import (
        diff_against_manifest,
        diff_images,
        qcow2_overlay_from_manifest,
        qcow2_overlay_of,
    )
    from ._manifest import BlockManifest

    qcow2 = (args.layer_format or ("qcow2" if args.output.endswith(".qcow2") else "vhd")) == "qcow2"
    backing = dict(backing_file=args.parent_path, backing_format=args.backing_format)
    with open_image(args.new, format=args.new_format) as new:
        if _is_manifest(args.parent):
            manifest = BlockManifest.load(args.parent)
            if qcow2:
                backing["backing_file"] = args.parent_path or manifest.name
                result = qcow2_overlay_from_manifest(manifest, new, args.output, **backing)
            else:
                result = diff_against_manifest(
                    manifest, new, args.output, parent_path=args.parent_path
                )
        else:
            with open_vhd(args.parent) as parent:
                if qcow2:
                    result = qcow2_overlay_of(parent, new, args.output, **backing)
                else:
                    result = diff_images(parent, new, args.output)
    return _diff_doc(result)


def _apply(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from ._writer import write_raw

    with open_vhd(args.child, parent=args.parent) as child:
        written = write_raw(child, args.output)
        size = child.virtual_size
    doc = {"output": args.output, "virtual_size": size, "bytes_written": written}
    return doc, f"wrote {args.output}: {size} bytes ({written} bytes of data)"


def _merge(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from ._writer import coalesce

    with open_vhd(args.child, parent=args.parent) as child:
        size = coalesce(child, args.output, fixed=args.fixed)
    doc = {"output": args.output, "type": "fixed" if args.fixed else "dynamic", "file_size": size}
    return doc, f"wrote {args.output} ({doc['type']}, {size} bytes)"


def _to_qcow2(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from ._diff import write_qcow2_overlay

    with open_vhd(args.child, parent=args.parent) as child:
        result = write_qcow2_overlay(
            child, args.output, backing_file=args.backing_file, backing_format=args.backing_format
        )
    return _diff_doc(result)


def _manifest(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from ._manifest import make_manifest

    with open_image(args.file) as img:
        manifest = make_manifest(img)
    manifest.save(args.output)
    doc = {
        "output": args.output,
        "virtual_size": manifest.virtual_size,
        "block_size": manifest.block_size,
        "data_blocks": len(manifest.pages),
    }
    return doc, f"wrote {args.output}: {len(manifest.pages)} data blocks"


def _info_doc(img: Image) -> dict[str, Any]:
    doc = dataclasses.asdict(img.info())
    doc["parent_locators"] = list(doc["parent_locators"])
    if doc["type"] != "differencing":
        for key in ("parent_unique_id", "parent_name", "parent_locators"):
            doc.pop(key)
    return doc


def _diff_doc(result: DiffResult) -> tuple[dict[str, Any], str]:
    doc = result.as_dict()
    text = (
        f"wrote {result.output}: {result.blocks_changed} of {result.blocks_total} blocks"
        f" changed, {result.bytes_changed} bytes differ, {result.upload_bytes} bytes to upload"
    )
    return doc, text


def _lines(doc: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in doc.items() if v not in (None, [], ""))


def _is_manifest(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"{"
    except OSError:
        return False
