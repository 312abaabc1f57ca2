"""Turn a request path into what RBAC and routing need, like apiserver's RequestInfoFactory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")     # Go's strconv.ParseBool


def query_flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as the apiserver reads it (the Python client sends `True`)."""
    return query.get(name, "") in _TRUE


@dataclass(frozen=True)
class RequestInfo:
    path: str
    is_resource: bool = False
    verb: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""


def parse(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(path)
    if not rest:
        return RequestInfo(path)          # /api/v1, /apis/G/V: discovery

    verb = _METHOD_VERBS.get(method, method.lower())
    if rest[0] == "watch":                # the deprecated /watch/ prefix
        rest, verb = rest[1:], "watch"
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        return RequestInfo(path)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""

    if verb == "get" and not name:
        verb = "list"
    if verb in ("get", "list") and query_flag(query, "watch"):
        verb = "watch"
    if verb == "delete" and not name:
        verb = "deletecollection"
    return RequestInfo(path, True, verb, group, version, namespace, resource, name, subresource)
