"""The CloudService component's wiring, with Pulumi's mocks: which resources a service
document declares, and with what (the e2e tests run the same component for real)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cloudservice.model import ServiceSpec

REPO = Path(__file__).resolve().parents[2]
SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"  # Pulumi's special-value marker
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"  # ... saying "secret"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = (args.typ, dict(args.inputs))
        # What the provider would add to the inputs: the outputs the component reads.
        if args.typ == "cloudservice:index:FrontDoor":
            outputs: dict[str, Any] = {"directory": f"/state/{args.name}", "endpoints": {}}
        else:
            outputs = {"instances": [], "layers": []}
        return f"{args.name}-id", {**args.inputs, **outputs}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    # Pulumi's mocks run on the thread's event loop; a test that used asyncio.run before
    # left none, so each test gets its own.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, preview=False)
    yield mocks
    # Let what the component registered finish (a component that raised leaves some).
    pending = asyncio.all_tasks(loop)
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    asyncio.set_event_loop(None)
    loop.close()


def _spec(roles: list[dict[str, Any]], configured: list[dict[str, Any]]) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "definition": {"name": "svc", "updateDomainCount": 2, "roles": roles},
            "configuration": {"serviceName": "svc", "roles": configured},
            "artifacts": {r["name"]: ARTIFACTS[r["name"]] for r in roles},
        }
    )


ARTIFACTS = {
    "Web": {"package": str(REPO / "sample" / "roles" / "web")},
    "Worker": {"package": str(REPO / "sample" / "roles" / "worker")},
    "Legacy": {"image": "/images/legacy.vhd"},
}
WEB = {
    "name": "Web",
    "kind": "web",
    "inputEndpoints": [{"name": "HttpIn", "protocol": "http", "port": 80, "localPort": 8080}],
    "internalEndpoints": [{"name": "Work", "protocol": "http"}],
    "settings": [{"name": "Greeting"}, {"name": "ApiKey", "secret": True}],
}
WORKER = {"name": "Worker", "kind": "worker"}
LEGACY = {
    "name": "Legacy",
    "kind": "vm",
    "inputEndpoints": [{"name": "HttpIn", "protocol": "http", "port": 8000, "localPort": 80}],
}


def _service(spec: ServiceSpec, **options: Any) -> Any:
    from components import CloudService

    return CloudService("svc", spec, pool="pool", prefix="cs-t", base_dir=REPO, **options)


@pulumi.runtime.test
def test_every_role_and_one_front_door_over_the_input_endpoints(mocks: Mocks) -> Any:
    spec = _spec(
        [WEB, WORKER, LEGACY],
        [
            {"name": "Web", "instances": 2,
             "settings": {"Greeting": "hi", "ApiKey": {"secret": "k-123456"}}},
            {"name": "Worker", "instances": 1},
            {"name": "Legacy", "instances": 1},
        ],
    )  # fmt: skip
    service = _service(
        spec, network="net", cidr="10.9.0.0/24", front_door_ports={"Web.HttpIn": 18080}
    )

    def check(_: Any) -> None:
        kinds = {name: typ for name, (typ, _) in mocks.resources.items()}
        assert kinds["svc-Web"] == "cloudservice:index:WebRole"
        assert kinds["svc-Worker"] == "cloudservice:index:WorkerRole"
        assert kinds["svc-Legacy"] == "cloudservice:index:VmRole"
        _, door = mocks.resources["svc-front-door"]
        listeners = {item["name"]: item for item in door["listeners"]}
        assert listeners["Web.HttpIn"]["port"] == 18080  # the stack's port
        assert listeners["Legacy.HttpIn"]["port"] == 8000  # the definition's
        assert [
            (s["name"], s["address"], s["port"]) for s in listeners["Web.HttpIn"]["servers"]
        ] == [
            ("cs-t-web-0", "10.9.0.10", 8080),
            ("cs-t-web-1", "10.9.0.11", 8080),
        ]
        # Role k of the definition takes the block of addresses 10 + 20k.
        _, web = mocks.resources["svc-Web"]
        _, legacy = mocks.resources["svc-Legacy"]
        assert (web["addressOffset"], legacy["addressOffset"]) == (10, 50)
        assert web["frontDoor"] == legacy["frontDoor"] == "/state/svc-front-door"
        assert web["settings"] == {"Greeting": "hi"}
        # Secret settings cross to the provider as a Pulumi secret (its wire envelope).
        assert web["secretSettings"]["value"] == {"ApiKey": "k-123456"}
        assert web["secretSettings"][SECRET_SIGNATURE] == SECRET_VALUE
        topology = json.loads(web["topology"])["roles"]
        assert topology["Worker"]["instances"][0]["address"] == "10.9.0.30"
        assert topology["Web"]["instances"][0]["endpoints"]["Work"]["port"] == 20000

    return pulumi.Output.all(service.endpoints, service.instances).apply(check)


@pulumi.runtime.test
def test_more_hosts_are_fault_domains_each_with_its_instances(mocks: Mocks) -> Any:
    from components import ServiceHost

    spec = _spec(
        [WEB, LEGACY],
        [
            {"name": "Web", "instances": 3, "settings": {"Greeting": "hi", "ApiKey": "k"}},
            {"name": "Legacy", "instances": 1},
        ],
    )
    second = pulumi.ProviderResource("cloudservice", "host1", {"uri": "qemu+ssh://h2/system"})
    service = _service(
        spec,
        network="net",
        cidr="10.9.0.0/24",
        more_hosts=[ServiceHost("pool-2", second, network="net-2", cidr="10.10.0.0/24")],
    )

    def check(_: Any) -> None:
        _, web = mocks.resources["svc-Web"]
        _, web_fd1 = mocks.resources["svc-Web-fd1"]
        # Instance i on fault domain (i + i div 2) mod 2: 0 here, 1 and 2 on the second host.
        assert (web["faultDomain"], web["faultDomainCount"], web["pool"]) == (0, 2, "pool")
        assert (web_fd1["faultDomain"], web_fd1["pool"], web_fd1["network"]) == (
            1,
            "pool-2",
            "net-2",
        )
        assert web_fd1["cidr"] == "10.10.0.0/24" and web_fd1["instanceCount"] == 3
        # A role with one instance is on the first host only.
        assert "svc-Legacy" in mocks.resources and "svc-Legacy-fd1" not in mocks.resources
        # Every role and the front door see each instance at its host's address.
        addresses = [i["address"] for i in json.loads(web["topology"])["roles"]["Web"]["instances"]]
        assert addresses == ["10.9.0.10", "10.10.0.11", "10.10.0.12"]
        _, door = mocks.resources["svc-front-door"]
        servers = next(x for x in door["listeners"] if x["name"] == "Web.HttpIn")["servers"]
        assert [s["address"] for s in servers] == addresses

    return service.instances.apply(check)


@pulumi.runtime.test
def test_a_service_without_input_endpoints_has_no_front_door(mocks: Mocks) -> Any:
    spec = _spec([WORKER], [{"name": "Worker", "instances": 1}])
    service = _service(spec, network="net", cidr="10.9.0.0/24")

    def check(_: Any) -> None:
        assert "svc-front-door" not in mocks.resources
        _, worker = mocks.resources["svc-Worker"]
        assert worker.get("frontDoor") is None and worker["network"] == "net"

    return service.instances.apply(check)


def test_web_roles_without_a_network_are_one_clear_error(mocks: Mocks) -> None:
    spec = _spec([WEB], [{"name": "Web", "settings": {"Greeting": "hi", "ApiKey": "k"}}])
    with pytest.raises(pulumi.RunError, match="give CloudService a network and its cidr"):
        _service(spec)


def test_a_role_directory_that_cannot_be_packaged_is_one_clear_error(
    mocks: Mocks, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "escape").symlink_to("/etc/passwd")  # a link out of the role's directory
    spec = _spec([WORKER], [{"name": "Worker", "instances": 1}])
    with pytest.raises(pulumi.RunError, match=f"role Worker: cannot package {tmp_path}: "):
        _service(spec, network="net", cidr="10.9.0.0/24", packages={"Worker": str(tmp_path)})


# -- a service document or per-stack value the fabric cannot run: one line, no traceback ----

SAMPLE = (REPO / "sample" / "service.yaml").read_text()


def _document(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SAMPLE
    path = tmp_path / "service.yaml"
    path.write_text(SAMPLE.replace(old, new, 1))
    return path


def _run_error(call: Any) -> str:
    with pytest.raises(pulumi.RunError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message  # one line
    error = info.value  # with no other exception chained to it, to be shown under it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return message


@pytest.mark.parametrize(
    "old, new, problem",
    [
        (
            "instances: 2",
            "instances: 0",
            "configuration.roles[Web].instances: Input should be greater than or equal to 1",
        ),
        (
            "instances: 2",
            "instances: two",
            "configuration.roles[Web].instances: Input should be a valid integer",
        ),
        ("  serviceName: sample\n", "", "configuration.serviceName: Field required"),
        ("updateDomainCount: 2", "updateDomainCount: [2]", "definition.updateDomainCount: "),
        ("Worker: {package: roles/worker}", "Wroker: {package: roles/worker}", "artifacts.Wroker"),
    ],
)
def test_a_bad_service_document_is_one_line_naming_file_key_and_problem(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    from components import load_service

    path = _document(tmp_path, old, new)
    assert _run_error(lambda: load_service(path)).startswith(f"{path}: {problem}")


def test_every_problem_of_a_document_is_on_the_one_line(tmp_path: Path) -> None:
    from components import load_service

    path = tmp_path / "service.yaml"
    path.write_text(SAMPLE.replace("instances: 2", "instances: 0").replace("instances: 1", "x: 1"))
    message = _run_error(lambda: load_service(path))
    assert message.startswith("3 problems: ")  # Web's count, Worker's and Legacy's "x"
    assert f"{path}: configuration.roles[Web].instances: " in message
    assert f"{path}: configuration.roles[Worker].x: Extra inputs are not permitted" in message


def test_a_document_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    from components import load_service

    path = tmp_path / "service.yaml"
    path.write_text("definition: [unclosed\n  roles: {\n")
    assert _run_error(lambda: load_service(path)).startswith(f"{path}: not valid YAML/JSON: ")


def test_a_spec_made_in_code_names_the_service(mocks: Mocks) -> None:
    spec = _spec([WORKER], [{"name": "Worker", "instances": 1}, {"name": "Ghost"}])
    message = _run_error(lambda: _service(spec, network="net", cidr="10.9.0.0/24"))
    assert message.startswith("service svc: configuration.roles[Ghost]")


@pytest.mark.parametrize(
    "counts, problem",
    [
        ({"Worker": 0}, "instances of Worker: Input should be greater than or equal to 1"),
        ({"Worker": "two"}, "instances of Worker: Input should be a valid integer"),
        ({"Wroker": 2}, "instances of Wroker: no such role (Worker)"),
    ],
)
def test_a_bad_instance_count_override_is_one_line(
    mocks: Mocks, counts: dict[str, Any], problem: str
) -> None:
    spec = _spec([WORKER], [{"name": "Worker", "instances": 1}])
    message = _run_error(
        lambda: _service(spec, network="net", cidr="10.9.0.0/24", instance_counts=counts)
    )
    assert message.startswith(f"service svc: {problem}")


class RolledMocks(Mocks):
    """Roles as the provider reports them after a rollout: the image each host runs."""

    def __init__(self, runs: dict[str, str]) -> None:
        super().__init__()
        self.runs = runs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == "cloudservice:index:VmRole":
            outputs |= {"rolloutComplete": True, "imageSha256": self.runs[args.name]}
        return resource_id, outputs


@pytest.mark.parametrize(
    ("second_host_runs", "exported"),
    [("a" * 64, {"Legacy": {"imageSha256": "a" * 64}}), ("b" * 64, {})],
    ids=["same-release-everywhere", "a-host-still-on-the-old-one"],
)
def test_a_release_is_exported_only_when_every_host_runs_it(
    second_host_runs: str, exported: dict[str, Any]
) -> Any:
    from components import ServiceHost

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = RolledMocks({"svc-Legacy": "a" * 64, "svc-Legacy-fd1": second_host_runs})
    pulumi.runtime.set_mocks(mocks, preview=False)
    spec = _spec([LEGACY], [{"name": "Legacy", "instances": 2}])
    second = pulumi.ProviderResource("cloudservice", "host1", {"uri": "qemu+ssh://h2/system"})
    service = _service(
        spec,
        network="net",
        cidr="10.9.0.0/24",
        more_hosts=[ServiceHost("pool-2", second, network="net-2", cidr="10.10.0.0/24")],
    )
    future: asyncio.Future[Any] = loop.create_future()
    service.releases.apply(future.set_result)
    try:
        assert loop.run_until_complete(asyncio.wait_for(future, 10)) == exported
    finally:
        pending = asyncio.all_tasks(loop)
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
