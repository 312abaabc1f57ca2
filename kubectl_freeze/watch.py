"""Wait for a VMI's ``status.fsFreezeStatus`` to show the wanted state.

Watches from the resourceVersion already read (no extra GET), re-lists on 410 Gone, re-watches
when the server or the network drops the watch, falls back to polling when watch is forbidden,
and gives up at the deadline saying what it saw last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import Failed
from .kube import KubeError
from .targets import agent_connected, freeze_status

FROZEN = "frozen"
THAWED = "thawed"
POLL_INTERVAL = 1.0


@dataclass
class WatchResult:
    confirmed: bool
    vmi: dict
    elapsed_ms: int = 0
    relists: int = 0
    rewatches: int = 0
    notes: list[str] = field(default_factory=list)

    def last_seen(self) -> str:
        return describe(self.vmi)


def describe(vmi: dict) -> str:
    status = vmi.get("status") or {}
    field_value = status.get("fsFreezeStatus")
    shown = f"fsFreezeStatus={field_value}" if field_value else "no fsFreezeStatus (thawed)"
    agent = "agent connected" if agent_connected(vmi) else "no AgentConnected condition"
    rv = (vmi.get("metadata") or {}).get("resourceVersion", "?")
    return f"{shown}, phase {status.get('phase', '?')}, {agent}, resourceVersion {rv}"


def reached(vmi: dict, want: str) -> bool:
    return freeze_status(vmi) == want


def _check_alive(vmi: dict, uid: str, ref: str) -> None:
    meta, status = vmi.get("metadata") or {}, vmi.get("status") or {}
    if uid and meta.get("uid") and meta.get("uid") != uid:
        raise Failed(f"VMI {ref} was replaced by a new instance while waiting")
    if status.get("phase") in ("Succeeded", "Failed"):
        raise Failed(f"VMI {ref} stopped (phase {status.get('phase')}) while waiting for its freeze status")


def relist(kube, namespace: str, name: str, ref: str) -> tuple[dict, str]:
    """The VMI and the LIST's resourceVersion to watch from (the object's own may be compacted away)."""
    listing = kube.list_vmis(namespace, field_selector=f"metadata.name={name}")
    items = [i for i in listing.get("items") or [] if (i.get("metadata") or {}).get("name") == name]
    if not items:
        raise Failed(f"VMI {ref} was deleted while waiting for its freeze status")
    rv = (listing.get("metadata") or {}).get("resourceVersion") or items[0]["metadata"].get("resourceVersion")
    return items[0], str(rv or "")


def _version(vmi: dict) -> int:
    try:
        return int((vmi.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def wait_for_status(kube, vmi: dict, want: str, deadline: float, sleep=time.sleep,
                    newer_than: dict | None = None) -> WatchResult:
    """Block until the VMI shows ``want`` ("frozen"/"thawed") or ``deadline`` (time.monotonic).

    With ``newer_than`` (the VMI as read before the action), only a later version of the VMI
    counts: one that already showed ``want`` before the action proves nothing about it."""
    floor = _version(newer_than) if newer_than else 0

    def reached(obj: dict, wanted: str) -> bool:
        return freeze_status(obj) == wanted and (not floor or _version(obj) > floor)

    from urllib3.exceptions import HTTPError

    started = time.monotonic()
    meta = vmi.get("metadata") or {}
    namespace, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid", "")
    ref = f"{namespace}/{name}"
    result = WatchResult(False, vmi)
    rv = str(meta.get("resourceVersion") or "")
    polling = False
    backoff = 0.2

    def done() -> WatchResult:
        result.elapsed_ms = int((time.monotonic() - started) * 1000)
        return result

    while True:
        if reached(result.vmi, want):
            result.confirmed = True
            return done()
        left = deadline - time.monotonic()
        if left <= 0:
            return done()
        try:
            if polling or not rv:
                if polling:
                    sleep(min(POLL_INTERVAL, left))
                    result.vmi = kube.get_vmi(namespace, name)
                else:
                    result.vmi, rv = relist(kube, namespace, name, ref)
                _check_alive(result.vmi, uid, ref)
                continue
            for event in kube.watch_vmi(namespace, name, rv, timeout_seconds=max(1, int(left) + 1)):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        raise KubeError(410, obj.get("message") or "resource version too old")
                    raise KubeError(int(code or 0), obj.get("message") or "watch error")
                obj_rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if obj_rv:
                    rv = obj_rv
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    result.vmi = obj
                    raise Failed(f"VMI {ref} was deleted while waiting for its freeze status")
                result.vmi = obj
                _check_alive(obj, uid, ref)
                if reached(obj, want) or time.monotonic() >= deadline:
                    break
            else:
                # the server closed the watch (its timeout, or dropped): watch again from rv
                result.rewatches += 1
            backoff = 0.2
        except KubeError as exc:
            if exc.status == 410:
                result.relists += 1
                rv = ""  # re-list, then watch from the list's resourceVersion
                if result.relists > 1:
                    sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                    backoff = min(backoff * 2, 5.0)
            elif exc.status in (403, 405):
                result.notes.append("watch not allowed, polling instead")
                polling = True
            elif exc.status == 0 or exc.status >= 500 or exc.status == 429:
                result.rewatches += 1
                sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 5.0)
            else:
                raise
        except HTTPError:
            # dropped connection or read timeout mid-stream: re-watch from the last resourceVersion
            result.rewatches += 1
            sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, 5.0)
