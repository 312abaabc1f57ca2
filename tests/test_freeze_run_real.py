"""`kubectl freeze run VM... -- COMMAND` through the real kubectl on real guests: the contract
(freeze, COMMAND in the window with its environment, thaw, exit code, report), a consistent raw
disk copy, and the faults that must never leave a guest frozen. Every test ends by reading the
guest's state from libvirt/the guest agent, not from the plugin.

vm1 runs on a python launcher image (the bundled freezer's ``hold``), vm2 on a stock one (the
POSIX sh held session around virt-freezer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import KUBECTL

pytestmark = [pytest.mark.rig, pytest.mark.cluster]

PROBE = textwrap.dedent("""
    import json, os, sys, time
    import libvirt, libvirt_qemu
    libvirt.registerErrorHandler(lambda *a: None, None)
    out, uri = sys.argv[1], sys.argv[2]
    conn = libvirt.open(uri)
    states = {}
    for ref in os.environ["KUBECTL_FREEZE_VMS"].split():
        ns, name = ref.split("/")
        dom = conn.lookupByName(ns + "_" + name)
        reply = libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-fsfreeze-status"}', 5, 0)
        states[ref] = json.loads(reply)["return"]
    env = {k: v for k, v in os.environ.items() if k.startswith("KUBECTL_FREEZE_")}
    with open(out, "w") as f:
        json.dump({"states": states, "env": env, "argv": sys.argv[3:]}, f)
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
""")


def probe_command(tmp_path: Path, uri: str, *extra: str) -> tuple[list[str], Path]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = tmp_path / "probe.json"
    return [sys.executable, str(script), str(out), uri, *extra], out


def freeze_run(cluster, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "freeze", "run", *args], env={**cluster.env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def start_run(cluster, *args: str, env: dict | None = None) -> subprocess.Popen:
    # kubectl execs the plugin in place: this pid IS the plugin once it started
    return subprocess.Popen([KUBECTL, "freeze", "run", *args], env={**cluster.env(), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_run_freezes_all_runs_command_in_the_window_and_thaws(cluster, rig, tmp_path):
    argv, out = probe_command(tmp_path, rig.uri, "a b", "$(id)")
    proc = freeze_run(cluster, "vm1", "vm2", "-o", "json", "--", *argv, env={"PROBE_EXIT": "7"})
    assert proc.returncode == 7, proc.stderr             # COMMAND's own exit code
    seen = json.loads(out.read_text())
    assert seen["states"] == {"e2e/vm1": "frozen", "e2e/vm2": "frozen"}   # both frozen while it ran
    assert seen["argv"] == ["a b", "$(id)"]              # argv as given, no shell
    env = seen["env"]
    assert env["KUBECTL_FREEZE_VMS"] == "e2e/vm1 e2e/vm2"
    assert env["KUBECTL_FREEZE_NAMES"] == "vm1 vm2" and env["KUBECTL_FREEZE_NAMESPACES"] == "e2e e2e"
    pods = env["KUBECTL_FREEZE_PODS"].split()
    assert [p.startswith(f"virt-launcher-{n}-") for n, p in zip(("vm1", "vm2"), pods)] == [True, True]
    assert env["KUBECTL_FREEZE_DEADLINE"].endswith("Z") and json.loads(env["KUBECTL_FREEZE_JSON"])["vms"]
    # thawed the moment COMMAND ended, as the guests themselves say
    assert {g.agent_status() for g in cluster.guests.values()} == {"thawed"}
    report = json.loads(proc.stdout)
    assert report["kind"] == "FreezeRunReport" and report["exitCode"] == 7 and report["command"]["exitCode"] == 7
    by_name = {i["name"]: i for i in report["items"]}
    assert by_name["vm1"]["method"] == "freezer" and by_name["vm2"]["method"] == "virt-freezer"
    for item in report["items"]:
        assert item["result"] == "thawed" and item["held"] is True, item
        assert "agent" in item["freeze"]["confirmedBy"] and "agent" in item["thaw"]["confirmedBy"], item
        assert item["windowTimedBy"] == "in-pod" and 0 < item["windowMs"] < 20000, item
        assert item["thaw"]["releasedBy"] == "request"
    assert not error_lines(proc.stderr)


def test_run_table_output_and_success(cluster):
    proc = freeze_run(cluster, "vm1", "--", "true")
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "RESULT", "WINDOW"]
    assert row.split()[:2] == ["vm1", "thawed"]
    assert cluster.guests["vm1"].agent_status() == "thawed"


def marker_command(tmp_path: Path, seconds: float) -> tuple[list[str], Path]:
    """COMMAND that writes its pid to a marker file, then sleeps (its pid stays the sleeper's)."""
    marker = tmp_path / "command.pid"
    script = f'echo $$ > {marker}; exec sleep {seconds}'
    return ["sh", "-c", script], marker


def gated_command(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """COMMAND that writes a marker, then waits (up to 60 s) for the test to create the gate file."""
    marker, gate = tmp_path / "command.pid", tmp_path / "gate"
    script = f'echo $$ > {marker}; i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done'
    return ["sh", "-c", script], marker, gate


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def frozen_then_running(cluster, tmp_path, name: str, seconds: float = 30, *extra: str):
    argv, marker = marker_command(tmp_path, seconds)
    proc = start_run(cluster, name, *extra, "--", *argv)
    assert wait_until(marker.exists, 60), proc.communicate(timeout=30)
    assert cluster.guests[name].agent_status() == "frozen"
    return proc, int(marker.read_text())


@pytest.mark.parametrize("name", ["vm1", "vm2"])
def test_sigkill_of_the_plugin_during_command_thaws_the_guest_at_once(cluster, tmp_path, name):
    proc, command_pid = frozen_then_running(cluster, tmp_path, name)
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    guest = cluster.guests[name]
    assert wait_until(lambda: guest.agent_status() == "thawed", 10, 0.02), "still frozen after the plugin died"
    thawed_after = time.monotonic() - killed
    proc.communicate(timeout=30)
    assert thawed_after < 5, thawed_after        # the session's loss, not the safety thaw (minutes)
    # COMMAND dies with the plugin: it would copy a thawed disk
    assert wait_until(lambda: not alive(command_pid), 5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_during_command_stops_it_thaws_and_exits_130(cluster, tmp_path, sig):
    proc, command_pid = frozen_then_running(cluster, tmp_path, "vm1")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(error_lines(err)) == 1 and "interrupted" in error_lines(err)[0]
    assert not alive(command_pid)
    assert cluster.guests["vm1"].agent_status() == "thawed"


def test_command_outliving_max_window_is_stopped_thawed_and_exits_124(cluster, tmp_path):
    argv, marker = marker_command(tmp_path, 60)
    started = time.monotonic()
    proc = freeze_run(cluster, "vm2", "--max-window", "3s", "-o", "json", "--", *argv)
    assert proc.returncode == 124, proc.stderr
    assert time.monotonic() - started < 40
    assert not alive(int(marker.read_text()))
    report = json.loads(proc.stdout)
    assert report["command"]["stoppedBy"] == "max-window" and report["items"][0]["result"] == "thawed"
    assert len(error_lines(proc.stderr)) == 1 and "--max-window" in proc.stderr
    assert cluster.guests["vm2"].agent_status() == "thawed"


@pytest.mark.parametrize("command", ["/nonexistent/backup", "no-such-backup-tool", "not-executable"])
def test_command_missing_or_not_executable_is_a_usage_error_before_any_freeze(cluster, tmp_path, command):
    if command == "not-executable":
        path = tmp_path / "backup.sh"
        path.write_text("#!/bin/sh\ntrue\n")
        command = str(path)
    before = cluster.guests["vm1"].last_heartbeat()
    proc = freeze_run(cluster, "vm1", "--", command, "arg")
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and "COMMAND" in proc.stderr and "Traceback" not in proc.stderr
    assert cluster.guests["vm1"].agent_status() == "thawed"
    assert wait_until(lambda: cluster.guests["vm1"].last_heartbeat() > before + 2, 5)


def test_run_without_double_dash_is_a_usage_error(cluster):
    proc = freeze_run(cluster, "vm1", "true")
    assert proc.returncode == 2 and len(error_lines(proc.stderr)) == 1 and "--" in proc.stderr


def test_two_runs_on_one_vm_the_second_is_refused_and_the_first_keeps_its_freeze(cluster, tmp_path):
    argv, marker, gate = gated_command(tmp_path)
    first = start_run(cluster, "vm1", "--", *argv)
    assert wait_until(marker.exists, 60)
    second = freeze_run(cluster, "vm1", "-o", "json", "--", "true")
    assert second.returncode == 125, second.stderr + second.stdout
    assert "frozen already" in second.stderr and "COMMAND was not run" in second.stderr
    assert cluster.guests["vm1"].agent_status() == "frozen"      # the first one's freeze still holds
    gate.touch()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert cluster.guests["vm1"].agent_status() == "thawed"


@pytest.mark.parametrize("name", ["vm1", "vm2"])
def test_exec_stream_cut_mid_window_thaws_at_once_and_reports_the_freeze_did_not_hold(cluster, tmp_path, name):
    proc, _pid = frozen_then_running(cluster, tmp_path, name, 5)
    cut = time.monotonic()
    cluster.sim.server.restart()            # every exec stream is cut, as by a restarting apiserver
    guest = cluster.guests[name]
    assert wait_until(lambda: guest.agent_status() == "thawed", 10, 0.02)
    assert time.monotonic() - cut < 5
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 123, err
    assert len(error_lines(err)) == 1 and "did not hold" in err
    assert guest.agent_status() == "thawed"
