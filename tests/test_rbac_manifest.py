"""deploy/rbac.yaml against the simulator's RBAC (issue 5): a user holding exactly the manifest's
ClusterRole freezes and thaws real guests through the real kubectl, with each method; bound in
one namespace (the RoleBinding variant) it can act there only; and each rule, once removed,
takes away what it was there for. The krew caveats list the same rights."""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.cluster.auth import PolicyRule, User
from tests.conftest import KUBECTL

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "deploy" / "rbac.yaml"
KREW_TEMPLATES = [REPO / "krew" / "freeze.yaml", REPO / "krew" / "unfreeze.yaml"]
NS = "e2e"


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def cluster_role() -> dict:
    [role] = [d for d in documents() if d["kind"] == "ClusterRole"]
    return role


def policy_rules(rules: list[dict], namespaces: tuple[str, ...] | None = None) -> tuple[PolicyRule, ...]:
    """An RBAC role's rules as the simulator's PolicyRules; ``namespaces`` as a RoleBinding
    would bind them (None: a ClusterRoleBinding)."""
    return tuple(PolicyRule(verbs=tuple(r["verbs"]), api_groups=tuple(r["apiGroups"]),
                            resources=tuple(r["resources"]), namespaces=namespaces,
                            resource_names=tuple(r.get("resourceNames") or ())) for r in rules)


def rule_for(resource: str) -> int:
    [index] = [i for i, r in enumerate(cluster_role()["rules"]) if resource in r["resources"]]
    return index


@dataclass
class Subject:
    """A simulator user bound to some rules, with a kubeconfig of its own."""

    name: str
    env: dict[str, str]

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout)


def bind(cluster, tmp_path: Path, rules: list[dict], namespaces: tuple[str, ...] | None = None) -> Subject:
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    cluster.sim.server.users.add(User(name, policy_rules(rules, namespaces)))
    kubeconfig = tmp_path / f"{name}.kubeconfig"
    cluster.sim.server.write_kubeconfig(kubeconfig, user=name, namespace=NS, context=name)
    env = dict(cluster.env(), KUBECONFIG=str(kubeconfig))
    return Subject(name, env)


def without(index: int) -> list[dict]:
    rules = cluster_role()["rules"]
    return rules[:index] + rules[index + 1:]


def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def error_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


# ----- the manifest itself --------------------------------------------------------------------
def test_manifest_has_the_cluster_role_and_both_binding_examples():
    docs = documents()
    assert [d["kind"] for d in docs] == ["ClusterRole", "RoleBinding", "ClusterRoleBinding"]
    for doc in docs:
        assert doc["apiVersion"] == "rbac.authorization.k8s.io/v1"
    for binding in docs[1:]:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": cluster_role()["metadata"]["name"]}
        assert binding["subjects"]
    assert docs[1]["metadata"]["namespace"]
    rules = cluster_role()["rules"]
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
        assert rule["apiGroups"] and rule["resources"] and rule["verbs"]
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], "no wildcards"


def _rights(rules: list[dict]) -> set[tuple[str, str, frozenset]]:
    return {(group, resource, frozenset(rule["verbs"]))
            for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}


@pytest.mark.parametrize("template", KREW_TEMPLATES, ids=lambda p: p.name)
def test_krew_caveats_list_the_same_rights_as_the_manifest(template):
    caveats = yaml.safe_load(template.read_text())["spec"]["caveats"]
    listed = set()
    for match in re.finditer(r"^\s+(\"\"|[a-z.]+\.io)\s+(\S+)\s+([a-z, ]+)$", caveats, re.M):
        group = "" if match.group(1) == '""' else match.group(1)
        listed.add((group, match.group(2), frozenset(v.strip() for v in match.group(3).split(","))))
    assert listed == _rights(cluster_role()["rules"])


# ----- against the simulator ------------------------------------------------------------------

