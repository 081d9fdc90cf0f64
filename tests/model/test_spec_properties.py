"""Property tests: any damage to a service document gives Problems, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from cloudservice.model import (
    RoleAction,
    ValidationProblems,
    check_service,
    load_spec,
    plan_update,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ._helpers import base_data, spec

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)

_PATHS = [
    ("definition",),
    ("definition", "roles"),
    ("definition", "roles", 0),
    ("definition", "roles", 0, "name"),
    ("definition", "roles", 0, "settings"),
    ("definition", "roles", 0, "settings", 1),
    ("definition", "roles", 0, "settings", 1, "name"),
    ("definition", "roles", 0, "settings", 1, "secret"),
    ("definition", "roles", 0, "inputEndpoints", 0, "port"),
    ("configuration",),
    ("configuration", "roles"),
    ("configuration", "roles", 0),
    ("configuration", "roles", 0, "name"),
    ("configuration", "roles", 0, "settings"),
    ("configuration", "roles", 0, "settings", "DbPassword"),
    ("configuration", "roles", 0, "instances"),
    ("artifacts",),
    ("artifacts", "Web"),
]


def _set(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(_PATHS), value=_JSON)
def test_damaged_document_gives_problems(path: tuple[str | int, ...], value: Any) -> None:
    data = base_data()
    _set(data, path, value)
    with tempfile.TemporaryDirectory() as temp:
        document = Path(temp) / "svc.json"
        document.write_text(json.dumps(data))
        try:
            loaded = load_spec(document)
        except ValidationProblems:
            return
    check_service(loaded)  # whatever loads can be checked and planned without crashing
    assert not plan_update(loaded, loaded).has_changes
    for plan in (plan_update(spec(base_data()), loaded), plan_update(loaded, spec(base_data()))):
        for role_plan in plan.roles:
            actions = set(role_plan.actions)
            standalone = {RoleAction.NONE, RoleAction.REPLACE, RoleAction.ADD, RoleAction.REMOVE}
            assert len(actions) == 1 or not actions & standalone, role_plan
            assert {RoleAction.CONFIG_IN_PLACE, RoleAction.ROLLING_UPGRADE} - actions, role_plan
