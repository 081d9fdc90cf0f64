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


_PRIMITIVES = ("string", "integer", "number", "boolean")


class _Builder:
    """Pulumi schema properties from pydantic JSON schemas. Nested models become object types
    (`#/types/cloudservice:index:<Model>`), so generated SDKs get typed classes for them."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}

    def property(self, schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
        options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
        option = options[0] if options else {}
        prop: dict[str, Any]
        if "$ref" in option and "enum" not in defs[_ref_name(option)]:
            prop = {"$ref": f"#/types/{self._object_type(_ref_name(option), defs)}"}
            option = {}
        else:
            if "$ref" in option:  # an enum: a string with its values listed
                option = defs[_ref_name(option)]
            kind = option.get("type") or ("string" if "enum" in option else "object")
            prop = {"type": kind}
            if kind == "array":
                prop["items"] = self.property(option.get("items", {}), defs)
            if kind == "object" and "additionalProperties" in option:
                prop["additionalProperties"] = self.property(option["additionalProperties"], defs)
        description = schema.get("description", "")
        if allowed := option.get("enum"):
            description = f"{description} One of: {', '.join(map(str, allowed))}.".strip()
        if description:
            prop["description"] = description
        if schema.get("default") is not None and prop.get("type") in _PRIMITIVES:
            prop["default"] = schema["default"]
        if schema.get("secret"):
            prop["secret"] = True  # SDKs wrap it as a secret; state and previews keep it so
        return prop

    def properties(self, model: type[Model]) -> tuple[dict[str, Any], list[str]]:
        json_schema = model.model_json_schema(by_alias=True)
        return self._object(json_schema, json_schema.get("$defs", {}))

    def _object(
        self, schema: dict[str, Any], defs: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        props = {name: self.property(spec, defs) for name, spec in schema["properties"].items()}
        return props, sorted(schema.get("required", []))

    def _object_type(self, name: str, defs: dict[str, Any]) -> str:
        token = f"{PACKAGE}:index:{name}"
        if token not in self.types:
            self.types[token] = {}  # claimed first: a model may refer to itself
            props, required = self._object(defs[name], defs)
            self.types[token] = {"type": "object", "properties": props, "required": required}
            if description := defs[name].get("description"):
                self.types[token]["description"] = description
        return token


def _ref_name(option: dict[str, Any]) -> str:
    return str(option["$ref"]).rsplit("/", 1)[-1]


def resource_schema(builder: _Builder, resource: type[Resource[Any, Any]]) -> dict[str, Any]:
    inputs, required_inputs = builder.properties(resource.args_model)
    outputs, _ = builder.properties(resource.state_model)
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
    builder = _Builder()
    resources = list(resources)
    return {
        "name": PACKAGE,
        "version": VERSION,
        "displayName": "Cloud Services on libvirt",
        "description": "Azure Cloud Services (web, worker and VM roles) on your own libvirt hosts.",
        "config": {"variables": _PROVIDER_CONFIG},
        "provider": {"inputProperties": _PROVIDER_CONFIG},
        "resources": {r.token: resource_schema(builder, r) for r in resources},
        "types": dict(sorted(builder.types.items())),
    }
