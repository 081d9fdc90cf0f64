"""Errors raised by the service model, the Azure importer, role packages and the planner.

Every error has one root, so callers can catch at the level they can act on::

    ModelError
    ├── ModelUsageError (+RuntimeError)    the API was called wrongly: a bug in the caller
    ├── ValidationProblems (+ValueError)   input is invalid; carries every Problem found
    │   └── AzureFormatError               a .csdef/.cscfg file is not usable XML of that schema
    ├── UnknownVmSize (+LookupError)       a VM size name is not in the table
    └── PackageError (+ValueError)         a role package cannot be built or read
        ├── UnsafePackageEntry             absolute path, "..", escaping link, device, duplicate
        ├── PackageTooLarge                expands past the size, ratio or entry-count cap
        └── PackageCorrupt                 not an archive, or content and manifest disagree

The model never raises for the user's mistakes one at a time: it collects every `Problem`
and raises one `ValidationProblems`, so a user fixes a file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AzureFormatError",
    "ModelError",
    "ModelUsageError",
    "PackageCorrupt",
    "PackageError",
    "PackageTooLarge",
    "Problem",
    "UnknownVmSize",
    "UnsafePackageEntry",
    "ValidationProblems",
]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about the input: which file, where in it, and what to do."""

    source: str
    """The file (or document) the problem is in, e.g. ``ServiceConfiguration.cscfg``."""
    location: str
    """Element or field path inside the source, e.g. ``roles[WebRole1].instances``."""
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.location}" if self.location else self.source
        return f"{where}: {self.message}"


class ModelError(Exception):
    """Root of every error raised by ``cloudservice.model``."""

    def one_line(self) -> str:
        """The message on one line, for where an error must be one (a Pulumi program's)."""
        return _single_line(str(self))


class ModelUsageError(ModelError, RuntimeError):
    """The model's API was misused (not the user's input): fix the calling code."""


class ValidationProblems(ModelError, ValueError):
    """The input is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        # Keep the order problems were found in (file order), dropping exact duplicates.
        self.problems: list[Problem] = list(dict.fromkeys(problems))
        if not self.problems:
            raise ModelUsageError("ValidationProblems needs at least one Problem")
        count = len(self.problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found:\n{lines}")

    def one_line(self) -> str:
        """``file: key.path: what is wrong``, for each problem, joined by "; "."""
        found = "; ".join(_single_line(str(problem)) for problem in self.problems)
        return found if len(self.problems) == 1 else f"{len(self.problems)} problems: {found}"


class AzureFormatError(ValidationProblems):
    """A .csdef or .cscfg file is not well-formed XML, or not a service definition/config."""


class UnknownVmSize(ModelError, LookupError):
    """A VM size name is not in the table. The message lists the known sizes."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown VM size {name!r}: use one of {', '.join(self.known)}")

    def __str__(self) -> str:  # LookupError would otherwise quote the whole message
        return str(self.args[0])


class PackageError(ModelError, ValueError):
    """A role package cannot be built or read. The message names the file and the entry."""


class UnsafePackageEntry(PackageError):
    """An archive entry would write outside the root or create something that is not a file.

    Nothing has been extracted when this is raised: every entry is checked first.
    """


class PackageTooLarge(PackageError):
    """The archive expands past a cap (total size, compression ratio or entry count).

    Raise the cap through ``PackageLimits`` only if the package is trusted.
    """


class PackageCorrupt(PackageError):
    """The file is not a role package, or its content disagrees with its manifest. Rebuild it."""


def _single_line(text: str) -> str:
    # A parser's message may span lines (PyYAML's does): one space for each run of whitespace.
    return " ".join(text.split())
