"""Method "api": KubeVirt's subresource API, as VirtualMachineSnapshot uses it.

``PUT /apis/subresources.kubevirt.io/v1/namespaces/NS/virtualmachineinstances/NAME/freeze`` with
``{"unfreezeTimeout": "5m0s"}`` and ``PUT .../unfreeze`` without a body. Needs ``update`` on
``virtualmachineinstances/freeze`` and ``/unfreeze`` (kubevirt.io:edit), no exec.

What virt-api answers (pkg/virt-api/rest/lifecycle.go, subresource.go):
- 409 Conflict first when the VMI is not Running ("VM is not running" / "VMI is not running");
- 200 with an empty body on success (virt-handler's own 202 is not passed on);
- 500 InternalError for any failure below it, the launcher's message wrapped twice
  (``launcher_errors.parse`` reads it back, for the same hints as the bundled freezer);
- 500 "context deadline exceeded" when virt-handler did not answer within virt-api's 10 s: the
  launcher goes on freezing (up to its own gRPC deadline, 60 s from KubeVirt 1.8), so then the
  guest is watched (its agent through virsh where exec is allowed, else the VMI status) before
  the freeze is reported or rolled back.

virt-handler turns the timeout into ``int32(d.Seconds())``: fractions are cut and more than
2^31-1 s overflows into a timer that fires at once, so the CLI sends whole seconds only and
refuses more. The launcher arms its timer only when it froze a thawed guest: for a guest that
was frozen already it keeps the old timer (or none), so the deadline is known only when the guest
was seen thawed just before the call.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from ..durations import to_go, whole_seconds
from ..errors import Failed, PluginError
from ..kube import SUBRESOURCES, KubeError
from ..targets import Target, freeze_status
from . import launcher_errors, virsh_agent
from .base import (FREEZE, KUBEVIRT_TIMER_KEPT, KUBEVIRT_TIMER_UNKNOWN, Options, Outcome,
                   kubevirt_safety_thaw, remaining)

NAME = "api"

# After virt-api gave up, how long the launcher may still be freezing: KubeVirt 1.8+'s gRPC
# deadline for the freeze (60 s) and a little more.
LATE_FREEZE_WATCH_S = 65.0
LATE_FREEZE_POLL_S = 1.0
VIRT_API_TIMEOUT = "context deadline exceeded"

KEPT, UNKNOWN = KUBEVIRT_TIMER_KEPT, KUBEVIRT_TIMER_UNKNOWN

# What a Windows guest agent answers a thaw after VSS released the freeze by itself (~10 s).
VSS_RELEASED = launcher_errors.VSS_RELEASED


def request(target: Target, action: str, options: Options) -> dict[str, Any]:
    sub = "freeze" if action == FREEZE else "unfreeze"
    path = (f"/apis/{SUBRESOURCES[0]}/{SUBRESOURCES[1]}/namespaces/{target.namespace}"
            f"/virtualmachineinstances/{target.name}/{sub}")
    # Whole seconds: virt-handler cuts fractions (0.5s would arm no timer at all).
    body = ({"unfreezeTimeout": to_go(timedelta(seconds=whole_seconds(options.unfreeze_timeout)))}
            if action == FREEZE else None)
    return {"method": "PUT", "path": path, "body": body}


def is_timeout(exc: KubeError) -> bool:
    """virt-api's own 10 s to virt-handler ran out, or ours to virt-api did: the call may still land."""
    return exc.status in (0, 504) or (exc.status == 500 and VIRT_API_TIMEOUT in exc.message)


def outcome_from_error(exc: KubeError, target: Target, action: str) -> Outcome:
    verb = "freeze" if action == FREEZE else "thaw"
    detail: dict[str, Any] = {"httpStatus": exc.status}
    if action != FREEZE and VSS_RELEASED in exc.message:
        # qemu-ga for Windows thawed (it leaves its frozen state) but says VSS had let go of the
        # writes long before: the thaw worked, the freeze did not hold. The VMI status confirms the thaw.
        return Outcome(NAME, True, held=False, detail={**detail, "vss": exc.message})
    failure = launcher_errors.parse(exc.message)
    maybe_changed = False
    if exc.status == 409:
        err = Failed(f"KubeVirt refused to {verb} {target.ref}: {exc.message}", "is the VMI still running?")
    elif failure is not None:
        detail["launcher"] = failure.describe()
        err = Failed(f"KubeVirt's virt-launcher could not {verb} {target.ref}: {failure.describe()}",
                     failure.hint or f"check the guest agent (kubectl freeze status {target.name} --live)")
        # e.g. "Guest agent not available for now": the agent may have frozen after all
        maybe_changed = action == FREEZE and failure.maybe_froze
    elif is_timeout(exc):
        detail["virtApiTimeout"] = True
        err = Failed(f"virt-api gave up waiting for the {verb} of {target.ref} ({_short(exc)}); the launcher "
                     f"goes on, so the {verb} may still complete",
                     f"check with: kubectl freeze status --live {target.name} -n {target.namespace}")
        maybe_changed = action == FREEZE
    elif exc.status == 400:
        # virt-api answers 400 itself only when it cannot reach virt-handler: nothing happened.
        err = Failed(f"KubeVirt could not {verb} {target.ref}: {exc.message}",
                     "is virt-handler running on the VMI's node?")
    elif exc.status == 404:
        err = Failed(f"the subresource API did not find {target.ref}/{verb}: {exc.message}",
                     "is the VMI still there, and is KubeVirt's API server (virt-api) running?")
    else:
        err = exc
        maybe_changed = exc.status == 500 and action == FREEZE
    return Outcome(NAME, False, error=err, maybe_changed=maybe_changed, detail=detail)


