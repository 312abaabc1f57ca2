"""targets.py: names, preflight decisions from VMI dicts, launcher pod selection (incl. migrations).

``make_vmi``/``make_pod``/``FakeKube`` are shared with the other plugin unit tests.
"""

from __future__ import annotations

import copy

import pytest

from kubectl_freeze.errors import EXIT_FAILED, EXIT_USAGE, Failed, UsageError
from kubectl_freeze.kube import KubeError
from kubectl_freeze.targets import (
    check_selector,
    FREEZE,
    UNFREEZE,
    Target,
    check_pod,
    parse_name,
    parse_names,
    preflight,
    resolve_targets,
    select_launcher_pod,
)


def make_vmi(name="vm1", ns="demo", uid=None, phase="Running", node="node1", agent=True, frozen=False,
             rv="100", **status):
    st = {"phase": phase, "nodeName": node, "conditions": []}
    if agent:
        # as virt-handler writes it: lastProbeTime, and a null lastTransitionTime
        st["conditions"].append({"type": "AgentConnected", "status": "True",
                                 "lastProbeTime": "2026-01-01T00:00:00Z", "lastTransitionTime": None})
    if frozen:
        st["fsFreezeStatus"] = "frozen"
    st.update(status)
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{name}", "resourceVersion": rv},
        "status": st,
    }


def make_pod(vm="vm1", ns="demo", uid=None, node="node1", name=None, created="2026-01-01T00:00:00Z",
             labels=None, owner=True, phase="Running", image="quay.io/kubevirt/virt-launcher:v1.6.0"):
    uid = uid or f"uid-{vm}"
    meta = {
        "name": name or f"virt-launcher-{vm}-abcde",
        "namespace": ns,
        "creationTimestamp": created,
        "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": uid, **(labels or {})},
    }
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                    "name": vm, "uid": uid, "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": node, "containers": [{"name": "compute", "image": image}]},
            "status": {"phase": phase}}


class FakeKube:
    """The reads/writes targets.py, runner.py and watch.py make, from dicts; records every call."""

    def __init__(self, vmis=(), pods=(), vms=(), user="tester"):
        self.vmis = {(v["metadata"]["namespace"], v["metadata"]["name"]): copy.deepcopy(v) for v in vmis}
        self.pods = [copy.deepcopy(p) for p in pods]
        self.vms = {(v["metadata"]["namespace"], v["metadata"]["name"]): v for v in vms}
        self.calls: list[tuple] = []
        self.events: list[dict] = []
        self.exec_results: dict = {}
        self.watch_scripts: list = []

    def get_vmi(self, ns, name):
        self.calls.append(("get_vmi", ns, name))
        if (ns, name) not in self.vmis:
            raise KubeError(404, f"virtualmachineinstances {name!r} not found")
        return copy.deepcopy(self.vmis[(ns, name)])

    def get_vm(self, ns, name):
        self.calls.append(("get_vm", ns, name))
        if (ns, name) not in self.vms:
            raise KubeError(404, "not found")
        return self.vms[(ns, name)]

    def list_vmis(self, ns, selector=None, field_selector=None):
        self.calls.append(("list_vmis", ns, selector or field_selector))
        key, _, value = (selector or "").partition("=")
        name = (field_selector or "").partition("metadata.name=")[2]
        items = [v for (n, vm), v in self.vmis.items() if ns in (None, n) and name in ("", vm)
                 and (not selector or (v["metadata"].get("labels") or {}).get(key) == value)]
        return {"metadata": {"resourceVersion": "999"}, "items": copy.deepcopy(items)}

    def list_pods(self, ns, selector):
        self.calls.append(("list_pods", ns, selector))
        return [copy.deepcopy(p) for p in self.pods if ns in (None, p["metadata"]["namespace"])]

    def list_events(self, ns, field_selector=None):
        self.calls.append(("list_events", ns))
        return list(self.events)

    def create_event(self, ns, event):
        self.calls.append(("create_event", ns, event["reason"]))
        self.events.append(event)
        return event

    def exec(self, ns, pod, container, command, timeout, stdin=None):
        self.calls.append(("exec", pod, tuple(command[:2])))
        result = self.exec_results.get(tuple(command[:2]))
        if isinstance(result, Exception):
            raise result
        return result

    def put_vmi_subresource(self, ns, name, sub, body, timeout=None):
        self.calls.append(("put", name, sub, body))
        return {}

    def watch_vmi(self, ns, name, rv, timeout_seconds):
        self.calls.append(("watch", name, rv))
        script = self.watch_scripts.pop(0) if self.watch_scripts else []
        if isinstance(script, Exception):
            raise script
        for item in script:
            if isinstance(item, Exception):
                raise item
            yield item

    def writes(self):
        return [c for c in self.calls if c[0] in ("exec", "put", "create_event")]


