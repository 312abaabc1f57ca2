"""`python -m tests.cluster up` (issue 11): besides `libvirt:` and `console:` it prints `disk: <domain>
<path>` for every guest data disk, so anyone can take a raw copy of a guest's disk while it is frozen.

Proof on a real guest: each printed path is the source of one of the domain's disks as libvirt has
it, and a copy taken while `kubectl freeze vm` holds the guest frozen is a clean ext4 (no journal
recovery needed, e2fsck finds nothing) that holds every heartbeat line the guest reported before.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import KUBECTL

pytestmark = pytest.mark.cluster

HEARTBEAT = re.compile(r"^KF-HB 1 (\d+) ", re.M)     # disk 1's lines on the serial console


def read_until_ready(proc: subprocess.Popen, timeout: float = 240) -> list[str]:
    # A thread reads, not select() on proc.stdout: select sees the pipe, not the lines a readline()
    # already pulled into Python's buffer, so "ready" arriving in one chunk with "api:" went unseen.
    lines: list[str] = []
    came_up = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                came_up.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not came_up.wait(timeout):
        raise AssertionError("the simulator did not come up; it printed:\n" + "\n".join(lines))
    return lines


def printed(lines: list[str], key: str) -> list[list[str]]:
    return [line.split(" ", 2)[1:] for line in lines if line.startswith(f"{key}: ")]


def domain_disk_sources(uri: str, domain: str) -> list[str]:
    import libvirt

    conn = libvirt.open(uri)
    try:
        root = ET.fromstring(conn.lookupByName(domain).XMLDesc(0))
    finally:
        conn.close()
    return [d.find("source").get("file") for d in root.findall("./devices/disk[@device='disk']")]


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: exit {out.returncode}\n{out.stderr}"
    return out


def test_up_prints_each_data_disk_and_a_copy_taken_while_frozen_is_clean(tmp_path):
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen([sys.executable, "-m", "tests.cluster", "up", "--vms", "1", "--kubeconfig",
                             str(kubeconfig), "--poll-interval", "0.5"],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = read_until_ready(proc)
        [[uri]] = printed(lines, "libvirt")
        [[domain, console]] = printed(lines, "console")
        disks = printed(lines, "disk")
        assert [d for d, _ in disks] == ["demo_vm1", "demo_vm1"], lines     # the rig's two data disks
        paths = [p for _, p in disks]
        assert paths == domain_disk_sources(uri, domain)
        assert all(Path(p).is_file() for p in paths)

        env = {**os.environ, "KUBECONFIG": str(kubeconfig),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("NO_COLOR", None)
        copy = tmp_path / "copy.img"
        kubectl(env, "freeze", "vm", "vm1")
        try:
            time.sleep(0.3)       # a line the guest wrote just before the freeze may still be on its way
            seen = [int(n) for n in HEARTBEAT.findall(Path(console).read_text(errors="replace"))]
            shutil.copyfile(paths[0], copy)
        finally:
            kubectl(env, "unfreeze", "vm", "vm1")
        assert seen, "the guest reported no heartbeat before the freeze"

        header = subprocess.run(["dumpe2fs", "-h", str(copy)], capture_output=True, text=True, check=True).stdout
        features = re.search(r"^Filesystem features:(.*)$", header, re.M).group(1).split()
        assert "needs_recovery" not in features, header
        subprocess.run(["e2fsck", "-fn", str(copy)], capture_output=True, text=True, check=True)
        beats = subprocess.run(["debugfs", "-R", "cat /heartbeat", str(copy)], capture_output=True, text=True,
                               check=True).stdout.split("\n")
        counters = [int(line.split()[0]) for line in beats if line.strip()]
        assert counters == list(range(1, len(counters) + 1)), "the copy's heartbeat file has a hole"
        assert counters[-1] >= max(seen), f"the copy lacks lines the guest wrote before the freeze: {max(seen)}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    assert proc.returncode == 0 and "stopped" in rest.splitlines(), rest
