"""The aiohttp application: authentication, RBAC, discovery and the resource routes."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import deque
from typing import Any, Callable, Optional

from aiohttp import web

from . import auth, discovery, errors, exec_ws, protobuf, requestinfo, tables
from .audit import AuditEvent, AuditLog
from .backend import Backend, vmi_conflict
from .requestinfo import RequestInfo
from .resources import Registry, Resource
from .selectors import selector_matcher
from .store import Store
from .watch import WatchHub, WatchRequest

log = logging.getLogger(__name__)

PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")
KUBEVIRT_SUBRESOURCES = "subresources.kubevirt.io"
MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def error_response(error: errors.ApiError) -> web.Response:
    return json_response(error.status(), error.code)


def go_int32_seconds(seconds: float) -> int:
    """virt-handler's `int32(d.Seconds())`: fractions are cut; out of int32's range amd64's
    CVTTSD2SL gives the "integer indefinite" -2^31, a negative timeout that the launcher arms
    (it arms any timeout but 0) as a timer that fires at once."""
    if -2**31 <= seconds < 2**31:
        return int(seconds)
    return -2**31


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string ("5m0s", "1h30m", "300ms", "0")."""
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.lstrip("+"))
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patches are applied the same way)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ApiApp:
    """Builds the aiohttp Application; one per server start, sharing store and backend."""

    def __init__(self, store: Store, backend: Backend, users: auth.Users, watches: WatchHub,
                 server_address: Callable[[], str], request_log: deque,
                 audit: Optional[AuditLog] = None):
        self.store = store
        self.registry: Registry = store.registry
        self.backend = backend
        self.users = users
        self.watches = watches
        self.server_address = server_address
        self.request_log = request_log
        self.audit = audit or AuditLog()
        self.websockets: set[web.WebSocketResponse] = set()

    def build(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    # ----- entry point ------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        response: Optional[web.StreamResponse] = None
        # Logged on receipt, before authentication: a refused request is a request that was sent.
        audit = self.audit.received(request.method, request.path, request.query, request.path_qs)
        try:
            response = await self._handle(request, audit)
        except errors.ApiError as error:
            response = error_response(error)
        except Exception as error:                  # answer like an apiserver, and say why
            log.exception("unhandled error on %s %s", request.method, request.path_qs)
            response = error_response(errors.ApiError(500, "InternalError", f"internal error: {error!r}"))
        finally:
            # 499 ("client closed request"): a stream cut short by the client or a restart
            status = response.status if response is not None else 499
            self.request_log.append((request.method, request.path_qs, status))
            audit.code = status
        return response

    async def _handle(self, request: web.Request, audit: AuditEvent) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return self._public(request.path)
        user = self.users.authenticate(request.headers.get("Authorization"))
        audit.user = user.name
        info = requestinfo.parse(request.method, request.path, request.query)
        if not info.is_resource:
            return self._discovery(info.path, request.headers.get("Accept", ""))
        verb = "create" if info.subresource == "exec" else info.verb
        auth.authorize(user, verb, info.group, info.resource, info.subresource, info.namespace, info.name)
        resource = self.registry.lookup(info.group, info.version, info.resource)
        if resource is None:
            raise errors.resource_not_found()
        if info.group == "authorization.k8s.io":
            return await self._review(request, user, info)
        if info.subresource:
            return await self._subresource(request, info, resource)
        if not resource.stored:
            raise errors.resource_not_found()
        if info.verb not in resource.verbs:
            raise errors.method_not_allowed()
        handler = getattr(self, f"_{info.verb}")
        return await handler(request, info, resource)

    def _public(self, path: str) -> web.Response:
        if path == "/version":
            return json_response(discovery.KUBE_VERSION)
        return web.Response(text="ok")

    def _discovery(self, path: str, accept: str) -> web.Response:
        parts = [part for part in path.split("/") if part]
        body: Optional[dict] = None
        if parts in (["api"], ["apis"]) and discovery.wants_aggregated(accept):
            return web.Response(body=json.dumps(discovery.aggregated(self.registry, parts == ["api"])).encode(),
                                headers={"Content-Type": discovery.AGGREGATED_CONTENT_TYPE})
        if parts == ["api"]:
            body = discovery.api_versions(self.server_address())
        elif parts == ["apis"]:
            body = discovery.api_group_list(self.registry)
        elif len(parts) == 2 and parts[0] == "api":
            body = discovery.api_resource_list(self.registry, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            body = discovery.api_group(self.registry, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            body = discovery.api_resource_list(self.registry, parts[1], parts[2])
        if body is None:
            return web.Response(status=404, text="404 page not found\n")
        return json_response(body)

    # ----- rendering ----------------------------------------------------------------------
    def _renderer(self, request: web.Request, resource: Resource) -> Callable[[dict], dict]:
        """How one object goes on the wire for this request's Accept header."""
        accept = request.headers.get("Accept", "")
        if tables.wants_table(accept):
            include = request.query.get("includeObject", "Metadata")
            return lambda obj: tables.table(resource.plural, [obj], None, include)
        if tables.wants_metadata(accept):
            return tables.partial_metadata
        return lambda obj: obj

    def _render_list(self, request: web.Request, resource: Resource, items: list[dict],
                     rv: int) -> dict:
        accept = request.headers.get("Accept", "")
        if tables.wants_table(accept):
            return tables.table(resource.plural, items, rv, request.query.get("includeObject", "Metadata"))
        if tables.wants_metadata(accept):
            return tables.metadata_list(items, rv)
        return {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    # ----- verbs on stored resources -----------------------------------------------------
    def _matcher(self, request: web.Request, resource: Resource):
        return selector_matcher(request.query.get("labelSelector", ""),
                                request.query.get("fieldSelector", ""), resource.fields)

    async def _get(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        obj = self.store.get(resource.plural, info.namespace, info.name)
        return json_response(self._renderer(request, resource)(obj))

    async def _list(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        items, rv = self.store.list_with_version(resource.plural, info.namespace,
                                                 self._matcher(request, resource))
        return json_response(self._render_list(request, resource, items, rv))

    async def _watch(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
        query = request.query
        matcher = self._matcher(request, resource)
        if info.name:               # watch on a single object: same as a metadata.name selector
            by_selector = matcher
            matcher = lambda obj: by_selector(obj) and obj["metadata"]["name"] == info.name  # noqa: E731
        initial_events = requestinfo.query_flag(query, "sendInitialEvents")
        try:
            since = None if initial_events else int(query.get("resourceVersion") or 0) or None
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        except ValueError as error:
            raise errors.bad_request(str(error))
        bookmarks = requestinfo.query_flag(query, "allowWatchBookmarks")
        watch = WatchRequest(resource, info.namespace, matcher, since, timeout, bookmarks,
                             initial_events and bookmarks, self._renderer(request, resource))
        return await self.watches.serve(request, watch)

    async def _create(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        obj = await self._body(request, required=True)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace", info.namespace) != info.namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = info.namespace
            self.store.get("namespaces", "", info.namespace)        # 404 when it does not exist
        obj["kind"] = resource.kind
        return json_response(self.store.create(obj), 201)

    async def _update(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        obj = await self._body(request, required=True)
        meta = obj.setdefault("metadata", {})
        if meta.get("name", info.name) != info.name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        meta.update(name=info.name, namespace=info.namespace)
        obj["kind"] = resource.kind
        return json_response(self.store.update(obj))

    async def _patch(self, request: web.Request, info: RequestInfo, resource: Resource,
                     only_status: bool = False) -> web.Response:
        if request.content_type not in MERGE_PATCHES:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  f"the body of the request was in an unknown format - accepted "
                                  f"media types include: {', '.join(MERGE_PATCHES)}")
        patch = await self._body(request, required=True)
        if only_status:
            patch = {"status": patch.get("status")} if "status" in patch else {}
        obj = self.store.mutate(resource.plural, info.namespace, info.name,
                                lambda current: merge_patch(current, patch))
        return json_response(obj)

    async def _delete(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        return json_response(self.store.delete(resource.plural, info.namespace, info.name))

    async def _body(self, request: web.Request, required: bool) -> dict:
        raw = await request.read()
        if raw and request.content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode(raw)
        if raw and request.content_type not in ("application/json", "", *MERGE_PATCHES):
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  "the body of the request was in an unknown format - accepted "
                                  "media types include: application/json, application/vnd.kubernetes.protobuf")
        if not raw.strip():
            if required:
                raise errors.bad_request("the request body is empty")
            return {}
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {error}")
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return body

    # ----- subresources -------------------------------------------------------------------
    async def _subresource(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
        sub = resource.subresource(info.subresource)
        if sub is None:
            raise errors.resource_not_found()
        if info.verb not in sub.verbs:
            raise errors.method_not_allowed()
        if info.group == KUBEVIRT_SUBRESOURCES:
            return await self._kubevirt(request, info)
        if sub.name == "exec":
            return await self._exec(request, info)
        if sub.name == "status":
            if info.verb == "get":
                return await self._get(request, info, resource)
            if info.verb == "patch":
                return await self._patch(request, info, resource, only_status=True)
            body = await self._body(request, required=True)
            obj = self.store.mutate(resource.plural, info.namespace, info.name,
                                    lambda current: {**current, "status": body.get("status")})
            return json_response(obj)
        raise errors.resource_not_found()

    async def _exec(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        options = exec_ws.ExecOptions.from_query(request.query)
        pod = self.store.get("pods", info.namespace, info.name)
        options = dataclasses.replace(options, container=exec_ws.pick_container(pod, options.container))
        if not exec_ws.is_websocket(request):
            raise errors.bad_request("this simulator serves exec over WebSocket only "
                                     f"({', '.join(exec_ws.PROTOCOLS)}); SPDY is not supported")
        return await exec_ws.serve_exec(request, self.backend, pod, options, self.websockets)

    async def _kubevirt(self, request: web.Request, info: RequestInfo) -> web.Response:
        """virt-api's freeze / unfreeze / guestosinfo handlers."""
        vmi = self.store.get("virtualmachineinstances", info.namespace, info.name)
        if info.subresource == "guestosinfo":
            return json_response(await self.backend.guestosinfo(vmi))
        # virt-api checks the phase first (pkg/virt-api/rest/lifecycle.go), then proxies the
        # body to virt-handler, whose 400s it answers as 500 InternalError. Success is 200 with
        # an empty body: virt-handler's 202 is not passed on.
        if (vmi.get("status") or {}).get("phase") != "Running":
            raise vmi_conflict(vmi, "VMI is not running" if info.subresource == "unfreeze" else "VM is not running")
        if info.subresource == "unfreeze":
            await self.backend.unfreeze(vmi)
            return web.Response(status=200)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
            timeout_text = body.get("unfreezeTimeout") if isinstance(body, dict) else None
            timeout = None if timeout_text is None else parse_go_duration(str(timeout_text))
        except ValueError:
            raise _handler_bad_request("failed to unmarshal unfreeze timeout") from None
        if timeout is None:
            raise _handler_bad_request("Unfreeze timeout in freeze request is not set")
        # virt-handler: int32(d.Seconds()) -- fractions cut, an overflow fires the timer at once.
        await self.backend.freeze(vmi, go_int32_seconds(timeout))
        return web.Response(status=200)

    # ----- authorization reviews ---------------------------------------------------------
    async def _review(self, request: web.Request, user: auth.User, info: RequestInfo) -> web.Response:
        if info.verb != "create":
            raise errors.method_not_allowed()
        body = await self._body(request, required=True)
        if info.resource == "selfsubjectaccessreviews":
            return json_response(auth.access_review(user, body), 201)
        return json_response(auth.rules_review(user, body), 201)


def _handler_bad_request(message: str) -> errors.ApiError:
    """virt-handler's 400 for a bad freeze body, as virt-api passes it on (500)."""
    text = f"Internal error occurred: unexpected return code 400 (400 Bad Request), message: {message}"
    return errors.ApiError(500, "InternalError", text,
                           {"causes": [{"message": text.removeprefix("Internal error occurred: ")}]})
