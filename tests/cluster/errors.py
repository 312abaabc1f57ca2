"""Kubernetes `Status` errors, shaped like the ones kube-apiserver sends."""

from __future__ import annotations

from typing import Any, Optional


class ApiError(Exception):
    """An error answered as a `kind: Status` body with the matching HTTP code.

    Raised by the store, the routes and the backend alike; the server turns it into
    the HTTP response (or the channel-3 Status of an exec stream, or a watch ERROR event).
    """

    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def _details(group: str, resource: str, name: str = "") -> dict[str, str]:
    """`details` as apimachinery fills it: `kind` holds the resource plural."""
    details = {"name": name, "group": group, "kind": resource}
    return {key: value for key, value in details.items() if value}


def qualified(group: str, resource: str) -> str:
    """`pods`, `virtualmachineinstances.kubevirt.io`: GroupResource.String()."""
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(group, resource)} "{name}" not found',
                    _details(group, resource, name))


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(group, resource)} "{name}" already exists',
                    _details(group, resource, name))


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(group, resource)} "{name}": {why}',
                    _details(group, resource, name))


def stale_resource_version(group: str, resource: str, name: str) -> ApiError:
    return conflict(group, resource, name, "the object has been modified; please apply your "
                    "changes to the latest version and try again")


def forbidden(user: str, verb: str, group: str, resource: str, subresource: str,
              namespace: str, name: str) -> ApiError:
    """The exact sentence the RBAC authorizer + apiserver produce."""
    full = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    why = f'User "{user}" cannot {verb} resource "{full}" in API group "{group}" {scope}'
    subject = qualified(group, resource)
    message = f'{subject} "{name}" is forbidden: {why}' if name else f"{subject} is forbidden: {why}"
    return ApiError(403, "Forbidden", message, _details(group, resource, name))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def too_old_resource_version(requested: int, oldest: int) -> ApiError:
    """What the watch cache sends (as a watch ERROR event) for a compacted version."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource", {})
