"""Server-side printing: `meta.k8s.io/v1` Table and PartialObjectMetadata answers.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...` on `get`;
the columns follow the built-in printers (pods, namespaces, events) and KubeVirt's
CRD additionalPrinterColumns (vmi, vm).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Column:
    name: str
    value: Callable[[dict], Any]
    type: str = "string"
    priority: int = 0               # 1: only with -o wide
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": "", "priority": self.priority}


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Optional[str]) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return human_duration((datetime.now(timezone.utc) - created).total_seconds())


def _path(*keys: Any) -> Callable[[dict], Any]:
    def get(obj: dict) -> Any:
        value: Any = obj
        for key in keys:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and isinstance(key, int) and len(value) > key:
                value = value[key]
            else:
                return None
        return value
    return get


def _condition(kind: str) -> Callable[[dict], Any]:
    def get(obj: dict) -> Any:
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition.get("type") == kind:
                return condition.get("status")
        return None
    return get


def _pod_ready(pod: dict) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(pod: dict) -> str:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return status.get("reason") or status.get("phase") or "Unknown"


def _pod_restarts(pod: dict) -> int:
    return sum(s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _none(getter: Callable[[dict], Any]) -> Callable[[dict], Any]:
    return lambda obj: getter(obj) or "<none>"


def _event_object(event: dict) -> str:
    involved = event.get("involvedObject") or {}
    return f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}"


def _event_last_seen(event: dict) -> str:
    return _age(event.get("lastTimestamp") or event.get("eventTime")
                or event["metadata"].get("creationTimestamp"))


_NAME = Column("Name", _path("metadata", "name"), format="name")
_AGE = Column("Age", lambda obj: _age(obj["metadata"].get("creationTimestamp")))

COLUMNS: dict[str, tuple[Column, ...]] = {
    "pods": (_NAME, Column("Ready", _pod_ready), Column("Status", _pod_status),
             Column("Restarts", _pod_restarts, type="integer"), _AGE,
             Column("IP", _none(_path("status", "podIP")), priority=1),
             Column("Node", _none(_path("spec", "nodeName")), priority=1),
             Column("Nominated Node", _none(_path("status", "nominatedNodeName")), priority=1),
             Column("Readiness Gates", lambda pod: "<none>", priority=1)),
    "namespaces": (_NAME, Column("Status", _path("status", "phase")), _AGE),
    "events": (Column("Last Seen", _event_last_seen), Column("Type", _path("type")),
               Column("Reason", _path("reason")), Column("Object", _event_object),
               Column("Message", _path("message")), _NAME),
    "virtualmachineinstances": (
        _NAME, _AGE, Column("Phase", _path("status", "phase")),
        Column("IP", _path("status", "interfaces", 0, "ipAddress")),
        Column("NodeName", _path("status", "nodeName")),
        Column("Ready", _condition("Ready")),
        Column("Live-Migratable", _condition("LiveMigratable"), priority=1),
        Column("Paused", _condition("Paused"), priority=1)),
    "virtualmachines": (_NAME, _AGE, Column("Status", _path("status", "printableStatus")),
                        Column("Ready", _condition("Ready"))),
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def wants_metadata(accept: str) -> bool:
    return "as=PartialObjectMetadata" in accept


def partial_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def metadata_list(items: list[dict], resource_version: int) -> dict:
    return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(resource_version)},
            "items": [partial_metadata(obj) for obj in items]}


def table(plural: str, items: list[dict], resource_version: Optional[int] = None,
          include_object: str = "Metadata") -> dict:
    """A Table of `items`; `include_object` is the request's `includeObject`
    (None | Metadata | Object)."""
    columns = COLUMNS.get(plural, (_NAME, _AGE))
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": [column.value(obj) for column in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    metadata = {} if resource_version is None else {"resourceVersion": str(resource_version)}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": [column.definition() for column in columns], "rows": rows}
