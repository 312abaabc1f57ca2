"""`kubectl freeze run` under faults, on real guests through the real kubectl: exec forbidden (the api
path), the subresource forbidden, the guest agent stopped while the freeze is in flight, the guest
paused during the window, SIGKILL of the plugin before the freeze, during the freeze and during the
thaw. Each test ends by reading the guest's state from the guest agent through libvirt."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.test_freeze_run_real import (error_lines, freeze_run, gated_command, probe_command, start_run,
                                        wait_until)

pytestmark = [pytest.mark.rig, pytest.mark.cluster]


def test_exec_forbidden_takes_the_api_path_with_max_window_as_kubevirts_timer(cluster, rig, tmp_path):
    argv, out = probe_command(tmp_path, rig.uri)
    proc = freeze_run(cluster, "vm1", "--context", "no-exec", "--max-window", "40s", "-o", "json", "--", *argv)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["states"] == {"e2e/vm1": "frozen"}
    assert "cannot thaw if the client is lost" in proc.stderr
    item = json.loads(proc.stdout)["items"][0]
    assert item["method"] == "api" and item["result"] == "thawed" and "vmi-status" in item["thaw"]["confirmedBy"]
    assert cluster.guests["vm1"].agent_status() == "thawed"


def test_exec_and_subresource_forbidden_fails_125_and_changes_nothing(cluster):
    proc = freeze_run(cluster, "vm1", "--context", "no-freeze-api", "--method", "api", "--", "true")
    assert proc.returncode == 125, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and "forbidden" in proc.stderr and "COMMAND was not run" in proc.stderr
    assert cluster.guests["vm1"].agent_status() == "thawed"


@pytest.mark.parametrize("name", ["vm1", "vm2"])
def test_agent_stopped_while_the_freeze_is_in_flight_then_sigkill_the_guest_ends_thawed(cluster, tmp_path, name):
    guest = cluster.guests[name]
    argv, marker, _gate = gated_command(tmp_path)
    guest.agent("stop")                     # the freeze call blocks in the agent
    proc = start_run(cluster, name, "--", *argv)
    try:
        time.sleep(6)                       # resolve, probe (answered before the agent stops matters not)
        proc.send_signal(signal.SIGKILL)    # the plugin dies with the freeze in flight
        proc.communicate(timeout=30)
    finally:
        guest.agent("cont")                 # the pending freeze now completes in the guest ...
    # ... and the held session, whose client is gone, thaws it at once (or never froze it)
    assert wait_until(lambda: guest.agent_status() == "thawed", 30, 0.1), "left frozen"
    time.sleep(2)
    assert guest.agent_status() == "thawed" and not marker.exists()


def test_agent_stopped_past_the_timeout_fails_125_and_the_guest_ends_thawed(cluster, tmp_path):
    guest = cluster.guests["vm1"]
    guest.agent("stop")
    try:
        proc = freeze_run(cluster, "vm1", "--timeout", "8s", "--", "true")
    finally:
        guest.agent("cont")
    assert proc.returncode == 125, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and "COMMAND was not run" in proc.stderr
    assert wait_until(lambda: guest.agent_status() == "thawed", 30, 0.1)


def test_guest_paused_and_resumed_during_the_window_still_thaws(cluster, tmp_path):
    argv, marker, gate = gated_command(tmp_path)
    proc = start_run(cluster, "vm1", "--", *argv)
    assert wait_until(marker.exists, 60)
    cluster.sim.set_paused("e2e", "vm1", True)
    time.sleep(1)
    cluster.sim.set_paused("e2e", "vm1", False)
    gate.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert cluster.guests["vm1"].agent_status() == "thawed"


def test_guest_paused_when_command_ends_the_thaw_fails_122_at_once_and_the_safety_thaw_stays(cluster, tmp_path):
    argv, marker, gate = gated_command(tmp_path)
    proc = start_run(cluster, "vm1", "--max-window", "30s", "--unfreeze-timeout", "40s", "--", *argv)
    assert wait_until(marker.exists, 60)
    cluster.sim.set_paused("e2e", "vm1", True)
    try:
        gate.touch()
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - started < 20        # says so at once, no waiting
    finally:
        cluster.sim.set_paused("e2e", "vm1", False)
    assert proc.returncode == 122, err
    assert len(error_lines(err)) == 1 and "could not confirm the thaw" in err and "kubectl unfreeze vm vm1" in err
    # it is frozen (the plugin says so), within its safety thaw, which then thaws it
    guest = cluster.guests["vm1"]
    assert guest.agent_status() == "frozen"
    assert wait_until(lambda: guest.agent_status() == "thawed", 60, 0.5), "the safety thaw did not fire"


def test_sigkill_before_the_freeze_leaves_the_guest_thawed(cluster, tmp_path):
    argv, marker, _gate = gated_command(tmp_path)
    proc = start_run(cluster, "vm1", "--", *argv)
    time.sleep(0.5)                          # still starting / resolving: nothing frozen yet
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(3)
    assert cluster.guests["vm1"].agent_status() == "thawed" and not marker.exists()


@pytest.mark.parametrize("name", ["vm1", "vm2"])
def test_sigkill_during_the_thaw_still_ends_thawed(cluster, tmp_path, name):
    guest = cluster.guests[name]
    argv, marker, gate = gated_command(tmp_path)
    proc = start_run(cluster, name, "--", *argv)
    assert wait_until(marker.exists, 60)
    guest.agent("stop")                      # the thaw will block in the agent
    try:
        gate.touch()
        time.sleep(2)                        # COMMAND ended; the thaw is in flight
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        guest.agent("cont")
    assert wait_until(lambda: guest.agent_status() == "thawed", 30, 0.1), "left frozen"


def test_watch_ending_with_410_during_the_window_changes_nothing(cluster, tmp_path):
    argv, marker, gate = gated_command(tmp_path)
    proc = start_run(cluster, "vm1", "-o", "json", "--", *argv)
    assert wait_until(marker.exists, 60)
    time.sleep(1)                                 # the VMI status watch is open
    cluster.sim.store.mutate("virtualmachineinstances", "e2e", "vm2",
                             lambda o: o["metadata"].setdefault("annotations", {}).update(x="1"))
    cluster.sim.store.compact()
    cluster.sim.server.drop_watches()             # the watch re-lists after 410 Gone
    gate.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["items"][0]["result"] == "thawed" and "Traceback" not in err
    assert cluster.guests["vm1"].agent_status() == "thawed"


@pytest.mark.parametrize("path", ["stock image (sh hold)", "api (exec forbidden)"])
def test_windows_guest_with_a_window_longer_than_vss_holds_exits_123(cluster, tmp_path, path):
    name, extra = ("vm2", []) if path.startswith("stock") else ("vm1", ["--context", "no-exec"])
    launcher = cluster.sim.vmis[("e2e", name)].launcher
    launcher.windows = True                       # the launcher stand-in emulates VSS's ~10 s
    try:
        marker = tmp_path / "m"
        proc = freeze_run(cluster, name, *extra, "-o", "json", "--", "sh", "-c", f"touch {marker}; sleep 12",
                          timeout=120)
    finally:
        launcher.windows = False
    assert marker.exists()
    assert proc.returncode == 123, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and "did not hold" in proc.stderr
    item = json.loads(proc.stdout)["items"][0]
    assert item["held"] is False and item["result"] == "not-held"
    assert cluster.guests[name].agent_status() == "thawed"


def test_vmi_deleted_during_the_window_the_held_session_still_thaws(cluster, tmp_path):
    argv, marker, gate = gated_command(tmp_path)
    proc = start_run(cluster, "vm1", "--", *argv)
    assert wait_until(marker.exists, 60)
    guest = cluster.guests["vm1"]
    cluster.sim.remove_vmi("e2e", "vm1")          # objects and pod gone; the simulator's guest runs on
    try:
        gate.touch()
        out, err = proc.communicate(timeout=60)
        assert guest.agent_status() == "thawed"
        assert proc.returncode == 0, err
        assert "deleted" in err                   # the VMI status watch says so, as a warning
    finally:
        cluster.sim.add_vmi("e2e", "vm1", guest, image="python", labels={"tier": "db"})
        assert wait_until(lambda: cluster.vmi("vm1")["status"].get("conditions"), 60, 0.2)


def test_sigkill_on_the_api_path_is_thawed_by_kubevirts_timer_at_max_window(cluster, tmp_path):
    argv, marker, _gate = gated_command(tmp_path)
    proc = start_run(cluster, "vm1", "--context", "no-exec", "--max-window", "6s", "--", *argv)
    assert wait_until(marker.exists, 60)
    guest = cluster.guests["vm1"]
    assert guest.agent_status() == "frozen"
    proc.send_signal(signal.SIGKILL)          # this path cannot thaw on client loss ...
    proc.communicate(timeout=30)
    time.sleep(1)
    assert guest.agent_status() == "frozen"
    # ... KubeVirt's timer, armed with unfreezeTimeout = --max-window, does
    assert wait_until(lambda: guest.agent_status() == "thawed", 15, 0.1)
