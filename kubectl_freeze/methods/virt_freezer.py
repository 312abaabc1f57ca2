"""Method "virt-freezer": KubeVirt's own /usr/bin/virt-freezer in the compute container, via exec.

virt-freezer asks virt-launcher (gRPC) to freeze, so KubeVirt's safety unfreeze timer applies.
What it does (cmd/virt-freezer/virt-freezer.go): it asks for the guest info first and exits 0
without doing anything when there is no agent ("No guest agent, exiting") or, after that, when the
domain is not running ("VM domain not running, no need to freeze/unfreeze"); success logs
"Operation completed successfully"; a failure logs "Freezing VMI failed" / "Unfreezing VMI failed"
with the launcher's error as the reason and exits 1 -- after "Guest agent not available for now"
during a freeze it first asks for an unfreeze. Its flags are parsed by pflag: an unknown flag or a
bad number exits 2 with pflag's plain text. Logs are JSON lines on stderr (component "freezer").
So its exit code is NOT proof: the log lines are read, the guest agent is asked with virsh, and
the caller still confirms through the VMI status.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..durations import whole_seconds
from ..errors import Failed
from ..targets import COMPUTE, Target
from . import launcher_errors, virsh_agent
from .base import FREEZE, Options, Outcome, exec_plan, kubevirt_safety_thaw, remaining

NAME = "virt-freezer"
BINARY = "/usr/bin/virt-freezer"

# log messages after which exit 0 still means nothing was done
_NOTHING_DONE = ("no guest agent", "no need to freeze/unfreeze", "not running", "does not exist")
SUCCESS = "Operation completed successfully"
# virt-freezer's answer to an agent that is not available during a freeze: it unfreezes first
_UNFROZE_AFTER = "please make sure guest agent"


def command(target: Target, action: str, options: Options) -> list[str]:
    cmd = [BINARY, "--freeze" if action == FREEZE else "--unfreeze", "--name", target.name,
           "--namespace", target.namespace]
    if action == FREEZE:
        cmd += ["--unfreezeTimeoutSeconds", str(whole_seconds(options.unfreeze_timeout))]
    return cmd


def log_messages(stderr: str) -> list[dict]:
    """virt-freezer's JSON log lines ({"level", "msg", ...}); plain lines become {"msg": line}."""
    entries = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else {"msg": line})
    return entries


def _text(entry: dict) -> str:
    parts = [str(entry.get(k)) for k in ("msg", "reason", "error", "err") if entry.get(k)]
    return ": ".join(parts)


def outcome_from_run(exit_code: int | None, stderr: str, failure: str, target: Target, action: str,
                     options: Options, timed_out: bool = False, broke: bool = False,
                     before: str | None = None) -> Outcome:
    """``before``: what the guest agent said just before a freeze (None: not known)."""
    verb = "freeze" if action == FREEZE else "thaw"
    logs = log_messages(stderr)
    detail: dict[str, Any] = {"exitCode": exit_code, "logs": logs[-10:]}
    if timed_out:
        err = Failed(f"virt-freezer did not finish in time for {target.ref}")
        return Outcome(NAME, False, error=err, maybe_changed=True, detail=detail)
    if broke:
        err = Failed(f"the exec stream to virt-freezer broke for {target.ref} ({failure})",
                     "check with: kubectl freeze status " + target.name)
        return Outcome(NAME, False, error=err, maybe_changed=True, detail=detail)
    if exit_code is None or exit_code in (126, 127):
        why = failure or (f"exit code {exit_code}" if exit_code else "it did not run")
        hint = "use --method freezer or --method api" if "not found" in why or "no such file" in why.lower() else None
        return Outcome(NAME, False, error=Failed(f"could not run {BINARY} in pod {target.pod_name} ({why})", hint),
                       detail=detail)
    if exit_code == 2:
        # pflag refused the command line (plain text, the error last, after the usage): nothing ran
        last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "no message")
        err = Failed(f"{BINARY} in pod {target.pod_name} refused its arguments (exit 2: {last})",
                     "this virt-freezer differs from KubeVirt's; use --method api or --method freezer")
        return Outcome(NAME, False, error=err, detail=detail)
    texts = [_text(e) for e in logs]
    for text in texts:
        low = text.lower()
        if any(marker in low for marker in _NOTHING_DONE):
            hint = ("install and start qemu-guest-agent in the guest" if "agent" in low
                    else "check that the VM is running")
            err = Failed(f"virt-freezer did not {verb} {target.ref}: {text}", hint)
            return Outcome(NAME, False, error=err, detail=detail)
    vss = [text for text in texts if launcher_errors.VSS_RELEASED in text]
    if exit_code != 0 and vss and action != FREEZE:
        # qemu-ga for Windows thawed but says VSS had let go of the writes long before: the thaw
        # worked (the agent is asked below), the freeze did not hold.
        return Outcome(NAME, True, held=False, detail={**detail, "vss": vss[-1]})
    if exit_code != 0:
        errors = [e for e in logs if str(e.get("level", "")).lower() in ("error", "fatal")] or logs
        last = errors[-1] if errors else {}
        cause = launcher_errors.parse(str(last.get("reason") or ""))
        why = str(last.get("msg") or f"exit code {exit_code}")
        if cause is not None:
            detail["launcher"] = cause.describe()
            why = f"{why}: {cause.describe()}"
        elif _text(last):
            why = _text(last)
        if _UNFROZE_AFTER in why:
            why += ("; virt-freezer then asked for an unfreeze, which also cancels any safety thaw KubeVirt "
                    "had armed for an earlier freeze")
        err = Failed(f"virt-freezer could not {verb} {target.ref}: {why}", cause.hint if cause else None)
        maybe = action == FREEZE and (cause.maybe_froze if cause else True)
        return Outcome(NAME, False, error=err, maybe_changed=maybe, detail=detail)
    # exit 0: "Operation completed successfully" is virt-freezer's word for it; the agent still decides
    detail["completed"] = any(SUCCESS in text for text in texts)
    outcome = Outcome(NAME, True, detail=detail)
    return kubevirt_safety_thaw(outcome, target, options, before) if action == FREEZE else outcome


class VirtFreezer:
    name = NAME

    def plan(self, target: Target, action: str, options: Options) -> dict[str, Any]:
        return exec_plan(target, COMPUTE, command(target, action, options))

    def run(self, kube, target: Target, action: str, options: Options, deadline: float) -> Outcome:
        started = time.monotonic()
        # What the agent says before a freeze tells whether KubeVirt will arm a safety thaw.
        before = virsh_agent.read(kube, target, timeout=remaining(deadline, 5.0))[0] if action == FREEZE else None
        result = kube.exec(target.namespace, target.pod_name, COMPUTE, command(target, action, options),
                           timeout=remaining(deadline, 5.0))
        outcome = outcome_from_run(result.exit_code, result.stderr, result.failure, target, action, options,
                                   result.timed_out, result.broke, before)
        if outcome.ok:
            # virt-freezer's exit 0 proves nothing: ask the guest agent itself, with virsh.
            outcome.agent_status, _ = virsh_agent.read(kube, target, timeout=remaining(deadline, 5.0))
            want = "frozen" if action == FREEZE else "thawed"
            if outcome.agent_status not in (None, want):
                outcome.ok, outcome.maybe_changed = False, action == FREEZE
                outcome.error = Failed(f"virt-freezer exited 0 but the guest agent of {target.ref} says "
                                       f"{outcome.agent_status}", "check with: kubectl freeze status --live "
                                       + target.name)
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        return outcome
