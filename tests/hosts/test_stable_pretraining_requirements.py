"""The stable-pretraining adapter refuses, before importing the host, a stable-pretraining or a
lightning that is missing or at an untested version: a HostError naming the package, the version
and the command that installs a tested one. Runs in every environment (the host's absence is
simulated through importlib.metadata, which hosts.requirements reads)."""

import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest
import tomllib

from sfrik_plugin.hosts.requirements import ALLOW_UNTESTED_ENV, HOSTS, HostError

ADAPTER = "sfrik_plugin.hosts.stable_pretraining"
COMMAND = 'pip install --no-build-isolation -e ".[stable-pretraining]"'


def import_adapter_with(monkeypatch, versions: dict[str, str | None]):
    """Imports the adapter afresh with importlib.metadata reporting `versions` (None: not installed)."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name in versions:
            if versions[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.delitem(sys.modules, ADAPTER, raising=False)
    return importlib.import_module(ADAPTER)


def test_a_missing_stable_pretraining_names_the_package_and_the_command(monkeypatch):
    with pytest.raises(HostError) as error:
        import_adapter_with(monkeypatch, {"stable-pretraining": None})
    assert "stable-pretraining>=0.1.8,<0.2, which is not installed" in str(error.value)
    assert COMMAND in str(error.value)


@pytest.mark.parametrize(
    "package, version, tested",
    [("stable-pretraining", "0.2.1", "stable-pretraining>=0.1.8,<0.2"), ("lightning", "2.1.2", "lightning>=2.4,<2.7")],
)
def test_an_untested_version_names_it_and_the_command(monkeypatch, package, version, tested):
    # lightning 2.1.2 is solo-learn's pin: the adapter refuses it up front (docs/hosts.md).
    with pytest.raises(HostError) as error:
        import_adapter_with(monkeypatch, {"stable-pretraining": "0.1.8", package: version})
    message = str(error.value)
    assert f"tested with {tested}, but {package} {version} is installed" in message
    assert COMMAND in message and f"{ALLOW_UNTESTED_ENV}=1" in message


def test_the_extras_install_the_tested_versions():
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for host, requirements in HOSTS.items():
        assert sorted(extras[host]) == sorted(r.describe() for r in requirements), host
