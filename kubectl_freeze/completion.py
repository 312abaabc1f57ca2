"""Shell completion for ``kubectl freeze`` and ``kubectl unfreeze``.

One engine, three ways in:

- ``kubectl_complete-freeze`` / ``kubectl_complete-unfreeze`` (console scripts; or the single-file
  executable under that name, e.g. a symlink): kubectl 1.26+ runs them to complete
  ``kubectl freeze ...``, as ``kubectl_complete-freeze ARGS... PARTIAL``, and reads one candidate
  per line (``value<TAB>description``) and then cobra's directive line ``:<n>``.
- ``kubectl freeze completion bash|zsh|fish`` prints a script that completes the plugin's own
  executables (``kubectl-freeze``, ``kubectl-unfreeze`` run directly) through the same helpers.
- The single-file executables' entry points (``zipapp_freeze``/``zipapp_unfreeze``) dispatch on
  the name they were started under.

Subcommands, flags and fixed flag values come from the CLI itself (the click command typer
builds); namespaces, contexts and VM names come from the cluster through ``kubectl`` (it already
knows every way users authenticate), with a short request timeout. ``kubernetes`` is never
imported here. On any error the helper prints only a directive line and exits 0.

This module must stay importable by old Pythons (3.6+: no dataclasses, no newer syntax): the
single-file executables import it first to say which Python they need.
"""

import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

# cobra's ShellCompDirective bits: kubectl turns the helper's last line ":<n>" into one.
DEFAULT = 0
ERROR = 1
NO_SPACE = 2
NO_FILE_COMP = 4

SHELLS = ("bash", "zsh", "fish")
PLUGINS = ("freeze", "unfreeze")
REQUEST_TIMEOUT = "5s"          # per API request made for a completion
KUBECTL_DEADLINE = 10.0         # seconds: the whole kubectl call, whatever it waits for
MIN_PYTHON = (3, 11)            # the bundled dependencies' floor (typer, python-dateutil)
VM_COMMANDS = ("vm", "vmi", "status")
_JSONPATH = '{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\t"}{.status.fsFreezeStatus}{"\\n"}{end}'


class Candidate:
    def __init__(self, value: str, help: str = ""):
        self.value, self.help = value, help

    def __repr__(self) -> str:
        return f"Candidate({self.value!r}, {self.help!r})"

    def line(self) -> str:
        text = " ".join(self.help.split())
        return f"{self.value}\t{text}" if text else self.value


class Words:
    """What the words before the one being completed say."""

    def __init__(self, command, name: Optional[str] = None):
        self.command = command            # the click command reached (the group when none named)
        self.name = name                  # the subcommand's name
        self.values: Dict[str, List[str]] = {}     # option name -> values given
        self.positionals: List[str] = []
        self.pending = None               # an option still waiting for its value
        self.only_args = False            # after "--"
        self.unknown = False              # an unknown subcommand: complete nothing


# -- entry points -------------------------------------------------------------------------------
def main_complete_freeze() -> None:
    sys.exit(complete_main("freeze", sys.argv[1:]))


def main_complete_unfreeze() -> None:
    sys.exit(complete_main("unfreeze", sys.argv[1:]))


def zipapp_freeze() -> None:
    _dispatch("freeze")


def zipapp_unfreeze() -> None:
    _dispatch("unfreeze")


def _dispatch(default: str) -> None:
    """The single-file executables: ``kubectl_complete-<plugin>`` (a symlink to the file) completes,
    any other name runs the plugin."""
    name = os.path.basename(sys.argv[0])
    if name.startswith("kubectl_complete-"):
        sys.exit(complete_main("unfreeze" if name.startswith("kubectl_complete-unfreeze") else "freeze",
                               sys.argv[1:]))
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write("error: kubectl-freeze needs Python %d.%d or newer, and %s is %d.%d; install a newer "
                         "python3 and put it first on PATH\n" % (MIN_PYTHON + (sys.executable or "python3",)
                                                                 + tuple(sys.version_info[:2])))
        sys.exit(1)
    try:
        from . import cli
    except ImportError as exc:
        sys.stderr.write("error: this kubectl-freeze build cannot run on Python %s (%s): %s; see "
                         "'Install' in the README for the platforms and Python versions of the release\n"
                         % (".".join(map(str, sys.version_info[:3])), sys.platform, exc))
        sys.exit(1)
    cli.main_unfreeze() if default == "unfreeze" else cli.main_freeze()


