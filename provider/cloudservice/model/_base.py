"""Shared pydantic configuration and the conversion of pydantic errors into Problems."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .errors import Problem, ValidationProblems

M = TypeVar("M", bound=BaseModel)

Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class Model(BaseModel):
    """Base of every model: camelCase on the wire (the Pulumi schema), strict about extras."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        use_enum_values=False,
    )

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON form: what the Pulumi protocol carries and state stores."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def format_location(loc: Sequence[int | str], data: Any) -> str:
    """Render a pydantic ``loc`` as ``roles[WebRole1].inputEndpoints[HttpIn].port``.

    List indexes are replaced by the item's ``name`` when the input has one, because
    "roles[2]" means little to someone reading their own file.
    """
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, Sequence) and 0 <= part < len(node) else None
            name = item.get("name") if isinstance(item, Mapping) else None
            text += f"[{name}]" if isinstance(name, str) and name else f"[{part}]"
            node = item
        else:
            text += f".{part}" if text else part
            node = node.get(part) if isinstance(node, Mapping) else None
    return text


def problems_from(exc: ValidationError, source: str, data: Any, prefix: str = "") -> list[Problem]:
    """One Problem per pydantic error, located by field path (with names, not indexes)."""
    problems = []
    for error in exc.errors(include_url=False):
        # Model-level validators report at loc (); a ``__root__``-like tail adds nothing.
        loc = [part for part in error["loc"] if part != "__root__"]
        location = format_location(loc, data)
        if prefix:
            location = f"{prefix}.{location}" if location else prefix
        message = error["msg"].removeprefix("Value error, ")
        problems.append(Problem(source, location, message))
    return problems


def validate_as(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """``model.model_validate(data)``, raising ValidationProblems naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationProblems(problems_from(exc, source, data, prefix)) from exc
