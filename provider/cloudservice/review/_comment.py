"""A stack's preview as the Markdown of a pull-request comment that reads like a change review.

Replacements come first (they delete instances), then each role in the order the program
declares them: what its provider said it will do (package files, image pages and bytes to
upload, OS moves, settings, update domains, the front door's rotation, instance counts), then
the properties that change. Secret values are never shown: properties that hold secrets, and
anything the engine printed as a secret, read as masked.
"""

from __future__ import annotations

import json
from typing import Any

from ._preview import SECRET_SHOWN, Preview, Step

MARKER = "<!-- cloudservice-preview:{stack} -->"  # finds the stack's comment to update it
MASKED = "(secret, masked)"

_ROLE_KINDS = {
    "cloudservice:index:VmRole": "VM role",
    "cloudservice:index:WebRole": "Web role",
    "cloudservice:index:WorkerRole": "Worker role",
}
_KINDS = {**_ROLE_KINDS, "cloudservice:index:FrontDoor": "front door"}
# Always masked, whatever the engine printed (a preview run with --show-secrets included).
_SECRET_PROPERTIES = frozenset({"secretSettings", "certificates"})
# Inputs the provider fills from others: their change is the change of the one they follow.
_DERIVED = frozenset({"imageSha256", "packageSha256", "osImage", "osImageSha256", "osResolved"})
# Paths: differ between machines; the file's name is what a reviewer knows.
_FILES = frozenset({"image", "package"})
# Resources that hold nothing on a host: the stack, components, references to other stacks.
_LOGICAL = frozenset(
    {"pulumi:pulumi:Stack", "pulumi:pulumi:StackReference", "cloudservice:index:CloudService"}
)
_ORDER = ("create", "update", "replace", "delete")
_QUIET = ("same", "read", "refresh")
_LONGEST_VALUE = 60
_CHANGED = "(changed)"


def render_comment(preview: Preview, stack: str) -> str:
    """The comment for `stack`: a first line to find it by, then the review."""
    lines = [MARKER.format(stack=stack), f"### `pulumi preview` of **{stack}**: {_counts(preview)}"]
    if preview.errors:
        lines += ["", "**The preview failed**; `pulumi up` would stop here:", ""]
        lines += [_quote(error) for error in preview.errors]
    replaced = [step for step in preview.steps if step.replaces and step.op != "delete-replaced"]
    if replaced:
        lines += ["", "> [!WARNING]", "> **Replaced** (deleted, then deployed afresh):"]
        lines += [f"> - {_title(step)}: {_replace_reasons(step)}" for step in replaced]
    for step in preview.steps:
        if step.type in _ROLE_KINDS and step.op not in _QUIET and step.op != "delete-replaced":
            lines += ["", f"#### {_title(step)}: {_op(step)}", "", *_role_lines(step)]
    others = [s for s in preview.steps if s.type not in _ROLE_KINDS and _shown_other(s)]
    if others:
        lines += ["", "#### Other resources", ""]
        lines += [f"- {_title(step)}: {_op(step)}{_changed_names(step)}" for step in others]
    if not preview.errors and not replaced and not any(_shown(s) for s in preview.steps):
        lines += ["", "No changes: `pulumi up` would leave every role as it runs."]
    return "\n".join(lines) + "\n"


def _counts(preview: Preview) -> str:
    if preview.errors:
        return "failed"
    changes = [f"{preview.counts[op]} to {op}" for op in _ORDER if preview.counts.get(op)]
    unchanged = preview.counts.get("same", 0)
    return ", ".join([*changes, f"{unchanged} unchanged"])


def _title(step: Step) -> str:
    kind = _KINDS.get(step.type) or step.type.split(":")[-1].split("/")[0]
    inputs = step.new or step.old
    count = inputs.get("faultDomainCount") or 1
    if step.type in _ROLE_KINDS and count > 1:  # one resource per host: say which
        domain = inputs.get("faultDomain") or 0
        name = step.name.removesuffix(f"-fd{domain}")
        return f"**{name}** ({kind}, fault domain {domain} of {count})"
    return f"**{step.name}** ({kind})"


