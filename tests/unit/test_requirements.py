"""The runtime and development dependencies stay apart and fully pinned: a control node installs requirements.txt
alone, so it must hold every package the runtime ones need (read from the installed distributions' metadata) and no
test or lint tool."""

from __future__ import annotations

import re
from importlib.metadata import distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DEV_TOOLS = {"pytest", "pytest-xdist", "pytest-alembic", "molecule", "ansible-lint", "yamllint", "ruff", "mypy", "prometheus-client"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-r ")):
            continue
        assert "==" in line, "%s: %r is not pinned (name==version)" % (path.name, line)
        name, version = line.split("==", 1)
        found[canonical(name)] = version
    return found


def test_every_dependency_is_pinned_once_and_dev_builds_on_the_runtime() -> None:
    runtime, dev = pins(REPO / "requirements.txt"), pins(REPO / "requirements-dev.txt")
    assert not set(runtime) & set(dev), "pinned in both files: %s" % sorted(set(runtime) & set(dev))
    assert "-r requirements.txt" in (REPO / "requirements-dev.txt").read_text().splitlines()
    assert not DEV_TOOLS & set(runtime), sorted(DEV_TOOLS & set(runtime))
    assert DEV_TOOLS <= set(dev), sorted(DEV_TOOLS - set(dev))


def test_the_runtime_pins_hold_everything_the_runtime_needs() -> None:
    runtime = pins(REPO / "requirements.txt")
    environment = {**default_environment(), "extra": ""}
    missing = []
    for name, version in runtime.items():
        installed = distribution(name)
        assert installed.version == version, "%s: %s installed, %s pinned: run scripts/bootstrap" % (name, installed.version, version)
        for text in installed.requires or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate(environment):
                if canonical(needed.name) not in runtime:
                    missing.append("%s (needed by %s)" % (needed.name, name))
    assert not missing, "not in requirements.txt: %s" % ", ".join(sorted(missing))
