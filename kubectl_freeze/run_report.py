"""What ``kubectl freeze run`` did per VM, its exit code and its output.

Exit codes of ``freeze run`` (COMMAND's own exit code otherwise; the 12x codes follow the
shell convention of ``timeout``/``env``: 124 timed out, 125 the tool itself failed, 126/127
COMMAND not executable / not found):

====  =========================================================================
122   a thaw failed or could not be confirmed: a VM may still be frozen (its safety thaw applies)
123   the freeze did not hold for the whole window (the guest was thawed under COMMAND: the
      session was lost, someone thawed it, the safety thaw fired, Windows VSS let go), or a VM
      started a live migration during the window (COMMAND was stopped, every VM thawed at once)
124   COMMAND outlived --max-window: it was stopped, the VMs thawed
125   the freeze failed: COMMAND was not run (VMs this run froze are thawed again)
126   COMMAND could not be executed; 127 COMMAND not found (both: after the freeze, rare, as
      the CLI checks COMMAND before anything is sent, exit 2 then)
130   interrupted (Ctrl-C or SIGTERM): COMMAND stopped, the VMs thawed
2     usage: nothing was sent
====  =========================================================================

The most serious wins: 122, then 125, 130, 124, 123, 126/127, then COMMAND's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .backup_command import CommandResult
from .hold import HeldSession
from .methods import subresource
from .output import parse_time, render_table, seconds_text
from .runner import VmResult
from .targets import Target
from .watch import FROZEN, THAWED, WatchResult

EXIT_THAW_FAILED = 122
EXIT_NOT_HELD = 123
EXIT_MAX_WINDOW = 124
EXIT_FREEZE_FAILED = 125
EXIT_INTERRUPTED = 130

RUN_EXIT_CODES = {
    122: "a thaw failed or is unconfirmed (a VM may still be frozen; its safety thaw applies)",
    123: "the freeze did not hold for the whole window, or a VM started migrating during it (the copy may be "
         "inconsistent)",
    124: "COMMAND outlived --max-window and was stopped; the VMs were thawed",
    125: "the freeze failed; COMMAND was not run (what this run froze was thawed)",
    126: "COMMAND could not be executed",
    127: "COMMAND not found",
    130: "interrupted (Ctrl-C or SIGTERM); COMMAND was stopped and the VMs thawed",
    2: "usage error; nothing was sent",
}
RUN_EXIT_HELP = ("Exit codes: COMMAND's own, unless: " +
                 "; ".join(f"{code} {text}" for code, text in RUN_EXIT_CODES.items()) + ".")

# A held freeze that failed with these froze nothing (the in-pod side's own classification).
NOTHING_FROZEN = {"refused", "agent-not-connected", "domain-not-found", "domain-not-running", "no-libvirt-python",
                  "usage"}


def _epoch(text: str | None) -> float | None:
    when = parse_time(text)
    return when.timestamp() if when is not None else None


@dataclass
class VmRun:
    target: Target
    method: str
    method_reason: str = ""
    session: HeldSession | None = None
    api_freeze: VmResult | None = None
    api_thaw: VmResult | None = None
    rollback: VmResult | None = None      # a thaw through the method after a session that ended unfrozen
    freeze_error: str = ""
    thaw_error: str = ""
    frozen_at: str | None = None
    thawed_at: str | None = None
    freeze_started: float = 0.0
    status_frozen: WatchResult | None = None
    status_thawed: WatchResult | None = None
    agent_after: str | None = None        # the agent asked after a session without a final answer
    refused_migrating: bool = False       # its pre-freeze re-check found a live migration: not frozen
    not_started: bool = False             # another VM's refusal stopped the run before this one's freeze
    warnings: list[str] = field(default_factory=list)

    # -- the freeze ------------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        if self.method == subresource.NAME:
            return self.api_freeze is not None and self.api_freeze.state == FROZEN and not self.freeze_error
        return self.session is not None and self.session.frozen is not None and not self.freeze_error

    @property
    def maybe_frozen(self) -> bool:
        """This run froze it, or may have: it must be thawed at the end."""
        if self.method == subresource.NAME:
            outcome = self.api_freeze.outcome if self.api_freeze else None
            return outcome is not None and (outcome.ok or outcome.maybe_changed) and not outcome.already
        if self.session is None:
            return False
        if self.session.frozen is not None:
            return True
        final = self.session.final or {}
        if final and not final.get("freeze_attempted", True):
            return False                    # failed before its freeze call (e.g. the status read)
        return ((final.get("error") or {}).get("code")) not in NOTHING_FROZEN

    def freeze_confirmed_by(self) -> list[str]:
        if self.method == subresource.NAME:
            return self.api_freeze.confirmed_by() if self.api_freeze else []
        how = []
        if self.session and self.session.frozen and self.session.frozen.get("status") == FROZEN:
            how.append("agent")
        if self.status_frozen and self.status_frozen.confirmed:
            how.append("vmi-status")
        return how

    def safety_deadline(self) -> str | None:
        if self.method == subresource.NAME:
            return self.api_freeze.outcome.safety_thaw_deadline if self.api_freeze and self.api_freeze.outcome else None
        safety = (self.session.frozen or {}).get("safety_thaw") if self.session else None
        return (safety or {}).get("deadline")

    def safety_deadline_epoch(self) -> float | None:
        return _epoch(self.safety_deadline())

    # -- the thaw --------------------------------------------------------------------------------
    def thaw_confirmed_by(self) -> list[str]:
        if self.method == subresource.NAME:
            return self.api_thaw.confirmed_by() if self.api_thaw else []
        how = []
        final = self.session.final if self.session else None
        if final and final.get("ok") and final.get("status") == THAWED:
            how.append("agent")
        elif self.agent_after == THAWED:
            how.append("agent-after")       # asked after the session ended without an answer
        elif self.rollback is not None and self.rollback.state == THAWED:
            how.extend(self.rollback.confirmed_by() or ["vmi-status"])
        if self.status_thawed and self.status_thawed.confirmed and "vmi-status" not in how:
            how.append("vmi-status")
        return how

    @property
    def thaw_confirmed(self) -> bool:
        if not self.maybe_frozen:
            return True
        if self.method == subresource.NAME:
            return self.api_thaw is not None and self.api_thaw.state == THAWED
        return any(h in ("agent", "agent-after") for h in self.thaw_confirmed_by()) or (
            self.rollback is not None and self.rollback.state == THAWED)

    def thaw_problem(self) -> str:
        if self.thaw_confirmed:
            return ""
        if self.thaw_error:
            return self.thaw_error
        if self.method == subresource.NAME:
            return self.api_thaw.error.line() if self.api_thaw and self.api_thaw.error else "not confirmed thawed"
        said = f"; the guest agent says {self.agent_after}" if self.agent_after else ""
        return (self.session.error_text() if self.session else "no session") + said

    @property
    def held(self) -> bool | None:
        """The freeze held from the agent's "frozen" to the thaw this run asked for (None: unknown)."""
        if not self.frozen:
            return None
        if self.method == subresource.NAME:
            outcome = self.api_thaw.outcome if self.api_thaw else None
            # Windows VSS let go before the thaw: the thaw worked, the freeze had not held
            return not (outcome is not None and (outcome.held is False or outcome.already))
        session = self.session
        if session.ended_early:
            return False
        if session.final and "held" in session.final:
            return bool(session.final.get("held"))
        return None

    def window_ms(self) -> int | None:
        if self.session and self.session.final:
            return self.session.final.get("window_ms")
        if self.method == subresource.NAME and self.api_freeze and self.api_thaw:
            start, end = _epoch(self.frozen_at), _epoch(self.thawed_at)
            return int((end - start) * 1000) if start and end else None
        return None

    def result(self) -> str:
        if not self.frozen:
            if self.freeze_error or (self.api_freeze and self.api_freeze.error):
                return "freeze-failed"
            return "not-frozen"
        if not self.thaw_confirmed:
            return "thaw-failed"
        if self.held is False:
            return "not-held"
        return "thawed"

    def to_dict(self) -> dict[str, Any]:
        session = self.session
        out: dict[str, Any] = {
            "namespace": self.target.namespace,
            "name": self.target.name,
            "pod": self.target.pod_name,
            "node": self.target.node,
            "method": self.method,
            "methodReason": self.method_reason or None,
            "result": self.result(),
            "held": self.held,
            "windowMs": self.window_ms(),
            "windowTimedBy": "in-pod" if session else ("client" if self.method == subresource.NAME else None),
            "freeze": {
                "confirmedBy": self.freeze_confirmed_by(),
                "frozenAt": self.frozen_at,
                "error": self.freeze_error or (self.api_freeze.error.line() if self.api_freeze and
                                               self.api_freeze.error and not self.frozen else None),
                "safetyThawDeadline": self.safety_deadline(),
            },
            "thaw": {
                "confirmedBy": self.thaw_confirmed_by() if self.maybe_frozen else [],
                "thawedAt": ((session.final or {}).get("thawed_at") if session else self.thawed_at),
                "releasedBy": (session.final or {}).get("released_by") if session else None,
                "error": self.thaw_problem() or None,
            },
            "vmiStatus": {
                "frozenSeen": bool(self.status_frozen and self.status_frozen.confirmed),
                "thawedSeen": bool(self.status_thawed and self.status_thawed.confirmed),
            },
            "session": None,
            "warnings": list(self.warnings) + list((session.final or {}).get("warnings") or [] if session else []),
        }
        if session is not None:
            out["session"] = {"lost": session.lost or None, "endedEarly": session.ended_early,
                              "exitCode": session.exit_code}
        return out


