"""kube.py + the CLI over real HTTP: the in-memory API server of tests/cluster (no VMs).

Checks the plugin's wire usage (get/list/watch/exec/subresource/events, RBAC answers, 410 and
dropped watches); the real end-to-end tests (real guests, real kubectl) live elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from kubectl_freeze import cli
from kubectl_freeze.config import resolve
from kubectl_freeze.errors import EXIT_FAILED, EXIT_OK, EXIT_UNCONFIRMED
from kubectl_freeze.kube import Kube, KubeError
from tests.test_targets_unit import make_pod, make_vmi

sim = pytest.importorskip("tests.cluster", reason="the cluster simulator's API server is not there yet")
if not hasattr(sim, "ApiServer"):
    pytest.skip("the cluster simulator has no ApiServer yet", allow_module_level=True)


class Backend(sim.InMemoryBackend):
    """With ``lazy`` set, freeze/unfreeze are accepted (202) without touching the status: the
    test sets it later, like KubeVirt's agent poller would."""

    lazy = False

    async def freeze(self, vmi, unfreeze_timeout_s):
        if not self.lazy:
            return await super().freeze(vmi, unfreeze_timeout_s)
        self.calls.append(("freeze", vmi["metadata"]["name"], unfreeze_timeout_s))

    async def unfreeze(self, vmi):
        if not self.lazy:
            return await super().unfreeze(vmi)
        self.calls.append(("unfreeze", vmi["metadata"]["name"]))


def add_vm(store, name, **kw):
    vmi = make_vmi(name, **kw)
    vmi["metadata"]["labels"] = {"app": "db"}
    vmi["metadata"].pop("uid")
    vmi["metadata"].pop("resourceVersion")
    created = store.create(vmi)
    store.create({"apiVersion": "v1", "kind": "Pod", **make_pod(name, uid=created["metadata"]["uid"])})
    return created


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    store = sim.Store()
    store.ensure_namespace("demo")
    backend = Backend(store)
    server = sim.ApiServer(backend, store=store).start()
    configs = {u: server.write_kubeconfig(tmp_path / f"kc-{u}", user=u, namespace="demo")
               for u in ("admin", "editor", "viewer", "no-exec", "no-freeze-api")}
    monkeypatch.setenv("KUBECONFIG", str(configs["editor"]))
    monkeypatch.setenv("NO_COLOR", "1")
    try:
        yield store, backend, server, configs
    finally:
        server.stop()


