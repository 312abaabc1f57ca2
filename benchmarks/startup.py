"""Plugin start-up: how long the commands that do no freezing take, median and p90 over N runs.

Every command runs once first (not counted: it fills the bytecode cache), then the commands
take turns, run after run, so a busy moment of the machine falls on all of them alike and
their ratios hold within one run of the benchmark.
"""

from __future__ import annotations

import os
import sys

from .common import BIN, KUBECTL, BenchError, Summary, ms, print_table, run, summarize

# (label, argv, a text the output must contain)
OFFLINE = [
    ("python -c pass  (interpreter alone)", [sys.executable, "-c", "pass"], ""),
    ("python -c 'import kubernetes.client'  (the client library alone)",
     [sys.executable, "-c", "import kubernetes.client; print('ok')"], "ok"),
    ("kubectl version --client  (kubectl alone)", [KUBECTL, "version", "--client"], "Client Version"),
    ("kubectl-freeze --version", [BIN / "kubectl-freeze", "--version"], "kubectl-freeze"),
    ("kubectl-freeze --help", [BIN / "kubectl-freeze", "--help"], "Usage"),
    ("kubectl_complete-freeze vm --  (flags)", [BIN / "kubectl_complete-freeze", "vm", "--"], "--selector"),
    ("kubectl freeze --version  (through kubectl)", [KUBECTL, "freeze", "--version"], "kubectl-freeze"),
]
VERSION, VERSION_KUBECTL = OFFLINE[3], OFFLINE[6]
# Against the simulator (names vm1, vm2 in the kubeconfig's namespace).
CLUSTER = [
    ("kubectl_complete-freeze vm ''  (VM names: runs kubectl get)",
     [BIN / "kubectl_complete-freeze", "vm", ""], "vm1"),
    ("kubectl __complete freeze vm ''  (what <TAB> runs)", [KUBECTL, "__complete", "freeze", "vm", ""], "vm1"),
    ("kubectl freeze status  (one LIST of VMIs)", [KUBECTL, "freeze", "status"], "vm1"),
]
# How the plugin starts where PYTHONDONTWRITEBYTECODE is set (this sandbox): an editable install
# is never cached there, so its modules are compiled on every start.
UNCACHED = ("kubectl-freeze --version  (PYTHONDONTWRITEBYTECODE=1, no cache)",
            [BIN / "kubectl-freeze", "--version"], "kubectl-freeze")


def measure(commands: list[tuple[str, list, str]], env: dict[str, str], runs: int,
            envs: dict[str, dict[str, str]] | None = None) -> dict[str, list[float]]:
    envs = envs or {}
    times: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    for round_ in range(runs + 1):
        for label, argv, expect in commands:
            elapsed, out = run(argv, envs.get(label, env), timeout=60)
            if expect not in out.stdout:
                raise BenchError(f"{label}: {expect!r} not in its output:\n{out.stdout}\n{out.stderr}")
            if round_:            # round 0 is the warm-up
                times[label].append(elapsed)
    return times


def bench_startup(env: dict[str, str], runs: int, cluster: bool = False) -> dict[str, Summary]:
    """Prints the table; returns each command's summary by label. `env` decides the cluster:
    with `cluster`, its kubeconfig must point at the simulator."""
    commands = list(CLUSTER if cluster else OFFLINE)
    envs = {}
    if not cluster and os.environ.get("PYTHONDONTWRITEBYTECODE"):
        commands.append(UNCACHED)
        envs[UNCACHED[0]] = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"} | {
            "PYTHONDONTWRITEBYTECODE": "1"}
    summaries = {label: summarize(t) for label, t in measure(commands, env, runs, envs).items()}
    rows = [[label, ms(s.median), ms(s.p90), ms(s.low), ms(s.high)] for label, s in summaries.items()]
    note = ""
    direct, through = summaries.get(VERSION[0]), summaries.get(VERSION_KUBECTL[0])
    if direct and through:
        note = (f"kubectl's plugin dispatch adds {ms(through.median - direct.median)} to "
                f"`kubectl-freeze --version` (medians)")
    title = ("Start-up against the simulator" if cluster else "Start-up, no cluster") + f" (N={runs})"
    print_table(title, ["command", "median", "p90", "min", "max"], rows, note)
    return summaries
