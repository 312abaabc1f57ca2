"""cli.py: usage text, argument validation (nothing sent on bad input), one-line errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubectl_freeze import __version__, cli
from kubectl_freeze.errors import EXIT_FAILED, EXIT_USAGE, Failed


@pytest.fixture(autouse=True)
def no_cluster(tmp_path, monkeypatch):
    """No kubeconfig anywhere: a command that gets past validation stops at 'no kubeconfig found'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def freeze(capsys, *argv):
    code = cli.run(cli.freeze_app, "kubectl freeze", list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def unfreeze(capsys, *argv):
    code = cli.run(cli.unfreeze_app, "kubectl unfreeze", list(argv))
    out, err = capsys.readouterr()
    return code, out, err


PASSED_VALIDATION = "no kubeconfig found"


def assert_one_error_line(err, *words):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]


# -- usage text -----------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_uses_the_kubectl_prog_name(capsys, flag):
    code, out, _ = freeze(capsys, flag)
    assert code == 0 and out.startswith("Usage: kubectl freeze [OPTIONS] COMMAND")
    assert "vm" in out and "status" in out and "Exit codes: 0 done" in out
    code, out, _ = unfreeze(capsys, "vm", flag)
    assert code == 0 and out.startswith("Usage: kubectl unfreeze vm [OPTIONS] [NAME]...")
    assert "--unfreeze-timeout" not in out


def test_no_arguments_prints_help(capsys):
    code, out, _ = freeze(capsys)
    assert code == 0 and "Usage: kubectl freeze" in out


def test_version(capsys):
    code, out, _ = freeze(capsys, "--version")
    assert code == 0 and out == f"kubectl-freeze {__version__}\n"


def test_vmi_is_an_alias_of_vm(capsys):
    code, _, err = freeze(capsys, "vmi", "db")
    assert code == EXIT_FAILED and PASSED_VALIDATION in err
    code, _, err = unfreeze(capsys, "vmi", "db")
    assert code == EXIT_FAILED and PASSED_VALIDATION in err


