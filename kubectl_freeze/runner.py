"""Freeze or thaw several VMs in parallel (bounded), all or none, and say how each was confirmed.

Per VM: pick the method (auto probes once per launcher image), run it, then wait for the VMI
status to agree (unless --no-wait), and leave an Event. For a freeze, if any VM fails, every VM
this run froze (or may have frozen) is thawed again and the run fails; VMs that were already
frozen before the run are left alone.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

from . import events
from .durations import human, to_go
from .errors import (EXIT_FAILED, EXIT_NOT_HELD, EXIT_OK, EXIT_UNCONFIRMED, Failed, Interrupted, NotHeld,
                     PluginError, Unconfirmed)
from .methods import AUTO, FREEZE, UNFREEZE, Options, Outcome, get
from .methods.auto import Prober, choose, explain
from .targets import Target, is_paused
from .watch import FROZEN, THAWED, WatchResult, describe, reached, wait_for_status

FAILED = "failed"
UNCONFIRMED = "unconfirmed"
PLANNED = "planned"
ROLLED_BACK = "rolled-back"
SKIPPED = "skipped"     # --skip-paused: left alone, nothing was sent for it


@dataclass
class RunOptions:
    action: str = FREEZE
    method: str = AUTO
    options: Options = field(default_factory=Options)
    timeout: timedelta = timedelta(minutes=2)
    wait: bool = True
    dry_run: bool = False
    parallel: int = 4
    who: str = ""


@dataclass
class VmResult:
    target: Target
    action: str
    state: str = FAILED
    method: str = ""
    method_reason: str = ""
    outcome: Outcome | None = None
    watch: WatchResult | None = None
    error: PluginError | None = None
    timings: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    rollback: "VmResult | None" = None
    held: bool | None = None    # thaw: False when the freeze it ended had not held (Windows VSS)

    @property
    def want(self) -> str:
        return FROZEN if self.action == FREEZE else THAWED

    @property
    def failed(self) -> bool:
        return self.state == FAILED or self.state == ROLLED_BACK

    def confirmed_by(self) -> list[str]:
        """How the result is known: the guest agent's own answer and/or the VMI status."""
        how = []
        if self.outcome and self.outcome.ok and self.outcome.agent_status == self.want:
            how.append("agent")
        if self.watch and self.watch.confirmed:
            how.append("vmi-status")
        return how

    def needs_rollback(self) -> bool:
        if self.action != FREEZE or self.state == PLANNED or self.outcome is None:
            return False
        if self.outcome.ok and self.outcome.already:
            return False
        # The VMI status read before the run lags the guest by a poll (and stays "frozen" after a
        # safety thaw until the next one): when the method saw the guest thawed, this run froze it.
        if self.target.frozen_before and self.outcome.already is not False:
            return False
        return self.outcome.ok or self.outcome.maybe_changed

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.target.namespace,
            "name": self.target.name,
            "action": self.action,
            "result": self.state,
            "ok": self.state in (FROZEN, THAWED, PLANNED) and self.held is not False,
            "held": self.held,
            "skipped": self.target.skipped or None,
            "method": self.method or None,
            "methodReason": self.method_reason or None,
            "pod": self.target.pod_name,
            "node": self.target.node,
            "confirmedBy": self.confirmed_by(),
            "agent": None,
            "vmiStatus": None,
            "safetyThaw": None,
            "timings": dict(self.timings),
            "warnings": list(self.warnings),
            "error": None,
        }
        if self.plan is not None:
            out["plan"] = self.plan
        if self.outcome is not None:
            if self.outcome.agent_status is not None or self.outcome.already is not None:
                out["agent"] = {
                    "status": self.outcome.agent_status,
                    "already": self.outcome.already,
                    "filesystems": self.outcome.filesystems,
                }
            if self.action == FREEZE and self.outcome.ok:
                armed = self.outcome.safety_thaw_armed
                out["safetyThaw"] = {
                    # no "after" for a timer that this freeze did not arm (KubeVirt kept the old one)
                    "after": to_go(self.options_timeout) if self.options_timeout is not None and armed is not False
                    else None,
                    "deadline": self.outcome.safety_thaw_deadline,
                    "armed": armed,
                    "note": self.outcome.safety_thaw_note,
                }
        if self.watch is not None:
            status = (self.watch.vmi.get("status") or {}).get("fsFreezeStatus")
            out["vmiStatus"] = {
                "fsFreezeStatus": status or None,
                "confirmed": self.watch.confirmed,
                "resourceVersion": (self.watch.vmi.get("metadata") or {}).get("resourceVersion"),
            }
        if self.error is not None:
            out["error"] = {"message": self.error.line(), "exitCode": self.error.exit_code}
        if self.rollback is not None:
            out["rollback"] = self.rollback.to_dict()
        return out

    options_timeout: timedelta | None = None


