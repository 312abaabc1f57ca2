"""Unit tests of the in-pod freezer: its pure logic, and runs against libvirt's test driver.

The freezer runs as in a pod: ``python3 -c "<source>" ARGS``. libvirt's test driver supports
fsFreeze/fsThaw but not qemuAgentCommand, so there the agent status reads fail ("not supported") and
the freezer goes ahead without them; the real agent is covered by test_freezer_real.py.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from kubectl_freeze import freezer as fz

REPO = Path(__file__).resolve().parents[1]
FREEZER_SOURCE = (REPO / "kubectl_freeze" / "freezer.py").read_text()

NODE_XML = """<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>demo_vm1</name><memory>1024</memory><os><type>hvm</type></os>
  </domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>demo_paused</name><memory>1024</memory><os><type>hvm</type></os>
    <test:runstate>3</test:runstate>
  </domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>demo_off</name><memory>1024</memory><os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>
"""


def wait_for(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# --- pure logic --------------------------------------------------------------------------------


def test_importing_needs_no_libvirt():
    code = (
        "import sys; sys.modules['libvirt'] = None; sys.modules['libvirt_qemu'] = None\n"
        "from kubectl_freeze import freezer\n"
        "assert freezer.libvirt is None\n"
        "print(freezer.EXIT_AGENT_TIMEOUT)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "7"


def test_exit_codes_are_distinct_and_as_documented():
    assert (fz.EXIT_OK, fz.EXIT_FAILED, fz.EXIT_USAGE) == (0, 1, 2)
    assert fz.EXIT_CODES == {
        "failed": 1,
        "usage": 2,
        "libvirt-unreachable": 3,
        "domain-not-found": 4,
        "domain-not-running": 5,
        "agent-not-connected": 6,
        "agent-timeout": 7,
        "refused": 8,
        "no-libvirt-python": 9,
    }
    for code, number in fz.EXIT_CODES.items():
        assert "%2d  %s" % (number, code) in fz.__doc__


def test_error_numbers_match_the_installed_binding():
    libvirt = pytest.importorskip("libvirt")
    names = [name for name in vars(fz.VirErr) if name.isupper()]
    for name in names:
        expected = getattr(fz.VirErr, name)
        assert getattr(libvirt, "VIR_ERR_" + name, expected) == expected, name


def test_parse_defaults_per_action():
    freeze = fz.parse_args(["freeze", "demo_vm1"])
    assert freeze == fz.Options(action="freeze", domain="demo_vm1", mountpoints=[], unfreeze_timeout=300, agent_timeout=60)
    assert fz.parse_args(["thaw", "demo_vm1"]).agent_timeout == 60
    assert fz.parse_args(["status", "demo_vm1"]).agent_timeout == 10


def test_parse_all_options():
    opts = fz.parse_args(
        ["freeze", "ns_vm", "--mountpoint", "/a", "--mountpoint=/b", "--unfreeze-timeout", "0",
         "--agent-timeout", "5", "--uri", "qemu:///system", "--state-dir", "/tmp/x"]
    )
    assert opts.mountpoints == ["/a", "/b"]
    assert (opts.unfreeze_timeout, opts.agent_timeout) == (0, 5)
    assert (opts.uri, opts.state_dir) == ("qemu:///system", "/tmp/x")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required"),
        (["freeze"], "required"),
        (["melt", "ns_vm"], "invalid choice"),
        (["freeze", ""], "must not be empty"),
        (["freeze", "ns_vm", "--unfreeze-timeout", "-1"], "at least 0"),
        (["freeze", "ns_vm", "--unfreeze-timeout", "5m"], "whole number"),
        (["freeze", "ns_vm", "--agent-timeout", "0"], "at least 1"),
        (["thaw", "ns_vm", "--mountpoint", "/a"], "freeze only"),
        (["status", "ns_vm", "--unfreeze-timeout", "3"], "freeze only"),
        (["freeze", "ns_vm", "--bogus"], "unrecognized"),
    ],
)
def test_parse_rejects(argv, fragment):
    with pytest.raises(fz.FreezerError) as err:
        fz.parse_args(argv)
    assert err.value.code == "usage" and err.value.exit_code == 2
    assert fragment in err.value.message


@pytest.mark.parametrize(
    "code, message, expected",
    [
        (86, "Guest agent is not responding: QEMU guest agent is not connected", "agent-not-connected"),
        (86, "Guest agent is not responding: Guest agent not available for now", "agent-timeout"),
        (112, "Guest agent didn't respond to command within 60 seconds", "agent-timeout"),
        (68, "Timed out during operation: cannot acquire state change lock", "agent-timeout"),
        (74, "argument unsupported: QEMU guest agent is not configured", "agent-not-connected"),
        (42, "Domain not found: no domain with matching name 'x'", "domain-not-found"),
        (55, "Requested operation is not valid: domain is not running", "domain-not-running"),
        (55, "Requested operation is not valid: mount point not found: /nope", "refused"),
        (1, "internal error: unable to execute QEMU agent command 'guest-fsfreeze-freeze-list': x", "refused"),
        (113, "Guest agent responded with failure", "refused"),
        (84, "Operation not supported: command guest-fsfreeze-thaw has been disabled", "refused"),
        (38, "End of file while reading data: Input/output error", "libvirt-unreachable"),
        (39, "RPC error", "libvirt-unreachable"),
        (3, "this function is not supported by the connection driver", "failed"),
        (None, "", "failed"),
    ],
)
def test_classify_libvirt_error(code, message, expected):
    assert fz.classify_libvirt_error(code, message) == expected


def test_error_from_libvirt_keeps_the_code_and_says_what_was_being_done():
    class FakeLibvirtError(Exception):
        def get_error_code(self) -> int:
            return 86

        def get_error_message(self) -> str:
            return "Guest agent is not responding: QEMU guest agent is not connected"

    err = fz.FreezerError.from_libvirt(FakeLibvirtError(), "freezing")
    assert err.to_json() == {
        "code": "agent-not-connected",
        "exit_code": 6,
        "message": "freezing: Guest agent is not responding: QEMU guest agent is not connected",
        "libvirt_code": 86,
    }


def test_candidate_uris(monkeypatch):
    monkeypatch.delenv(fz.URIS_ENV, raising=False)
    assert fz.candidate_uris(None) == [
        "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock",
        "qemu:///system",
        "qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock",
    ]
    monkeypatch.setenv(fz.URIS_ENV, " test:///default , qemu:///system,")
    assert fz.candidate_uris(None) == ["test:///default", "qemu:///system"]
    assert fz.candidate_uris("qemu:///session") == ["qemu:///session"]


def test_socket_of():
    assert fz.socket_of("qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock") == (
        "/var/run/libvirt/virtqemud-sock"
    )
    assert fz.socket_of("qemu:///system") is None


def test_state_dir_choice(monkeypatch, tmp_path):
    monkeypatch.setenv(fz.STATE_DIR_ENV, str(tmp_path / "from-env"))
    assert fz.resolve_state_dir(str(tmp_path / "explicit")) == str(tmp_path / "explicit")
    assert fz.resolve_state_dir(None) == str(tmp_path / "from-env")
    assert (tmp_path / "from-env").is_dir()

    monkeypatch.delenv(fz.STATE_DIR_ENV)
    monkeypatch.setattr(fz.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    # Not in a launcher pod: kubevirt-private is absent and must not be created.
    monkeypatch.setattr(fz, "POD_STATE_DIR", str(tmp_path / "kubevirt-private" / "kubectl-freeze"))
    assert fz.resolve_state_dir(None) == str(tmp_path / "tmp" / "kubectl-freeze")
    assert not (tmp_path / "kubevirt-private").exists()
    # In a pod: the parent exists, so the folder is made there.
    (tmp_path / "kubevirt-private").mkdir()
    assert fz.resolve_state_dir(None) == str(tmp_path / "kubevirt-private" / "kubectl-freeze")


def test_unusable_state_dir_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(fz.FreezerError) as err:
        fz.resolve_state_dir(str(blocker / "sub"))
    assert err.value.code == "failed"


def make_state(token: str = "t1", pid: int = 0, pid_start: Optional[int] = None) -> fz.SafetyThaw:
    return fz.SafetyThaw(
        token=token, uri="test:///default", domain="demo_vm1", deadline=time.time() + 60,
        timeout_s=60, agent_timeout_s=60, pid=pid, pid_start=pid_start,
    )


def test_state_store_files_are_per_uri_and_domain(tmp_path):
    a = fz.StateStore(str(tmp_path), "qemu:///system", "demo_vm1")
    assert a.state_path == fz.StateStore(str(tmp_path), "qemu:///system", "demo_vm1").state_path
    assert a.state_path != fz.StateStore(str(tmp_path), "qemu:///session", "demo_vm1").state_path
    assert a.state_path != fz.StateStore(str(tmp_path), "qemu:///system", "demo_vm2").state_path
    assert {Path(p).suffix for p in (a.state_path, a.lock_path, a.log_path)} == {".json", ".lock", ".log"}


def test_state_store_supersession(tmp_path):
    store = fz.StateStore(str(tmp_path), "test:///default", "demo_vm1")
    assert store.read() is None and not store.is_current("t1")
    store.write(make_state("t1"))
    assert store.read().token == "t1"
    assert store.is_current("t1")
    store.write(make_state("t2"))  # a newer freeze
    assert not store.is_current("t1") and store.is_current("t2")
    store.clear()  # a thaw
    assert not store.is_current("t2")
    store.clear()  # clearing twice is fine


def test_state_store_ignores_a_broken_state_file(tmp_path):
    store = fz.StateStore(str(tmp_path), "test:///default", "demo_vm1")
    Path(store.state_path).write_text("{not json")
    assert store.read() is None


def test_state_store_log(tmp_path):
    store = fz.StateStore(str(tmp_path), "test:///default", "demo_vm1")
    assert store.last_log() is None
    records = [
        {"event": "safety-thaw", "n": 1, "ok": True},
        {"event": "safety-thaw", "n": 2, "ok": False, "error": {"message": "domain is not running", "libvirt_code": 55}},
        {"event": "disarmed", "n": 3},
    ]
    Path(store.log_path).write_text("".join(json.dumps(record) + "\n" for record in records))
    # The watchdog logs libvirt's answer; the freezer classifies it when it reads the log.
    assert store.last_log() == {"event": "safety-thaw", "n": 2, "ok": False, "error": {
        "message": "domain is not running", "libvirt_code": 55, "code": "domain-not-running", "exit_code": 5}}
    assert store.last_log("disarmed") == {"event": "disarmed", "n": 3}


def test_process_alive_checks_the_start_time():
    me = os.getpid()
    ticks = fz.process_start_ticks(me)
    assert ticks is not None
    assert fz.process_alive(me, ticks) and fz.process_alive(me, None)
    assert not fz.process_alive(me, ticks + 1)  # a recycled pid
    assert not fz.process_alive(0, None)


def test_process_alive_is_false_for_zombies_and_the_dead():
    child = subprocess.Popen(["true"])
    assert wait_for(lambda: fz.process_start_ticks(child.pid) is None, 5)  # exited, not yet reaped
    child.wait()
    assert not fz.process_alive(child.pid, None)


def test_disarm_stops_the_watchdog_but_never_a_recycled_pid(tmp_path):
    store = fz.StateStore(str(tmp_path), "test:///default", "demo_vm1")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        ticks = fz.process_start_ticks(sleeper.pid)
        store.write(make_state("t1", sleeper.pid, ticks + 1))  # same pid, other process
        assert fz.disarm_safety_thaw(store)["pid_alive"] is False
        assert sleeper.poll() is None and store.read() is None

        store.write(make_state("t2", sleeper.pid, ticks))
        described = fz.disarm_safety_thaw(store)
        assert described["pid"] == sleeper.pid and described["pid_alive"] is True
        assert sleeper.wait(5) == -signal.SIGTERM
        assert store.read() is None
        assert fz.disarm_safety_thaw(store) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_rfc3339():
    assert fz.rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert fz.rfc3339(1700000000.5) == "2023-11-14T22:13:20.500Z"


# --- runs against libvirt's test driver ----------------------------------------------------------


class FreezerRun:
    """Runs the freezer exactly as in a pod, against one libvirt URI, with a private state dir."""

    def __init__(self, uri: str, state_dir: Path, domain: str) -> None:
        self.uri = uri
        self.state_dir = state_dir
        self.domain = domain
        self.env = dict(os.environ, KUBECTL_FREEZE_STATE_DIR=str(state_dir), KUBECTL_FREEZE_LIBVIRT_URIS=uri)

    @classmethod
    def on_test_driver(cls, tmp_path: Path) -> "FreezerRun":
        node = tmp_path / "node.xml"
        node.write_text(NODE_XML)
        return cls("test://%s" % node, tmp_path / "state", "demo_vm1")

    def command(self, *args: str, python: str = sys.executable) -> List[str]:
        return [python, "-c", FREEZER_SOURCE, *args]

    def __call__(self, *args: str, env: Optional[Dict[str, str]] = None, python: str = sys.executable
                 ) -> Tuple[int, Dict[str, Any]]:
        done = subprocess.run(
            self.command(*args, python=python), env=env or self.env, capture_output=True, text=True, timeout=60
        )
        lines = done.stdout.splitlines()
        assert len(lines) == 1, "expected one JSON line on stdout, got %r (stderr %s)" % (done.stdout, done.stderr)
        report = json.loads(lines[0])
        assert report["ok"] is (done.returncode == 0)
        if done.returncode:
            assert report["error"]["exit_code"] == done.returncode
        return done.returncode, report

    @property
    def store(self) -> fz.StateStore:
        return fz.StateStore(str(self.state_dir), self.uri, self.domain)

    def stop_watchdogs(self) -> None:
        """So that no watchdog left behind by a test thaws a guest during a later one."""
        for path in self.state_dir.glob("*.json"):
            state = fz.SafetyThaw(**json.loads(path.read_text()))
            fz.stop_watchdog(state)


@pytest.fixture
def run(tmp_path):
    pytest.importorskip("libvirt")
    runner = FreezerRun.on_test_driver(tmp_path)
    yield runner
    runner.stop_watchdogs()


def test_freeze_then_thaw(run):
    code, report = run("freeze", "demo_vm1")
    assert code == 0
    assert report["action"] == "freeze" and report["domain"] == "demo_vm1"
    assert report["uri"] == run.uri and report["domain_state"] == "running"
    assert report["filesystems"] == 2 and report["already"] is False and report["mountpoints"] == []
    # The test driver has no guest agent: the status reads fail and the freezer says so.
    assert report["status_before"] is None and report["status"] == "unknown"
    assert any("not supported" in w for w in report["warnings"])
    armed = report["safety_thaw"]
    assert armed["timeout_s"] == 300 and armed["pid_alive"] and armed["deadline"].endswith("Z")
    assert run.store.read().pid == armed["pid"]

    code, report = run("thaw", "demo_vm1")
    assert code == 0 and report["action"] == "thaw"
    assert report["cancelled_safety_thaw"]["pid"] == armed["pid"]
    assert run.store.read() is None
    assert wait_for(lambda: not fz.process_alive(armed["pid"], None), 5)


def test_freeze_of_listed_mountpoints(run):
    code, report = run("freeze", "demo_vm1", "--mountpoint", "/", "--unfreeze-timeout", "0")
    assert code == 0 and report["filesystems"] == 1 and report["mountpoints"] == ["/"]
    assert report["safety_thaw"] is None and run.store.read() is None


def test_freeze_refused_for_an_unknown_mountpoint_disarms(run):
    code, report = run("freeze", "demo_vm1", "--mountpoint", "/nope")
    assert code == fz.EXIT_REFUSED and report["error"]["code"] == "refused"
    assert "mount point not found" in report["error"]["message"]
    assert report["safety_thaw"] is None and run.store.read() is None


def test_safety_thaw_fires_on_time_and_is_logged(run):
    code, report = run("freeze", "demo_vm1", "--unfreeze-timeout", "1")
    assert code == 0
    pid = report["safety_thaw"]["pid"]
    assert wait_for(lambda: run.store.last_log() is not None, 4)
    fired = run.store.last_log()
    assert fired["event"] == "safety-thaw" and fired["ok"] is True and fired["pid"] == pid
    assert 0 <= fired["late_ms"] < 2000 and fired["attempt"] == 1
    assert run.store.read() is None
    assert wait_for(lambda: not fz.process_alive(pid, None), 3)

    code, status = run("status", "demo_vm1")  # no agent in the test driver: exit 1, but the thaw shows
    assert code == fz.EXIT_FAILED and status["error"]["libvirt_code"] == 3
    assert status["safety_thaw"] is None and status["last_safety_thaw"] == fired


def test_safety_thaw_survives_a_sigkilled_freezer(run):
    proc = subprocess.Popen(
        run.command("freeze", "demo_vm1", "--unfreeze-timeout", "2"),
        env=run.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    report = json.loads(proc.stdout.readline())
    proc.kill()
    proc.wait()
    assert fz.process_alive(report["safety_thaw"]["pid"], None)
    assert wait_for(lambda: run.store.last_log() is not None, 5)
    assert run.store.last_log()["ok"] is True


def test_newer_freeze_supersedes_the_older_safety_thaw(run):
    _, first = run("freeze", "demo_vm1", "--unfreeze-timeout", "2")
    _, second = run("freeze", "demo_vm1", "--unfreeze-timeout", "30")
    old_pid = first["safety_thaw"]["pid"]
    assert second["replaced_safety_thaw"]["pid"] == old_pid
    assert second["safety_thaw"]["pid"] != old_pid
    assert wait_for(lambda: not fz.process_alive(old_pid, None), 2)
    time.sleep(2.5)  # past the first deadline
    assert run.store.last_log() is None
    code, status = run("status", "demo_vm1")
    assert status["safety_thaw"]["pid"] == second["safety_thaw"]["pid"] and status["safety_thaw"]["pid_alive"]


def test_freeze_with_no_timeout_cancels_the_armed_safety_thaw(run):
    _, first = run("freeze", "demo_vm1", "--unfreeze-timeout", "30")
    code, second = run("freeze", "demo_vm1", "--unfreeze-timeout", "0")
    assert code == 0 and second["safety_thaw"] is None
    assert second["replaced_safety_thaw"]["pid"] == first["safety_thaw"]["pid"]
    assert run.store.read() is None


@pytest.mark.parametrize(
    "domain, code, state",
    [("demo_paused", fz.EXIT_DOMAIN_NOT_RUNNING, "paused"), ("demo_off", fz.EXIT_DOMAIN_NOT_RUNNING, "shut off")],
)
@pytest.mark.parametrize("action", ["freeze", "thaw", "status"])
def test_domain_not_running(run, action, domain, code, state):
    exit_code, report = run(action, domain)
    assert exit_code == code and report["error"]["code"] == "domain-not-running"
    assert report["domain_state"] == state and state in report["error"]["message"]


def test_domain_not_found(run):
    code, report = run("freeze", "demo_nope")
    assert code == fz.EXIT_DOMAIN_NOT_FOUND and report["error"]["libvirt_code"] == 42


def test_uri_discovery_skips_missing_sockets(run, tmp_path):
    missing = "qemu+unix:///session?socket=%s" % (tmp_path / "no-such-sock")
    env = dict(run.env, KUBECTL_FREEZE_LIBVIRT_URIS="%s,%s" % (missing, run.uri))
    code, report = run("freeze", "demo_vm1", "--unfreeze-timeout", "0", env=env)
    assert code == 0 and report["uri"] == run.uri
    assert report["uris_tried"] == [
        {"uri": missing, "result": "skipped", "error": "socket %s does not exist" % (tmp_path / "no-such-sock")},
        {"uri": run.uri, "result": "connected"},
    ]


def test_libvirt_unreachable_lists_every_uri_tried(run, tmp_path):
    missing = "qemu+unix:///system?socket=%s" % (tmp_path / "no-such-sock")
    refused = "qemu+tcp://127.0.0.1:1/system"
    env = dict(run.env, KUBECTL_FREEZE_LIBVIRT_URIS="%s,%s" % (missing, refused))
    code, report = run("freeze", "demo_vm1", env=env)
    assert code == fz.EXIT_LIBVIRT_UNREACHABLE and report["error"]["code"] == "libvirt-unreachable"
    assert [(t["uri"], t["result"]) for t in report["uris_tried"]] == [(missing, "skipped"), (refused, "failed")]
    assert missing in report["error"]["message"] and refused in report["error"]["message"]


def test_forced_uri_wins_over_the_candidates(run):
    code, report = run("thaw", "demo_vm1", "--uri", run.uri, env=dict(run.env, KUBECTL_FREEZE_LIBVIRT_URIS="x:///"))
    assert code == 0 and report["uris_tried"] == [{"uri": run.uri, "result": "connected"}]


def test_usage_errors_print_json_too(run):
    code, report = run()
    assert code == fz.EXIT_USAGE and report["error"]["code"] == "usage" and report["action"] is None
    code, report = run("thaw", "demo_vm1", "--mountpoint", "/")
    assert code == fz.EXIT_USAGE and report["action"] == "thaw"


def test_help_goes_to_stderr(run):
    done = subprocess.run(run.command("--help"), env=run.env, capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["action"] == "help"
    assert "--unfreeze-timeout" in done.stderr


def test_python_without_libvirt(run, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "libvirt.py").write_text("raise ImportError('no libvirt here')\n")
    code, report = run("freeze", "demo_vm1", env=dict(run.env, PYTHONPATH=str(blocked)))
    assert code == fz.EXIT_NO_LIBVIRT_PYTHON and report["error"]["code"] == "no-libvirt-python"


def _python38() -> Optional[str]:
    candidates = glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")) + ["/usr/bin/python3.8"]
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


def test_runs_on_python_3_8(run):
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 on this machine")
    code, report = run("freeze", "demo_vm1", "--unfreeze-timeout", "1", python=python)
    if code == fz.EXIT_NO_LIBVIRT_PYTHON:
        return  # still proves the source parses and runs on 3.8
    assert code == 0 and report["filesystems"] == 2
    assert wait_for(lambda: run.store.last_log() is not None, 4)
    assert run.store.last_log()["ok"] is True
