"""The test world's audit log (tests/cluster/audit.py): every request the API server received, with
method, URI, verb, user and response code, as kube-apiserver's Metadata-level audit log has them,
so a test can tell what a client sent and whether any of it could change something.

Shown on the real guests through the real kubectl: a freeze and a thaw are there as what they are
(exec into the launcher, the freeze/unfreeze subresource, the Events), a status is reads only, and
requests that were refused (RBAC, a bad token) are logged too, by whoever sent them.
"""

from __future__ import annotations

import pytest
import yaml

from tests.cluster.audit import ANONYMOUS

pytestmark = pytest.mark.cluster

NS = "e2e"


def run(cluster, *args: str) -> None:
    out = cluster.kubectl(*args)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: exit {out.returncode}\n{out.stderr}"


def kinds(events) -> set[tuple[str, str, str]]:
    """(method, resource[/subresource], user) of each request that could change something."""
    return {(e.method, "/".join(filter(None, (e.info.resource, e.info.subresource))), e.user)
            for e in events if e.changes}


def test_a_freeze_and_thaw_are_logged_as_what_they_change_and_a_status_as_reads(cluster):
    audit = cluster.sim.server.audit
    pod = cluster.sim.pod_names(NS, "vm1")[0]

    mark = audit.mark()
    run(cluster, "freeze", "vm", "vm1", "--method", "freezer")
    run(cluster, "unfreeze", "vm", "vm1", "--method", "freezer")
    sent = audit.since(mark)
    assert ("GET", "pods/exec", "admin") in kinds(sent)        # a WebSocket exec is a GET, and it acts
    assert ("POST", "events", "admin") in kinds(sent)
    assert all(e.user == "admin" and e.code is not None for e in sent)
    assert any(e.info.name == pod and e.info.subresource == "exec" for e in sent)

    mark = audit.mark()
    run(cluster, "freeze", "vm", "vm2", "--method", "api")
    run(cluster, "unfreeze", "vm", "vm2", "--method", "api")
    changed = audit.changes_since(mark)
    assert {("PUT", "virtualmachineinstances/freeze", "admin"),
            ("PUT", "virtualmachineinstances/unfreeze", "admin")} <= kinds(changed)
    freeze = next(e for e in changed if e.info.subresource == "freeze")
    assert (freeze.info.verb, freeze.info.group, freeze.info.namespace, freeze.info.name) == (
        "update", "subresources.kubevirt.io", NS, "vm2")
    assert freeze.code // 100 == 2

    mark = audit.mark()
    run(cluster, "freeze", "status", "-A")
    run(cluster, "freeze", "status", "vm1", "--live")      # --live execs into the launcher: it is an exec
    sent = audit.since(mark)
    execs = [e for e in sent if e.info.subresource == "exec"]
    reads = [e for e in sent if e not in execs]
    assert reads and {e.info.verb for e in reads} <= {"get", "list", "watch"}
    assert not any(e.changes for e in reads)
    assert execs and all(e.changes for e in execs)
    for guest in cluster.guests.values():
        assert guest.agent_status() == "thawed"


def test_refused_requests_are_logged_with_who_sent_them(cluster, tmp_path):
    audit = cluster.sim.server.audit
    mark = audit.mark()
    out = cluster.kubectl("freeze", "vm", "vm2", "--method", "api", "--context", "viewer")
    assert out.returncode == 1
    refused = [e for e in audit.since(mark) if e.info.subresource == "freeze"]
    assert [(e.method, e.user, e.code) for e in refused] == [("PUT", "viewer", 403)]
    assert refused[0].changes          # it was sent; that it was refused is what the code says

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["token"] = "not-a-token"
    bad = tmp_path / "bad-token"
    bad.write_text(yaml.safe_dump(config))
    mark = audit.mark()
    out = cluster.kubectl("freeze", "status", "--kubeconfig", str(bad))
    assert out.returncode == 1
    sent = audit.since(mark)
    assert sent and all(e.user == ANONYMOUS and e.code == 401 for e in sent)
    assert cluster.guests["vm2"].agent_status() == "thawed"
