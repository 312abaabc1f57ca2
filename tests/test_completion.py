"""Shell completion (issue 5): the kubectl_complete-freeze / kubectl_complete-unfreeze helpers
that kubectl 1.26+ runs, driven through the real kubectl against the simulator; the scripts in
completions/ (up to date with `kubectl freeze completion SHELL`, and working in bash, zsh and
fish when those shells are installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubectl_freeze import completion

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCRIPTS = {shell: REPO / "completions" / f"kubectl-freeze.{shell}" for shell in completion.SHELLS}


def helper(plugin: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / f"kubectl_complete-{plugin}"), *args], capture_output=True, text=True,
                          env=env, timeout=30)


def parse(stdout: str) -> tuple[list[str], int]:
    """kubectl's reading of a helper's output: candidates (without descriptions), directive."""
    lines = [line for line in stdout.split("\n") if line]
    assert lines and lines[-1].startswith(":"), stdout
    return [line.split("\t")[0] for line in lines[:-1]], int(lines[-1][1:])


def offline_env(tmp_path: Path) -> dict:
    """A kubeconfig whose API server refuses connections at once."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x, namespace: ns1}}]\n")
    return dict(os.environ, KUBECONFIG=str(kubeconfig), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


# ----- the helpers on their own -----------------------------------------------------------------
@pytest.mark.parametrize("plugin,args,expected,directive", [
    ("freeze", [""], ["completion", "run", "status", "vm"], completion.NO_FILE_COMP),
    ("unfreeze", [""], ["vm"], completion.NO_FILE_COMP),
    ("freeze", ["s"], ["status"], completion.NO_FILE_COMP),
    ("freeze", ["--v"], ["--version"], completion.NO_FILE_COMP),
    ("freeze", ["vm", "--me"], ["--method"], completion.NO_FILE_COMP),
    ("freeze", ["vm", "--unf"], ["--unfreeze-timeout"], completion.NO_FILE_COMP),
    ("unfreeze", ["vm", "--unf"], [], completion.NO_FILE_COMP),
    ("freeze", ["status", "--a"], ["--all-namespaces"], completion.NO_FILE_COMP),
    ("freeze", ["vm", "--method", ""], ["auto", "freezer", "virt-freezer", "api"], completion.NO_FILE_COMP),
    ("freeze", ["vm", "--method=f"], ["freezer"], completion.NO_FILE_COMP),
    ("freeze", ["vm", "-o", ""], ["table", "wide", "json", "yaml", "name"], completion.NO_FILE_COMP),
    ("freeze", ["status", "--color", "a"], ["auto", "always"], completion.NO_FILE_COMP),
    ("freeze", ["vm", "--kubeconfig", ""], [], completion.DEFAULT),
    ("freeze", ["vm", "--timeout", ""], [], completion.NO_FILE_COMP),
    ("freeze", ["completion", ""], ["bash", "zsh", "fish"], completion.NO_FILE_COMP),
    ("freeze", ["completion", "bash", ""], [], completion.NO_FILE_COMP),
    ("freeze", ["no-such-command", ""], [], completion.NO_FILE_COMP),
])
def test_helper_completes_subcommands_flags_and_their_values(tmp_path, plugin, args, expected, directive):
    out = helper(plugin, *args, env=offline_env(tmp_path))
    assert out.returncode == 0 and out.stderr == ""
    assert parse(out.stdout) == (expected, directive)


def test_flags_already_given_are_not_offered_again_but_repeatable_ones_are(tmp_path):
    found, _ = parse(helper("freeze", "vm", "--dry-run", "--mountpoint", "/a", "--", env=offline_env(tmp_path)).stdout)
    assert "--dry-run" not in found and "--mountpoint" in found and "--method" in found


def test_candidates_carry_a_one_line_description():
    out = helper("freeze", "vm", "--me").stdout
    assert out.splitlines()[0] == "--method\tauto|freezer|virt-freezer|api"


def test_on_error_the_helper_prints_only_a_directive_and_is_quick(tmp_path):
    env = offline_env(tmp_path)
    for args in (["vm", ""], ["vm", "-n", ""], ["unfreeze", "vm", "--context", "nosuch", ""]):
        started = time.monotonic()
        out = helper("freeze", *args, env=env)
        assert time.monotonic() - started < 10
        assert (out.returncode, out.stdout, out.stderr) == (0, f":{completion.NO_FILE_COMP}\n", "")
    no_kubectl = dict(env, PATH="/nonexistent")
    out = helper("freeze", "vm", "", env=no_kubectl)
    assert (out.returncode, out.stdout, out.stderr) == (0, ":4\n", "")


def test_the_helper_passes_the_plugins_connection_flags_to_kubectl(tmp_path):
    """It asks kubectl with the user's --kubeconfig/--context/-n and a short request timeout."""
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                    "printf 'vm1\\tRunning\\t\\nvm2\\tRunning\\tfrozen\\nvm3\\tScheduling\\t\\n'\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = helper("freeze", "vm", "-n", "team", "--context=prod", "--kubeconfig", "/k", "--request-timeout", "2s",
                 "", env=env)
    assert parse(out.stdout) == (["vm1"], completion.NO_FILE_COMP)
    call = log.read_text().split()
    assert call[:2] == ["get", "virtualmachineinstances.kubevirt.io"]
    assert {"--kubeconfig=/k", "--context=prod", "--namespace=team", "--request-timeout=2s"} <= set(call)
    assert parse(helper("unfreeze", "vm", "", env=env).stdout)[0] == ["vm2"]
    assert parse(helper("freeze", "status", "", env=env).stdout)[0] == ["vm1", "vm2", "vm3"]
    assert parse(helper("freeze", "vm", "vm1", "", env=env).stdout)[0] == []
    assert parse(helper("freeze", "status", "vm/", env=env).stdout)[0] == ["vm/vm1", "vm/vm2", "vm/vm3"]
    assert parse(helper("freeze", "status", "-l", "app=db", "", env=env).stdout)[0] == []
    assert "--request-timeout=5s" in log.read_text().splitlines()[-1]


