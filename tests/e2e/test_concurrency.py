"""The provider never blocks: resources Pulumi runs in parallel really run in parallel.

The program (`programs/two_roles/`) has two independent VM roles and a file volume. Each
instance records when it started and how long it took to answer its probe; if the provider
ran one resource's work at a time, the second role's instance would start only after the first
one's was healthy, and the volume would wait for a role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from .project import REPO, make_project


@pytest.fixture
def project(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Path:
    return make_project(tmp_path / "project", program="two_roles")


def _finished(events: list[auto.EngineEvent], resource_type: str) -> list[int]:
    """Sequence numbers of the engine's "outputs recorded" events for resources of a type."""
    return [
        event.sequence
        for event in events
        if event.res_outputs_event and event.res_outputs_event.metadata.type == resource_type
    ]


def test_independent_roles_deploy_concurrently(stack: auto.Stack) -> None:
    stack.set_config("webImage", auto.ConfigValue(str(REPO / ".cache/images/web-v1.vhd")))
    events: list[auto.EngineEvent] = []
    up = stack.up(on_event=events.append)

    first, second = (group[0] for group in up.outputs["instances"].value)
    spans: list[Any] = [
        (i["startedAt"], i["startedAt"] + i["healthyAfterSeconds"]) for i in (first, second)
    ]
    (start_a, healthy_a), (start_b, healthy_b) = spans
    # Each role's instance started before the other's was healthy: the two creates overlapped.
    assert start_a < healthy_b and start_b < healthy_a, spans

    # The volume (milliseconds of work) finished before either role (seconds of boot).
    (volume,) = _finished(events, "cloudservice:index:Volume")
    roles = _finished(events, "cloudservice:index:VmRole")
    assert len(roles) == 2 and volume < min(roles)
