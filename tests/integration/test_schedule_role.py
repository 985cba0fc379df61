"""roles/schedule (schedule.yml): scheduled runs as systemd units or cron entries, installed into temporary dirs."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO, Run, playbook

pytestmark = pytest.mark.slow

INVENTORY = REPO / "inventory" / "hosts.yml"
USER = pwd.getpwuid(os.getuid()).pw_name
ODD_ARGS = ["-e", "fleet_backup_keep_last=14", "-e", "note=50% of $HOME \"quoted\" 'x' \\ ;"]


def settings(root: Path, manager: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "schedule_manager": manager,
        "schedule_unit_dir": str(root / "systemd"),
        "schedule_cron_file": str(root / "cron.d" / "alembic-fleet"),
        "schedule_logrotate_file": str(root / "logrotate.d" / "alembic-fleet"),
        "schedule_log_dir": str(root / "log"),
        "schedule_env_file": str(root / "env"),
        "schedule_lock_file": str(root / "lock" / "schedule.lock"),
        "schedule_enable": False,
    }
    values.update(extra)
    return values


def install(root: Path, values: dict[str, Any], *args: str) -> Run:
    path = root / "vars.json"
    path.write_text(json.dumps(values))
    return playbook(REPO / "schedule.yml", INVENTORY, "-e", "@%s" % path, *args)


def make_root(tmp_path: Path, env_mode: int = 0o600) -> Path:
    root = tmp_path / "host"
    for directory in ("cron.d", "logrotate.d"):
        (root / directory).mkdir(parents=True)
    env = root / "env"
    env.write_text("FLEET_PROD_DB_PASSWORD=s3cret-from-env-file\n")
    env.chmod(env_mode)
    return root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"") for p in sorted(root.rglob("*"))}


def unit_value(text: str, key: str) -> str:
    match = re.search(r"^%s=(.*)$" % re.escape(key), text, re.M)
    assert match, "%s= missing in\n%s" % (key, text)
    return match.group(1)


def systemd_words(value: str) -> list[str]:
    """Split an ExecStart= value as systemd does for what the template writes (double quotes, %% and $$)."""
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(value)]


def test_systemd_units(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    lock = root / "lock" / "schedule.lock"
    defaults_plus_one = [
        {"name": "status", "playbook": "status.yml", "limit": "prod", "on_calendar": "*-*-* 01:30:00", "cron": "30 1 * * *"},
        {"name": "backup", "playbook": "backup.yml", "limit": "prod", "on_calendar": "*-*-* 02:30:00", "cron": "30 2 * * *"},
        {"name": "restore_check", "playbook": "restore_check.yml", "limit": "prod", "on_calendar": "Sun *-*-* 05:00:00", "cron": "0 5 * * 0"},
        {"name": "odd", "playbook": "backup.yml", "limit": "dev", "on_calendar": "hourly", "cron": "@hourly", "args": ODD_ARGS},
    ]
    values = settings(root, "systemd")
    first = install(root, dict(values))  # the role's default jobs
    assert first.rc == 0, first.output[-3000:]
    units = root / "systemd"
    assert sorted(p.name for p in units.iterdir()) == sorted(
        "alembic-fleet-%s.%s" % (job, kind) for job in ("status", "backup", "restore_check") for kind in ("service", "timer")
    )
    for name, calendar, playbook_name in (
        ("status", "*-*-* 01:30:00", "status.yml"),
        ("backup", "*-*-* 02:30:00", "backup.yml"),
        ("restore_check", "Sun *-*-* 05:00:00", "restore_check.yml"),
    ):
        service = units / ("alembic-fleet-%s.service" % name)
        timer = units / ("alembic-fleet-%s.timer" % name)
        assert mode(service) == 0o644 and mode(timer) == 0o644
        text = service.read_text()
        assert systemd_words(unit_value(text, "ExecStart")) == [
            "/usr/bin/flock", "-n", "-E", "75", str(lock),
            str(REPO / ".venv" / "bin" / "ansible-playbook"), playbook_name, "-l", "prod",
        ]  # fmt: skip
        assert unit_value(text, "WorkingDirectory") == str(REPO)
        assert unit_value(text, "EnvironmentFile") == str(root / "env")
        assert unit_value(text, "User") == USER
        assert unit_value(text, "Type") == "oneshot"
        assert "s3cret" not in text
        assert unit_value(timer.read_text(), "OnCalendar") == calendar
        assert unit_value(timer.read_text(), "Unit") == service.name
    assert lock.exists() and mode(lock) == 0o640
    assert not (root / "cron.d" / "alembic-fleet").exists() and not (root / "log").exists()
    assert "does not exist: the jobs will fail" not in first.output

    again = install(root, values)
    assert again.rc == 0, again.output[-3000:]
    assert again.changed_total() == 0, again.output[-3000:]

    # A job with arguments that need quoting; then dropping it removes its units.
    values["schedule_jobs"] = defaults_plus_one
    odd = install(root, values)
    assert odd.rc == 0, odd.output[-3000:]
    words = systemd_words(unit_value((units / "alembic-fleet-odd.service").read_text(), "ExecStart"))
    assert words[-7:] == ["backup.yml", "-l", "dev", *ODD_ARGS]
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in units.iterdir())], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert verify.stderr.strip() == "", verify.stderr
    values["schedule_jobs"] = defaults_plus_one[:3]
    dropped = install(root, values)
    assert dropped.rc == 0, dropped.output[-3000:]
    assert not (units / "alembic-fleet-odd.service").exists() and not (units / "alembic-fleet-odd.timer").exists()
    assert len(list(units.iterdir())) == 6


def test_cron_entries_run_one_at_a_time_with_the_env_file(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    lock = root / "lock" / "schedule.lock"
    # A stand-in for ansible-playbook that records what it was given.
    stub = root / "bin" / "ansible-playbook"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nprintf "%%s\\n" "$PWD" "$FLEET_PROD_DB_PASSWORD" "$@" > %s\n' % (root / "argv"))
    stub.chmod(0o755)
    jobs = [
        {"name": "status", "playbook": "status.yml", "limit": "prod", "on_calendar": "daily", "cron": "30 1 * * *"},
        {"name": "odd", "playbook": "backup.yml", "limit": "dev", "cron": "@weekly", "args": ODD_ARGS},
    ]
    values = settings(root, "cron", schedule_jobs=jobs, schedule_ansible_playbook=str(stub))
    # Units left by an earlier systemd install of this role are removed: a job never runs twice.
    systemd_first = install(root, settings(root, "systemd"))
    assert systemd_first.rc == 0, systemd_first.output[-3000:]
    assert len(list((root / "systemd").iterdir())) == 6

    first = install(root, values)
    assert first.rc == 0, first.output[-3000:]
    assert list((root / "systemd").iterdir()) == []
    cron_file = root / "cron.d" / "alembic-fleet"
    assert mode(cron_file) == 0o644
    text = cron_file.read_text()
    assert text.endswith("\n") and "s3cret" not in text
    entries = [line for line in text.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(entries) == 2, text
    status_line, odd_line = entries
    assert status_line.startswith("30 1 * * * %s " % USER)
    assert odd_line.startswith("@weekly %s " % USER)
    assert "/usr/bin/flock -n -E 75 %s %s status.yml -l prod;" % (lock, stub) in status_line
    assert ">>%s 2>&1" % (root / "log" / "status.log") in status_line
    assert mode(root / "log") == 0o750
    logrotate = (root / "logrotate.d" / "alembic-fleet").read_text()
    assert "%s/*.log {" % (root / "log") in logrotate and "rotate 12" in logrotate
    assert mode(root / "logrotate.d" / "alembic-fleet") == 0o644

    again = install(root, values)
    assert again.rc == 0, again.output[-3000:]
    assert again.changed_total() == 0, again.output[-3000:]

    # Run the entries as cron would: the part after the user, \% -> %, with /bin/sh.
    def run_entry(line: str, fields: int) -> None:
        command = line.split(" ", fields + 1)[fields + 1].replace("\\%", "%")
        subprocess.run(["/bin/sh", "-c", command], check=True, cwd="/", env={"PATH": "/usr/bin:/bin"})

    run_entry(odd_line, 1)
    recorded = (root / "argv").read_text().splitlines()
    assert recorded[:2] == [str(REPO), "s3cret-from-env-file"]  # working directory; password from the env file
    assert "\n".join(recorded[2:]) == "\n".join(["backup.yml", "-l", "dev", *ODD_ARGS])
    log = root / "log" / "odd.log"
    assert mode(log) == 0o640
    assert log.read_text().splitlines()[-1] == "=== exit 0"

    (root / "argv").unlink()
    with open(lock) as held:  # another run holds the lock: this one is skipped at once, exit 75
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        run_entry(status_line, 5)
    assert not (root / "argv").exists()
    assert (root / "log" / "status.log").read_text().splitlines()[-1] == "=== exit 75"


@pytest.mark.parametrize("manager", ["systemd", "cron"])
def test_check_diff_on_a_fresh_host_writes_nothing(tmp_path: Path, manager: str) -> None:
    root = make_root(tmp_path)
    before = tree(root)
    run = install(root, settings(root, manager), "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    after = tree(root)
    after.pop(str(root / "vars.json"))
    assert after == before
    assert run.changed_total() > 0
    if manager == "systemd":
        assert "+ExecStart=/usr/bin/flock -n -E 75 %s" % (root / "lock" / "schedule.lock") in run.output
        assert "+OnCalendar=*-*-* 02:30:00" in run.output
    else:
        assert re.search(r"^\+30 2 \* \* \* %s .*backup\.yml -l prod" % re.escape(USER), run.output, re.M)
        assert "+%s/*.log {" % (root / "log") in run.output


def test_refusals(tmp_path: Path) -> None:
    root = make_root(tmp_path, env_mode=0o644)
    run = install(root, settings(root, "systemd"))
    assert run.rc != 0
    assert "holds the database passwords but is mode 0644" in " ".join(run.output.split())
    assert not (root / "systemd").exists()

    (root / "env").unlink()
    missing = install(root, settings(root, "systemd"), "--check")
    assert missing.rc == 0, missing.output[-3000:]
    assert "does not exist: the jobs will fail until it does" in " ".join(missing.output.split())

    bad_cron = install(root, settings(root, "cron", schedule_jobs=[{"name": "x", "playbook": "status.yml", "cron": "nightly"}]))
    assert bad_cron.rc != 0 and "cron (five fields" in bad_cron.output

    bad_name = install(root, settings(root, "cron", schedule_jobs=[{"name": "a b", "playbook": "status.yml", "cron": "@daily"}]))
    assert bad_name.rc != 0 and "unique names" in " ".join(bad_name.output.split())

    unknown = install(root, settings(root, "upstart"), "--check")
    assert unknown.rc != 0 and "schedule_manager" in unknown.output and "auto, systemd, cron" in " ".join(unknown.output.split())

    enable = install(root, settings(root, "systemd", schedule_enable=True), "--check")
    assert enable.rc != 0 and "schedule_enable needs systemd running" in " ".join(enable.output.split())

    if shutil.which("systemd-analyze"):
        jobs = [{"name": "x", "playbook": "status.yml", "on_calendar": "every full moon"}]
        bad_calendar = install(root, settings(root, "systemd", schedule_jobs=jobs))
        assert bad_calendar.rc != 0 and "OnCalendar=every full moon is not valid" in " ".join(bad_calendar.output.split())
    assert not (root / "systemd").exists() and not (root / "cron.d" / "alembic-fleet").exists()
