"""watch.py: confirm fsFreezeStatus through the watch API, surviving 410, drops and forbidden watches."""

from __future__ import annotations

import time

import pytest
from urllib3.exceptions import ProtocolError

from kubectl_freeze.errors import Failed
from kubectl_freeze.kube import KubeError
from kubectl_freeze.watch import describe, wait_for_status
from tests.test_targets_unit import FakeKube, make_vmi


def modified(rv, frozen=False, **kw):
    return {"type": "MODIFIED", "object": make_vmi(rv=str(rv), frozen=frozen, **kw)}


def no_sleep(_seconds):
    return None


def wait(kube, want="frozen", start=None, seconds=5.0):
    return wait_for_status(kube, start or make_vmi(rv="100"), want, time.monotonic() + seconds, sleep=no_sleep)


def test_already_in_the_wanted_state_needs_no_request():
    kube = FakeKube()
    result = wait(kube, "thawed")
    assert result.confirmed and kube.calls == []


def test_watches_from_the_resource_version_already_read():
    kube = FakeKube()
    kube.watch_scripts = [[modified(101), {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "102"}}},
                           modified(103, frozen=True)]]
    result = wait(kube)
    assert result.confirmed and result.vmi["metadata"]["resourceVersion"] == "103"
    assert kube.calls == [("watch", "vm1", "100")]


def test_410_gone_relists_then_watches_from_the_fresh_version():
    kube = FakeKube([make_vmi(rv="200")])
    kube.watch_scripts = [
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}],
        [modified(201, frozen=True)],
    ]
    result = wait(kube)
    assert result.confirmed and result.relists == 1
    assert kube.calls == [("watch", "vm1", "100"), ("list_vmis", "demo", "metadata.name=vm1"),
                          ("watch", "vm1", "999")]


def test_410_as_http_status_relists_too():
    kube = FakeKube([make_vmi(rv="300", frozen=True)])
    kube.watch_scripts = [KubeError(410, "Expired")]
    result = wait(kube)
    assert result.confirmed and result.relists == 1


def test_dropped_watch_resumes_from_the_last_seen_version():
    kube = FakeKube()
    kube.watch_scripts = [[modified(101)], [modified(102), ProtocolError("connection reset")],
                          [modified(103, frozen=True)]]
    result = wait(kube)
    assert result.confirmed and result.rewatches == 2
    assert [c[2] for c in kube.calls] == ["100", "101", "102"]


def test_forbidden_watch_falls_back_to_polling():
    kube = FakeKube([make_vmi(rv="150", frozen=True)])
    kube.watch_scripts = [KubeError(403, "forbidden: watch")]
    result = wait(kube)
    assert result.confirmed and "polling" in result.notes[0]


def test_timeout_reports_what_was_last_seen():
    kube = FakeKube()
    kube.watch_scripts = [[modified(101)]] * 1000
    result = wait(kube, seconds=0.2)
    assert not result.confirmed
    assert "no fsFreezeStatus (thawed)" in result.last_seen() and "resourceVersion 101" in result.last_seen()


def test_unfreeze_waits_for_the_field_to_go():
    kube = FakeKube()
    kube.watch_scripts = [[modified(101, frozen=True), modified(102)]]
    result = wait(kube, "thawed", start=make_vmi(rv="100", frozen=True))
    assert result.confirmed


@pytest.mark.parametrize("event,words", [
    ({"type": "DELETED", "object": make_vmi(rv="101")}, "deleted"),
    (modified(101, phase="Succeeded"), "stopped"),
    (modified(101, uid="new-uid"), "replaced"),
])
def test_vmi_gone_while_waiting_fails(event, words):
    kube = FakeKube()
    kube.watch_scripts = [[event]]
    with pytest.raises(Failed, match=words):
        wait(kube)


def test_describe_shows_field_phase_agent_and_version():
    text = describe(make_vmi(frozen=True, agent=False, rv="7"))
    assert text == "fsFreezeStatus=frozen, phase Running, no AgentConnected condition, resourceVersion 7"
