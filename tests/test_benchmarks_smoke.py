"""The benchmarks must not rot: their argument parsing, and the start-up benchmark (no cluster,
no guest) run once. Nothing here asserts on a time: the benchmarks print their figures."""

from __future__ import annotations

import pytest

from benchmarks.run import main, parse_args


def test_arguments_default_quick_and_explicit():
    args = parse_args([])
    assert args.sections == ["startup", "e2e", "group", "memory", "run"]
    assert (args.runs, args.reps, args.intervals) == (10, 2, (5.0, 0.5))
    quick = parse_args(["--quick"])
    assert (quick.runs, quick.reps) == (3, 1)
    chosen = parse_args(["--only", "e2e,memory", "--runs", "4", "--reps", "3", "--intervals", "1"])
    assert (chosen.sections, chosen.runs, chosen.reps, chosen.intervals) == (["e2e", "memory"], 4, 3, (1.0,))


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--only", ""], ["--intervals", "5,x"],
                                  ["--intervals", "0"], ["--runs", "0"]])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_startup_benchmark_runs_once_without_a_cluster(capsys):
    assert main(["--only", "startup", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "nproc" in out and "python:" in out
    assert "## Start-up, no cluster (N=1)" in out
    for label in ("kubectl-freeze --version", "kubectl-freeze --help", "kubectl_complete-freeze vm --",
                  "kubectl freeze --version  (through kubectl)"):
        assert label in out
    assert "plugin dispatch adds" in out
    assert "starting the rig" not in out      # no guest, no simulator for this section alone
