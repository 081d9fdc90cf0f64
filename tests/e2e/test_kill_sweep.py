"""The kill sweep: `kill -9` of `pulumi`, then of the provider, across a whole rolling update.

Two stories, each a role of 2 instances in 2 update domains moving between two releases:
a VM role between two images (a differencing layer and a reimage per instance), and a Web role
between two packages (a package medium, then each instance's media swapped in place). Each
point's recovery leaves the role on the release it was moving to, and the next point moves it
back, so no point needs an unkilled rollout of its own. Each `up` is killed at an evenly
spaced moment of the time an uninterrupted update takes (measured first); then the user's
recovery: `pulumi cancel` when the CLI left its lock, then `pulumi up`. After each recovery,
every instance serves the image, the state agrees with the host on every instance and layer,
the host holds nothing the state does not, and a second `up` changes nothing. Destroy at the
end leaves nothing. The stack reaches libvirt by a URI set as a secret: no state file and no
output of any run holds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudservice.virt import Host
from pulumi import automation as auto

from .project import BIN, REPO

POINTS = 8  # per series: the "at least 8"
# The local libvirtd by its socket: a URI of its own, to find if it leaks.
SECRET_URI = "qemu+unix:///system?socket=/run/libvirt/libvirt-sock"
IMAGES = {"v1": REPO / ".cache/images/web-v1.vhd", "v2": REPO / ".cache/images/web-v2.vhd"}
# The sample's Web role alone: the Web story's service.
WEB_SERVICE = """
apiVersion: cloudservice.model/v1
definition:
  name: sweep
  updateDomainCount: 2
  loadBalancerProbes:
    - {name: WebHealth, protocol: http, path: /health, intervalInSeconds: 5, timeoutInSeconds: 11}
  roles:
    - name: Web
      kind: web
      vmSize: ExtraSmall
      inputEndpoints:
        - {name: HttpIn, protocol: http, port: 80, localPort: 8080, loadBalancerProbe: WebHealth}
      internalEndpoints:
        - {name: Work, protocol: http, port: 8081}
      settings:
        - {name: Greeting}
      entryPoint: {commandLine: python3 app.py}
configuration:
  serviceName: sweep
  osFamily: debian-12
  osVersion: "*"
  upgradeMode: auto
  roles:
    - {name: Web, instances: 2, settings: {Greeting: hello}}
artifacts:
  Web: {package: roles/web}
