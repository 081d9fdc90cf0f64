"""Checks across definition, configuration and artifacts: all problems, each located."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudservice.model import (
    ModelUsageError,
    Problem,
    Sources,
    ValidationProblems,
    check_service,
    load_spec,
    validate_service,
)

from ._helpers import role, spec


def _messages(data: dict[str, Any], **kwargs: Any) -> list[str]:
    return [f"{p.location}: {p.message}" for p in check_service(spec(data), **kwargs)]


def test_valid_service_has_no_problems(spec_data: dict[str, Any]) -> None:
    assert check_service(spec(spec_data), require_packages=True) == []
    validate_service(spec(spec_data))


def test_all_problems_are_reported_together(spec_data: dict[str, Any]) -> None:
    web_cfg = role(spec_data, "configuration", "Web")
    worker_def = role(spec_data, "definition", "Worker")
    web_cfg["settings"]["Undefined"] = "x"  # configured, not defined
    del web_cfg["settings"]["Greeting"]  # defined, no value
    worker_def["inputEndpoints"] = [{"name": "Alt", "protocol": "tcp", "port": 80}]  # port clash
    spec_data["configuration"]["roles"].append({"name": "Ghost"})  # not defined
    spec_data["definition"]["roles"].append({"name": "Vm", "kind": "vm", "vmSize": "Huge"})
    spec_data["artifacts"]["Vm"] = {"package": "vm.rpkg"}  # VM role: package, no image

    with pytest.raises(ValidationProblems) as info:
        validate_service(spec(spec_data), Sources.document("svc.yaml"))
    text = "\n".join(str(p) for p in info.value.problems)
    expected = [
        "svc.yaml: configuration.roles[Web].settings.Undefined: setting 'Undefined' is not defined",
        "svc.yaml: configuration.roles[Web].settings: setting 'Greeting' has no value",
        "svc.yaml: definition.roles[Worker].inputEndpoints[Alt].port: public tcp port 80 is "
        "already used by Web/HttpIn",
        "svc.yaml: configuration.roles[Ghost]: role 'Ghost' is not in the definition",
        "svc.yaml: configuration.roles: role 'Vm' is defined but not configured",
        "svc.yaml: definition.roles[Vm].vmSize: unknown VM size 'Huge'",
        "svc.yaml: artifacts.Vm: a VM role boots from a disk image",
        "svc.yaml: artifacts.Vm.package: a VM role has no application package",
    ]
    for line in expected:
        assert line in text, f"missing {line!r} in\n{text}"
    assert len(info.value.problems) == len(expected)
    assert str(info.value).startswith(f"{len(expected)} problems found:")


def test_field_errors_are_reported_together_with_names(tmp_path: Any) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(
        """
definition:
  name: s
  upgradeDomainCount: 30
  roles:
  - {name: Web, kind: web, inputEndpoints: [{name: In, protocol: http, port: 99999}]}
configuration:
  serviceName: s
  roles:
  - {name: Web, instances: 0}
