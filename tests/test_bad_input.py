"""Bad input (issue 11): each row runs the real kubectl, which runs the plugin, against the test world
(the simulator with the real guests e2e/vm1 and e2e/vm2), and must end with

- its documented exit code (2 for usage: nothing is sent to the cluster at all);
- exactly one line on stderr, `error: ...`, saying what was wrong; nothing on stdout; no traceback;
- the API server's audit log showing no request that could change anything (no POST/PUT/PATCH/DELETE,
  no exec, no freeze/unfreeze, no Event), and for usage errors no request at all;
- both guests still thawed, as their guest agents say (read through libvirt, not through the plugin);
- no shell ever run on what was typed: shell metacharacters that would create a file do not.

`freeze run` rows are skipped while the plugin has no `run` subcommand (`kubectl freeze run --help`
fails); its CLI: `kubectl freeze run VM... | -l SELECTOR [-n NS | -A] [--unfreeze-timeout D]
[--max-window D] [-o ...] -- COMMAND [ARGS...]`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubectl_freeze.errors import EXIT_CODES, EXIT_FAILED, EXIT_USAGE
from tests.conftest import KUBECTL

pytestmark = pytest.mark.cluster

# `freeze run`'s own code for a freeze that failed (COMMAND not run); see issue 11.
EXIT_RUN_FREEZE_FAILED = 125
PWNED = "pwned"        # the file a shell would create if one ever ran what was typed


@dataclass(frozen=True)
class Case:
    """One bad input. `{dir}` in args and env is the folder of the test's own files (kubeconfigs
    of every broken kind, a file that is not executable...). `says`: text the error line must hold
    ("" for `freeze run` messages, which its author words)."""

    id: str
    args: tuple[str, ...]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def needs_run(self) -> bool:
        return self.args[:2] == ("freeze", "run")


def case(id: str, command: str, *args: str, code: int = EXIT_USAGE, says: str = "", **env: str) -> Case:
    return Case(id, (*command.split(), *args), code, says, env)


LONG_NAME = "a" * 254
CASES = [
    # ----- freeze vm: names ------------------------------------------------------------------------
    case("freeze vm: a name with upper case and '_'", "freeze vm", "Bad_Name", says="invalid name 'Bad_Name'"),
    case("freeze vm: a name 'vm1;rm -rf /'", "freeze vm", "vm1;rm -rf /", says="invalid name 'vm1;rm -rf /'"),
    case("freeze vm: a name '$(touch pwned)'", "freeze vm", f"$(touch {{dir}}/{PWNED})", says="invalid name"),
    case("freeze vm: a name in backticks", "freeze vm", f"`touch {{dir}}/{PWNED}`", says="invalid name"),
    case("freeze vm: a name of 254 characters", "freeze vm", LONG_NAME, says="invalid name"),
    case("freeze vm: a name starting with '-'", "freeze vm", "--", "-vm1", says="invalid name '-vm1'"),
    case("freeze vm: a name with a newline in it", "freeze vm", "vm1\nvm2", says="invalid name 'vm1\\nvm2'"),
    case("freeze vm: a name with a terminal escape", "freeze vm", "\x1b[2Jvm1", says="invalid name '\\x1b[2Jvm1'"),
    case("freeze vm: a bad name with -q (errors are never quiet)", "freeze vm", "Bad_Name", "-q",
         says="invalid name"),
    case("freeze vm: pod/NAME is not a VM", "freeze vm", "pod/vm1", says="'pod' is not a VM kind"),
    case("freeze vm: no VM and no selector", "freeze vm", says="no VM given"),
    # ----- freeze vm: namespace, kubeconfig, context -------------------------------------------------
    case("freeze vm: a namespace that does not exist", "freeze vm", "vm1", "-n", "ghost-ns", code=EXIT_FAILED,
         says="VirtualMachineInstance 'vm1' not found in namespace 'ghost-ns'"),
    case("freeze vm: a namespace with '_' in it", "freeze vm", "vm1", "-n", "Bad_NS", says="invalid namespace"),
    case("freeze vm: a namespace 'e2e;id'", "freeze vm", "vm1", "-n", "e2e;id", says="invalid namespace 'e2e;id'"),
    case("freeze vm: --kubeconfig names no file", "freeze vm", "vm1", "--kubeconfig", "{dir}/missing",
         says="no such file"),
    case("freeze vm: KUBECONFIG names no file", "freeze vm", "vm1", code=EXIT_FAILED, says="no kubeconfig found",
         KUBECONFIG="{dir}/missing"),
    case("freeze vm: a kubeconfig that is not YAML", "freeze vm", "vm1", "--kubeconfig", "{dir}/broken.yaml",
         says="cannot read kubeconfig"),
    case("freeze vm: a kubeconfig that is a YAML list", "freeze vm", "vm1", "--kubeconfig", "{dir}/list.yaml",
         says="is not a kubeconfig"),
    case("freeze vm: a kubeconfig that is a binary file", "freeze vm", "vm1", "--kubeconfig", "{dir}/binary.yaml",
         says="cannot read kubeconfig"),
    case("freeze vm: a kubeconfig whose clusters is a number", "freeze vm", "vm1",
         "--kubeconfig", "{dir}/wrong-types.yaml", says="'clusters' is not a list"),
    case("freeze vm: a kubeconfig context without its cluster", "freeze vm", "vm1",
         "--kubeconfig", "{dir}/no-cluster.yaml", says="kubeconfig context 'c' is unusable"),
    case("freeze vm: an unknown --context", "freeze vm", "vm1", "--context", "nope",
         says="context 'nope' is not in the kubeconfig"),
    # ----- freeze vm: durations --------------------------------------------------------------------
    case("freeze vm: --unfreeze-timeout abc", "freeze vm", "vm1", "--unfreeze-timeout", "abc",
         says="--unfreeze-timeout 'abc' is not a duration"),
    case("freeze vm: --unfreeze-timeout -5m", "freeze vm", "vm1", "--unfreeze-timeout=-5m",
         says="--unfreeze-timeout '-5m' is negative"),
    case("freeze vm: --unfreeze-timeout 5mm", "freeze vm", "vm1", "--unfreeze-timeout", "5mm",
         says="uses the unit 'mm'"),
    case("freeze vm: --unfreeze-timeout 2d", "freeze vm", "vm1", "--unfreeze-timeout", "2d", says="unit 'd'"),
    case("freeze vm: --unfreeze-timeout 0 without --no-safety-thaw", "freeze vm", "vm1", "--unfreeze-timeout", "0",
         says="add --no-safety-thaw to confirm"),
    case("freeze vm: --unfreeze-timeout 600000h overflows KubeVirt's int32 seconds", "freeze vm", "vm1",
         "--unfreeze-timeout", "600000h", says="KubeVirt can"),
    case("freeze vm: --no-safety-thaw with --unfreeze-timeout 5m", "freeze vm", "vm1", "--no-safety-thaw",
         "--unfreeze-timeout", "5m", says="--no-safety-thaw conflicts"),
    case("freeze vm: --timeout 0", "freeze vm", "vm1", "--timeout", "0", says="--timeout must be more than 0"),
    case("freeze vm: --timeout 100000000h, longer than Go durations go", "freeze vm", "vm1", "--method", "api",
         "--no-wait", "--timeout", "100000000h", says="--timeout '100000000h' is longer than a Go duration"),
    case("freeze vm: --request-timeout xyz", "freeze vm", "vm1", "--request-timeout", "xyz",
         says="--request-timeout 'xyz' is not a duration"),
    # ----- freeze vm: selectors and other flags ----------------------------------------------------
    case("freeze vm: names with -l", "freeze vm", "vm1", "-l", "tier=db", says="not both"),
    case("freeze vm: a selector with an unclosed '('", "freeze vm", "-l", "tier in (db", says="invalid label selector"),
    case("freeze vm: a selector 'tier=$(id)'", "freeze vm", "-l", "tier=$(id)", says="invalid label selector"),
    case("freeze vm: a selector ending in ','", "freeze vm", "-l", "tier=db,", says="invalid label selector"),
    case("freeze vm: -o xml", "freeze vm", "vm1", "-o", "xml", says="unknown output format 'xml'"),
    case("freeze vm: --method magic", "freeze vm", "vm1", "--method", "magic", says="unknown method 'magic'"),
    case("freeze vm: --parallel 0", "freeze vm", "vm1", "--parallel", "0", says="--parallel must be at least 1"),
    case("freeze vm: --parallel abc", "freeze vm", "vm1", "--parallel", "abc", says="Invalid value for '--parallel'"),
    case("freeze vm: a relative --mountpoint", "freeze vm", "vm1", "--mountpoint", "data",
         says="is not an absolute guest path"),
    case("freeze vm: --mountpoint with --method api", "freeze vm", "vm1", "--mountpoint", "/mnt/data1",
         "--method", "api", says="--mountpoint works only with the bundled freezer"),
    case("freeze vm: --color sometimes", "freeze vm", "vm1", "--color", "sometimes", says="--color 'sometimes'"),
    case("freeze vm: -A (freeze vm takes -n)", "freeze vm", "-l", "tier=db", "-A", says="No such option: -A"),
    case("freeze vm: an unknown flag", "freeze vm", "vm1", "--force", says="No such option: --force"),
    case("freeze: an unknown subcommand", "freeze pod", "vm1", says="No such command 'pod'; see"),
    # ----- unfreeze vm -----------------------------------------------------------------------------
    case("unfreeze vm: a name 'vm1;reboot'", "unfreeze vm", "vm1;reboot", says="invalid name"),
    case("unfreeze vm: a name '$(touch pwned)'", "unfreeze vm", f"$(touch {{dir}}/{PWNED})", says="invalid name"),
    case("unfreeze vm: a namespace that does not exist", "unfreeze vm", "vm1", "-n", "ghost-ns", code=EXIT_FAILED,
         says="not found in namespace 'ghost-ns'"),
    case("unfreeze vm: no VM and no selector", "unfreeze vm", says="no VM given"),
    case("unfreeze vm: names with -l", "unfreeze vm", "vm1", "-l", "tier=db", says="not both"),
    case("unfreeze vm: --unfreeze-timeout (freeze only)", "unfreeze vm", "vm1", "--unfreeze-timeout", "5m",
         says="No such option: --unfreeze-timeout"),
    case("unfreeze vm: --timeout -5m", "unfreeze vm", "vm1", "--timeout=-5m", says="--timeout '-5m' is negative"),
    case("unfreeze vm: --request-timeout of 10^20 seconds", "unfreeze vm", "vm1", "--request-timeout",
         "99999999999999999999", says="longer than a Go duration"),
    case("unfreeze vm: -o bogus", "unfreeze vm", "vm1", "-o", "bogus", says="unknown output format 'bogus'"),
    case("unfreeze vm: an unknown --context", "unfreeze vm", "vm1", "--context", "nope", says="context 'nope'"),
    case("unfreeze vm: a kubeconfig that is not YAML, from KUBECONFIG", "unfreeze vm", "vm1",
         says="cannot read kubeconfig", KUBECONFIG="{dir}/broken.yaml"),
    # ----- freeze status ---------------------------------------------------------------------------
    case("freeze status: names with -A", "freeze status", "vm1", "-A", says="names cannot be given with -A"),
    case("freeze status: -A with -n", "freeze status", "-A", "-n", "e2e", says="-A and -n conflict"),
    case("freeze status: names with -l", "freeze status", "vm1", "-l", "tier=db", says="not both"),
    case("freeze status: a selector '!!x'", "freeze status", "-l", "!!x", says="invalid label selector '!!x'"),
    case("freeze status: -o jsonpath", "freeze status", "-o", "jsonpath", says="unknown output format 'jsonpath'"),
    case("freeze status: a VM in a namespace that does not exist", "freeze status", "vm1", "-n", "ghost-ns",
         code=EXIT_FAILED, says="not found in namespace 'ghost-ns'"),
    case("freeze status: a name '`id`'", "freeze status", "`id`", says="invalid name '`id`'"),
    case("freeze status: --request-timeout 100000000h", "freeze status", "--request-timeout", "100000000h",
         says="longer than a Go duration"),
    case("freeze status: --parallel 0", "freeze status", "--live", "--parallel", "0", says="--parallel must be"),
    case("freeze status: a kubeconfig that is a YAML list, from KUBECONFIG", "freeze status",
         says="is not a kubeconfig", KUBECONFIG="{dir}/list.yaml"),
    # ----- freeze run ------------------------------------------------------------------------------
    case("freeze run: no '--' before COMMAND", "freeze run", "vm1", "true"),
    case("freeze run: '--' without COMMAND", "freeze run", "vm1", "--"),
    case("freeze run: no '--' and no COMMAND", "freeze run", "vm1"),
    case("freeze run: no VM and no selector", "freeze run", "--", "true"),
    case("freeze run: a COMMAND that does not exist", "freeze run", "vm1", "--", "{dir}/no-such-backup-tool"),
    case("freeze run: a COMMAND that is not executable", "freeze run", "vm1", "--", "{dir}/not-executable"),
    case("freeze run: a COMMAND that is a directory", "freeze run", "vm1", "--", "{dir}"),
    case("freeze run: a shell line as COMMAND is not given to a shell", "freeze run", "vm1", "--",
         f"touch {{dir}}/{PWNED}; true"),
    case("freeze run: a name 'vm1;rm -rf /'", "freeze run", "vm1;rm -rf /", "--", "true", says="invalid name"),
    case("freeze run: names with -l", "freeze run", "vm1", "-l", "tier=db", "--", "true"),
    case("freeze run: names with -A", "freeze run", "vm1", "-A", "--", "true"),
    case("freeze run: -A with -n", "freeze run", "-l", "tier=db", "-A", "-n", "e2e", "--", "true"),
    case("freeze run: a bad selector", "freeze run", "-l", "tier in (db", "--", "true", says="invalid label selector"),
    case("freeze run: --max-window abc", "freeze run", "vm1", "--max-window", "abc", "--", "true",
         says="--max-window"),
    case("freeze run: --max-window -5m", "freeze run", "vm1", "--max-window=-5m", "--", "true", says="--max-window"),
    case("freeze run: --max-window 0", "freeze run", "vm1", "--max-window", "0", "--", "true", says="--max-window"),
    case("freeze run: --unfreeze-timeout 5mm", "freeze run", "vm1", "--unfreeze-timeout", "5mm", "--", "true",
         says="--unfreeze-timeout '5mm'"),
    case("freeze run: --unfreeze-timeout not longer than --max-window", "freeze run", "vm1", "--max-window", "5m",
         "--unfreeze-timeout", "1m", "--", "true", says="--unfreeze-timeout"),
    case("freeze run: --unfreeze-timeout 600000h overflows KubeVirt's int32 seconds", "freeze run", "vm1",
         "--unfreeze-timeout", "600000h", "--", "true", says="--unfreeze-timeout"),
    case("freeze run: --max-window 600000h overflows KubeVirt's int32 seconds (api: unfreezeTimeout)", "freeze run",
         "vm1", "--max-window", "600000h", "--", "true", says="--max-window"),
    case("freeze run: -A without -l", "freeze run", "-A", "--", "true"),
    case("freeze run: -o xml", "freeze run", "vm1", "-o", "xml", "--", "true", says="unknown output format 'xml'"),
    case("freeze run: --kubeconfig names no file", "freeze run", "vm1", "--kubeconfig", "{dir}/missing", "--",
         "true", says="no such file"),
    case("freeze run: a VM in a namespace that does not exist", "freeze run", "vm1", "-n", "ghost-ns", "--", "true",
         code=EXIT_RUN_FREEZE_FAILED, says="not found in namespace 'ghost-ns'"),
]

# What the files under {dir} hold (everything else there is made by `bad_files`).
KUBECONFIGS = {
    "broken.yaml": "apiVersion: v1\nkind: Config\nclusters: [\n  - {name: x\n",
    "list.yaml": "- just\n- a list\n",
    "wrong-types.yaml": "apiVersion: v1\nkind: Config\nclusters: 5\ncontexts: []\n",
    "no-cluster.yaml": ("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n"
                        "  context: {cluster: missing, user: u}\nusers:\n- name: u\n  user: {token: abc}\n"),
}


def _has_run_subcommand() -> bool:
    plugin = Path(sys.executable).parent / "kubectl-freeze"
    return subprocess.run([str(plugin), "run", "--help"], capture_output=True, timeout=60).returncode == 0


HAS_RUN = _has_run_subcommand()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    for name, text in KUBECONFIGS.items():
        (folder / name).write_text(text)
    (folder / "binary.yaml").write_bytes(Path(sys.executable).resolve().read_bytes()[:4096])
    (folder / "not-executable").write_text("#!/bin/sh\nexit 0\n")
    (folder / "not-executable").chmod(0o644)
    return folder


def _expand(text: str, folder: Path) -> str:
    return text.replace("{dir}", str(folder))


def run_case(cluster, c: Case, folder: Path) -> subprocess.CompletedProcess:
    env = {**cluster.env(), **{k: _expand(v, folder) for k, v in c.env.items()}}
    return subprocess.run([KUBECTL, *(_expand(a, folder) for a in c.args)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=folder)


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id, marks=pytest.mark.skipif(
    c.needs_run and not HAS_RUN, reason="the plugin has no `freeze run` yet")) for c in CASES])
def test_bad_input_gives_one_error_line_its_exit_code_and_changes_nothing(cluster, bad_files, c):
    audit = cluster.sim.server.audit
    mark = audit.mark()
    out = run_case(cluster, c, bad_files)
    sent = audit.since(mark)
    trace = "\n".join(e.line() for e in sent)
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr:\n{out.stderr}"
    assert c.says in lines[0]
    assert out.stdout == ""
    assert out.returncode == c.code, f"exit {out.returncode}: {lines[0]}"
    assert c.code in EXIT_CODES or c.needs_run
    assert [e for e in sent if e.changes] == [], f"requests that change something:\n{trace}"
    if c.code == EXIT_USAGE:
        assert sent == [], f"a usage error sent requests:\n{trace}"
    assert not (bad_files / PWNED).exists(), "a shell ran what was typed"
    for name, guest in cluster.guests.items():
        assert guest.agent_status() == "thawed", f"{name} is frozen"


def test_the_table_covers_each_command_with_at_least_30_cases():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    commands = {" ".join(c.args[:2]) for c in CASES}
    assert {"freeze vm", "unfreeze vm", "freeze status", "freeze run"} <= commands
