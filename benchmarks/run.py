"""`python -m benchmarks` (or `python benchmarks/run.py`): kubectl-freeze's speed and memory on
this machine, printed as tables. It starts everything it needs (the rig's real guests, the
cluster simulator) and stops all of it, and says so.

Sections (--only takes a comma-separated list of them):
  startup  plugin start-up: --help, --version, completion, through kubectl (no cluster needed;
           with another section, also VM-name completion and status against the simulator)
  e2e      freeze/unfreeze of one real guest per method, agent poll 5 s and 0.5 s
  group    two real guests, --parallel 1 vs 2
  memory   peak RSS of the plugin and of the in-pod freezer
  run      kubectl freeze run -- sleep 2: the guest's frozen window beyond 2 s (50 Hz heartbeat) and
           SIGKILL -> thawed, beside freeze vm + sleep 2 + unfreeze vm
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):           # run as a file: benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks.common import machine_lines, plugin_env  # noqa: E402

SECTIONS = ("startup", "e2e", "group", "memory", "run")
NEEDS_WORLD = {"e2e", "group", "memory", "run"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs (start-up N=3, one freeze/unfreeze per method and interval)")
    parser.add_argument("--only", default=",".join(SECTIONS), metavar="SECTIONS",
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--runs", type=int, metavar="N", help="start-up runs per command (default 10, quick 3)")
    parser.add_argument("--reps", type=int, metavar="N",
                        help="freeze/unfreeze cycles per method and interval, and group runs (default 2, quick 1)")
    parser.add_argument("--intervals", default="5,0.5", metavar="S,S",
                        help="agent poll intervals for e2e, seconds (default 5,0.5: KubeVirt's and a fast one)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown or not args.sections:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown)) or '(none)'}; "
                     f"choose from {', '.join(SECTIONS)}")
    try:
        args.intervals = tuple(float(x) for x in args.intervals.split(","))
    except ValueError:
        parser.error(f"--intervals: not a list of seconds: {args.intervals!r}")
    if any(x <= 0 for x in args.intervals):
        parser.error("--intervals: every interval must be positive")
    if args.runs is None:
        args.runs = 3 if args.quick else 10
    if args.reps is None:
        args.reps = 1 if args.quick else 2
    if args.runs < 1 or args.reps < 1:
        parser.error("--runs and --reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    for line in machine_lines():
        print(line)
    print(f"sections: {', '.join(args.sections)}; start-up N={args.runs}, reps={args.reps}")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="kf-bench-") as tmp:
        workdir = Path(tmp)
        if "startup" in args.sections:
            from benchmarks.startup import bench_startup

            # Before any guest boots: an idle TCG guest takes ~8% of a core.
            bench_startup(plugin_env(workdir), args.runs)
        if NEEDS_WORLD & set(args.sections):
            run_world(args, workdir)
    print(f"\ntotal: {time.perf_counter() - started:.0f} s")
    return 0


def run_world(args: argparse.Namespace, workdir: Path) -> None:
    from benchmarks.world import World, leftover_processes

    print("\nstarting the rig (2 real QEMU guests) and the cluster simulator ...", flush=True)
    world = World.start(workdir)
    markers = world.markers
    print(f"ready in {world.boot_s:.0f} s", flush=True)
    try:
        if "startup" in args.sections:
            from benchmarks.startup import bench_startup

            bench_startup(world.env(), args.runs, cluster=True)
        if "e2e" in args.sections:
            from benchmarks.e2e import bench_e2e

            bench_e2e(world, args.reps, args.intervals)
        if "group" in args.sections:
            from benchmarks.e2e import bench_group

            bench_group(world, args.reps)
        if "memory" in args.sections:
            from benchmarks.memory import bench_memory

            world.set_poll_interval(0.5)
            bench_memory(world)
        if "run" in args.sections:
            from benchmarks.freeze_run import bench_freeze_run

            bench_freeze_run(world, max(args.reps, 3))
    finally:
        world.stop()
        left = leftover_processes(markers)
        print(f"\nstopped the simulator and the rig; processes left behind: {len(left) or 'none'}")
        for line in left:
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
