"""`kubectl freeze run vm -- cp <disk> <copy>` gives a consistent raw copy of a real guest's ext4 disk:
clean (no journal recovery needed, e2fsck passes) and holding every heartbeat line the guest wrote
before the freeze; the same copy taken without the freeze needs journal recovery."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KUBECTL

pytestmark = [pytest.mark.rig, pytest.mark.cluster]


def features(image: Path) -> str:
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    return re.search(r"^Filesystem features:\s*(.*)$", out, re.M).group(1)


def heartbeat_counters(image: Path) -> list[int]:
    out = subprocess.run(["debugfs", "-R", "cat /heartbeat", str(image)], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if re.match(r"^\d+ [\d.]+$", line)]


@pytest.mark.parametrize("name", ["vm1", "vm2"])
def test_disk_copy_under_freeze_run_is_clean_and_holds_every_heartbeat_before_the_freeze(cluster, tmp_path, name):
    guest = cluster.guests[name]
    disk, copy, last = guest.disk_path(1), tmp_path / "frozen-copy.img", tmp_path / "last-heartbeat"
    # COMMAND notes the last heartbeat the guest finished writing (echoed after the write returned),
    # then copies the raw disk while the guest is frozen.
    script = f"grep '^KF-HB 1 ' {guest.console_log} | tail -n 1 > {last}; cp --sparse=always {disk} {copy}"
    proc = subprocess.run([KUBECTL, "freeze", "run", name, "--", "sh", "-c", script], env=cluster.env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert guest.agent_status() == "thawed"
    assert "needs_recovery" not in features(copy)
    fsck = subprocess.run(["e2fsck", "-fn", str(copy)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    written_before = int(last.read_text().split()[2])
    counters = heartbeat_counters(copy)
    assert set(range(1, written_before + 1)) <= set(counters), (written_before, counters[-5:])


def test_disk_copy_without_the_freeze_needs_journal_recovery(cluster, tmp_path):
    guest = cluster.guests["vm1"]
    copy = tmp_path / "live-copy.img"
    subprocess.run(["cp", "--sparse=always", str(guest.disk_path(1)), str(copy)], check=True)
    assert "needs_recovery" in features(copy)
