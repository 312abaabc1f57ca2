"""Pure logic of `kubectl freeze run`: where COMMAND starts in argv, and which exit code wins."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kubectl_freeze.backup_command import CommandResult, check_command
from kubectl_freeze.cli import split_run_argv
from kubectl_freeze.errors import UsageError
from kubectl_freeze.run_report import RunReport


@pytest.mark.parametrize("argv, own, command", [
    (["run", "vm1", "--", "cp", "a", "b"], ["run", "vm1"], ["cp", "a", "b"]),
    (["run", "-n", "x", "vm1", "--", "sh", "-c", "a -- b"], ["run", "-n", "x", "vm1"], ["sh", "-c", "a -- b"]),
    (["run", "vm1", "--", "--weird"], ["run", "vm1"], ["--weird"]),
    (["run", "vm1", "--"], ["run", "vm1"], []),
    (["run", "vm1", "true"], ["run", "vm1", "true"], None),
])
def test_everything_after_the_first_double_dash_is_commands(argv, own, command):
    got, obj = split_run_argv(argv)
    assert got == own and obj == {"command": command}


def test_other_subcommands_are_left_alone():
    assert split_run_argv(["vm", "run", "--", "x"]) == (["vm", "run", "--", "x"], None)


def test_a_missing_command_is_a_usage_error():
    for argv in ([], ["/nonexistent/x"], ["no-such-tool-kf"]):
        with pytest.raises(UsageError):
            check_command(argv)
    assert check_command(["true"]).endswith("/true")


class Vm(SimpleNamespace):
    maybe_frozen = True
    thaw_confirmed = True
    held = True
    frozen = True


def report(vms=(), code=0, stopped_by=None, **flags) -> RunReport:
    return RunReport(["x"], list(vms) or [Vm()], CommandResult(exit_code=code, stopped_by=stopped_by), **flags)


def test_exit_code_is_commands_unless_the_run_failed():
    assert report(code=7).exit_code == 7
    assert report(vms=[Vm(held=False)], code=0).exit_code == 123
    assert report(code=143, stopped_by="max-window").exit_code == 124
    assert report(code=143, interrupted=True).exit_code == 130
    assert report(freeze_failed=True).exit_code == 125
    # a VM that may still be frozen outranks everything
    assert report(vms=[Vm(thaw_confirmed=False)], interrupted=True, stopped_by="max-window").exit_code == 122