@pytest.mark.cluster
def test_the_cluster_role_is_enough_to_freeze_and_thaw_with_each_method(cluster, tmp_path):
    user = bind(cluster, tmp_path, cluster_role()["rules"])
    assert user.kubectl("auth", "can-i", "create", "pods", "--subresource=exec").stdout.strip() == "yes"
    # auto on the python launcher image: the bundled freezer, through exec.
    out = ok(user.kubectl("freeze", "vm", "vm1", "-o", "json"))
    assert cluster.guests["vm1"].agent_status() == "frozen"
    assert '"method": "freezer"' in out.stdout
    ok(user.kubectl("freeze", "status", "-A"))
    ok(user.kubectl("unfreeze", "vm", "vm1"))
    assert cluster.guests["vm1"].agent_status() == "thawed"
    # The subresource API on the stock image.
    ok(user.kubectl("freeze", "vm", "vm2", "--method", "api"))
    assert cluster.guests["vm2"].agent_status() == "frozen"
    ok(user.kubectl("unfreeze", "vm", "vm2", "--method", "api"))
    assert cluster.guests["vm2"].agent_status() == "thawed"


@pytest.mark.cluster
def test_bound_by_a_role_binding_it_acts_in_that_namespace_only(cluster, tmp_path):
    user = bind(cluster, tmp_path, cluster_role()["rules"], namespaces=(NS,))
    plan = ok(user.kubectl("freeze", "vm", "vm1", "vm2", "--dry-run"))
    assert "vm1" in plan.stdout and "vm2" in plan.stdout
    ok(user.kubectl("freeze", "status"))
    elsewhere = user.kubectl("freeze", "status", "-A")
    assert elsewhere.returncode == 1
    assert "forbidden" in error_line(elsewhere) and "cluster-wide" in error_line(elsewhere)
    other = user.kubectl("freeze", "vm", "vm1", "-n", "default")
    assert other.returncode == 1 and "forbidden" in error_line(other)


@pytest.mark.cluster
@pytest.mark.parametrize("resource,args,expected", [
    ("virtualmachineinstances", ["freeze", "vm", "vm1"], "get virtualmachineinstances.kubevirt.io"),
    ("pods", ["freeze", "vm", "vm1"], "list pods"),
    ("pods/exec", ["freeze", "vm", "vm1", "--method", "freezer"], "create pods/exec"),
    ("virtualmachineinstances/freeze", ["freeze", "vm", "vm2", "--method", "api"],
     "update virtualmachineinstances/freeze"),
], ids=["vmis", "pods", "exec", "subresources"])
def test_without_a_rule_the_plugin_is_refused_before_changing_anything(cluster, tmp_path, resource, args,
                                                                         expected):
    user = bind(cluster, tmp_path, without(rule_for(resource)))
    out = user.kubectl(*args)
    assert out.returncode == 1
    line = error_line(out)
    assert "forbidden" in line and expected in line, line
    assert all(g.agent_status() == "thawed" for g in cluster.guests.values())
    assert all("fsFreezeStatus" not in cluster.vmi(n)["status"] for n in cluster.guests)


@pytest.mark.cluster
def test_without_exec_auto_falls_back_to_the_subresource_api(cluster, tmp_path):
    user = bind(cluster, tmp_path, without(rule_for("pods/exec")))
    plan = ok(user.kubectl("freeze", "vm", "vm1", "--dry-run", "-o", "json"))
    assert '"method": "api"' in plan.stdout


@pytest.mark.cluster
def test_without_the_vm_rule_a_stopped_vm_is_only_not_found(cluster, tmp_path):
    namespace = cluster.fresh_namespace()
    cluster.sim.add_stopped_vm(namespace, "stopped")
    full = bind(cluster, tmp_path, cluster_role()["rules"])
    assert "exists but has no running instance" in error_line(full.kubectl("freeze", "vm", "stopped", "-n", namespace))
    less = bind(cluster, tmp_path, without(rule_for("virtualmachines")))
    assert "not found" in error_line(less.kubectl("freeze", "vm", "stopped", "-n", namespace))


@pytest.mark.cluster
def test_without_the_events_rule_the_freeze_works_but_leaves_no_event(cluster, tmp_path):
    user = bind(cluster, tmp_path, without(rule_for("events")))
    out = ok(user.kubectl("freeze", "vm", "vm2", "--method", "api"))
    assert "could not record an Event" in out.stderr
    ok(user.kubectl("unfreeze", "vm", "vm2", "--method", "api"))
