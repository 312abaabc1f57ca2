"""Everything the user sees: tables, json/yaml/name, progress and warnings.

Data goes to stdout, progress/warnings/errors to stderr. Colour only when the stream is a TTY
(``--color auto``), never with ``NO_COLOR`` set unless ``--color always``. Tables are
kubectl-style (upper-case headers, columns three spaces apart), so they read the same on a
terminal and in a pipe.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, TextIO

FORMATS = ("table", "wide", "json", "yaml", "name")
COLOR_MODES = ("auto", "always", "never")
RESOURCE = "virtualmachineinstance.kubevirt.io"

_ANSI = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36", "bold": "1", "dim": "2"}
_STYLES = {
    "frozen": "cyan",
    "thawed": "green",
    "failed": "red",
    "rolled-back": "red",
    "unconfirmed": "yellow",
    "planned": "blue",
    "skipped": "yellow",
    "connected": "green",
    "none": "yellow",
}


def color_enabled(mode: str, stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if mode == "always":
        return True
    if mode == "never" or env.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and env.get("TERM") != "dumb"


def paint(text: str, color: str | None, enabled: bool) -> str:
    if not enabled or not color or not text:
        return text
    return f"\x1b[{_ANSI[color]}m{text}\x1b[0m"


def render_table(headers: list[str], rows: list[list[Any]], no_headers: bool = False,
                 colored: Iterable[int] = (), color: bool = False) -> str:
    """kubectl-style table; cells in ``colored`` columns are painted by value."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    grid = cells if no_headers else [headers] + cells
    if not grid:
        return ""
    widths = [max(len(r[i]) for r in grid) for i in range(len(headers))]
    colored = set(colored)
    lines = []
    for index, row in enumerate(grid):
        is_header = index == 0 and not no_headers
        parts = []
        for col, value in enumerate(row):
            pad = " " * (widths[col] - len(value)) if col < len(row) - 1 else ""
            shown = value
            if not is_header and col in colored:
                shown = paint(value, _STYLES.get(value.split(" ")[0].rstrip(",")), color)
            parts.append(shown + pad)
        lines.append("   ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(text: str | None, now: datetime | None = None) -> str:
    """kubectl-like age of a timestamp: 45s, 3m12s, 2h5m, 3d4h; '-' when unknown."""
    when = parse_time(text)
    if when is None:
        return "-"
    seconds = int(((now or datetime.now(timezone.utc)) - when).total_seconds())
    if seconds < 0:
        seconds = 0
    if seconds < 120:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes and hours < 8 else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 8 else f"{days}d"


def until(text: str | None, now: datetime | None = None) -> str:
    when = parse_time(text)
    if when is None:
        return "-"
    seconds = int((when - (now or datetime.now(timezone.utc))).total_seconds())
    if seconds <= 0:
        return "due"
    return f"in {_short(seconds)}"


def _short(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def seconds_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f}s"


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# -- freeze / unfreeze reports -------------------------------------------------------------------
def confirmed_text(item: dict) -> str:
    how = item.get("confirmedBy") or []
    if how:
        return "+".join(how)
    if item.get("result") == "planned":
        return "-"
    return "none"


def report_table(report: dict, wide: bool = False, no_headers: bool = False, color: bool = False) -> str:
    headers = ["NAME", "RESULT", "CONFIRMED BY", "METHOD", "TIME"]
    if wide:
        headers += ["NAMESPACE", "POD", "NODE", "SAFETY THAW", "ALREADY"]
    rows = []
    for item in report["items"]:
        result = item["result"]
        if item.get("rollback"):
            result = f"{result} ({item['rollback']['result']})" if item["result"] != "rolled-back" else result
        if item.get("held") is False:
            result = f"{result} (freeze did not hold)"
        if item.get("skipped"):
            result = f"{result} ({item['skipped'].split(':')[0]})"
        row = [item["name"], result, confirmed_text(item), item.get("method") or "-",
               seconds_text((item.get("timings") or {}).get("totalMs"))]
        if wide:
            safety = (item.get("safetyThaw") or {}).get("deadline")
            agent = item.get("agent") or {}
            row += [item["namespace"], item.get("pod") or "-", item.get("node") or "-",
                    f"{safety} ({until(safety)})" if safety else "-",
                    {True: "yes", False: "no"}.get(agent.get("already"), "-")]
        rows.append(row)
    return render_table(headers, rows, no_headers, colored=(1,), color=color)


def plan_text(report: dict) -> str:
    lines = []
    verb = "freeze" if report["action"] == "freeze" else "thaw"
    for item in report["items"]:
        ref = f"{item['namespace']}/{item['name']}"
        if item.get("error"):
            lines.append(f"{ref}: would fail: {item['error']['message']}")
            continue
        if item.get("skipped"):
            lines.append(f"{ref}: would skip it: {item['skipped']}")
            continue
        plan = item.get("plan") or {}
        why = f" ({item['methodReason']})" if item.get("methodReason") else ""
        lines.append(f"{ref}: would {verb} with method {item['method']}{why}")
        if "request" in plan:
            req = plan["request"]
            body = "" if req.get("body") is None else " " + json.dumps(req["body"])
            lines.append(f"  {req['method']} {req['path']}{body}")
        else:
            lines.append(f"  exec in pod {plan.get('pod')} container {plan.get('container')}: "
                         + " ".join(_quote(a) for a in plan.get("command", [])))
    lines.append("dry run: nothing was changed")
    return "\n".join(lines) + "\n"


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=,<>" for c in arg):
        return arg
    if arg.startswith("<") and arg.endswith(">"):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def names(items: list[dict]) -> str:
    return "".join(f"{RESOURCE}/{item['name']}\n" for item in items)


# -- status --------------------------------------------------------------------------------------
def status_table(rows: list[dict], all_namespaces: bool = False, wide: bool = False, no_headers: bool = False,
                 live: bool = False, color: bool = False) -> str:
    headers = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "PHASE", "AGENT", "FREEZE"]
    headers += (["LIVE"] if live else []) + ["SINCE", "NODE", "POD"]
    if wide:
        headers += ["OS", "SAFETY THAW", "LAST ACTION"]
    rows_out = []
    for row in rows:
        last = row.get("lastAction") or {}
        safety = row.get("safetyThawDeadline")
        cells = {
            "NAMESPACE": row["namespace"],
            "NAME": row["name"],
            "PHASE": row["phase"] + (" (paused)" if row.get("paused") else "")
            + (" (migrating)" if row.get("migrating") else ""),
            "AGENT": row["agent"],
            "FREEZE": "frozen, no safety thaw" if row.get("noSafetyThaw") else
            "frozen, not held (VSS)" if row.get("held") is False else row["freeze"],
            "LIVE": (row.get("live") or {}).get("status") or "?",
            "SINCE": age(row.get("since")) if row.get("since") else "-",
            "NODE": row.get("node") or "-",
            "POD": row.get("pod") or "-",
            "OS": row.get("os") or "-",
            "SAFETY THAW": until(safety) if safety else "none (migrated)" if row.get("noSafetyThaw") else "-",
            "LAST ACTION": f"{last.get('reason')} {age(last.get('time'))} ago" if last else "-",
        }
        rows_out.append([cells[h] for h in headers])
    colored = [headers.index(h) for h in ("AGENT", "FREEZE", "LIVE") if h in headers]
    return render_table(headers, rows_out, no_headers, colored=colored, color=color)