# -- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arg,name", [
    ("vm1", "vm1"), ("vm/vm1", "vm1"), ("vmi/db-0", "db-0"), ("virtualmachineinstance.kubevirt.io/a.b", "a.b"),
    ("VMI/x", "x"),
])
def test_parse_name_accepts_names_and_kind_prefixes(arg, name):
    assert parse_name(arg) == name


@pytest.mark.parametrize("arg", ["", "Vm1", "vm_1", "-vm", "vm-", "pod/vm1", "a" * 254, "vm/", "x y"])
def test_parse_name_refuses_bad_names_as_usage_errors(arg):
    with pytest.raises(UsageError) as info:
        parse_name(arg)
    assert info.value.exit_code == EXIT_USAGE
    assert "invalid name" in info.value.line()


def test_parse_names_drops_duplicates_keeping_order():
    assert parse_names(["b", "vm/a", "b", "a"]) == ["b", "a"]


# -- preflight ------------------------------------------------------------------------------------
def test_preflight_running_vmi_with_agent_passes():
    assert preflight(make_vmi(), FREEZE) == []


@pytest.mark.parametrize("phase,words", [
    ("Pending", "is Pending, not Running"),
    ("Scheduling", "is Scheduling, not Running"),
    ("Succeeded", "has stopped"),
    ("Failed", "has stopped"),
])
def test_preflight_refuses_vmis_that_are_not_running(phase, words):
    for action in (FREEZE, UNFREEZE):
        with pytest.raises(Failed) as info:
            preflight(make_vmi(phase=phase), action)
        assert words in info.value.line()
        assert info.value.exit_code == EXIT_FAILED


