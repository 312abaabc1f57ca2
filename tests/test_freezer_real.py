"""The in-pod freezer against real guests: a real libvirtd, real QEMU, a real qemu-guest-agent.

The guest's heartbeat loops (one per data disk, a line every 0.2 s, printed only after the write
returned) prove from inside the guest when writes really stopped and resumed. The ``guest`` fixture
leaves the shared guest running, with its agent, and thawed, whatever a test did.
"""

import datetime
import json
import socket
import subprocess
import time

import pytest

from kubectl_freeze import freezer as fz
from tests.test_freezer_unit import FreezerRun, wait_for

pytestmark = pytest.mark.rig


@pytest.fixture
def run(rig, guest, tmp_path):
    runner = FreezerRun(rig.uri, tmp_path / "state", guest.domain)
    yield runner
    runner.stop_watchdogs()


def epoch(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def assert_heartbeat_stopped(guest, disk: int, seconds: float = 1.5) -> None:
    before = guest.last_heartbeat(disk)
    time.sleep(seconds)
    assert guest.last_heartbeat(disk) == before, "disk %d kept writing while frozen" % disk


def assert_heartbeat_moves(guest, disk: int, timeout: float = 3.0) -> None:
    before = guest.last_heartbeat(disk)
    assert wait_for(lambda: guest.last_heartbeat(disk) > before + 2, timeout), "disk %d does not write" % disk


def test_freeze_stops_the_writes_and_thaw_resumes_them(run, guest, tmp_path):
    # Discovery as in a pod: the non-root launcher's socket is absent here, so the next URI answers.
    absent = "qemu+unix:///session?socket=%s" % (tmp_path / "virtqemud-sock")
    env = dict(run.env, KUBECTL_FREEZE_LIBVIRT_URIS="%s,%s" % (absent, run.uri))
    code, report = run("freeze", guest.domain, "--unfreeze-timeout", "60", env=env)
    assert code == 0, report
    assert [t["result"] for t in report["uris_tried"]] == ["skipped", "connected"] and report["uri"] == run.uri
    assert report["status_before"] == "thawed" and report["already"] is False
    assert report["filesystems"] == 2 and report["status"] == "frozen"
    assert guest.agent_status() == "frozen"
    assert_heartbeat_stopped(guest, 1)
    assert_heartbeat_stopped(guest, 2, seconds=0.5)  # no --mountpoint: both disks are frozen

    code, report2 = run("thaw", guest.domain)
    assert code == 0, report2
    assert report2["status_before"] == "frozen" and report2["filesystems"] == 2 and report2["status"] == "thawed"
    assert report2["cancelled_safety_thaw"]["pid"] == report["safety_thaw"]["pid"]
    assert guest.agent_status() == "thawed"
    assert_heartbeat_moves(guest, 1)
    assert_heartbeat_moves(guest, 2)
    assert wait_for(lambda: not fz.process_alive(report["safety_thaw"]["pid"], None), 3)


def test_freeze_and_thaw_are_idempotent(run, guest):
    _, first = run("freeze", guest.domain, "--unfreeze-timeout", "60")
    code, second = run("freeze", guest.domain, "--unfreeze-timeout", "120")
    assert code == 0 and second["already"] is True and second["filesystems"] is None
    assert second["status"] == "frozen"
    # Unlike virt-launcher, the second freeze re-arms the safety thaw with its own timeout.
    assert second["replaced_safety_thaw"]["pid"] == first["safety_thaw"]["pid"]
    assert epoch(second["safety_thaw"]["deadline"]) > epoch(first["safety_thaw"]["deadline"]) + 50

    code, thawed = run("thaw", guest.domain)
    assert code == 0 and thawed["already"] is False
    code, again = run("thaw", guest.domain)
    assert code == 0 and again["already"] is True and again["filesystems"] is None
    assert again["status"] == "thawed" and again["cancelled_safety_thaw"] is None


def test_mountpoint_freezes_only_that_filesystem(run, guest):
    code, report = run("freeze", guest.domain, "--mountpoint", "/mnt/data1", "--unfreeze-timeout", "60")
    assert code == 0 and report["filesystems"] == 1 and report["mountpoints"] == ["/mnt/data1"]
    assert guest.agent_status() == "frozen"
    assert_heartbeat_moves(guest, 2)
    assert_heartbeat_stopped(guest, 1)
    code, _ = run("thaw", guest.domain)
    assert code == 0
    assert_heartbeat_moves(guest, 1)


def test_unknown_mountpoint_is_refused(run, guest):
    code, report = run("freeze", guest.domain, "--mountpoint", "/mnt/nope")
    assert code == fz.EXIT_REFUSED and report["error"]["code"] == "refused"
    assert report["safety_thaw"] is None and run.store.read() is None
    assert guest.agent_status() == "thawed"


def test_a_misspelt_mountpoint_beside_a_real_one_is_refused_and_nothing_stays_frozen(run, guest):
    code, report = run("freeze", guest.domain, "--mountpoint", "/mnt/data1", "--mountpoint", "/mnt/dta2")
    assert code == fz.EXIT_REFUSED and "froze 1 of the 2 requested" in report["error"]["message"]
    assert report["safety_thaw"] is None and run.store.read() is None
    assert guest.agent_status() == "thawed"
    assert_heartbeat_moves(guest, 1)


def test_a_partial_freeze_does_not_pass_for_a_full_one(run, guest):
    code, _ = run("freeze", guest.domain, "--mountpoint", "/mnt/data1", "--unfreeze-timeout", "60")
    assert code == 0
    # The agent says "frozen" whichever filesystems are: a plain freeze must not call it done.
    code, report = run("freeze", guest.domain, "--unfreeze-timeout", "60")
    assert code == fz.EXIT_REFUSED and "only for ['/mnt/data1']" in report["error"]["message"]
    assert_heartbeat_moves(guest, 2)
    # The earlier freeze and its safety thaw are left as they were; asking for less is fine.
    assert run.store.read() is not None and run.store.read().mountpoints == ["/mnt/data1"]
    code, report = run("freeze", guest.domain, "--mountpoint", "/mnt/data1", "--unfreeze-timeout", "60")
    assert code == 0 and report["already"] is True
    assert run("thaw", guest.domain)[0] == 0


def test_safety_thaw_fires_on_time_after_the_freezer_was_sigkilled(run, guest):
    proc = subprocess.Popen(
        run.command("freeze", guest.domain, "--unfreeze-timeout", "3"),
        env=run.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    report = json.loads(proc.stdout.readline())
    proc.kill()
    proc.wait()
    assert report["ok"] and report["status"] == "frozen", report
    deadline = epoch(report["safety_thaw"]["deadline"])

    while time.time() < deadline - 0.3:
        assert guest.agent_status() == "frozen", "thawed before the deadline"
        time.sleep(0.2)
    assert wait_for(lambda: guest.agent_status() == "thawed", deadline + 2 - time.time(), step=0.1)
    assert time.time() <= deadline + 2.2
    assert wait_for(lambda: run.store.last_log() is not None, 2)  # logged once the thaw returned
    fired = run.store.last_log()
    assert fired["ok"] is True and fired["filesystems"] == 2 and 0 <= fired["late_ms"] < 2000
    assert_heartbeat_moves(guest, 1)

    code, status = run("status", guest.domain)
    assert code == 0 and status["status"] == "thawed"
    assert status["safety_thaw"] is None and status["last_safety_thaw"] == fired


def test_newer_freeze_supersedes_the_older_safety_thaw(run, guest):
    started = time.time()
    _, first = run("freeze", guest.domain, "--unfreeze-timeout", "3")
    code, second = run("freeze", guest.domain, "--unfreeze-timeout", "30")
    assert code == 0 and second["already"] is True
    assert second["replaced_safety_thaw"]["pid"] == first["safety_thaw"]["pid"]
    time.sleep(max(0.0, started + 5 - time.time()))
    assert guest.agent_status() == "frozen"
    assert run.store.last_log() is None
    assert not fz.process_alive(first["safety_thaw"]["pid"], None)

    code, status = run("status", guest.domain)
    assert code == 0 and status["status"] == "frozen"
    assert status["safety_thaw"]["pid"] == second["safety_thaw"]["pid"] and status["safety_thaw"]["pid_alive"]
    # The second freeze's deadline (however long the runs took on a busy machine), not the first's.
    assert status["safety_thaw"]["deadline"] == second["safety_thaw"]["deadline"]
    assert 20 < status["safety_thaw"]["remaining_s"] <= 27


# --- each error exit code from its real cause ----------------------------------------------------


@pytest.mark.parametrize("action", ["freeze", "thaw", "status"])
def test_guest_without_agent_channel(rig, agentless_guest, tmp_path, action):
    run = FreezerRun(rig.uri, tmp_path / "state", agentless_guest.domain)
    code, report = run(action, agentless_guest.domain)
    assert code == fz.EXIT_AGENT_NOT_CONNECTED and report["error"]["libvirt_code"] == 74
    assert "not configured" in report["error"]["message"]
    assert run.store.read() is None


def test_unknown_domain(run):
    code, report = run("freeze", "rig_nosuchvm")
    assert code == fz.EXIT_DOMAIN_NOT_FOUND and report["error"]["code"] == "domain-not-found"


def test_wrong_socket(run, guest, tmp_path):
    missing = "qemu+unix:///system?socket=%s" % (tmp_path / "missing-sock")
    dead = tmp_path / "dead-sock"  # exists, but nothing listens on it
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(dead))
    dead_uri = "qemu+unix:///system?socket=%s" % dead
    for uri, result in ((missing, "skipped"), (dead_uri, "failed")):
        code, report = run("freeze", guest.domain, "--uri", uri)
        assert code == fz.EXIT_LIBVIRT_UNREACHABLE, report
        assert report["uris_tried"][0]["uri"] == uri and report["uris_tried"][0]["result"] == result
    assert "Connection refused" in report["uris_tried"][0]["error"]
    assert guest.agent_status() == "thawed"


@pytest.mark.parametrize("action", ["freeze", "thaw", "status"])
def test_stopped_agent_times_out(run, guest, action):
    guest.agent("stop")
    started = time.monotonic()
    code, report = run(action, guest.domain, "--agent-timeout", "3")
    assert code == fz.EXIT_AGENT_TIMEOUT, report
    assert "not available for now" in report["error"]["message"]
    assert time.monotonic() - started < 15
    assert run.store.read() is None  # a freeze that could not even ask the status arms nothing


def test_killed_agent_is_not_connected(run, guest):
    guest.agent("kill")
    assert wait_for(lambda: run("status", guest.domain)[0] == fz.EXIT_AGENT_NOT_CONNECTED, 5, step=0.3)
    code, report = run("freeze", guest.domain)
    assert code == fz.EXIT_AGENT_NOT_CONNECTED and "not connected" in report["error"]["message"]


@pytest.mark.parametrize("action", ["freeze", "thaw", "status"])
def test_paused_domain(run, guest, action):
    guest.dom().suspend()
    code, report = run(action, guest.domain)
    assert code == fz.EXIT_DOMAIN_NOT_RUNNING and report["domain_state"] == "paused"
    assert "paused" in report["error"]["message"]


def test_failed_safety_thaw_retries_until_the_guest_can_answer(run, guest):
    """A guest paused at the deadline is thawed once it runs again (the watchdog retries every 5 s)."""
    code, report = run("freeze", guest.domain, "--unfreeze-timeout", "2")
    assert code == 0
    guest.dom().suspend()
    deadline = epoch(report["safety_thaw"]["deadline"])
    assert wait_for(lambda: run.store.last_log() is not None, deadline + 3 - time.time())
    first = run.store.last_log()
    assert first["ok"] is False and first["error"]["code"] == "domain-not-running"
    assert run.store.read() is not None  # still armed
    guest.dom().resume()
    assert wait_for(lambda: guest.agent_status() == "thawed", 8, step=0.2)
    assert wait_for(lambda: (run.store.last_log() or {}).get("ok") is True, 2)
    assert run.store.last_log()["attempt"] >= 2
    assert run.store.read() is None


def test_state_files_live_in_the_state_dir(run, guest):
    run("freeze", guest.domain, "--unfreeze-timeout", "60")
    assert {".json", ".lock"} <= {path.suffix for path in run.state_dir.iterdir()}
    run("thaw", guest.domain)
    assert not list(run.state_dir.glob("*.json"))
