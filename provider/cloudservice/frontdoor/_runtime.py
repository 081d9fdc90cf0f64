"""A client of HAProxy's runtime API: one command per connection over the admin socket.

Every call has a timeout. Connection failures and HAProxy's refusals become `FrontDoorError`.
"""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

from .errors import FrontDoorError

DEFAULT_TIMEOUT = 5.0

# Answers of `set server ...` that mean it was refused (success is an empty answer).
_REFUSALS = ("No such", "Unknown", "Require", "Permission denied", "Invalid", "Missing")


class RuntimeApi:
    def __init__(self, socket_path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, command: str) -> str:
        """Send one command, return HAProxy's whole answer."""
        if "\n" in command or ";" in command:
            raise ValueError(f"one runtime API command at a time, got {command!r}")
        chunks: list[bytes] = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(command.encode() + b"\n")
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise FrontDoorError(
                f"HAProxy's runtime API at {self.socket_path} does not answer ({exc.strerror}): "
                "is the front door running? apply() a spec to start it"
            ) from exc
        except TimeoutError as exc:
            raise FrontDoorError(
                f"HAProxy's runtime API at {self.socket_path} did not answer {command!r} "
                f"within {self.timeout} s: HAProxy is stuck or overloaded; check its process"
            ) from exc
        except OSError as exc:
            raise FrontDoorError(
                f"HAProxy's runtime API at {self.socket_path} failed on {command!r}: {exc}"
            ) from exc
        return b"".join(chunks).decode(errors="replace")

    def set_server_state(self, backend: str, server: str, state: str) -> None:
        answer = self.command(f"set server {backend}/{server} state {state}").strip()
        if answer:
            raise FrontDoorError(
                f"HAProxy refused to set {backend}/{server} to {state}: {answer} "
                "(check the listener and server names against the applied spec)"
            )

    def show_stat(self) -> list[dict[str, str]]:
        """`show stat` as rows of column → value (the header's leading "# " dropped)."""
        text = self.command("show stat")
        if not text.startswith("# "):
            raise FrontDoorError(f"unexpected answer to 'show stat': {text[:200]!r}")
        return list(csv.DictReader(io.StringIO(text[2:])))

    def show_servers_state(self) -> str:
        """`show servers state`: the text HAProxy reads back with load-server-state-from-file."""
        text = self.command("show servers state")
        if not text.startswith("1\n"):
            raise FrontDoorError(f"unexpected answer to 'show servers state': {text[:200]!r}")
        return text


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Rows of a `show servers state` dump as column → value."""
    lines = text.splitlines()
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        return []
    columns = header[2:].split()
    rows = []
    for line in lines:
        if line and not line.startswith("#") and line != "1":
            rows.append(dict(zip(columns, line.split(), strict=False)))
    return rows
