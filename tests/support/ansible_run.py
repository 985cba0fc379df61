"""Run ansible-playbook / ad-hoc modules from the tests, as an operator would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Run:
    argv: list[str]
    rc: int
    output: str  # stdout + stderr

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host."""
        counters: dict[str, dict[str, int]] = {}
        for line in self.output.splitlines():
            match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
            if match:
                counters[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
        return counters

    def summary(self) -> list[str]:
        """The lines of the alembic_fleet callback's SUMMARY block (between its banner and the recap), empty ones left out."""
        assert "SUMMARY *" in self.output, "no SUMMARY block:\n%s" % self.output[-4000:]
        block = self.output.split("SUMMARY *", 1)[1].split("PLAY RECAP", 1)[0]
        return [line for line in block.splitlines()[1:] if line.strip()]

    def changed_total(self) -> int:
        return sum(c.get("changed", 0) for c in self.recap().values())


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        # The tests read Ansible's own output, task by task (ok, skipping, "FAILED! => {...}"); the tests of the
        # operator's screen (test_screen.py) ask for ansible.cfg's alembic_fleet callback themselves.
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_LOCAL_TEMP=str(Path(os.environ.get("TMPDIR", "/tmp")) / "fleet-ansible-local"),
        PATH="%s:%s" % (BIN, env.get("PATH", "")),
    )
    env.update(extra or {})
    return env


def playbook(
    playbook_path: str | Path,
    inventory: str | Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Run:
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook_path), *args]
    done = subprocess.run(argv, cwd=REPO, env=_env(env), capture_output=True, text=True, timeout=timeout)
    return Run(argv=argv, rc=done.returncode, output=done.stdout + done.stderr)


def module(
    name: str,
    module_args: Mapping[str, Any],
    *flags: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> tuple[Run, dict[str, Any]]:
    """Run one module ad hoc on localhost; returns the run and its parsed result."""
    argv, password_env = module_argv(name, module_args, *flags)
    extra = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", **password_env}
    extra.update(env or {})
    done = subprocess.run(argv, cwd=REPO, env=_env(extra), capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    result: dict[str, Any] = {}
    marker = re.search(r"^localhost \| [A-Z!]+ => \{", done.stdout, re.M)
    if marker:
        result = json.JSONDecoder().raw_decode(done.stdout[marker.end() - 1 :])[0]
    return Run(argv=argv, rc=done.returncode, output=output), result


# A literal password in the module arguments (top level or in a `databases` entry) is passed through an environment
# variable and looked up by Ansible, so that it never appears on the `ansible` command line (where `ps` would show it),
# as the README promises for every run.
MODULE_PASSWORD_VARIABLE = "FLEET_TEST_MODULE_PASSWORD"


def _hide_passwords(value: Any, env: dict[str, str]) -> Any:
    """value with each literal `password` replaced by a lookup of a variable in env that holds it."""
    if isinstance(value, list):
        return [_hide_passwords(item, env) for item in value]
    if not isinstance(value, Mapping):
        return value
    hidden = {key: _hide_passwords(item, env) for key, item in value.items()}
    password = hidden.get("password")
    if isinstance(password, str) and password and "{{" not in password:
        variable = next((name for name, known in env.items() if known == password), None)
        if variable is None:
            variable = MODULE_PASSWORD_VARIABLE + ("_%d" % len(env) if env else "")
            env[variable] = password
        hidden["password"] = "{{ lookup('ansible.builtin.env', '%s') }}" % variable
    return hidden


def module_argv(name: str, module_args: Mapping[str, Any], *flags: str) -> tuple[list[str], dict[str, str]]:
    """The `ansible localhost -m <name>` command line for one ad-hoc module run, and the environment it needs."""
    env: dict[str, str] = {}
    args = _hide_passwords(module_args, env)
    argv = [
        str(BIN / "ansible"),
        "localhost",
        "-m",
        name,
        "-a",
        json.dumps(args),
        "-e",
        "ansible_python_interpreter=%s" % sys.executable,
        *flags,
    ]
    return argv, env


def write_yaml(path: Path, data: Any) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
