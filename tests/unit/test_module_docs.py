"""Every module's documentation renders with ansible-doc and matches its argument spec."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "library").glob("*.py"))


def ansible_doc(name: str) -> dict:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", "-t", "module", name],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[name]


def argument_spec_of(name: str) -> dict:
    """Build the module's real argument spec by importing its module_utils."""
    source = (REPO / "library" / ("%s.py" % name)).read_text()
    tree = ast.parse(source)
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("AnsibleModule", "FleetModule"))
    spec_expr = next(kw.value for kw in call.keywords if kw.arg == "argument_spec")
    namespace: dict = {}
    header = "\n".join(ast.get_source_segment(source, node) or "" for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
    exec(header, namespace)  # noqa: S102 - our own module's imports
    return eval(compile(ast.Expression(spec_expr), name, "eval"), namespace)  # noqa: S307


@pytest.mark.parametrize("name", MODULES)
def test_module_doc_renders_and_matches_argument_spec(name: str) -> None:
    doc = ansible_doc(name)
    assert doc["doc"]["short_description"]
    assert doc["examples"].strip()
    assert doc["return"]
    assert {"check_mode", "diff_mode"} <= set(doc["doc"]["attributes"])
    documented = doc["doc"]["options"]
    spec = argument_spec_of(name)
    assert set(documented) == set(spec)
    for option, settings in spec.items():
        assert documented[option]["type"] == settings.get("type", "str"), option
        assert bool(documented[option].get("required", False)) == bool(settings.get("required", False)), option
        if "default" in settings:
            assert documented[option].get("default") == settings["default"], option
        assert sorted(documented[option].get("aliases", [])) == sorted(settings.get("aliases", [])), option
        if settings.get("no_log"):
            assert option == "password"