@dataclass
class Report:
    action: str
    results: list[VmResult]
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        if any(r.failed for r in self.results):
            return EXIT_FAILED
        if any(r.held is False for r in self.results):
            return EXIT_NOT_HELD
        if any(r.state == UNCONFIRMED for r in self.results):
            return EXIT_UNCONFIRMED
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "FreezePlan" if self.dry_run else "FreezeReport",
            "action": self.action,
            "exitCode": self.exit_code,
            "items": [r.to_dict() for r in self.results],
        }

    def first_error(self) -> PluginError | None:
        for result in self.results:
            if result.error is not None and result.state != UNCONFIRMED:
                return result.error
        for result in self.results:
            if result.error is not None:
                return result.error
        return None


Progress = Callable[[str], None]


# How long a status that already showed the wanted state before the action is watched for a
# newer version (two and a half of KubeVirt's default 5 s polls).
STALE_STATUS_WAIT_S = 12.5


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


class Runner:
    def __init__(self, kube, opts: RunOptions, progress: Progress | None = None):
        self.kube = kube
        self.opts = opts
        self.progress = progress or (lambda _msg: None)
        self.prober = Prober(kube)

    # -- one VM -------------------------------------------------------------------------------
    def _pick(self, target: Target, result: VmResult) -> str:
        if self.opts.method != AUTO:
            return self.opts.method
        started = time.monotonic()
        name, probe = choose(self.prober, target, self.opts.options.mountpoints)
        result.timings["probeMs"] = _ms(started)
        result.method_reason = explain(probe, name)
        return name

    def plan_one(self, target: Target) -> VmResult:
        result = VmResult(target, self.opts.action, state=PLANNED, warnings=list(target.warnings))
        result.options_timeout = self.opts.options.unfreeze_timeout if self.opts.action == FREEZE else None
        try:
            result.method = self._pick(target, result)
            result.plan = get(result.method).plan(target, self.opts.action, self.opts.options)
        except PluginError as exc:
            result.state, result.error = FAILED, exc
        return result

    def act_one(self, target: Target, action: str, deadline: float, method: str | None = None) -> VmResult:
        started = time.monotonic()
        result = VmResult(target, action, warnings=list(target.warnings))
        result.options_timeout = self.opts.options.unfreeze_timeout if action == FREEZE else None
        verb = "freezing" if action == FREEZE else "thawing"
        try:
            result.method = method or self._pick(target, result)
            self.progress(f"{verb} {target.ref} with {result.method} (pod {target.pod_name})")
            outcome = get(result.method).run(self.kube, target, action, self.opts.options, deadline)
            result.outcome = outcome
            result.timings["actionMs"] = outcome.elapsed_ms
            result.warnings.extend(outcome.warnings)
            if not outcome.ok:
                raise outcome.error or PluginError(EXIT_FAILED, f"{verb} {target.ref} failed")
            if outcome.already:
                result.warnings.append(
                    f"{target.ref} was already {result.want}"
                    + ("; its existing safety thaw was not extended" if result.method != "freezer"
                       and action == FREEZE else "")
                )
            stale = not outcome.already and reached(target.vmi, result.want)
            if self.opts.wait and stale and outcome.agent_status == result.want:
                # The VMI showed it before this action (a poll behind the guest), so its status
                # cannot confirm this action; the guest agent's own answer does.
                result.warnings.append(f"the VMI status already showed {result.want} before this action, "
                                       f"so only the guest agent's answer confirms it")
                result.state = result.want
            elif self.opts.wait:
                self.progress(f"{target.ref}: {self._agent_said(outcome)}waiting for the VMI status to show "
                              f"{result.want}")
                until = deadline
                if stale:
                    # Only a newer VMI version can confirm, and KubeVirt writes none when the
                    # status does not change: give its poll (5 s) a few rounds, not all of --timeout.
                    until = min(deadline, time.monotonic() + STALE_STATUS_WAIT_S)
                watched = wait_for_status(self.kube, target.vmi, result.want, until,
                                          newer_than=target.vmi if stale else None)
                result.watch = watched
                result.timings["confirmMs"] = watched.elapsed_ms
                if not watched.confirmed:
                    result.state = UNCONFIRMED
                    why = (f"the VMI status showed {result.want} already before this action and no newer "
                           f"status came" if stale else
                           f"the VMI status did not show {result.want} within {human(self.opts.timeout)}")
                    result.error = Unconfirmed(
                        f"{'froze' if action == FREEZE else 'thawed'} {target.ref} with {result.method}"
                        f"{' (the guest agent answered ' + outcome.agent_status + ')' if outcome.agent_status else ''}"
                        f" but {why}; last seen: {watched.last_seen()}",
                        f"check with: kubectl freeze status {target.name} -n {target.namespace}",
                    )
                else:
                    result.state = result.want
            else:
                result.state = result.want
        except PluginError as exc:
            result.state, result.error = FAILED, _paused_thaw(target, exc) if action == UNFREEZE else exc
        if result.state in (THAWED, UNCONFIRMED) and result.outcome and result.outcome.held is False:
            # The thaw worked, but what was backed up during the freeze is not consistent: not a
            # success with a warning (KubeVirt counts it a failed quiesce too).
            result.held = False
            result.error = NotHeld(
                f"the freeze of {target.ref} did not hold: a backup taken after 10 s is not consistent "
                f"(Windows VSS lets go of the writes about 10 s after the freeze; the guest is thawed now)",
                "redo the backup within 10 s of the freeze")
        result.timings["totalMs"] = _ms(started)
        self._record(result)
        return result

    @staticmethod
    def _agent_said(outcome: Outcome) -> str:
        return f"the guest agent says {outcome.agent_status}; " if outcome.agent_status else ""

    def _record(self, result: VmResult, rollback: bool = False) -> None:
        ok = result.state in (FROZEN, THAWED, UNCONFIRMED)
        if rollback:
            reason = events.ROLLED_BACK if ok else events.THAW_FAILED
        elif result.action == FREEZE:
            reason = events.FROZEN if ok else events.FREEZE_FAILED
        else:
            reason = events.THAWED if ok else events.THAW_FAILED
        deadline = result.outcome.safety_thaw_deadline if result.outcome else None
        message = events.message_for(
            "rollback" if rollback else result.action,
            ok,
            self.opts.who,
            result.method or self.opts.method,
            deadline,
            result.error.line() if result.error and (not ok or result.held is False) else "",
            safety_note=result.outcome.safety_thaw_note if result.outcome else None,
        )
        # The pod matters after a live migration: the safety thaw lives in the pod that froze.
        annotations = {"method": result.method or self.opts.method, "who": self.opts.who,
                       "pod": result.target.pod_name,
                       "safety-thaw-deadline": deadline if reason == events.FROZEN else None}
        warning = events.post(self.kube, result.target.vmi, reason, message,
                              warning=not ok or rollback or result.held is False,
                              annotations=annotations)
        if warning:
            result.warnings.append(warning)

    # -- the whole run ------------------------------------------------------------------------
    def _map(self, func, items):
        workers = max(1, min(self.opts.parallel, len(items)))
        if workers == 1:
            return [func(item) for item in items]
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            return list(pool.map(func, items))
        finally:
            # On Ctrl-C: start nothing new and let what runs finish (bounded by --timeout), so
            # the caller knows what it may have to undo; a second Ctrl-C stops waiting.
            pool.shutdown(wait=True, cancel_futures=True)

    def choose_methods(self, targets: list[Target]) -> dict[str, tuple[str, str, int]]:
        """Method per target (auto probes), decided for ALL targets before anything is changed."""
        chosen: dict[str, tuple[str, str, int]] = {}
        problems: list[str] = []

        def pick(target: Target):
            scratch = VmResult(target, self.opts.action)
            try:
                name = self._pick(target, scratch)
            except PluginError as exc:
                return target, None, exc.line(), 0
            return target, name, scratch.method_reason, scratch.timings.get("probeMs", 0)

        for target, name, reason, probe_ms in self._map(pick, targets):
            if name is None:
                problems.append(reason)
            else:
                chosen[target.ref] = (name, reason, probe_ms)
        if problems:
            if len(targets) == 1:
                raise Failed(problems[0])
            raise Failed(f"{len(problems)} of {len(targets)} VMs cannot be handled, so none was: "
                         + " | ".join(problems))
        return chosen

    def run(self, targets: list[Target]) -> Report:
        """Act on every target but the skipped ones (--skip-paused), which are reported as such,
        in the order given."""
        skipped = {t.ref: VmResult(t, self.opts.action, state=SKIPPED) for t in targets if t.skipped}
        active = [t for t in targets if not t.skipped]
        report = self._run(active) if active else Report(self.opts.action, [], dry_run=self.opts.dry_run)
        done = {r.target.ref: r for r in report.results}
        report.results = [skipped.get(t.ref) or done[t.ref] for t in targets]
        return report

    def _run(self, targets: list[Target]) -> Report:
        action = self.opts.action
        if self.opts.dry_run:
            return Report(action, self._map(self.plan_one, targets), dry_run=True)
        chosen = self.choose_methods(targets)
        deadline = time.monotonic() + self.opts.timeout.total_seconds()

        def act(target: Target) -> VmResult:
            name, reason, probe_ms = chosen[target.ref]
            result = self.act_one(target, action, deadline, method=name)
            result.method_reason = reason
            if probe_ms:
                result.timings = {"probeMs": probe_ms, **result.timings}
            return result

        begun: list[Target] = []
        finished: dict[str, VmResult] = {}

        def tracked(target: Target) -> VmResult:
            begun.append(target)
            finished[target.ref] = result = act(target)
            return result

        try:
            results = self._map(tracked, targets)
        except KeyboardInterrupt:
            if action == FREEZE:
                self._undo_interrupted(begun, finished, chosen)
            raise
        if action == FREEZE and any(r.failed for r in results):
            self._roll_back(results)
        return Report(action, results)

    def _undo_interrupted(self, begun: list[Target], finished: dict[str, VmResult],
                          chosen: dict[str, tuple[str, str, int]]) -> None:
        """Ctrl-C during a freeze: thaw every VM this run froze or was freezing (not the ones
        that were frozen before it), then raise Interrupted saying what happened."""
        undo = []
        for target in begun:
            result = finished.get(target.ref)
            if result is None:          # cut off mid-way: it may be frozen
                if target.frozen_before:
                    continue
                result = VmResult(target, FREEZE)
                result.method = chosen[target.ref][0]
            elif not result.needs_rollback():
                continue
            undo.append(result)
        if not undo:
            raise Interrupted("interrupted before any VM was frozen; nothing to undo")
        self.progress(f"interrupted: thawing the {len(undo)} VM(s) this run froze or was freezing")
        deadline = time.monotonic() + self.opts.timeout.total_seconds()
        backs = self._map(lambda r: self.act_one_rollback(r, deadline), undo)
        thawed = [b.target.ref for b in backs if b.state == THAWED]
        stuck = [b.target.ref for b in backs if b.state != THAWED]
        message = "interrupted; thawed again: " + (", ".join(thawed) or "none")
        if stuck:
            raise Interrupted(message + "; NOT confirmed thawed: " + ", ".join(stuck),
                              "check them with: kubectl freeze status (their safety thaw still applies)")
        raise Interrupted(message)

    def _roll_back(self, results: list[VmResult]) -> None:
        undo = [r for r in results if r.needs_rollback()]
        if not undo:
            return
        self.progress(f"a freeze failed: thawing the {len(undo)} VM(s) this run froze")
        deadline = time.monotonic() + self.opts.timeout.total_seconds()

        def thaw(result: VmResult) -> VmResult:
            back = self.act_one_rollback(result, deadline)
            result.rollback = back
            if result.state != FAILED:
                result.state = ROLLED_BACK
                if back.state != THAWED:
                    result.error = back.error
            return result

        self._map(thaw, undo)

    def act_one_rollback(self, result: VmResult, deadline: float) -> VmResult:
        started = time.monotonic()
        back = VmResult(result.target, UNFREEZE)
        back.method = result.method or AUTO
        try:
            outcome = get(back.method).run(self.kube, result.target, UNFREEZE, self.opts.options, deadline)
            back.outcome = outcome
            if not outcome.ok:
                raise outcome.error or PluginError(EXIT_FAILED, f"thawing {result.target.ref} failed")
            if self.opts.wait:
                latest = result.watch.vmi if result.watch else result.target.vmi
                back.watch = wait_for_status(self.kube, latest, THAWED, deadline)
                back.state = THAWED if back.watch.confirmed else UNCONFIRMED
                if not back.watch.confirmed:
                    back.error = Unconfirmed(f"thawed {result.target.ref} but the VMI status still shows "
                                             f"{describe(back.watch.vmi)}")
            else:
                back.state = THAWED
        except PluginError as exc:
            back.state, back.error = FAILED, exc
        back.timings["totalMs"] = _ms(started)
        self._record(back, rollback=True)
        return back


