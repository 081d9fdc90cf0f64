"""A Python language host for the Pulumi CLI: the `pulumi-language-python` plugin.

Why this exists: the CLI is built offline from the Go module proxy (see toolchain/setup-pulumi),
but the proxy does not serve Pulumi's own Python language host module
(`github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3`, refused at every version).
The CLI needs a language host to run Python programs and Python provider plugins, so this file
serves the same gRPC `LanguageRuntime` protocol with the SDK's generated stubs.

What it does, like the upstream host:
- `Run` starts Pulumi's own `pulumi-language-python-exec` (copied at setup from the SDK Go module
  at the pinned version) in the project's virtualenv, with config in `PULUMI_CONFIG` and
  `PULUMI_CONFIG_SECRET_KEYS`.
- `RunPlugin` starts `python <plugin dir>` (its `__main__.py`) in the virtualenv named by the
  plugin's `PulumiPlugin.yaml` options, streaming stdout (where the plugin prints its port) and
  stderr back to the engine.
What it leaves out: dependency installation (`make setup` builds the virtualenv), code generation
and packing; those RPCs answer UNIMPLEMENTED, which the CLI tolerates for `up`, `preview`,
`refresh` and `destroy`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

VERSION = os.environ.get("CLOUDSERVICE_PULUMI_VERSION", "3.260.0")
# Set by the launcher that toolchain/setup-pulumi.sh writes next to the CLI.
EXEC_SCRIPT = Path(os.environ.get("CLOUDSERVICE_PYTHON_EXEC", "pulumi-language-python-exec"))
# The exit code with which the exec script says it already showed the user an error.
USER_ACTIONABLE_EXIT = 32


def _python_for(info: Any, base: str) -> str:
    """The interpreter of the virtualenv named in the runtime options, relative to `base`."""
    options = dict(info.options.items()) if info is not None and info.HasField("options") else {}
    venv = options.get("virtualenv") or os.environ.get("VIRTUAL_ENV")
    if not venv:
        return sys.executable
    venv_path = Path(venv) if os.path.isabs(venv) else Path(base, venv)
    python = venv_path / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"the virtualenv {venv_path} has no bin/python: run `make setup` to create it"
        )
    return str(python)


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address

    def Handshake(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC names)
        self.engine_address = request.engine_address or self.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return plugin_pb2.PluginInfo(version=VERSION)

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:  # noqa: N802
        # Plugins are resolved when a program registers resources; ours is named by path in
        # Pulumi.yaml, so nothing needs downloading up front (nothing could be, offline).
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.GetRequiredPackagesResponse()

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:  # noqa: N802
        # `make setup` owns the virtualenv; say so instead of pretending to install.
        yield language_pb2.InstallDependenciesResponse(
            stdout=b"dependencies are installed by `make setup`\n"
        )

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.GetProgramDependenciesResponse()

    def About(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.AboutResponse(executable=sys.executable, version=sys.version.split()[0])

    def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.RuntimeOptionsResponse()

    def Run(self, request: Any, context: Any) -> Any:  # noqa: N802
        info = request.info
        root = info.root_directory or request.pwd
        try:
            python = _python_for(info, root)
        except FileNotFoundError as exc:
            return language_pb2.RunResponse(error=str(exc))
        program = request.program or info.program_directory or "."
        args = [python, "-u", str(EXEC_SCRIPT)]
        for flag, value in (
            ("monitor", request.monitor_address),
            ("engine", self.engine_address),
            ("project", request.project),
            ("stack", request.stack),
            ("pwd", request.pwd),
            ("dry_run", "true" if request.dryRun else "false"),
            ("parallel", str(request.parallel)),
            ("organization", request.organization),
            ("root_directory", info.root_directory),
        ):
            if value:
                args += [f"--{flag}", value]
        args += [program, *request.args]
        env = dict(os.environ)
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config.items()))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        # The program's own output goes straight to the engine's console, as upstream does.
        code = subprocess.call(args, env=env, cwd=request.pwd or None)
        if code == 0:
            return language_pb2.RunResponse()
        if code == USER_ACTIONABLE_EXIT:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {code}")

    def RunPlugin(self, request: Any, context: Any) -> Iterator[Any]:  # noqa: N802
        info = request.info
        plugin_dir = info.program_directory or request.program
        python = _python_for(info, plugin_dir)
        env = dict(item.split("=", 1) for item in request.env if "=" in item)
        process = subprocess.Popen(
            [python, "-u", plugin_dir, *request.args],
            cwd=request.pwd or plugin_dir,
            env=env or None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        yield from _stream(process)


def _stream(process: subprocess.Popen[bytes]) -> Iterator[Any]:
    """Relay a child's stdout and stderr as RunPluginResponse messages, then its exit code."""
    messages: queue.Queue[Any] = queue.Queue()

    def pump(pipe: Any, field: str) -> None:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            messages.put(language_pb2.RunPluginResponse(**{field: chunk}))
        messages.put(None)

    assert process.stdout is not None and process.stderr is not None
    for pipe, field in ((process.stdout, "stdout"), (process.stderr, "stderr")):
        threading.Thread(target=pump, args=(pipe, field), daemon=True).start()
    open_pipes = 2
    while open_pipes:
        message = messages.get()
        if message is None:
            open_pipes -= 1
        else:
            yield message
    yield language_pb2.RunPluginResponse(exitcode=process.wait())


def main(argv: list[str]) -> int:
    # The engine address is the last positional argument (the CLI may put flags before it).
    positional = [arg for arg in argv if not arg.startswith("-")]
    engine_address = positional[-1] if positional else ""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageHost(engine_address), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The engine ends plugins with SIGINT once it is done with them: a normal way to stop.
    signal.signal(signal.SIGINT, lambda _signum, _frame: server.stop(grace=2))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
