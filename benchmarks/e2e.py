"""End to end on real guests through the real kubectl: `kubectl freeze vm` / `kubectl unfreeze vm`
per method, split into "the guest agent says so" and "the command returned" (VMI status
confirmed), at KubeVirt's default agent poll interval (5 s) and at 0.5 s; the guest's own view
of the frozen window (the gap in its heartbeat file); a group of two with --parallel 1 and 2.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from .common import BenchError, print_table, spread, summarize
from .world import World

METHODS = ("freezer", "virt-freezer", "api")


class AgentWatcher:
    """Asks a real guest's agent guest-fsfreeze-status over and over in a thread (through the
    rig's Guest handle, straight to libvirt: no plugin, no simulator) and remembers when each
    answer came back. A status read holds the domain's agent job for a moment, so it can delay
    the plugin's own freeze call by at most one read."""

    def __init__(self, guest, period: float = 0.05):
        self.guest, self.period = guest, period
        self.answers: list[tuple[float, str]] = []      # (perf_counter when answered, status)
        self.read_s: list[float] = []                   # how long each read took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{guest.domain}", daemon=True)

    def __enter__(self) -> "AgentWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.perf_counter()
            try:
                status = self.guest.agent_status()
            except Exception:  # noqa: BLE001 - an unanswered read is just not a sighting
                status = "error"
            answered = time.perf_counter()
            self.answers.append((answered, status))
            self.read_s.append(answered - asked)
            self._stop.wait(self.period)

    def first(self, status: str, after: float) -> float | None:
        """When the agent first answered `status` after `after` (perf_counter), or None."""
        return next((t for t, s in self.answers if t > after and s == status), None)


