"""The API resources the simulator serves: one table that discovery, routing, the store
and RBAC all read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    name: str                       # "exec", "status", "freeze"
    kind: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    # Field selectors the apiserver accepts beyond metadata.name / metadata.namespace.
    extra_fields: tuple[str, ...] = ()
    stored: bool = True             # False: only subresources are served (subresources.kubevirt.io)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def fields(self) -> tuple[str, ...]:
        return ("metadata.name", "metadata.namespace") + self.extra_fields

    def subresource(self, name: str) -> Optional[Subresource]:
        return next((sub for sub in self.subresources if sub.name == name), None)

    def names(self) -> set[str]:
        """Every spelling a user or the store API may use for this resource."""
        return {self.plural, self.singular, self.kind.lower(), *self.short_names}


@dataclass(frozen=True)
class Group:
    name: str
    versions: tuple[str, ...]       # preferred first


def _kubevirt_subresources(version: str) -> Resource:
    """KubeVirt's virt-api serves these through the aggregator; its discovery lists
    only `virtualmachineinstances/<sub>` entries, no plain resource."""
    return Resource(
        group="subresources.kubevirt.io", version=version, plural="virtualmachineinstances",
        singular="virtualmachineinstance", kind="VirtualMachineInstance", verbs=(), stored=False,
        subresources=(
            Subresource("freeze", "VirtualMachineInstance", ("update",)),
            Subresource("unfreeze", "VirtualMachineInstance", ("update",)),
            Subresource("guestosinfo", "VirtualMachineInstance", ("get",)),
        ),
    )


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "namespace", "Namespace", namespaced=False, short_names=("ns",),
             subresources=(Subresource("status", "Namespace", STATUS_VERBS),),
             extra_fields=("status.phase",)),
    Resource("", "v1", "pods", "pod", "Pod", short_names=("po",), categories=("all",),
             subresources=(Subresource("exec", "PodExecOptions", ("create", "get")),
                           Subresource("status", "Pod", STATUS_VERBS)),
             extra_fields=("spec.nodeName", "status.phase", "spec.restartPolicy",
                           "spec.schedulerName", "spec.serviceAccountName", "status.podIP",
                           "status.nominatedNodeName")),
    Resource("", "v1", "events", "event", "Event", short_names=("ev",),
             extra_fields=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                           "involvedObject.uid", "involvedObject.apiVersion",
                           "involvedObject.resourceVersion", "involvedObject.fieldPath",
                           "reason", "reportingComponent", "source", "type")),
    Resource("kubevirt.io", "v1", "virtualmachineinstances", "virtualmachineinstance",
             "VirtualMachineInstance", short_names=("vmi", "vmis"), categories=("all",),
             subresources=(Subresource("status", "VirtualMachineInstance", STATUS_VERBS),)),
    Resource("kubevirt.io", "v1", "virtualmachines", "virtualmachine", "VirtualMachine",
             short_names=("vm", "vms"), categories=("all",),
             subresources=(Subresource("status", "VirtualMachine", STATUS_VERBS),)),
    _kubevirt_subresources("v1"),
    _kubevirt_subresources("v1alpha3"),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview",
             "SelfSubjectAccessReview", namespaced=False, verbs=("create",), stored=False),
    Resource("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "selfsubjectrulesreview",
             "SelfSubjectRulesReview", namespaced=False, verbs=("create",), stored=False),
)

GROUPS: tuple[Group, ...] = (
    Group("kubevirt.io", ("v1",)),
    Group("subresources.kubevirt.io", ("v1", "v1alpha3")),
    Group("authorization.k8s.io", ("v1",)),
)


@dataclass(frozen=True)
class Registry:
    resources: tuple[Resource, ...] = RESOURCES
    groups: tuple[Group, ...] = GROUPS
    _by_name: dict[str, Resource] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for resource in self.resources:
            if resource.stored:
                for name in resource.names():
                    self._by_name.setdefault(name, resource)

    def lookup(self, group: str, version: str, plural: str) -> Optional[Resource]:
        return next((r for r in self.resources
                     if (r.group, r.version, r.plural) == (group, version, plural)), None)

    def in_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.resources if (r.group, r.version) == (group, version)]

    def stored(self, kind_or_resource: str) -> Resource:
        """The stored resource for `pods`, `pod`, `Pod`, `vmi`, `VirtualMachineInstance`..."""
        resource = self._by_name.get(kind_or_resource.lower())
        if resource is None:
            raise KeyError(f"no stored resource called {kind_or_resource!r}")
        return resource

    def stored_resources(self) -> list[Resource]:
        return [r for r in self.resources if r.stored]