"""


@dataclass(frozen=True)
class Story:
    """A role, and how the stack moves it to a release ("v1" or "v2")."""

    kind: str  # the role resource's type token
    use: Callable[[auto.Stack, str], None]
    # What an instance serves -> the release it runs.
    release_of: Callable[[str], str]
    # Volumes of an instance besides its overlay (a Web role's configuration medium).
    media: str = ""
    page: str = ""  # the path of the page that names the release


def _vm_story(stack: auto.Stack, work: Path) -> Story:
    stack.set_config("webInstances", auto.ConfigValue("2"))

    def use(stack: auto.Stack, release: str) -> None:
        stack.set_config("webImage", auto.ConfigValue(str(IMAGES[release])))

    def release_of(page: str) -> str:
        return page.split("<h1>cloudservice web ", 1)[1].split("<", 1)[0]

    return Story("cloudservice:index:VmRole", use, release_of, page="index.html")


def _web_story(stack: auto.Stack, work: Path) -> Story:
    stack.remove_config("webImage")
    stack.remove_config("webInstances")
    (Path(stack.workspace.work_dir) / "sample" / "web-sweep.yaml").write_text(WEB_SERVICE)
    stack.set_config("serviceFile", auto.ConfigValue("sample/web-sweep.yaml"))
    with socket.socket() as probe:  # the front door's port: one nobody else uses
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stack.set_config("frontDoorPorts", auto.ConfigValue(json.dumps({"Web.HttpIn": port})))
    packages = {}
    for release in ("v1", "v2"):
        packages[release] = work / f"web-{release}"
        shutil.copytree(REPO / "sample" / "roles" / "web", packages[release])
        app = packages[release] / "app.py"
        app.write_text(app.read_text().replace('VERSION = "v1"', f'VERSION = "{release}"'))

    def use(stack: auto.Stack, release: str) -> None:
        stack.set_config("packages.Web", auto.ConfigValue(str(packages[release])), path=True)

    def release_of(page: str) -> str:
        return page.split(":", 1)[0].removeprefix("web ")  # "web v2: hello from Web_IN_0"

    return Story("cloudservice:index:WebRole", use, release_of, media=r"-config-\d+\.raw")


STORIES = {"vm-role-image": _vm_story, "web-role-package": _web_story}


@dataclass
class Sweep:
    kills: int = 0
    survived: int = 0
    cancels: int = 0
    leaked: list[str] = field(default_factory=list)


class Cli:
    """The pinned `pulumi` on the stack, as a person runs it in a shell."""

    def __init__(self, stack: auto.Stack) -> None:
        self.stack = stack
        self.env = {**os.environ, **stack.workspace.env_vars, "PULUMI_SKIP_UPDATE_CHECK": "1"}
        self.printed: list[str] = []  # everything every run printed

    def argv(self, *args: str) -> list[str]:
        return [str(BIN / "pulumi"), *args, "--stack", self.stack.name, "--non-interactive"]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.stack.workspace.work_dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a kill of `pulumi` alone, as from another terminal
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args),
            cwd=self.stack.workspace.work_dir,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        self.printed += [done.stdout, done.stderr]
        return done


def _descendants(pid: int) -> Iterator[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        yield child
        stack.extend(children.get(child, []))


def _provider_pid(cli_pid: int) -> int | None:
    """The cloudservice provider plugin among the CLI's descendants: python running the
    repository's provider directory."""
    provider = str(REPO / "provider")
    for pid in _descendants(cli_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv if word]
        if words and "python" in Path(words[0]).name and any(provider in w for w in words[1:]):
            return pid
    return None


def _kill_at(process: subprocess.Popen[str], target: str, moment: float) -> bool:
    """Kill `pulumi` or its provider `moment` seconds after the CLI started (the provider as
    soon as it runs, if it was not up yet); False when the update ended first."""
    started = time.monotonic()
    while time.monotonic() - started < moment:
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    while process.poll() is None:
        pid = process.pid if target == "pulumi" else _provider_pid(process.pid)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            return True
        time.sleep(0.05)
    return False


def _role(stack: auto.Stack, story: Story) -> dict[str, Any]:
    resources = stack.export_stack().deployment.get("resources", [])
    return next(r["outputs"] for r in resources if r["type"] == story.kind)


def _serves(role: dict[str, Any], story: Story) -> list[str]:
    urls = [i["urls"][0] + story.page for i in role["instances"]]
    pages = [requests.get(url, timeout=10).text for url in urls]
    return [story.release_of(page) for page in pages]


def _disagreements(role: dict[str, Any], story: Story, host: Host, pool: str) -> list[str]:
    """Where the recorded state and the host differ, and what the host holds beyond it."""
    prefix, problems = role["name"], []
    recorded = {i["name"]: i for i in role["instances"]}
    pattern = re.compile(rf"^{re.escape(prefix)}-\d+$")
    running = {name for name in host.domain_names(f"{prefix}-") if pattern.match(name)}
    if running != set(recorded):
        problems.append(f"domains {sorted(running)} but state has {sorted(recorded)}")
    for name, instance in recorded.items():
        domain = host.domain(name)
        if domain is None or not domain.running:
            problems.append(f"{name} is recorded but does not run")
        elif domain.metadata.get("layer") != instance["layer"]:
            problems.append(f"{name} runs {domain.metadata.get('layer')}, not {instance['layer']}")
    layers = [layer["volume"] for layer in role["layers"]]
    expected = {*layers, *(f"{v}.manifest.json" for v in layers)}
    expected |= {f"{name}.qcow2" for name in recorded} | set(role.get("packages", []))
    volumes = set(host.volume_names(pool))
    for name in recorded:  # exactly one medium of each kind the instance has
        media = {v for v in volumes if story.media and re.fullmatch(f"{name}{story.media}", v)}
        if len(media) > 1:
            problems.append(f"{name} has media {sorted(media)}: one is leaked")
        expected |= media
    if volumes != expected:
        problems.append(
            f"volumes not in state: {sorted(volumes - expected)}; "
            f"in state, not on the host: {sorted(expected - volumes)}"
        )
    return problems


