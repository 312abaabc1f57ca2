"""The cluster simulator's Kubernetes API layer: a kube-apiserver stand-in that the real
kubectl (1.31+) and the real kubernetes Python client use unchanged, over HTTPS and WebSocket.

    store = Store()
    backend = InMemoryBackend(store)          # or tests.cluster.kubevirt's real backend
    with ApiServer(backend, store=store, bookmark_interval=1.0) as srv:
        srv.write_kubeconfig(tmp / "kubeconfig", user="editor", namespace="demo", context="sim",
                             extra_contexts=[Context("viewer", "viewer", "demo")])
        srv.url, srv.ca_path, srv.token_for("viewer"), srv.client_configuration("admin")
        srv.drop_watches(); srv.restart()     # same port, same store, same tokens
        srv.requests.copy()                   # [(method, path?query, status)], for debugging
        srv.audit.changes_since(srv.audit.mark())   # audit log: method, URI, verb, user per request

Modules, one job each:
    store        objects, the global resourceVersion, bounded history, watch fan-out (thread-safe)
    resources    the served resources (discovery, routing, store and RBAC read it)
    routes       the aiohttp app: authn, RBAC, discovery, CRUD/watch, exec, KubeVirt subresources
    apiserver    ApiServer: TLS, the background loop thread, lifecycle
    audit        the per-server audit log (Metadata level) and which requests change something
    auth         tokens -> users, PolicyRules, the default users, SelfSubject*Reviews
    watch        chunked watch streams (bookmarks, timeoutSeconds, selector transitions)
    exec_ws      pods/exec over WebSocket (v5/v4.channel.k8s.io)
    backend      the Backend / ExecIO protocols and InMemoryBackend
    discovery, tables, selectors, requestinfo, protobuf, errors, tls, kubeconfig, objects

Users (`Users.defaults()`): admin (everything), editor (reads, pods/exec, freeze/unfreeze,
events, kubevirt.io writes), viewer (reads, guestosinfo), no-exec (reads, freeze/unfreeze,
events), no-freeze-api (reads, pods/exec, events). Add more with `srv.users.add(User(...))`.
"""

from .apiserver import ApiServer
from .auth import PolicyRule, User, Users
from .backend import Backend, ExecIO, InMemoryBackend
from .errors import ApiError
from .kubeconfig import Context
from .store import Store, WatchEvent

__all__ = ["ApiError", "ApiServer", "Backend", "Context", "ExecIO", "InMemoryBackend",
           "PolicyRule", "Store", "User", "Users", "WatchEvent"]
