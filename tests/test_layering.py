"""The architecture, as the README draws it: imports point one way, privates stay private.

model, vhd, virt, guestos, frontdoor  ->  fabric  ->  resources  ->  components  ->  programs

agent stands apart: it runs inside the guest as the top-level package ``cloudservice_agent``.
Below every layer but agent: ``cloudservice.files`` (user-given paths, atomic outputs), which
imports only the standard library, and ``cloudservice.cli``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "provider" / "cloudservice"

# What each layer may import of this project (besides itself), and whether it may use Pulumi.
ALLOWED: dict[str, tuple[set[str], bool]] = {
    "model": (set(), False),
    "vhd": (set(), False),
    "virt": (set(), False),
    "guestos": (set(), False),
    "frontdoor": (set(), False),
    "fabric": ({"model", "vhd", "virt", "guestos", "frontdoor"}, False),
    "resources": ({"model", "vhd", "virt", "guestos", "frontdoor", "fabric"}, True),
    "agent": (set(), False),
}
# Modules of the top-level package that every layer (but agent, checked below) may import.
SHARED = {"cli", "files"}


def _imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(absolute module, names imported from it) for each import in `path`."""
    root = REPO / "provider" if PACKAGE in path.parents else REPO
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "cloudservice" and len(parts) > 1 else None


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer: str) -> None:
    allowed, pulumi_ok = ALLOWED[layer]
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module, _ in _imports(path):
            other = _layer(module)
            if other not in (None, layer) and other not in allowed | SHARED:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
            if module.split(".")[0] == "pulumi" and not pulumi_ok:
                wrong.append(f"{path.relative_to(REPO)} imports pulumi")
    assert not wrong


def _sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(REPO / "components").rglob("*.py")])


def test_no_module_imports_another_packages_private_names() -> None:
    wrong = []
    for path in _sources():
        own = (
            _layer(".".join(path.relative_to(REPO / "provider").parts))
            if PACKAGE in path.parents
            else None
        )
        for module, names in _imports(path):
            other = _layer(module)
            if other is None or other == own:
                continue
            private = [p for p in module.split(".")[2:] if p.startswith("_")]
            private += [n for n in names if n.startswith("_")]
            if private:
                wrong.append(f"{path.relative_to(REPO)}: {module} {private}")
    assert not wrong


def test_components_use_only_public_names_of_the_provider() -> None:
    for path in (REPO / "components").rglob("*.py"):
        for module, _ in _imports(path):
            assert not any(part.startswith("_") for part in module.split(".")[1:]), (path, module)


def test_the_guest_agent_uses_only_itself_and_the_standard_library() -> None:
    """In the guest the agent is ``cloudservice_agent`` on a bare Debian python3: an absolute
    import of ``cloudservice`` or a third-party module would fail only there."""
    wrong = []
    for path in sorted((PACKAGE / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:  # leaves the agent package
                    wrong.append(f"{path.relative_to(REPO)}: from {'.' * node.level}{node.module}")
                continue
            else:
                continue
            for module in modules:
                if module.split(".")[0] not in sys.stdlib_module_names:
                    wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert not wrong


def test_the_shared_files_module_uses_only_the_standard_library() -> None:
    modules = [module for module, _ in _imports(PACKAGE / "files.py")]
    assert [m for m in modules if m.split(".")[0] not in sys.stdlib_module_names] == []
