"""Which cluster, context, namespace and user this run talks to: resolved once, then pinned.

Order, as kubectl does it:
- kubeconfig: ``--kubeconfig`` > ``KUBECONFIG`` (a ``:``-separated list; missing files are
  skipped; for every name and for ``current-context`` the first file that sets it wins) >
  ``~/.kube/config``; with none of them and ``KUBERNETES_SERVICE_HOST`` set, the in-cluster
  service account.
- context: ``--context`` > ``current-context``.
- namespace: ``-n`` > the context's namespace (in a pod: the service account's) > ``default``.

The ``kubernetes`` package is imported lazily: ``--help`` must stay fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .durations import parse_duration
from .errors import Failed, UsageError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER = "(in-cluster)"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_namespace(namespace: str) -> str:
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise UsageError(
            f"invalid namespace {namespace!r}",
            "a namespace is lower-case letters, digits and '-', at most 63 characters",
        )
    return namespace


def kubeconfig_paths(flag: str | None, env: Mapping[str, str]) -> list[str]:
    """The kubeconfig files to read, in precedence order (may be empty)."""
    if flag:
        path = os.path.expanduser(flag)
        if not os.path.isfile(path):
            raise UsageError(f"--kubeconfig {flag}: no such file", "give the path of a kubeconfig file")
        return [path]
    listed = env.get("KUBECONFIG", "")
    if listed:
        paths = [os.path.expanduser(p) for p in listed.split(os.pathsep) if p]
    else:
        paths = [os.path.expanduser("~/.kube/config")]
    seen: list[str] = []
    for path in paths:
        if os.path.isfile(path) and path not in seen:
            seen.append(path)
    return seen


def check_kubeconfig_shape(doc: Any, path: str) -> dict:
    """The parsed file as a kubeconfig mapping; UsageError when it is YAML of another shape (a list,
    a string, `clusters: 5`), which would otherwise surface as a crash deep in the merge."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping)",
                         "check --kubeconfig / KUBECONFIG")
    for kind in ("clusters", "contexts", "users"):
        entries = doc.get(kind)
        if entries is not None and not (isinstance(entries, list)
                                        and all(isinstance(entry, dict) for entry in entries)):
            raise UsageError(f"kubeconfig {path}: {kind!r} is not a list of entries",
                             "check --kubeconfig / KUBECONFIG")
    for entry in doc.get("contexts") or []:
        if not isinstance(entry.get("context") or {}, dict):
            raise UsageError(f"kubeconfig {path}: context {entry.get('name')!r} is not a mapping",
                             "check --kubeconfig / KUBECONFIG")
    return doc


def merge_kubeconfigs(docs: list[dict]) -> dict:
    """Merge kubeconfig documents the way kubectl does: the first definition of a name wins."""
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": [], "current-context": ""}
    for doc in docs:
        doc = doc or {}
        if not merged["current-context"] and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for kind in ("clusters", "contexts", "users"):
            known = {item.get("name") for item in merged[kind]}
            for item in doc.get(kind) or []:
                if isinstance(item, dict) and item.get("name") not in known:
                    merged[kind].append(item)
                    known.add(item.get("name"))
    return merged


def pick_context(merged: dict, wanted: str | None) -> dict:
    """The context entry to use ({"name":..., "context": {...}}); UsageError when absent."""
    name = wanted or merged.get("current-context") or ""
    names = [c.get("name") for c in merged.get("contexts", [])]
    if not name:
        hint = "pass --context" + (f" (one of: {', '.join(names)})" if names else "")
        raise UsageError("the kubeconfig has no current-context", hint)
    for entry in merged.get("contexts", []):
        if entry.get("name") == name:
            return entry
    raise UsageError(
        f"context {name!r} is not in the kubeconfig",
        f"use one of: {', '.join(n for n in names if n)}" if names else "check --kubeconfig / KUBECONFIG",
    )