def _op(step: Step) -> str:
    return {"create-replacement": "replace", "delete": "delete"}.get(step.op, step.op)


def _replace_reasons(step: Step) -> str:
    return ", ".join(_change(step, key) for key in step.replace_reasons) or "replaced"


def _role_lines(step: Step) -> list[str]:
    if step.op == "delete":
        count = step.old.get("instanceCount")
        return [f"- every instance ({count}) stopped and removed, with its disks"]
    lines = [f"- {part}" for note in step.notes for part in _said(note)]
    if step.op in ("create", "create-replacement", "replace"):
        lines += _created(step)
    shown = [key for key in step.changed if key not in _DERIVED]
    if shown and step.op not in ("create",):
        lines.append("- changes: " + ", ".join(_change(step, key) for key in shown))
    return lines or ["- nothing the host sees changes"]


def _said(note: str) -> list[str]:
    """A role's summary ("will: a; b; c") as its parts."""
    return [part.strip() for part in note.removeprefix("will:").split(";") if part.strip()]


def _created(step: Step) -> list[str]:
    new, lines = step.new, []
    if "instanceCount" in new:
        count, domains = new["instanceCount"], new.get("updateDomainCount")
        noun = "instance" if count == 1 else "instances"
        lines.append(f"- {count} {noun} over {domains} update domains")
    for label, name, digest in (
        ("image", _short(new.get("image")), new.get("imageSha256")),
        ("package", _short(new.get("package")), new.get("packageSha256")),
        ("OS", new.get("osResolved"), new.get("osImageSha256")),
    ):
        if name:
            lines.append(f"- {label} `{name}`" + (f" ({str(digest)[:12]})" if digest else ""))
    return lines


def _change(step: Step, key: str) -> str:
    if key in _SECRET_PROPERTIES:
        return f"`{key}` {MASKED}"
    old, new = step.old.get(key), step.new.get(key)
    if key in _FILES:
        return f"`{key}` {_value(_short(old))} → {_value(_short(new))}"
    if key in ("settings",) and isinstance(old, dict) and isinstance(new, dict):
        return _settings_change(old, new)
    if key == "topology":
        return _topology_change(old, new)
    before, after = _value(old), _value(new)
    if before == after == _CHANGED:
        return f"`{key}` changed"
    return f"`{key}` {before} → {after}"


def _topology_change(old: Any, new: Any) -> str:
    """The service's topology (every role's instances, told to each role) by instance counts."""
    counts = [_instance_counts(value) for value in (old, new)]
    moved = [
        f"{role} {counts[0].get(role, 0)} → {counts[1].get(role, 0)}"
        for role in sorted({*counts[0], *counts[1]})
        if counts[0].get(role) != counts[1].get(role)
    ]
    return "`topology` " + (f"(instances: {', '.join(moved)})" if moved else "changed")


def _instance_counts(topology: Any) -> dict[str, int]:
    try:
        roles = json.loads(str(topology))["roles"]
        return {str(name): len(role["instances"]) for name, role in roles.items()}
    except (ValueError, KeyError, TypeError):
        return {}


def _settings_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    names = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
    return "settings " + ", ".join(
        f"`{k}` {_value(old.get(k))} → {_value(new.get(k))}" for k in names
    )


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if _holds_secret(value):
        return MASKED
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > _LONGEST_VALUE:
        return _CHANGED if not isinstance(value, str) else f"`…{text[-_LONGEST_VALUE:]}`"
    return f"`{text}`"


def _holds_secret(value: Any) -> bool:
    if value == SECRET_SHOWN:
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def _short(path: Any) -> str | None:
    return None if path is None else str(path).rsplit("/", 1)[-1]


def _changed_names(step: Step) -> str:
    if step.op != "update" or not step.changed:
        return ""
    return " (" + ", ".join(_change(step, key) for key in step.changed) + ")"


def _shown(step: Step) -> bool:
    return step.op not in _QUIET


def _shown_other(step: Step) -> bool:
    return _shown(step) and step.op != "delete-replaced" and step.type not in _LOGICAL


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines()) + "\n"
