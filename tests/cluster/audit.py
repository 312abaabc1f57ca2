"""The API server's audit log: one record per request, like kube-apiserver's audit log at the
Metadata level (verb, user, request URI, objectRef, response code; no bodies).

    mark = srv.audit.mark()                  # before the client runs
    ...                                      # the client runs and exits
    srv.audit.since(mark)                    # every request it sent, in arrival order
    srv.audit.changes_since(mark)            # the ones that could have changed something

A record is written when the request is received (kube-apiserver's RequestReceived stage),
before it is authorized or answered, so a request that failed authentication or RBAC, or whose
client went away, is still there; `code` is filled in once it was answered (None until then,
499 for a stream the client cut short).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Optional

from . import requestinfo

ANONYMOUS = "system:anonymous"
READ_VERBS = frozenset({"get", "list", "watch"})
# Subresources that act whatever the HTTP method: exec/attach/portforward run or reach something in
# the pod (a WebSocket exec is a GET), KubeVirt's subresources act on the guest.
ACTING_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy", "freeze", "unfreeze",
                                 "pause", "unpause", "softreboot", "migrate", "restart", "start", "stop"})
# Reviews are answered and forgotten (nothing is stored): a POST that changes nothing.
REVIEW_GROUP = "authorization.k8s.io"


@dataclass
class AuditEvent:
    seq: int
    method: str
    uri: str                 # path and query, as sent
    info: requestinfo.RequestInfo   # verb (as RBAC sees it), group, resource, subresource, namespace, name
    user: str = ANONYMOUS    # set once the request is authenticated
    code: Optional[int] = None

    @property
    def changes(self) -> bool:
        """Could this request have changed anything in the cluster or a guest?"""
        if self.info.subresource in ACTING_SUBRESOURCES:
            return True
        if self.info.group == REVIEW_GROUP:
            return False
        return self.method not in ("GET", "HEAD", "OPTIONS")

    def line(self) -> str:
        return f"{self.method} {self.uri} verb={self.info.verb or '-'} user={self.user} code={self.code}"


class AuditLog:
    """Thread-safe: the server's loop thread appends, tests read. Bounded (the oldest records go
    first); `seq` keeps counting, so a mark stays valid."""

    def __init__(self, maxlen: int = 100_000):
        self._events: deque[AuditEvent] = deque(maxlen=maxlen)
        self._next = 0
        self._lock = threading.Lock()

    def received(self, method: str, path: str, query: Mapping[str, str], uri: str) -> AuditEvent:
        info = requestinfo.parse(method, path, query)
        with self._lock:
            event = AuditEvent(self._next, method, uri, info)
            self._events.append(event)
            self._next += 1
        return event

    def mark(self) -> int:
        """The seq the next request will get."""
        with self._lock:
            return self._next

    def since(self, mark: int = 0) -> list[AuditEvent]:
        with self._lock:
            return [event for event in self._events if event.seq >= mark]

    def changes_since(self, mark: int = 0) -> list[AuditEvent]:
        return [event for event in self.since(mark) if event.changes]
