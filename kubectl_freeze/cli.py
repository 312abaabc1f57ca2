"""Command line of ``kubectl freeze`` and ``kubectl unfreeze`` (typer).

Only this module knows about flags. It validates all input before anything is sent to the
cluster, then hands over: config (pin context/namespace) -> targets (read + preflight) ->
runner (methods, watch, events) -> output. ``kubernetes`` is imported inside the commands
only, so ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Annotated, List, Optional

import typer

from . import __version__
from .errors import EXIT_CODES, EXIT_FAILED, EXIT_USAGE, PluginError, UsageError, format_error_line

METHODS = ("auto", "freezer", "virt-freezer", "api")
FORMATS = ("table", "wide", "json", "yaml", "name")
COLORS = ("auto", "always", "never")
DEFAULT_UNFREEZE_TIMEOUT = "5m"
DEFAULT_TIMEOUT = "2m"
SHORT_SAFETY_THAW_S = 30
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODES_HELP = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items()) + "."


def _app(name: str, help_text: str) -> typer.Typer:
    return typer.Typer(
        name=name,
        help=help_text,
        epilog=EXIT_CODES_HELP,
        add_completion=False,
        context_settings=CONTEXT,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


freeze_app = _app("freeze", "Freeze KubeVirt guest filesystems for a consistent backup, and show freeze status.")
unfreeze_app = _app("unfreeze", "Thaw KubeVirt guest filesystems frozen with kubectl freeze (or by anything else).")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kubectl-freeze {__version__}")
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
]


@freeze_app.callback()
def _freeze_root(version: VersionOpt = False) -> None:
    """Freeze KubeVirt guest filesystems for a consistent backup, and show freeze status."""


@unfreeze_app.callback()
def _unfreeze_root(version: VersionOpt = False) -> None:
    """Thaw KubeVirt guest filesystems frozen with kubectl freeze (or by anything else)."""


# -- options shared by every command ----------------------------------------------------------------
Names = Annotated[Optional[List[str]], typer.Argument(metavar="NAME", help="VM names (or vm/NAME).",
                                                     show_default=False)]
Namespace = Annotated[Optional[str], typer.Option("-n", "--namespace", metavar="NAMESPACE",
                                                  help="Namespace (default: the context's, else 'default').")]
Context = Annotated[Optional[str], typer.Option("--context", metavar="NAME", help="kubeconfig context to use.")]
Kubeconfig = Annotated[Optional[str], typer.Option("--kubeconfig", metavar="PATH",
                                                   help="kubeconfig file (default: $KUBECONFIG, a ':' list, "
                                                        "else ~/.kube/config; in a pod: its service account).")]
RequestTimeout = Annotated[Optional[str], typer.Option("--request-timeout", metavar="DURATION",
                                                       help="Timeout of each API request (e.g. 10s; 0 = none).")]
Output = Annotated[str, typer.Option("-o", "--output", metavar="FORMAT", help="table|wide|json|yaml|name.")]
NoHeaders = Annotated[bool, typer.Option("--no-headers", help="Print tables without the header line.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress messages on stderr.")]
Color = Annotated[str, typer.Option("--color", metavar="WHEN",
                                    help="auto|always|never (auto: only on a terminal, and not with NO_COLOR).")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Show a traceback when something fails.")]
Selector = Annotated[Optional[str], typer.Option("-l", "--selector", metavar="SELECTOR",
                                                 help="Label selector instead of names (e.g. app=db).")]
Method = Annotated[str, typer.Option("--method", metavar="METHOD",
                                     help="auto|freezer|virt-freezer|api. auto: the bundled freezer when the "
                                          "launcher has python3 with libvirt, else /usr/bin/virt-freezer, else "
                                          "the subresource API (also when exec is forbidden).")]
Timeout = Annotated[str, typer.Option("--timeout", metavar="DURATION",
                                      help="Give up waiting for the result after this long (whole run).")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Do not wait for the VMI status to confirm.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan (pod, method, command or request); "
                                                        "change nothing.")]
Parallel = Annotated[int, typer.Option("--parallel", metavar="N", help="How many VMs to handle at once.")]
SkipPaused = Annotated[bool, typer.Option("--skip-paused", help=(
    "Leave paused VMs alone instead of refusing the run, and report each as skipped: a paused guest writes "
    "nothing, but it is not flushed, so its snapshot is crash-consistent only. An unfreeze skips a paused VM "
    "only when its VMI status does not show it frozen."))]


@dataclass
class Common:
    namespace: Optional[str]
    context: Optional[str]
    kubeconfig: Optional[str]
    request_timeout: Optional[str]
    output: str
    no_headers: bool
    quiet: bool
    color: str
    verbose: bool

    def validate(self) -> str:
        fmt = self.output.lower()
        if fmt not in FORMATS:
            raise UsageError(f"unknown output format {self.output!r}", f"use one of: {', '.join(FORMATS)}")
        if self.color not in COLORS:
            raise UsageError(f"--color {self.color!r} is not one of {', '.join(COLORS)}")
        from .config import parse_request_timeout, validate_namespace

        parse_request_timeout(self.request_timeout)
        if self.namespace is not None:
            validate_namespace(self.namespace)
        return fmt

    def printer(self):
        from .output import Printer

        return Printer(self.color, self.quiet)

    def cluster(self):
        from .config import resolve

        return resolve(self.kubeconfig, self.context, self.namespace, self.request_timeout)


def _check_names(names: Optional[List[str]], selector: Optional[str], command: str) -> list[str]:
    from .targets import check_selector, parse_names

    parsed = parse_names(names or [])
    if parsed and selector:
        raise UsageError("give VM names or -l SELECTOR, not both")
    if not parsed and not selector:
        raise UsageError("no VM given", f"name one or more (kubectl {command} vm NAME...) or use -l SELECTOR")
    if selector is not None and not selector.strip():
        raise UsageError("-l needs a selector", "e.g. -l app=db")
    if selector:
        check_selector(selector)
    return parsed


def _check_common_action(method: str, parallel: int, timeout: str):
    from .durations import parse_duration

    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}", f"use one of: {', '.join(METHODS)}")
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, not {parallel}")
    wait = parse_duration(timeout, "--timeout")
    if wait.total_seconds() <= 0:
        raise UsageError("--timeout must be more than 0", "use --no-wait to skip waiting for the VMI status")
    return wait


def _safety_thaw(unfreeze_timeout: Optional[str], no_safety_thaw: bool):
    from datetime import timedelta

    from .durations import check_kubevirt_seconds, parse_duration, whole_seconds

    if no_safety_thaw:
        if unfreeze_timeout is not None and parse_duration(unfreeze_timeout, "--unfreeze-timeout").total_seconds():
            raise UsageError("--no-safety-thaw conflicts with a non-zero --unfreeze-timeout", "give only one")
        return timedelta(0)
    value = parse_duration(unfreeze_timeout or DEFAULT_UNFREEZE_TIMEOUT, "--unfreeze-timeout")
    if value.total_seconds() == 0:
        raise UsageError(
            "--unfreeze-timeout 0 disables the safety thaw: the guest stays frozen until someone thaws it",
            "add --no-safety-thaw to confirm, or give a duration such as 5m",
        )
    if value.total_seconds() < 1:
        raise UsageError(f"--unfreeze-timeout {unfreeze_timeout} is shorter than a second", "give e.g. 30s or 5m")
    check_kubevirt_seconds(value, "--unfreeze-timeout", unfreeze_timeout)
    # Whole seconds, rounded up: KubeVirt cuts fractions, and every method reports the same deadline.
    return timedelta(seconds=whole_seconds(value))


def _check_mountpoints(mountpoints: Optional[List[str]], method: str) -> list[str]:
    points = list(mountpoints or [])
    for point in points:
        if not point.startswith("/"):
            raise UsageError(f"--mountpoint {point!r} is not an absolute guest path", "e.g. --mountpoint /var/lib/db")
    if points and method in ("virt-freezer", "api"):
        raise UsageError(f"--mountpoint works only with the bundled freezer, not --method {method}",
                         "use --method freezer (or auto), or drop --mountpoint")
    return points


def _act(action: str, names, selector, common: Common, method: str, timeout: str, no_wait: bool, dry_run: bool,
         parallel: int, unfreeze_timeout: Optional[str] = None, no_safety_thaw: bool = False,
         mountpoints: Optional[List[str]] = None, skip_paused: bool = False) -> int:
    """freeze vm / unfreeze vm: validate everything, then resolve, act, report."""
    fmt = common.validate()
    command = "freeze" if action == "freeze" else "unfreeze"
    parsed = _check_names(names, selector, command)
    wait_for = _check_common_action(method, parallel, timeout)
    from datetime import timedelta

    safety = _safety_thaw(unfreeze_timeout, no_safety_thaw) if action == "freeze" else timedelta(0)
    points = _check_mountpoints(mountpoints, method) if action == "freeze" else []

    printer = common.printer()
    if action == "freeze" and not no_wait and 0 < safety.total_seconds() < SHORT_SAFETY_THAW_S:
        # KubeVirt's status poll (5 s) may confirm the freeze only after the guest thawed itself.
        printer.warn(f"--unfreeze-timeout {unfreeze_timeout} is shorter than KubeVirt's status updates may "
                     f"take to confirm the freeze: the safety thaw may come first (give 30s or more)")
    cluster = common.cluster()

    from . import output
    from .events import who
    from .kube import Kube
    from .methods import Options
    from .runner import Runner, RunOptions, summary_error
    from .targets import resolve_targets

    kube = Kube(cluster)
    try:
        started = time.monotonic()
        targets = resolve_targets(kube, cluster.namespace, parsed, selector, action, skip_paused=skip_paused)
        resolve_ms = int((time.monotonic() - started) * 1000)
        for target in targets:
            for warning in target.warnings:
                printer.warn(warning)
        opts = RunOptions(action=action, method=method, options=Options(safety, points), timeout=wait_for,
                          wait=not no_wait, dry_run=dry_run, parallel=parallel, who=who(cluster.user))
        report = Runner(kube, opts, printer.progress).run(targets)
        for result in report.results:
            result.timings = {"resolveMs": resolve_ms, **result.timings}
            for warning in result.warnings[len(result.target.warnings):]:
                printer.warn(warning)
    finally:
        kube.close()

    data = report.to_dict()
    if fmt in ("json", "yaml"):
        printer.data(output.dump(data, fmt))
    elif dry_run:
        printer.data(output.plan_text(data))
    elif fmt == "name":
        printer.data(output.names([i for i in data["items"] if i["ok"]]))
    elif len(data["items"]) > 1 or data["items"][0]["ok"] or data["items"][0]["result"] == "unconfirmed" \
            or data["items"][0].get("held") is False:
        printer.data(output.report_table(data, wide=fmt == "wide", no_headers=common.no_headers,
                                         color=printer.color_out))
    error = summary_error(report)
    if error:
        printer.error(error)
    return report.exit_code


_COMMON_OPTIONS = (
    ("namespace", Namespace, None),
    ("context", Context, None),
    ("kubeconfig", Kubeconfig, None),
    ("request_timeout", RequestTimeout, None),
    ("output", Output, "table"),
    ("no_headers", NoHeaders, False),
    ("quiet", Quiet, False),
    ("color", Color, "auto"),
    ("verbose", Verbose, False),
)


def with_common_options(func):
    """Give a command the flags every command takes (kubectl-style: accepted after the subcommand);
    the command receives them as one ``common: Common`` argument."""
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "common"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, annotation, default in _COMMON_OPTIONS]

    @functools.wraps(func)
    def command(**kwargs):
        common = Common(**{name: kwargs.pop(name) for name, _, _ in _COMMON_OPTIONS})
        return func(common=common, **kwargs)

    command.__signature__ = signature.replace(parameters=own + extra)
    command.__annotations__ = {p.name: p.annotation for p in own + extra}
    return command


# -- kubectl freeze vm ----------------------------------------------------------------------------
@with_common_options
def freeze_vm(
    names: Names = None,
    selector: Selector = None,
    unfreeze_timeout: Annotated[Optional[str], typer.Option(
        "--unfreeze-timeout", metavar="DURATION",
        help=f"Safety thaw: thaw by itself after this long (Go duration, default {DEFAULT_UNFREEZE_TIMEOUT}; "
             "rounded up to whole seconds, at most 2147483647s as KubeVirt keeps it). "
             "0 needs --no-safety-thaw.")] = None,
    no_safety_thaw: Annotated[bool, typer.Option(
        "--no-safety-thaw", help="Arm no safety thaw: the guest stays frozen until kubectl unfreeze.")] = False,
    mountpoint: Annotated[Optional[List[str]], typer.Option(
        "--mountpoint", metavar="PATH", help="Freeze only this guest mountpoint (repeatable; bundled freezer "
                                             "only).")] = None,
    method: Method = "auto",
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_wait: NoWait = False,
    dry_run: DryRun = False,
    parallel: Parallel = 4,
    skip_paused: SkipPaused = False,
    common: Optional[Common] = None,
) -> int:
    """Freeze the filesystems of running VMs (all or none).

    Returns once the VMI status shows them frozen. If any VM fails, the ones this run froze are
    thawed again. A safety thaw (default 5m) thaws the guest if nobody does.
    """
    return _act("freeze", names, selector, common, method, timeout, no_wait, dry_run, parallel,
                unfreeze_timeout, no_safety_thaw, mountpoint, skip_paused)


@with_common_options
def unfreeze_vm(
    names: Names = None,
    selector: Selector = None,
    method: Method = "auto",
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_wait: NoWait = False,
    dry_run: DryRun = False,
    parallel: Parallel = 4,
    skip_paused: SkipPaused = False,
    common: Optional[Common] = None,
) -> int:
    """Thaw the filesystems of VMs; returns once the VMI status no longer shows them frozen."""
    return _act("unfreeze", names, selector, common, method, timeout, no_wait, dry_run, parallel,
                skip_paused=skip_paused)


@with_common_options
def freeze_status(
    names: Names = None,
    selector: Selector = None,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces", help="VMs of every namespace.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Also ask each guest agent through the bundled freezer "
                                                      "(the VMI status only reflects polls).")] = False,
    parallel: Parallel = 4,
    common: Optional[Common] = None,
) -> int:
    """Show the freeze state of VMs: phase, guest agent, freeze status, since when, node, pod.

    One VM gives a detailed view.
    """
    fmt = common.validate()
    from .targets import check_selector, parse_names

    parsed = parse_names(names or [])
    if parsed and selector:
        raise UsageError("give VM names or -l SELECTOR, not both")
    if selector:
        check_selector(selector)
    if parsed and all_namespaces:
        raise UsageError("names cannot be given with -A", "drop -A or give -n NAMESPACE")
    if all_namespaces and common.namespace is not None:
        raise UsageError("-A and -n conflict", "give -n NAMESPACE or -A, not both")
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, not {parallel}")
    printer = common.printer()
    cluster = common.cluster()

    from . import output as out
    from .kube import Kube
    from .status import add_live, gather, public

    kube = Kube(cluster)
    try:
        rows = gather(kube, cluster.namespace, all_namespaces, parsed, selector)
        if live and rows:
            add_live(kube, rows, parallel)
    finally:
        kube.close()
    items = [public(r) for r in rows]
    if fmt in ("json", "yaml"):
        printer.data(out.dump({"kind": "FreezeStatusList", "items": items}, fmt))
    elif fmt == "name":
        printer.data(out.names(items))
    elif not items:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace!r}"
        printer.progress(f"No VirtualMachineInstances found in {where}" + (f" matching {selector}" if selector
                                                                             else "") + ".")
    elif len(parsed) == 1 and fmt == "table":
        printer.data(out.status_detail(items[0], color=printer.color_out))
    else:
        printer.data(out.status_table(items, all_namespaces, fmt == "wide", common.no_headers, live,
                                      color=printer.color_out))
    return 0


# -- kubectl freeze run VM... -- COMMAND [ARGS...] (kubectl_freeze/freeze_run.py) -------------------
from .run_report import RUN_EXIT_HELP  # noqa: E402

DEFAULT_MAX_WINDOW = "2m"


@with_common_options
def freeze_run(
    ctx: typer.Context,
    names: Names = None,
    selector: Selector = None,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces",
                                                 help="With -l: VMs of every namespace.")] = False,
    unfreeze_timeout: Annotated[Optional[str], typer.Option(
        "--unfreeze-timeout", metavar="DURATION",
        help="Safety thaw under the held freeze, should the in-pod side die too (default: --max-window + 5m; "
             "must be longer than --max-window).")] = None,
    max_window: Annotated[str, typer.Option(
        "--max-window", metavar="DURATION",
        help=f"Stop COMMAND (exit 124) and thaw if it runs longer than this (default {DEFAULT_MAX_WINDOW}).")]
        = DEFAULT_MAX_WINDOW,
    method: Method = "auto",
    timeout: Timeout = DEFAULT_TIMEOUT,
    parallel: Parallel = 4,
    common: Optional[Common] = None,
) -> int:
    """Freeze VMs (all or none), run COMMAND the moment every guest agent confirmed frozen, thaw every VM
    the moment COMMAND ends (whatever ends it).

    Usage: kubectl freeze run VM... | -l SELECTOR [-n NS | -A] [--max-window D] -- COMMAND [ARGS...]

    COMMAND runs locally, argv as given (no shell), with KUBECTL_FREEZE_VMS, _NAMESPACES, _NAMES, _PODS,
    _DEADLINE (RFC 3339) and _JSON in its environment. Each freeze is held by one exec session: if this
    client dies, the guest thaws at once. With the api method (exec forbidden) KubeVirt's timer, set to
    --max-window, is what thaws a guest whose client died.
    """
    from .freeze_run import run_command

    return run_command(ctx.obj, names, selector, all_namespaces, unfreeze_timeout, max_window, method, timeout,
                       parallel, common)


def split_run_argv(argv: list[str]) -> tuple[list[str], Optional[dict]]:
    """``run ... -- COMMAND ARGS``: the plugin's own arguments, and COMMAND for freeze run (as click's
    ``obj``): everything after the first ``--`` is COMMAND's, never the plugin's."""
    if "run" not in argv or argv.index("run") != next((i for i, a in enumerate(argv) if not a.startswith("-")), -1):
        return argv, None
    if "--" not in argv:
        return argv, {"command": None}
    cut = argv.index("--")
    return argv[:cut], {"command": argv[cut + 1:]}


# Every subcommand's --help ends with the exit codes too: scripts read them there.
freeze_app.command("vm", context_settings=CONTEXT, epilog=EXIT_CODES_HELP)(freeze_vm)
freeze_app.command("vmi", hidden=True, context_settings=CONTEXT, epilog=EXIT_CODES_HELP)(freeze_vm)
freeze_app.command("status", context_settings=CONTEXT, epilog=EXIT_CODES_HELP)(freeze_status)
freeze_app.command("run", context_settings=CONTEXT, epilog=RUN_EXIT_HELP)(freeze_run)
unfreeze_app.command("vm", context_settings=CONTEXT, epilog=EXIT_CODES_HELP)(unfreeze_vm)
unfreeze_app.command("vmi", hidden=True, context_settings=CONTEXT, epilog=EXIT_CODES_HELP)(unfreeze_vm)

# kubectl freeze completion bash|zsh|fish (the completion engine lives in completion.py)
from .completion import add_completion_command  # noqa: E402

add_completion_command(freeze_app)


# -- entry points ---------------------------------------------------------------------------------
def _flag_value(argv: list[str], flag: str) -> Optional[str]:
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(app: typer.Typer, prog: str, argv: Optional[list[str]] = None) -> int:
    """Run ``app``; every failure becomes one ``error:`` line on stderr and an exit code."""
    from typer._click.exceptions import ClickException, UsageError as ClickUsageError
    from typer.exceptions import Abort

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    if not argv:
        argv = ["--help"]
    from .output import Printer

    color = _flag_value(argv, "--color") or "auto"
    errors = Printer(color if color in COLORS else "auto")
    command = typer.main.get_command(app)
    # A backup controller that gives up sends SIGTERM: treat it like Ctrl-C, so a freeze under
    # way is undone rather than left to the safety thaw.
    signal.signal(signal.SIGTERM, _interrupt)
    argv, obj = split_run_argv(argv) if app is freeze_app else (argv, None)
    try:
        result = command.main(args=argv, prog_name=prog, standalone_mode=False, obj=obj)
        return result if isinstance(result, int) else 0
    except ClickUsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prog
        # click ends some messages with a full stop ("No such command 'x'."): one line, one stop.
        errors.error(f"{exc.format_message().rstrip('.')}; see '{where} --help'")
        return EXIT_USAGE
    except ClickException as exc:
        errors.error(exc.format_message())
        return exc.exit_code
    except PluginError as exc:
        if verbose:
            traceback.print_exc()
        errors.error(exc.line())
        return exc.exit_code
    except (KeyboardInterrupt, Abort):
        errors.error("interrupted; if a freeze was under way, check with: kubectl freeze status")
        return 130
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception as exc:  # a bug: say so in one line, details with -v
        if verbose:
            traceback.print_exc()
        errors.error(f"internal error: {type(exc).__name__}: {exc}; rerun with -v and report it")
        return EXIT_FAILED


def main_freeze() -> None:
    sys.exit(run(freeze_app, "kubectl freeze"))


def main_unfreeze() -> None:
    sys.exit(run(unfreeze_app, "kubectl unfreeze"))


if __name__ == "__main__":  # pragma: no cover
    main_freeze() if os.path.basename(sys.argv[0]) != "kubectl-unfreeze" else main_unfreeze()
