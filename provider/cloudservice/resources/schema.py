"""The Pulumi package schema, generated from the resources' pydantic models.

Committed as `provider/schema.json` and checked by a golden test, so a change to a model shows
up as a reviewable schema diff.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._base import Model, Resource

PACKAGE = "cloudservice"
VERSION = "0.1.0"

_PROVIDER_CONFIG = {
    "uri": {
        "type": "string",
        "description": "libvirt connection URI of the host (default qemu:///system).",
    }
}


def _property(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    option = options[0] if options else {}
    if "$ref" in option:  # a nested model ("object") or an enum, defined under $defs
        target = defs[option["$ref"].rsplit("/", 1)[-1]]
        option = target if "enum" in target else {}
    kind = option.get("type") or ("string" if "enum" in option or "const" in option else "object")
    prop: dict[str, Any] = {"type": kind}
    if kind == "array":
        prop["items"] = _property(option.get("items", {}), defs)
    if kind == "object" and "additionalProperties" in option:
        prop["additionalProperties"] = _property(option["additionalProperties"], defs)
    allowed = option.get("enum")
    description = schema.get("description", "")
    if allowed:
        description = f"{description} One of: {', '.join(map(str, allowed))}.".strip()
    if description:
        prop["description"] = description
    if "default" in schema and schema["default"] is not None:
        prop["default"] = schema["default"]
    return prop


def _properties(model: type[Model]) -> tuple[dict[str, Any], list[str]]:
    json_schema = model.model_json_schema(by_alias=True)
    defs = json_schema.get("$defs", {})
    props = {name: _property(spec, defs) for name, spec in json_schema["properties"].items()}
    return props, sorted(json_schema.get("required", []))


def resource_schema(resource: type[Resource[Any, Any]]) -> dict[str, Any]:
    inputs, required_inputs = _properties(resource.args_model)
    outputs, _ = _properties(resource.state_model)
    for name in resource.replace_properties():
        inputs[name]["replaceOnChanges"] = True
    return {
        "description": resource.description,
        "inputProperties": inputs,
        "requiredInputs": required_inputs,
        "properties": outputs,
        # Every output is known once the resource exists.
        "required": sorted(outputs),
    }


def build_schema(resources: Iterable[type[Resource[Any, Any]]]) -> dict[str, Any]:
    return {
        "name": PACKAGE,
        "version": VERSION,
        "displayName": "Cloud Services on libvirt",
        "description": "Azure Cloud Services (web, worker and VM roles) on your own libvirt hosts.",
        "config": {"variables": _PROVIDER_CONFIG},
        "provider": {"inputProperties": _PROVIDER_CONFIG},
        "resources": {resource.token: resource_schema(resource) for resource in resources},
    }
