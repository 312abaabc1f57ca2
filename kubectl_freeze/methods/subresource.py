"""Method "api": KubeVirt's subresource API, as VirtualMachineSnapshot uses it.

``PUT /apis/subresources.kubevirt.io/v1/namespaces/NS/virtualmachineinstances/NAME/freeze`` with
``{"unfreezeTimeout": "5m0s"}`` and ``PUT .../unfreeze`` without a body; 202 on success, 409 when
the VMI is not running, 400 with the launcher's error. Needs ``update`` on
``virtualmachineinstances/freeze`` and ``/unfreeze`` (kubevirt.io:edit), no exec.
The answer says nothing about the guest agent: confirmation comes from the VMI status.
"""

from __future__ import annotations

import time
from typing import Any

from ..durations import to_go
from ..errors import Failed
from ..kube import SUBRESOURCES, KubeError
from ..targets import Target
from .base import FREEZE, Options, Outcome, deadline_after, remaining

NAME = "api"


def request(target: Target, action: str, options: Options) -> dict[str, Any]:
    sub = "freeze" if action == FREEZE else "unfreeze"
    path = (f"/apis/{SUBRESOURCES[0]}/{SUBRESOURCES[1]}/namespaces/{target.namespace}"
            f"/virtualmachineinstances/{target.name}/{sub}")
    body = {"unfreezeTimeout": to_go(options.unfreeze_timeout)} if action == FREEZE else None
    return {"method": "PUT", "path": path, "body": body}


# What a Windows guest agent answers a thaw after VSS released the freeze by itself (~10 s).
VSS_RELEASED = "limited up to 10 seconds"


def outcome_from_error(exc: KubeError, target: Target, action: str) -> Outcome:
    verb = "freeze" if action == FREEZE else "thaw"
    if action != FREEZE and VSS_RELEASED in exc.message:
        # qemu-ga for Windows thawed (it leaves its frozen state) but says VSS had let go of the
        # writes long before: the thaw worked, the freeze did not hold. The VMI status confirms the thaw.
        return Outcome(NAME, True, held=False, detail={"httpStatus": exc.status, "vss": exc.message})
    if exc.status == 409:
        err = Failed(f"KubeVirt refused to {verb} {target.ref}: {exc.message}", "is the VMI still running?")
    elif exc.status == 400:
        err = Failed(f"KubeVirt could not {verb} {target.ref}: {exc.message}",
                     "check the guest agent (kubectl freeze status " + target.name + ")")
    elif exc.status == 404:
        err = Failed(f"the subresource API did not find {target.ref}/{verb}: {exc.message}",
                     "is the VMI still there, and is KubeVirt's API server (virt-api) running?")
    else:
        err = exc
    # a 400 from the launcher can come after a freeze that went through (agent timeout)
    return Outcome(NAME, False, error=err, maybe_changed=exc.status in (0, 400, 500, 504) and action == FREEZE,
                   detail={"httpStatus": exc.status})


class SubresourceApi:
    name = NAME

    def plan(self, target: Target, action: str, options: Options) -> dict[str, Any]:
        return {"request": request(target, action, options)}

    def run(self, kube, target: Target, action: str, options: Options, deadline: float) -> Outcome:
        started = time.monotonic()
        req = request(target, action, options)
        sub = req["path"].rsplit("/", 1)[1]
        try:
            kube.put_vmi_subresource(target.namespace, target.name, sub, req["body"],
                                     timeout=remaining(deadline, 5.0))
        except KubeError as exc:
            outcome = outcome_from_error(exc, target, action)
        else:
            deadline_text = None
            if action == FREEZE and options.unfreeze_timeout.total_seconds() > 0:
                deadline_text = deadline_after(options.unfreeze_timeout)
            outcome = Outcome(NAME, True, safety_thaw_deadline=deadline_text, detail={"httpStatus": 202})
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        return outcome
