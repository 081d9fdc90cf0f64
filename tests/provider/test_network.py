"""cloudservice:index:Network through the provider."""

from __future__ import annotations

from cloudservice.resources.provider import CloudServiceProvider
from cloudservice.virt import Host

from .conftest import Driver


def test_network_lifecycle(provider: CloudServiceProvider, host: Host, unique: str) -> None:
    network = Driver(provider, "cloudservice:index:Network")
    inputs = network.checked({"name": unique, "cidr": "10.214.240.0/28", "mode": "isolated"})
    assert inputs["dhcp"] is True  # the default is stored, so a later diff compares like with like
    resource_id, created = network.create(inputs)
    try:
        assert created.values["bridge"] == f"csv-{unique}"[:15]
        assert network.diff(created.values, inputs).changes is False
        assert network.diff(created.values, {**inputs, "cidr": "10.214.241.0/28"}).replaces == [
            "cidr"
        ]
        assert network.read(resource_id, created.values)[1] == created.values
    finally:
        network.delete(resource_id, created.values)
    assert host.network(unique) is None


def test_bad_subnet_is_a_check_failure_naming_cidr(provider: CloudServiceProvider) -> None:
    network = Driver(provider, "cloudservice:index:Network")
    failures = network.check({"name": "n", "cidr": "10.0.0.7/24"}).failures
    assert [f.property for f in failures] == ["cidr"]
    assert "host bits set" in failures[0].reason
