"""What `WebRole` and `WorkerRole` share: a package run by the guest agent (`fabric.PackageRole`).

The Pulumi side only: typed inputs and outputs, check (the package read and hashed, the guest
OS version resolved against the catalog), diff, and the lifecycle calls into the fabric.
"""

from __future__ import annotations

import json
from typing import Any

from .. import fabric
from ..files import path_problem
from ..model import ModelError, read_package
from ._base import (
    Failures,
    PartialFailure,
    RoleResource,
    combined,
    observed_changes,
    part,
)


class PackageRoleArgs(fabric.PackageRoleSpec):
    """The role's inputs: what the fabric is asked to run."""


class PackageRoleState(PackageRoleArgs, fabric.PackageRoleDeployment):
    """The inputs, and what runs on the host."""

    def deployment(self) -> fabric.PackageRoleDeployment:
        return part(fabric.PackageRoleDeployment, self)


def _check_package(path: Any) -> tuple[dict[str, Any], str | None]:
    if not isinstance(path, str):
        return {}, None
    if problem := path_problem(path, absolute=True):
        return {}, problem
    try:
        package = read_package(path)
    except ModelError as exc:
        return {}, str(exc)
    return {"packageSha256": package.digest}, None


def _resolve_os(family: str, version: str) -> tuple[dict[str, Any], str | None]:
    from ..guestos import Catalog, GuestOsError  # the catalog is read only here

    try:
        chosen = Catalog.load().resolve(family, version)
    except GuestOsError as exc:
        return {}, str(exc)
    return {
        "osResolved": f"{chosen.family}/{chosen.version}",
        "osImage": chosen.image_path,
        "osImageSha256": chosen.image_sha256,
    }, None


def _check_certificates(given: Any) -> Failures:
    """Each certificate's PEM holds the certificate the configuration names by thumbprint.
    Messages name the certificate and thumbprints, never the PEM."""
    failures: Failures = []
    for index, raw in enumerate(given or []):
        try:
            certificate = fabric.RoleCertificate.model_validate(raw)
        except ValueError:
            continue  # the model's own check reports it
        where = f"certificates[{index}]"
        expected = certificate.thumbprint.lower()
        if not certificate.pem:
            failures.append(
                (
                    where,
                    f"certificate {certificate.name}: no certificate with thumbprint {expected} "
                    "in the stack's secrets; add it with `pulumi config set --secret --path "
                    f"'certificates.{expected}' \"$(cat cert-and-key.pem)\"`",
                )
            )
            continue
        actual = certificate.actual_thumbprint()
        if actual is None:
            failures.append((where, f"certificate {certificate.name}: no PEM certificate in it"))
        elif actual != expected:
            failures.append(
                (
                    where,
                    f"certificate {certificate.name}: its SHA-1 thumbprint is {actual}, the "
                    f"configuration says {expected}",
                )
            )
    return failures


class PackageRoleResource(RoleResource[PackageRoleArgs, PackageRoleState]):
    args_model = PackageRoleArgs
    state_model = PackageRoleState
    delete_before_replace = True
    unfinished_marker = "packageSha256"

    # -- check / diff --------------------------------------------------------------------------

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        if "topology" in inputs and "topology" not in unknown:
            try:
                json.loads(str(inputs["topology"]))
            except ValueError as exc:
                failures.append(("topology", f"not JSON: {exc}"))
        if "certificates" not in unknown:
            failures += _check_certificates(inputs.get("certificates"))
        filled: dict[str, Any] = {}
        if "package" not in unknown:
            found, problem = _check_package(inputs.get("package"))
            filled |= found
            if problem:
                failures.append(("package", problem))
        if not {"osFamily", "osVersion"} & unknown:
            family = str(inputs.get("osFamily") or "debian-12")
            found, problem = _resolve_os(family, str(inputs.get("osVersion") or "*"))
            filled |= found
            if problem:
                failures.append(("osVersion", problem))
        return {**inputs, **filled}, failures

    def preview_id(self, args: PackageRoleArgs) -> str:
        return args.name

    def preview_update(self, old: PackageRoleState, new: PackageRoleArgs) -> dict[str, Any]:
        """The change in service terms, for `pulumi preview --diff`: the `summary` output."""
        with self.connect() as host:
            summary = fabric.PackageRole(host, new).preview(old.deployment(), old)
        return {"summary": summary}

    # -- create / read / update / delete -------------------------------------------------------

    def create(self, args: PackageRoleArgs) -> tuple[str, PackageRoleState]:
        with self.connect() as host:
            try:
                deployment = fabric.PackageRole(host, args).deploy()
            except fabric.RolloutStopped as stopped:
                raise PartialFailure(
                    combined(PackageRoleState, args, stopped.state), str(stopped)
                ) from stopped
        return args.name, combined(PackageRoleState, args, deployment)

    def read(self, resource_id: str, state: PackageRoleState) -> PackageRoleState | None:
        with self.connect() as host:
            live = fabric.PackageRole(host, state).observe(state.deployment())
        if not live.layers and not live.instances:
            return None
        changes = observed_changes(state, live)
        changes["packages"] = live.packages
        if not any(layer.image_sha256 == state.os_image_sha256 for layer in live.layers):
            changes["os_image_sha256"] = "(missing on the host)"
        if state.package_volume_name() not in live.packages:
            changes["package_sha256"] = "(missing on the host)"
        return state.model_copy(update=changes)

    def update(
        self, resource_id: str, old: PackageRoleState, new: PackageRoleArgs
    ) -> PackageRoleState:
        with self.connect() as host:
            try:
                deployment = fabric.PackageRole(host, new).change(old.deployment())
            except fabric.RolloutStopped as stopped:
                raise PartialFailure(
                    combined(PackageRoleState, new, stopped.state), str(stopped)
                ) from stopped
        return combined(PackageRoleState, new, deployment)

    def delete(self, resource_id: str, state: PackageRoleState) -> None:
        with self.connect() as host:
            fabric.PackageRole(host, state).remove(state.deployment())
