"""What every resource of this provider shares: typed inputs and outputs, and a default diff.

A resource is a pair of pydantic models plus a handler, as in pulumi-go-provider's `infer`:
`Args` (the inputs, camelCase on the wire, `extra="forbid"`) and `State` (Args plus outputs).
Which inputs force a replacement is said once, by `replace_properties()`; the schema and the
diff both read it (a role reads the model's update rules, `model.ROLE_RULES`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from ..model import ChangeKind, Model, ModelError, lookup_vm_size, properties_of_kind
from ..virt import Host

Failures = list[tuple[str, str]]  # (property, reason)
ArgsT = TypeVar("ArgsT", bound=Model)
StateT = TypeVar("StateT", bound=Model)


class PartialFailure(Exception):
    """A create or update that changed the host part way, then stopped: `state` is what is
    deployed now, so Pulumi records it and the next `up` starts from the truth."""

    def __init__(self, state: Model, message: str) -> None:
        super().__init__(message)
        self.state = state


@dataclass
class FieldChange:
    wire_name: str
    replace: bool


@dataclass
class Changes:
    fields: list[FieldChange] = field(default_factory=list)

    @property
    def replaces(self) -> list[str]:
        return [change.wire_name for change in self.fields if change.replace]


def wire_names(model: type[Model]) -> dict[str, str]:
    """Python field name -> camelCase wire name."""
    return {name: info.alias or name for name, info in model.model_fields.items()}


class Resource(ABC, Generic[ArgsT, StateT]):
    """A custom resource: its token, its models and its lifecycle against a libvirt host."""

    token: ClassVar[str]
    args_model: ClassVar[type[Model]]
    state_model: ClassVar[type[Model]]
    description: ClassVar[str]
    # True when the ID is a natural key (a name on the host): the old one must go first.
    delete_before_replace: ClassVar[bool] = True

    def __init__(self, connect: Callable[[], Host]) -> None:
        self.connect = connect

    @classmethod
    def replace_properties(cls) -> set[str]:
        """Wire names of the inputs whose change replaces the resource (none by default)."""
        return set()

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        """Validate inputs: (inputs to store, [(property, reason)]). Bad input never raises.

        Valid inputs come back normalised, defaults filled in, so that diff compares like with like.
        """
        try:
            args = self.args_model.model_validate(inputs)
        except ValidationError as exc:
            return _with_defaults(self.args_model, inputs, unknown), validation_failures(
                exc, unknown
            )
        return args.wire(), []

    def diff(
        self,
        old_state: dict[str, Any],
        new_inputs: dict[str, Any],
        unknown: set[str],
        ignore: set[str],
    ) -> Changes:
        """Compare Args fields only: those are what the user controls. An input the state
        lacks reads as its default, as check fills it: state written before the input existed
        (an older provider) is not a change."""
        replace = self.replace_properties()
        changes = Changes()
        old = _with_defaults(self.args_model, old_state, set())
        new = _with_defaults(self.args_model, new_inputs, unknown)
        for wire_name in wire_names(self.args_model).values():
            if wire_name in ignore:
                continue
            if wire_name in unknown or old.get(wire_name) != new.get(wire_name):
                changes.fields.append(FieldChange(wire_name, wire_name in replace))
        return changes

    def preview_update(self, old: StateT, new: ArgsT) -> dict[str, Any]:
        """Outputs an update will have, known in a preview without side effects (wire names)."""
        return {}

    @abstractmethod
    def preview_id(self, args: ArgsT) -> str:
        """The ID a create would return, computed without side effects."""

    @abstractmethod
    def create(self, args: ArgsT) -> tuple[str, StateT]: ...

    @abstractmethod
    def read(self, resource_id: str, state: StateT) -> StateT | None:
        """The live state, or None when the object is gone."""

    @abstractmethod
    def update(self, resource_id: str, old: StateT, new: ArgsT) -> StateT: ...

    @abstractmethod
    def delete(self, resource_id: str, state: StateT) -> None: ...


class RoleResource(Resource[ArgsT, StateT]):
    """What the role resources (VmRole, WebRole, WorkerRole) share: replacements from the
    update rules, the VM size check, and an unfinished rollout counting as a change."""

    # The input a stopped rollout is reported on, so that the next `up` carries it on.
    unfinished_marker: ClassVar[str]

    @classmethod
    def replace_properties(cls) -> set[str]:
        return role_replace_properties(cls.args_model)

    def check(self, inputs: dict[str, Any], unknown: set[str]) -> tuple[dict[str, Any], Failures]:
        inputs, failures = super().check(inputs, unknown)
        if "vmSize" in inputs and "vmSize" not in unknown:
            try:
                lookup_vm_size(str(inputs["vmSize"]))
            except ModelError as exc:
                failures.append(("vmSize", str(exc)))
        return inputs, failures

    def diff(
        self,
        old_state: dict[str, Any],
        new_inputs: dict[str, Any],
        unknown: set[str],
        ignore: set[str],
    ) -> Changes:
        changes = super().diff(old_state, new_inputs, unknown, ignore)
        # A rollout a health gate stopped is unfinished business, even with the same inputs.
        if old_state.get("rolloutComplete") is False and not changes.fields:
            changes.fields.append(FieldChange(self.unfinished_marker, replace=False))
        return changes


class Observed(Protocol):
    """What the fabric reads back of any role kind."""

    @property
    def instances(self) -> Sequence[Any]: ...
    @property
    def layers(self) -> Sequence[Any]: ...
    @property
    def rollout_complete(self) -> bool: ...


def observed_changes(state: Model, live: Observed) -> dict[str, Any]:
    """A role's recorded state brought to what the host runs (a refresh): its instances,
    layers and whether its rollout is done; a count that differs is reported as the input, so
    the next `up` scales back to what the program asks for."""
    changes: dict[str, Any] = {
        "instances": live.instances,
        "layers": live.layers,
        "rollout_complete": live.rollout_complete,
    }
    recorded = len(getattr(state, "instances", []))
    if len(live.instances) != recorded:
        # The role's count less the instances gone (more: those found) on this host.
        count = getattr(state, "instance_count", recorded) + len(live.instances) - recorded
        changes["instance_count"] = max(count, 1)
    return changes


M = TypeVar("M", bound=Model)


def part(model: type[M], whole: Model) -> M:
    """The fields of `model` out of a bigger model (a State's deployment, its Args)."""
    return model.model_validate(whole.model_dump(include=set(model.model_fields)))


def combined(state_model: type[M], args: Model, deployment: Model) -> M:
    """A resource's State: its inputs as given, and what the fabric reports it runs."""
    return state_model.model_validate({**args.model_dump(), **deployment.model_dump()})


def role_replace_properties(args: type[Model]) -> set[str]:
    """A role resource's inputs that the update rules (`model.ROLE_RULES`) say replace it."""
    return set(properties_of_kind(ChangeKind.REPLACE)) & set(wire_names(args).values())


def _with_defaults(model: type[Model], inputs: dict[str, Any], unknown: set[str]) -> dict[str, Any]:
    """Inputs not yet valid (some are unknown in a preview), with the known defaults filled in."""
    filled = dict(inputs)
    for name, info in model.model_fields.items():
        wire_name = info.alias or name
        if wire_name not in filled and wire_name not in unknown and not info.is_required():
            default = info.get_default(call_default_factory=True)
            if default is not None:
                filled[wire_name] = to_jsonable_python(default, by_alias=True)
    return filled


def validation_failures(exc: ValidationError, unknown: set[str]) -> list[tuple[str, str]]:
    failures = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(inputs)"
        top = str(error["loc"][0]) if error["loc"] else ""
        if top in unknown and error["type"] == "missing":
            continue  # known only after apply: check again then
        failures.append((path, error["msg"]))
    return failures
