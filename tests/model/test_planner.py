"""The update planner: one case per rule of Azure's table, plus combinations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloudservice.model import RoleAction, RoleArtifacts, ServicePlan, plan_update

from ._helpers import base_data, role, spec

A = RoleAction


def _plan(change: Callable[[dict[str, Any]], Any]) -> ServicePlan:
    old = base_data()
    new = base_data()
    change(new)
    return plan_update(spec(old), spec(new))


def _web(data: dict[str, Any]) -> dict[str, Any]:
    return role(data, "definition", "Web")


def _web_cfg(data: dict[str, Any]) -> dict[str, Any]:
    return role(data, "configuration", "Web")


def test_no_change_means_none_for_every_role() -> None:
    plan = _plan(lambda d: None)
    assert [(p.role, p.actions) for p in plan.roles] == [("Web", [A.NONE]), ("Worker", [A.NONE])]
    assert not plan.has_changes
    assert plan.summary == "shop: no changes"
    assert plan.roles[0].summary == "Web: no change"


@pytest.mark.parametrize(
    ("change", "actions", "reason"),
    [
        # [table: "Values (but not names) of configuration settings" - in place]
        (
            lambda d: _web_cfg(d)["settings"].update(Greeting="hi"),
            [A.CONFIG_IN_PLACE],
            "setting values changed: Greeting",
        ),
        # [table: "Deploy new code"]
        (
            lambda d: d["artifacts"]["Web"].update(packageDigest="c" * 64),
            [A.ROLLING_UPGRADE],
            "package changed",
        ),
        # [table: "Virtual machine size" - in place, destroys local data]
        (
            lambda d: _web(d).update(vmSize="Large"),
            [A.ROLLING_UPGRADE],
            "vmSize Small -> Large",
        ),
        # [table: "Local storage settings" - increase only]
        (
            lambda d: _web(d)["localStorage"][0].update(sizeMb=2048),
            [A.ROLLING_UPGRADE],
            "local storage Cache changed",
        ),
        (
            lambda d: _web(d)["localStorage"].append({"name": "Logs"}),
            [A.ROLLING_UPGRADE],
            "local storage Logs added",
        ),
        # [not supported: "Decreasing the size of the local resources."]
        (
            lambda d: _web(d)["localStorage"][0].update(sizeMb=512),
            [A.REPLACE],
            "local storage Cache shrinks 1024 -> 512 MB",
        ),
        (
            lambda d: _web(d).update(localStorage=[]),
            [A.REPLACE],
            "local storage Cache removed",
        ),
        # [table: "Number or type of endpoints for a service" - in place]
        (
            lambda d: _web(d)["inputEndpoints"].append(
                {"name": "HttpsIn", "protocol": "tcp", "port": 443}
            ),
            [A.ROLLING_UPGRADE],
            "input endpoints: added HttpsIn",
        ),
        (
            lambda d: _web(d)["inputEndpoints"][0].update(protocol="tcp"),
            [A.ROLLING_UPGRADE],
            "input endpoints: changed HttpIn",
        ),
        # [table: "Names and values of configuration settings"] - a definition change
        (
            lambda d: (
                _web(d)["settings"].append({"name": "Color"}),
                _web_cfg(d)["settings"].update(Color="blue"),
            ),
            [A.ROLLING_UPGRADE],
            "setting definitions: added Color",
        ),
        # [table: "Operating system version"]
        (
            lambda d: d["configuration"].update(osVersion="WA-GUEST-OS-6.61_202307-01"),
            [A.ROLLING_UPGRADE],
            "guest OS version * -> WA-GUEST-OS-6.61_202307-01",
        ),
        (
            lambda d: d["configuration"].update(osFamily="7"),
            [A.ROLLING_UPGRADE],
            "guest OS family 6 -> 7",
        ),
        # [table: "Number of instances of a particular role"]
        (lambda d: _web_cfg(d).update(instances=5), [A.SCALE_OUT], "instances 2 -> 5"),
        (lambda d: _web_cfg(d).update(instances=1), [A.SCALE_IN], "instances 2 -> 1"),
        # "Deploy new code": startup tasks and entry point ship with the package
        (
            lambda d: _web(d).update(startupTasks=[{"commandLine": "setup.cmd"}]),
            [A.ROLLING_UPGRADE],
            "startup tasks changed",
        ),
        (
            lambda d: _web(d).update(entryPoint={"commandLine": "server.exe"}),
            [A.ROLLING_UPGRADE],
            "entry point changed",
        ),
        # No published rule changes a role's kind: treated like a rename.
        (lambda d: _web(d).update(kind="worker"), [A.REPLACE], "kind web -> worker"),
    ],
    ids=[
        "setting-value",
        "package",
        "vm-size",
        "local-storage-grows",
        "local-storage-added",
        "local-storage-shrinks",
        "local-storage-removed",
        "endpoint-added",
        "endpoint-type",
        "setting-defined",
        "os-version",
        "os-family",
        "scale-out",
        "scale-in",
        "startup-task",
        "entry-point",
        "kind",
    ],
)
def test_each_rule(
    change: Callable[[dict[str, Any]], Any], actions: list[RoleAction], reason: str
) -> None:
    plan = _plan(change)
    web = plan.role("Web")
    assert web is not None
    assert web.actions == actions
    assert reason in web.reasons
    assert reason in web.summary


def test_certificate_thumbprint_change_is_in_place() -> None:
    # [table: "Change existing certificates" - in place]
    def with_cert(thumbprint: str) -> dict[str, Any]:
        data = base_data()
        _web(data)["certificates"] = [{"name": "Ssl"}]
        _web_cfg(data)["certificates"] = {"Ssl": {"thumbprint": thumbprint}}
        return data

    plan = plan_update(spec(with_cert("AA")), spec(with_cert("BB")))
    web = plan.role("Web")
    assert web is not None and web.actions == [A.CONFIG_IN_PLACE]
    assert web.reasons == ["certificate thumbprints changed: Ssl"]


def test_os_version_does_not_touch_vm_roles() -> None:
    def with_vm(data: dict[str, Any]) -> dict[str, Any]:
        data["definition"]["roles"].append({"name": "Vm", "kind": "vm"})
        data["configuration"]["roles"].append({"name": "Vm"})
        data["artifacts"]["Vm"] = {"image": "vm.qcow2"}
        return data

    new = with_vm(base_data())
    new["configuration"]["osFamily"] = "7"
    plan = plan_update(spec(with_vm(base_data())), spec(new))
    assert plan.role("Vm").actions == [A.NONE]  # type: ignore[union-attr]
    # A VM role's image is its code.
    new["artifacts"]["Vm"]["image"] = "vm-v2.qcow2"
    plan = plan_update(spec(with_vm(base_data())), spec(new))
    assert plan.role("Vm").reasons == ["disk image changed"]  # type: ignore[union-attr]


def test_upgrade_and_scale_together() -> None:
    plan = _plan(
        lambda d: (
            d["artifacts"]["Web"].update(packageDigest="c" * 64),
            _web_cfg(d).update(instances=4),
            _web_cfg(d)["settings"].update(Greeting="hi"),
        )
    )
    web = plan.role("Web")
    assert web is not None
    assert web.actions == [A.ROLLING_UPGRADE, A.SCALE_OUT]
    assert web.action is A.ROLLING_UPGRADE
    assert web.instance_delta == 2
    assert web.summary == (
        "Web: rolling upgrade, scale out +2 (package changed; setting values changed: "
        "Greeting; instances 2 -> 4)"
    )


def test_replace_subsumes_other_changes() -> None:
    plan = _plan(
        lambda d: (
            _web(d)["localStorage"][0].update(sizeMb=10),
            _web_cfg(d).update(instances=3),
            d["artifacts"]["Web"].update(packageDigest="c" * 64),
        )
    )
    web = plan.role("Web")
    assert web is not None and web.actions == [A.REPLACE]
    assert web.instance_delta == 1
    assert web.reasons[0] == "local storage Cache shrinks 1024 -> 10 MB"
    assert "package changed" in web.reasons


def test_update_domain_count_change_replaces_every_role() -> None:
    # [not supported: "Changing of the Upgrade Domain count."]
    plan = _plan(lambda d: d["definition"].update(updateDomainCount=10))
    assert [p.actions for p in plan.roles] == [[A.REPLACE], [A.REPLACE]]
    assert "update domain count 5 -> 10" in plan.roles[0].reasons[0]


def test_renamed_role_is_removed_and_added() -> None:
    # [not supported: "Changing the name of a role. Remove and then add the role ..."]
    def rename(data: dict[str, Any]) -> None:
        _web(data)["name"] = "Front"
        _web_cfg(data)["name"] = "Front"
        data["artifacts"]["Front"] = data["artifacts"].pop("Web")

    plan = _plan(rename)
    assert [(p.role, p.actions, p.instance_delta) for p in plan.roles] == [
        ("Web", [A.REMOVE], -2),
        ("Worker", [A.NONE], 0),
        ("Front", [A.ADD], 2),
    ]
    assert "looks renamed to Front" in plan.role("Web").reasons[1]  # type: ignore[union-attr]
    assert "looks renamed from Web" in plan.role("Front").reasons[1]  # type: ignore[union-attr]
    assert plan.summary == "shop: 2 of 3 roles change: Web: remove; Front: add"


def test_rename_hint_only_pairs_a_removed_role_with_an_added_one() -> None:
    # Worker looks like Web but already existed: it is no rename target.
    def drop_web_and_clone_worker(data: dict[str, Any]) -> None:
        data["definition"]["roles"] = [role(data, "definition", "Worker")]
        data["configuration"]["roles"] = [role(data, "configuration", "Worker")]
        del data["artifacts"]["Web"]

    old = base_data()
    role(old, "definition", "Web").update(
        {k: v for k, v in role(old, "definition", "Worker").items() if k != "name"}
    )
    role(old, "configuration", "Web")["settings"] = {"QueueName": "orders"}
    new = base_data()
    drop_web_and_clone_worker(new)
    plan = plan_update(spec(old), spec(new))
    assert plan.role("Web").reasons == ["role no longer defined (2 instances)"]  # type: ignore[union-attr]


def test_secret_changes_name_the_setting_but_never_the_value() -> None:
    plan = _plan(lambda d: _web_cfg(d)["settings"].update(DbPassword="new-pass"))
    web = plan.role("Web")
    assert web is not None and web.actions == [A.CONFIG_IN_PLACE]
    text = plan.model_dump_json() + repr(plan)
    assert "DbPassword" in text and "new-pass" not in text and "hunter2" not in text


def test_probe_changes_upgrade_the_roles_that_use_them() -> None:
    def with_probe(path: str) -> dict[str, Any]:
        data = base_data()
        data["definition"]["loadBalancerProbes"] = [
            {"name": "Health", "protocol": "http", "path": path}
        ]
        _web(data)["inputEndpoints"][0]["loadBalancerProbe"] = "Health"
        return data

    plan = plan_update(spec(with_probe("/a")), spec(with_probe("/b")))
    assert plan.role("Web").reasons == ["load balancer probes changed: Health"]  # type: ignore[union-attr]
    assert plan.role("Worker").actions == [A.NONE]  # type: ignore[union-attr]


def test_warnings_for_single_instances_vm_size_and_endpoints() -> None:
    plan = _plan(
        lambda d: (
            _web_cfg(d).update(instances=1),
            _web(d).update(vmSize="Medium"),
            _web(d)["inputEndpoints"][0].update(port=8080),
        )
    )
    web = plan.role("Web")
    assert web is not None and web.actions == [A.ROLLING_UPGRADE, A.SCALE_IN]
    assert web.warnings == [
        "changing the VM size destroys the instances' local data",
        "availability may be lost while endpoints are updated",
        "fewer than 2 instances: the role is offline while it is updated",
    ]


def test_upgrade_mode_is_a_service_note_and_simultaneous_warns() -> None:
    plan = _plan(lambda d: d["configuration"].update(upgradeMode="simultaneous"))
    assert plan.notes == ["upgrade mode auto -> simultaneous"]
    assert plan.has_changes and all(p.actions == [A.NONE] for p in plan.roles)
    plan = _plan(
        lambda d: (
            d["configuration"].update(upgradeMode="simultaneous"),
            _web_cfg(d)["settings"].update(Greeting="x"),
        )
    )
    assert "simultaneous upgrade mode updates every instance at once" in plan.roles[0].warnings


def test_artifact_overrides_supply_digests() -> None:
    old, new = spec(base_data()), spec(base_data())
    plan = plan_update(
        old,
        new,
        old_artifacts={"Worker": RoleArtifacts(package_digest="1" * 64)},
        new_artifacts={"Worker": RoleArtifacts(package_digest="2" * 64)},
    )
    assert plan.role("Worker").actions == [A.ROLLING_UPGRADE]  # type: ignore[union-attr]
    assert plan.role("Web").actions == [A.NONE]  # type: ignore[union-attr]


def test_service_summary_is_one_line() -> None:
    plan = _plan(
        lambda d: (
            _web_cfg(d)["settings"].update(Greeting="hi"),
            role(d, "configuration", "Worker").update(instances=5),
        )
    )
    assert plan.summary == (
        "shop: 2 of 2 roles change: Web: configuration change in place; Worker: scale out +2"
    )
    assert "\n" not in plan.summary