"""
    )
    with pytest.raises(ValidationProblems) as info:
        load_spec(path)
    locations = {p.location for p in info.value.problems}
    assert locations == {
        "definition.upgradeDomainCount",
        "definition.roles[Web].inputEndpoints[In].port",
        "configuration.roles[Web].instances",
    }
    assert all(p.source == str(path) for p in info.value.problems)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: role(d, "definition", "Web")["inputEndpoints"].append(
                {"name": "In2", "protocol": "tcp", "port": 8080, "localPort": 80}
            ),
            "roles[Web].inputEndpoints[In2]: local tcp port 80 is already used by endpoint "
            "'HttpIn'",
        ),
        (
            lambda d: role(d, "definition", "Web")["settings"].append({"name": "greeting"}),
            "roles[Web].settings: setting 'Greeting' is defined more than once",
        ),
        (
            lambda d: d["definition"]["roles"].append({"name": "web", "kind": "worker"}),
            "definition.roles: role 'Web' is defined more than once",
        ),
        (
            lambda d: role(d, "definition", "Web")["inputEndpoints"].append(
                {"name": "Tls", "protocol": "https", "port": 443}
            ),
            "roles[Web].inputEndpoints[Tls]: an https endpoint needs a certificate",
        ),
        (
            lambda d: role(d, "definition", "Web")["inputEndpoints"].append(
                {"name": "Tls", "protocol": "https", "port": 443, "certificate": "Nope"}
            ),
            "inputEndpoints[Tls].certificate: certificate 'Nope' is not defined by role 'Web'",
        ),
        (
            lambda d: role(d, "definition", "Web")["inputEndpoints"][0].update(
                loadBalancerProbe="Missing"
            ),
            "loadBalancerProbe: load balancer probe 'Missing' is not defined",
        ),
        (
            lambda d: role(d, "definition", "Web")["localStorage"].append(
                {"name": "Huge", "sizeMb": 300 * 1024}
            ),
            "roles[Web].localStorage: local storage totals 308224 MB but a Small instance has "
            "225 GiB",
        ),
        (
            lambda d: d["configuration"].update(serviceName="other"),
            "configuration.serviceName: 'other' does not match the definition's name 'shop'",
        ),
        (
            lambda d: role(d, "definition", "Web").update(certificates=[{"name": "Ssl"}]),
            "configuration.roles[Web].certificates: certificate 'Ssl' has no thumbprint",
        ),
        (
            lambda d: role(d, "configuration", "Web").update(
                certificates={"Other": {"thumbprint": "AB"}}
            ),
            "roles[Web].certificates.Other: certificate 'Other' is not defined by role 'Web'",
        ),
        (
            lambda d: role(d, "configuration", "Web")["settings"].update(
                DbPassword={"secret": "**********"}
            ),
            "settings.DbPassword: secret value is the mask printed in place of a secret",
        ),
        (
            lambda d: d["artifacts"]["Web"].update(image="web.qcow2"),
            "artifacts.Web.image: a web role runs a package on the managed OS, not an image",
        ),
        (
            lambda d: d["artifacts"].update(Nope={"package": "x"}),
            "artifacts.Nope: role 'Nope' is not in the definition",
        ),
    ],
)
def test_each_cross_check(spec_data: dict[str, Any], change: Any, expected: str) -> None:
    change(spec_data)
    messages = _messages(spec_data)
    assert any(expected in message for message in messages), messages


def test_tcp_and_udp_may_share_a_port_number(spec_data: dict[str, Any]) -> None:
    role(spec_data, "definition", "Worker")["inputEndpoints"] = [
        {"name": "Dns", "protocol": "udp", "port": 80}
    ]
    assert _messages(spec_data) == []


def test_packages_required_only_when_asked(spec_data: dict[str, Any]) -> None:
    del spec_data["artifacts"]
    assert _messages(spec_data) == []
    assert _messages(spec_data, require_packages=True) == [
        "artifacts.Web: web role needs a `package`",
        "artifacts.Worker: worker role needs a `package`",
    ]


def test_vm_role_with_image_is_valid(spec_data: dict[str, Any]) -> None:
    spec_data["definition"]["roles"].append({"name": "Vm", "kind": "vm", "vmSize": "Large"})
    spec_data["configuration"]["roles"].append({"name": "Vm"})
    spec_data["artifacts"]["Vm"] = {"image": "legacy.qcow2"}
    assert _messages(spec_data, require_packages=True) == []


def test_azure_sources_name_the_right_file(spec_data: dict[str, Any]) -> None:
    role(spec_data, "configuration", "Web")["settings"]["Undefined"] = "x"
    role(spec_data, "definition", "Web")["vmSize"] = "Huge"
    problems = check_service(spec(spec_data), Sources.azure("a.csdef", "a.cscfg"))
    assert [(p.source, p.location) for p in problems] == [
        ("a.csdef", "roles[Web].vmSize"),
        ("a.cscfg", "roles[Web].settings.Undefined"),
    ]


def test_bad_setting_value_names_the_setting(spec_data: dict[str, Any], tmp_path: Any) -> None:
    role(spec_data, "configuration", "Web")["settings"]["Greeting"] = ["not", "text"]
    path = tmp_path / "svc.json"
    path.write_text(json.dumps(spec_data))
    with pytest.raises(ValidationProblems) as info:
        load_spec(path)
    [problem] = info.value.problems
    assert problem.location == "configuration.roles[Web].settings"
    assert problem.message.startswith("setting 'Greeting': a setting value is a string")


def test_problem_text() -> None:
    assert str(Problem("f.cscfg", "roles[A]", "bad")) == "f.cscfg: roles[A]: bad"
    assert str(Problem("f.cscfg", "", "bad")) == "f.cscfg: bad"
    with pytest.raises(ModelUsageError):
        ValidationProblems([])


def test_problems_on_one_line_for_a_pulumi_error() -> None:
    problems = ValidationProblems(
        [
            Problem("a.yaml", "configuration.roles[Web].instances", "must be at least 1"),
            Problem("a.yaml", "", "not valid YAML:\n  in line 3\n    column 2"),
        ]
    )
    assert problems.one_line() == (
        "2 problems: a.yaml: configuration.roles[Web].instances: must be at least 1;"
        " a.yaml: not valid YAML: in line 3 column 2"
    )
    assert ValidationProblems(problems.problems[:1]).one_line() == str(problems.problems[0])
