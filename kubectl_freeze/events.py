"""A Kubernetes Event on the VMI for every freeze/thaw: reason, who, method, safety-thaw deadline.

``kubectl describe vmi X`` and ``kubectl get events`` then show who froze the guest and until
when; ``kubectl freeze status`` reads the latest one back for its SINCE column.
Failing to write the Event is a warning, never a failure of the freeze.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timezone

from . import __version__
from .errors import PluginError

COMPONENT = "kubectl-freeze"
FROZEN = "FilesystemsFrozen"
THAWED = "FilesystemsThawed"
FREEZE_FAILED = "FreezeFailed"
THAW_FAILED = "ThawFailed"
ROLLED_BACK = "FreezeRolledBack"
REASONS = (FROZEN, THAWED, FREEZE_FAILED, THAW_FAILED, ROLLED_BACK)


def now_rfc3339(micro: bool = False) -> str:
    now = datetime.now(timezone.utc)
    if micro:
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def who(kube_user: str) -> str:
    """The person behind this run: local login@host plus the kubeconfig user."""
    try:
        login = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        login = os.environ.get("USER", "unknown")
    host = socket.gethostname().split(".")[0]
    return f"{login}@{host}" + (f" (kubeconfig user {kube_user})" if kube_user else "")


ANNOTATION_PREFIX = "kubectl-freeze.kubevirt.io/"


def build_event(vmi: dict, reason: str, message: str, warning: bool = False, instance: str = "",
                annotations: dict[str, str] | None = None) -> dict:
    meta = vmi.get("metadata") or {}
    stamp = now_rfc3339()
    suffix = format(int(datetime.now(timezone.utc).timestamp() * 1e9), "x")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name')}.{suffix}",
            "namespace": meta.get("namespace"),
            "annotations": {ANNOTATION_PREFIX + k: str(v) for k, v in (annotations or {}).items() if v},
        },
        "involvedObject": {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1000],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance or socket.gethostname()[:128],
        "action": reason,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now_rfc3339(micro=True),
        "count": 1,
    }


def message_for(action: str, ok: bool, who_text: str, method: str, deadline: str | None,
                detail: str = "", safety_note: str | None = None) -> str:
    verb = {"freeze": "froze", "unfreeze": "thawed", "rollback": "thawed (rollback of a group freeze)"}[action]
    if not ok:
        verb = {"freeze": "could not freeze", "unfreeze": "could not thaw", "rollback": "could not roll back"}[action]
    text = f"{who_text} {verb} the guest filesystems with kubectl-freeze {__version__} (method {method})"
    if ok and action == "freeze":
        if deadline:
            text += f"; safety thaw at {deadline}"
        else:
            # a deadline nobody armed is never written: say what is known instead
            text += f"; safety thaw {safety_note}" if safety_note else "; no safety thaw"
    if detail:
        text += f": {detail}"
    return text


def post(kube, vmi: dict, reason: str, message: str, warning: bool = False,
         annotations: dict[str, str] | None = None) -> str | None:
    """Create the Event; return a warning text instead of raising when that fails."""
    event = build_event(vmi, reason, message, warning, annotations=annotations)
    try:
        kube.create_event(event["metadata"]["namespace"], event)
    except PluginError as exc:
        return f"could not record an Event on {event['metadata']['namespace']}/{event['involvedObject']['name']}: " \
               f"{exc.message}"
    return None


def field_selector(name: str | None = None) -> str:
    """Only kubectl-freeze's Events on VMIs (and on one VMI), selected by the API server: a
    namespace may hold thousands of other Events (kube-apiserver keeps each for an hour)."""
    terms = ["involvedObject.kind=VirtualMachineInstance", f"source={COMPONENT}"]
    if name:
        terms.append(f"involvedObject.name={name}")
    return ",".join(terms)


def latest_by_vmi(events: list[dict]) -> dict[str, dict]:
    """The newest kubectl-freeze Event per VMI uid (or namespace/name when there is no uid)."""
    latest: dict[str, dict] = {}
    for event in events:
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent")
        involved = event.get("involvedObject") or {}
        if source != COMPONENT or involved.get("kind") != "VirtualMachineInstance":
            continue
        if event.get("reason") not in REASONS:
            continue
        key = involved.get("uid") or f"{involved.get('namespace')}/{involved.get('name')}"
        stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
        if key not in latest or stamp >= (latest[key].get("lastTimestamp") or latest[key].get("eventTime") or ""):
            latest[key] = event
    return latest


def annotation(event: dict | None, key: str) -> str | None:
    if not event:
        return None
    return ((event.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_PREFIX + key)


def timestamp(event: dict | None) -> str | None:
    if not event:
        return None
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
