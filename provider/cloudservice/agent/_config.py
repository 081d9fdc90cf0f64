"""The configuration document (docs/guest.md) and what the agent derives from it.

The document is read from the configuration medium as UTF-8 JSON padded with NUL bytes. It is
checked only as far as the agent uses it; errors never quote a value (settings may be secret).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationInvalid

__all__ = [
    "CONFIG_CHANGE_KEYS",
    "certificate_path",
    "MAX_CONFIG_BYTES",
    "RolePlan",
    "TaskSpec",
    "env_name",
    "parse_config",
    "read_config",
    "role_document",
    "storage_dir_name",
]

MAX_CONFIG_BYTES = 16 << 20
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CONFIG_CHANGE_KEYS = frozenset(
    {
        "generation",
        "service",
        "role",
        "instanceId",
        "instanceIndex",
        "updateDomain",
        "faultDomain",
        "osVersion",
        "settings",
        "certificates",
        "topology",
        "onConfigurationChange",
    }
)
"""Keys a new generation may change without restarting the role: the role is told (SIGHUP)
or recycled as ``onConfigurationChange`` says. A change of any other key (entry point,
startup tasks, execution context, environment, local storage, package) restarts the role."""


def read_config(device: str) -> dict[str, Any] | None:
    """The document on ``device``; None when there is none to read right now (no medium,
    blank medium, or a medium being swapped). Raises ConfigurationInvalid for a document
    that is readable but not usable."""
    try:
        with open(device, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    data = data.split(b"\0", 1)[0].strip()
    if not data:
        return None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigurationInvalid("the configuration document is larger than 16 MiB")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        # Only the position: the text around it may be a setting's value.
        where = getattr(exc, "pos", None)
        raise ConfigurationInvalid(
            f"the configuration document is not UTF-8 JSON (at byte {where})"
        ) from None
    return parse_config(document)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationInvalid(f"configuration document: {message}")


def parse_config(document: Any) -> dict[str, Any]:
    """Check the parts of ``document`` the agent relies on; returns it unchanged."""
    _require(isinstance(document, dict), "not a JSON object")
    _require(isinstance(document.get("generation"), int), "'generation' must be an integer")
    package = document.get("package")
    _require(isinstance(package, dict), "'package' must be an object")
    sha = package.get("sha256")
    _require(
        isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) is not None,
        "'package.sha256' must be 64 lowercase hex digits",
    )
    size = package.get("size")
    _require(isinstance(size, int) and size > 0, "'package.size' must be a positive integer")
    for key in ("settings", "environment"):
        value = document.get(key, {})
        _require(isinstance(value, dict), f"'{key}' must be an object")
        _require(
            all(isinstance(v, str | int | float | bool) for v in value.values()),
            f"'{key}' values must be strings",
        )
    for key in ("startupTasks", "localStorage"):
        value = document.get(key, [])
        _require(isinstance(value, list), f"'{key}' must be a list")
        _require(all(isinstance(item, dict) for item in value), f"'{key}' items must be objects")
    for item in document.get("localStorage", []):
        _require(isinstance(item.get("name"), str), "each 'localStorage' item needs a 'name'")
        storage_dir_name(item["name"])
    entry = document.get("entryPoint")
    _require(entry is None or isinstance(entry, dict), "'entryPoint' must be an object")
    _require(
        document.get("onConfigurationChange", "signal") in ("signal", "recycle"),
        "'onConfigurationChange' must be 'signal' or 'recycle'",
    )
    return document


def env_name(name: str) -> str:
    """``Api.Key`` -> ``API_KEY``: the suffix of a ``CLOUDSERVICE_*`` variable."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def storage_dir_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or len(name) > 255:
        raise ConfigurationInvalid(
            f"configuration document: local storage name {name!r} is not a plain file name"
        )
    return name


@dataclass(frozen=True)
class TaskSpec:
    """One startup task, from the configuration or from the package manifest."""

    command_line: str
    task_type: str = "simple"
    elevated: bool = False
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolePlan:
    """What runs: the startup tasks and the entry point, resolved from document and manifest."""

    entry_point: str
    elevated: bool
    ready_on_start: bool
    tasks: tuple[TaskSpec, ...]


