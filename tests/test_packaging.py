"""Package metadata: SB3 is bounded above by the newest version tested, and the dev extra does not pull in Ray."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]


def requirement(name: str, where: list[str]) -> Requirement:
    found = [r for r in map(Requirement, where) if r.name == name]
    assert len(found) == 1, f"{name} is listed {len(found)} times"
    return found[0]


@pytest.mark.parametrize("name", ["stable-baselines3", "sb3-contrib"])
def test_sb3_has_an_upper_bound_that_admits_the_tested_version(name):
    spec = requirement(name, PYPROJECT["dependencies"]).specifier
    assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), f"{name} has no upper bound: {spec}"
    assert Version(version(name)) in spec  # the version this suite runs against is inside the range
    assert Version("99.0") not in spec


def test_dev_extra_does_not_install_ray_and_the_distributed_extra_does():
    extras = PYPROJECT["optional-dependencies"]
    assert not [r for r in map(Requirement, extras["dev"]) if r.name == "ray"]
    assert "rllib" in requirement("ray", extras["distributed"]).extras
    assert requirement("hypothesis", extras["dev"])
