"""Discovery documents: /version, the legacy /api, /api/v1, /apis, /apis/G, /apis/G/V, and
the aggregated (apidiscovery.k8s.io/v2) /api and /apis that kubectl 1.30+ asks for first.

The aggregated documents are built the way kube-apiserver's aggregator converts a legacy
list: a subresource whose parent is not listed (virt-api lists only
`virtualmachineinstances/freeze`... in subresources.kubevirt.io) gets a placeholder parent
resource with no verbs. That is what lets `kubectl auth can-i update
virtualmachineinstances.subresources.kubevirt.io --subresource=freeze` resolve the group.
"""

from __future__ import annotations

from typing import Optional

from .resources import Group, Registry, Resource

KUBE_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.1-sim", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-11-25T00:00:00Z",
                "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64",
                "emulationMajor": "1", "emulationMinor": "37",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "36"}


def _version_entry(group: str, version: str) -> dict:
    return {"groupVersion": f"{group}/{version}", "version": version}


def _group_entry(group: Group) -> dict:
    versions = [_version_entry(group.name, version) for version in group.versions]
    return {"name": group.name, "versions": versions, "preferredVersion": versions[0]}


AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "v=v2" in accept


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list(registry: Registry) -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(group) for group in registry.groups]}


def api_group(registry: Registry, name: str) -> Optional[dict]:
    group = next((g for g in registry.groups if g.name == name), None)
    if group is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def _resource_entries(resource: Resource) -> list[dict]:
    entries = []
    if resource.verbs:
        entry = {"name": resource.plural, "singularName": resource.singular,
                 "namespaced": resource.namespaced, "kind": resource.kind,
                 "verbs": list(resource.verbs)}
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entries.append(entry)
    for sub in resource.subresources:
        entries.append({"name": f"{resource.plural}/{sub.name}", "singularName": "",
                        "namespaced": resource.namespaced, "kind": sub.kind, "verbs": list(sub.verbs)})
    return entries


def api_resource_list(registry: Registry, group: str, version: str) -> Optional[dict]:
    resources = registry.in_version(group, version)
    if not resources:
        return None
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [entry for resource in resources for entry in _resource_entries(resource)]}


def _scope(resource: Resource) -> str:
    return "Namespaced" if resource.namespaced else "Cluster"


def _aggregated_resource(resource: Resource) -> dict:
    """One APIResourceDiscovery; a served-only-for-subresources resource becomes the
    aggregator's placeholder parent (no verbs, empty responseKind)."""
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    entry: dict = {"resource": resource.plural, "scope": _scope(resource)}
    if resource.verbs:
        entry.update(responseKind=kind, singularResource=resource.singular, verbs=list(resource.verbs))
    else:
        entry["responseKind"] = {}
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    if resource.subresources:
        entry["subresources"] = [{"subresource": sub.name, "verbs": list(sub.verbs),
                                  "responseKind": {**kind, "kind": sub.kind}}
                                 for sub in resource.subresources]
    return entry


def aggregated(registry: Registry, core: bool) -> dict:
    """The APIGroupDiscoveryList for /api (core=True) or /apis."""
    groups = [Group("", ("v1",))] if core else list(registry.groups)
    items = []
    for group in groups:
        versions = [{"version": version, "freshness": "Current",
                     "resources": [_aggregated_resource(r) for r in registry.in_version(group.name, version)]}
                    for version in group.versions]
        items.append({"metadata": {"name": group.name, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}
