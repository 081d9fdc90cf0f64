"""Errors of the guest OS builder and catalog.

    GuestOsError             root: anything about guest OS images
     ├── UnknownOsVersion     no such family or version in the catalog (also a LookupError)
     └── BuildError           a build step failed; the message names the command (RuntimeError)

Messages say what to run: usually `cloudservice os build` or `cloudservice os list`.
"""

from __future__ import annotations


class GuestOsError(Exception):
    """Something about a guest OS image failed; the message says what to do."""


class UnknownOsVersion(GuestOsError, LookupError):
    """The catalog holds no image of that family/version: build one or pick a listed one."""


class BuildError(GuestOsError, RuntimeError):
    """A build step (a tool such as mmdebstrap, mkfs or qemu-img) failed; its output is kept."""