def complete_main(plugin: str, argv: List[str]) -> int:
    """kubectl's plugin-completion protocol: candidates, one a line, then ``:<directive>``."""
    try:
        found, directive = complete(plugin, list(argv))
    except Exception as exc:  # never let a completion break the shell
        _debug(f"kubectl_complete-{plugin} {argv}: {type(exc).__name__}: {exc}")
        found, directive = [], NO_FILE_COMP
    sys.stdout.write("".join(c.line() + "\n" for c in found) + f":{directive}\n")
    sys.stdout.flush()
    return 0


# -- the engine ---------------------------------------------------------------------------------
def root_command(plugin: str):
    """The click command of ``kubectl <plugin>`` (built by typer from cli.py)."""
    import typer

    from . import cli

    return typer.main.get_command(cli.unfreeze_app if plugin == "unfreeze" else cli.freeze_app)


def complete(plugin: str, args: List[str], kubectl=None) -> Tuple[List[Candidate], int]:
    """Candidates for the last of ``args`` (``""`` for a new word), given the words before it."""
    if plugin not in PLUGINS:
        raise ValueError(f"unknown plugin {plugin!r}")
    kubectl = kubectl or run_kubectl
    partial = args[-1] if args else ""
    words = parse_words(root_command(plugin), args[:-1])
    if words.unknown:
        return [], NO_FILE_COMP
    if words.pending is not None:
        return _option_values(words.pending, partial, words, kubectl)
    if partial.startswith("-") and not words.only_args:
        option_text, eq, value = partial.partition("=")
        if eq:
            param = _find_option(words.command, option_text)
            if param is not None and _takes_value(param):
                return _option_values(param, value, words, kubectl)
            return [], NO_FILE_COMP
        return _flags(words, partial), NO_FILE_COMP
    if _is_group(words.command):
        subs = [Candidate(name, _short_help(cmd)) for name, cmd in sorted(words.command.commands.items())
                if not cmd.hidden]
        return _prefixed(subs, partial), NO_FILE_COMP
    if words.name == "completion":
        return _prefixed([Candidate(s) for s in SHELLS], partial) if not words.positionals else [], NO_FILE_COMP
    if words.name in VM_COMMANDS:
        return _vm_names(plugin, words, partial, kubectl), NO_FILE_COMP
    return [], NO_FILE_COMP


def parse_words(root, words: List[str]) -> Words:
    state = Words(command=root, name=None)
    for word in words:
        if state.pending is not None:
            state.values.setdefault(state.pending.name, []).append(word)
            state.pending = None
            continue
        if word == "--" and not state.only_args:
            state.only_args = True
            continue
        if word.startswith("-") and word != "-" and not state.only_args:
            _take_option(state, word)
            continue
        if _is_group(state.command) and state.name is None:
            sub = state.command.commands.get(word)
            if sub is None:
                state.unknown = True
                return state
            state.command, state.name = sub, word
            continue
        state.positionals.append(word)
    return state


def _take_option(state: Words, word: str) -> None:
    text, eq, value = word.partition("=")
    if not eq and not word.startswith("--") and len(word) > 2:
        text, value, eq = word[:2], word[2:], "attached"          # -nNAMESPACE
    param = _find_option(state.command, text)
    if param is None:
        return
    if not _takes_value(param):
        state.values[param.name] = ["true"]
    elif eq:
        state.values.setdefault(param.name, []).append(value)
    else:
        state.pending = param


def _is_group(command) -> bool:
    return hasattr(command, "commands")


def _options(command) -> list:
    return [p for p in command.params if getattr(p, "param_type_name", "") == "option"]