def _recover(cli: Cli, sweep: Sweep) -> None:
    """What a user is told to do: `pulumi cancel` if the CLI left its lock, then `up`."""
    up = cli.run("up", "--yes", "--skip-preview")
    if up.returncode != 0 and "locked" in up.stdout + up.stderr:
        cancelled = cli.run("cancel", "--yes")
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        sweep.cancels += 1
        up = cli.run("up", "--yes", "--skip-preview")
    assert up.returncode == 0, up.stdout + up.stderr


@pytest.mark.parametrize("story_name", list(STORIES))
def test_every_kill_of_pulumi_or_the_provider_converges(
    stack: auto.Stack, host: Host, tmp_path: Path, story_name: str
) -> None:
    story = STORIES[story_name](stack, tmp_path)
    stack.set_config("cloudservice:uri", auto.ConfigValue(SECRET_URI, secret=True))
    stack.set_config("healthTimeoutSeconds", auto.ConfigValue("90"))
    story.use(stack, "v1")
    cli = Cli(stack)
    first = stack.up()
    pool = first.outputs["pool"].value
    cli.printed += [first.stdout, first.stderr]

    # How long an uninterrupted update takes, whole process: the span the kills are spread over.
    # The faster of two, there and back: the first also uploads what the sweep's updates then
    # find on the host (a release's layer or package medium).
    spans = []
    for measured in ("v2", "v1"):
        story.use(stack, measured)
        started = time.monotonic()
        update = cli.run("up", "--yes", "--skip-preview")
        spans.append(time.monotonic() - started)
        assert update.returncode == 0, update.stdout + update.stderr
    span = min(spans)

    sweep, release = Sweep(), "v2"
    for target in ("pulumi", "provider"):
        for point in range(POINTS):
            story.use(stack, release)
            # Over 90% of the span: a faster run than the measured one still gets its last kill.
            moment = 0.9 * span * (point + 0.5) / POINTS
            at = f"{target} killed at {moment:.1f} s, moving to {release}"
            process = cli.start("up", "--yes", "--skip-preview")
            killed = _kill_at(process, target, moment)
            cli.printed.append(process.communicate()[0])
            sweep.kills += killed
            _recover(cli, sweep)
            role = _role(stack, story)
            assert _serves(role, story) == [release, release], at
            problems = _disagreements(role, story, host, pool)
            sweep.leaked += problems
            assert problems == [], at
            again_up = stack.up()
            cli.printed += [again_up.stdout, again_up.stderr]
            again = again_up.summary.resource_changes or {}
            assert set(again) == {"same"}, f"{at}: {again}"
            sweep.survived += killed
            release = "v2" if release == "v1" else "v1"

    print(
        f"\nkill sweep {story_name}: update span {span:.1f} s; kills survived "
        f"{sweep.survived}/{sweep.kills}; objects leaked {len(sweep.leaked)}; "
        f"hand steps: {sweep.cancels} `pulumi cancel`"
    )
    assert sweep.kills >= 2 * POINTS - 1  # a last moment may still find the update done

    names = [i["name"] for i in _role(stack, story)["instances"]]
    stack.destroy()
    assert all(host.domain(name) is None for name in names)
    assert host.pool(pool) is None
    leaked = [
        f
        for f in (tmp_path / "state").rglob("*")
        if f.is_file() and SECRET_URI.encode() in f.read_bytes()
    ]
    assert leaked == [] and not any(SECRET_URI in text for text in cli.printed)
