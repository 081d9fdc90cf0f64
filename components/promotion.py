"""Promotion: a stack (production) runs exactly the releases another (staging) ran healthy.

A stack exports `releases`: per role, the digests it runs (package, guest OS image, VM role
image), only for roles whose last rollout completed behind its health gates. A promoted stack
reads them through a `StackReference` and compares what it would deploy: a digest the source
stack has not run healthy is refused before anything is touched (`promotion_gate` is an output
every resource of the program waits on), naming the role, the digest and its file. Guest OS
versions are not chosen again: a promoted role runs the version its source ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
from cloudservice.fabric import scan_release
from cloudservice.guestos import Catalog, GuestOsError
from cloudservice.model import ModelError, ServiceSpec, read_package
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class RoleRelease(BaseModel):
    """What one role runs, by digest (the names of the stack's `releases` output)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    package_sha256: str | None = None
    os_version: str | None = None  # family/version, as the catalog names it
    os_image_sha256: str | None = None
    image_sha256: str | None = None


def role_release(outputs: Mapping[str, Any]) -> dict[str, str] | None:
    """A role's entry of `releases` from its resource's outputs; None unless its last rollout
    completed (a release stopped at a health gate is not one that ran healthy)."""
    if not outputs.get("rollout_complete"):
        return None
    release = RoleRelease(
        package_sha256=outputs.get("package_sha256"),
        os_version=outputs.get("os_resolved"),
        os_image_sha256=outputs.get("os_image_sha256"),
        image_sha256=outputs.get("image_sha256"),
    )
    return release.model_dump(by_alias=True, exclude_none=True)


def promotion_gate(
    source: str, spec: ServiceSpec, artifacts: Mapping[str, Path]
) -> pulumi.Output[dict[str, RoleRelease]]:
    """`source`'s releases, once every role's artifact (`artifacts`: role -> its image or
    package file) is one of them; otherwise a `pulumi.RunError` naming the first refusal."""
    reference = pulumi.StackReference(f"promoted-from-{source}", stack_name=source)
    family = spec.configuration.os_family or "debian-12"

    def checked(ran: Any) -> dict[str, RoleRelease]:
        releases = _releases(source, ran)
        for role in spec.definition.roles:
            _check_role(source, role.name, role.kind, releases.get(role.name), artifacts, family)
        return releases

    return reference.get_output("releases").apply(checked)


def gated(promoted: pulumi.Output[dict[str, RoleRelease]] | None, value: str) -> pulumi.Input[str]:
    """`value` once the promotion is checked: a resource given it is declared only then, so a
    refused promotion declares (and touches) nothing."""
    return value if promoted is None else promoted.apply(lambda _: value)


def _releases(source: str, ran: Any) -> dict[str, RoleRelease]:
    if not isinstance(ran, dict):
        raise pulumi.RunError(
            f"promotion from {source}: that stack exports no releases: `pulumi up` it first "
            f"(its program must export `releases`, as this repository's does)"
        )
    try:
        return {str(role): RoleRelease.model_validate(entry) for role, entry in ran.items()}
    except ValidationError as exc:
        message = f"promotion from {source}: its releases are not readable: {exc}"
        raise pulumi.RunError(message) from None


def _check_role(
    source: str,
    role: str,
    kind: str,
    ran: RoleRelease | None,
    artifacts: Mapping[str, Path],
    family: str,
) -> None:
    where = f"promotion from {source}: role {role}"
    if ran is None:
        raise pulumi.RunError(
            f"{where} has no release that ran healthy there (its last rollout there did not "
            "complete, or it has no such role): fix and `pulumi up` that stack first"
        )
    path = artifacts[role]
    if kind == "vm":
        _same(where, "image", path, _image_digest(path), ran.image_sha256, source)
        return
    _same(where, "package", path, _package_digest(path), ran.package_sha256, source)
    if ran.os_version is None:
        raise pulumi.RunError(f"{where}: its release there names no guest OS version")
    try:
        image = Catalog.load().resolve(*ran.os_version.split("/", 1))
    except GuestOsError as exc:
        raise pulumi.RunError(f"{where}: guest OS {ran.os_version}: {exc}") from None
    _same(
        where,
        f"guest OS {ran.os_version}",
        Path(image.image_path),
        image.image_sha256,
        ran.os_image_sha256,
        source,
    )


def _same(where: str, what: str, path: Path, digest: str, ran: str | None, source: str) -> None:
    if digest != ran:
        raise pulumi.RunError(
            f"{where}: {what} sha256:{digest} ({path.name}) has not run healthy on {source} "
            f"(it runs sha256:{ran or 'none'} there): `pulumi up` {source} with it first, "
            "or promote what it runs"
        )


def _image_digest(path: Path) -> str:
    try:
        return scan_release(str(path)).sha256
    except (OSError, ValueError) as exc:
        raise pulumi.RunError(f"cannot read image {path}: {exc}") from None


def _package_digest(path: Path) -> str:
    try:
        return read_package(path).digest
    except ModelError as exc:
        raise pulumi.RunError(f"cannot read package {path}: {exc}") from None
