"""The root file system's own files: the role user, the init script, the agent's *.py only."""

from __future__ import annotations

from pathlib import Path

from cloudservice.guestos._build import agent_digest, customize


def test_customize_adds_user_init_and_only_the_agents_python_files(tmp_path: Path) -> None:
    root, agent = tmp_path / "root", tmp_path / "agent"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (agent / "sub").mkdir(parents=True)
    (agent / "__main__.py").write_text("print('agent')\n")
    (agent / "sub" / "x.py").write_text("")
    (agent / "notes.md").write_text("not copied")
    (agent / "__pycache__").mkdir()
    (agent / "__pycache__" / "y.py").write_text("")
    customize(root, agent, epoch=1704067200)
    lib = root / "usr" / "lib" / "cloudservice"
    copied = sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*") if p.is_file())
    assert copied == [
        "cloudservice_agent/__main__.py", "cloudservice_agent/sub/x.py", "init",
    ]  # fmt: skip
    assert (lib / "init").stat().st_mode & 0o777 == 0o755
    assert "role:x:1000:1000::/home/role:/bin/sh" in (root / "etc" / "passwd").read_text()
    assert (root / "etc" / "shadow").read_text() == "role:!:19723:0:99999:7:::\n"
    assert (root / "home" / "role").stat().st_uid == 1000
    assert agent_digest(agent) is not None and agent_digest(tmp_path / "absent") is None
    customize(root, agent, epoch=1704067200)  # idempotent: the user is added once
    assert (root / "etc" / "passwd").read_text().count("\nrole:x:") == 1
