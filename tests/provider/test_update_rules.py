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
from cloudservice.resources.web_role import WebRole
from cloudservice.resources.worker_role import WorkerRole
from pulumi.provider.experimental.provider import PropertyDiffKind

from .conftest import Driver
from .test_vm_role import _inputs

REPO = Path(__file__).resolve().parents[2]
VMROLE = "cloudservice:index:VmRole"
ROLES = {
    VMROLE: set(wire_names(VmRoleArgs).values()),
    WebRole.token: set(wire_names(WebRole.args_model).values()),
    WorkerRole.token: set(wire_names(WorkerRole.args_model).values()),
}
REPLACED = set(properties_of_kind(ChangeKind.REPLACE))


def test_every_input_has_a_rule_and_every_rule_an_input() -> None:
    assert set(ROLE_RULES) == set().union(*ROLES.values())


@pytest.mark.parametrize("token", sorted(ROLES))
def test_the_schema_marks_exactly_the_replacing_inputs(token: str) -> None:
    schema = json.loads((REPO / "provider" / "schema.json").read_text())
    inputs = schema["resources"][token]["inputProperties"]
    marked = {name for name, spec in inputs.items() if spec.get("replaceOnChanges")}
    assert marked == REPLACED & ROLES[token]


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
    "faultDomainCount": 2,
    "faultDomain": 1,
    "upgradeMode": "manual",
    "manualUpdateDomain": 1,
    "healthTimeoutSeconds": 60,
    "maxChainDepth": 2,
    "service": "other",
    "role": "Other",
    "network": "other-net",
    "cidr": "10.9.9.0/24",
    "addressOffset": 100,
    "package": "/elsewhere/web-v2.cspkg",
    "packageSha256": "e" * 64,
    "osFamily": "debian-13",
    "osVersion": "2026.12.01-1",
    "osResolved": "debian-12/2026.12.01-1",
    "osImage": "/elsewhere/os.vhd",
    "osImageSha256": "d" * 64,
    "entryPoint": "python3 other.py",
    "setReadyOnProcessStart": True,
    "executionContext": "elevated",
    "startupTasks": [{"commandLine": "sh setup.sh"}],
    "environment": {"MODE": "other"},
    "localStorage": [{"name": "Scratch", "sizeMb": 10}],
    "settings": {"Greeting": "other"},
    "secretSettings": {"Password": "other"},
    "onConfigurationChange": "recycle",
    "topology": '{"roles": {}}',
    "frontDoor": "/elsewhere/frontdoor/cs-t",
    "certificates": [{"name": "SiteCert", "thumbprint": "ab" * 20, "pem": "(pem)"}],
}


def test_the_changes_cover_every_rule() -> None:
    assert set(CHANGES) == set(ROLE_RULES)


def _old(provider: Any, token: str) -> dict[str, Any]:
    if token == VMROLE:
        return dict(Driver(provider, VMROLE).checked(_inputs()))
    # A package role as its check would leave it (the package and OS catalog aside).
    return {
        "name": "cs-t-web",
        "service": "svc",
        "role": "Web",
        "pool": "p",
        "network": "n",
        "cidr": "10.1.2.0/24",
        "package": "/srv/web.cspkg",
        "instanceCount": 2,
    }


@pytest.mark.parametrize(
    ("token", "prop"), [(token, prop) for token in sorted(ROLES) for prop in sorted(ROLES[token])]
)
def test_the_provider_diff_replaces_exactly_where_the_rule_says(
    provider: Any, token: str, prop: str
) -> None:
    role = Driver(provider, token)
    old = _old(provider, token)
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


def _readme_row(token: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{token}` |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


@pytest.mark.parametrize("token", sorted(ROLES))
def test_the_readme_table_says_the_same(token: str) -> None:
    _, _, replaced, updated = _readme_row(token)
    assert set(re.findall(r"`(\w+)`", replaced)) == REPLACED & ROLES[token]
    said: dict[str, ChangeKind] = {}
    for names, kind in re.findall(r"((?:`\w+`,? ?)+)\(([a-z ]+)\)", updated):
        said.update({name: ChangeKind(kind) for name in re.findall(r"`(\w+)`", names)})
    rules = {p: r.kind for p, r in ROLE_RULES.items() if p in ROLES[token]}
    assert said == {p: kind for p, kind in rules.items() if kind is not ChangeKind.REPLACE}
