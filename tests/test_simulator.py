"""The cluster simulator, driven by the real kubectl and the real kubernetes client, with real
guests behind it (issue: a local KubeVirt cluster simulator)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

pytestmark = pytest.mark.cluster


def launcher_pod(cluster, vmi: str) -> str:
    return cluster.sim.pod_names(cluster.namespace, vmi)[0]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_kubectl_lists_vmis_and_launcher_pods(cluster):
    out = cluster.kubectl("get", "vmi")
    assert out.returncode == 0, out.stderr
    assert "vm1" in out.stdout and "Running" in out.stdout
    as_json = json.loads(cluster.kubectl("get", "vmi", "vm1", "-o", "json").stdout)
    assert as_json["status"]["nodeName"] == "node01"
    assert any(c["type"] == "AgentConnected" for c in as_json["status"]["conditions"])
    pods = cluster.kubectl("get", "pods", "-l", "kubevirt.io=virt-launcher", "-o", "name")
    assert f"pod/{launcher_pod(cluster, 'vm1')}" in pods.stdout.split()


def test_kubectl_exec_runs_real_virsh_in_the_compute_container(cluster):
    out = cluster.kubectl("exec", launcher_pod(cluster, "vm1"), "-c", "compute", "--", "virsh", "list")
    assert out.returncode == 0, out.stderr
    assert "e2e_vm1" in out.stdout and "running" in out.stdout


def test_exec_exit_code_propagates(cluster):
    out = cluster.kubectl("exec", launcher_pod(cluster, "vm1"), "--", "sh", "-c", "exit 7")
    assert out.returncode == 7


def test_stock_launcher_image_has_no_python_but_has_virt_freezer(cluster):
    pod = launcher_pod(cluster, "vm2")
    assert cluster.kubectl("exec", pod, "--", "sh", "-c", "command -v python3").returncode != 0
    assert cluster.kubectl("exec", pod, "--", "test", "-x", "/usr/bin/virt-freezer").returncode == 0
    python_pod = launcher_pod(cluster, "vm1")
    out = cluster.kubectl("exec", python_pod, "--", "python3", "-c", "import libvirt; print('ok')")
    assert out.stdout.strip() == "ok", out.stderr


def test_freeze_through_libvirt_shows_on_the_vmi_within_a_poll_and_clears_after_thaw(cluster):
    guest = cluster.guests["vm1"]
    guest.dom().fsFreeze(None, 0)
    try:
        wait = cluster.kubectl("wait", "--for=jsonpath={.status.fsFreezeStatus}=frozen", "vmi/vm1",
                               "--timeout=10s")
        assert wait.returncode == 0, wait.stderr
    finally:
        guest.dom().fsThaw(None, 0)
    wait_for(lambda: "fsFreezeStatus" not in cluster.vmi("vm1")["status"], what="the field to clear")


def test_kubectl_get_watch_sees_the_status_change(cluster):
    guest = cluster.guests["vm1"]
    watch = subprocess.Popen([*cluster_kubectl_cmd(cluster), "get", "vmi", "vm1", "-w", "-o",
                              "jsonpath={.status.fsFreezeStatus}{\"\\n\"}"],
                             env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        guest.dom().fsFreeze(None, 0)
        line = ""
        deadline = time.monotonic() + 10
        while "frozen" not in line and time.monotonic() < deadline:
            line = watch.stdout.readline()
        assert "frozen" in line
    finally:
        guest.dom().fsThaw(None, 0)
        watch.kill()
        watch.wait()


def cluster_kubectl_cmd(cluster) -> list[str]:
    from tests.conftest import KUBECTL

    return [KUBECTL]


@pytest.mark.parametrize("user,allowed", [("admin", "yes"), ("editor", "yes"), ("viewer", "no"),
                                          ("no-exec", "no")])
def test_auth_can_i_exec_follows_rbac(cluster, user, allowed):
    out = cluster.kubectl("auth", "can-i", "create", "pods", "--subresource=exec", "--context", user)
    assert out.stdout.strip() == allowed


def test_token_without_exec_gets_403_from_exec(cluster):
    out = cluster.kubectl("exec", launcher_pod(cluster, "vm1"), "--context", "no-exec", "--", "true")
    assert out.returncode != 0
    assert "forbidden" in out.stderr and 'cannot create resource "pods/exec"' in out.stderr


def test_python_client_stream_exec_returns_the_exit_code(cluster):
    from kubernetes import client
    from kubernetes.stream import stream

    api = client.CoreV1Api(api_client(cluster))
    resp = stream(api.connect_get_namespaced_pod_exec, launcher_pod(cluster, "vm1"), cluster.namespace,
                  container="compute", command=["sh", "-c", "echo hi; exit 3"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=30)
    assert resp.returncode == 3


def api_client(cluster, context: str = "admin"):
    """The official client, configured from the kubeconfig the way users configure it."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(cluster.kubeconfig), context=context, client_configuration=configuration)
    return client.ApiClient(configuration)


