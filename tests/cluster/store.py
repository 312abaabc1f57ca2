"""The object store: objects by (resource, namespace, name), one global resourceVersion
counter, a bounded event history and the watch fan-out.

Thread-safe: the server's asyncio loop and the backend's poller threads share one Store.
Every method hands out deep copies, so callers may edit what they get.
"""

from __future__ import annotations

import copy
import secrets
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Optional

from . import errors
from .resources import Registry, Resource
from .selectors import selector_matcher

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def now_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    type: str                       # ADDED | MODIFIED | DELETED | BOOKMARK
    resource: str                   # plural, e.g. "pods"
    rv: int
    object: dict
    old: Optional[dict] = None      # the object before a MODIFIED (for selector transitions)

    def wire(self) -> dict:
        return {"type": self.type, "object": self.object}


Deliver = Callable[[WatchEvent], None]


class Subscription:
    """One watcher. `deliver` is called with the store lock held, in resourceVersion
    order; it must not block (the server hands events to its loop with
    `call_soon_threadsafe`). A deliver that raises is dropped."""

    def __init__(self, store: "Store", resource: Resource, namespace: str, deliver: Deliver):
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.deliver = deliver
        self.closed = False

    def wants(self, event: WatchEvent) -> bool:
        if event.resource != self.resource.plural:
            return False
        return not self.namespace or event.object["metadata"].get("namespace") == self.namespace

    def bookmark(self, initial_events_end: bool = False) -> None:
        """Queue a BOOKMARK at the current version behind every event already queued."""
        self.store._bookmark(self, initial_events_end)

    def close(self) -> None:
        self.store._unsubscribe(self)