def _task(item: dict[str, Any], where: str) -> TaskSpec:
    command = item.get("commandLine")
    if not isinstance(command, str) or not command.strip():
        raise ConfigurationInvalid(f"{where}: a startup task has no 'commandLine'")
    task_type = item.get("taskType", "simple")
    if task_type not in ("simple", "background", "foreground"):
        raise ConfigurationInvalid(f"{where}: taskType {task_type!r} is not known")
    env_items = item.get("environment") or {}
    if isinstance(env_items, list):  # the manifest's form: [{"name": .., "value": ..}]
        environment = {
            str(e["name"]): str(e["value"])
            for e in env_items
            if isinstance(e, dict) and "name" in e and e.get("value") is not None
        }
    else:
        environment = {str(k): str(v) for k, v in dict(env_items).items()}
    return TaskSpec(
        command_line=command,
        task_type=task_type,
        elevated=item.get("executionContext") == "elevated",
        environment=environment,
    )


def role_plan(document: dict[str, Any], manifest: dict[str, Any]) -> RolePlan:
    """The document's entry point and startup tasks, else the package manifest's."""
    entry = document.get("entryPoint") or {}
    command = entry.get("commandLine") or manifest.get("entryPoint")
    if not isinstance(command, str) or not command.strip():
        raise ConfigurationInvalid(
            "no entry point: neither the configuration nor the package manifest names one"
        )
    if document.get("startupTasks"):
        tasks = [_task(item, "configuration document") for item in document["startupTasks"]]
    else:
        tasks = [_task(item, "package manifest") for item in manifest.get("startupTasks") or []]
    return RolePlan(
        entry_point=command,
        elevated=document.get("executionContext") == "elevated",
        ready_on_start=bool(entry.get("setReadyOnProcessStart", False)),
        tasks=tuple(tasks),
    )


def role_document(document: dict[str, Any], local_paths: dict[str, str]) -> dict[str, Any]:
    """role.json: the configuration without package internals."""
    out: dict[str, Any] = {
        key: document[key]
        for key in (
            "generation",
            "service",
            "role",
            "instanceId",
            "instanceIndex",
            "updateDomain",
            "faultDomain",
            "osVersion",
        )
        if key in document
    }
    out["settings"] = document.get("settings", {})
    out["localStorage"] = [
        {**item, "path": local_paths[item["name"]]} for item in document.get("localStorage", [])
    ]
    out["topology"] = document.get("topology", {})
    out["certificates"] = [
        {key: item.get(key) for key in ("name", "storeName", "thumbprint")}
        | {"path": certificate_path(item)}
        for item in document.get("certificates", [])
    ]
    return out


def certificate_path(item: dict[str, Any]) -> str:
    """Where a certificate (PEM: certificate and key) is written, relative to the run dir."""
    return f"certificates/{env_name(str(item.get('storeName', 'My')))}/{item['name']}.pem"


def role_environment(
    document: dict[str, Any], role_json: str, local_paths: dict[str, str]
) -> dict[str, str]:
    """The ``CLOUDSERVICE_*`` variables and the document's ``environment``."""
    env = {str(k): str(v) for k, v in document.get("environment", {}).items()}
    env.update(
        {
            "CLOUDSERVICE_ROLE": str(document.get("role", "")),
            "CLOUDSERVICE_INSTANCE_ID": str(document.get("instanceId", "")),
            "CLOUDSERVICE_UPDATE_DOMAIN": str(document.get("updateDomain", 0)),
            "CLOUDSERVICE_FAULT_DOMAIN": str(document.get("faultDomain", 0)),
            "CLOUDSERVICE_ROLE_ENVIRONMENT": role_json,
        }
    )
    for name, path in local_paths.items():
        env[f"CLOUDSERVICE_LOCAL_{env_name(name)}"] = path
    for item in document.get("certificates", []):
        env[f"CLOUDSERVICE_CERTIFICATE_{env_name(item['name'])}"] = str(
            Path(role_json).parent / certificate_path(item)
        )
    for name, value in document.get("settings", {}).items():
        env[f"CLOUDSERVICE_SETTING_{env_name(name)}"] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    return env


def base_environment(home: str) -> dict[str, str]:
    """What every role process starts from."""
    return {
        "PATH": os.environ.get(
            "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "HOME": home,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
