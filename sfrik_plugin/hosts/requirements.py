"""Which versions of each host library the adapters were tested with, checked before any work.

A host path (sfrik_plugin.hosts.lightly, .stable_pretraining) calls require_host first: a host
that is not installed, or installed at a version outside the tested range, stops with a HostError
naming the package, the version found, and the command that installs a tested one. An untested
version can be allowed with SFRIK_ALLOW_UNTESTED_HOSTS=1 (then a warning names it instead).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import metadata

__all__ = ["HostError", "HostRequirement", "HOSTS", "require_host", "ALLOW_UNTESTED_ENV"]

ALLOW_UNTESTED_ENV = "SFRIK_ALLOW_UNTESTED_HOSTS"


class HostError(ImportError):
    """A host library is missing or at a version the plugin was not tested with."""


@dataclass(frozen=True)
class HostRequirement:
    """A distribution a host path needs: tested from `minimum` (inclusive) to `below` (exclusive)."""

    package: str
    minimum: str
    below: str

    def describe(self) -> str:
        return f"{self.package}>={self.minimum},<{self.below}"


# What each host needs, as tested (README, "Hosts"); the extras in pyproject.toml install these.
HOSTS: dict[str, tuple[HostRequirement, ...]] = {
    "lightly": (
        HostRequirement("lightly", "1.6.0", "1.7"),
        HostRequirement("pytorch-lightning", "2.4", "2.7"),
    ),
    "stable-pretraining": (
        HostRequirement("stable-pretraining", "0.1.8", "0.2"),
        HostRequirement("lightning", "2.4", "2.7"),
    ),
}

# The command that installs the plugin with a tested host into the current environment.
_INSTALL = {
    host: f'run `pip install --no-build-isolation -e ".[{host}]"` in the sfrik-plugin checkout' for host in HOSTS
}


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string (1.6.0rc1 -> (1, 6, 0)); enough for these bounds."""
    parts: list[int] = []
    for piece in version.split("+")[0].split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts)


def _within(version: str, requirement: HostRequirement) -> bool:
    found = _release(version)
    return _release(requirement.minimum) <= found < _release(requirement.below)


def require_host(host: str) -> None:
    """Checks that `host`'s packages are installed at tested versions; HostError naming the fix."""
    if host not in HOSTS:
        raise ValueError(f"host must be one of {sorted(HOSTS)}, got {host!r}")
    for requirement in HOSTS[host]:
        try:
            version = metadata.version(requirement.package)
        except metadata.PackageNotFoundError:
            raise HostError(
                f"SFRIK's {host} adapter needs {requirement.describe()}, which is not installed: {_INSTALL[host]}"
            ) from None
        if _within(version, requirement):
            continue
        message = (
            f"SFRIK's {host} adapter was tested with {requirement.describe()}, but {requirement.package} "
            f"{version} is installed: {_INSTALL[host]}, or set {ALLOW_UNTESTED_ENV}=1 to try this version"
        )
        if os.environ.get(ALLOW_UNTESTED_ENV) == "1":
            warnings.warn(message, stacklevel=2)
        else:
            raise HostError(message)
