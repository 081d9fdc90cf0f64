"""WebRole/WorkerRole check: certificates are the ones the configuration names, by thumbprint."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from cloudservice.resources._package_role import _check_certificates, _check_package


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and its key, and the certificate's SHA-1 thumbprint."""
    work = tmp_path_factory.mktemp("cert")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=cloudservice-test", "-keyout", str(work / "key.pem"),
         "-out", str(work / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    fingerprint = subprocess.run(
        ["openssl", "x509", "-in", str(work / "cert.pem"), "-noout", "-fingerprint", "-sha1"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    thumbprint = fingerprint.split("=", 1)[1].strip().replace(":", "").lower()
    text = (work / "cert.pem").read_text() + (work / "key.pem").read_text()
    return text, thumbprint


def _certificate(**fields: Any) -> dict[str, Any]:
    return {"name": "SiteCert", "thumbprint": "00" * 20, "pem": "", **fields}


def test_the_certificate_with_the_configured_thumbprint_passes(pem: tuple[str, str]) -> None:
    text, thumbprint = pem
    assert _check_certificates([_certificate(pem=text, thumbprint=thumbprint.upper())]) == []


def test_another_certificate_is_named_with_both_thumbprints_and_not_shown(
    pem: tuple[str, str],
) -> None:
    text, thumbprint = pem
    ((where, reason),) = _check_certificates([_certificate(pem=text)])
    assert where == "certificates[0]"
    assert f"its SHA-1 thumbprint is {thumbprint}" in reason and "00" * 20 in reason
    assert "PRIVATE KEY" not in reason and text.splitlines()[1] not in reason


def test_a_missing_certificate_says_how_to_add_it() -> None:
    ((_, reason),) = _check_certificates([_certificate()])
    assert "pulumi config set --secret --path 'certificates." + "00" * 20 in reason


def test_a_pem_without_a_certificate_is_refused() -> None:
    ((_, reason),) = _check_certificates([_certificate(pem="-----BEGIN PRIVATE KEY-----\n")])
    assert "no PEM certificate" in reason


@pytest.mark.parametrize(
    "path, problem",
    [
        ("web.cspkg", "web.cspkg is not an absolute path"),
        ("/no/such/web.cspkg", "/no/such/web.cspkg does not exist"),  # absolute: not "relative"
        ("/", "/ is a directory, not a file"),
    ],
)
def test_a_package_path_that_cannot_be_read_says_why(path: str, problem: str) -> None:
    assert _check_package(path) == ({}, problem)
