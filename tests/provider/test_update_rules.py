"""One home for each update rule: the schema, the provider's diff, the planner and the README
all say what `model.ROLE_RULES` says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cloudservice.model import (
    ROLE_RULES,
    ChangeKind,
    RoleAction,
    ServiceSpec,
    plan_update,
    properties_of_kind,
)
from cloudservice.resources import VmRoleArgs, wire_names
from pulumi.provider.experimental.provider import PropertyDiffKind

from .conftest import Driver
from .test_vm_role import _inputs

REPO = Path(__file__).resolve().parents[2]
VMROLE = "cloudservice:index:VmRole"
REPLACED = set(properties_of_kind(ChangeKind.REPLACE))


def test_every_input_has_a_rule() -> None:
    assert set(ROLE_RULES) == set(wire_names(VmRoleArgs).values())


def test_the_schema_marks_exactly_the_replacing_inputs() -> None:
    schema = json.loads((REPO / "provider" / "schema.json").read_text())
    inputs = schema["resources"][VMROLE]["inputProperties"]
    assert {name for name, spec in inputs.items() if spec.get("replaceOnChanges")} == REPLACED


# A changed value for each input, as a user would write it.
CHANGES: dict[str, Any] = {
    "name": "cs-t-other",
    "pool": "other-pool",
    "updateDomainCount": 3,
    "image": "/elsewhere/web-v2.vhd",
    "imageSha256": "f" * 64,
    "vmSize": "Small",
    "endpoints": [{"name": "http", "protocol": "http", "port": 8080}],
    "probe": {"protocol": "http", "path": "/health"},
    "instanceCount": 3,
    "upgradeMode": "manual",
    "manualUpdateDomain": 1,
    "healthTimeoutSeconds": 60,
    "maxChainDepth": 2,
}


def test_the_changes_cover_every_rule() -> None:
    assert set(CHANGES) == set(ROLE_RULES)


@pytest.mark.parametrize("prop", sorted(ROLE_RULES))
def test_the_provider_diff_replaces_exactly_where_the_rule_says(provider: Any, prop: str) -> None:
    role = Driver(provider, VMROLE)
    old = role.checked(_inputs())
    diff = role.diff(old, {**old, prop: CHANGES[prop]})
    kind = diff.detailed_diff[prop].kind
    if prop in REPLACED:
        assert kind == PropertyDiffKind.UPDATE_REPLACE and diff.replaces == [prop]
    else:
        assert kind == PropertyDiffKind.UPDATE and not diff.replaces


def _spec(**definition: Any) -> ServiceSpec:
    role = {
        "name": "Web",
        "kind": "vm",
        "vmSize": "ExtraSmall",
        "inputEndpoints": [{"name": "http", "protocol": "http", "port": 80}],
    }
    role.update(definition.pop("role", {}))
    return ServiceSpec.model_validate(
        {
            "apiVersion": "cloudservice.model/v1",
            "definition": {"name": "svc", "roles": [role], **definition},
            "configuration": {"serviceName": "svc", "roles": [{"name": "Web", "instances": 2}]},
            "artifacts": {"Web": {"image": "web.vhd"}},
        }
    )


_ACTIONS = {
    ChangeKind.REPLACE: RoleAction.REPLACE,
    ChangeKind.ROLLING_UPGRADE: RoleAction.ROLLING_UPGRADE,
}


@pytest.mark.parametrize(
    ("prop", "new"),
    [
        ("updateDomainCount", _spec(updateDomainCount=3)),
        ("vmSize", _spec(role={"vmSize": "Small"})),
        (
            "endpoints",
            _spec(role={"inputEndpoints": [{"name": "http", "protocol": "http", "port": 8080}]}),
        ),
    ],
)
def test_the_planner_applies_the_same_rule(prop: str, new: ServiceSpec) -> None:
    plan = plan_update(_spec(), new)
    assert plan.roles[0].action == _ACTIONS[ROLE_RULES[prop].kind]


def _readme_row() -> list[str]:
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{VMROLE}`"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_the_readme_table_says_the_same() -> None:
    _, _, replaced, updated = _readme_row()
    assert set(re.findall(r"`(\w+)`", replaced)) == REPLACED
    said: dict[str, ChangeKind] = {}
    for names, kind in re.findall(r"((?:`\w+`,? ?)+)\(([a-z ]+)\)", updated):
        said.update({name: ChangeKind(kind) for name in re.findall(r"`(\w+)`", names)})
    assert said == {p: r.kind for p, r in ROLE_RULES.items() if r.kind is not ChangeKind.REPLACE}