def heartbeat_window(guest, after_counter: int) -> tuple[float | None, float | None]:
    """(the longest pause between the guest's heartbeat writes since `after_counter`, minus its
    usual period; that usual period). The loop reads the uptime, appends a line and sleeps 0.2 s,
    so a write that blocks on the frozen filesystem shows as one long gap, within 0.2 s."""
    rows = [r for r in guest.heartbeat_file(1) if r[0] > after_counter]
    gaps = sorted(b[1] - a[1] for a, b in zip(rows, rows[1:]))
    if len(gaps) < 3:
        return None, None
    usual = gaps[len(gaps) // 2]
    return gaps[-1] - usual, usual


def plugin_timings(out) -> dict:
    """The plugin's own split (-o json): resolveMs, probeMs, actionMs, confirmMs, totalMs."""
    try:
        return json.loads(out.stdout)["items"][0].get("timings") or {}
    except (ValueError, KeyError, IndexError):
        return {}


@dataclass
class Step:
    """One kubectl freeze or unfreeze; seconds from the command's start."""
    agent: float | None          # the agent first said frozen (thawed)
    returned: float              # the command returned: the VMI status showed it
    action_ms: int | None        # the plugin's own timings: the exec / API call ...
    confirm_ms: int | None       # ... and the wait for the VMI status

    @property
    def lag(self) -> float | None:
        return None if self.agent is None else self.returned - self.agent


@dataclass
class Cycle:
    method: str
    interval: float
    freeze: Step
    thaw: Step
    host_window: float               # freeze command start -> unfreeze command end
    idle: float                      # freeze returned -> unfreeze started (stands for the snapshot)
    agent_window: float | None       # agent first said frozen -> agent first said thawed
    guest_window: float | None       # the guest's heartbeat pause
    usual_period: float | None


def at_phase(world: World, delay: float) -> None:
    """Returns `delay` s after a poll of the simulator's agent poller (poke: it polls now, and
    then every interval)."""
    world.sim.poller.poke()
    time.sleep(0.02 + delay)


def _step(world: World, watcher: AgentWatcher, verb: str, name: str, method: str, want: str,
          delay: float) -> tuple[float, Step]:
    """`kubectl <verb> vm`, started `delay` s after a poll: it meets the poll cycle at a known phase."""
    at_phase(world, delay)
    started = time.perf_counter()
    wall, out = world.kubectl(verb, "vm", name, "--method", method, "-o", "json")
    seen = watcher.first(want, started)
    timings = plugin_timings(out)
    step = Step(None if seen is None or seen > started + wall else seen - started, wall,
                timings.get("actionMs"), timings.get("confirmMs"))
    return started, step


def cycle(world: World, name: str, method: str, interval: float, phase: float) -> tuple[Cycle, list[float]]:
    guest = world.guests[name]
    before = guest.last_heartbeat(1)
    with AgentWatcher(guest) as watcher:
        t0, freeze = _step(world, watcher, "freeze", name, method, "frozen", phase * interval)
        t2, thaw = _step(world, watcher, "unfreeze", name, method, "thawed", phase * interval)
        t3 = t2 + thaw.returned
        time.sleep(0.2)
    if freeze.agent is None:
        raise BenchError(f"{name} with {method}: the agent never said frozen during kubectl freeze")
    time.sleep(0.5)      # a few heartbeats after the thaw, so the gap is closed in the file
    guest_window, usual = heartbeat_window(guest, before)
    c = Cycle(method, interval, freeze, thaw, host_window=t3 - t0, idle=t2 - (t0 + freeze.returned),
              agent_window=None if thaw.agent is None else t2 + thaw.agent - (t0 + freeze.agent),
              guest_window=guest_window, usual_period=usual)
    return c, watcher.read_s


def bench_e2e(world: World, reps: int, intervals: tuple[float, ...] = (5.0, 0.5),
              methods: tuple[str, ...] = METHODS, name: str = "vm1") -> list[Cycle]:
    """Each command starts at phase (i + 0.5) / reps of the poll cycle in repetition i, so the
    median over the repetitions estimates a start at a random moment (a freeze issued right
    after the last poll waits a whole interval, one just before the next hardly at all)."""
    cycles: list[Cycle] = []
    reads: list[float] = []
    for interval in intervals:
        world.set_poll_interval(interval)
        for rep in range(reps):
            for method in methods:          # methods take turns: drift falls on all alike
                world.wait_settled()
                c, r = cycle(world, name, method, interval, (rep + 0.5) / reps)
                cycles.append(c)
                reads += r
    _print_e2e(cycles, intervals, methods, reads, reps)
    return cycles


def _ms_s(values: list[int | None]) -> list[float | None]:
    return [None if v is None else v / 1000 for v in values]


def _print_e2e(cycles: list[Cycle], intervals, methods, reads: list[float], reps: int) -> None:
    def of(interval: float, method: str) -> list[Cycle]:
        return [c for c in cycles if c.interval == interval and c.method == method]

    labels = [(f"{m} @ {i:g} s", of(i, m)) for i in intervals for m in methods]
    reads_ms = summarize(reads).median * 1000 if reads else 0
    for verb, attr, state in (("freeze", "freeze", "frozen"), ("unfreeze", "thaw", "thawed")):
        rows = []
        for label, cs in labels:
            steps = [getattr(c, attr) for c in cs]
            rows.append([label, spread([s.agent for s in steps]),
                         spread(_ms_s([s.action_ms for s in steps])),
                         spread(_ms_s([s.confirm_ms for s in steps])),
                         spread([s.returned for s in steps]), spread([s.lag for s in steps])])
        print_table(f"kubectl {verb} vm: one real guest, through kubectl (N={reps} each; median [min-max])",
                    ["method @ agent poll interval", f"agent says {state}", "plugin: action",
                     "plugin: wait for VMI", "returned", "confirm lag"], rows)
    lag_lines = []
    for interval in intervals:
        lags = [s.lag for c in cycles if c.interval == interval for s in (c.freeze, c.thaw) if s.lag is not None]
        if lags:
            lag_lines.append(f"{interval:g} s poll: confirm lag median {summarize(lags).median:.2f} s "
                             f"(max {max(lags):.2f} s, n={len(lags)})")
    print("agent says: when a direct guest-fsfreeze-status (read every 50 ms; one read takes "
          f"{reads_ms:.0f} ms) first answered it, from the command's start. plugin: its -o json timings.\n"
          "returned: the command's wall time (it returns once the VMI status shows the state); "
          "confirm lag = returned - agent says.\n"
          f"Each command started at phase (i+0.5)/{reps} of the poll cycle (i = 0..{reps - 1}).\n"
          "All methods, freeze and unfreeze: " + "; ".join(lag_lines))
    windows = [[label, spread([c.guest_window for c in cs]), spread([c.agent_window for c in cs]),
                spread([c.idle for c in cs]),
                spread([None if c.agent_window is None else c.agent_window - c.idle for c in cs]),
                spread([c.host_window for c in cs])] for label, cs in labels]
    usual = [c.usual_period for c in cycles if c.usual_period]
    print_table(
        "Frozen window: the guest's view vs the user's (median [min-max])",
        ["method @ agent poll interval", "guest: writes stopped", "agent: frozen..thawed",
         "idle between commands", "frozen beyond idle", "host: freeze start..unfreeze end"], windows,
        "guest: the longest pause in the heartbeat file minus its usual period "
        f"({summarize(usual).median:.2f} s), within 0.2 s. idle: from the freeze's return to the "
        "unfreeze's start\n(where a backup takes its snapshot; here the wait for the unfreeze's "
        "poll phase). frozen beyond idle = agent window - idle:\nhow much longer than the snapshot "
        "itself a freeze/snapshot/unfreeze keeps the guest frozen." if usual else "")


def bench_group(world: World, reps: int, interval: float = 0.5) -> dict[int, dict[str, list[float]]]:
    """`kubectl freeze vm vm1 vm2 --parallel P` and the unfreeze, P = 1 and 2, taking turns."""
    world.set_poll_interval(interval)
    names = list(world.guests)
    results: dict[int, dict[str, list[float]]] = {1: {"freeze": [], "unfreeze": []},
                                                  2: {"freeze": [], "unfreeze": []}}
    for _ in range(reps):
        for parallel in (1, 2):
            world.wait_settled()
            at_phase(world, interval / 2)
            f, _ = world.kubectl("freeze", "vm", *names, "--parallel", str(parallel), "-o", "json")
            at_phase(world, interval / 2)
            u, _ = world.kubectl("unfreeze", "vm", *names, "--parallel", str(parallel), "-o", "json")
            results[parallel]["freeze"].append(f)
            results[parallel]["unfreeze"].append(u)
    rows = []
    for action in ("freeze", "unfreeze"):
        one, two = results[1][action], results[2][action]
        ratio = summarize(one).median / summarize(two).median
        rows.append([f"kubectl {action} vm {' '.join(names)}", spread(one), spread(two), f"{ratio:.2f}x"])
    print_table(f"Group of {len(names)} real guests, auto method, agent poll {interval:g} s "
                f"(N={reps}; median [min-max])",
                ["command", "--parallel 1", "--parallel 2", "speed-up"], rows,
                "Each command started half a poll interval after a poll.")
    return results
