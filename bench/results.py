"""Measurements, targets, the printed table and the JSON file of one benchmark run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """What a row must show to be "met".

    kind "ratio": ours/peer (medians) at most `limit`; "ours": our median at most `limit` (in the row's unit);
    "zero": our median is exactly 0 (a count).
    """

    kind: str
    limit: float = 0.0

    def describe(self, unit: str) -> str:
        if self.kind == "ratio":
            return "<= %.2fx" % self.limit
        if self.kind == "ours":
            return "ours <= %s" % fmt(self.limit, unit)
        return "ours = 0"

    def met(self, ours: float, ratio: float | None) -> bool:
        if self.kind == "ratio":
            return ratio is not None and ratio <= self.limit
        if self.kind == "ours":
            return ours <= self.limit
        return ours == 0


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return "%.2f s" % value
    if unit == "MB":
        return "%.1f MB" % value
    if unit == "x":
        return "%.1fx" % value
    return "%g" % value


@dataclass
class Row:
    """One case: every repetition of ours and of its peer, measured in the same run."""

    section: str
    case: str
    ours: list[float]
    peer: list[float]
    unit: str = "s"
    target: Target | None = None
    note: str = ""
    # A row whose runs did not all succeed is never "met", whatever its numbers.
    ok: bool = True

    @property
    def ratio(self) -> float | None:
        peer = median(self.peer)
        return median(self.ours) / peer if self.ours and peer else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ok and bool(self.ours) and self.target.met(median(self.ours), self.ratio)

    def cells(self) -> list[str]:
        met = {None: "-", True: "yes", False: "NO"}[self.met]
        ratio = self.ratio
        return [
            self.case,
            spread_text(self.ours, self.unit),
            spread_text(self.peer, self.unit),
            "%.2fx" % ratio if ratio is not None else "-",
            self.target.describe(self.unit) if self.target else "-",
            met,
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "case": self.case,
            "unit": self.unit,
            "ours": summary(self.ours),
            "peer": summary(self.peer),
            "ratio": self.ratio,
            "target": self.target.describe(self.unit) if self.target else None,
            "met": self.met,
            "ok": self.ok,
            "note": self.note,
        }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"median": median(values), "spread": (max(values) - min(values)) if values else 0.0, "samples": list(values)}


def spread_text(values: Sequence[float], unit: str) -> str:
    if not values:
        return "-"
    text = fmt(median(values), unit)
    # With one repetition there is no spread to show.
    return text if len(values) == 1 else "%s ± %s" % (text, fmt(max(values) - min(values), unit).split()[0])


@dataclass
class Report:
    """Everything a run found, rewritten to its JSON file after each section so a late failure loses nothing."""

    path: Path
    meta: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # per section: checks and side numbers
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def fact(self, section: str, key: str, value: Any) -> None:
        self.facts.setdefault(section, {})[key] = value

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {**self.meta, "rows": [row.as_dict() for row in self.rows], "facts": self.facts, "errors": self.errors}
        self.path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


HEADER = ["case", "ours (median ± spread)", "peer (median ± spread)", "ratio", "target", "met"]


def table(rows: Sequence[Row]) -> str:
    """A plain-text table, one block per section."""
    lines: list[str] = []
    body = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(cells[i]) for cells in body) for i in range(len(HEADER))]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append("")
            lines.append("== %s" % section)
            lines.append(_line(HEADER, widths))
            lines.append(_line(["-" * w for w in widths], widths))
        lines.append(_line(row.cells(), widths))
        if row.note:
            lines.append("   %s" % row.note)
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
