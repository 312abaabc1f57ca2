"""The cluster simulator's Kubernetes API layer: a kube-apiserver stand-in that the real
kubectl and the real kubernetes Python client use over HTTPS and WebSocket.

    store = Store()
    backend = InMemoryBackend(store)          # or the real KubeVirt-like backend
    with ApiServer(backend, store=store) as srv:
        srv.write_kubeconfig(tmp / "kubeconfig", user="editor", namespace="demo")
"""

from .apiserver import ApiServer
from .auth import PolicyRule, User, Users
from .backend import Backend, ExecIO, InMemoryBackend
from .errors import ApiError
from .kubeconfig import Context
from .store import Store, WatchEvent

__all__ = ["ApiError", "ApiServer", "Backend", "Context", "ExecIO", "InMemoryBackend",
           "PolicyRule", "Store", "User", "Users", "WatchEvent"]
