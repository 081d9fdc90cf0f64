"""Stack configuration: every stack file of the repository validates; a wrong key or value is
one error naming the key and the file, and never shows a secret's value."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
import yaml

from components.stack_config import StackConfig, parse_stack_config

REPO = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["name"]


def _as_pulumi_passes_it(config: dict[str, object]) -> dict[str, str]:
    """A stack file's project keys as the program receives them: objects as JSON text."""
    prefix = f"{PROJECT}:"
    return {
        key.removeprefix(prefix): json.dumps(value)
        if isinstance(value, (dict, list))
        else str(value)
        for key, value in config.items()
        if key.startswith(prefix)
    }


@pytest.mark.parametrize("stack_file", sorted((REPO / "stacks").glob("Pulumi.*.yaml")), ids=str)
def test_every_stack_file_is_valid(stack_file: Path) -> None:
    config = yaml.safe_load(stack_file.read_text()).get("config", {})
    parse_stack_config(_as_pulumi_passes_it(config), PROJECT, str(stack_file))


def test_the_stacks_differ_where_environments_do() -> None:
    def load(stack: str) -> StackConfig:
        config = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
        return parse_stack_config(_as_pulumi_passes_it(config), PROJECT, stack)

    staging, production = load("staging"), load("production")
    assert staging.cidr != production.cidr and staging.pool_path != production.pool_path
    assert staging.instances["Web"] < production.instances["Web"]
    assert (staging.upgrade_mode, production.upgrade_mode) == ("auto", "manual")
    assert staging.front_door_ports != production.front_door_ports


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"instanses": '{"Web": 3}'},
            r"stacks/Pulumi\.staging\.yaml: unknown config key sample-service:instanses \(this"
            r" program reads: .*instances",
        ),
        (
            {"instances": '{"Web": 0}'},
            r"config sample-service:instances\.Web: Input should be greater than or equal to 1",
        ),
        ({"instances": "3"}, r"config sample-service:instances: Input should be a valid dict"),
        ({"frontDoorPorts": "8080"}, r"frontDoorPorts: Input should be a valid dict"),
        ({"frontDoorPorts": "{not json"}, r"config sample-service:frontDoorPorts must be an obj"),
        ({"upgradeMode": "rolling"}, r"upgradeMode: Input should be 'auto', 'manual' or 'simu"),
        ({"cidr": "10.0.0.1/33"}, r"config sample-service:cidr: .*IPv4"),
        ({"frontDoorAddress": "localhost"}, r"frontDoorAddress: Value error, .*IPv4 or IPv6"),
        ({"healthTimeoutSeconds": "-1"}, r"healthTimeoutSeconds: Input should be greater than 0"),
    ],
)
def test_a_wrong_key_or_value_is_one_error_naming_it_and_the_file(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(pulumi.RunError, match=message) as raised:
        parse_stack_config(values, "sample-service", "stacks/Pulumi.staging.yaml")
    assert str(raised.value).startswith("stacks/Pulumi.staging.yaml: ")
    assert "\n" not in str(raised.value)


def test_a_secrets_value_is_never_shown() -> None:
    secret = "-----BEGIN PRIVATE KEY----- hunter2"
    values = {"certificates": json.dumps({"ABCDEF": {"pem": secret}})}
    with pytest.raises(
        pulumi.RunError, match=r"certificates\.ABCDEF: Input should be a valid str"
    ) as raised:
        parse_stack_config(values, "sample-service", "stacks/Pulumi.dev.yaml")
    assert "hunter2" not in str(raised.value)


def test_hosts_are_a_list_of_uris_with_their_own_subnets() -> None:
    hosts = [
        {"uri": "qemu:///system", "cidr": "10.214.0.0/24"},
        {"uri": "qemu+ssh://deploy@staging-2/system", "cidr": "10.224.0.0/24", "poolPath": "/srv"},
    ]
    config = parse_stack_config({"hosts": json.dumps(hosts)}, "p", "stacks/Pulumi.staging.yaml")
    assert [h.uri for h in config.hosts] == [hosts[0]["uri"], hosts[1]["uri"]]
    assert str(config.hosts[1].cidr) == "10.224.0.0/24" and config.hosts[1].pool_path == "/srv"
    with pytest.raises(pulumi.RunError, match=r"config p:hosts must be a list"):
        parse_stack_config({"hosts": "qemu:///system"}, "p", "f")
    with pytest.raises(pulumi.RunError, match=r"config p:hosts\.1\.cdir: Extra inputs"):
        parse_stack_config(
            {"hosts": json.dumps([{"uri": "a"}, {"uri": "b", "cdir": "x"}])}, "p", "f"
        )
