"""The `cloudservice` subcommands, run as the installed console command."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._helpers import EVERY_ELEMENT, SAMPLES, base_data, role

CLI = Path(sys.executable).parent / "cloudservice"
CSDEF = EVERY_ELEMENT / "ServiceDefinition.csdef"
CSCFG = EVERY_ELEMENT / "ServiceConfiguration.cscfg"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def _write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_import_azure_writes_yaml_without_secrets() -> None:
    result = run("import-azure", CSDEF, CSCFG)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    front = data["configuration"]["roles"][0]
    assert front["instances"] == 3
    assert front["settings"]["Greeting"] == "Hello & welcome"
    assert front["settings"]["AdminPassword"] == {"secret": "**********"}
    assert "correct horse" not in result.stdout + result.stderr
    roles = data["definition"]["roles"]
    assert [(r["name"], r["kind"], r["vmSize"]) for r in roles] == [
        ("Front", "web", "Medium"),
        ("Back", "worker", "Standard_D2_v2"),
        ("Legacy", "vm", "Large"),
    ]
    assert roles[0]["inputEndpoints"][0] == {
        "name": "HttpIn",
        "protocol": "http",
        "port": 80,
        "localPort": 8080,
        "loadBalancerProbe": "FrontProbe",
    }
    assert "warning: " in result.stderr and "Sites: has no meaning here" in result.stderr


def test_import_azure_json_to_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "service.json"
    result = run("import-azure", CSDEF, CSCFG, "--json", "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = json.loads(out.read_text())
    settings = data["configuration"]["roles"][0]["settings"]
    assert settings["AdminPassword"] == {"secret": "correct horse battery staple"}
    # The written document is a complete service: it validates.
    assert run("validate", out).returncode == 0


@pytest.mark.parametrize("sample", ["octopus-randomquotes", "orleans-simplemessage", "wazstagram"])
def test_validate_public_sample_pairs(sample: str) -> None:
    directory = SAMPLES / sample
    result = run("validate", next(directory.glob("*.csdef")), next(directory.glob("*.cscfg")))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_lists_every_problem_without_traceback(tmp_path: Path) -> None:
    data = base_data()
    role(data, "configuration", "Web")["settings"]["Undefined"] = "x"
    role(data, "definition", "Worker")["vmSize"] = "Huge"
    del role(data, "configuration", "Worker")["settings"]["QueueName"]
    path = _write(tmp_path, "svc.yaml", data)
    result = run("validate", path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "3 problems found"
    assert sum(line.startswith(f"error: {path}: ") for line in lines) == 3
    assert "Traceback" not in result.stderr


def test_validate_malformed_azure_file_exits_1() -> None:
    directory = SAMPLES / "dynatrace"
    result = run("validate", *sorted(directory.iterdir(), key=lambda p: p.suffix, reverse=True))
    assert result.returncode == 1
    assert "line 6, column 53: not well-formed XML" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_require_packages(tmp_path: Path) -> None:
    data = base_data()
    del data["artifacts"]
    path = _write(tmp_path, "svc.yaml", data)
    assert run("validate", path).returncode == 0
    result = run("validate", "--require-packages", path)
    assert result.returncode == 1 and "web role needs a `package`" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("validate",),
        ("validate", "a", "b", "c"),
        ("import-azure", "only-one"),
        ("package",),
        ("package", "build", "dir"),
        ("plan", "old"),
        ("no-such-command",),
    ],
)
def test_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2, result
    assert "usage:" in result.stderr


def test_missing_input_file_exits_1(tmp_path: Path) -> None:
    result = run("validate", tmp_path / "nope.yaml")
    assert (
        result.returncode == 1
        and f"error: {tmp_path / 'nope.yaml'}: does not exist" in result.stderr
    )


def test_package_build_and_diff(tmp_path: Path) -> None:
    source = tmp_path / "role"
    source.mkdir()
    (source / "app.py").write_text("print('v1')\n")
    (source / "old.txt").write_text("old\n")
    first = run("package", "build", source, "-o", tmp_path / "v1.rpkg", "--entry-point", "app.py")
    assert first.returncode == 0, first.stderr
    assert "sha256 " in first.stdout and "2 files" in first.stdout
    (source / "app.py").write_text("print('version 2')\n")
    (source / "old.txt").unlink()
    (source / "new.txt").write_text("new\n")
    second = run(
        "package", "build", source, "-o", tmp_path / "v2.rpkg", "--startup-task", "setup.cmd"
    )
    assert second.returncode == 0, second.stderr

    diff = run("package", "diff", tmp_path / "v1.rpkg", tmp_path / "v2.rpkg")
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines() == [
        "+ new.txt (4)",
        "- old.txt (4)",
        "~ app.py (12 -> 19)",
        "1 added (+4 B), 1 removed (-4 B), 1 changed (+7 B), entry point changed, "
        "startup tasks changed",
    ]
    as_json = run("package", "diff", tmp_path / "v1.rpkg", tmp_path / "v2.rpkg", "--json")
    assert json.loads(as_json.stdout)["changed"] == [
        {"path": "app.py", "oldSize": 12, "newSize": 19}
    ]


def test_package_diff_of_a_hostile_archive_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rpkg"
    bad.write_bytes(b"garbage")
    result = run("package", "diff", bad, bad)
    assert result.returncode == 1
    assert "not a readable role package" in result.stderr and "Traceback" not in result.stderr


def test_plan_prints_summaries(tmp_path: Path) -> None:
    old = _write(tmp_path, "old.yaml", base_data())
    data = base_data()
    role(data, "configuration", "Web")["instances"] = 4
    data["artifacts"]["Web"]["packageDigest"] = "c" * 64
    role(data, "definition", "Worker")["localStorage"] = [{"name": "Tmp"}]
    new = _write(tmp_path, "new.yaml", data)
    result = run("plan", old, new)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Web: rolling upgrade, scale out +2 (package changed; instances 2 -> 4)",
        "Worker: rolling upgrade (local storage Tmp added)",
        "shop: 2 of 2 roles change: Web: rolling upgrade, scale out +2; Worker: rolling upgrade",
    ]
    as_json = json.loads(run("plan", old, new, "--json").stdout)
    assert as_json["roles"][0]["actions"] == ["rolling_upgrade", "scale_out"]
    assert as_json["roles"][0]["instanceDelta"] == 2


def test_plan_rejects_invalid_documents_listing_both(tmp_path: Path) -> None:
    data = base_data()
    role(data, "definition", "Web")["vmSize"] = "Huge"
    old = _write(tmp_path, "old.yaml", data)
    new = _write(tmp_path, "new.yaml", data)
    result = run("plan", old, new)
    assert result.returncode == 1
    assert f"{old}: definition.roles[Web].vmSize" in result.stderr
    assert f"{new}: definition.roles[Web].vmSize" in result.stderr


def test_plan_reads_digests_of_packages_named_without_one(tmp_path: Path) -> None:
    source = tmp_path / "web"
    source.mkdir()
    (source / "app.py").write_text("v1\n")
    assert run("package", "build", source, "-o", tmp_path / "v1.rpkg").returncode == 0
    (source / "app.py").write_text("v2\n")
    assert run("package", "build", source, "-o", tmp_path / "v2.rpkg").returncode == 0

    def document(name: str, package: str) -> Path:
        data = base_data()
        data["artifacts"]["Web"] = {"package": package}  # no digest: plan reads the file
        return _write(tmp_path, name, data)

    same = run("plan", document("a.yaml", "v1.rpkg"), document("b.yaml", "v1.rpkg"))
    assert same.returncode == 0 and same.stdout.splitlines()[-1] == "shop: no changes"
    changed = run("plan", document("a.yaml", "v1.rpkg"), document("c.yaml", "v2.rpkg"))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines()[0] == "Web: rolling upgrade (package changed)"
    missing = run("plan", document("a.yaml", "v1.rpkg"), document("d.yaml", "gone.rpkg"))
    assert missing.returncode == 1 and f"{tmp_path / 'gone.rpkg'} does not exist" in missing.stderr


def test_export_azure_round_trips_through_import(tmp_path: Path) -> None:
    document = tmp_path / "service.yaml"
    assert run("import-azure", CSDEF, CSCFG, "-o", document).returncode == 0
    result = run("export-azure", document, "-o", tmp_path / "azure")
    assert result.returncode == 0, result.stderr
    cscfg = tmp_path / "azure" / "ServiceConfiguration.cscfg"
    assert stat.S_IMODE(cscfg.stat().st_mode) == 0o600
    assert 'value="correct horse battery staple"' in cscfg.read_text()
    again = run("import-azure", tmp_path / "azure" / "ServiceDefinition.csdef", cscfg)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == yaml.safe_load(run("import-azure", CSDEF, CSCFG).stdout)


def test_export_azure_refuses_an_invalid_document(tmp_path: Path) -> None:
    data = base_data()
    role(data, "definition", "Web")["vmSize"] = "Huge"
    result = run("export-azure", _write(tmp_path, "bad.yaml", data), "-o", tmp_path / "out")
    assert result.returncode == 1 and "unknown VM size 'Huge'" in result.stderr
    assert not (tmp_path / "out").exists()
