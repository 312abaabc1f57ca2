"""Go-style durations ("300ms", "1m30s", "5m"), parsed through durationpy.

Only Go's units are accepted (ns, us, µs, ms, s, m, h), since KubeVirt parses the
same strings with Go's ``time.ParseDuration``; a bare number is refused (except
"0") because Go refuses it too. ``--request-timeout`` follows kubectl and also
takes a bare number of seconds.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

import durationpy

from .errors import UsageError

_GO_UNITS = ("ns", "us", "µs", "μs", "ms", "s", "m", "h")
_TOKEN = re.compile(r"(\d+\.?\d*|\.\d+)([a-zµμ]*)")
EXAMPLES = "30s, 5m or 1h30m"
# Go's time.Duration is int64 nanoseconds (about 292 years): ParseDuration refuses anything longer,
# and beyond it Python's socket and datetime calls overflow too.
GO_MAX_SECONDS = (2**63 - 1) / 1e9
# KubeVirt takes a safety thaw as int32 seconds (virt-handler's int32(d.Seconds()), virt-freezer's
# --unfreezeTimeoutSeconds): beyond this it overflows and the launcher thaws at once.
KUBEVIRT_MAX_SECONDS = 2**31 - 1


def parse_duration(text: str, flag: str, allow_bare_seconds: bool = False) -> timedelta:
    """Parse ``text`` as a non-negative Go duration for ``flag``; UsageError if it is not one."""
    raw = (text or "").strip()
    if not raw:
        raise UsageError(f"{flag} needs a duration", f"give one like {EXAMPLES}")
    if allow_bare_seconds and re.fullmatch(r"\d+(\.\d+)?", raw):
        _check_go_max(float(raw), text, flag)
        return timedelta(seconds=float(raw))
    if raw.startswith("-"):
        raise UsageError(f"{flag} {text!r} is negative", f"give a positive duration like {EXAMPLES}")
    body = raw.lstrip("+")
    if body != "0":
        pos = 0
        for match in _TOKEN.finditer(body):
            if match.start() != pos:
                break
            pos = match.end()
            unit = match.group(2)
            if not unit and pos != len(body):
                break
            if not unit:
                raise UsageError(
                    f"{flag} {text!r} has a number without a unit",
                    f"add one, e.g. {match.group(1)}s or {match.group(1)}m",
                )
            if unit not in _GO_UNITS:
                raise UsageError(
                    f"{flag} {text!r} uses the unit {unit!r}, which Go durations do not have",
                    "use ns, us, ms, s, m or h (e.g. 48h instead of 2d)",
                )
        if pos != len(body):
            raise UsageError(f"{flag} {text!r} is not a duration", f"give one like {EXAMPLES}")
    try:
        value = durationpy.from_str(body)
    except durationpy.DurationError as exc:
        raise UsageError(f"{flag} {text!r} is not a duration ({exc})", f"give one like {EXAMPLES}") from None
    _check_go_max(value.total_seconds(), text, flag)
    return value


def check_kubevirt_seconds(value: timedelta, flag: str, text: str | None) -> None:
    """UsageError for a duration that KubeVirt would get as a safety thaw and cannot hold."""
    if value.total_seconds() > KUBEVIRT_MAX_SECONDS:
        raise UsageError(f"{flag} {text} is longer than KubeVirt can hold ({KUBEVIRT_MAX_SECONDS} s, about "
                         "68 years: it would overflow and thaw at once)", "give e.g. 5m")


def _check_go_max(seconds: float, text: str, flag: str) -> None:
    if seconds > GO_MAX_SECONDS:
        raise UsageError(f"{flag} {text!r} is longer than a Go duration can be (about 292 years)",
                         f"give one like {EXAMPLES}")


def to_go(delta: timedelta) -> str:
    """Format like Go's ``Duration.String()``: 300s -> "5m0s", 0 -> "0s"."""
    total_ns = round(delta.total_seconds() * 1e9)
    if total_ns == 0:
        return "0s"
    sign = "-" if total_ns < 0 else ""
    ns = abs(total_ns)
    if ns < 1_000_000_000:
        return sign + durationpy.to_str(timedelta(microseconds=ns / 1000))
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = rest / 1e9
    sec_text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    text = ""
    if hours:
        text += f"{hours}h"
    if hours or minutes:
        text += f"{minutes}m"
    return f"{sign}{text}{sec_text}s"


def whole_seconds(delta: timedelta) -> int:
    """Seconds rounded up (virt-freezer and the freezer take whole seconds)."""
    return int(math.ceil(delta.total_seconds()))


def human(delta: timedelta | float) -> str:
    """Short human form for messages: 5m, 1m30s, 2.5s, 300ms."""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    text = to_go(timedelta(seconds=round(seconds)))
    return text.replace("m0s", "m").replace("h0m", "h")
