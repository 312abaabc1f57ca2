"""``kubectl freeze status``: what the VMI status (and, with --live, the guest agent) says.

Rows are plain dicts built by ``status_row`` (pure, unit-tested); ``gather`` does the reads:
one list of VMIs (or one GET per name), one list of launcher pods and a list of only kubectl-freeze's
Events on VMIs (a field selector; Events are optional: kube-apiserver drops them after an hour, and
without one the row still shows the VMI's fsFreezeStatus, with SINCE unknown).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from . import events
from .errors import PluginError, UsageError
from .methods import bundled, virsh_agent
from .methods.auto import Prober
from .targets import (
    LAUNCHER_SELECTOR,
    VSS_HOLD_S,
    Target,
    agent_connected,
    condition,
    fetch_vmis,
    freeze_status,
    is_paused,
    is_windows,
    migration_in_progress,
    select_launcher_pod,
)
from .kube import KubeError
from .output import parse_time


NO_SAFETY_THAW = "frozen, no safety thaw"


def safety_thaw_lost(vmi: dict, pod_name: str | None, event: dict | None) -> str | None:
    """Why a frozen VMI has no safety thaw any more, or None. Both safety thaws (KubeVirt's timer
    and the freezer's watchdog) live in the launcher pod that froze the guest, and nothing in
    KubeVirt stops a frozen VMI from live-migrating: in the new pod there is none. The freeze's
    Event names the pod (and its time dates the freeze, for Events that do not)."""
    frozen_by = events.annotation(event, "pod")
    if frozen_by and pod_name and frozen_by != pod_name:
        return (f"{NO_SAFETY_THAW}: it was frozen through pod {frozen_by}, and the VMI now runs in pod {pod_name} "
                f"(it migrated): the safety thaw stayed behind with the old pod; thaw it yourself")
    migration = (vmi.get("status") or {}).get("migrationState") or {}
    since = events.timestamp(event)
    if since and migration.get("completed") and migration.get("startTimestamp") \
            and since <= str(migration["startTimestamp"]):
        return (f"{NO_SAFETY_THAW}: it was frozen at {since}, before a live migration to node "
                f"{migration.get('targetNode') or '?'} (started {migration['startTimestamp']}): the safety thaw "
                f"stayed behind with the old pod; thaw it yourself")
    return None


def status_row(vmi: dict, pod: dict | None, event: dict | None) -> dict:
    meta, status = vmi.get("metadata") or {}, vmi.get("status") or {}
    state = freeze_status(vmi)
    since = None
    reason = (event or {}).get("reason")
    if event and ((state == "frozen" and reason == events.FROZEN)
                  or (state == "thawed" and reason in (events.THAWED, events.ROLLED_BACK))):
        since = events.timestamp(event)
    agent = condition(vmi, "AgentConnected")
    os_info = status.get("guestOSInfo") or {}
    migration = migration_in_progress(vmi)
    pod_name = ((pod or {}).get("metadata") or {}).get("name")
    lost = safety_thaw_lost(vmi, pod_name, event) if state == "frozen" and since else None
    # Windows: the agent (so the VMI status) says frozen until the thaw, but VSS let the writes go
    # about 10 s after the freeze.
    vss_let_go = bool(state == "frozen" and since and is_windows(vmi) and _older_than(since, VSS_HOLD_S))
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "phase": status.get("phase") or "Pending",
        "paused": is_paused(vmi),
        "agent": "connected" if agent_connected(vmi) else "none",
        # KubeVirt stamps AgentConnected with lastProbeTime (when it connected); lastTransitionTime is null
        "agentSince": (agent or {}).get("lastProbeTime") or (agent or {}).get("lastTransitionTime"),
        "freeze": state,
        "since": since,
        "node": status.get("nodeName") or None,
        "pod": ((pod or {}).get("metadata") or {}).get("name"),
        "os": os_info.get("prettyName") or os_info.get("name") or None,
        "windows": is_windows(vmi),
        "migrating": bool(migration),
        "safetyThawDeadline": events.annotation(event, "safety-thaw-deadline") if state == "frozen" and since
        and not lost else None,
        "noSafetyThaw": lost,
        "held": False if vss_let_go else None,
        "lastAction": None if not event else {
            "reason": reason,
            "time": events.timestamp(event),
            "method": events.annotation(event, "method"),
            "who": events.annotation(event, "who"),
            "message": event.get("message"),
        },
        "live": None,
    }


def _older_than(stamp: str, seconds: float) -> bool:
    when = parse_time(stamp)
    return when is not None and (datetime.now(timezone.utc) - when).total_seconds() > seconds


def _lookup_pod(vmi: dict, pods: list[dict]) -> dict | None:
    return select_launcher_pod(vmi, [p for p in pods
                                     if (p.get("metadata") or {}).get("namespace") == vmi["metadata"].get("namespace")])


def gather(kube, namespace: str, all_namespaces: bool, names: list[str], selector: str | None) -> list[dict]:
    if all_namespaces and names:
        raise UsageError("names cannot be given with -A", "drop -A or give -n NAMESPACE")
    scope = None if all_namespaces else namespace
    vmis = fetch_vmis(kube, scope, names, selector)
    if not vmis:
        return []
    pods = kube.list_pods(scope, LAUNCHER_SELECTOR)
    latest = _latest_events(kube, scope, names if not all_namespaces else [])
    rows = []
    for vmi in vmis:
        meta = vmi["metadata"]
        event = latest.get(meta.get("uid")) or latest.get(f"{meta.get('namespace')}/{meta.get('name')}")
        row = status_row(vmi, _lookup_pod(vmi, pods), event)
        row["_vmi"], row["_pod"] = vmi, _lookup_pod(vmi, pods)
        rows.append(row)
    return rows


def _latest_events(kube, scope: str | None, names: list[str]) -> dict[str, dict]:
    """The newest kubectl-freeze Event per VMI. Optional: kube-apiserver drops Events after an
    hour (--event-ttl) and a user may not list them, so every row stands on the VMI status alone
    and an Event only adds since when and by whom."""
    selectors = [events.field_selector(name) for name in names] if names and len(names) <= 10 \
        else [events.field_selector()]
    found: list[dict] = []
    try:
        for selector in selectors:
            found += kube.list_events(scope, selector)
    except KubeError:
        return {}
    return events.latest_by_vmi(found)


def live_status(kube, prober: Prober, row: dict) -> dict:
    """Ask the guest agent through the bundled freezer: {"status", "source", "error"?, "safetyThaw"?}."""
    if row["phase"] != "Running" or not row["_pod"]:
        return {"status": None, "error": "not running"}
    target = Target(vmi=row["_vmi"], pod=row["_pod"])
    started = time.monotonic()
    try:
        probe = prober.get(target)
        if not probe.exec_allowed:
            return {"status": None, "error": "exec into the launcher pod is forbidden"}
        if not probe.python_libvirt:
            return _virsh_live_status(kube, target, started)
        result = kube.exec(target.namespace, target.pod_name, "compute", bundled.status_command(target), timeout=30,
                           stdin=bundled.payload())
    except PluginError as exc:
        return {"status": None, "error": exc.message}
    report = bundled.parse_report(result.stdout)
    if not report:
        return {"status": None, "error": result.failure or f"no answer (exit {result.exit_code})"}
    answer = {
        "status": report.get("status") if report.get("ok") else None,
        "source": "guest-agent",
        "elapsedMs": int((time.monotonic() - started) * 1000),
        "safetyThaw": report.get("safety_thaw"),
    }
    if not report.get("ok"):
        answer["error"] = " ".join(str((report.get("error") or {}).get("message") or "failed").split())
    return answer


def _virsh_live_status(kube, target: Target, started: float) -> dict:
    """No python3 with libvirt in the launcher (stock images): ask the agent through virsh."""
    status, result = virsh_agent.read(kube, target, timeout=30)
    answer = {"status": status, "source": "guest-agent (virsh)",
              "elapsedMs": int((time.monotonic() - started) * 1000), "safetyThaw": None}
    if status is None:
        why = (result.stderr.strip().splitlines() or [result.failure or f"exit {result.exit_code}"])[-1]
        answer["error"] = " ".join(why.split())
    return answer


def add_live(kube, rows: list[dict], parallel: int) -> None:
    prober = Prober(kube)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(rows) or 1))) as pool:
        for row, live in zip(rows, pool.map(lambda r: live_status(kube, prober, r), rows)):
            row["live"] = live


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}