def run(capsys, app, *argv):
    code = cli.run(app, "kubectl x", list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fs_status(store, name):
    return (store.get("virtualmachineinstances", "demo", name).get("status") or {}).get("fsFreezeStatus")


def set_status(store, name, value):
    def apply(obj):
        if value:
            obj["status"]["fsFreezeStatus"] = value
        else:
            obj["status"].pop("fsFreezeStatus", None)
    store.mutate("virtualmachineinstances", "demo", name, apply)


def later(seconds, *steps):
    def go():
        time.sleep(seconds)
        for step in steps:
            step()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_freeze_status_unfreeze_through_the_api(cluster, capsys):
    store, backend, _, _ = cluster
    add_vm(store, "vm1")
    code, out, err = run(capsys, cli.freeze_app, "vm", "vm1", "--method", "api", "-o", "json")
    assert code == EXIT_OK, err
    item = json.loads(out)["items"][0]
    assert item["result"] == "frozen" and item["confirmedBy"] == ["vmi-status"]
    assert fs_status(store, "vm1") == "frozen" and ("freeze", "vm1", 300.0) in backend.calls
    events = store.list("events", "demo")
    assert [e["reason"] for e in events] == ["FilesystemsFrozen"]
    assert events[0]["involvedObject"]["kind"] == "VirtualMachineInstance"

    code, out, _ = run(capsys, cli.freeze_app, "status")
    assert code == 0 and out.splitlines()[1].split()[:5] == ["vm1", "Running", "connected", "frozen", "0s"]
    code, out, _ = run(capsys, cli.freeze_app, "status", "vm1", "-o", "yaml")
    assert "freeze: frozen" in out

    code, out, err = run(capsys, cli.unfreeze_app, "vm", "vm1", "--method", "api")
    assert code == EXIT_OK, err
    assert fs_status(store, "vm1") is None and out.splitlines()[1].split()[:2] == ["vm1", "thawed"]


def test_auto_falls_back_to_the_api_when_exec_is_forbidden(cluster, capsys, monkeypatch):
    store, backend, _, configs = cluster
    add_vm(store, "vm1")
    monkeypatch.setenv("KUBECONFIG", str(configs["no-exec"]))
    code, out, err = run(capsys, cli.freeze_app, "vm", "vm1", "-o", "json")
    assert code == EXIT_OK, err
    item = json.loads(out)["items"][0]
    assert item["method"] == "api" and "forbidden" in item["methodReason"]


def test_viewer_gets_one_forbidden_line_and_nothing_changes(cluster, capsys, monkeypatch):
    store, backend, _, configs = cluster
    add_vm(store, "vm1")
    monkeypatch.setenv("KUBECONFIG", str(configs["viewer"]))
    code, out, err = run(capsys, cli.freeze_app, "vm", "vm1", "--method", "api", "-q")
    assert code == EXIT_FAILED and fs_status(store, "vm1") is None
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "forbidden" in error[0] and "virtualmachineinstances/freeze" in error[0]


def test_preflight_refusal_changes_nothing(cluster, capsys):
    store, backend, _, _ = cluster
    add_vm(store, "ok")
    add_vm(store, "noagent", agent=False)
    code, _, err = run(capsys, cli.freeze_app, "vm", "-l", "app=db", "--method", "api")
    assert code == EXIT_FAILED and "1 of 2 VMs cannot be frozen" in err
    assert backend.calls == [] and store.list("events", "demo") == []


def test_exec_with_stdin_and_exit_codes(cluster):
    store, _, _, configs = cluster
    add_vm(store, "vm1")
    kube = Kube(resolve(kubeconfig=str(configs["editor"])))
    big = b"x" * 100_000
    result = kube.exec("demo", "virt-launcher-vm1-abcde", "compute", ["cat"], 20, stdin=big)
    assert (result.exit_code, len(result.stdout)) == (0, len(big))
    result = kube.exec("demo", "virt-launcher-vm1-abcde", "compute", ["sh", "-c", "echo oops >&2; exit 3"], 20)
    assert (result.exit_code, result.stderr) == (3, "oops\n")
    with pytest.raises(KubeError) as info:
        Kube(resolve(kubeconfig=str(configs["no-exec"]))).exec("demo", "virt-launcher-vm1-abcde", "compute",
                                                              ["true"], 20)
    assert info.value.status == 403 and "pods/exec" in info.value.line()


def bump_other_object(store):
    store.mutate("pods", "demo", "virt-launcher-vm1-abcde",
                 lambda pod: pod["metadata"].setdefault("labels", {}).update(touched="yes"))


def test_watch_survives_dropped_watches_and_410(cluster, capsys):
    store, backend, server, _ = cluster
    add_vm(store, "vm1")
    backend.lazy = True
    # the watch (from the VMI's version) is dropped after the history was compacted: 410 on re-watch
    later(0.3, lambda: bump_other_object(store), store.compact, server.drop_watches)
    later(0.8, lambda: set_status(store, "vm1", "frozen"))
    code, out, err = run(capsys, cli.freeze_app, "vm", "vm1", "--method", "api", "--timeout", "20s", "-o", "json")
    assert code == EXIT_OK, err
    assert json.loads(out)["items"][0]["vmiStatus"]["confirmed"] is True
    requests = [(method, path) for method, path, _ in server.requests if "virtualmachineinstances" in path]
    watches = [path for method, path in requests if "watch=true" in path]
    assert len(watches) >= 2 and len(watches) < 6, requests  # watched again after the drop, no hot loop
    # after the 410, a list (not the object's old version) gives the version to watch from
    assert any("fieldSelector=metadata.name" in path and "watch" not in path for _, path in requests), requests


def test_unconfirmed_freeze_is_exit_3_with_what_was_seen(cluster, capsys):
    store, backend, _, _ = cluster
    add_vm(store, "vm1")
    backend.lazy = True
    code, out, err = run(capsys, cli.freeze_app, "vm", "vm1", "--method", "api", "--timeout", "1s")
    assert code == EXIT_UNCONFIRMED
    assert "did not show frozen within 1s" in err and "last seen: no fsFreezeStatus" in err