def parse_request_timeout(text: str | None) -> float | None:
    """kubectl's --request-timeout: "0" = none, a bare number = seconds, else a Go duration."""
    if text is None or text == "":
        return None
    seconds = parse_duration(text, "--request-timeout", allow_bare_seconds=True).total_seconds()
    return seconds or None


@dataclass
class Cluster:
    """The pinned connection settings of one run."""

    configuration: Any  # kubernetes.client.Configuration
    context: str
    namespace: str
    user: str
    server: str
    source: str
    request_timeout: float | None = None

    def new_client(self):
        """A fresh ApiClient (exec and watch each get their own; see methods.execpod)."""
        from kubernetes.client import ApiClient

        return ApiClient(self.configuration)

    def describe(self) -> str:
        return f"context {self.context!r} ({self.server})"


def resolve(
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    request_timeout: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Cluster:
    """Resolve and pin the cluster settings for this run (reads files, sends nothing)."""
    env = os.environ if env is None else env
    timeout = parse_request_timeout(request_timeout)
    if namespace is not None:
        validate_namespace(namespace)
    paths = kubeconfig_paths(kubeconfig, env)
    if not paths:
        if env.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
            if context:
                raise UsageError(f"--context {context}: there is no kubeconfig inside this pod")
            return _in_cluster(namespace, timeout, env)
        looked = env.get("KUBECONFIG") or "~/.kube/config"
        raise Failed(
            f"no kubeconfig found (looked at {looked})",
            "pass --kubeconfig, set KUBECONFIG, or run inside a pod with a service account",
        )
    import yaml

    docs = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                docs.append(check_kubeconfig_shape(yaml.safe_load(handle), path))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:   # a binary file is no YAML either
            raise UsageError(f"cannot read kubeconfig {path}: {exc}") from None
    merged = merge_kubeconfigs(docs)
    entry = pick_context(merged, context)
    ctx_body = entry.get("context") or {}
    ns = namespace or ctx_body.get("namespace") or "default"

    from kubernetes.client import Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    configuration = Configuration()
    try:
        merger = KubeConfigMerger(os.pathsep.join(paths))
        loader = KubeConfigLoader(config_dict=merger.config, active_context=entry["name"], config_base_path=None)
        loader.load_and_set(configuration)
    except ConfigException as exc:
        raise UsageError(f"kubeconfig context {entry['name']!r} is unusable: {exc}") from None
    except Exception as exc:  # broken certificate data, exec plugin failures...
        raise Failed(f"cannot load credentials for context {entry['name']!r}: {exc}") from None
    return Cluster(
        configuration=configuration,
        context=entry["name"],
        namespace=validate_namespace(ns),
        user=str(ctx_body.get("user") or ""),
        server=str(configuration.host),
        source=os.pathsep.join(paths),
        request_timeout=timeout,
    )


def _in_cluster(namespace: str | None, timeout: float | None, env: Mapping[str, str]) -> Cluster:
    from kubernetes.client import Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = Configuration()
    try:
        InClusterConfigLoader(
            token_filename=os.path.join(SERVICE_ACCOUNT_DIR, "token"),
            cert_filename=os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
            environ=env,
        ).load_and_set(configuration)
    except ConfigException as exc:
        raise Failed(f"cannot use the in-cluster service account: {exc}", "pass --kubeconfig") from None
    ns = namespace
    if not ns:
        try:
            with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as handle:
                ns = handle.read().strip()
        except OSError:
            ns = ""
    return Cluster(
        configuration=configuration,
        context=IN_CLUSTER,
        namespace=validate_namespace(ns or "default"),
        user="serviceaccount",
        server=str(configuration.host),
        source=IN_CLUSTER,
        request_timeout=timeout,
    )


def request_timeout_kwargs(cluster: Cluster) -> dict:
    """Keyword arguments that apply --request-timeout to one API call."""
    return {"_request_timeout": cluster.request_timeout} if cluster.request_timeout else {}
