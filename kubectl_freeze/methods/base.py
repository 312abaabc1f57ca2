"""What every freeze method shares: options in, an Outcome out.

A method carries out ONE action (freeze or unfreeze) on ONE target and says what it learned:
whether it succeeded, what the guest agent itself answered (only the bundled freezer can
tell), whether the guest may have changed even though the call failed (so that a group
freeze knows what to roll back), and the safety-thaw deadline it armed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from ..errors import PluginError
from ..targets import Target

FREEZE = "freeze"
UNFREEZE = "unfreeze"


@dataclass
class Options:
    unfreeze_timeout: timedelta = timedelta(minutes=5)
    mountpoints: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    method: str
    ok: bool
    agent_status: str | None = None  # "frozen"/"thawed" as the guest agent answered, if it was asked
    already: bool | None = None  # the guest already was in the wanted state
    filesystems: int | None = None
    safety_thaw_deadline: str | None = None  # RFC 3339, when known
    # False: the method knows that no safety thaw was armed by this action (KubeVirt arms none for
    # a guest that is already frozen); None: not known. The note says which in words.
    safety_thaw_armed: bool | None = None
    safety_thaw_note: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: PluginError | None = None
    maybe_changed: bool = False  # failed, but the guest may have changed anyway (e.g. agent timeout)
    # thaw only: False when the freeze it ended had not held (Windows VSS let go of the writes)
    held: bool | None = None
    elapsed_ms: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    name: str

    def plan(self, target: Target, action: str, options: Options) -> dict[str, Any]:
        """What run() would do, for --dry-run: pod/container/command or the HTTP request."""

    def run(self, kube, target: Target, action: str, options: Options, deadline: float) -> Outcome:
        """Carry out ``action``; never raises for a failure of the action itself."""


def remaining(deadline: float, floor: float = 1.0) -> float:
    return max(floor, deadline - time.monotonic())


def deadline_after(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def exec_plan(target: Target, container: str, command: list[str]) -> dict[str, Any]:
    return {"pod": target.pod_name, "container": container, "command": command}


# KubeVirt's launcher arms its safety timer only when it froze a thawed guest; a freeze of a frozen
# guest keeps the old timer (or none, when it was frozen straight through libvirt).
KUBEVIRT_TIMER_KEPT = ("kept from the earlier freeze (KubeVirt arms no new safety thaw for a guest that is "
                       "already frozen; there is none if it was frozen straight through libvirt)")
KUBEVIRT_TIMER_UNKNOWN = ("unknown: the VMI status showed frozen before this freeze, and KubeVirt arms no new "
                          "safety thaw for a guest that is already frozen")


def kubevirt_safety_thaw(outcome: Outcome, target: Target, options: Options, before: str | None) -> Outcome:
    """Fill in what a successful freeze through virt-launcher (api, virt-freezer) armed, from the
    guest agent's answer just before it (None: not asked). No deadline is claimed that KubeVirt did
    not arm."""
    from ..durations import whole_seconds

    outcome.already = None if before is None else before == "frozen"
    if options.unfreeze_timeout.total_seconds() <= 0:
        outcome.safety_thaw_armed = False
    elif before == "frozen":
        outcome.safety_thaw_armed, outcome.safety_thaw_note = False, KUBEVIRT_TIMER_KEPT
    elif before is None and target.frozen_before:
        outcome.safety_thaw_note = KUBEVIRT_TIMER_UNKNOWN
    else:
        # Seen thawed (or, not asked, the VMI status said thawed): the launcher froze it and armed.
        outcome.safety_thaw_deadline = deadline_after(timedelta(seconds=whole_seconds(options.unfreeze_timeout)))
        outcome.safety_thaw_armed = True
    return outcome
