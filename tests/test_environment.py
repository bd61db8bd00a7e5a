"""environment.yml (conda) and pyproject.toml (pip) must name the same requirements."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {line for line in pip_section if not line.startswith("-")}
    assert listed == wanted, {"only in environment.yml": listed - wanted, "only in pyproject.toml": wanted - listed}
    assert "python=3.11" in env["dependencies"]
    assert "-e ." in pip_section
