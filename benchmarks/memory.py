"""Memory: the peak RSS of the plugin process (run directly, not through kubectl) during a freeze
and an unfreeze with each method, and of the in-pod freezer, run on the host straight against
the rig's libvirt, as it runs in a pod (`python3 -c <freezer.py> freeze DOMAIN --uri URI`), plus
the resident size of the safety-thaw watchdog it leaves behind for the length of the freeze."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from .common import BIN, FREEZER_SOURCE, BenchError, Measured, measure_process, ms, print_table, rss_tool
from .e2e import METHODS
from .world import World


def _ok(what: str, m: Measured) -> Measured:
    if m.code != 0:
        raise BenchError(f"{what}: exit {m.code}\n{m.stdout}")
    return m


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def vm_rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """A process's resident size now (VmRSS) or its peak (VmHWM), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and of its children it has reaped (the watchdog's agent polls)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def watch_watchdog(pid: int, seconds: float = 6.0) -> tuple[int | None, int | None, int | None, float | None]:
    """(VmRSS, RssAnon, VmHWM, share of one core) of the watchdog over `seconds` of a freeze: it
    sleeps and asks the agent every 2 s, each time in a short-lived child that loads libvirt. RssAnon
    is what it holds of its own; the rest of VmRSS is the interpreter's and libraries' file pages,
    shared with every other process that maps them."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    after = cpu_seconds(pid)
    share = None if before is None or after is None else (after - before) / seconds
    return vm_rss_kib(pid), vm_rss_kib(pid, "RssAnon"), vm_rss_kib(pid, "VmHWM"), share


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def bench_memory(world: World, name: str = "vm1") -> list[list[str]]:
    env = world.env()
    rows: list[list[str]] = []

    def add(label: str, m: Measured) -> None:
        rows.append([label, _mib(m.rss_kib), ms(m.seconds)])

    add("python3 -c pass  (interpreter alone)", _ok("python", measure_process([sys.executable, "-c", "pass"], env)))
    add("python3 -c 'import kubernetes.client'",
        _ok("kubernetes", measure_process([sys.executable, "-c", "import kubernetes.client"], env)))
    add("kubectl-freeze --version", _ok("--version", measure_process([BIN / "kubectl-freeze", "--version"], env)))
    for method in METHODS:
        world.wait_settled()
        add(f"kubectl-freeze vm {name} --method {method}",
            _ok(method, measure_process([BIN / "kubectl-freeze", "vm", name, "--method", method], env)))
        add(f"kubectl-unfreeze vm {name} --method {method}",
            _ok(method, measure_process([BIN / "kubectl-unfreeze", "vm", name, "--method", method], env)))
    add("kubectl-freeze status", _ok("status", measure_process([BIN / "kubectl-freeze", "status"], env)))

    # The freezer as a pod runs it, on the host. KF_SIM_INSTANCE: the simulator's stop() ends
    # any watchdog of it that would still be there.
    guest = world.guests[name]
    world.wait_settled()
    fenv = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    fenv["KF_SIM_INSTANCE"] = world.sim.instance
    base = [sys.executable, "-c", FREEZER_SOURCE.read_text()]
    common = [guest.domain, "--uri", world.rig.uri, "--state-dir", str(world.workdir / "freezer-state")]
    freeze = _ok("freezer freeze", measure_process([*base, "freeze", *common], fenv))
    add(f"freezer freeze {guest.domain}  (python3 -c, on the host)", freeze)
    watchdog = (json.loads(freeze.stdout).get("safety_thaw") or {}).get("pid")
    watchdog_kib, watchdog_anon_kib, watchdog_peak_kib, watchdog_cpu = (
        watch_watchdog(watchdog) if watchdog else (None, None, None, None))
    try:
        add(f"freezer status {guest.domain}", _ok("freezer status", measure_process([*base, "status", *common], fenv)))
        add(f"freezer thaw {guest.domain}", _ok("freezer thaw", measure_process([*base, "thaw", *common], fenv)))
    finally:
        if watchdog and not _gone(watchdog):
            os.kill(watchdog, signal.SIGKILL)     # ours: the thaw should have ended it
            raise BenchError(f"the freezer's watchdog {watchdog} outlived the thaw")
    rows.append(["  its safety-thaw watchdog, while frozen (VmRSS)", _mib(watchdog_kib), "-"])
    rows.append(["  its safety-thaw watchdog, its own (RssAnon)", _mib(watchdog_anon_kib), "-"])
    rows.append(["  its safety-thaw watchdog, peak (VmHWM)", _mib(watchdog_peak_kib), "-"])
    rows.append(["  its safety-thaw watchdog + agent polls, CPU while frozen",
                 "-" if watchdog_cpu is None else f"{watchdog_cpu * 100:.1f}% of a core", "-"])
    print_table(f"Memory: peak RSS of one process ({rss_tool()})", ["process", "max RSS", "wall"], rows,
                "The plugin rows run kubectl-freeze directly (kubectl execs it in place, so through "
                "kubectl the process is the same).")
    return rows
