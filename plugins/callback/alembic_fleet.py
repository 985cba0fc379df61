"""The operator's screen for alembic-fleet runs: Ansible's default output, with less to read and nothing wrapped."""

from __future__ import annotations

DOCUMENTATION = """
    name: alembic_fleet
    type: stdout
    short_description: alembic-fleet's screen output, ending with one line per database
    description:
      - >-
        Ansible's default output (it extends the C(default) callback and takes all its options), changed in four ways
        at verbosity 0; with C(-v) and more it is the default output.
      - >-
        Each summary line of the run (a C(debug) task tagged C(fleet_summary), one line per database,
        C(<host>/<database>: <what happened>)) is kept until the end of the run and printed there, one line each,
        never wrapped, under a C(SUMMARY) banner before the recap. A host that failed gets a line for the database it
        failed at (C(FAILED - <message>)) and for each database after it (C(not reached)), from the plan the role
        sets in the fact C(fleet_summary_plan) (and, before any host runs, C(fleet_summary_plans) for every
        selected host: a host the run never reached gets C(not reached) lines).
      - >-
        A failure is one line, C(fatal: [host]: <message>), without Ansible's C(Origin) excerpt of the task's YAML
        (our refusals name the input and the fix themselves); a module that crashed is shown in full.
      - >-
        Tasks that only succeeded (C(ok) without change), skipped tasks and C(included) lines are not shown; what
        changed, what failed, warnings and the messages of C(debug) tasks are, each message line unwrapped.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout in configuration (C(stdout_callback = alembic_fleet); this repository's ansible.cfg does)
"""

from typing import Any

import ansible.constants as C
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.utils.fqcn import add_internal_fqcns

SUMMARY_TAG = "fleet_summary"
PLAN_FACT = "fleet_summary_plan"
PLANS_FACT = "fleet_summary_plans"
DEBUG_ACTIONS = frozenset(("debug", "ansible.builtin.debug", "ansible.legacy.debug"))


def _lines(message: Any) -> list[str]:
    """A debug message as display lines: a list gives one line per item; no line is wrapped."""
    items = message if isinstance(message, list) else [message]
    return [str(item) for item in items if item is not None and str(item) != ""]


