"""`cloudservice:index:VmRole`: a VM Role, whose package is a whole `.vhd` disk.

The Pulumi side only: typed inputs and outputs, check, diff and the lifecycle calls. The work
(image chain, instances, rollouts behind health gates) is the fabric's (`fabric.VmRole`); how a
change of each input is applied is the model's update rules (`model.ROLE_RULES`).
"""

from __future__ import annotations

from typing import Any

from .. import fabric, vhd
from ..files import path_problem
from ..model import (
    change_kind,
)
from ._base import (
    Failures,
    PartialFailure,
    RoleResource,
    combined,
    observed_changes,
    part,
)


class VmRoleArgs(fabric.VmRoleSpec):
    """The role's inputs: what the fabric is asked to run."""


class VmRoleState(VmRoleArgs, fabric.VmRoleDeployment):
    """The inputs, and what runs on the host."""

    def deployment(self) -> fabric.VmRoleDeployment:
        return part(fabric.VmRoleDeployment, self)


class VmRole(RoleResource[VmRoleArgs, VmRoleState]):
    token = "cloudservice:index:VmRole"
    args_model = VmRoleArgs
    state_model = VmRoleState
    description = "A VM Role: a .vhd run as it is, on instances spread over update domains."
    delete_before_replace = True
    unfinished_marker = "imageSha256"

    # -- check / diff --------------------------------------------------------------------------

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        image = inputs.get("image")
        if not isinstance(image, str) or "image" in unknown:
            return inputs, failures
        if problem := path_problem(image, absolute=True):
            return inputs, [*failures, ("image", problem)]
        try:
            # Read once per version of the file: the digest and the page manifest together.
            scanned = fabric.scan_release(image)
        except vhd.VhdError as exc:
            return inputs, [*failures, ("image", str(exc))]
        return {**inputs, "imageSha256": scanned.sha256}, failures

    def preview_id(self, args: VmRoleArgs) -> str:
        return args.name

    def preview_update(self, old: VmRoleState, new: VmRoleArgs) -> dict[str, Any]:
        """The change in service terms, for `pulumi preview --diff`: the `summary` output."""
        with self.connect() as host:
            summary = fabric.VmRole(host, new).preview(old.deployment())
        return {"summary": summary}

    # -- create / read / update / delete -------------------------------------------------------

    def create(self, args: VmRoleArgs) -> tuple[str, VmRoleState]:
        with self.connect() as host:
            try:
                deployment = fabric.VmRole(host, args).deploy()
            except fabric.RolloutStopped as stopped:
                raise PartialFailure(
                    combined(VmRoleState, args, stopped.state), str(stopped)
                ) from stopped
        return args.name, combined(VmRoleState, args, deployment)

    def read(self, resource_id: str, state: VmRoleState) -> VmRoleState | None:
        """What the host runs, read back from its records: after an interrupted `up`, the
        instances and layers it left, so the next diff is against reality."""
        with self.connect() as host:
            live = fabric.VmRole(host, state).observe(state.deployment())
        if not live.layers and not live.instances:
            return None
        changes = observed_changes(state, live)
        if not any(layer.image_sha256 == state.sha256() for layer in live.layers):
            changes["image_sha256"] = "(missing on the host)"
        return state.model_copy(update=changes)

    def update(self, resource_id: str, old: VmRoleState, new: VmRoleArgs) -> VmRoleState:
        # The planner's verdict on what changed, compared as the diff compares.
        changes = super().diff(old.wire(), new.wire(), unknown=set(), ignore=set())
        kind = change_kind(change.wire_name for change in changes.fields)
        with self.connect() as host:
            try:
                deployment = fabric.VmRole(host, new).change(old.deployment(), kind)
            except fabric.RolloutStopped as stopped:
                raise PartialFailure(
                    combined(VmRoleState, new, stopped.state), str(stopped)
                ) from stopped
        return combined(VmRoleState, new, deployment)

    def delete(self, resource_id: str, state: VmRoleState) -> None:
        with self.connect() as host:
            fabric.VmRole(host, state).remove(state.deployment())