def _short(exc: KubeError) -> str:
    return VIRT_API_TIMEOUT if VIRT_API_TIMEOUT in exc.message else f"HTTP {exc.status or 'timeout'}"


def agent_says(kube, target: Target, deadline: float) -> tuple[str | None, bool]:
    """("frozen"|"thawed"|None, exec allowed): the guest agent's own answer, through virsh in the
    compute container. The api method needs no exec; where exec is forbidden this is (None, False)."""
    if not target.pod_name:
        return None, False
    try:
        status, _ = virsh_agent.read(kube, target, timeout=min(remaining(deadline, 5.0), 30.0))
    except KubeError as exc:
        return None, exc.status != 403
    except PluginError:
        return None, True
    return status, True


def succeeded(target: Target, action: str, options: Options, before: str | None) -> Outcome:
    """A 200: what was armed is known only from the guest's state just before the call."""
    outcome = Outcome(NAME, True, detail={"httpStatus": 200})
    return kubevirt_safety_thaw(outcome, target, options, before) if action == FREEZE else outcome


class SubresourceApi:
    name = NAME

    def plan(self, target: Target, action: str, options: Options) -> dict[str, Any]:
        return {"request": request(target, action, options)}

    def run(self, kube, target: Target, action: str, options: Options, deadline: float) -> Outcome:
        started = time.monotonic()
        req = request(target, action, options)
        sub = req["path"].rsplit("/", 1)[1]
        before, exec_allowed = agent_says(kube, target, deadline) if action == FREEZE else (None, False)
        try:
            kube.put_vmi_subresource(target.namespace, target.name, sub, req["body"],
                                     timeout=remaining(deadline, 5.0))
        except KubeError as exc:
            outcome = outcome_from_error(exc, target, action)
            if action == FREEZE and outcome.detail.get("virtApiTimeout"):
                outcome = self._late_freeze(kube, target, options, outcome, deadline, exec_allowed, before)
        else:
            outcome = succeeded(target, action, options, before)
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        return outcome

    def _late_freeze(self, kube, target: Target, options: Options, failed: Outcome, deadline: float,
                     exec_allowed: bool, before: str | None) -> Outcome:
        """virt-api stopped waiting, the launcher did not: watch the guest for the freeze to land
        before reporting (or rolling back) a freeze that may still happen."""
        gave_up = time.monotonic()
        until = min(deadline, gave_up + LATE_FREEZE_WATCH_S)
        seen, source = None, "the guest agent" if exec_allowed else "the VMI status"
        while True:
            if exec_allowed:
                seen, exec_allowed = agent_says(kube, target, until)
                source = "the guest agent" if exec_allowed else "the VMI status"
            if not exec_allowed:
                try:
                    vmi = kube.get_vmi(target.namespace, target.name)
                except KubeError:
                    vmi = None
                # A status that showed frozen before this freeze proves nothing about it.
                if vmi is not None and not target.frozen_before:
                    seen = freeze_status(vmi)
            if seen == "frozen" or time.monotonic() >= until:
                break
            time.sleep(LATE_FREEZE_POLL_S)
        waited = time.monotonic() - gave_up
        if seen != "frozen":
            failed.error = Failed(
                f"{failed.error.message}; {source} still says {seen or 'nothing'} {waited:.0f}s after virt-api "
                f"gave up", failed.error.hint)
            return failed
        late = succeeded(target, FREEZE, options, before if before == "frozen" else "thawed")
        late.agent_status = "frozen" if source == "the guest agent" else None
        late.detail.update(failed.detail, lateFreeze=True)
        late.warnings.append(
            f"virt-api gave up waiting for the freeze of {target.ref} (context deadline exceeded), but the "
            f"launcher went on: {source} showed it frozen {waited:.0f}s later; the safety-thaw deadline is "
            f"counted from then")
        return late
