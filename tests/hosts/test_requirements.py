"""Every host path stops first, and clearly, on a missing or untested host library: the error names
the package, the version found and the command that installs a tested one."""

from __future__ import annotations

from importlib import metadata

import pytest
from helpers.processes import run_code

from sfrik_plugin.hosts import requirements
from sfrik_plugin.hosts.requirements import HOSTS, HostError, require_host


def fake_versions(monkeypatch, versions: dict[str, str | None]) -> None:
    real = metadata.version

    def version(package: str) -> str:
        if package in versions:
            found = versions[package]
            if found is None:
                raise metadata.PackageNotFoundError(package)
            return found
        return real(package)

    monkeypatch.setattr(requirements.metadata, "version", version)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_missing_host_names_the_package_and_the_command(monkeypatch, host):
    package = HOSTS[host][0].package
    fake_versions(monkeypatch, {r.package: r.minimum for r in HOSTS[host]} | {package: None})
    with pytest.raises(HostError, match=f"needs {package}>=.*not installed.*pip install --no-build-isolation") as error:
        require_host(host)
    assert f'".[{host}]"' in str(error.value)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_an_untested_version_is_refused_unless_allowed(monkeypatch, host):
    requirement = HOSTS[host][-1]
    fake_versions(monkeypatch, {r.package: r.minimum for r in HOSTS[host]} | {requirement.package: "99.0.0"})
    with pytest.raises(
        HostError, match=f"tested with {requirement.package}>=.*{requirement.package} 99.0.0 is installed"
    ):
        require_host(host)
    monkeypatch.setenv(requirements.ALLOW_UNTESTED_ENV, "1")
    with pytest.warns(UserWarning, match="99.0.0"):
        require_host(host)


def test_tested_versions_pass_and_bounds_are_release_numbers(monkeypatch):
    fake_versions(monkeypatch, {"lightly": "1.6.0", "pytorch-lightning": "2.6.6"})
    require_host("lightly")
    assert requirements._release("2.6.6.post1") == (2, 6, 6)
    assert requirements._release("1.7.0rc1") == (1, 7, 0)
    assert not requirements._within("1.7.0rc1", HOSTS["lightly"][0])
    assert requirements._within("0.1.8", HOSTS["stable-pretraining"][0])
    with pytest.raises(ValueError, match="host must be one of"):
        require_host("vissl")


@pytest.mark.fresh_interpreter
def test_importing_the_lightly_adapter_without_lightly_names_the_fix():
    # lightly reported missing to the version check of a fresh interpreter
    code = """
import sys
from importlib import metadata
real = metadata.version
def version(package):
    if package == "lightly":
        raise metadata.PackageNotFoundError(package)
    return real(package)
metadata.version = version
try:
    import sfrik_plugin.hosts.lightly
except ImportError as error:
    print(type(error).__name__, error)
"""
    proc = run_code(code)
    assert "HostError SFRIK's lightly adapter needs lightly>=1.6.0,<1.7, which is not installed" in proc.stdout


def test_the_extras_install_what_the_check_requires():
    from pathlib import Path

    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for host, needed in HOSTS.items():
        assert extras[host] == [f"{r.package}>={r.minimum},<{r.below}" for r in needed], host
