"""The pydantic models: wire names, strictness, defaults, descriptions, secrets."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import cloudservice.model as model
import pytest
from cloudservice.model import (
    InputEndpoint,
    LoadBalancerProbe,
    RoleConfiguration,
    RoleDefinition,
    ServiceDefinition,
    ServiceSpec,
    reveal,
)
from pydantic import BaseModel, SecretStr, ValidationError

from ._helpers import role, spec


def _models() -> list[type[BaseModel]]:
    return [
        obj
        for name in model.__all__
        if isinstance(obj := getattr(model, name), type) and issubclass(obj, BaseModel)
    ]


@pytest.mark.parametrize("cls", _models(), ids=lambda cls: cls.__name__)
def test_every_field_is_described_and_camel_cased(cls: type[BaseModel]) -> None:
    # The provider's Pulumi schema is generated from these models.
    schema = cls.model_json_schema(by_alias=True)
    for name, prop in schema["properties"].items():
        assert "_" not in name, f"{cls.__name__}.{name} is not camelCase"
        assert prop.get("description"), f"{cls.__name__}.{name} has no description"


@pytest.mark.parametrize("cls", _models(), ids=lambda cls: cls.__name__)
def test_extra_fields_are_rejected(cls: type[BaseModel]) -> None:
    assert cls.model_config.get("extra") == "forbid"


def test_aliases_and_field_names_both_populate() -> None:
    by_alias = InputEndpoint.model_validate(
        {"name": "e", "protocol": "tcp", "port": 1, "localPort": 2}
    )
    by_name = InputEndpoint(name="e", protocol="tcp", port=1, local_port=2)
    assert by_alias == by_name
    assert by_alias.model_dump(by_alias=True)["localPort"] == 2


def test_unknown_key_names_the_field() -> None:
    with pytest.raises(ValidationError, match="vmsize"):
        RoleDefinition.model_validate({"name": "r", "kind": "web", "vmsize": "Small"})


def test_definition_defaults_follow_azure() -> None:
    definition = ServiceDefinition.model_validate(
        {"name": "s", "roles": [{"name": "r", "kind": "worker", "localStorage": [{"name": "x"}]}]}
    )
    assert definition.update_domain_count == 5
    storage = definition.roles[0].local_storage[0]
    assert (storage.size_mb, storage.clean_on_role_recycle) == (100, True)
    probe = LoadBalancerProbe(name="p", protocol="tcp")
    assert (probe.interval_in_seconds, probe.timeout_in_seconds) == (15, 31)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"upgradeDomainCount": 21}, "upgradeDomainCount"),
        ({"upgradeDomainCount": 0}, "upgradeDomainCount"),
        ({"roles": [{"name": f"r{i}", "kind": "web"} for i in range(26)]}, "roles"),
        ({"roles": []}, "roles"),
    ],
)
def test_definition_limits(change: dict[str, Any], field: str) -> None:
    data = {"name": "s", "roles": [{"name": "r", "kind": "web"}], **change}
    with pytest.raises(ValidationError) as info:
        ServiceDefinition.model_validate(data)
    assert info.value.errors()[0]["loc"][0] == field


def test_twenty_five_roles_and_twenty_domains_are_allowed() -> None:
    ServiceDefinition.model_validate(
        {
            "name": "s",
            "upgradeDomainCount": 20,
            "roles": [{"name": f"r{i}", "kind": "worker"} for i in range(25)],
        }
    )


def test_http_probe_needs_a_path() -> None:
    with pytest.raises(ValidationError, match="needs a path"):
        LoadBalancerProbe(name="p", protocol="http")


def test_instances_must_be_at_least_one() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        RoleConfiguration(name="r", instances=0)


def test_yaml_scalars_become_azure_strings() -> None:
    config = RoleConfiguration.model_validate(
        {"name": "r", "settings": {"Port": 8080, "Enabled": True, "Ratio": 0.5}}
    )
    assert config.settings == {"Port": "8080", "Enabled": "true", "Ratio": "0.5"}


def test_secret_values_never_show_in_repr_or_dumps(spec_data: dict[str, Any]) -> None:
    role(spec_data, "configuration", "Worker")["settings"]["QueueName"] = {"secret": "q-secret"}
    service = spec(spec_data)
    web = service.configuration.role("Web")
    assert web is not None
    # Defined `secret: true` makes a plain value secret; {"secret": ...} does too.
    assert isinstance(web.settings["DbPassword"], SecretStr)
    assert service.secret_settings() == {"Web": ["DbPassword"], "Worker": ["QueueName"]}
    shown = repr(service) + str(service) + str(service.model_dump()) + service.model_dump_json()
    assert "hunter2" not in shown and "q-secret" not in shown
    assert reveal(web.settings["DbPassword"]) == "hunter2"
    assert web.settings["Greeting"] == "hello"


def test_revealed_dump_round_trips_and_keeps_secrets_secret(spec_data: dict[str, Any]) -> None:
    service = spec(spec_data)
    data = service.model_dump(mode="json", by_alias=True, context={"reveal_secrets": True})
    assert data["configuration"]["roles"][0]["settings"]["DbPassword"] == {"secret": "hunter2"}
    again = ServiceSpec.model_validate(data)
    assert again == service
    assert again.secret_settings() == service.secret_settings()


def test_spec_built_from_model_objects_also_wraps_defined_secrets(
    spec_data: dict[str, Any],
) -> None:
    service = spec(spec_data)
    plain = service.configuration.model_copy(
        update={
            "roles": [
                RoleConfiguration(
                    name="Web", instances=2, settings={"DbPassword": "x", "Greeting": "g"}
                ),
                *service.configuration.roles[1:],
            ]
        }
    )
    rebuilt = ServiceSpec(definition=service.definition, configuration=plain)
    assert rebuilt.secret_settings()["Web"] == ["DbPassword"]


def test_model_never_imports_pulumi_or_libvirt() -> None:
    code = (
        "import sys, cloudservice.model, cloudservice.model.cli; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'libvirt')); "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
