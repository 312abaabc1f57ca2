"""Bearer tokens, users and RBAC rules, plus the SelfSubject*Review answers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Iterable, Optional

from . import errors


@dataclass(frozen=True)
class PolicyRule:
    """An RBAC rule. `resources` may name subresources (`pods/exec`, `pods/*`, `*/status`);
    `*` is a wildcard everywhere. `namespaces=None` grants it everywhere (a
    ClusterRoleBinding), a tuple only in those namespaces (RoleBindings)."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    namespaces: Optional[tuple[str, ...]] = None
    resource_names: tuple[str, ...] = ()

    def applies_in(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def allows(self, verb: str, group: str, resource: str, subresource: str = "",
               namespace: str = "", name: str = "") -> bool:
        return (self.applies_in(namespace)
                and ("*" in self.verbs or verb in self.verbs)
                and ("*" in self.api_groups or group in self.api_groups)
                and any(_resource_matches(pattern, resource, subresource) for pattern in self.resources)
                and (not self.resource_names or name in self.resource_names))

    def wire(self) -> dict:
        return {"verbs": list(self.verbs), "apiGroups": list(self.api_groups),
                "resources": list(self.resources), "resourceNames": list(self.resource_names)}


def _resource_matches(pattern: str, resource: str, subresource: str) -> bool:
    if pattern == "*":
        return True
    wanted = f"{resource}/{subresource}" if subresource else resource
    if pattern == wanted:
        return True
    if subresource and pattern in (f"{resource}/*", f"*/{subresource}"):
        return True
    return False


# Every authenticated user may ask what it can do (system:basic-user).
SELF_REVIEWS = PolicyRule(("create",), ("authorization.k8s.io",),
                          ("selfsubjectaccessreviews", "selfsubjectrulesreviews"))

READS = (
    PolicyRule(("get", "list", "watch"), ("",), ("pods", "pods/log", "pods/status", "namespaces", "events")),
    PolicyRule(("get", "list", "watch"), ("events.k8s.io",), ("events",)),
    PolicyRule(("get", "list", "watch"), ("kubevirt.io",), ("*",)),
    PolicyRule(("get",), ("subresources.kubevirt.io",), ("virtualmachineinstances/guestosinfo",)),
)
EXEC = (PolicyRule(("create", "get"), ("",), ("pods/exec",)),)
FREEZE = (PolicyRule(("update",), ("subresources.kubevirt.io",),
                     ("virtualmachineinstances/freeze", "virtualmachineinstances/unfreeze")),)
EVENTS = (PolicyRule(("create", "patch", "update"), ("", "events.k8s.io"), ("events",)),)
KUBEVIRT_WRITES = (PolicyRule(("create", "delete", "patch", "update"), ("kubevirt.io",), ("*",)),)
EVERYTHING = (PolicyRule(("*",), ("*",), ("*",)),)

DEFAULT_ROLES: dict[str, tuple[PolicyRule, ...]] = {
    "admin": EVERYTHING,
    "editor": READS + EXEC + FREEZE + EVENTS + KUBEVIRT_WRITES,
    "viewer": READS,
    "no-exec": READS + FREEZE + EVENTS,
    "no-freeze-api": READS + EXEC + EVENTS,
}


@dataclass
class User:
    name: str
    rules: tuple[PolicyRule, ...]
    groups: tuple[str, ...] = ("system:authenticated",)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def can(self, verb: str, group: str, resource: str, subresource: str = "",
            namespace: str = "", name: str = "") -> bool:
        return any(rule.allows(verb, group, resource, subresource, namespace, name)
                   for rule in self.rules + (SELF_REVIEWS,))


class Users:
    """The token -> user table."""

    def __init__(self, users: Iterable[User] = ()):
        self._by_name: dict[str, User] = {}
        for user in users:
            self.add(user)

    @classmethod
    def defaults(cls) -> "Users":
        return cls(User(name, rules) for name, rules in DEFAULT_ROLES.items())

    def add(self, user: User) -> User:
        self._by_name[user.name] = user
        return user

    def __getitem__(self, name: str) -> User:
        return self._by_name[name]

    def names(self) -> list[str]:
        return list(self._by_name)

    def authenticate(self, authorization_header: Optional[str]) -> User:
        scheme, _, token = (authorization_header or "").partition(" ")
        if scheme.lower() == "bearer" and token:
            for user in self._by_name.values():
                if secrets.compare_digest(user.token, token.strip()):
                    return user
        raise errors.unauthorized()


def authorize(user: User, verb: str, group: str, resource: str, subresource: str,
              namespace: str, name: str) -> None:
    if not user.can(verb, group, resource, subresource, namespace, name):
        raise errors.forbidden(user.name, verb, group, resource, subresource, namespace, name)


def access_review(user: User, review: dict) -> dict:
    """Answer a SelfSubjectAccessReview (the body kubectl auth can-i posts)."""
    spec = review.get("spec") or {}
    attrs = spec.get("resourceAttributes")
    if attrs is not None:
        allowed = user.can(attrs.get("verb", ""), attrs.get("group", ""), attrs.get("resource", ""),
                           attrs.get("subresource", ""), attrs.get("namespace", ""),
                           attrs.get("name", ""))
    elif spec.get("nonResourceAttributes") is not None:
        allowed = spec["nonResourceAttributes"].get("verb") == "get"     # discovery, /version...
    else:
        raise errors.ApiError(422, "Invalid", "SelfSubjectAccessReview.authorization.k8s.io \"\" is "
                              "invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one "
                              "of nonResourceAttributes or resourceAttributes must be specified")
    status = {"allowed": allowed}
    if allowed:
        status["reason"] = f'RBAC: allowed by ClusterRoleBinding "sim-{user.name}" of ClusterRole ' \
                           f'"sim-{user.name}" to User "{user.name}"'
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


def rules_review(user: User, review: dict) -> dict:
    """Answer a SelfSubjectRulesReview (`kubectl auth can-i --list`)."""
    spec = review.get("spec") or {}
    namespace = spec.get("namespace", "")
    rules = [rule.wire() for rule in (SELF_REVIEWS,) + user.rules if rule.applies_in(namespace)]
    return {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec,
            "status": {"resourceRules": rules,
                       "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": [
                           "/api", "/api/*", "/apis", "/apis/*", "/version", "/healthz"]}],
                       "incomplete": False}}