def test_help_does_not_import_kubernetes():
    code = ("import sys; from kubectl_freeze.cli import run, freeze_app; "
            "rc = run(freeze_app, 'kubectl freeze', ['vm', '--help']); "
            "assert 'kubernetes' not in sys.modules, 'kubernetes imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))))
    assert done.returncode == 0, done.stderr


# -- validation: usage errors (exit 2), nothing sent -----------------------------------------------
@pytest.mark.parametrize("argv,words", [
    (["vm"], ["no VM given", "-l SELECTOR"]),
    (["vm", "a", "-l", "app=db"], ["names or -l SELECTOR, not both"]),
    (["vm", "Bad_Name"], ["invalid name 'Bad_Name'"]),
    (["vm", "pod/x"], ["'pod' is not a VM kind"]),
    (["vm", "a", "--unfreeze-timeout", "5"], ["--unfreeze-timeout '5' has a number without a unit"]),
    (["vm", "a", "--unfreeze-timeout", "2d"], ["unit 'd'"]),
    (["vm", "a", "--unfreeze-timeout", "0"], ["disables the safety thaw", "--no-safety-thaw"]),
    (["vm", "a", "--unfreeze-timeout", "100ms"], ["shorter than a second"]),
    (["vm", "a", "--no-safety-thaw", "--unfreeze-timeout", "5m"], ["conflicts"]),
    (["vm", "a", "--timeout", "0"], ["--timeout must be more than 0", "--no-wait"]),
    (["vm", "a", "--timeout", "soon"], ["--timeout 'soon' is not a duration"]),
    (["vm", "a", "--method", "magic"], ["unknown method 'magic'", "auto, freezer, virt-freezer, api"]),
    (["vm", "a", "--mountpoint", "data"], ["not an absolute guest path"]),
    (["vm", "a", "--mountpoint", "/data", "--method", "api"], ["only with the bundled freezer"]),
    (["vm", "a", "--parallel", "0"], ["--parallel must be at least 1"]),
    (["vm", "a", "-o", "xml"], ["unknown output format 'xml'"]),
    (["vm", "a", "--color", "pink"], ["--color 'pink'"]),
    (["vm", "a", "-n", "Bad_NS"], ["invalid namespace 'Bad_NS'"]),
    (["vm", "a", "--request-timeout", "never"], ["--request-timeout 'never'"]),
    (["vm", "a", "--bogus"], ["No such option: --bogus", "kubectl freeze vm --help"]),
    (["vm", "a", "--parallel", "many"], ["Invalid value for '--parallel'"]),
    (["nosuch"], ["No such command 'nosuch'"]),
    (["status", "a", "-A"], ["names cannot be given with -A"]),
    (["status", "a", "-l", "x=y"], ["not both"]),
])
def test_bad_input_is_one_usage_error_line(capsys, argv, words):
    code, out, err = freeze(capsys, *argv)
    assert code == EXIT_USAGE, err
    assert out == ""
    assert_one_error_line(err, *words)


def test_unfreeze_has_no_safety_thaw_flags(capsys):
    code, _, err = unfreeze(capsys, "vm", "a", "--unfreeze-timeout", "5m")
    assert code == EXIT_USAGE
    assert_one_error_line(err, "No such option: --unfreeze-timeout")


@pytest.mark.parametrize("argv", [
    ["vm", "a"],
    ["vm", "vm/a", "vmi/b", "-n", "prod", "--context", "x", "-o", "json", "--no-headers", "-q", "--color", "never"],
    ["vm", "-l", "app=db", "--unfreeze-timeout", "90s", "--timeout", "30s", "--parallel", "2", "--method", "api"],
    ["vm", "a", "--no-safety-thaw", "--no-wait", "--dry-run", "--mountpoint", "/data", "--method", "freezer"],
    ["vm", "a", "--unfreeze-timeout", "0", "--no-safety-thaw", "--request-timeout", "10"],
    ["status"],
    ["status", "-A", "--live", "-o", "wide"],
])
def test_valid_input_reaches_the_cluster_step(capsys, argv):
    code, out, err = freeze(capsys, *argv)
    assert code == EXIT_FAILED and out == ""
    assert_one_error_line(err, PASSED_VALIDATION, "--kubeconfig")


def test_missing_kubeconfig_flag_file_is_a_usage_error(capsys, tmp_path):
    code, _, err = freeze(capsys, "vm", "a", "--kubeconfig", str(tmp_path / "nope"))
    assert code == EXIT_USAGE
    assert_one_error_line(err, "--kubeconfig", "no such file")


# -- errors: one line, traceback only with -v ------------------------------------------------------
def test_plugin_error_exit_code_and_no_traceback(capsys, monkeypatch):
    def boom(self):
        raise Failed("cannot reach the Kubernetes API at https://x", "check --context")
    monkeypatch.setattr(cli.Common, "cluster", boom)
    code, _, err = freeze(capsys, "vm", "a")
    assert code == EXIT_FAILED
    assert_one_error_line(err, "cannot reach the Kubernetes API at https://x; check --context")
    code, _, err = freeze(capsys, "vm", "a", "-v")
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: cannot reach")


def test_unexpected_exceptions_are_one_line_too(capsys, monkeypatch):
    def bug(self):
        raise KeyError("surprise")
    monkeypatch.setattr(cli.Common, "cluster", bug)
    code, _, err = freeze(capsys, "status")
    assert code == EXIT_FAILED
    assert_one_error_line(err, "internal error: KeyError", "rerun with -v")
    _, _, err = freeze(capsys, "status", "--verbose")
    assert "Traceback" in err


def test_colour_error_prefix_only_when_forced(capsys):
    _, _, err = freeze(capsys, "vm", "--color", "always")
    assert err.startswith("\x1b[31merror:\x1b[0m ")
    _, _, err = freeze(capsys, "vm")
    assert err.startswith("error: ")