def test_preflight_refuses_a_vmi_being_deleted():
    vmi = make_vmi()
    vmi["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    with pytest.raises(Failed, match="being deleted"):
        preflight(vmi, FREEZE)


def test_preflight_without_node_refuses():
    with pytest.raises(Failed, match="no node"):
        preflight(make_vmi(node=""), FREEZE)


def test_preflight_paused_refuses_freeze_and_lets_the_thaw_fail_at_once():
    vmi = make_vmi()
    vmi["status"]["conditions"].append({"type": "Paused", "status": "True"})
    with pytest.raises(Failed) as info:
        preflight(vmi, FREEZE)
    assert "paused" in info.value.line() and "virtctl unpause" in info.value.line()
    assert "--skip-paused" in info.value.line()
    # No "the thaw waits" promise: a thaw of a paused guest fails at once (the runner says why).
    assert not any("paused" in w for w in preflight(vmi, UNFREEZE))


def test_preflight_no_agent_condition_refuses_freeze_with_advice():
    with pytest.raises(Failed) as info:
        preflight(make_vmi(agent=False), FREEZE)
    assert "AgentConnected" in info.value.line() and "qemu-guest-agent" in info.value.line()
    assert any("guest agent" in w for w in preflight(make_vmi(agent=False), UNFREEZE))


def test_preflight_agent_condition_false_counts_as_not_connected():
    vmi = make_vmi(agent=False)
    vmi["status"]["conditions"].append({"type": "AgentConnected", "status": "False"})
    with pytest.raises(Failed):
        preflight(vmi, FREEZE)


def test_preflight_refuses_freeze_during_a_running_migration_only():
    migrating = make_vmi(migrationState={"startTimestamp": "2026-01-01T00:00:00Z", "targetNode": "node2"})
    with pytest.raises(Failed) as info:
        preflight(migrating, FREEZE)
    assert "migrating to node node2" in info.value.line()
    assert preflight(migrating, UNFREEZE) == []
    for done in ({"completed": True}, {"failed": True}, {}):
        state = {"startTimestamp": "2026-01-01T00:00:00Z", "targetNode": "node2", **done}
        if not done:
            state.pop("startTimestamp")  # not started yet: KubeVirt still freezes
        assert preflight(make_vmi(migrationState=state), FREEZE) == []


def test_preflight_warns_about_windows_vss():
    vmi = make_vmi(guestOSInfo={"id": "mswindows", "name": "Microsoft Windows Server 2022"})
    warnings = preflight(vmi, FREEZE)
    assert len(warnings) == 1 and "10 seconds" in warnings[0]
    assert preflight(make_vmi(guestOSInfo={"id": "fedora", "name": "Fedora Linux"}), FREEZE) == []


# -- launcher pod ---------------------------------------------------------------------------------
def test_select_pod_newest_controlled_pod_on_the_vmi_node():
    old = make_pod(name="old", created="2026-01-01T00:00:00Z")
    new = make_pod(name="new", created="2026-01-02T00:00:00Z")
    elsewhere = make_pod(name="elsewhere", node="node2", created="2026-01-03T00:00:00Z")
    stranger = make_pod(name="stranger", uid="someone-else", created="2026-01-04T00:00:00Z")
    chosen = select_launcher_pod(make_vmi(), [old, elsewhere, new, stranger])
    assert chosen["metadata"]["name"] == "new"


def test_select_pod_by_created_by_label_without_owner_reference():
    pod = make_pod(owner=False)
    assert select_launcher_pod(make_vmi(), [pod]) is pod


def test_select_pod_never_the_target_of_a_running_migration():
    source = make_pod(name="source", created="2026-01-01T00:00:00Z")
    target = make_pod(name="target", created="2026-01-02T00:00:00Z", labels={"kubevirt.io/migrationJobUID": "mig-1"})
    state = {"migrationUid": "mig-1", "startTimestamp": "2026-01-02T00:00:00Z", "targetPod": "target",
             "targetNode": "node1"}
    # even on the same node (and newer), the in-flight target is not the pod to talk to
    vmi = make_vmi(migrationState=state)
    assert select_launcher_pod(vmi, [source, target])["metadata"]["name"] == "source"
    # a job-labelled pod the VMI knows nothing about is not picked either
    assert select_launcher_pod(make_vmi(), [source, target])["metadata"]["name"] == "source"


def test_select_pod_after_a_completed_migration_is_the_former_target():
    source = make_pod(name="source", node="node1", created="2026-01-01T00:00:00Z")
    target = make_pod(name="target", node="node2", created="2026-01-02T00:00:00Z",
                      labels={"kubevirt.io/migrationJobUID": "mig-1"})
    state = {"migrationUid": "mig-1", "startTimestamp": "x", "completed": True, "targetPod": "target"}
    vmi = make_vmi(node="node2", migrationState=state)
    assert select_launcher_pod(vmi, [source, target])["metadata"]["name"] == "target"
    # a later migration away from it: it is the source now, the new target is skipped
    newer = make_pod(name="third", node="node2", created="2026-01-03T00:00:00Z",
                     labels={"kubevirt.io/migrationJobUID": "mig-2"})
    vmi2 = make_vmi(node="node2", migrationState={"migrationUid": "mig-2", "startTimestamp": "y",
                                                  "targetPod": "third"})
    assert select_launcher_pod(vmi2, [source, target, newer])["metadata"]["name"] == "target"


def test_select_pod_none_when_nothing_matches():
    assert select_launcher_pod(make_vmi(), [make_pod(node="node9")]) is None


def test_check_pod_explains_missing_or_not_running_pods():
    with pytest.raises(Failed, match="no virt-launcher pod"):
        check_pod(None, make_vmi())
    with pytest.raises(Failed, match="Pending, not Running"):
        check_pod(make_pod(phase="Pending"), make_vmi())
    pod = make_pod()
    pod["spec"]["containers"] = [{"name": "other"}]
    with pytest.raises(Failed, match="no 'compute' container"):
        check_pod(pod, make_vmi())
    check_pod(make_pod(), make_vmi())


def test_target_properties():
    target = Target(make_vmi(frozen=True), make_pod())
    assert (target.ref, target.domain, target.pod_name, target.node) == (
        "demo/vm1", "demo_vm1", "virt-launcher-vm1-abcde", "node1")
    assert target.frozen_before and target.resource_version == "100"


# -- resolve_targets -----------------------------------------------------------------------------
def test_resolve_targets_reads_vmis_and_pods_and_writes_nothing():
    kube = FakeKube([make_vmi("a"), make_vmi("b")], [make_pod("a"), make_pod("b")])
    targets = resolve_targets(kube, "demo", ["a", "b"], None, FREEZE)
    assert [t.pod_name for t in targets] == ["virt-launcher-a-abcde", "virt-launcher-b-abcde"]
    assert kube.writes() == []
    assert [c[0] for c in kube.calls].count("list_pods") == 1  # one list per namespace


def test_resolve_targets_only_a_stopped_vm_says_start_it():
    vm = {"metadata": {"name": "db", "namespace": "demo"}, "status": {"printableStatus": "Stopped"}}
    with pytest.raises(Failed) as info:
        resolve_targets(FakeKube(vms=[vm]), "demo", ["db"], None, FREEZE)
    assert "exists but has no running instance (Stopped)" in info.value.line()
    assert "virtctl start db" in info.value.line()


def test_resolve_targets_nothing_of_that_name():
    with pytest.raises(Failed) as info:
        resolve_targets(FakeKube(), "demo", ["ghost"], None, FREEZE)
    assert "'ghost' not found in namespace 'demo'" in info.value.line()


def test_resolve_targets_group_with_one_unfit_vm_refuses_all_before_acting():
    kube = FakeKube([make_vmi("a"), make_vmi("b", agent=False)], [make_pod("a"), make_pod("b")])
    with pytest.raises(Failed) as info:
        resolve_targets(kube, "demo", ["a", "b"], None, FREEZE)
    assert "1 of 2 VMs cannot be frozen, so none was" in info.value.line()
    assert "demo/b" in info.value.line()
    assert kube.writes() == []


def test_resolve_targets_selector_without_match():
    with pytest.raises(Failed, match="no VirtualMachineInstance matches -l 'app=x'"):
        resolve_targets(FakeKube([make_vmi()]), "demo", [], "app=x", FREEZE)


@pytest.mark.parametrize("selector", ["app=db", "app==db", "app!=db", "tier in (db,cache)", "tier notin (a)",
                                      "!legacy", "app", "kubevirt.io/domain=vm1", "a=b,c in (x, y),!d", "x>3"])
def test_valid_label_selectors_pass(selector):
    check_selector(selector)


@pytest.mark.parametrize("selector", ["app in (x", "=db", "a b", "app=db=", "app in x", "a=b,,c"])
def test_invalid_label_selectors_are_usage_errors(selector):
    with pytest.raises(UsageError, match="invalid label selector"):
        check_selector(selector)
