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
