"""Promotion end to end: a staging and a production stack of one program on one backend, the
real CLI and real guests. Production runs only what staging ran healthy; a release staging
never ran is refused before anything is touched, in the pull request's preview and in `up`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import REPO, make_stack
from .review import review

IMAGES = REPO / ".cache" / "images"


@pytest.fixture
def staging(project: Path, tmp_path: Path) -> Iterator[auto.Stack]:
    created = make_stack(project, tmp_path / "state", prefix="stg")
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)


@pytest.fixture
def production(project: Path, tmp_path: Path, staging: auto.Stack) -> Iterator[auto.Stack]:
    created = make_stack(project, tmp_path / "state", prefix="prd")
    created.set_config("promoteFrom", auto.ConfigValue(staging.name))
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)


def _digest(stack: auto.Stack) -> str:
    return str(stack.outputs()["releases"].value["Web"]["imageSha256"])


def test_production_runs_only_what_staging_ran_healthy(
    staging: auto.Stack, production: auto.Stack, host: Host, tmp_path: Path
) -> None:
    staging.up()
    ran = _digest(staging)

    # A release staging never ran: refused, naming it, in the preview and in `up`; nothing made.
    production.set_config("webImage", auto.ConfigValue(str(IMAGES / "web-v2.vhd")))
    names = {production.name: "production", staging.name: "staging"}
    comment = review(production, "promotion-refused", tmp_path, expect_failure=True, names=names)
    assert "**The preview failed**" in comment, comment
    assert f"promotion from {staging.name}: role Web: image sha256:" in comment
    assert f"(web-v2.vhd) has not run healthy on {staging.name} (it runs sha256:{ran}" in comment
    with pytest.raises(auto.CommandError) as refused:
        production.up()
    assert "(web-v2.vhd) has not run healthy" in str(refused.value)
    assert "Traceback" not in str(refused.value)
    recorded = production.export_stack().deployment.get("resources") or []
    # Only what holds nothing on a host: the stack, its reference to staging (and the provider
    # that reads it), the service's component. No pool, network, role or front door.
    assert {r["type"] for r in recorded} <= {
        "pulumi:pulumi:Stack",
        "pulumi:pulumi:StackReference",
        "pulumi:providers:pulumi",
        "cloudservice:index:CloudService",
    }
    assert host.pool(f"cs-{production.name}-pool") is None

    # What staging runs is promoted: the same digest, serving the same page.
    production.set_config("webImage", auto.ConfigValue(str(IMAGES / "web-v1.vhd")))
    production.up()
    assert _digest(production) == ran
    (instance,) = production.outputs()["instances"].value
    assert "cloudservice web v1" in requests.get(instance["urls"][0], timeout=10).text

    # The next release: once staging ran it healthy, production's preview takes it.
    staging.set_config("webImage", auto.ConfigValue(str(IMAGES / "web-v2.vhd")))
    staging.up()
    production.set_config("webImage", auto.ConfigValue(str(IMAGES / "web-v2.vhd")))
    comment = review(production, "promotion-accepted", tmp_path, names=names)
    assert "#### **Web** (VM role): update" in comment and "bytes to upload" in comment, comment
    assert "failed" not in comment
