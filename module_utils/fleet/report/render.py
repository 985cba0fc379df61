# -*- coding: utf-8 -*-
# The nightly status report's files: JSON, a self-contained HTML page, a
# Markdown summary and a Prometheus textfile (node_exporter's textfile
# collector), each written atomically (a temp file in the same directory, then
# os.replace) and only when its content changed. The judgement is
# report.health's; report() is fleet_report's operation. Standard library only.
from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from typing import Any

from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.report.health import (
    COLUMNS,
    METRICS,
    FleetHealth,
    Policy,
    database_verdict,
    format_time,
    judge_fleet,
    parse_now,
)

METRIC_PREFIX = "alembic_fleet_"
FILE_MODE = 0o644
DIR_MODE = 0o755
SHOWN_REASONS = 3  # in the failure message

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #1b1f23; background: #fff; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .4rem; }
p.meta { margin: 0 0 1rem; color: #444; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin-bottom: 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .45rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.green { background: #dafbe1; }
td.amber { background: #fff1c2; }
td.red { background: #ffd7d5; font-weight: 600; }
span.state { padding: .05rem .5rem; border-radius: .6rem; font-weight: 600; }
span.state.green { background: #dafbe1; color: #116329; }
span.state.amber { background: #fff1c2; color: #7a4e00; }
span.state.red { background: #ffd7d5; color: #a40e26; }
ul.reasons li { color: #a40e26; }
ul.notes li { color: #7a4e00; }
td ul { margin: 0; padding-left: 1rem; }
td.reasons { font-weight: normal; background: #fff; }
td.reasons li.reason { color: #a40e26; font-weight: 600; }
td.reasons li.note { color: #7a4e00; }
code { font-size: .8rem; }
""".strip()


# -- JSON ---------------------------------------------------------------------
def render_json(health: FleetHealth) -> str:
    return json.dumps(health.as_dict(), sort_keys=True, indent=2) + "\n"


# -- HTML ---------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_id(name: str) -> str:
    """An environment name as a safe id/class suffix: letters, digits, '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name) or "-"


def _env_ids(health: FleetHealth) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for environment, _ in health.environments:
        base = candidate = "env-%s" % html_id(environment)
        n = 2
        while candidate in used:  # two names that differ only in unsafe characters
            candidate = "%s-%d" % (base, n)
            n += 1
        used.add(candidate)
        ids[environment] = candidate
    return ids


def _html_list(items: list[str], css: str) -> str:
    return '<ul class="%s">\n%s\n</ul>' % (css, "\n".join("<li>%s</li>" % _e(item) for item in items))


def render_html(health: FleetHealth) -> str:
    generated = format_time(health.generated_at)
    summary = health.summary
    state = health.colour
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>alembic-fleet status: %s</title>" % _e(state),
        "<style>\n%s\n</style>" % _CSS,
        "</head>",
        '<body class="state-%s">' % _e(state),
        '<header id="summary">',
        "<h1>alembic-fleet status</h1>",
        '<p class="meta">Generated <time datetime="%s">%s</time>. Overall <span class="state %s" id="state">%s</span>: '
        "%d database(s), %d red, %d amber, %d green.</p>"
        % (_e(generated), _e(generated), _e(state), _e(state), summary["databases"], summary["red"], summary["amber"], summary["green"]),
        "</header>",
        '<section id="reasons">',
    ]
    reasons = health.reasons
    if reasons:
        out += ["<h2>Needs attention (%d)</h2>" % len(reasons), _html_list(reasons, "reasons")]
    else:
        out += ["<h2>Needs attention</h2>", "<p>Nothing needs attention.</p>"]
    out.append("</section>")
    notes = health.notes
    if notes:
        out += ['<section id="notes">', "<h2>Worth a look (%d)</h2>" % len(notes), _html_list(notes, "notes"), "</section>"]
    ids = _env_ids(health)
    for environment, databases in health.environments:
        env_id = ids[environment]
        out += [
            '<section class="environment">',
            "<h2>%s</h2>" % _e(environment),
            '<table class="env %s" id="%s">' % (_e(env_id), _e(env_id)),
            "<thead><tr><th>host</th><th>database</th>%s<th>reasons</th></tr></thead>" % "".join("<th>%s</th>" % _e(heading) for _, heading in COLUMNS),
            "<tbody>",
        ]
        for db in databases:
            cells = "".join('<td class="cell-%s %s">%s</td>' % (_e(key), _e(db.cells[key].colour), _e(db.cells[key].value)) for key, _ in COLUMNS)
            listed = ['<li class="reason">%s</li>' % _e(item) for item in db.reasons] + ['<li class="note">%s</li>' % _e(item) for item in db.notes]
            why = "<ul>%s</ul>" % "".join(listed) if listed else ""
            title = ' title="%s"' % _e(db.label) if db.label else ""
            out.append(
                '<tr class="db %s" data-database="%s"><td class="host">%s</td><td class="name %s"%s>%s</td>%s<td class="reasons %s">%s</td></tr>'
                % (_e(db.colour), _e(db.key), _e(db.host), _e(db.colour), title, _e(db.name), cells, _e(db.colour), why)
            )
        out += ["</tbody>", "</table>", "</section>"]
    policy = health.policy
    out += [
        '<footer><p class="meta">Policy: backups older than %s h %s; a missing backup %s; restore drills %s'
        " (databases may set their own). Written by alembic-fleet's fleet_report.</p></footer>"
        % (
            _e("%g" % policy.max_backup_age_hours),
            "need attention" if policy.max_backup_age_hours > 0 else "are not judged (limit 0)",
            "needs attention" if policy.require_backup else "is accepted",
            _e("needed every %g day(s)" % policy.max_drill_age_days) if policy.max_drill_age_days > 0 else "not required",
        ),
        "</body>",
        "</html>",
    ]
    return "\n".join(out) + "\n"


# -- Markdown -----------------------------------------------------------------
def _md(value: Any) -> str:
    """A Markdown table cell: HTML-escaped, pipes escaped, one line."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return " ".join(text.split())


def render_markdown(health: FleetHealth) -> str:
    summary = health.summary
    out = [
        "# alembic-fleet status: %s" % health.colour,
        "",
        "Generated %s. %d database(s): %d red, %d amber, %d green."
        % (format_time(health.generated_at), summary["databases"], summary["red"], summary["amber"], summary["green"]),
        "",
        "## Needs attention",
        "",
    ]
    reasons = health.reasons
    out += ["- %s" % _md(reason) for reason in reasons] if reasons else ["Nothing needs attention."]
    notes = health.notes
    if notes:
        out += ["", "## Worth a look", ""] + ["- %s" % _md(note) for note in notes]
    headings = ["host", "database", "state"] + [heading for _, heading in COLUMNS]
    for environment, databases in health.environments:
        out += ["", "## %s" % _md(environment), "", "| %s |" % " | ".join(headings), "|%s" % ("---|" * len(headings))]
        for db in databases:
            values = [_md(db.host), _md(db.name), "**%s**" % db.colour if db.colour == "red" else db.colour]
            for key, _ in COLUMNS:
                cell = db.cells[key]
                values.append("**%s**" % _md(cell.value) if cell.colour == "red" else _md(cell.value))
            out.append("| %s |" % " | ".join(values))
    return "\n".join(out) + "\n"


# -- Prometheus textfile ------------------------------------------------------
def label_value(value: str) -> str:
    """Escape a label value per the text exposition format: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def help_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def sample_value(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) < 2**53):
        return "%d" % value
    return repr(float(value))


def render_prometheus(health: FleetHealth) -> str:
    """Gauges per database (absent when unknown: never NaN) and the report's own timestamp."""
    out: list[str] = []
    for key, description in METRICS:
        name = METRIC_PREFIX + key
        out += ["# HELP %s %s" % (name, help_text(description)), "# TYPE %s gauge" % name]
        for db in health.databases:
            value = db.metrics.get(key)
            if value is None or not math.isfinite(value):
                continue
            labels = 'environment="%s",host="%s",database="%s"' % (label_value(db.environment), label_value(db.host), label_value(db.name))
            out.append("%s{%s} %s" % (name, labels, sample_value(value)))
    name = METRIC_PREFIX + "report_timestamp_seconds"
    out += [
        "# HELP %s Unix time the fleet status report was generated." % name,
        "# TYPE %s gauge" % name,
        "%s %s" % (name, sample_value(int(health.generated_at.timestamp()))),
    ]
    return "\n".join(out) + "\n"


# -- files --------------------------------------------------------------------
def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None
    except OSError as exc:
        raise FleetError("cannot read %s (%s): make it readable, or choose another report_dir." % (path, exc.strerror or exc)) from None


def write_atomic(path: str, content: str, mode: int = FILE_MODE) -> None:
    """Write content to a hidden temp file beside path, fsync, chmod, then os.replace it over path."""
    directory, base = os.path.split(os.path.abspath(path))
    # Hidden and not ending in .prom, so node_exporter never reads a half-written file.
    fd, temp = tempfile.mkstemp(prefix=".%s." % base, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _ensure_dir(path: str, option: str, create: bool) -> None:
    if os.path.isdir(path):
        return
    if os.path.exists(path):
        raise FleetError("%s %s is not a directory: give a directory path." % (option, path))
    if not create:
        return
    try:
        os.makedirs(path, DIR_MODE)
        os.chmod(path, DIR_MODE)
    except OSError as exc:
        raise FleetError("cannot create %s %s (%s): create it, or choose a writable path." % (option, path, exc.strerror or exc)) from None


# -- the fleet_report operation -----------------------------------------------
def _policy(params: dict[str, Any]) -> Policy:
    values = {}
    for option, default in (("max_backup_age_hours", 26.0), ("max_drill_age_days", 0.0)):
        value = params.get(option)
        value = default if value is None else float(value)
        if not math.isfinite(value) or value < 0:
            raise FleetError("%s is %s: give a number of 0 or more (0 turns the check off)." % (option, params.get(option)))
        values[option] = value
    require = params.get("require_backup")
    return Policy(require_backup=True if require is None else bool(require), **values)


def attention_message(health: FleetHealth, json_path: str, check_mode: bool) -> str:
    reasons = health.reasons
    shown = "; ".join(reasons[:SHOWN_REASONS])
    if len(reasons) > SHOWN_REASONS:
        shown += " (and %d more)" % (len(reasons) - SHOWN_REASONS)
    where = "check mode: %s not written" % json_path if check_mode else "see %s" % json_path
    return "%d database(s) need attention: %s; %s" % (health.summary["red"], shown, where)


def report(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """Judge every database, write the report files (not in check mode), fail on attention."""
    statuses = params.get("databases")
    if not statuses:
        raise FleetError(
            "databases is empty: pass one dict per database (environment, host, name and its alembic_status result), "
            "collected from every host before the report."
        )
    basename = params.get("basename") or "status"
    if "/" in basename or basename in (".", "..") or basename.startswith("."):
        raise FleetError(
            "basename '%s' is not a plain file name: give a name such as 'status' (the files are <report_dir>/<basename>.json, .html, .md)." % basename
        )
    policy = _policy(params)
    health = judge_fleet(list(statuses), policy, parse_now(params.get("now")))

    report_dir = params["report_dir"]
    paths = {
        "json": os.path.join(report_dir, basename + ".json"),
        "html": os.path.join(report_dir, basename + ".html"),
        "markdown": os.path.join(report_dir, basename + ".md"),
    }
    contents = {"json": render_json(health), "html": render_html(health), "markdown": render_markdown(health)}
    metrics_path = params.get("metrics_path")
    if metrics_path:
        metrics_dir = os.path.dirname(os.path.abspath(metrics_path))
        # In the report's own directory (the role's default), it is created with the report; elsewhere (node_exporter's
        # textfile directory) it must exist already.
        if not os.path.isdir(metrics_dir) and metrics_dir != os.path.abspath(report_dir):
            raise FleetError(
                "metrics_path's directory %s does not exist: create it (node_exporter's --collector.textfile.directory) or leave metrics_path out."
                % metrics_dir
            )
        if os.path.isdir(metrics_path):
            raise FleetError("metrics_path %s is a directory: give a file path such as %s." % (metrics_path, os.path.join(metrics_path, "alembic_fleet.prom")))
        paths["metrics"] = metrics_path
        contents["metrics"] = render_prometheus(health)
    _ensure_dir(report_dir, "report_dir", create=not check_mode)

    changed_paths: list[str] = []
    result.update(
        changed=False,
        paths=paths,
        changed_paths=changed_paths,
        generated_at=format_time(health.generated_at),
        state=health.colour,
        attention=health.attention,
        summary=health.summary,
        reasons=health.reasons,
        notes=health.notes,
        databases=[database_verdict(db) for db in health.databases],
    )
    for kind, path in paths.items():
        if read_text(path) == contents[kind]:
            continue
        if not check_mode:
            try:
                write_atomic(path, contents[kind])
            except OSError as exc:
                raise FleetError("cannot write %s (%s): make its directory writable, or choose another path." % (path, exc.strerror or exc)) from None
        changed_paths.append(path)
        result["changed"] = True
    if health.attention and params.get("fail_on_attention", True):
        raise FleetError(attention_message(health, paths["json"], check_mode))
