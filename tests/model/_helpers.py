"""Helpers for the model tests: a small valid service document, as plain data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from cloudservice.model import ServiceSpec

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = FIXTURES / "azure-samples"
EVERY_ELEMENT = FIXTURES / "every-element"

_BASE: dict[str, Any] = {
    "definition": {
        "name": "shop",
        "roles": [
            {
                "name": "Web",
                "kind": "web",
                "vmSize": "Small",
                "inputEndpoints": [{"name": "HttpIn", "protocol": "http", "port": 80}],
                "settings": [{"name": "Greeting"}, {"name": "DbPassword", "secret": True}],
                "localStorage": [{"name": "Cache", "sizeMb": 1024}],
            },
            {
                "name": "Worker",
                "kind": "worker",
                "vmSize": "Medium",
                "internalEndpoints": [{"name": "Rpc", "protocol": "tcp", "port": 9000}],
                "settings": [{"name": "QueueName"}],
            },
        ],
    },
    "configuration": {
        "serviceName": "shop",
        "osFamily": "6",
        "roles": [
            {
                "name": "Web",
                "instances": 2,
                "settings": {"Greeting": "hello", "DbPassword": "hunter2"},
            },
            {"name": "Worker", "instances": 3, "settings": {"QueueName": "orders"}},
        ],
    },
    "artifacts": {
        "Web": {"package": "web.rpkg", "packageDigest": "a" * 64},
        "Worker": {"package": "worker.rpkg", "packageDigest": "b" * 64},
    },
}


def base_data() -> dict[str, Any]:
    """A valid service document as data; tests change it to make the case they need."""
    return copy.deepcopy(_BASE)


def role(data: dict[str, Any], part: str, name: str) -> dict[str, Any]:
    """The role called ``name`` in ``data[part]`` (definition or configuration)."""
    return next(r for r in data[part]["roles"] if r["name"] == name)


def spec(data: dict[str, Any]) -> ServiceSpec:
    return ServiceSpec.model_validate(data)