class CallbackModule(DefaultCallback):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "alembic_fleet"

    def __init__(self) -> None:
        super().__init__()
        self._summary: list[str] = []
        self._plans: dict[str, list[str]] = {}  # host -> "<host>/<database>" to visit, in order (fleet_summary_plan)
        self._failures: dict[str, str] = {}  # host -> the message of its last failure
        self._failure_lines: dict[str, list[str]] = {}  # host -> that message, line by line (one per failed database)
        self._stopped = False

    # -- what is shown -------------------------------------------------------------------------------------------
    def _quiet(self) -> bool:
        return bool(self._display.verbosity < 1)

    def v2_runner_on_ok(self, result: Any) -> None:
        task = result.task
        facts = result.result.get("ansible_facts") or {}
        plan = facts.get(PLAN_FACT)
        if isinstance(plan, list):
            self._plans[result.host.get_name()] = [str(key) for key in plan]
        plans = facts.get(PLANS_FACT)
        if isinstance(plans, dict):  # every selected host's databases, before any host runs (plan_run.yml)
            for host, keys in plans.items():
                if isinstance(keys, list):
                    self._plans.setdefault(str(host), [str(key) for key in keys])
        if not self._quiet():
            super().v2_runner_on_ok(result)
            return
        if isinstance(task, TaskInclude):
            return
        if task.action in DEBUG_ACTIONS:
            self._debug(result)
            return
        if result.result.get("changed", False):
            super().v2_runner_on_ok(result)
            return
        self._handle_warnings(result.result)  # an ok task says nothing more, but its warnings are shown

    def _debug(self, result: Any) -> None:
        lines = _lines(result.result.get("msg"))
        if SUMMARY_TAG in (result.task.tags or []):
            self._summary.extend(lines)
            return
        if not lines:
            return
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        label = self.host_label(result)
        if len(lines) == 1:
            self._display.display("ok: [%s] => %s" % (label, lines[0]), color=C.COLOR_OK)
        else:
            self._display.display("ok: [%s] =>" % label, color=C.COLOR_OK)
            for line in lines:
                self._display.display("    " + line, color=C.COLOR_OK)

    def v2_runner_on_skipped(self, result: Any) -> None:
        if not self._quiet():
            super().v2_runner_on_skipped(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        if not self._quiet() or result.result.get("changed", False):
            super().v2_runner_item_on_ok(result)

    def v2_runner_item_on_skipped(self, result: Any) -> None:
        if not self._quiet():
            super().v2_runner_item_on_skipped(result)

    def v2_playbook_on_include(self, included_file: Any) -> None:
        if not self._quiet():
            super().v2_playbook_on_include(included_file)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: Any) -> None:
        if not self._quiet():
            super().v2_playbook_on_task_start(task, is_conditional)
            return
        # The default prints the banner at once; here it waits for a result worth showing (_print_task_banner).
        self._task_type_cache[task._uuid] = "TASK"
        self._last_task_name = None if self._play.strategy in add_internal_fqcns(("free", "host_pinned")) else task.get_name().strip()

    # -- failures ------------------------------------------------------------------------------------------------
    def _brief(self, outcome: dict[str, Any]) -> str | None:
        """The one-line message of an expected failure; None for a crash (a traceback, a module that died)."""
        message = outcome.get("msg")
        if not isinstance(message, str) or not message or "module_stderr" in outcome or "MODULE FAILURE" in message:
            return None
        return " ".join(message.split())

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._failures[result.host.get_name()] = self._brief(result.result) or "failed (see above)"
            message = result.result.get("msg")
            self._failure_lines[result.host.get_name()] = [" ".join(line.split()) for line in message.splitlines()] if isinstance(message, str) else []
        brief = self._brief(result.result) if self._quiet() else None
        if brief is None or (result.task.loop and "results" in result.result):
            super().v2_runner_on_failed(result, ignore_errors)
            return
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        self._handle_warnings(result.result)
        stderr = self.get_option("display_failed_stderr")
        self._display.display("fatal: [%s]: %s" % (self.host_label(result), brief), color=C.COLOR_ERROR, stderr=stderr)
        if ignore_errors:
            self._display.display("...ignoring", color=C.COLOR_SKIP)

    def v2_runner_item_on_failed(self, result: Any) -> None:
        brief = self._brief(result.result) if self._quiet() else None
        if brief is None:
            super().v2_runner_item_on_failed(result)
            return
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        self._handle_warnings(result.result)
        line = "failed: [%s] (item=%s): %s" % (self.host_label(result), self._get_item_label(result.result), brief)
        self._display.display(line, color=C.COLOR_ERROR, stderr=self.get_option("display_failed_stderr"))

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._failures[result.host.get_name()] = "unreachable: %s" % (self._brief(result.result) or "see above")
        super().v2_runner_on_unreachable(result)

    def v2_playbook_on_no_hosts_remaining(self) -> None:
        if not self._stopped:  # said once: every later play of a stopped run would say it again
            self._stopped = True
            super().v2_playbook_on_no_hosts_remaining()

    # -- the end of the run --------------------------------------------------------------------------------------
    def v2_playbook_on_stats(self, stats: Any) -> None:
        lines = self._summary_lines(stats)
        if lines:
            self._display.banner("SUMMARY")
            for line in lines:
                self._display.display(line)
            self._display.display("", screen_only=True)
        super().v2_playbook_on_stats(stats)

    def _summary_lines(self, stats: Any) -> list[str]:
        """The summary lines host by host (sorted by name, as the recap), each host's in the order they came, then
        for each database of a host's plan without a line: the one its host failed at, or one not reached."""
        by_host: dict[str, list[str]] = {}
        said: set[str] = set()
        for line in self._summary:
            key = line.split(": ", 1)[0]
            said.add(key)
            by_host.setdefault(key.split("/", 1)[0], []).append(line)
        for host in [*self._plans, *self._failures]:
            by_host.setdefault(host, [])
        lines: list[str] = []
        for host, own in sorted(by_host.items()):  # hosts finish in any order: by name, as the recap
            lines.extend(own)
            totals = stats.summarize(host) if host in stats.processed else {}
            failed = bool(totals.get("failures") or totals.get("unreachable"))
            failure = self._failures.get(host, "failed") if failed else None
            missing = [key for key in self._plans.get(host, []) if key not in said]
            # A host whose databases were all finished fails once at the end, one line per database that failed.
            own_lines = {line.split(": ", 1)[0]: line for line in self._failure_lines.get(host, []) if failed and line.startswith(host + "/")}
            stopped_at = None
            for key in missing:
                if key in own_lines:
                    lines.append("%s: FAILED - %s" % (key, own_lines[key].removeprefix(key + ": ")))
                    stopped_at = stopped_at or key.split("/", 1)[1]
                elif failure is not None and stopped_at is None:
                    stopped_at = key.split("/", 1)[1]
                    message = failure.removeprefix(key + ": ")
                    lines.append("%s: FAILED - %s" % (key, message))
                elif stopped_at is not None:
                    lines.append("%s: not reached (the run on %s stopped at %s)" % (key, host, stopped_at))
                else:
                    lines.append("%s: not reached (the run stopped before it)" % key)
            if failure is not None and not missing:
                lines.append("%s: FAILED - %s" % (host, failure))
        return lines