def _find_option(command, text: str):
    for param in _options(command):
        if text in param.opts or text in param.secondary_opts:
            return param
    return None


def _takes_value(param) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def _short_help(command) -> str:
    return first_sentence(command.short_help or (command.help or "").strip().split("\n\n")[0])


def first_sentence(text: str) -> str:
    """Up to the first ". " outside parentheses, on one line: a candidate's description."""
    text = " ".join((text or "").split())
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth <= 0 and text[index + 1:index + 2] in (" ", ""):
            return text[:index]
    return text


def _flags(words: Words, partial: str) -> List[Candidate]:
    found = []
    for param in _options(words.command):
        if param.hidden or (param.name in words.values and not param.multiple):
            continue
        help_text = first_sentence(param.help or "")
        for opt in list(param.opts) + list(param.secondary_opts):
            found.append(Candidate(opt, help_text))
    found.append(Candidate("--help", "Show the help"))
    return _prefixed(found, partial)


def _prefixed(found: List[Candidate], partial: str) -> List[Candidate]:
    return [c for c in found if c.value.startswith(partial)]


def _option_values(param, partial: str, words: Words, kubectl) -> Tuple[List[Candidate], int]:
    from . import cli

    fixed = {"output": cli.FORMATS, "color": cli.COLORS, "method": cli.METHODS}
    if param.name in fixed:
        return _prefixed([Candidate(v) for v in fixed[param.name]], partial), NO_FILE_COMP
    if param.name == "kubeconfig":
        return [], DEFAULT                      # the shell completes file names
    if param.name == "namespace":
        out = kubectl(["get", "namespaces", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}"],
                      words, namespaced=False)
        return _prefixed([Candidate(n) for n in out.split()], partial), NO_FILE_COMP
    if param.name == "context":
        out = kubectl(["config", "get-contexts", "-o", "name"], words, namespaced=False, contextual=False)
        return _prefixed([Candidate(n) for n in out.split()], partial), NO_FILE_COMP
    return [], NO_FILE_COMP


def _vm_names(plugin: str, words: Words, partial: str, kubectl) -> List[Candidate]:
    """freeze: running VMs not frozen yet; unfreeze: frozen VMs; status: every VM."""
    if words.values.get("all_namespaces") or words.values.get("selector"):
        return []                               # names cannot go with -A or -l
    kind, slash, stem = partial.rpartition("/")
    prefix = kind + slash
    given = {w.rpartition("/")[2] for w in words.positionals}
    out = kubectl(["get", "virtualmachineinstances.kubevirt.io", "-o", "jsonpath=" + _JSONPATH], words)
    found = []
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        phase, _, fs_status = rest.partition("\t")
        frozen = fs_status.strip() == "frozen"
        if not name or name in given or not name.startswith(stem):
            continue
        if words.name != "status":
            if plugin == "freeze" and (phase != "Running" or frozen):
                continue
            if plugin == "unfreeze" and not frozen:
                continue
        found.append(Candidate(prefix + name, phase + (", frozen" if frozen else "")))
    return found


# -- kubectl ------------------------------------------------------------------------------------
class CompletionError(Exception):
    pass


def kubectl_path() -> str:
    """The kubectl that asked for this completion (our parent), else the one on PATH."""
    try:
        parent = os.readlink(f"/proc/{os.getppid()}/exe")
        base = os.path.basename(parent)
        if base == "kubectl" or base.startswith("kubectl.") or base.startswith("kubectl1"):
            return parent
    except OSError:
        pass
    found = shutil.which("kubectl")
    if not found:
        raise CompletionError("kubectl is not on PATH")
    return found


