"""`pulumi preview --diff --json` read into what a change review needs, and nothing else.

The engine's document carries every step (old and new inputs, the properties that differ and
which of them force a replacement) and the diagnostics resources printed: the roles' own
summaries ("will: ...") arrive as info diagnostics. Parsing keeps only those parts, typed, so
the comment is built from a small model and never from the raw document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SECRET_SHOWN = "[secret]"  # how the engine prints a secret value without --show-secrets
# The engine's own line after a program's error: it says nothing the error did not.
_PROGRAM_EXITED = "an unhandled error occurred: program exited with non-zero exit code"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Step(_Model):
    """One resource's planned operation."""

    op: str = Field(description="create, update, replace, delete, same, ...")
    urn: str
    type: str
    name: str = Field(description="The resource's name without its component's prefix.")
    old: dict[str, Any] = Field(default_factory=dict, description="Inputs before.")
    new: dict[str, Any] = Field(default_factory=dict, description="Inputs after.")
    changed: tuple[str, ...] = Field(default=(), description="Top-level properties that differ.")
    replace_reasons: tuple[str, ...] = Field(default=(), description="Those forcing a replace.")
    notes: tuple[str, ...] = Field(default=(), description="What the resource said it will do.")

    @property
    def replaces(self) -> bool:
        return self.op in ("replace", "create-replacement", "delete-replaced")


class Preview(_Model):
    """A stack's planned change."""

    steps: tuple[Step, ...]
    counts: dict[str, int] = Field(default_factory=dict, description="Steps by operation.")
    errors: tuple[str, ...] = Field(default=(), description="Error diagnostics, in order.")


def parse_preview(document: dict[str, Any]) -> Preview:
    """The model of one `pulumi preview --json` document."""
    notes: dict[str, list[str]] = {}
    errors: list[str] = []
    for diagnostic in document.get("diagnostics") or []:
        message = str(diagnostic.get("message", "")).strip()
        if diagnostic.get("severity") == "error":
            errors.append(message.removeprefix("error: "))
        elif message and message not in notes.setdefault(diagnostic.get("urn", ""), []):
            notes[diagnostic.get("urn", "")].append(message)
    if len(errors) > 1:
        errors = [error for error in errors if not error.startswith(_PROGRAM_EXITED)]
    steps = [_step(raw, notes.get(raw["urn"], [])) for raw in document.get("steps") or []]
    return Preview(
        steps=tuple(steps),
        counts={str(k): int(v) for k, v in (document.get("changeSummary") or {}).items()},
        errors=tuple(errors),
    )


def _step(raw: dict[str, Any], notes: list[str]) -> Step:
    old, new = raw.get("oldState") or {}, raw.get("newState") or {}
    detailed = raw.get("detailedDiff") or {}
    changed = raw.get("diffReasons") or [key.split(".")[0].split("[")[0] for key in detailed]
    return Step(
        op=raw["op"],
        urn=raw["urn"],
        type=new.get("type") or old.get("type") or raw["urn"].split("::")[-2].split("$")[-1],
        name=_name(raw["urn"], new.get("parent") or old.get("parent")),
        old=old.get("inputs") or {},
        new=new.get("inputs") or {},
        changed=tuple(dict.fromkeys(changed)),
        replace_reasons=tuple(raw.get("replaceReasons") or ()),
        notes=tuple(notes),
    )


def _name(urn: str, parent: str | None) -> str:
    """`sample-Web` under the component `sample` is `Web`."""
    name = urn.rsplit("::", 1)[-1]
    if parent and "$" in urn.split("::")[-2]:
        prefix = parent.rsplit("::", 1)[-1] + "-"
        return name.removeprefix(prefix)
    return name