@dataclass
class RunReport:
    argv: list[str]
    vms: list[VmRun]
    command: CommandResult | None = None
    interrupted: bool = False
    freeze_failed: bool = False
    migrated: list[str] = field(default_factory=list)   # VMs that started migrating during the window

    @property
    def exit_code(self) -> int:
        if any(vm.maybe_frozen and not vm.thaw_confirmed for vm in self.vms):
            return EXIT_THAW_FAILED
        if self.freeze_failed:
            return EXIT_FREEZE_FAILED
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.command and self.command.stopped_by == "max-window":
            return EXIT_MAX_WINDOW
        if self.command and self.command.stopped_by == "migration":
            return EXIT_NOT_HELD
        if any(vm.held is False for vm in self.vms):
            return EXIT_NOT_HELD
        if self.command is None or self.command.exit_code is None:
            return EXIT_FREEZE_FAILED
        return self.command.exit_code

    def error_line(self) -> str | None:
        """The one stderr line when the run itself (not COMMAND) went wrong."""
        code = self.exit_code
        if code == EXIT_THAW_FAILED:
            bad = [vm for vm in self.vms if vm.maybe_frozen and not vm.thaw_confirmed]
            names = " ".join(vm.target.name for vm in bad)
            return (f"could not confirm the thaw of {', '.join(vm.target.ref for vm in bad)}: {bad[0].thaw_problem()}; "
                    f"check and thaw with kubectl unfreeze vm {names} -n {bad[0].target.namespace} "
                    f"(the safety thaw still applies)")
        if code == EXIT_FREEZE_FAILED:
            failed = [vm for vm in self.vms if not vm.frozen]
            named = [vm for vm in failed if vm.refused_migrating] or [vm for vm in failed if not vm.not_started]
            first = (named or failed or self.vms)[0]
            why = first.freeze_error or (first.api_freeze.error.line() if first.api_freeze and first.api_freeze.error
                                         else "not frozen")
            thawed = [vm.target.ref for vm in self.vms if vm.maybe_frozen]
            extra = f"; thawed again: {', '.join(thawed)}" if thawed else ""
            count = f"{len(failed)} of {len(self.vms)} VMs failed to freeze; " if len(self.vms) > 1 else ""
            return f"{count}could not freeze {first.target.ref}: {why}; COMMAND was not run{extra}"
        if code == EXIT_INTERRUPTED:
            return "interrupted; COMMAND stopped and every VM this run froze was thawed"
        if code == EXIT_MAX_WINDOW:
            return "COMMAND outlived --max-window and was stopped; every VM was thawed"
        if code == EXIT_NOT_HELD and self.command and self.command.stopped_by == "migration":
            return (f"{', '.join(self.migrated) or 'a VM'} started a live migration during the window: COMMAND was "
                    f"stopped and every VM was thawed, so the backup may be incomplete; run again once it migrated")
        if code == EXIT_NOT_HELD:
            loose = [vm for vm in self.vms if vm.held is False]
            why = "; ".join(f"{vm.target.ref}: {self._not_held_why(vm)}" for vm in loose)
            return f"the freeze did not hold for the whole window, so the backup may be inconsistent: {why}"
        if self.command and self.command.start_error:
            return f"COMMAND did not start: {self.command.start_error}; every VM was thawed"
        return None

    @staticmethod
    def _not_held_why(vm: VmRun) -> str:
        session = vm.session
        if session is not None and session.ended_early:
            return f"the held session ended during the window ({session.lost or 'the in-pod side thawed'})"
        warnings = (session.final or {}).get("warnings") if session else None
        if warnings:
            return " ".join(str(warnings[-1]).split())
        return "the guest was thawed before the thaw this run asked for"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "FreezeRunReport",
            "exitCode": self.exit_code,
            "command": self.command.to_dict(self.argv) if self.command else {"argv": self.argv, "exitCode": None},
            "interrupted": self.interrupted,
            "items": [vm.to_dict() for vm in self.vms],
        }

    def table(self, wide: bool = False, no_headers: bool = False) -> str:
        headers = ["NAME", "RESULT", "WINDOW", "FROZEN (CONFIRMED BY)", "THAWED (CONFIRMED BY)", "METHOD"]
        if wide:
            headers += ["NAMESPACE", "POD", "RELEASED BY"]
        rows = []
        for vm in self.vms:
            item = vm.to_dict()
            row = [vm.target.name, item["result"], seconds_text(item["windowMs"]),
                   "+".join(item["freeze"]["confirmedBy"]) or "-", "+".join(item["thaw"]["confirmedBy"]) or "-",
                   vm.method]
            if wide:
                row += [vm.target.namespace, vm.target.pod_name, item["thaw"]["releasedBy"] or "-"]
            rows.append(row)
        return render_table(headers, rows, no_headers)