def run_kubectl(args: List[str], words: Words, namespaced: bool = True, contextual: bool = True) -> str:
    """Run kubectl with the plugin's own connection flags; its stdout, or CompletionError."""
    cmd = [kubectl_path(), *args]
    values = words.values
    if values.get("kubeconfig"):
        cmd.append("--kubeconfig=" + values["kubeconfig"][-1])
    if contextual:
        if values.get("context"):
            cmd.append("--context=" + values["context"][-1])
        cmd.append("--request-timeout=" + (values.get("request_timeout") or [REQUEST_TIMEOUT])[-1])
    if namespaced and values.get("namespace"):
        cmd.append("--namespace=" + values["namespace"][-1])
    _debug(f"running {cmd}")
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=KUBECTL_DEADLINE)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompletionError(f"kubectl: {exc}") from None
    if done.returncode != 0:
        raise CompletionError(f"kubectl exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _debug(message: str) -> None:
    """Like cobra: append to $BASH_COMP_DEBUG_FILE when it is set."""
    path = os.environ.get("BASH_COMP_DEBUG_FILE")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"[kubectl-freeze] {message}\n")
        except OSError:
            pass


# -- ``kubectl freeze completion SHELL`` ------------------------------------------------------
def add_completion_command(app) -> None:
    """Give the typer ``app`` its ``completion SHELL`` command (cli.py calls this)."""
    import typer

    from .errors import UsageError

    def completion(shell: str = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish.",
                                               show_default=False)) -> int:
        """Print a completion script for the kubectl-freeze and kubectl-unfreeze executables.

        kubectl 1.26+ completes 'kubectl freeze ...' by itself, through kubectl_complete-freeze
        and kubectl_complete-unfreeze; this script is for running the executables directly:

        \b
          bash: source <(kubectl freeze completion bash)
          zsh:  kubectl freeze completion zsh > "${fpath[1]}/_kubectl-freeze"
          fish: kubectl freeze completion fish > ~/.config/fish/completions/kubectl-freeze.fish
        """
        if shell not in SHELLS:
            raise UsageError(f"unknown shell {shell!r}", f"use one of: {', '.join(SHELLS)}")
        sys.stdout.write(script(shell))
        return 0

    app.command("completion", context_settings={"help_option_names": ["-h", "--help"]})(completion)


def script(shell: str) -> str:
    """The completion script for ``shell`` (what completions/ holds)."""
    if shell not in SHELLS:
        raise ValueError(f"unknown shell {shell!r}")
    return _SCRIPTS[shell]


_HEADER = """\
{comment} {shell} completion for kubectl-freeze and kubectl-unfreeze (the plugin's executables run directly).
{comment} Generated by: kubectl freeze completion {shell}
{comment} kubectl 1.26+ completes 'kubectl freeze ...' and 'kubectl unfreeze ...' by itself, through the
{comment} kubectl_complete-freeze and kubectl_complete-unfreeze helpers; this script asks the same helpers.
"""

_BASH = _HEADER.format(comment="#", shell="bash") + r"""
_kubectl_freeze_completion() {
    local cur words cword helper out line directive=0
    local -a lines candidates
    COMPREPLY=()
    if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
        _get_comp_words_by_ref -n =: cur words cword
    else
        # Without bash-completion: split the line up to the cursor on blanks only.
        read -ra words <<<"${COMP_LINE:0:COMP_POINT}"
        [[ ${COMP_LINE:0:COMP_POINT} == *[[:blank:]] ]] && words+=("")
        cword=$(( ${#words[@]} - 1 ))
        cur="${words[cword]}"
    fi
    case "${words[0]##*/}" in
        kubectl-unfreeze) helper=kubectl_complete-unfreeze ;;
        *) helper=kubectl_complete-freeze ;;
    esac
    command -v "$helper" >/dev/null 2>&1 || return 0
    out=$("$helper" "${words[@]:1:cword-1}" "$cur" 2>/dev/null) || return 0
    while IFS= read -r line; do lines+=("$line"); done <<<"$out"      # bash 3.2 has no mapfile
    line="${lines[${#lines[@]}-1]}"
    if [[ $line =~ ^:([0-9]+)$ ]]; then
        directive=${BASH_REMATCH[1]}
        unset 'lines[${#lines[@]}-1]'
    fi
    (( directive & 1 )) && return 0
    for line in "${lines[@]}"; do
        [[ -n $line ]] && candidates+=("${line%%$'\t'*}")
    done
    if (( ${#candidates[@]} == 0 )); then
        if (( directive & 4 )); then
            compopt +o default 2>/dev/null
        fi
        return 0
    fi
    (( directive & 2 )) && compopt -o nospace 2>/dev/null
    if [[ $cur == -*=* ]]; then
        cur="${cur#*=}"
    fi
    local candidate
    for candidate in "${candidates[@]}"; do
        [[ $candidate == "$cur"* ]] && COMPREPLY+=("$candidate")
    done
    # Values with ':' (context names such as EKS ARNs): bash splits words at ':'.
    if declare -F __ltrim_colon_completions >/dev/null 2>&1; then
        __ltrim_colon_completions "$cur"
    fi
}
complete -o default -F _kubectl_freeze_completion kubectl-freeze kubectl-unfreeze
"""

