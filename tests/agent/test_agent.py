"""The guest agent as a real subprocess on plain files: docs/guest.md, "What the agent does"."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from cloudservice.model import StartupTask

from .conftest import APP_COMMAND, Harness

ENTRY = {"commandLine": APP_COMMAND}


def test_ready_after_the_entry_point_runs_and_the_role_sees_its_environment(
    harness: Harness,
) -> None:
    package = harness.package(entry_point=APP_COMMAND)  # the manifest names the entry point
    harness.configure(
        package=package,
        settings={"Greeting": "hello", "Api.Key": "k"},
        localStorage=[{"name": "Scratch", "sizeMb": 10, "cleanOnRoleRecycle": True}],
    )
    harness.start()
    status = harness.wait_state("ready")
    assert status["package"] == package["sha256"]
    assert (status["role"], status["instanceId"], status["generation"]) == ("Web", "Web_IN_0", 1)
    assert status["os"] == "debian-12/2026.11.30-1"
    assert status["restarts"] == 0 and status["detail"] == ""
    assert status["roleStartedSeconds"] <= status["uptimeSeconds"]

    (start,) = harness.wait_events(1)
    env = start["env"]
    role_dir = harness.root / "srv" / "role"
    assert start["cwd"] == str(role_dir / package["sha256"])
    assert start["data"] == "data v1"
    assert os.readlink(role_dir / "current") == package["sha256"]
    local = harness.root / "var" / "lib" / "cloudservice" / "local" / "Scratch"
    assert env == {
        "CLOUDSERVICE_ROLE": "Web",
        "CLOUDSERVICE_INSTANCE_ID": "Web_IN_0",
        "CLOUDSERVICE_UPDATE_DOMAIN": "1",
        "CLOUDSERVICE_FAULT_DOMAIN": "0",
        "CLOUDSERVICE_ROLE_ENVIRONMENT": str(harness.root / "run" / "cloudservice" / "role.json"),
        "CLOUDSERVICE_LOCAL_SCRATCH": str(local),
        "CLOUDSERVICE_SETTING_GREETING": "hello",
        "CLOUDSERVICE_SETTING_API_KEY": "k",
    }
    assert local.is_dir()
    assert start["roleJsonMode"] == 0o600
    role_json = start["roleJson"]
    assert role_json["settings"] == {"Greeting": "hello", "Api.Key": "k"}
    assert role_json["localStorage"][0]["path"] == str(local)
    assert "package" not in role_json and "entryPoint" not in role_json
    log = harness.root / "var" / "log" / "cloudservice" / "entrypoint.log"
    assert "app started" in log.read_text()
    assert "[entrypoint] app started" in harness.console.read_text()


def test_status_is_repeated_at_least_once_a_second_with_growing_uptime(harness: Harness) -> None:
    harness.configure(package=harness.package(), entryPoint=ENTRY)
    harness.start()
    first = harness.wait_state("ready")
    count = len(harness.statuses())
    later = harness.wait_for(lambda s: s["uptimeSeconds"] >= first["uptimeSeconds"] + 1.5)
    assert later["state"] == "ready"
    assert len(harness.statuses()) >= count + 1


def test_waits_for_the_configuration_medium(harness: Harness) -> None:
    harness.start()
    status = harness.wait_state("starting")
    assert "waiting for the configuration" in status["detail"]
    harness.configure(package=harness.package(), entryPoint=ENTRY)
    harness.wait_state("ready")


def test_a_digest_mismatch_fails_with_a_clear_detail(harness: Harness) -> None:
    package = harness.package()
    harness.configure(package={**package, "sha256": "0" * 64}, entryPoint=ENTRY)
    harness.start()
    status = harness.wait_state("failed")
    assert "digest mismatch" in status["detail"]
    assert package["sha256"] in status["detail"] and "0" * 64 in status["detail"]
    assert harness.events() == []
    # A new generation with the right digest repairs the instance; the agent is the same.
    harness.configure(package=package)
    harness.wait_state("ready", generation=2)
    assert harness.process is not None and harness.process.poll() is None


def test_a_failing_simple_task_fails_the_role_with_its_output_and_exit_code(
    harness: Harness,
) -> None:
    harness.configure(
        package=harness.package(),
        entryPoint=ENTRY,
        startupTasks=[
            {"commandLine": "sh -c 'echo first ok'", "taskType": "simple"},
            {"commandLine": "sh -c 'echo line one; echo line two >&2; exit 3'"},
            {"commandLine": "sh -c 'touch $OUT/third'"},
        ],
    )
    harness.start()
    status = harness.wait_state("failed")
    assert "startup task 2" in status["detail"]
    assert "exited with code 3" in status["detail"]
    assert "line one\nline two" in status["detail"]
    log = harness.root / "var" / "log" / "cloudservice" / "startup-2.log"
    assert "line two" in log.read_text()
    assert not (harness.out / "third").exists()
    assert harness.events() == []  # the entry point never started


def test_background_tasks_run_beside_the_role(harness: Harness) -> None:
    tasks = [
        StartupTask(command_line="sh -c 'echo simple > $OUT/simple'"),
        StartupTask(
            command_line="sh -c 'echo $$ > $OUT/background; sleep 60'", task_type="background"
        ),
    ]
    # No entry point nor tasks in the document: the manifest's are used.
    harness.configure(package=harness.package(entry_point=APP_COMMAND, startup_tasks=tasks))
    harness.start()
    harness.wait_state("ready")
    assert (harness.out / "simple").read_text() == "simple\n"
    pid = int((harness.out / "background").read_text())
    os.kill(pid, 0)  # still running beside the entry point
    harness.stop()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:  # pragma: no cover - only on failure
        raise AssertionError("the background task outlived the agent's stop")


def test_an_entry_point_that_exits_is_restarted_with_backoff(harness: Harness) -> None:
    harness.configure(
        package=harness.package(),
        entryPoint={"commandLine": "sh -c 'echo bye; echo run >> $OUT/runs; exit 4'"},
    )
    harness.start()
    status = harness.wait_for(lambda s: s["restarts"] >= 3)
    assert status["state"] in ("busy", "starting")
    busy = [s for s in harness.statuses() if s["state"] == "busy"]
    assert busy and "exited with code 4" in busy[0]["detail"]
    assert "restarting in 0.2 s" in busy[0]["detail"]
    assert any("restarting in 0.4 s" in s["detail"] for s in busy)  # doubling
    assert len((harness.out / "runs").read_text().splitlines()) >= 3
    assert not any(s["state"] == "ready" for s in harness.statuses())


def test_a_settings_change_rewrites_role_json_and_sends_sighup(harness: Harness) -> None:
    harness.configure(package=harness.package(), entryPoint=ENTRY)
    harness.start()
    harness.wait_state("ready")
    (start,) = harness.wait_events(1)
    harness.configure(settings={"Greeting": "bonjour"})
    harness.wait_state("ready", generation=2)
    events = harness.wait_events(2)
    hup = events[1]
    assert hup["event"] == "hup" and hup["pid"] == start["pid"]
    assert hup["roleJson"]["settings"] == {"Greeting": "bonjour"}
    assert hup["roleJson"]["generation"] == 2
    assert hup["roleJsonMode"] == 0o600
    assert harness.last_status()["restarts"] == 0


def test_recycle_on_configuration_change_restarts_the_role(harness: Harness) -> None:
    harness.configure(package=harness.package(), entryPoint=ENTRY, onConfigurationChange="recycle")
    harness.start()
    harness.wait_state("ready")
    (start,) = harness.wait_events(1)
    harness.configure(settings={"Greeting": "hola"})
    events = harness.wait_events(2)
    assert events[1]["event"] == "start" and events[1]["pid"] != start["pid"]
    assert events[1]["env"]["CLOUDSERVICE_SETTING_GREETING"] == "hola"
    status = harness.wait_state("ready", generation=2)
    assert status["restarts"] == 1
    assert any(s["state"] == "recycling" for s in harness.statuses())
    assert not _alive(start["pid"])


def test_the_role_can_ask_to_be_recycled(harness: Harness) -> None:
    harness.configure(package=harness.package(), entryPoint=ENTRY)
    harness.start()
    harness.wait_state("ready")
    (start,) = harness.wait_events(1)
    (harness.root / "run" / "cloudservice" / "recycle").touch()
    events = harness.wait_events(2)
    assert events[1]["event"] == "start" and events[1]["pid"] != start["pid"]
    assert harness.wait_state("ready")["restarts"] == 1
    assert not (harness.root / "run" / "cloudservice" / "recycle").exists()


def test_a_new_package_replaces_the_role_without_restarting_the_agent(harness: Harness) -> None:
    first = harness.package(version=1)
    harness.configure(package=first, entryPoint=ENTRY)
    agent = harness.start()
    before = harness.wait_state("ready")
    (start,) = harness.wait_events(1)
    second = harness.package(version=2)
    harness.configure(package=second)
    after = harness.wait_state("ready", package=second["sha256"])
    events = harness.wait_events(2)
    assert (events[1]["event"], events[1]["version"], events[1]["data"]) == ("start", 2, "data v2")
    assert not _alive(start["pid"])
    assert agent.poll() is None
    assert after["uptimeSeconds"] > before["uptimeSeconds"]
    assert after["generation"] == 2
    role_dir = harness.root / "srv" / "role"
    assert not (role_dir / first["sha256"]).exists()
    assert os.readlink(role_dir / "current") == second["sha256"]
    assert any(s["state"] == "recycling" for s in harness.statuses())


def test_setting_values_never_reach_the_console_or_the_status(harness: Harness) -> None:
    secret = "s3cret-Value-9f2"
    harness.configure(
        package=harness.package(),
        entryPoint=ENTRY,
        settings={"ApiKey": secret},
        startupTasks=[{"commandLine": "sh -c 'echo key=$CLOUDSERVICE_SETTING_APIKEY'"}],
    )
    harness.start()
    harness.wait_state("ready")
    (start,) = harness.wait_events(1)
    assert start["env"]["CLOUDSERVICE_SETTING_APIKEY"] == secret  # the role itself sees it
    # A failing task that prints it: still masked in the status detail.
    harness.configure(
        settings={"ApiKey": secret},
        startupTasks=[{"commandLine": "sh -c 'echo leaked $CLOUDSERVICE_SETTING_APIKEY; exit 1'"}],
    )
    status = harness.wait_state("failed", generation=2)
    assert "leaked ***" in status["detail"]
    console = harness.console.read_text()
    assert "key=***" in console
    assert secret not in console
    assert secret not in harness.status_channel.read_text()


def test_unsafe_package_entries_are_refused(harness: Harness) -> None:
    from .test_unpack import evil_package

    data = evil_package("content/../../escape.txt")
    harness.put_package(data)
    harness.configure(
        package={"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
        entryPoint=ENTRY,
    )
    harness.start()
    status = harness.wait_state("failed")
    assert "'..'" in status["detail"] and "refused" in status["detail"]
    assert not (harness.tmp / "escape.txt").exists()
    assert not (harness.root / "srv" / "escape.txt").exists()


def test_local_storage_is_cleaned_on_recycle(harness: Harness) -> None:
    storage = [
        {"name": "Clean", "sizeMb": 1, "cleanOnRoleRecycle": True},
        {"name": "Keep", "sizeMb": 1, "cleanOnRoleRecycle": False},
    ]
    harness.configure(package=harness.package(), entryPoint=ENTRY, localStorage=storage)
    harness.start()
    harness.wait_state("ready")
    local = harness.root / "var" / "lib" / "cloudservice" / "local"
    (local / "Clean" / "old").write_text("x")
    (local / "Keep" / "old").write_text("x")
    (harness.root / "run" / "cloudservice" / "recycle").touch()
    harness.wait_events(2)
    assert not (local / "Clean" / "old").exists()
    assert (local / "Keep" / "old").exists()
    assert stat.S_ISDIR((local / "Clean").stat().st_mode)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_set_ready_on_process_start_reports_ready_at_once(harness: Harness) -> None:
    entry = {**ENTRY, "setReadyOnProcessStart": True}
    harness.configure(package=harness.package(), entryPoint=entry)
    harness.start("--ready-after", "60")
    harness.wait_state("ready", timeout=5)


def test_an_invalid_document_is_reported_without_its_content(harness: Harness) -> None:
    harness.config_device.write_bytes(b'{"settings": {"ApiKey": "s3cret-xyz"}, oops' + b"\0" * 64)
    harness.start()
    status = harness.wait_state("failed")
    assert "not UTF-8 JSON" in status["detail"]
    assert "s3cret-xyz" not in harness.status_channel.read_text() + harness.console.read_text()
    harness.configure(package=harness.package(), entryPoint=ENTRY)
    harness.wait_state("ready")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_role_processes_run_as_the_role_user_unless_elevated() -> None:
    base = Path(tempfile.mkdtemp(prefix="agent-user-"))  # traversable by the role user
    try:
        base.chmod(0o755)
        harness = Harness(base)
        harness.out.chmod(0o777)
        report = "sh -c 'echo $(id -u) $(stat -c %u:%a $CLOUDSERVICE_ROLE_ENVIRONMENT) > $OUT/{}'"
        harness.configure(
            package=harness.package(),
            entryPoint={"commandLine": report.format("entry") + " && exec sleep 60"},
            startupTasks=[
                {"commandLine": report.format("elevated"), "executionContext": "elevated"}
            ],
        )
        harness.start(user="nobody")
        try:
            harness.wait_state("ready")
        finally:
            harness.stop()
        nobody = pwd.getpwnam("nobody").pw_uid
        assert (harness.out / "entry").read_text().split() == [str(nobody), f"{nobody}:600"]
        assert (harness.out / "elevated").read_text().split()[0] == "0"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_unconnected_status_channel_never_blocks_the_agent(harness: Harness) -> None:
    harness.status_channel.unlink()
    os.mkfifo(harness.status_channel)  # no reader: opening it for writing gives ENXIO
    harness.configure(package=harness.package(), entryPoint=ENTRY)
    harness.start()
    harness.wait_events(1)
    fd = os.open(harness.status_channel, os.O_RDONLY | os.O_NONBLOCK)  # the host connects
    try:
        deadline = time.monotonic() + 5
        data = b""
        while b"\n" not in data and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                data += os.read(fd, 65536)
            time.sleep(0.05)
    finally:
        os.close(fd)
    assert json.loads(data.split(b"\n")[0])["role"] == "Web"


def test_certificates_are_files_for_the_role_and_change_in_place(harness: Harness) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\nKEY-7d1e5b9c\n"
    certificate = {
        "name": "SiteCert",
        "storeName": "My",
        "permissionLevel": "limitedOrElevated",
        "thumbprint": "ab" * 20,
        "pem": pem,
    }
    harness.configure(package=harness.package(), entryPoint=ENTRY, certificates=[certificate])
    harness.start()
    harness.wait_state("ready")
    (start,) = harness.wait_events(1)
    path = Path(start["env"]["CLOUDSERVICE_CERTIFICATE_SITECERT"])
    assert path.read_text() == pem and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert start["roleJson"]["certificates"] == [
        {"name": "SiteCert", "storeName": "My", "thumbprint": "ab" * 20,
         "path": "certificates/MY/SiteCert.pem"}
    ]  # fmt: skip
    # A new certificate is a configuration change: the role is signalled, not restarted.
    harness.configure(certificates=[{**certificate, "pem": pem.replace("KEY-7d1e", "KEY-2222")}])
    harness.wait_state("ready", generation=2)
    assert harness.wait_events(2)[1]["event"] == "hup"
    assert "KEY-2222" in path.read_text()
    # The key never reaches the console or the status channel.
    assert "KEY-7d1e5b9c" not in harness.console.read_text()
    assert all("KEY-" not in json.dumps(s) for s in harness.statuses())
