"""A stack's hosts are checked before anything is declared: one that does not answer is named."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.fault_domains import check_hosts
from components.stack_config import HostConfig


def test_a_host_that_does_not_answer_is_named_and_nothing_is_changed(
    tmp_path: Path, libvirt_uri: str
) -> None:
    absent = f"qemu:///system?socket={tmp_path}/absent-sock"
    hosts = [HostConfig(uri=libvirt_uri), HostConfig(uri=absent)]
    with pytest.raises(pulumi.RunError) as stopped:
        check_hosts(hosts, "stacks/Pulumi.staging.yaml")
    message = str(stopped.value)
    assert message.startswith(f"host {absent} (stacks/Pulumi.staging.yaml: hosts[1]) does not")
    assert "nothing was changed on any host" in message


def test_hosts_that_answer_pass(libvirt_uri: str) -> None:
    check_hosts([HostConfig(uri=libvirt_uri)], "stacks/Pulumi.dev.yaml")
