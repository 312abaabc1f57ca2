"""Kubeconfig files (for kubectl) and client Configurations (for the Python client)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml


@dataclass(frozen=True)
class Context:
    """One kubeconfig context: `name` uses `user`'s token with `namespace` as default."""

    name: str
    user: str
    namespace: str = "default"


def kubeconfig(server: str, ca_data: str, tokens: dict[str, str], contexts: Sequence[Context],
               cluster: str = "sim", current: str = "") -> dict[str, Any]:
    """A kubeconfig with one cluster, every user that a context names, the contexts, and
    `current` (default: the first context) as current-context."""
    users = sorted({context.user for context in contexts})
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": tokens[user]}} for user in users],
        "contexts": [{"name": c.name, "context": {"cluster": cluster, "user": c.user,
                                                  "namespace": c.namespace}} for c in contexts],
        "current-context": current or contexts[0].name,
        "preferences": {},
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def client_configuration(server: str, ca_path: Path, token: str) -> Any:
    """A kubernetes.client.Configuration for the Python client."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = server
    configuration.ssl_ca_cert = str(ca_path)
    configuration.verify_ssl = True
    # the 36.x client reads "BearerToken" and falls back to "authorization" (older clients)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return configuration