class Store:
    def __init__(self, registry: Optional[Registry] = None, history: int = 1000):
        self.registry = registry or Registry()
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque()
        self._history_size = history
        self._compacted_rv = 0          # every event after this version is in the history
        self._subscriptions: list[Subscription] = []

    # ----- reads -------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def get(self, kind_or_resource: str, namespace: str, name: str) -> dict:
        resource = self.registry.stored(kind_or_resource)
        with self._lock:
            return copy.deepcopy(self._current(resource, namespace, name)[1])

    def find(self, kind_or_resource: str, namespace: str, name: str) -> Optional[dict]:
        try:
            return self.get(kind_or_resource, namespace, name)
        except errors.ApiError:
            return None

    def list(self, kind_or_resource: str, namespace: str = "", label_selector: str = "",
             field_selector: str = "") -> list[dict]:
        resource = self.registry.stored(kind_or_resource)
        matcher = selector_matcher(label_selector, field_selector, resource.fields)
        return self.list_with_version(resource.plural, namespace, matcher)[0]

    def list_with_version(self, kind_or_resource: str, namespace: str = "",
                          matcher: Callable[[dict], bool] = lambda obj: True) -> tuple[list[dict], int]:
        """Matching objects (sorted by namespace, name) and the version they were read at."""
        resource = self.registry.stored(kind_or_resource)
        with self._lock:
            items = [copy.deepcopy(obj) for (plural, ns, _), obj in sorted(self._objects.items())
                     if plural == resource.plural and (not namespace or ns == namespace)
                     and matcher(obj)]
            return items, self._rv

    # ----- writes ------------------------------------------------------------------------
    def create(self, obj: dict) -> dict:
        """Store a new object, filling apiVersion/kind, uid, creationTimestamp,
        resourceVersion, generation (and a name from generateName). A missing namespace
        is created on the fly (the HTTP route checks it exists first)."""
        resource = self.registry.stored(obj.get("kind") or "")
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not meta.get("name"):
            raise errors.bad_request("name or generateName is required")
        if resource.namespaced:
            meta.setdefault("namespace", "default")
            self.ensure_namespace(meta["namespace"])
        else:
            meta.pop("namespace", None)
        with self._lock:
            key = self._key(resource, meta.get("namespace", ""), meta["name"])
            if key in self._objects:
                raise errors.already_exists(resource.group, resource.plural, meta["name"])
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
            meta.update(uid=str(uuid.uuid4()), generation=1,
                        creationTimestamp=meta.get("creationTimestamp") or now_timestamp())
            return self._commit(resource, key, "ADDED", obj, None)

    def ensure_namespace(self, name: str) -> None:
        with self._lock:
            if ("namespaces", "", name) not in self._objects:
                self.create({"kind": "Namespace", "metadata": {"name": name},
                             "status": {"phase": "Active"}})

    def update(self, obj: dict) -> dict:
        """Replace an object. A metadata.resourceVersion that is not the current one is a
        409 Conflict (optimistic concurrency); leave it out to overwrite unconditionally."""
        resource = self.registry.stored(obj.get("kind") or "")
        meta = obj.get("metadata", {})
        wanted_rv = meta.get("resourceVersion")

        def replace(current: dict) -> dict:
            if wanted_rv and str(wanted_rv) != current["metadata"]["resourceVersion"]:
                raise errors.stale_resource_version(resource.group, resource.plural, meta["name"])
            return copy.deepcopy(obj)
        return self.mutate(resource.plural, meta.get("namespace", ""), meta.get("name", ""), replace)

    def mutate(self, kind_or_resource: str, namespace: str, name: str,
               fn: Callable[[dict], Optional[dict]]) -> dict:
        """Apply `fn` to a copy of the object (fn edits it in place or returns a new one),
        then store it with a new resourceVersion and tell the watchers. When nothing
        changed, nothing is written and no event is sent."""
        resource = self.registry.stored(kind_or_resource)
        with self._lock:
            key, current = self._current(resource, namespace, name)
            draft = copy.deepcopy(current)
            result = fn(draft)
            new = draft if result is None else result
            # identity and bookkeeping fields are the store's, not the caller's
            new["apiVersion"], new["kind"] = resource.api_version, resource.kind
            meta = new.setdefault("metadata", {})
            for field in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion",
                          "generation"):
                if field in current["metadata"]:
                    meta[field] = current["metadata"][field]
                else:
                    meta.pop(field, None)
            if new == current:
                return copy.deepcopy(current)
            if new.get("spec") != current.get("spec"):
                meta["generation"] = current["metadata"].get("generation", 1) + 1
            return self._commit(resource, key, "MODIFIED", new, current)

    def delete(self, kind_or_resource: str, namespace: str, name: str) -> dict:
        resource = self.registry.stored(kind_or_resource)
        with self._lock:
            key, current = self._current(resource, namespace, name)
            return self._commit(resource, key, "DELETED", copy.deepcopy(current), current)

    def compact(self) -> None:
        """Forget the event history: watches from any older version now get 410 Gone."""
        with self._lock:
            self._history.clear()
            self._compacted_rv = self._rv

    # ----- watch ---------------------------------------------------------------------------
    def watch(self, kind_or_resource: str, namespace: str, since: Optional[int], deliver: Deliver,
              initial_events_end: bool = False) -> Subscription:
        """Subscribe to changes. `since=None` (or 0) first delivers a synthetic ADDED for
        every existing object (then, with `initial_events_end`, the BOOKMARK that ends the
        initial events); otherwise the history after `since` is replayed, and a version
        older than the history raises a 410 ApiError."""
        resource = self.registry.stored(kind_or_resource)
        sub = Subscription(self, resource, namespace, deliver)
        with self._lock:
            if since:
                if since < self._compacted_rv:
                    raise errors.too_old_resource_version(since, self._compacted_rv + 1)
                backlog = [event for event in self._history if event.rv > since and sub.wants(event)]
            else:
                items, _ = self.list_with_version(resource.plural, namespace)
                backlog = [WatchEvent("ADDED", resource.plural, self._rv, obj) for obj in items]
            self._subscriptions.append(sub)
            for event in backlog:
                self._send(sub, event)
            if initial_events_end and not since:
                self._bookmark(sub, True)
            return sub

    # ----- internals ----------------------------------------------------------------------
    def _key(self, resource: Resource, namespace: str, name: str) -> tuple[str, str, str]:
        return resource.plural, namespace if resource.namespaced else "", name

    def _current(self, resource: Resource, namespace: str, name: str) -> tuple[tuple[str, str, str], dict]:
        """The key and stored object (not a copy: call with the lock held), or a 404."""
        key = self._key(resource, namespace, name)
        obj = self._objects.get(key)
        if obj is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return key, obj

    def _commit(self, resource: Resource, key: tuple[str, str, str], kind: str, obj: dict,
                old: Optional[dict]) -> dict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            del self._objects[key]
        else:
            self._objects[key] = obj
        event = WatchEvent(kind, resource.plural, self._rv, copy.deepcopy(obj), old)
        self._history.append(event)
        while len(self._history) > self._history_size:
            self._compacted_rv = self._history.popleft().rv
        for sub in list(self._subscriptions):
            if sub.wants(event):
                self._send(sub, event)
        return copy.deepcopy(obj)

    def _send(self, sub: Subscription, event: WatchEvent) -> None:
        try:
            sub.deliver(event)
        except Exception:       # the watcher's loop is gone: drop it
            self._unsubscribe(sub)

    def _bookmark(self, sub: Subscription, initial_events_end: bool) -> None:
        with self._lock:
            if sub.closed:
                return
            meta: dict = {"resourceVersion": str(self._rv)}
            if initial_events_end:
                meta["annotations"] = {INITIAL_EVENTS_END: "true"}
            obj = {"kind": sub.resource.kind, "apiVersion": sub.resource.api_version, "metadata": meta}
            self._send(sub, WatchEvent("BOOKMARK", sub.resource.plural, self._rv, obj))

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            sub.closed = True
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