_ZSH = "#compdef kubectl-freeze kubectl-unfreeze\n" + _HEADER.format(comment="#", shell="zsh") + r"""
_kubectl_freeze_completion() {
    local helper=kubectl_complete-freeze out last directive=0 prefix=""
    local -a lines comps args
    [[ ${words[1]:t} == kubectl-unfreeze ]] && helper=kubectl_complete-unfreeze
    (( $+commands[$helper] )) || return 1
    args=("${(@Q)words[2,CURRENT-1]}" "${(Q)words[CURRENT]}")
    out=$("$helper" "${args[@]}" 2>/dev/null) || return 1
    lines=("${(@f)out}")
    last=${lines[-1]}
    if [[ $last == :<-> ]]; then
        directive=${last#:}
        lines[-1]=()
    fi
    (( directive & 1 )) && return 1
    if [[ ${words[CURRENT]} == -*=* ]]; then
        prefix=${words[CURRENT]%%=*}=
    fi
    local line value desc
    for line in "${lines[@]}"; do
        [[ -z $line ]] && continue
        value=${line%%$'\t'*}
        desc=${line#*$'\t'}
        [[ $desc == $line ]] && desc=""
        value=${value//:/\\:}
        comps+=("${value}${desc:+:$desc}")
    done
    if (( ${#comps} )); then
        local -a opts
        (( directive & 2 )) && opts+=(-S '')
        [[ -n $prefix ]] && opts+=(-P "$prefix")
        _describe -t values 'completions' comps "${opts[@]}"
    elif (( ! (directive & 4) )); then
        _files
    else
        return 1
    fi
}

if [[ $funcstack[1] == _kubectl_freeze_completion || $funcstack[1] == _kubectl-freeze ]]; then
    _kubectl_freeze_completion "$@"
else
    compdef _kubectl_freeze_completion kubectl-freeze kubectl-unfreeze
fi
"""

_FISH = _HEADER.format(comment="#", shell="fish") + r"""
function __kubectl_freeze_completion
    set -l tokens (commandline -xpc 2>/dev/null; or commandline -opc)    # -o is deprecated in fish 4
    set -l current (commandline -ct)
    set -l helper kubectl_complete-freeze
    if test (string replace -r '.*/' '' -- $tokens[1]) = kubectl-unfreeze
        set helper kubectl_complete-unfreeze
    end
    command -q $helper; or return
    set -l lines ($helper $tokens[2..-1] $current 2>/dev/null)
    set -l directive 0
    if test (count $lines) -gt 0; and string match -qr '^:[0-9]+$' -- $lines[-1]
        set directive (string sub -s 2 -- $lines[-1])
        set -e lines[-1]
    end
    if test (math "bitand($directive, 1)") -ne 0
        return
    end
    if test (count $lines) -eq 0
        if test (math "bitand($directive, 4)") -eq 0
            __fish_complete_path $current
        end
        return
    end
    set -l prefix (string match -r -- '^-[^=]*=' $current)
    for line in $lines
        printf '%s%s\n' "$prefix" $line
    end
end

complete -c kubectl-freeze -f -a '(__kubectl_freeze_completion)'
complete -c kubectl-unfreeze -f -a '(__kubectl_freeze_completion)'
"""

_SCRIPTS = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}
