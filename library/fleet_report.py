#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_report
short_description: Write the fleet's status report (JSON, HTML, Markdown, Prometheus textfile) and fail when a database needs attention
description:
  - Runs on the control node once every database's status has been collected (M(alembic_status) results, each with
    the database's environment, host and name). Judges every database, writes the reports under O(report_dir), then
    fails when anything needs attention, with a stable, sorted list of reasons.
  - Files, each written atomically (a hidden temp file in the same directory, then a rename) with mode 0644 and only
    when its content changed - C(<basename>.json) (sorted keys; every database with its colour, cells, reasons and
    metrics, the summary and the reasons), C(<basename>.html) (one self-contained page, no server or network needed -
    one table per environment with id and class C(env-<environment>), a row per database, cells coloured green, amber
    or red), C(<basename>.md) (the same as a Markdown summary) and, with O(metrics_path), a Prometheus textfile for
    node_exporter's textfile collector.
  - The report carries its generation time, so the files change, and the module returns C(changed=true), on every
    run unless O(now) is fixed.
  - "B(Reasons) (red cells: the database is red and the run fails), each prefixed with
    C(<environment>/<host>/<name>:), the list sorted:"
  - "'status failed: <msg>' - the status call failed or the host was unreachable."
  - "'N revisions behind head' (or '1 revision behind head') - revisions are pending."
  - "'schema drift: <difference>' - one per schema difference that is not in the drift's C(allowed) list."
  - "'models differ from the database: <difference>' - one per model difference that is not allowed."
  - "'newest backup is 30.0 h old (limit 26 h)' - the newest backup is older than O(max_backup_age_hours)."
  - "'no backup' - the database has no backup while O(require_backup)."
  - "'last restore drill failed (<time>; <msg>)' - always, whatever O(max_drill_age_days)."
  - "'no successful restore drill in 7 days' - with O(max_drill_age_days) above 0 and no successful drill that recent."
  - "'review blocks: N errors' (or '1 error') - the review of the pending revisions blocks them."
  - "B(Amber) (worth a look, does not fail) - a field the status does not carry or cannot be read (C(unknown)),
    schema or model drift not checked, review errors or warnings that do not block, the run lock held right now,
    several heads, no successful run recorded, a backup or drill of unknown age where it is judged. These are listed
    as notes. Everything else is green. A database is red with any reason, else amber with any amber cell, else green."
  - "Metrics (gauges labelled C(environment), C(host), C(database)) - C(alembic_fleet_status_ok),
    C(alembic_fleet_needs_attention), C(alembic_fleet_pending_migrations), C(alembic_fleet_schema_drift) (1 when schema
    or model drift has a difference that is not allowed, 0 when at least one was checked and none has; absent when
    neither was checked), C(alembic_fleet_seconds_since_last_success), C(alembic_fleet_backup_age_seconds),
    C(alembic_fleet_backup_size_bytes), C(alembic_fleet_drill_success) (absent when no drill is recorded),
    C(alembic_fleet_drill_duration_seconds); plus C(alembic_fleet_report_timestamp_seconds) without labels, for a
    staleness alert. A sample whose value is unknown is left out; the file never contains NaN."
version_added: "1.0.0"
extends_documentation_fragment: [fleet.requirements]
options:
  databases:
    description:
      - One dict per database - C(environment), C(host), C(name) and the fields of the database's M(alembic_status)
        result (C(database), C(exists), C(current), C(heads), C(pending_count), C(last_runs), C(last_success),
        C(last_drill), C(lock_holder), C(backup), C(drift), C(model_drift), C(review)), or C(failed=true) and C(msg)
        when its status call failed. A result registered with C(failed_when=false) (a C(msg) but neither C(exists)
        nor C(current)) counts as failed too, and so does C(unreachable=true).
      - A database may carry its own C(max_backup_age_hours), C(require_backup) and C(max_drill_age_days); they
        override the module's options for that database (for example prod requires backups, dev does not).
      - Missing fields are shown as unknown (amber), never an error. An empty list is refused.
    type: list
    elements: dict
    required: true
  report_dir:
    description: Directory for the report files; created with mode 0755 when missing.
    type: path
    required: true
  basename:
    description: File name stem of the reports - C(<basename>.json), C(<basename>.html), C(<basename>.md).
    type: str
    default: status
  max_backup_age_hours:
    description: A newest backup older than this is a reason. V(0) does not judge the backups' age.
    type: float
    default: 26
  require_backup:
    description: Whether a database without any backup is a reason.
    type: bool
    default: true
  max_drill_age_days:
    description:
      - When above 0, a database without a successful restore drill in this many days is a reason.
      - V(0) requires no drills. A failed last drill is a reason either way.
    type: float
    default: 0
  metrics_path:
    description:
      - Write the metrics to this file in the Prometheus text format, for node_exporter's textfile collector (for
        example C(/var/lib/node_exporter/textfile_collector/alembic_fleet.prom)). Its directory must exist.
      - Left out, no metrics are written.
    type: path
  fail_on_attention:
    description:
      - Fail (after writing the reports) when any database needs attention.
      - The role's status.yml sets V(false) and fails, from RV(databases), only the hosts with a database that
        needs attention, each with its own reasons.
    type: bool
    default: true
  now:
    description: The report's time as ISO 8601 (for example V(2026-03-01T02:00:00Z)), for tests; the current time when left out.
    type: str
attributes:
  check_mode:
    support: full
    description: Judges and reports which files would change and whether it would fail; writes nothing and creates no directory.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
