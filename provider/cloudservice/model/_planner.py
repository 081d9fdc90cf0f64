"""The update planner: how each role gets from the old service to the new one.

Rules follow Azure's published table "Allowed service changes during an update" and the list
after it, in "How to update a cloud service" (learn.microsoft.com/azure/cloud-services/
cloud-services-update-azure-service; MicrosoftDocs/azure-docs
articles/cloud-services/cloud-services-update-azure-service.md). Quoted rows are cited as
[table: ...]; the list of changes "not supported during an update" as [not supported: ...].

Anything in the definition (our .csdef) ships with a new package in Azure, and Azure applies
it with an in-place upgrade walking the update domains: here a rolling upgrade. Changes to
the configuration alone (.cscfg values and thumbprints) are applied in place without new code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import Field, SecretStr

from ._base import Model
from ._configuration import RoleConfiguration, ServiceConfiguration, UpgradeMode, reveal
from ._definition import RoleDefinition, RoleKind
from ._rules import ROLE_RULES, ChangeKind
from ._spec import RoleArtifacts, ServiceSpec

__all__ = ["RoleAction", "RolePlan", "ServicePlan", "plan_update"]


class RoleAction(StrEnum):
    """One thing the fabric does to a role. A role may need several (upgrade + scale)."""

    NONE = "none"
    CONFIG_IN_PLACE = "config_in_place"
    ROLLING_UPGRADE = "rolling_upgrade"
    SCALE_OUT = "scale_out"
    SCALE_IN = "scale_in"
    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


_LABELS = {
    RoleAction.NONE: "no change",
    RoleAction.CONFIG_IN_PLACE: "configuration change in place",
    RoleAction.ROLLING_UPGRADE: "rolling upgrade",
    RoleAction.SCALE_OUT: "scale out",
    RoleAction.SCALE_IN: "scale in",
    RoleAction.REPLACE: "replace",
    RoleAction.ADD: "add",
    RoleAction.REMOVE: "remove",
}


class RolePlan(Model):
    """What happens to one role, and why."""

    role: str = Field(description="Role name.")
    actions: list[RoleAction] = Field(
        description="Actions in the order they apply; [none] when the role does not change. "
        "replace, add and remove stand alone; an upgrade or in-place change may come with "
        "a scale."
    )
    instance_delta: int = Field(default=0, description="Instances added (>0) or removed (<0).")
    reasons: list[str] = Field(default_factory=list, description="Each change that was found.")
    warnings: list[str] = Field(default_factory=list, description="Risks of applying the plan.")
    summary: str = Field(description="One line for previews.")

    @property
    def action(self) -> RoleAction:
        """The most disruptive action (the first one)."""
        return self.actions[0]


class ServicePlan(Model):
    """The plan for a whole service: one RolePlan per role in either version."""

    service: str = Field(description="Service name (the new one).")
    upgrade_mode: UpgradeMode = Field(description="How upgrades walk update domains.")
    roles: list[RolePlan] = Field(description="Per-role plans: old roles first, then added ones.")
    notes: list[str] = Field(
        default_factory=list, description="Service-wide changes that need no role action."
    )
    summary: str = Field(description="One line for previews in pull requests.")

    @property
    def has_changes(self) -> bool:
        return bool(self.notes) or any(p.actions != [RoleAction.NONE] for p in self.roles)

    def role(self, name: str) -> RolePlan | None:
        return next((plan for plan in self.roles if plan.role == name), None)


class _Findings:
    """Reasons sorted by the action they call for."""

    def __init__(self) -> None:
        self.replace: list[str] = []
        self.upgrade: list[str] = []
        self.config: list[str] = []
        self.warnings: list[str] = []

    def add(self, prop: str, reason: str) -> None:
        """A change of a role property, filed where its rule in `ROLE_RULES` says."""
        kind = ROLE_RULES[prop].kind
        if kind is ChangeKind.REPLACE:
            self.replace.append(reason)
        elif kind is ChangeKind.ROLLING_UPGRADE:
            self.upgrade.append(reason)
        elif kind is ChangeKind.IN_PLACE:
            self.config.append(reason)
        # SCALE: counted from the instance numbers, not listed as a reason


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


def _by_name(items: Sequence[T]) -> dict[str, T]:
    return {item.name: item for item in items}


def _changed(old: Sequence[T], new: Sequence[T]) -> tuple[list[str], list[str], list[str]]:
    """Names added, removed and changed between two lists of named items."""
    before, after = _by_name(old), _by_name(new)
    return (
        sorted(after.keys() - before.keys()),
        sorted(before.keys() - after.keys()),
        sorted(n for n in before.keys() & after.keys() if before[n] != after[n]),
    )


def _describe(what: str, old: Sequence[Any], new: Sequence[Any]) -> str | None:
    added, removed, changed = _changed(old, new)
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
    return f"{what}: {'; '.join(parts)}" if parts else None


def plan_update(
    old: ServiceSpec,
    new: ServiceSpec,
    *,
    old_artifacts: Mapping[str, RoleArtifacts] | None = None,
    new_artifacts: Mapping[str, RoleArtifacts] | None = None,
) -> ServicePlan:
    """Plan the update from ``old`` to ``new``.

    ``old_artifacts``/``new_artifacts`` override the specs' per-role artifacts, for callers
    that know package digests or image ids the documents do not carry.
    """
    artifacts = (
        {**old.artifacts, **(old_artifacts or {})},
        {**new.artifacts, **(new_artifacts or {})},
    )
    plans = []
    for role in old.definition.roles:
        new_role = new.definition.role(role.name)
        if new_role is None:
            plans.append(_removed(role, old, new))
            continue
        findings = _Findings()
        _compare_service(old, new, findings)
        _compare_role(role, new_role, findings)
        _compare_os(old.configuration, new.configuration, new_role, findings)
        _compare_probes(old, new, new_role, findings)
        _compare_artifacts(
            artifacts[0].get(role.name, RoleArtifacts()),
            artifacts[1].get(role.name, RoleArtifacts()),
            findings,
        )
        old_config = old.configuration.role(role.name) or RoleConfiguration(name=role.name)
        new_config = new.configuration.role(role.name) or RoleConfiguration(name=role.name)
        _compare_values(old_config, new_config, findings)
        plans.append(_role_plan(role.name, old_config.instances, new_config, findings, new))
    for role in new.definition.roles:
        if old.definition.role(role.name) is None:
            plans.append(_added(role, new, old))
    notes = _service_notes(old.configuration, new.configuration)
    return ServicePlan(
        service=new.definition.name,
        upgrade_mode=new.configuration.upgrade_mode,
        roles=plans,
        notes=notes,
        summary=_service_summary(new.definition.name, plans, notes),
    )


def _compare_service(old: ServiceSpec, new: ServiceSpec, found: _Findings) -> None:
    if old.definition.name != new.definition.name:
        # The service name is the service's identity: a new name is a new service.
        found.replace.append(f"service renamed {old.definition.name} -> {new.definition.name}")
    if old.definition.update_domain_count != new.definition.update_domain_count:
        found.add(
            "updateDomainCount",
            f"update domain count {old.definition.update_domain_count} -> "
            f"{new.definition.update_domain_count} cannot change during an update",
        )


def _compare_role(old: RoleDefinition, new: RoleDefinition, found: _Findings) -> None:
    if old.kind != new.kind:
        # No published rule turns a role into another kind; treat it like a rename
        # ([not supported: "Changing the name of a role. Remove and then add ..."]).
        found.replace.append(f"kind {old.kind.value} -> {new.kind.value}")
    if old.vm_size != new.vm_size:
        # The table's warning follows it: local data goes with the old size.
        found.add("vmSize", f"vmSize {old.vm_size} -> {new.vm_size}")
        found.warnings.append("changing the VM size destroys the instances' local data")
    _compare_local_storage(old, new, found)
    endpoints = [
        _describe("input endpoints", old.input_endpoints, new.input_endpoints),
        _describe("internal endpoints", old.internal_endpoints, new.internal_endpoints),
    ]
    if any(endpoints):
        for reason in endpoints:
            if reason:
                found.add("endpoints", reason)
        found.warnings.append("availability may be lost while endpoints are updated")
    # [table: "Names and values of configuration settings", "Add new certificates",
    # "Deploy new code" - in-place: Yes]; they come with a new package, hence an upgrade.
    definitions = [
        _describe("setting definitions", old.settings, new.settings),
        _describe("certificate definitions", old.certificates, new.certificates),
    ]
    found.upgrade.extend(reason for reason in definitions if reason)
    for what, changed in (
        ("startup tasks", old.startup_tasks != new.startup_tasks),
        ("entry point", old.entry_point != new.entry_point),
        ("environment", old.environment != new.environment),
        ("execution context", old.execution_context != new.execution_context),
    ):
        if changed:
            found.upgrade.append(f"{what} changed")


def _compare_local_storage(old: RoleDefinition, new: RoleDefinition, found: _Findings) -> None:
    before, after = _by_name(old.local_storage), _by_name(new.local_storage)
    for name in sorted(before):
        if name not in after:
            # Removing a resource shrinks it to nothing.
            found.replace.append(f"local storage {name} removed")
        elif after[name].size_mb < before[name].size_mb:
            # [not supported: "Decreasing the size of the local resources."]
            found.replace.append(
                f"local storage {name} shrinks {before[name].size_mb} -> {after[name].size_mb} MB"
            )
        elif after[name] != before[name]:
            # [table: "Local storage settings" - in-place: "Increase only"]
            found.upgrade.append(f"local storage {name} changed")
    for name in sorted(after.keys() - before.keys()):
        found.upgrade.append(f"local storage {name} added")


def _compare_os(
    old: ServiceConfiguration, new: ServiceConfiguration, role: RoleDefinition, found: _Findings
) -> None:
    if role.kind is RoleKind.VM:
        return  # a VM role's OS is its image
    # [table: "Operating system version" - in-place: Yes]: a rolling OS upgrade.
    if old.os_family != new.os_family:
        found.upgrade.append(f"guest OS family {old.os_family} -> {new.os_family}")
    if old.os_version != new.os_version:
        found.upgrade.append(f"guest OS version {old.os_version} -> {new.os_version}")


def _compare_probes(
    old: ServiceSpec, new: ServiceSpec, role: RoleDefinition, found: _Findings
) -> None:
    before = _by_name(old.definition.load_balancer_probes)
    after = _by_name(new.definition.load_balancer_probes)
    used = {e.load_balancer_probe for e in role.input_endpoints if e.load_balancer_probe}
    changed = sorted(name for name in used if before.get(name) != after.get(name))
    if changed:
        found.add("probe", f"load balancer probes changed: {', '.join(changed)}")


def _compare_artifacts(old: RoleArtifacts, new: RoleArtifacts, found: _Findings) -> None:
    # [table: "Deploy new code" - in-place: Yes]. A VM role's image is its code.
    if old.package_digest != new.package_digest:
        found.upgrade.append("package changed")
    elif old.package != new.package and new.package_digest is None:
        found.upgrade.append("package reference changed")
    if old.image != new.image:
        found.add("image", "disk image changed")


def _compare_values(old: RoleConfiguration, new: RoleConfiguration, found: _Findings) -> None:
    # [table: "Values (but not names) of configuration settings", "Change existing
    # certificates" - in-place: Yes]: configuration only, no new code.
    changed = sorted(
        name
        for name in old.settings.keys() & new.settings.keys()
        if reveal(old.settings[name]) != reveal(new.settings[name])
        or isinstance(old.settings[name], SecretStr) != isinstance(new.settings[name], SecretStr)
    )
    if changed:  # names only: values may be secret
        found.config.append(f"setting values changed: {', '.join(changed)}")
    thumbprints = sorted(
        name
        for name in old.certificates.keys() & new.certificates.keys()
        if old.certificates[name] != new.certificates[name]
    )
    if thumbprints:
        found.config.append(f"certificate thumbprints changed: {', '.join(thumbprints)}")


def _role_plan(
    name: str, old_count: int, new_config: RoleConfiguration, found: _Findings, new: ServiceSpec
) -> RolePlan:
    delta = new_config.instances - old_count
    if found.replace:
        # Everything else is subsumed: the role is deployed afresh.
        return _make(
            name,
            [RoleAction.REPLACE],
            delta,
            found.replace + found.upgrade + found.config,
            ["the role's instances are deleted and recreated; local data is lost"],
        )
    actions = []
    if found.upgrade:
        actions.append(RoleAction.ROLLING_UPGRADE)  # the upgrade applies new config too
    elif found.config:
        actions.append(RoleAction.CONFIG_IN_PLACE)
    warnings = list(dict.fromkeys(found.warnings))
    if actions:
        warnings.extend(_availability_warnings(min(old_count, new_config.instances), new))
    # [table: "Number of instances of a particular role" - in-place: Yes]
    if delta > 0:
        actions.append(RoleAction.SCALE_OUT)
    elif delta < 0:
        actions.append(RoleAction.SCALE_IN)
    reasons = found.upgrade + found.config
    if delta:
        reasons.append(f"instances {old_count} -> {new_config.instances}")
    return _make(name, actions or [RoleAction.NONE], delta, reasons, warnings)


def _availability_warnings(instances: int, new: ServiceSpec) -> list[str]:
    warnings = []
    if instances < 2:
        # "Your service must define at least two instances of a role for that role to be
        # updated in-place without downtime."
        warnings.append("fewer than 2 instances: the role is offline while it is updated")
    if new.configuration.upgrade_mode is UpgradeMode.SIMULTANEOUS:
        warnings.append("simultaneous upgrade mode updates every instance at once")
    return warnings


def _label(actions: list[RoleAction], delta: int) -> str:
    return ", ".join(
        f"{_LABELS[a]} {delta:+d}"
        if a in (RoleAction.SCALE_OUT, RoleAction.SCALE_IN)
        else _LABELS[a]
        for a in actions
    )


def _make(
    name: str, actions: list[RoleAction], delta: int, reasons: list[str], warnings: list[str]
) -> RolePlan:
    label = _label(actions, delta)
    detail = f" ({'; '.join(reasons)})" if reasons and actions != [RoleAction.NONE] else ""
    return RolePlan(
        role=name,
        actions=actions,
        instance_delta=delta,
        reasons=reasons,
        warnings=warnings,
        summary=f"{name}: {label}{detail}",
    )


def _count(config: ServiceConfiguration, name: str) -> int:
    role = config.role(name)
    return role.instances if role else 0


def _removed(role: RoleDefinition, old: ServiceSpec, new: ServiceSpec) -> RolePlan:
    count = _count(old.configuration, role.name)
    reasons = [f"role no longer defined ({count} instances)"]
    if rename := _rename_target(
        role, new.definition.roles, lambda r: old.definition.role(r.name) is None
    ):
        # [not supported: "Changing the name of a role. Remove and then add the role ..."]
        reasons.append(f"looks renamed to {rename}: roles cannot be renamed, so remove and add")
    return _make(role.name, [RoleAction.REMOVE], -count, reasons, [])


def _added(role: RoleDefinition, new: ServiceSpec, old: ServiceSpec) -> RolePlan:
    count = _count(new.configuration, role.name)
    reasons = [f"new role ({count} instances)"]
    if rename := _rename_target(
        role, old.definition.roles, lambda r: new.definition.role(r.name) is None
    ):
        reasons.append(f"looks renamed from {rename}")
    return _make(role.name, [RoleAction.ADD], count, reasons, [])


def _rename_target(
    role: RoleDefinition,
    candidates: Sequence[RoleDefinition],
    eligible: Callable[[RoleDefinition], bool],
) -> str | None:
    for other in candidates:
        if eligible(other) and other.model_copy(update={"name": role.name}) == role:
            return other.name
    return None


def _service_notes(old: ServiceConfiguration, new: ServiceConfiguration) -> list[str]:
    if old.upgrade_mode != new.upgrade_mode:
        return [f"upgrade mode {old.upgrade_mode.value} -> {new.upgrade_mode.value}"]
    return []


def _service_summary(service: str, plans: list[RolePlan], notes: list[str]) -> str:
    changed = [plan for plan in plans if plan.actions != [RoleAction.NONE]]
    if not changed and not notes:
        return f"{service}: no changes"
    parts = [f"{plan.role}: {_label(plan.actions, plan.instance_delta)}" for plan in changed]
    parts += notes
    return f"{service}: {len(changed)} of {len(plans)} roles change: {'; '.join(parts)}"
