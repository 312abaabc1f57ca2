"""`kubectl freeze run` on real guests whose heartbeat ticks every 20 ms (50 Hz; the loop's own
cost makes it about 30-40 Hz under TCG), beside `freeze vm` + snapshot + `unfreeze vm`, in the
same run, taking turns, at KubeVirt's default agent poll (5 s):

- the frozen window as the guest saw it (the longest pause in its heartbeat minus its usual
  period) minus the 2 s "snapshot" (`sleep 2`): what the freeze costs beyond the snapshot;
- the time from a SIGKILL of `freeze run` (COMMAND running) to the guest agent saying thawed.

One guest on a python launcher image (the bundled freezer's hold), one on a stock image (the
POSIX sh hold around virt-freezer).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

from .common import KUBECTL, print_table, spread
from .world import NAMESPACE, World

SNAPSHOT_S = 2.0
HEARTBEAT_S = 0.02
GUESTS = (("hb1", "python"), ("hb2", "stock"))


def add_fine_heartbeat_guests(world: World) -> dict:
    from tests.rig import GuestSpec

    guests = world.rig.boot_many([GuestSpec(namespace=NAMESPACE, name=n, heartbeat_s=HEARTBEAT_S, data_disks=1)
                                  for n, _ in GUESTS])
    for (name, image), guest in zip(GUESTS, guests):
        world.sim.add_vmi(NAMESPACE, name, guest, image=image)
    from tests.cluster.kubevirt.objects import has_condition

    deadline = time.monotonic() + 60
    while not all(has_condition(world.sim.vmi(NAMESPACE, n), "AgentConnected") for n, _ in GUESTS):
        if time.monotonic() > deadline:
            raise TimeoutError("the heartbeat guests' agents did not connect")
        time.sleep(0.2)
    return {name: guest for (name, _), guest in zip(GUESTS, guests)}


def guest_window(guest, after: int) -> float | None:
    """The longest pause between heartbeats after counter `after`, minus the usual period."""
    rows = [r for r in guest.heartbeats(1) if r[0] > after]
    gaps = sorted(b[1] - a[1] for a, b in zip(rows, rows[1:]))
    if len(gaps) < 5:
        return None
    if gaps[-2] > 0.5:      # two long pauses: the guest was starved, not (only) frozen; say so
        print(f"  note: {guest.domain}: several long heartbeat pauses {[round(g, 2) for g in gaps[-3:]]}",
              flush=True)
    return gaps[-1] - gaps[len(gaps) // 2]


def settle(guest, seconds: float = 0.6) -> int:
    """Wait until the guest is thawed and has written a few heartbeats; returns the last counter."""
    deadline = time.monotonic() + 30
    while guest.agent_status() != "thawed" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(seconds)
    return guest.last_heartbeat(1)


def run_sleep(world: World, name: str, guest) -> tuple[float | None, int | None, float]:
    """`kubectl freeze run NAME -- sleep 2`: (guest window - 2 s, in-pod window - 2 s in ms, wall)."""
    before = settle(guest)
    started = time.perf_counter()
    out = subprocess.run([KUBECTL, "freeze", "run", name, "-o", "json", "--", "sleep", f"{SNAPSHOT_S:g}"],
                         env=world.env(), capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    time.sleep(0.5)
    window = guest_window(guest, before)
    try:
        in_pod = json.loads(out.stdout)["items"][0]["windowMs"]
    except (ValueError, KeyError, IndexError, TypeError):
        in_pod = None
    return (None if window is None else window - SNAPSHOT_S,
            None if in_pod is None else in_pod - int(SNAPSHOT_S * 1000), wall)


def freeze_snapshot_unfreeze(world: World, name: str, guest) -> tuple[float | None, float]:
    """`freeze vm` + `sleep 2` + `unfreeze vm`: (guest window - 2 s, wall)."""
    before = settle(guest)
    started = time.perf_counter()
    world.kubectl("freeze", "vm", name)
    time.sleep(SNAPSHOT_S)
    world.kubectl("unfreeze", "vm", name)
    wall = time.perf_counter() - started
    time.sleep(0.5)
    window = guest_window(guest, before)
    return (None if window is None else window - SNAPSHOT_S), wall


def sigkill_to_thawed(world: World, name: str, guest) -> float | None:
    settle(guest, 0.2)
    proc = subprocess.Popen([KUBECTL, "freeze", "run", name, "--", "sleep", "60"], env=world.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while guest.agent_status() != "frozen":
            if time.monotonic() > deadline or proc.poll() is not None:
                return None
            time.sleep(0.05)
        time.sleep(0.5)                  # COMMAND is running
        killed = time.perf_counter()
        proc.send_signal(signal.SIGKILL)
        while guest.agent_status() != "thawed":
            if time.perf_counter() - killed > 60:
                return None
            time.sleep(0.01)
        return time.perf_counter() - killed
    finally:
        proc.kill()
        proc.wait()


def bench_freeze_run(world: World, reps: int) -> None:
    world.set_poll_interval(5.0)
    guests = add_fine_heartbeat_guests(world)
    rows = []
    for name, image in GUESTS:
        guest = guests[name]
        run_g, run_p, run_w, old_g, old_w, kills = [], [], [], [], [], []
        for _ in range(reps):            # taking turns: drift falls on both alike
            g, p, w = run_sleep(world, name, guest)
            run_g.append(g)
            run_p.append(None if p is None else p / 1000)
            run_w.append(w)
            g, w = freeze_snapshot_unfreeze(world, name, guest)
            old_g.append(g)
            old_w.append(w)
            kills.append(sigkill_to_thawed(world, name, guest))
        rows.append([f"{name} ({image} image)", spread(run_g), spread(run_p), spread(run_w), spread(old_g),
                     spread(old_w), spread(kills)])
    print_table(
        f"kubectl freeze run -- sleep 2 vs freeze vm + sleep 2 + unfreeze vm, agent poll 5 s "
        f"(N={reps}; median [min-max], seconds)",
        ["guest", "run: frozen beyond 2 s (guest)", "run: in-pod window - 2 s", "run: wall",
         "vm+unfreeze: frozen beyond 2 s (guest)", "vm+unfreeze: wall", "SIGKILL of run -> thawed"], rows,
        f"guest: the longest pause in the guest's own heartbeat (every {HEARTBEAT_S * 1000:.0f} ms) minus its usual "
        "period, minus the 2 s snapshot. in-pod: the held session's frozen->thawed as the freezer timed it.\n"
        "SIGKILL -> thawed: from the kill of `freeze run` (COMMAND running) to the guest agent answering thawed "
        "(read every 10 ms). Targets: < 0.15 s beyond, < 2 s after SIGKILL.")