# On every host: each database's status, labelled with its environment, host and name.
- name: Collect every database's status
  alembic_status:
    config: "{{ item.alembic_ini }}"
    url: "{{ item.url }}"
    password: "{{ item.password }}"
  loop: "{{ fleet_databases }}"
  loop_control: {label: "{{ item.name }}"}
  register: fleet_status
  ignore_errors: true  # an unreachable database is a red line in the report, not a stop

- name: Label each status (without the loop item, which holds the password)
  ansible.builtin.set_fact:
    fleet_report_rows: "{{ fleet_report_rows | default([]) + [status | ansible.builtin.combine(labels)] }}"
  vars:
    status: "{{ item | ansible.builtin.dict2items | rejectattr('key', 'eq', 'item') | ansible.builtin.items2dict }}"
    labels: {environment: "{{ fleet_environment }}", host: "{{ inventory_hostname }}", name: "{{ item.item.name }}"}
  loop: "{{ fleet_status.results }}"
  loop_control: {label: "{{ item.item.name }}"}

# Once, on the control node.
- name: Write the nightly status report
  fleet_report:
    databases: "{{ ansible_play_hosts_all | map('extract', hostvars) | map(attribute='fleet_report_rows', default=[]) | flatten }}"
    report_dir: /srv/reports/alembic-fleet
    metrics_path: /var/lib/node_exporter/textfile_collector/alembic_fleet.prom
    max_drill_age_days: 7
  delegate_to: localhost
  run_once: true

- name: A report from a prepared list, without failing
  fleet_report:
    databases:
      - environment: prod
        host: db1
        name: equities
        current: [e5f7293c4a65]
        heads: [e5f7293c4a65]
        pending_count: 0
        backup: {created_at: "2026-03-01T01:00:00Z", size: 1048576}
    report_dir: /srv/reports/alembic-fleet
    fail_on_attention: false
"""

RETURN = r"""
summary_line:
  description: >-
    The report in one line (RV(summary) holds its counts) - C(4 databases: 1 red, 1 amber, 2 green; report <json
    path>) (C(would write) in check mode); on failure C(report failed: <message>).
  returned: always, also on failure
  type: str
  sample: "4 databases: 1 red, 1 amber, 2 green; report /srv/reports/alembic-fleet/status.json"
paths:
  description: The report files, by kind (C(json), C(html), C(markdown) and, with O(metrics_path), C(metrics)).
  returned: when the report was judged
  type: dict
  sample: {json: /srv/reports/alembic-fleet/status.json, html: /srv/reports/alembic-fleet/status.html}
changed_paths:
  description: The files whose content changed (in check mode - would change), in the order of RV(paths).
  returned: when the report was judged
  type: list
  elements: str
generated_at:
  description: The report's time (UTC, ISO 8601).
  returned: when the report was judged
  type: str
state:
  description: The worst database colour - C(green), C(amber) or C(red).
  returned: when the report was judged
  type: str
attention:
  description: Whether any database needs attention (RV(reasons) is not empty).
  returned: when the report was judged
  type: bool
summary:
  description: Number of databases, and of red, amber and green ones.
  returned: when the report was judged
  type: dict
  sample: {databases: 4, red: 1, amber: 1, green: 2}
reasons:
  description: "Why databases need attention, each C(<environment>/<host>/<name>: <reason>), sorted."
  returned: when the report was judged
  type: list
  elements: str
  sample: ["prod/db1/equities: 2 revisions behind head", "prod/db2/algorithms: no backup"]
notes:
  description: Amber findings, worth a look but no reason to fail, in the same form, sorted.
  returned: when the report was judged
  type: list
  elements: str
databases:
  description:
    - The verdict per database, sorted by environment, host and name - what a play needs to print one summary line
      per database and to fail exactly the hosts with a database that needs attention (O(fail_on_attention=false)).
  returned: when the report was judged
  type: list
  elements: dict
  contains:
    key: {description: "C(<host>/<name>).", type: str}
    environment: {description: The database's environment., type: str}
    host: {description: The database's host (the inventory hostname)., type: str}
    name: {description: The database's name., type: str}
    colour: {description: "C(green), C(amber) or C(red).", type: str}
    attention: {description: "Why it needs attention (its reasons, without the prefix); empty when it does not.", type: list, elements: str}
    notes: {description: Its amber findings, without the prefix., type: list, elements: str}
    line:
      description: >-
        Its summary, one line - C(<host>/<name>: at <revision> (head), 0 pending, backup 3.0 h old, ...) or
        C(<host>/<name>: NEEDS ATTENTION - <reason>; <reason>).
      type: str
  sample:
    - key: db2/equities
      environment: prod
      host: db2
      name: equities
      colour: red
      attention: ["2 revisions behind head"]
      notes: []
      line: "db2/equities: NEEDS ATTENTION - 2 revisions behind head"
"""


from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.report.render import report
from ansible.module_utils.fleet.report.summary import report_summary


def main() -> None:
    module = FleetModule(
        argument_spec=dict(
            databases=dict(type="list", elements="dict", required=True),
            report_dir=dict(type="path", required=True),
            basename=dict(type="str", default="status"),
            max_backup_age_hours=dict(type="float", default=26),
            require_backup=dict(type="bool", default=True),
            max_drill_age_days=dict(type="float", default=0),
            metrics_path=dict(type="path"),
            fail_on_attention=dict(type="bool", default=True),
            now=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, report, summary=report_summary, summary_key="summary_line")


if __name__ == "__main__":
    main()