def status_detail(row: dict, color: bool = False) -> str:
    last = row.get("lastAction") or {}
    live = row.get("live")
    pairs = [
        ("Name", row["name"]),
        ("Namespace", row["namespace"]),
        ("Phase", row["phase"] + (" (paused)" if row.get("paused") else "")),
        ("Migrating", "yes" if row.get("migrating") else "no"),
        ("Node", row.get("node") or "-"),
        ("Launcher pod", row.get("pod") or "-"),
        ("Guest OS", (row.get("os") or "-") + (" (VSS: a freeze lasts about 10s)" if row.get("windows") else "")),
        ("Guest agent", paint(row["agent"], _STYLES.get(row["agent"]), color)
         + (f" since {row['agentSince']}" if row.get("agentSince") else "")),
        ("Freeze (VMI status)", paint(row["freeze"], _STYLES.get(row["freeze"]), color)
         + (", no safety thaw" if row.get("noSafetyThaw") else "")
         + (", but not held: Windows VSS let go of the writes about 10s after the freeze"
            if row.get("held") is False else "")
         + (f" since {row['since']} ({age(row['since'])} ago)" if row.get("since") else "")),
    ]
    safety = row.get("safetyThawDeadline")
    if live is not None:
        text = live.get("status") or f"unknown ({live.get('error')})"
        pairs.append(("Freeze (guest agent)", paint(text, _STYLES.get(live.get("status") or ""), color)))
        safety = (live.get("safetyThaw") or {}).get("deadline") or safety
    if safety:
        pairs.append(("Safety thaw", f"{safety} ({until(safety)})"))
    elif row.get("noSafetyThaw"):
        pairs.append(("Safety thaw", "none: " + row["noSafetyThaw"].split(": ", 1)[1]))
    if last:
        pairs.append(("Last action", f"{last.get('reason')} at {last.get('time')} by {last.get('who') or '?'} "
                                     f"(method {last.get('method') or '?'})"))
    width = max(len(k) for k, _ in pairs) + 2
    return "".join(f"{(k + ':').ljust(width)}{v}\n" for k, v in pairs)


class Printer:
    """Where output goes: data to ``out``, progress/warnings to ``err`` (silenced by -q)."""

    def __init__(self, color_mode: str = "auto", quiet: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None, env: Mapping[str, str] | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.color_out = color_enabled(color_mode, self.out, env)
        self.color_err = color_enabled(color_mode, self.err, env)

    def data(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()

    def progress(self, message: str) -> None:
        if not self.quiet:
            self.err.write(paint(message, "dim", self.color_err) + "\n")
            self.err.flush()

    def warn(self, message: str) -> None:
        self.err.write(paint("warning:", "yellow", self.color_err) + " " + " ".join(message.split()) + "\n")
        self.err.flush()

    def error(self, message: str) -> None:
        self.err.write(paint("error:", "red", self.color_err) + " " + " ".join(str(message).split()) + "\n")
        self.err.flush()
