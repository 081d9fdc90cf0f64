"""How a change to one property of a role is applied: the one home of the update rules.

Each rule cites Azure's published table "Allowed service changes during an update" ([table:
...]) or the list of changes "not supported during an update" ([not supported: ...]), from
"How to update a cloud service" (learn.microsoft.com/azure/cloud-services/
cloud-services-update-azure-service). The planner (`plan_update`), the provider's diff and
update, the Pulumi schema's replace marks and the README's resource table all read this table;
a test checks that they agree.

Keys are the role resources' input properties (VmRole, WebRole, WorkerRole), by their
camelCase names.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

__all__ = ["ROLE_RULES", "ChangeKind", "ChangeRule", "change_kind", "properties_of_kind"]


class ChangeKind(StrEnum):
    """How the fabric applies a change, from the least to the most disruptive."""

    IN_PLACE = "in place"  # recorded, nothing restarts
    SCALE = "scale"  # instances added or removed, the others untouched
    ROLLING_UPGRADE = "rolling upgrade"  # instances restart update domain by update domain
    REPLACE = "replace"  # the role is deleted and deployed afresh


class ChangeRule(NamedTuple):
    kind: ChangeKind
    why: str


_DEPLOYMENT_SETTING = "how this deployment is run, not part of the service: nothing restarts"

ROLE_RULES: dict[str, ChangeRule] = {
    "name": ChangeRule(
        ChangeKind.REPLACE,
        '[not supported: "Changing the name of a role. Remove and then add the role"]',
    ),
    "pool": ChangeRule(
        ChangeKind.REPLACE, "where the role's disks live on the host: a new place is a new role"
    ),
    "service": ChangeRule(ChangeKind.REPLACE, "the service a role belongs to is its identity"),
    "role": ChangeRule(
        ChangeKind.REPLACE,
        '[not supported: "Changing the name of a role. Remove and then add the role"]',
    ),
    "network": ChangeRule(
        ChangeKind.REPLACE, "the service network instances sit on: a new one is a new role"
    ),
    "cidr": ChangeRule(ChangeKind.REPLACE, "instances' addresses: as network"),
    "addressOffset": ChangeRule(ChangeKind.REPLACE, "instances' addresses: as network"),
    "updateDomainCount": ChangeRule(
        ChangeKind.REPLACE, '[not supported: "Changing of the Upgrade Domain count."]'
    ),
    "image": ChangeRule(
        ChangeKind.ROLLING_UPGRADE,
        '[table: "Deploy new code" - in-place: Yes]: a VM role\'s image is its code',
    ),
    "imageSha256": ChangeRule(ChangeKind.ROLLING_UPGRADE, "the image's content: as image"),
    "package": ChangeRule(
        ChangeKind.ROLLING_UPGRADE,
        '[table: "Deploy new code" - in-place: Yes]: the agent restarts the role on it',
    ),
    "packageSha256": ChangeRule(ChangeKind.ROLLING_UPGRADE, "the package's content: as package"),
    "osFamily": ChangeRule(
        ChangeKind.ROLLING_UPGRADE, '[table: "Operating system version" - in-place: Yes]: reimage'
    ),
    "osVersion": ChangeRule(ChangeKind.ROLLING_UPGRADE, "as osFamily"),
    "osResolved": ChangeRule(
        ChangeKind.ROLLING_UPGRADE, "the version osVersion chose: as osFamily"
    ),
    "osImage": ChangeRule(ChangeKind.ROLLING_UPGRADE, "that version's image: as osFamily"),
    "osImageSha256": ChangeRule(ChangeKind.ROLLING_UPGRADE, "its content: as osFamily"),
    "entryPoint": ChangeRule(
        ChangeKind.ROLLING_UPGRADE, "part of the definition, which ships with new code"
    ),
    "setReadyOnProcessStart": ChangeRule(ChangeKind.ROLLING_UPGRADE, "as entryPoint"),
    "executionContext": ChangeRule(ChangeKind.ROLLING_UPGRADE, "as entryPoint"),
    "startupTasks": ChangeRule(ChangeKind.ROLLING_UPGRADE, "as entryPoint"),
    "environment": ChangeRule(ChangeKind.ROLLING_UPGRADE, "as entryPoint"),
    "localStorage": ChangeRule(
        ChangeKind.ROLLING_UPGRADE, '[table: "Local storage settings" - in-place: Yes]'
    ),
    "vmSize": ChangeRule(
        ChangeKind.ROLLING_UPGRADE, '[table: "Virtual machine size" - in-place: Yes]'
    ),
    "endpoints": ChangeRule(
        ChangeKind.ROLLING_UPGRADE,
        '[table: "Number or type of endpoints for a service" - in-place: Yes]',
    ),
    "probe": ChangeRule(
        ChangeKind.ROLLING_UPGRADE,
        "load balancer probes are part of the definition, which ships with new code",
    ),
    "instanceCount": ChangeRule(
        ChangeKind.SCALE, '[table: "Number of instances of a particular role" - in-place: Yes]'
    ),
    "faultDomainCount": ChangeRule(
        ChangeKind.SCALE, "hosts added or removed: instances move to their new fault domains"
    ),
    "faultDomain": ChangeRule(
        ChangeKind.REPLACE, "the host a resource stands for is its identity: as pool"
    ),
    "settings": ChangeRule(
        ChangeKind.IN_PLACE,
        '[table: "Configuration settings" - in-place: Yes]: a new configuration medium; '
        "the agent signals the role, nothing reboots",
    ),
    "secretSettings": ChangeRule(ChangeKind.IN_PLACE, "as settings"),
    "certificates": ChangeRule(
        ChangeKind.IN_PLACE,
        '[table: "Certificates" - in-place: Yes]: as settings; the agent rewrites the files',
    ),
    "onConfigurationChange": ChangeRule(ChangeKind.IN_PLACE, "as settings"),
    "topology": ChangeRule(
        ChangeKind.IN_PLACE, "the service's instances, as the role sees them: as settings"
    ),
    "frontDoor": ChangeRule(
        ChangeKind.IN_PLACE, "which front door's rotation rollouts drive: nothing restarts"
    ),
    "upgradeMode": ChangeRule(ChangeKind.IN_PLACE, _DEPLOYMENT_SETTING),
    "manualUpdateDomain": ChangeRule(ChangeKind.IN_PLACE, _DEPLOYMENT_SETTING),
    "healthTimeoutSeconds": ChangeRule(ChangeKind.IN_PLACE, _DEPLOYMENT_SETTING),
    "maxChainDepth": ChangeRule(ChangeKind.IN_PLACE, _DEPLOYMENT_SETTING),
}


def change_kind(properties: Iterable[str]) -> ChangeKind | None:
    """The most disruptive kind among changed `properties` (None when nothing changed)."""
    order = list(ChangeKind)
    kinds = [ROLE_RULES[name].kind for name in properties]
    return max(kinds, key=order.index) if kinds else None


def properties_of_kind(kind: ChangeKind) -> list[str]:
    """Role properties whose change is applied as `kind`, in table order."""
    return [name for name, rule in ROLE_RULES.items() if rule.kind is kind]