def _paused_thaw(target: Target, exc: PluginError) -> PluginError:
    """A thaw of a paused guest fails at once (libvirt: "domain is not running"): say why, and
    what to do, rather than leave the user to decode it."""
    if not is_paused(target.vmi):
        return exc
    return Failed(f"{target.ref} is paused, so it cannot be thawed now ({exc.message})",
                  f"its filesystems stay as they are until it runs: unpause it (virtctl unpause vm {target.name} "
                  f"-n {target.namespace}), then run kubectl unfreeze vm {target.name} -n {target.namespace} again")


def summary_error(report: Report) -> str | None:
    """The one stderr line for a run that did not fully succeed (None when it did)."""
    if report.exit_code == EXIT_OK:
        return None
    results = report.results
    failed = [r for r in results if r.state == FAILED]
    if report.dry_run or not failed and not any(r.state == ROLLED_BACK for r in results):
        unconfirmed = [r for r in results if r.error is not None]
        first = unconfirmed[0]
        extra = f" ({len(unconfirmed)} of {len(results)} VMs)" if len(results) > 1 else ""
        return first.error.line() + extra if first.error else None
    first = (failed or [r for r in results if r.state == ROLLED_BACK])[0]
    what = first.error.line() if first.error else f"{first.target.ref} failed"
    if len(results) > 1:
        verb = "freeze" if report.action == FREEZE else "thaw"
        what = f"{len(failed)} of {len(results)} VMs failed to {verb}; {what}"
    undone = [r for r in results if r.rollback is not None]
    if undone:
        thawed = [r.target.ref for r in undone if r.rollback.state == THAWED]
        stuck = [r for r in undone if r.rollback.state != THAWED]
        if thawed:
            what += f"; thawed again: {', '.join(thawed)}"
        if stuck:
            refs = " ".join(r.target.name for r in stuck)
            what += (f"; could not confirm the thaw of {', '.join(r.target.ref for r in stuck)}: "
                     f"check and thaw with kubectl unfreeze vm {refs} -n {stuck[0].target.namespace}")
    return what