def _subresource(cluster, action: str, body: dict | None, user: str = "admin"):
    from kubernetes import client

    api = api_client(cluster, user)
    path = (f"/apis/subresources.kubevirt.io/v1/namespaces/{cluster.namespace}"
            f"/virtualmachineinstances/vm1/{action}")
    try:
        resp = api.call_api(path, "PUT", body=body, auth_settings=["BearerToken"],
                            header_params={"Content-Type": "application/json"},
                            _preload_content=False, _return_http_data_only=True)
        return resp.status
    except client.ApiException as e:
        return e.status


def test_freeze_subresource_freezes_the_real_guest_and_its_safety_timer_thaws_it(cluster):
    guest = cluster.guests["vm1"]
    assert _subresource(cluster, "freeze", {"unfreezeTimeout": "2s"}) == 200
    assert guest.agent_status() == "frozen"
    wait_for(lambda: cluster.vmi("vm1")["status"].get("fsFreezeStatus") == "frozen", what="frozen status")
    wait_for(lambda: guest.agent_status() == "thawed", timeout=5, what="the safety unfreeze")


def test_unfreeze_subresource_thaws_and_bad_requests_get_kubevirts_codes(cluster):
    guest = cluster.guests["vm1"]
    # virt-handler refuses a missing body (400) and virt-api passes that on as 500 InternalError
    assert _subresource(cluster, "freeze", None) == 500
    assert _subresource(cluster, "freeze", {"unfreezeTimeout": "5m0s"}, user="viewer") == 403
    assert _subresource(cluster, "freeze", {"unfreezeTimeout": "5m0s"}) == 200   # virt-api: 200, empty
    assert guest.agent_status() == "frozen"
    assert _subresource(cluster, "unfreeze", None) == 200
    assert guest.agent_status() == "thawed"


def test_stock_virt_freezer_freezes_and_thaws_the_real_guest(cluster):
    guest, pod = cluster.guests["vm2"], launcher_pod(cluster, "vm2")
    freeze = cluster.kubectl("exec", pod, "--", "/usr/bin/virt-freezer", "--freeze", "--name", "vm2",
                             "--namespace", cluster.namespace, "--unfreezeTimeoutSeconds", "60")
    assert freeze.returncode == 0, freeze.stderr
    assert guest.agent_status() == "frozen"
    thaw = cluster.kubectl("exec", pod, "--", "/usr/bin/virt-freezer", "--unfreeze", "--name", "vm2",
                           "--namespace", cluster.namespace)
    assert thaw.returncode == 0
    assert guest.agent_status() == "thawed"
    assert cluster.kubectl("exec", pod, "--", "/usr/bin/virt-freezer", "--name", "vm2").returncode == 1


def test_virt_freezer_exits_0_without_freezing_when_there_is_no_agent(cluster):
    guest, pod = cluster.guests["vm2"], launcher_pod(cluster, "vm2")
    guest.agent("kill")
    wait_for(lambda: not any(c["type"] == "AgentConnected" for c in cluster.vmi("vm2")["status"]["conditions"]),
             what="AgentConnected to go")
    out = cluster.kubectl("exec", pod, "--", "/usr/bin/virt-freezer", "--freeze", "--name", "vm2",
                          "--namespace", cluster.namespace)
    assert out.returncode == 0
    assert "No guest agent, exiting" in out.stderr


def test_virt_freezer_safety_timer_thaws_the_real_guest(cluster):
    guest, pod = cluster.guests["vm2"], launcher_pod(cluster, "vm2")
    freeze = cluster.kubectl("exec", pod, "--", "/usr/bin/virt-freezer", "--freeze", "--name", "vm2",
                             "--namespace", cluster.namespace, "--unfreezeTimeoutSeconds=2")
    assert freeze.returncode == 0, freeze.stderr
    assert guest.agent_status() == "frozen"
    wait_for(lambda: guest.agent_status() == "thawed", timeout=6, what="the launcher's safety unfreeze")


def test_freeze_subresource_of_a_vmi_that_is_not_running_is_409(cluster):
    from kubernetes import client

    ns = cluster.fresh_namespace()
    cluster.sim.add_vmi(ns, "done")
    cluster.sim.set_phase(ns, "done", "Succeeded")
    api = api_client(cluster)
    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/done/freeze"
    with pytest.raises(client.ApiException) as err:
        api.call_api(path, "PUT", body={"unfreezeTimeout": "5m0s"}, auth_settings=["BearerToken"],
                     header_params={"Content-Type": "application/json"}, _preload_content=False)
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "Conflict"
