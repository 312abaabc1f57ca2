"""Issue 9 item 10, the parts about virt-handler and Events, on real guests:
- the AgentConnected condition carries lastProbeTime (its lastTransitionTime is null), and
  `freeze status` reads the agent's "since" from it;
- virt-handler keeps the unfreeze timeout as int32(d.Seconds()): the api method sends whole
  seconds, and more than 2^31-1 s is a usage error before anything is sent (KubeVirt would overflow
  it into a timer that thaws at once);
- `freeze status` does not depend on Events (kube-apiserver drops them after an hour): it lists
  only kubectl-freeze's Events on VMIs with a field selector, and with none left still shows the
  VMI's fsFreezeStatus.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from kubectl_freeze.errors import EXIT_USAGE
from tests.test_e2e_plugin import NS, as_json, error_line, item, ok, row, table
from tests.test_simulator import _subresource, wait_for

pytestmark = pytest.mark.cluster


def requests_since(cluster, mark: int) -> list[tuple[str, str, int]]:
    return list(cluster.sim.server.requests)[mark:]


def test_agent_connected_carries_last_probe_time_and_status_shows_it(cluster):
    [cond] = [c for c in cluster.vmi("vm1")["status"]["conditions"] if c["type"] == "AgentConnected"]
    assert cond["lastTransitionTime"] is None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                                                               cond["lastProbeTime"])
    status = item(as_json(ok(cluster.kubectl("freeze", "status", "vm1", "-o", "json"))), "vm1")
    assert status["agent"] == "connected" and status["agentSince"] == cond["lastProbeTime"]
    detail = ok(cluster.kubectl("freeze", "status", "vm1")).stdout
    assert re.search(rf"^Guest agent:\s+connected since {cond['lastProbeTime']}$", detail, re.M), detail


def test_virt_handlers_int32_overflow_thaws_at_once(cluster):
    # 600000h = 2.16e9 s > 2^31-1: virt-handler's int32() overflows, the launcher's timer fires at once
    guest = cluster.guests["vm1"]
    assert _subresource(cluster, "freeze", {"unfreezeTimeout": "600000h"}) == 200
    wait_for(lambda: guest.agent_status() == "thawed", 3, "the overflowed safety timer to thaw")


def test_an_unfreeze_timeout_beyond_int32_seconds_is_refused_before_anything_is_sent(cluster):
    mark = len(cluster.sim.server.requests)
    out = cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--unfreeze-timeout", "600000h")
    assert out.returncode == EXIT_USAGE, out.stderr
    line = error_line(out)
    assert line.startswith("error: --unfreeze-timeout 600000h is longer than KubeVirt can hold (2147483647 s"), line
    assert requests_since(cluster, mark) == []
    assert cluster.guests["vm1"].agent_status() == "thawed"


def test_the_api_method_sends_whole_seconds(cluster):
    out = ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "api", "--unfreeze-timeout", "1m30.5s",
                             "--dry-run", "-o", "json"))
    assert item(as_json(out), "vm1")["plan"]["request"]["body"] == {"unfreezeTimeout": "1m31s"}
    frozen = item(as_json(ok(cluster.kubectl("freeze", "vm", "vm1", "--method", "api",
                                             "--unfreeze-timeout", "1m30.5s", "-o", "json"))), "vm1")
    assert frozen["safetyThaw"]["after"] == "1m31s"


def test_status_lists_only_its_events_by_field_selector_and_needs_none(cluster):
    ok(cluster.kubectl("freeze", "vm", "vm1"))
    mark = len(cluster.sim.server.requests)
    shown = ok(cluster.kubectl("freeze", "status", "vm1")).stdout
    assert re.search(r"^Freeze \(VMI status\):\s+frozen since ", shown, re.M), shown
    [events_call] = [path for method, path, _ in requests_since(cluster, mark) if method == "GET"
                     and urlparse(path).path == f"/api/v1/namespaces/{NS}/events"]
    selector = parse_qs(urlparse(events_call).query)["fieldSelector"][0]
    assert set(selector.split(",")) == {"involvedObject.kind=VirtualMachineInstance", "source=kubectl-freeze",
                                        "involvedObject.name=vm1"}

    # kube-apiserver dropped every Event (--event-ttl 1h): the VMI status still tells
    ok(cluster.kubectl("delete", "events", "--all", "-n", NS))
    data = as_json(ok(cluster.kubectl("freeze", "status", "-o", "json")))
    assert item(data, "vm1")["freeze"] == "frozen" and item(data, "vm1")["since"] is None
    assert item(data, "vm1")["lastAction"] is None and item(data, "vm2")["freeze"] == "thawed"
    listed = table(ok(cluster.kubectl("freeze", "status")).stdout)
    assert row(listed, "vm1")["FREEZE"] == "frozen" and row(listed, "vm1")["SINCE"] == "-"
    detail = ok(cluster.kubectl("freeze", "status", "vm1")).stdout
    assert re.search(r"^Freeze \(VMI status\):\s+frozen$", detail, re.M), detail
