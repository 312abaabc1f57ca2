"""Method "freezer": the bundled kubectl_freeze/freezer.py, run in the compute container
through pods/exec as ``python3 -c <bootstrap> N freeze|thaw DOMAIN ...``.

The source (~40 KB, ~60 KB URL-encoded) travels on the exec's stdin, not in the command: exec
arguments are URL query parameters, and a 60 KB request line is refused by servers and proxies
with the usual 8 KiB limit (and would fill the API audit log on every freeze). The bootstrap
reads exactly N bytes from stdin and runs them as ``__main__`` with the remaining arguments, so
the freezer behaves as if started with ``python3 -c <source> ARGS``.

It talks to libvirt directly, so its JSON answer carries the guest agent's own status read
back after the action, and it arms its own safety thaw (KubeVirt arms none for this path).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from importlib import resources
from typing import Any

from ..durations import whole_seconds
from ..errors import Failed
from ..output import parse_time
from ..targets import COMPUTE, VSS_HOLD_S, Target, is_windows
from .base import FREEZE, Options, Outcome, exec_plan, remaining

NAME = "freezer"

# freezer.py's error codes -> what the user can do about it
_HINTS = {
    "libvirt-unreachable": "the launcher's libvirt socket was not reachable; is the pod healthy?",
    "domain-not-found": "libvirt in the launcher pod has no such domain; is this the right pod?",
    "domain-not-running": "start or unpause the VM and try again",
    "agent-not-connected": "install and start qemu-guest-agent in the guest, then try again",
    "agent-timeout": "the guest agent did not answer in time; check with: kubectl freeze status --live",
    "refused": "the guest agent refused; see the guest agent's log in the guest",
    "no-libvirt-python": "this launcher image has no libvirt for python3; use --method virt-freezer or api",
}
# the guest may be frozen even though the call failed: roll back / tell the user
_MAYBE_CHANGED = {"agent-timeout", "failed", "libvirt-unreachable"}


@lru_cache(maxsize=1)
def source() -> str:
    return resources.files("kubectl_freeze").joinpath("freezer.py").read_text(encoding="utf-8")


def freezer_args(target: Target, action: str, options: Options) -> list[str]:
    # The VMI's name and namespace reach virt-freezer, through which the freezer cancels KubeVirt's timer.
    vmi = ["--name", target.name, "--namespace", target.namespace]
    if action == FREEZE:
        args = ["freeze", target.domain] + vmi + ["--unfreeze-timeout", str(whole_seconds(options.unfreeze_timeout))]
        for mountpoint in options.mountpoints:
            args += ["--mountpoint", mountpoint]
        return args
    return ["thaw", target.domain] + vmi


BOOTSTRAP = """import sys
_kf_n = int(sys.argv.pop(1))
_kf_src = sys.stdin.buffer.read(_kf_n)
if len(_kf_src) != _kf_n:
    sys.stdout.write('{"ok": false, "error": {"code": "failed", "exit_code": 1, "message": '
                     '"got %d of %d bytes of the freezer source on stdin"}}\\n' % (len(_kf_src), _kf_n))
    sys.exit(1)
sys.argv[0] = "freezer.py"
exec(compile(_kf_src, "freezer.py", "exec"))
"""


def payload() -> bytes:
    return source().encode("utf-8")


def command(target: Target, action: str, options: Options) -> list[str]:
    """The exec command; run it with ``payload()`` on stdin."""
    return ["python3", "-c", BOOTSTRAP, str(len(payload()))] + freezer_args(target, action, options)


def status_command(target: Target) -> list[str]:
    return ["python3", "-c", BOOTSTRAP, str(len(payload())), "status", target.domain]


def parse_report(stdout: str) -> dict | None:
    """The freezer's one JSON object (the last line of stdout that is one)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def outcome_from_report(report: dict | None, exit_code: int | None, failure: str, target: Target, action: str,
                        stderr: str = "", timed_out: bool = False, broke: bool = False) -> Outcome:
    """Turn the freezer's answer (or its absence) into an Outcome."""
    verb = "freeze" if action == FREEZE else "thaw"
    if report is None:
        if timed_out:
            err = Failed(f"the freezer did not answer in time for {target.ref}",
                         "check with: kubectl freeze status --live " + target.name)
            return Outcome(NAME, False, error=err, maybe_changed=True)
        why = failure or (stderr.strip().splitlines() or ["no output"])[-1]
        # 126/127: the runtime could not start python3, so nothing ran in the guest
        if exit_code in (126, 127) or exit_code is None and ("not found" in why or "no such file" in why.lower()):
            err = Failed(f"the compute container of pod {target.pod_name} has no python3 ({why})",
                         "use --method virt-freezer or --method api")
            return Outcome(NAME, False, error=err)
        err = Failed(f"the freezer gave no answer for {target.ref} (exit {exit_code}: {why})")
        # A stream that broke after the freezer started may have cut off a freeze that happened.
        return Outcome(NAME, False, error=err, maybe_changed=exit_code is not None or broke)
    status = report.get("status") if report.get("status") in ("frozen", "thawed") else None
    safety = report.get("safety_thaw") or {}
    common: dict[str, Any] = {
        "agent_status": status,
        "already": report.get("already"),
        "filesystems": report.get("filesystems"),
        "safety_thaw_deadline": safety.get("deadline"),
        "detail": {"freezer": report},
    }
    if report.get("ok") and exit_code in (0, None):
        return Outcome(NAME, True, held=_held(report, target, action), **common)
    error = report.get("error") or {}
    code = error.get("code") or "failed"
    message = " ".join(str(error.get("message") or f"exit {exit_code}").split())
    err = Failed(f"could not {verb} {target.ref}: {code}: {message}", _HINTS.get(code))
    return Outcome(NAME, False, error=err, maybe_changed=code in _MAYBE_CHANGED or status == "frozen", **common)


def _held(report: dict, target: Target, action: str) -> bool | None:
    """For a thaw: False when the freeze it ended cannot have held. A Windows agent says so itself
    (the freezer reports ``held: false``); and VSS lets go of the writes about 10 s after the
    freeze whatever the agent says, which the freezer's record of its safety thaw dates (its
    deadline minus its timeout is when this freeze began). None: not known."""
    if action == FREEZE:
        return None
    if report.get("held") is False:
        return False
    armed = report.get("cancelled_safety_thaw") or {}
    if not is_windows(target.vmi) or report.get("status_before") != "frozen" or not armed.get("deadline"):
        return None
    deadline = parse_time(str(armed["deadline"]))
    if deadline is None:
        return None
    try:
        began = deadline.timestamp() - float(armed["timeout_s"])
    except (KeyError, TypeError, ValueError):
        return None
    return False if time.time() - began > VSS_HOLD_S else None


class BundledFreezer:
    name = NAME

    def plan(self, target: Target, action: str, options: Options) -> dict[str, Any]:
        size = len(payload())
        plan = exec_plan(target, COMPUTE, ["python3", "-c", "<bootstrap: run the freezer source from stdin>",
                                           str(size)] + freezer_args(target, action, options))
        plan["stdin"] = f"<kubectl_freeze/freezer.py, {size} bytes>"
        return plan

    def run(self, kube, target: Target, action: str, options: Options, deadline: float) -> Outcome:
        started = time.monotonic()
        result = kube.exec(target.namespace, target.pod_name, COMPUTE, command(target, action, options),
                           timeout=remaining(deadline, 5.0), stdin=payload())
        outcome = outcome_from_report(parse_report(result.stdout), result.exit_code, result.failure, target,
                                      action, result.stderr, result.timed_out, result.broke)
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        return outcome
