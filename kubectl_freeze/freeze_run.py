"""``kubectl freeze run VM... -- COMMAND``: freeze all (or none), run COMMAND the moment every guest
agent confirmed frozen, thaw every VM the moment COMMAND ends, whatever ends it.

Per VM the freeze is held by one exec session (hold.py): freezer or virt-freezer, as auto's probe
chooses. Where exec is forbidden (or ``--method api``), the subresource API with
``unfreezeTimeout = --max-window`` and an explicit unfreeze: that path cannot thaw when the client
is lost; KubeVirt's timer thaws at --max-window then.

The VMI status is still watched and shown, but COMMAND does not wait for its lag: the in-pod
side's own reading of the guest agent confirms the freeze and the thaw.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from . import events
from .backup_command import BackupCommand
from .durations import human, to_go, whole_seconds
from .errors import PluginError
from .hold import HeldSession
from .methods import FREEZE, UNFREEZE, Options
from .methods import subresource
from .methods import virsh_agent
from .run_report import EXIT_FREEZE_FAILED, RunReport, VmRun
from .runner import Runner, RunOptions, VmResult
from .kube import KubeError
from .targets import LAUNCHER_SELECTOR, Target, migrating_now
from .watch import FROZEN, THAWED, wait_for_status

# After the thaw, how long the VMI status is watched for display only (KubeVirt's poll lags by up
# to 5 s; the guest agent already confirmed, so the command does not wait that long).
STATUS_AFTER_THAW_S = 2.0
# The in-pod side thaws by itself this long after --max-window, should this client be wedged.
MAX_HOLD_GRACE_S = 15
# How often each VMI is re-read during the window, to see a live migration start.
MIGRATION_POLL_S = 0.5

Progress = Callable[[str], None]


@dataclass
class RunSettings:
    max_window: timedelta
    unfreeze_timeout: timedelta
    method: str = "auto"
    timeout: timedelta = timedelta(minutes=2)   # for each freeze and each thaw to be confirmed
    parallel: int = 4
    who: str = ""


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FreezeRun:
    def __init__(self, kube, settings: RunSettings, progress: Progress | None = None, command_stdout=None):
        self.kube = kube
        self.settings = settings
        self.command_stdout = command_stdout
        self._stopping = threading.Event()     # interrupted: a session that starts now is released at once
        self._refused = threading.Event()      # a VM is migrating: no further freeze is started
        self._window_over = threading.Event()  # the thaw began: the migration watchers stop
        self.migrated: list[str] = []          # VMs seen starting a migration during the window
        self.progress = progress or (lambda _msg: None)
        options = Options(unfreeze_timeout=settings.unfreeze_timeout)
        self.runner = Runner(kube, RunOptions(action=FREEZE, method=settings.method, options=options,
                                              timeout=settings.timeout, parallel=settings.parallel,
                                              who=settings.who), self.progress)
        # the api path: KubeVirt's timer IS the bound of the window when this client is gone
        self.api_runner = Runner(kube, RunOptions(action=FREEZE, method="api",
                                                  options=Options(unfreeze_timeout=settings.max_window),
                                                  timeout=settings.timeout, parallel=settings.parallel,
                                                  who=settings.who), self.progress)

    # -- the whole run ----------------------------------------------------------------------------
    def run(self, targets: list[Target], argv: list[str]) -> RunReport:
        report = RunReport(argv=list(argv), vms=[])
        chosen = self.runner.choose_methods(targets)
        report.vms = [VmRun(target=t, method=chosen[t.ref][0], method_reason=chosen[t.ref][1]) for t in targets]
        self._command: BackupCommand | None = None
        self._thawed = False
        try:
            return self._freeze_run_thaw(report, argv)
        except BaseException:
            # Whatever broke the run (a broken exec stream, a second signal, a bug): COMMAND is
            # stopped and every VM this run froze is thawed before the error goes on.
            self._stopping.set()
            if self._command is not None:
                self._command.stop("interrupt")
            if not self._thawed:
                self._thaw_all(report.vms)
            raise

    def _freeze_run_thaw(self, report: RunReport, argv: list[str]) -> RunReport:
        # A held freeze starts from a thawed guest: its thaw at the end would end somebody else's
        # freeze (another freeze run, a VirtualMachineSnapshot) under them. The in-pod side asks
        # the agent itself; on the api path the VMI status is all there is to go by before acting.
        frozen_before = [vm for vm in report.vms if vm.method == subresource.NAME and vm.target.frozen_before]
        if frozen_before:
            for vm in frozen_before:
                vm.freeze_error = ("refused: the guest is frozen already (its VMI status says so: another freeze run "
                                   "or someone else froze it), so nothing was changed")
            report.freeze_failed = True
            return report
        try:
            self._freeze_all(report.vms)
        except KeyboardInterrupt:
            report.interrupted = True
            self._stopping.set()
            self.progress("interrupted during the freeze: thawing what this run froze or was freezing")
            self._thaw_all(report.vms)
            return report
        if any(not vm.frozen for vm in report.vms):
            report.freeze_failed = True
            if any(vm.maybe_frozen for vm in report.vms):
                self.progress("a freeze failed: thawing the VMs this run froze; COMMAND is not run")
            self._thaw_all(report.vms)
            return report
        watchers = self._watch_frozen(report.vms)
        command = BackupCommand(argv, self._environment(report.vms), self.command_stdout)
        self._command = command
        report.command = command.result
        watchers += self._watch_migration(report.vms, command)
        try:
            refs = ", ".join(vm.target.ref for vm in report.vms)
            self.progress(f"frozen: {refs}; running {argv[0]}")
            if command.start():
                command.wait(self.settings.max_window.total_seconds())
            else:
                self.progress(f"COMMAND did not start ({command.result.start_error})")
        except KeyboardInterrupt:
            report.interrupted = True
            command.stop("interrupt")           # the signal may have come between start and wait
            self.progress("interrupted: COMMAND stopped; thawing")
        if command.result.stopped_by == "max-window":
            self.progress(f"COMMAND outlived --max-window {human(self.settings.max_window)}: stopped; thawing")
        self._window_over.set()
        report.migrated = list(self.migrated)
        self._thaw_all(report.vms)
        for watcher in watchers:
            watcher.join(timeout=0)
        self._status_after_thaw(report.vms)
        return report

    # -- freeze ------------------------------------------------------------------------------------
    def _pool(self, func, items) -> None:
        """Run ``func`` over ``items`` in threads; the main thread stays free for Ctrl-C."""
        workers = max(1, min(self.settings.parallel, len(items)))
        pool = ThreadPoolExecutor(max_workers=workers)
        futures = [pool.submit(func, item) for item in items]
        try:
            for future in futures:
                while True:
                    try:
                        future.result(timeout=0.1)
                        break
                    except TimeoutError:
                        continue
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _freeze_all(self, vms: list[VmRun]) -> None:
        deadline = time.monotonic() + self.settings.timeout.total_seconds()
        self._pool(lambda vm: self._freeze_one(vm, deadline), vms)

    def _freeze_one(self, vm: VmRun, deadline: float) -> None:
        target = vm.target
        if self._refused.is_set():
            vm.freeze_error = "not started: another VM of this run is migrating"
            vm.not_started = True
            return
        # Right before the freeze (the method is chosen, the probe done): a live migration may have
        # started since the preflight. The bundled freezer's hold and the sh hold go straight to
        # libvirt, where nothing refuses, and a migration would carry a frozen guest away from its
        # held session and its safety thaw. So: re-read the VMI (and its pods), refuse, freeze no more.
        why = self._migrating(target)
        if why:
            vm.freeze_error = f"VMI {target.ref} is {why}: it was not frozen (KubeVirt refuses a freeze during a " \
                              f"migration); wait until the migration ends and run again"
            vm.refused_migrating = True
            self._refused.set()
            self.progress(f"{target.ref} started migrating after the preflight: not freezing it, nor any other VM")
            return
        vm.freeze_started = time.monotonic()
        if vm.method == subresource.NAME:
            self.progress(f"freezing {target.ref} with api (unfreezeTimeout {to_go(self.settings.max_window)}; "
                          f"this path cannot thaw if the client is lost before --max-window)")
            vm.api_freeze = self.api_runner.act_one(target, FREEZE, deadline, method=subresource.NAME)
            outcome = vm.api_freeze.outcome
            if outcome is not None and outcome.already:
                # frozen by someone else since the preflight: not this run's to hold, nor to thaw
                vm.freeze_error = ("refused: the guest is frozen already (the guest agent says so: another freeze "
                                   "run or someone else froze it), so it was left alone")
            vm.frozen_at = _rfc3339(time.time()) if vm.frozen else None
            return
        self.progress(f"freezing {target.ref} with {vm.method}, held by its exec session (pod {target.pod_name})")
        max_hold = int(self.settings.max_window.total_seconds()) + MAX_HOLD_GRACE_S
        vm.session = HeldSession(self.kube, target, vm.method, whole_seconds(self.settings.unfreeze_timeout),
                                 max_hold)
        try:
            vm.session.start()
        except PluginError as exc:
            vm.freeze_error = exc.line()
            vm.session = None
            return
        if self._stopping.is_set():
            vm.session.release()            # interrupted meanwhile: it thaws as soon as it froze
        if not vm.session.wait_frozen(deadline - time.monotonic()):
            if not vm.session.done:
                vm.freeze_error = f"no answer from the in-pod side within {human(self.settings.timeout)}"
                vm.session.release()        # it thaws if it froze meanwhile
            else:
                vm.freeze_error = vm.session.error_text()
        else:
            vm.frozen_at = vm.session.frozen.get("frozen_at")
        self._event(vm, FREEZE)

    def _migrating(self, target: Target) -> str | None:
        """Why the VMI is migrating now, from a fresh read (None: it is not, or it cannot be read:
        the freeze itself then says what is wrong)."""
        try:
            vmi = self.kube.get_vmi(target.namespace, target.name)
        except KubeError:
            return None
        why = migrating_now(vmi)
        if why:
            return why
        try:
            pods = self.kube.list_pods(target.namespace, LAUNCHER_SELECTOR)
        except KubeError:
            return None
        return migrating_now(vmi, pods)

    def _watch_migration(self, vms: list[VmRun], command: BackupCommand) -> list[threading.Thread]:
        """During the window, re-read each VMI every MIGRATION_POLL_S: a live migration that starts
        would carry the frozen guest away from its held session (and from virt-launcher's safety
        timer), and a guest that arrives frozen has nothing left to thaw it. So the window ends
        at once: a warning, COMMAND is stopped, every VM is thawed (before the migration can
        complete), and the run exits 123 (the freeze did not hold for the whole window)."""
        threads = []
        for vm in vms:
            def watch(vm: VmRun = vm) -> None:
                target = vm.target
                while not self._window_over.wait(MIGRATION_POLL_S):
                    try:
                        vmi = self.kube.get_vmi(target.namespace, target.name)
                    except KubeError:
                        continue
                    why = migrating_now(vmi)
                    if why and not self._window_over.is_set():
                        vm.warnings.append(f"{target.ref} started {why} during the window: COMMAND was stopped "
                                           f"and every VM thawed at once, before the migration could carry a "
                                           f"frozen guest away from its held session")
                        self.migrated.append(target.ref)
                        self.progress(f"{target.ref} started migrating during the window: stopping COMMAND; thawing")
                        command.stop("migration")
                        return

            thread = threading.Thread(target=watch, daemon=True, name=f"migration-{vm.target.ref}")
            thread.start()
            threads.append(thread)
        return threads

    def _watch_frozen(self, vms: list[VmRun]) -> list[threading.Thread]:
        """Watch each VMI for fsFreezeStatus frozen while COMMAND runs (shown, not waited for)."""
        threads = []
        for vm in vms:
            if vm.session is None:
                continue
            until = time.monotonic() + self.settings.max_window.total_seconds()

            def watch(vm: VmRun = vm, until: float = until) -> None:
                try:
                    vm.status_frozen = wait_for_status(self.kube, vm.target.vmi, FROZEN, until,
                                                       newer_than=vm.target.vmi)
                except PluginError as exc:
                    vm.warnings.append(f"watching the VMI status: {exc.line()}")

            thread = threading.Thread(target=watch, daemon=True, name=f"watch-{vm.target.ref}")
            thread.start()
            threads.append(thread)
        return threads

    # -- thaw --------------------------------------------------------------------------------------
    def _thaw_all(self, vms: list[VmRun]) -> None:
        """Thaw every VM this run froze or may have frozen; Ctrl-C cannot cut this short."""
        todo = [vm for vm in vms if vm.maybe_frozen]
        for vm in todo:                      # every held session at once: no VM waits for another
            if vm.session is not None:
                vm.session.release()
        deadline = time.monotonic() + self.settings.timeout.total_seconds()
        done = threading.Event()

        def work() -> None:
            try:
                with ThreadPoolExecutor(max_workers=max(1, min(self.settings.parallel, len(todo) or 1))) as pool:
                    list(pool.map(lambda vm: self._thaw_one(vm, deadline), todo))
            finally:
                done.set()

        worker = threading.Thread(target=work, daemon=True, name="thaw")
        worker.start()
        while not done.is_set():
            try:
                done.wait(0.1)
            except KeyboardInterrupt:
                self.progress("interrupted again: still thawing (a thaw is never cut short)")
        self._thawed = True

    def _thaw_one(self, vm: VmRun, deadline: float) -> None:
        if vm.method == subresource.NAME:
            vm.api_thaw = self.api_runner.act_one(vm.target, UNFREEZE, deadline, method=subresource.NAME)
            vm.thawed_at = _rfc3339(time.time())
            return
        session = vm.session
        if session is None:
            return
        if not session.wait_done(deadline - time.monotonic()):
            vm.thaw_error = f"the in-pod side did not answer the thaw within {human(self.settings.timeout)}"
        if session.final is None or session.final.get("ok") is not True:
            # No answer (the session broke): the in-pod side thaws on its stdin's EOF; ask the agent.
            try:
                said, _result = virsh_agent.read(self.kube, vm.target, timeout=10.0)
            except PluginError as exc:      # the pod may be gone (deleted, migrated away)
                said = None
                vm.warnings.append(f"could not ask the guest agent after the thaw: {exc.line()}")
            vm.agent_after = said
            if said == FROZEN and session.frozen is None:
                # its freeze completed after the session gave up on it: thaw through the method
                vm.rollback = self.runner.act_one_rollback(VmResult(vm.target, FREEZE, method=vm.method), deadline)
        self._event(vm, UNFREEZE)

    def _status_after_thaw(self, vms: list[VmRun]) -> None:
        """The VMI status, watched for thawed for display only: the agent already confirmed."""
        until = time.monotonic() + STATUS_AFTER_THAW_S

        def watch(vm: VmRun) -> None:
            if vm.session is None or not vm.frozen:
                return
            start = vm.status_frozen.vmi if vm.status_frozen else vm.target.vmi
            try:
                vm.status_thawed = wait_for_status(self.kube, start, THAWED, until,
                                                   newer_than=start if vm.status_frozen else None)
            except PluginError as exc:
                vm.warnings.append(f"watching the VMI status: {exc.line()}")

        with ThreadPoolExecutor(max_workers=max(1, min(self.settings.parallel, len(vms)))) as pool:
            list(pool.map(watch, vms))

    # -- COMMAND's environment, Events -------------------------------------------------------------
    def _environment(self, vms: list[VmRun]) -> dict[str, str]:
        env = dict(os.environ)
        window_end = time.time() + self.settings.max_window.total_seconds()
        deadlines = [window_end] + [d for d in (vm.safety_deadline_epoch() for vm in vms) if d]
        items = [{"namespace": vm.target.namespace, "name": vm.target.name, "pod": vm.target.pod_name,
                  "node": vm.target.node, "method": vm.method, "frozenAt": vm.frozen_at,
                  "safetyThawDeadline": vm.safety_deadline()} for vm in vms]
        env.update({
            "KUBECTL_FREEZE_VMS": " ".join(vm.target.ref for vm in vms),
            "KUBECTL_FREEZE_NAMESPACES": " ".join(vm.target.namespace for vm in vms),
            "KUBECTL_FREEZE_NAMES": " ".join(vm.target.name for vm in vms),
            "KUBECTL_FREEZE_PODS": " ".join(vm.target.pod_name for vm in vms),
            # COMMAND must be done by then: --max-window stops it, or a safety thaw ends a freeze
            "KUBECTL_FREEZE_DEADLINE": _rfc3339(min(deadlines)),
            "KUBECTL_FREEZE_JSON": json.dumps({"vms": items, "deadline": _rfc3339(min(deadlines))}),
        })
        return env

    def _event(self, vm: VmRun, action: str) -> None:
        """The same Event freeze vm / unfreeze vm leave (the api path's come from the Runner)."""
        if action == FREEZE:
            ok, reason = vm.frozen, events.FROZEN if vm.frozen else events.FREEZE_FAILED
            detail = "" if ok else vm.freeze_error
        else:
            ok = vm.thaw_confirmed
            reason = events.THAWED if ok else events.THAW_FAILED
            detail = "" if ok else vm.thaw_problem()
        deadline = vm.safety_deadline() if action == FREEZE else None
        message = events.message_for(action, ok, self.settings.who, f"{vm.method}, held by kubectl freeze run",
                                     deadline, detail)
        # The pod matters after a live migration: the safety thaw lives in the pod that froze.
        annotations: dict[str, Any] = {"method": vm.method, "who": self.settings.who, "pod": vm.target.pod_name,
                                       "safety-thaw-deadline": deadline if ok else None}
        warning = events.post(self.kube, vm.target.vmi, reason, message, warning=not ok, annotations=annotations)
        if warning:
            vm.warnings.append(warning)


# -- the CLI's entry (cli.py registers the command; flags are checked here, before anything is sent) --
def _settings(unfreeze_timeout: str | None, max_window: str, method: str, timeout: str, parallel: int,
              check_action) -> RunSettings:
    from .durations import check_kubevirt_seconds, parse_duration
    from .errors import UsageError

    wait_for = check_action(method, parallel, timeout)
    window = parse_duration(max_window, "--max-window")
    # The api path hands --max-window to KubeVirt as its timer, and every path arms --unfreeze-timeout.
    check_kubevirt_seconds(window, "--max-window", max_window)
    if window.total_seconds() < 1:
        raise UsageError(f"--max-window {max_window} is shorter than a second", "give e.g. 30s or 2m")
    if unfreeze_timeout is None:
        safety = window + timedelta(minutes=5)
    else:
        safety = parse_duration(unfreeze_timeout, "--unfreeze-timeout")
        if safety <= window:
            raise UsageError(f"--unfreeze-timeout {unfreeze_timeout} is not longer than --max-window {max_window}: "
                             f"the safety thaw would end the freeze under COMMAND",
                             "give a longer --unfreeze-timeout, or a shorter --max-window")
    check_kubevirt_seconds(safety, "--unfreeze-timeout", unfreeze_timeout or f"{max_window} + 5m")
    return RunSettings(max_window=window, unfreeze_timeout=safety, method=method, timeout=wait_for,
                       parallel=parallel)


def run_command(obj: dict | None, names, selector, all_namespaces: bool, unfreeze_timeout: str | None,
                max_window: str, method: str, timeout: str, parallel: int, common) -> int:
    from .backup_command import check_command
    from .cli import _check_common_action, _check_names
    from .errors import UsageError

    fmt = common.validate()
    argv = (obj or {}).get("command")
    if argv is None:
        raise UsageError("freeze run needs -- before COMMAND", "kubectl freeze run VM... -- COMMAND [ARGS...]")
    parsed = _check_names(names, selector, "freeze run")
    if all_namespaces and parsed:
        raise UsageError("names cannot be given with -A", "use -l SELECTOR with -A, or -n NAMESPACE with names")
    if all_namespaces and common.namespace is not None:
        raise UsageError("-A and -n conflict", "give only one")
    settings = _settings(unfreeze_timeout, max_window, method, timeout, parallel, _check_common_action)
    check_command(argv)
    printer = common.printer()
    cluster = common.cluster()

    from .events import who
    from .kube import Kube
    from .targets import resolve_targets

    settings.who = who(cluster.user)
    kube = Kube(cluster)
    try:
        try:
            namespace = None if all_namespaces else cluster.namespace
            targets = resolve_targets(kube, namespace, parsed, selector, FREEZE)
            for target in targets:
                for warning in target.warnings:
                    printer.warn(warning)
            # -o json|yaml: stdout carries the report only, so COMMAND's output goes to stderr
            command_stdout = sys.stderr if fmt in ("json", "yaml") else None
            report = FreezeRun(kube, settings, printer.progress, command_stdout).run(targets, argv)
        except UsageError:
            raise
        except PluginError as exc:
            # before anything was frozen: a freeze failure, and COMMAND was not run
            raise PluginError(EXIT_FREEZE_FAILED, exc.message + "; COMMAND was not run", exc.hint) from None
    finally:
        kube.close()
    for vm in report.vms:
        for warning in vm.warnings:
            printer.warn(warning)
    from . import output

    data = report.to_dict()
    if fmt in ("json", "yaml"):
        printer.data(output.dump(data, fmt))
    elif fmt == "name":
        printer.data(output.names([i for i in data["items"] if i["result"] == "thawed"]))
    else:
        printer.data(report.table(wide=fmt == "wide", no_headers=common.no_headers))
    error = report.error_line()
    if error:
        printer.error(error)
    return report.exit_code
