"""Importing and exporting Azure's .csdef/.cscfg files, public samples and our own."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudservice.model import (
    AzureFormatError,
    RoleKind,
    ValidationProblems,
    export_cscfg,
    export_csdef,
    import_azure,
    parse_cscfg,
    parse_csdef,
    reveal,
)

from ._helpers import EVERY_ELEMENT, FIXTURES, SAMPLES

CSDEF = EVERY_ELEMENT / "ServiceDefinition.csdef"
CSCFG = EVERY_ELEMENT / "ServiceConfiguration.cscfg"


def _pair(sample: str) -> tuple[Path, Path]:
    directory = SAMPLES / sample
    return next(directory.glob("*.csdef")), next(directory.glob("*.cscfg"))


def _warnings(result: object) -> list[str]:
    return [f"{w.location}: {w.message}" for w in result.warnings]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- public samples


def test_sample_visual_studio_web_role() -> None:
    result = import_azure(*_pair("octopus-randomquotes"))
    web = result.spec.definition.roles[0]
    assert (web.name, web.kind, web.vm_size) == ("WebRole1", RoleKind.WEB, "Standard_A1")
    assert [(e.name, e.protocol, e.port) for e in web.input_endpoints] == [
        ("Endpoint1", "http", 80)
    ]
    assert result.spec.configuration.os_family == "6"
    assert _warnings(result) == [
        "ServiceDefinition/WebRole[@name='WebRole1']/Sites: has no meaning here and was "
        "skipped: IIS sites do not exist here; the role's entry point serves its endpoints"
    ]


def test_sample_with_imports_drops_plugin_settings_with_a_warning() -> None:
    result = import_azure(*_pair("orleans-simplemessage"))
    spec = result.spec
    assert [r.name for r in spec.definition.roles] == ["AzureSilo", "Web"]
    silo = spec.definition.roles[0]
    assert [e.port for e in silo.internal_endpoints] == [11111, 30000]
    assert silo.local_storage[0].size_mb == 100  # Azure's default when sizeInMB is absent
    assert silo.local_storage[0].clean_on_role_recycle is False
    assert silo.startup_tasks[0].execution_context == "elevated"
    config = spec.configuration.role("AzureSilo")
    assert config is not None and config.instances == 3
    assert set(config.settings) == {"DataConnectionString", "TableStorageAccount"}
    warnings = _warnings(result)
    assert sum("Imports: has no meaning here" in w for w in warnings) == 2
    assert (
        "ServiceConfiguration/Role[@name='AzureSilo']: settings of imported Azure modules were "
        "skipped: Microsoft.WindowsAzure.Plugins.Diagnostics.ConnectionString"
    ) in warnings


def test_sample_node_workers_with_role_instance_values() -> None:
    result = import_azure(*_pair("wazstagram"))
    front = result.spec.definition.roles[0]
    assert front.vm_size == "Small"  # no vmsize attribute
    assert front.entry_point is not None
    assert front.entry_point.command_line == "node.cmd .\\server.js"
    assert front.entry_point.set_ready_on_process_start is True
    assert front.environment[0].role_instance_value == (
        "/RoleEnvironment/CurrentInstance/Endpoints/Endpoint[@name='HttpIn']/@port"
    )
    task = front.startup_tasks[0]
    assert task.command_line == "setup_worker.cmd > log.txt"
    assert [v.name for v in task.environment] == ["EMULATED", "RUNTIMEID", "RUNTIMEURL"]
    assert result.warnings == []


def test_sample_with_malformed_xml_names_file_line_and_column() -> None:
    csdef, cscfg = _pair("dynatrace")
    with pytest.raises(AzureFormatError) as info:
        import_azure(csdef, cscfg)
    [problem] = info.value.problems
    assert problem.source == str(cscfg)
    assert problem.location == "line 6, column 53"
    assert problem.message.startswith("not well-formed XML")
    # The definition on its own is fine.
    definition, _ = parse_csdef(csdef.read_bytes())
    assert definition.roles[0].name == "Your WebRole"
    assert [s.secret for s in definition.roles[0].settings] == [False, True]  # APIToken


# ---------------------------------------------------------------- our every-element files


def test_every_element_file_has_a_bom_crlf_and_comments() -> None:
    # Guard the fixture itself: the import tests below rely on these traits.
    data = CSDEF.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data and b"<!--" in data


def test_every_element_definition() -> None:
    spec = import_azure(CSDEF, CSCFG).spec
    definition = spec.definition
    assert (definition.name, definition.update_domain_count) == ("Contoso", 3)
    assert definition.topology_change_discovery == "UpgradeDomainWalk"
    assert [p.name for p in definition.load_balancer_probes] == ["FrontProbe", "TcpProbe"]
    probe = definition.load_balancer_probes[0]
    assert (probe.path, probe.port, probe.interval_in_seconds, probe.timeout_in_seconds) == (
        "/health",
        8080,
        10,
        21,
    )
    front, back, legacy = definition.roles
    assert [r.kind for r in definition.roles] == [RoleKind.WEB, RoleKind.WORKER, RoleKind.VM]
    https = front.input_endpoints[1]
    assert (https.protocol, https.port, https.local_port, https.certificate) == (
        "https",
        443,
        8443,
        "SslCert",
    )
    assert [(e.name, e.protocol, e.port) for e in front.internal_endpoints] == [
        ("Gossip", "tcp", 7000),
        ("Any", "any", None),
    ]
    assert [(s.name, s.secret) for s in front.settings] == [
        ("Greeting", False),
        ("StorageConnectionString", True),
        ("AdminPassword", True),
    ]
    assert front.certificates[0].permission_level == "elevated"
    assert front.certificates[1].store_location == "CurrentUser"
    assert [(s.name, s.size_mb, s.clean_on_role_recycle) for s in front.local_storage] == [
        ("Cache", 2048, False),
        ("Scratch", 100, True),
    ]
    assert [(t.command_line, t.execution_context, t.task_type) for t in front.startup_tasks] == [
        ("install.cmd", "elevated", "simple"),
        ("monitor.cmd", "limited", "background"),
    ]
    assert front.startup_tasks[0].environment[0].value == "production"
    assert front.execution_context == "elevated"
    assert back.entry_point is not None and back.entry_point.assembly_name == "Back.dll"
    assert legacy.vm_size == "Large"
    assert spec.artifacts_for("Legacy").image == "legacy.vhd"  # from <OsImage href>


def test_every_element_configuration_and_secrets() -> None:
    spec = import_azure(CSDEF, CSCFG).spec
    config = spec.configuration
    assert (config.os_family, config.os_version) == ("6", "WA-GUEST-OS-6.60_202306-01")
    front = config.role("Front")
    assert front is not None and front.instances == 3
    assert front.settings["Greeting"] == "Hello & welcome"
    assert reveal(front.settings["AdminPassword"]) == "correct horse battery staple"
    assert front.certificates["SslCert"].thumbprint == "9427BEFA18EC6865A9EBDC79D4C38DE50E6316FF"
    assert spec.secret_settings() == {"Front": ["StorageConnectionString", "AdminPassword"]}
    assert "correct horse" not in repr(spec)


def test_every_element_warnings_name_each_skipped_element() -> None:
    warnings = _warnings(import_azure(CSDEF, CSCFG))
    for where in (
        "ServiceDefinition/WebRole[@name='Front']/Sites",
        "ServiceDefinition/WebRole[@name='Front']/Contents",
        "ServiceDefinition/WebRole[@name='Front']/Imports",
        "ServiceDefinition/WebRole[@name='Front']/Endpoints/InstanceInputEndpoint[@name='Rdp']",
        "ServiceDefinition/NetworkTrafficRules",
        "ServiceConfiguration/NetworkConfiguration",
    ):
        assert any(w.startswith(f"{where}: has no meaning here") for w in warnings), where
    assert len(warnings) == 7  # the six above and the dropped Diagnostics setting


def test_utf16_and_no_namespace_are_read() -> None:
    text = CSCFG.read_bytes().decode("utf-8-sig").replace('encoding="utf-8"', 'encoding="utf-16"')
    config, _ = parse_cscfg(text.encode("utf-16"))
    assert config.service_name == "Contoso"
    bare = b'<ServiceConfiguration serviceName="s"><Role name="r"/></ServiceConfiguration>'
    assert parse_cscfg(bare)[0].roles[0].instances == 1


def test_unknown_elements_and_foreign_namespaces_warn() -> None:
    data = (
        b'<ServiceDefinition name="s" xmlns="urn:other">'
        b'<WorkerRole name="w"><Frobnicate/></WorkerRole></ServiceDefinition>'
    )
    _, warnings = parse_csdef(data, "x.csdef")
    assert [str(w) for w in warnings] == [
        "x.csdef: ServiceDefinition: unexpected namespace 'urn:other'; read as "
        "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition",
        "x.csdef: ServiceDefinition/WorkerRole[@name='w']/Frobnicate: is not understood here "
        "and was skipped",
    ]


def test_wrong_root_element_is_a_format_error() -> None:
    with pytest.raises(AzureFormatError, match="expected a <ServiceDefinition> document"):
        parse_csdef(CSCFG.read_bytes(), "swapped.csdef")


def test_bad_values_in_both_files_are_reported_together(tmp_path: Path) -> None:
    csdef = tmp_path / "s.csdef"
    cscfg = tmp_path / "s.cscfg"
    csdef.write_text(
        '<ServiceDefinition name="s" upgradeDomainCount="lots">'
        '<WorkerRole name="w"><Endpoints><InputEndpoint name="e" protocol="ftp" port="21"/>'
        "</Endpoints></WorkerRole></ServiceDefinition>"
    )
    cscfg.write_text(
        '<ServiceConfiguration serviceName="s"><Role name="w"><Instances count="0"/></Role>'
        "</ServiceConfiguration>"
    )
    with pytest.raises(ValidationProblems) as info:
        import_azure(csdef, cscfg)
    assert {(p.source, p.location) for p in info.value.problems} == {
        (str(csdef), "upgradeDomainCount"),
        (str(csdef), "roles[w].inputEndpoints[e].protocol"),
        (str(cscfg), "roles[w].instances"),
    }


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValidationProblems, match=f"{tmp_path / 'nope.csdef'}: does not exist"):
        import_azure(tmp_path / "nope.csdef", CSCFG)


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csdef"
    with huge.open("wb") as handle:
        handle.truncate(17 << 20)
    with pytest.raises(AzureFormatError, match="larger than 16 MiB"):
        import_azure(huge, CSCFG)


# ---------------------------------------------------------------- export


@pytest.mark.parametrize(
    "pair",
    [
        (CSDEF, CSCFG),
        *(_pair(s) for s in ("octopus-randomquotes", "orleans-simplemessage", "wazstagram")),
    ],
    ids=["every-element", "octopus", "orleans", "wazstagram"],
)
def test_export_round_trips(pair: tuple[Path, Path], tmp_path: Path) -> None:
    original = import_azure(*pair).spec
    csdef, cscfg = tmp_path / "out.csdef", tmp_path / "out.cscfg"
    csdef.write_bytes(export_csdef(original.definition))
    cscfg.write_bytes(export_cscfg(original.configuration, original.artifacts))
    again = import_azure(csdef, cscfg)
    assert again.spec.definition == original.definition
    assert again.spec.configuration == original.configuration
    assert again.warnings == []  # nothing we export is skipped on the way back


def test_export_writes_azure_namespaces_and_reveals_secrets() -> None:
    spec = import_azure(CSDEF, CSCFG).spec
    csdef = export_csdef(spec.definition).decode()
    cscfg = export_cscfg(spec.configuration).decode()
    assert csdef.startswith('<?xml version="1.0" encoding="utf-8"?>\n<ServiceDefinition xmlns=')
    assert 'xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition"' in csdef
    assert "<VirtualMachineRole " in csdef and "<NetFxEntryPoint " in csdef
    assert (
        'xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"' in cscfg
    )
    assert 'value="correct horse battery staple"' in cscfg  # the one place secrets leave
    assert 'value="Hello &amp; welcome"' in cscfg


@pytest.mark.parametrize("suffix", ["csdef", "cscfg"])
def test_export_matches_golden_file(suffix: str) -> None:
    # Reviewed by hand against Azure's schema. After an intended change, regenerate with
    # export_csdef/export_cscfg of import_azure(CSDEF, CSCFG) and review the diff.
    spec = import_azure(CSDEF, CSCFG).spec
    exported = (
        export_csdef(spec.definition)
        if suffix == "csdef"
        else export_cscfg(spec.configuration, spec.artifacts)
    )
    golden = FIXTURES / "golden" / f"every-element.{suffix}"
    assert exported.decode() == golden.read_text()


def test_unknown_declared_encoding_is_a_format_error() -> None:
    # Found by test_azure_properties: this raised LookupError from ElementTree.
    data = b'<?xml version="1.0" encoding="no-such-codec"?><ServiceDefinition name="s"/>'
    with pytest.raises(AzureFormatError, match="cannot decode the XML"):
        parse_csdef(data, "x.csdef")