# ----- completions/ and `kubectl freeze completion SHELL` -------------------------------------
@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completions_folder_is_up_to_date_with_the_cli(shell):
    out = subprocess.run([str(BIN / "kubectl-freeze"), "completion", shell], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == completion.script(shell)
    assert SCRIPTS[shell].read_text() == out.stdout, (
        f"completions/ is stale: kubectl-freeze completion {shell} > {SCRIPTS[shell].relative_to(REPO)}")


def test_completion_rejects_an_unknown_shell():
    out = subprocess.run([str(BIN / "kubectl-freeze"), "completion", "tcsh"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown shell 'tcsh'; use one of: bash, zsh, fish"


def _shell_env() -> dict:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


BASH_DRIVER = r"""
source "$1"
complete -p kubectl-freeze kubectl-unfreeze >/dev/null || exit 9
shift
for line in "$@"; do
    COMP_LINE="$line"; COMP_POINT=${#line}
    read -ra COMP_WORDS <<<"$line"; [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMPREPLY=()
    _kubectl_freeze_completion
    echo "${COMPREPLY[*]}"
done
"""


def test_bash_script_completes_through_the_helper():
    lines = ["kubectl-freeze ", "kubectl-freeze vm --method ", "kubectl-freeze vm --method=fr",
             "kubectl-unfreeze v", "kubectl-freeze vm --kubeconfig ", "kubectl-freeze vm --no-h"]
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "bash", str(SCRIPTS["bash"]), *lines],
                         capture_output=True, text=True, env=_shell_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["completion run status vm", "auto freezer virt-freezer api", "freezer", "vm",
                                       "", "--no-headers"]


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_script_completes_through_the_helper():
    script = (f"source {SCRIPTS['fish']}; complete -C'kubectl-freeze '; echo ===; "
              "complete -C'kubectl-freeze vm --method='; echo ===; complete -C'kubectl-unfreeze vm --cont'")
    out = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, env=_shell_env(),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    first, second, third = [[line.split("\t")[0] for line in part.strip().splitlines()]
                            for part in out.stdout.split("===\n")]
    assert first == ["completion", "run", "status", "vm"]
    assert second == ["--method=api", "--method=auto", "--method=freezer", "--method=virt-freezer"]
    assert third == ["--context"]


ZSH_DRIVER = r"""
compdef() { print -r -- "compdef $*"; }
source "$1"
_describe() { shift 3; local arr=$1; shift; print -r -- "${(Pj:|:)arr} [$*]"; }
_files() { print -r -- files; }
shift
for line in "$@"; do
    words=(${(z)line}); [[ $line == *" " ]] && words+=("")
    CURRENT=${#words}
    _kubectl_freeze_completion || print -r -- "none"
done
"""


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_script_registers_and_completes_through_the_helper():
    lines = ["kubectl-freeze vm --method=", "kubectl-unfreeze ", "kubectl-freeze vm --kubeconfig ",
             "kubectl-freeze vm --timeout "]
    out = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "zsh", str(SCRIPTS["zsh"]), *lines],
                         capture_output=True, text=True, env=_shell_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "compdef _kubectl_freeze_completion kubectl-freeze kubectl-unfreeze",
        "auto|freezer|virt-freezer|api [-P --method=]",
        "vm:Thaw the filesystems of VMs; returns once the VMI status no longer shows them frozen []",
        "files",
        "none",
    ]


# ----- through the real kubectl, against the simulator --------------------------------------
def kubectl_complete(cluster, *args: str) -> tuple[list[str], int]:
    out = cluster.kubectl("__complete", *args)
    assert out.returncode == 0, out.stderr
    return parse(out.stdout)


@pytest.mark.cluster
def test_kubectl_completes_vm_names_from_the_cluster(cluster):
    started = time.monotonic()
    assert kubectl_complete(cluster, "freeze", "vm", "") == (["vm1", "vm2"], completion.NO_FILE_COMP)
    assert time.monotonic() - started < 5
    assert kubectl_complete(cluster, "freeze", "vm", "vm1", "") == (["vm2"], completion.NO_FILE_COMP)
    assert kubectl_complete(cluster, "freeze", "vmi", "vm/v")[0] == ["vm/vm1", "vm/vm2"]
    assert kubectl_complete(cluster, "freeze", "")[0] == ["completion", "run", "status", "vm"]
    assert kubectl_complete(cluster, "unfreeze", "vm", "")[0] == []
    out = cluster.kubectl("__complete", "freeze", "vm", "")
    assert out.stdout.splitlines()[0] == "vm1\tRunning"


@pytest.mark.cluster
def test_freeze_offers_running_vms_and_unfreeze_the_frozen_ones(cluster):
    frozen = cluster.kubectl("freeze", "vm", "vm1")
    assert frozen.returncode == 0, frozen.stderr
    try:
        assert kubectl_complete(cluster, "freeze", "vm", "")[0] == ["vm2"]
        assert kubectl_complete(cluster, "unfreeze", "vm", "")[0] == ["vm1"]
        assert kubectl_complete(cluster, "freeze", "status", "")[0] == ["vm1", "vm2"]
        out = cluster.kubectl("__complete", "unfreeze", "vm", "")
        assert out.stdout.splitlines()[0] == "vm1\tRunning, frozen"
    finally:
        thawed = cluster.kubectl("unfreeze", "vm", "vm1")
    assert thawed.returncode == 0, thawed.stderr
    assert kubectl_complete(cluster, "unfreeze", "vm", "")[0] == []


@pytest.mark.cluster
def test_kubectl_completes_namespaces_contexts_and_other_namespaces_vms(cluster):
    assert "e2e" in kubectl_complete(cluster, "freeze", "vm", "-n", "")[0]
    contexts, _ = kubectl_complete(cluster, "unfreeze", "vm", "--context", "")
    assert {"sim", "admin", "viewer"} <= set(contexts)
    assert kubectl_complete(cluster, "freeze", "vm", "--context", "v")[0] == ["viewer"]
    assert kubectl_complete(cluster, "freeze", "vm", "--context", "viewer", "")[0] == ["vm1", "vm2"]
    namespace = cluster.fresh_namespace()
    cluster.sim.add_vmi(namespace, "other")
    try:
        assert kubectl_complete(cluster, "freeze", "vm", "-n", namespace, "")[0] == ["other"]
        assert kubectl_complete(cluster, "freeze", "status", f"--namespace={namespace}", "o")[0] == ["other"]
    finally:
        cluster.sim.remove_vmi(namespace, "other")
    assert kubectl_complete(cluster, "freeze", "vm", "--context", "nosuch", "") == ([], completion.NO_FILE_COMP)
