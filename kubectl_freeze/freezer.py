"""In-pod freezer of kubectl-freeze: freeze or thaw a KubeVirt guest's filesystems through libvirt.

It runs inside a virt-launcher pod's ``compute`` container, shipped there as source::

    python3 -c "<this file>" freeze|thaw|status DOMAIN [options]

so it is one self-contained module: the standard library plus libvirt-python (``libvirt``,
``libvirt_qemu``), Python 3.8+, Linux (it reads /proc). The plugin imports it for the exit-code
constants; importing it never requires libvirt.

Command line
------------
::

    freeze DOMAIN [--mountpoint PATH]... [--unfreeze-timeout S] [--agent-timeout S] [--uri URI] [--state-dir DIR]
           [--name NAME --namespace NS]
    thaw   DOMAIN [--agent-timeout S] [--uri URI] [--state-dir DIR] [--name NAME --namespace NS]
    status DOMAIN [--agent-timeout S] [--uri URI] [--state-dir DIR]
    hold   DOMAIN [--mountpoint PATH]... [--unfreeze-timeout S] [--max-hold S] [--agent-timeout S] [--uri URI]
           [--state-dir DIR]

``hold`` (``kubectl freeze run``) freezes like freeze (refusing a guest that is frozen already), prints
``{"event": "frozen", ...}`` as a first JSON line, then waits on stdin: the line ``thaw``, stdin's EOF (the
exec session is gone), SIGHUP/SIGTERM/SIGINT or ``--max-hold`` seconds end the hold; it thaws at once and
prints the usual final object, with ``released_by``, ``frozen_at``/``thawed_at`` (RFC 3339), ``window_ms``
(frozen -> thawed, as timed here), ``status_before_thaw`` and ``held`` (false when the guest was thawed
under the hold: by someone else, the safety thaw, or Windows VSS letting go). The safety thaw stays
armed underneath for a hold whose process dies.
``DOMAIN``              the libvirt domain name, ``<namespace>_<name>``.
``--mountpoint PATH``   freeze only: freeze only these guest mountpoints (repeatable). A thaw always
                        thaws everything, like KubeVirt.
``--unfreeze-timeout``  freeze only: seconds until the safety thaw (default 300; 0 = no safety thaw).
``--agent-timeout``     seconds to wait for the guest agent (default 60 for freeze and thaw, like newer
                        KubeVirt, 10 for status). The status reads around a freeze or thaw wait at most 10 s.
``--uri``               use this libvirt URI instead of discovering one.
``--name``, ``--namespace``  the VMI, for ``/usr/bin/virt-freezer`` (default: split from DOMAIN).
``--state-dir``         where the safety-thaw state lives (default: env ``KUBECTL_FREEZE_STATE_DIR``, else
                        ``/var/run/kubevirt-private/kubectl-freeze`` when its parent exists and the folder can be
                        created, else ``<tempdir>/kubectl-freeze``).

Without ``--uri`` the URIs KubeVirt's launchers use are tried in order (a unix-socket URI whose socket
file does not exist is skipped); env ``KUBECTL_FREEZE_LIBVIRT_URIS`` (comma-separated) replaces the list:
``qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock`` (non-root launchers),
``qemu:///system`` (root launchers), ``qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock`` (very old).

Behaviour (like virt-launcher, plus a safety thaw that survives this process)
-----------------------------------------------------------------------------
- The domain must be running (checked with ``dom.state()`` before the agent is asked).
- Freeze and thaw are guest agent commands (``guest-fsfreeze-freeze``, ``-freeze-list`` for mountpoints,
  ``-thaw``) bounded by ``--agent-timeout``. The domain's agent response timeout, which virt-launcher's
  FSFreeze/FSThaw wait by (KubeVirt v1.6+), is never changed: it stays as KubeVirt expects it (-2, block).
- freeze: reads ``guest-fsfreeze-status`` first. Already frozen -> success with ``already: true``, no
  freeze call, but the safety thaw is re-armed with the new timeout (virt-launcher keeps the old timer);
  except when an earlier freeze of ours covered only some mountpoints and more are asked now (the agent
  says "frozen" either way and cannot freeze more while frozen): ``refused``, the earlier freeze kept.
  Fewer mountpoints frozen than requested (e.g. a misspelt one) -> the partial freeze is thawed, ``refused``.
  Otherwise the safety thaw is armed BEFORE the freeze call, so a freeze that completes after this process
  died still gets thawed; it is disarmed again when the freeze failed in a way that froze nothing.
- thaw: thawed already -> ``already: true``; a failed status read does not stop the thaw. A successful
  thaw cancels the safety thaw; a failed one leaves it armed.
- KubeVirt's own safety timer (armed by its freezes: VirtualMachineSnapshot, Velero hooks, virt-freezer,
  the subresource API) can be cancelled only through virt-launcher: where the pod has
  ``/usr/bin/virt-freezer``, a thaw (after it succeeded) and a freeze of a thawed guest (before it) run
  ``virt-freezer --unfreeze --name N --namespace NS``, which cancels that timer; the guest agent still
  decides the outcome. Its answer is in ``virt_freezer``; a failure is a warning.
- Afterwards the agent's status is read back; a status contrary to the action is an error (``refused``).
- Safety thaw: a detached watchdog process (double fork + setsid, then a fresh small interpreter running
  ``WATCHDOG_SOURCE``; libvirt only in short-lived children) thaws the guest at the deadline unless a newer
  freeze or a thaw of ours superseded it, or it saw the guest thawed by anyone else (it asks the agent
  every 2 s once the freeze is seen), which disarms it. A per-domain state file in the state dir
  (``<sha256(uri, domain)[:16]>.json``) holds the current token, watchdog pid and deadline; a lock file
  next to it serialises freezer runs and the watchdog. When it fires, the watchdog appends one JSON line
  per attempt to ``<same>.log`` (retrying every 5 s for up to 5 min while the thaw fails for a passing
  reason); its own stderr goes to ``<same>.stderr``.

Exit codes (``EXIT_*`` constants; ``EXIT_CODES`` maps ``error.code`` to them)
------------------------------------------------------------------------------
==  =======================  ================================================================
 0  (ok)                     success
 1  failed                   any other failure
 2  usage                    bad command line
 3  libvirt-unreachable      no libvirt URI could be opened (or the connection broke)
 4  domain-not-found         no such domain (VIR_ERR_NO_DOMAIN)
 5  domain-not-running       shut off, paused, crashed...: ``domain_state`` says which
 6  agent-not-connected      no guest agent channel, or qemu-ga not connected (code 86 "not connected")
 7  agent-timeout            the agent did not answer in time (code 86 otherwise, AGENT_COMMAND_TIMEOUT)
 8  refused                  the guest refused the freeze/thaw (agent error; fewer of the requested
                             mountpoints frozen than asked -- the partial freeze is undone; a guest
                             already frozen for fewer mountpoints than asked; or a read-back status
                             contrary to the action)
 9  no-libvirt-python        python3 has no libvirt module here
==  =======================  ================================================================

JSON output: exactly one object on stdout for every outcome (human logs go to stderr)
----------------------------------------------------------------------------------------
Always:  ``ok`` (bool), ``action`` ("freeze"|"thaw"|"status"|null; "help" for ``--help``, whose text goes to
stderr), ``domain`` (str|null), ``elapsed_ms``.
Once known (also on errors): ``uris_tried`` ([{"uri", "result": "connected"|"skipped"|"failed", "error"?}]),
``uri`` (the one that answered), ``state_dir``, ``domain_state`` ("running", "paused", "shut off", ...),
``warnings`` ([str], only when there are some).
freeze: ``status_before`` ("frozen"|"thawed"|null), ``already``, ``filesystems`` (count frozen; null when
already frozen), ``mountpoints`` ([str], empty = all), ``agent_timeout_s``, ``status`` (read back:
"frozen"|"thawed"|"unknown"), ``safety_thaw`` (null or {"timeout_s", "deadline" (RFC 3339 UTC),
"remaining_s", "pid", "pid_alive"}), ``replaced_safety_thaw`` (the superseded one, same shape, or null).
thaw: ``status_before``, ``already``, ``filesystems`` (count thawed; null when already thawed),
``agent_timeout_s``, ``status``, ``cancelled_safety_thaw`` (same shape as ``safety_thaw``, or null),
``held`` (only when false: a Windows agent thawed but said VSS had let go of the writes before).
freeze and thaw, where virt-freezer ran: ``virt_freezer`` ({"command", "exit_code", "last_line"}).
status: ``status``, ``safety_thaw`` (or null), ``last_safety_thaw`` (the watchdog's last log line or null:
{"event": "safety-thaw", "domain", "uri", "token", "pid", "attempt", "deadline", "fired_at",
"late_ms", "ok", "filesystems"?, "error"?}), ``last_disarm`` (the watchdog's last disarm after it saw the guest
thawed by someone else, or null: {"event": "disarmed", "domain", "token", "pid", "at", "reason"}).
On error: ``"ok": false`` and ``error``: {"code", "exit_code", "message", "libvirt_code" (int|null)}.
"""

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # the plugin imports this module for its constants only
    libvirt = None
    libvirt_qemu = None

log = logging.getLogger("kubectl-freeze.freezer")

# --- exit codes ------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LIBVIRT_UNREACHABLE = 3
EXIT_DOMAIN_NOT_FOUND = 4
EXIT_DOMAIN_NOT_RUNNING = 5
EXIT_AGENT_NOT_CONNECTED = 6
EXIT_AGENT_TIMEOUT = 7
EXIT_REFUSED = 8
EXIT_NO_LIBVIRT_PYTHON = 9

EXIT_CODES: Dict[str, int] = {
    "failed": EXIT_FAILED,
    "usage": EXIT_USAGE,
    "libvirt-unreachable": EXIT_LIBVIRT_UNREACHABLE,
    "domain-not-found": EXIT_DOMAIN_NOT_FOUND,
    "domain-not-running": EXIT_DOMAIN_NOT_RUNNING,
    "agent-not-connected": EXIT_AGENT_NOT_CONNECTED,
    "agent-timeout": EXIT_AGENT_TIMEOUT,
    "refused": EXIT_REFUSED,
    "no-libvirt-python": EXIT_NO_LIBVIRT_PYTHON,
}

# --- settings --------------------------------------------------------------------------------

ACTIONS = ("freeze", "thaw", "status", "hold")
DEFAULT_UNFREEZE_TIMEOUT_S = 300
DEFAULT_AGENT_TIMEOUT_S = {"freeze": 60, "thaw": 60, "status": 10, "hold": 60}
STATUS_READ_TIMEOUT_S = 10  # cap for the status reads around a freeze or thaw

DEFAULT_URIS = (
    "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock",  # non-root launchers (default)
    "qemu:///system",  # root launchers
    "qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock",  # very old releases
)
URIS_ENV = "KUBECTL_FREEZE_LIBVIRT_URIS"
VIRT_FREEZER = "/usr/bin/virt-freezer"  # KubeVirt's, in the compute container
VIRT_FREEZER_TIMEOUT_S = 30  # virt-launcher's callers give an unfreeze 20 s
VSS_RELEASED = "limited up to 10 seconds"  # a Windows agent's answer to a thaw after VSS let go
STATE_DIR_ENV = "KUBECTL_FREEZE_STATE_DIR"
POD_STATE_DIR = "/var/run/kubevirt-private/kubectl-freeze"

WATCHDOG_AGENT_POLL_S = 2  # how often the watchdog asks the agent whether someone else thawed the guest
WATCHDOG_RETRY_INTERVAL_S = 5.0
WATCHDOG_RETRY_WINDOW_S = 300.0



class VirErr:
    """libvirt error numbers (virErrorNumber, ABI-stable).

    Spelled out rather than read from the binding: the daemon may be newer than the binding (the two
    AGENT_COMMAND_* codes are missing from libvirt 9.0's), and the classification stays testable
    without libvirt.
    """

    INTERNAL_ERROR = 1
    NO_SUPPORT = 3
    NO_CONNECT = 5
    INVALID_CONN = 6
    OPERATION_FAILED = 9
    SYSTEM_ERROR = 38
    RPC = 39
    NO_DOMAIN = 42
    OPERATION_INVALID = 55
    OPERATION_TIMEOUT = 68
    ARGUMENT_UNSUPPORTED = 74
    OPERATION_UNSUPPORTED = 84
    AGENT_UNRESPONSIVE = 86
    AGENT_COMMAND_TIMEOUT = 112
    AGENT_COMMAND_FAILED = 113


# virDomainState values; "blocked" is a running guest waiting on a resource.
DOMAIN_STATES = {
    0: "no state",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutting down",
    5: "shut off",
    6: "crashed",
    7: "suspended by guest power management",
}
RUNNING_STATES = (1, 2)

# A failed status read before a freeze stops the freeze for these (the freeze would fail the same way).
FAIL_FAST_CODES = frozenset(
    {"agent-not-connected", "agent-timeout", "domain-not-running", "domain-not-found", "libvirt-unreachable"}
)
# A freeze that failed with these froze nothing, so its safety thaw is disarmed again. On other errors
# (a timeout above all) the guest may still end up frozen: the safety thaw stays armed.
NOTHING_FROZEN_CODES = frozenset({"agent-not-connected", "refused", "domain-not-found", "domain-not-running"})

Report = Dict[str, Any]


# --- errors ----------------------------------------------------------------------------------


class FreezerError(Exception):
    """A failure with its ``error.code`` (a key of EXIT_CODES)."""

    def __init__(self, code: str, message: str, libvirt_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.libvirt_code = libvirt_code

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.code]

    def to_json(self) -> Dict[str, Any]:
        return {
            "code": self.code,
            "exit_code": self.exit_code,
            "message": self.message,
            "libvirt_code": self.libvirt_code,
        }

    @classmethod
    def from_libvirt(cls, exc: Exception, doing: str) -> "FreezerError":
        code = exc.get_error_code()  # type: ignore[attr-defined]
        message = exc.get_error_message() or str(exc)  # type: ignore[attr-defined]
        return cls(classify_libvirt_error(code, message), "%s: %s" % (doing, message), code)


class _HelpRequested(Exception):
    pass


def classify_libvirt_error(code: Optional[int], message: str) -> str:
    """Map a libvirt error (number and message) to one of the ``error.code`` values."""
    text = (message or "").lower()
    if code == VirErr.AGENT_UNRESPONSIVE:
        # The same code covers "QEMU guest agent is not connected" and "Guest agent not available for now"
        # (the agent did not answer guest-sync in time); only the text tells them apart.
        return "agent-not-connected" if "not connected" in text else "agent-timeout"
    if code in (VirErr.AGENT_COMMAND_TIMEOUT, VirErr.OPERATION_TIMEOUT):
        return "agent-timeout"
    if code == VirErr.ARGUMENT_UNSUPPORTED and "agent" in text:
        return "agent-not-connected"  # "QEMU guest agent is not configured": no agent channel at all
    if code == VirErr.NO_DOMAIN:
        return "domain-not-found"
    if code == VirErr.OPERATION_INVALID and "not running" in text:
        return "domain-not-running"
    if code in (
        VirErr.INTERNAL_ERROR,
        VirErr.OPERATION_FAILED,
        VirErr.OPERATION_INVALID,
        VirErr.OPERATION_UNSUPPORTED,
        VirErr.AGENT_COMMAND_FAILED,
    ):
        return "refused"  # the agent (or driver) answered and said no
    if code in (VirErr.SYSTEM_ERROR, VirErr.RPC, VirErr.NO_CONNECT, VirErr.INVALID_CONN):
        return "libvirt-unreachable"
    return "failed"


# --- command line ----------------------------------------------------------------------------


@dataclass
class Options:
    action: str
    domain: str
    mountpoints: List[str] = field(default_factory=list)
    unfreeze_timeout: int = DEFAULT_UNFREEZE_TIMEOUT_S
    agent_timeout: int = DEFAULT_AGENT_TIMEOUT_S["freeze"]
    uri: Optional[str] = None
    state_dir: Optional[str] = None
    max_hold: int = 0  # hold only: thaw by itself after this many seconds (0 = only the safety thaw)
    name: Optional[str] = None  # the VMI, for virt-freezer; default: from DOMAIN, <namespace>_<name>
    namespace: Optional[str] = None


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting, so every outcome still ends in JSON."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise FreezerError("usage", message)

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if status == 0:
            raise _HelpRequested()
        self.error(message or "invalid arguments")

    def print_help(self, file: Any = None) -> None:
        super().print_help(sys.stderr)  # stdout carries the JSON only


def _seconds(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a whole number of seconds" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least %d, not %d" % (minimum, value))
        return value

    return convert


def parse_args(argv: Sequence[str]) -> Options:
    parser = _Parser(prog="freezer", description="Freeze, thaw or query a KubeVirt guest's filesystems.")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("domain", help="libvirt domain name, <namespace>_<name>")
    parser.add_argument(
        "--mountpoint", dest="mountpoints", action="append", default=[], metavar="PATH",
        help="freeze only this guest mountpoint (repeatable; freeze only)",
    )
    parser.add_argument(
        "--unfreeze-timeout", type=_seconds(0), metavar="SECONDS",
        help="thaw automatically after this long (default %d; 0 = never; freeze only)" % DEFAULT_UNFREEZE_TIMEOUT_S,
    )
    parser.add_argument(
        "--agent-timeout", type=_seconds(1), metavar="SECONDS",
        help="guest agent response timeout (default 60, status 10)",
    )
    parser.add_argument("--uri", help="libvirt URI to use instead of discovering one")
    parser.add_argument("--state-dir", metavar="DIR", help="where the safety-thaw state lives")
    parser.add_argument("--max-hold", type=_seconds(0), default=0, metavar="SECONDS",
                        help="hold only: thaw by itself after this long even if the session is still open")
    parser.add_argument("--name", help="the VMI's name, for virt-freezer (default: from DOMAIN)")
    parser.add_argument("--namespace", help="the VMI's namespace, for virt-freezer (default: from DOMAIN)")
    ns = parser.parse_args(list(argv))

    if not ns.domain:
        parser.error("DOMAIN must not be empty")
    if ns.max_hold and ns.action != "hold":
        parser.error("--max-hold applies to hold only")
    if ns.action not in ("freeze", "hold"):
        if ns.mountpoints:
            parser.error("--mountpoint applies to freeze only (a thaw thaws all filesystems)")
        if ns.unfreeze_timeout is not None:
            parser.error("--unfreeze-timeout applies to freeze only")
    return Options(
        action=ns.action,
        domain=ns.domain,
        mountpoints=ns.mountpoints,
        unfreeze_timeout=DEFAULT_UNFREEZE_TIMEOUT_S if ns.unfreeze_timeout is None else ns.unfreeze_timeout,
        agent_timeout=ns.agent_timeout or DEFAULT_AGENT_TIMEOUT_S[ns.action],
        uri=ns.uri,
        state_dir=ns.state_dir,
        max_hold=ns.max_hold,
        name=ns.name,
        namespace=ns.namespace,
    )


# --- small helpers ---------------------------------------------------------------------------


def rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def warn(report: Report, message: str) -> None:
    log.warning("%s", message)
    report.setdefault("warnings", []).append(message)


def process_start_ticks(pid: int) -> Optional[int]:
    """Start time (clock ticks since boot) of a live process, None if it is gone or a zombie.

    Stored next to a pid so a recycled pid is never taken for our watchdog (and never signalled).
    """
    try:
        with open("/proc/%d/stat" % pid) as stat_file:
            stat = stat_file.read()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5), counted after the name


def process_alive(pid: int, start_ticks: Optional[int]) -> bool:
    if pid <= 0:
        return False
    ticks = process_start_ticks(pid)
    return ticks is not None and (start_ticks is None or ticks == start_ticks)


# --- safety-thaw state -----------------------------------------------------------------------


@dataclass
class SafetyThaw:
    """One armed safety thaw: the state file's content and the watchdog's orders."""

    token: str
    uri: str
    domain: str
    deadline: float  # epoch seconds
    timeout_s: int
    agent_timeout_s: int
    pid: int = 0
    pid_start: Optional[int] = None
    mountpoints: List[str] = field(default_factory=list)  # what the freeze covered; empty = all

    def describe(self) -> Dict[str, Any]:
        return {
            "timeout_s": self.timeout_s,
            "deadline": rfc3339(self.deadline),
            "remaining_s": round(max(0.0, self.deadline - time.time()), 1),
            "pid": self.pid,
            "pid_alive": process_alive(self.pid, self.pid_start),
        }


def _usable_dir(path: str) -> bool:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def resolve_state_dir(explicit: Optional[str]) -> str:
    chosen = explicit or os.environ.get(STATE_DIR_ENV)
    if chosen:
        if not _usable_dir(chosen):
            raise FreezerError("failed", "state directory %s cannot be created or written" % chosen)
        return chosen
    # Only inside a launcher pod (where the parent exists): never create kubevirt-private elsewhere.
    if os.path.isdir(os.path.dirname(POD_STATE_DIR)) and _usable_dir(POD_STATE_DIR):
        return POD_STATE_DIR
    fallback = os.path.join(tempfile.gettempdir(), "kubectl-freeze")
    if not _usable_dir(fallback):
        raise FreezerError("failed", "no writable state directory (tried %s)" % fallback)
    return fallback


class StateStore:
    """The per-(uri, domain) files in the state dir: state (.json), lock (.lock), watchdog log (.log)."""

    def __init__(self, state_dir: str, uri: str, domain: str) -> None:
        self.state_dir = state_dir
        key = hashlib.sha256(("%s\n%s" % (uri, domain)).encode()).hexdigest()[:16]
        base = os.path.join(state_dir, key)
        self.state_path = base + ".json"
        self.lock_path = base + ".lock"
        self.log_path = base + ".log"
        self.stderr_path = base + ".stderr"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise freezer runs and watchdog firings on this domain (released even on SIGKILL)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self) -> Optional[SafetyThaw]:
        try:
            with open(self.state_path) as state_file:
                return SafetyThaw(**json.load(state_file))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.state_path, exc)
            return None

    def write(self, state: SafetyThaw) -> None:
        # Write and rename, so a watchdog polling the file never reads half of it.
        temporary = "%s.%d.tmp" % (self.state_path, os.getpid())
        with open(temporary, "w") as state_file:
            json.dump(asdict(state), state_file)
        os.replace(temporary, self.state_path)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_path)

    def is_current(self, token: str) -> bool:
        state = self.read()
        return state is not None and state.token == token

    def last_log(self, event: str = "safety-thaw") -> Optional[Dict[str, Any]]:
        """The watchdog's last log record of this event ("safety-thaw" or "disarmed"), or None."""
        try:
            with open(self.log_path) as log_file:
                records = [json.loads(line) for line in log_file.read().splitlines() if line.strip()]
        except FileNotFoundError:
            return None
        records = [record for record in records if record.get("event") == event]
        if not records:
            return None
        record = records[-1]
        error = record.get("error")
        if error:
            # The watchdog logs libvirt's answer as it came; it is classified here, in one place.
            error.setdefault("code", classify_libvirt_error(error.get("libvirt_code"), error.get("message", "")))
            error.setdefault("exit_code", EXIT_CODES[error["code"]])
        return record


def stop_watchdog(state: SafetyThaw) -> None:
    """SIGTERM a superseded watchdog. It would also exit by itself on seeing another token."""
    if process_alive(state.pid, state.pid_start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGTERM)


def disarm_safety_thaw(store: StateStore) -> Optional[Dict[str, Any]]:
    """Cancel the armed safety thaw, if any; returns its description."""
    old = store.read()
    if old is None:
        return None
    description = old.describe()
    store.clear()
    stop_watchdog(old)
    log.info("cancelled the safety thaw due %s (watchdog pid %d)", description["deadline"], old.pid)
    return description


def arm_safety_thaw(store: StateStore, uri: str, domain: str, timeout_s: int, agent_timeout_s: int,
                    mountpoints: Sequence[str] = ()) -> SafetyThaw:
    """Start a watchdog that thaws ``domain`` in ``timeout_s`` seconds. The caller holds the lock."""
    state = SafetyThaw(
        token=secrets.token_hex(8),
        uri=uri,
        domain=domain,
        deadline=time.time() + timeout_s,
        timeout_s=timeout_s,
        agent_timeout_s=agent_timeout_s,
        mountpoints=list(mountpoints),
    )
    store.write(state)  # before the fork: the watchdog must find its token current from the start
    try:
        state.pid = spawn_watchdog(state, store)
    except Exception:
        store.clear()
        raise
    state.pid_start = process_start_ticks(state.pid)
    store.write(state)
    log.info("safety thaw armed: deadline %s, watchdog pid %d", rfc3339(state.deadline), state.pid)
    return state


# --- the watchdog process --------------------------------------------------------------------

# The safety-thaw watchdog is its own small program, exec'd as ``python3 -S -c WATCHDOG_SOURCE JOB``:
# it lives as long as the freeze, in the compute container, whose memory limit is the guest's plus
# KubeVirt's own overhead (nothing for us), so it holds only what it needs to sleep and read the
# state file. Every agent poll and thaw attempt runs in a short-lived forked child that loads
# libvirt, does the one call and exits. What it does:
# - until the deadline: exit when the state file no longer holds its token (a thaw or a newer
#   freeze of ours took over); every WATCHDOG_AGENT_POLL_S ask the agent, and once it has seen the
#   guest frozen and then thawed -- by anyone: virt-launcher, virt-freezer, an admin's virsh --
#   disarm and exit, so it never thaws somebody else's later freeze (KubeVirt's own timer cannot
#   be told about our thaws, nor our watchdog about theirs). Residual race: a thaw and a new freeze
#   by another tool within one poll interval look like one long freeze, and the deadline still
#   fires into the new one.
# - at the deadline: under the domain's lock, thaw with guest-fsfreeze-thaw (its own timeout, like
#   the freezer), log one JSON line per attempt, retry every WATCHDOG_RETRY_INTERVAL_S for
#   WATCHDOG_RETRY_WINDOW_S while the thaw fails for a passing reason.
WATCHDOG_SOURCE = r'''
import fcntl, json, os, select, signal, sys, time

RUNNING = (1, 2)
NO_SUPPORT, NO_DOMAIN = 3, 42


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def current(job):
    try:
        with open(job["state_path"]) as state_file:
            return json.load(state_file).get("token") == job["token"]
    except (OSError, ValueError, AttributeError):
        return False


class Locked:
    def __init__(self, job):
        self.path = job["lock_path"]

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        os.close(self.fd)


def append_log(job, record):
    with open(job["log_path"], "a") as log_file:
        log_file.write(json.dumps(record) + "\n")


def agent(job, execute, timeout_s):
    """In the forked child: one agent command over a fresh connection."""
    sys.path.append(job["libvirt_dir"])
    import libvirt, libvirt_qemu
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(job["uri"])
        try:
            dom = conn.lookupByName(job["domain"])
            state = dom.state()[0]
            if state not in RUNNING:
                return {"ok": False, "error": {"code": "domain-not-running", "libvirt_code": None, "message":
                        "domain %s is not running (state %d): its guest agent cannot answer" % (job["domain"], state)}}
            try:
                reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": execute}), timeout_s, 0)
                return {"ok": True, "return": json.loads(reply)["return"]}
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != NO_SUPPORT or execute != "guest-fsfreeze-thaw":
                    raise
                return {"ok": True, "return": dom.fsThaw(None, 0)}  # a driver without agent commands
        finally:
            conn.close()
    except libvirt.libvirtError as exc:
        return {"ok": False, "error": {"message": exc.get_error_message() or str(exc),
                                       "libvirt_code": exc.get_error_code()}}


def in_child(job, execute, timeout_s):
    """agent() in a forked child that exits after it: libvirt never stays loaded in the watchdog."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            answer = agent(job, execute, timeout_s)
        except BaseException as exc:
            code, answer = 1, {"ok": False, "error": {"message": repr(exc), "libvirt_code": None}}
        try:
            os.write(write_end, json.dumps(answer).encode())
            os.close(write_end)  # the answer is read now, not once the exit has torn down libvirt
        finally:
            os._exit(code)
    os.close(write_end)
    data, give_up = b"", time.time() + timeout_s + 15
    while time.time() < give_up:
        if select.select([read_end], [], [], max(0.0, give_up - time.time()))[0]:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    else:
        os.kill(pid, signal.SIGKILL)  # libvirt hung past the agent timeout
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return {"ok": False, "error": {"message": "no answer from libvirt within %ds" % timeout_s, "libvirt_code": None}}


def disarm(job):
    with Locked(job):
        if not current(job):
            return
        os.unlink(job["state_path"])
        append_log(job, {"event": "disarmed", "domain": job["domain"], "token": job["token"], "pid": os.getpid(),
                         "at": rfc3339(time.time()), "reason": "the guest agent says thawed: thawed by someone else"})


def fire(job):
    give_up_at = job["deadline"] + job["retry_window_s"]
    attempt = 0
    while True:
        attempt += 1
        with Locked(job):
            if not current(job):
                return 0  # a thaw or a newer freeze took over while we waited for the lock
            now = time.time()
            answer = in_child(job, "guest-fsfreeze-thaw", job["agent_timeout_s"])
            record = {"event": "safety-thaw", "domain": job["domain"], "uri": job["uri"], "token": job["token"],
                      "pid": os.getpid(), "attempt": attempt, "deadline": rfc3339(job["deadline"]),
                      "fired_at": rfc3339(now), "late_ms": int((now - job["deadline"]) * 1000), "ok": answer["ok"]}
            if answer["ok"]:
                record["filesystems"] = answer["return"]
            else:
                record["error"] = answer["error"]
            append_log(job, record)
            if answer["ok"]:
                os.unlink(job["state_path"])
                return 0
        if answer["error"].get("libvirt_code") == NO_DOMAIN or time.time() >= give_up_at:
            return 1
        time.sleep(job["retry_interval_s"])


def watch(job):
    seen_frozen = False
    next_poll = time.time()
    while current(job):
        now = time.time()
        if now >= job["deadline"]:
            return fire(job)
        if now >= next_poll:
            answer = in_child(job, "guest-fsfreeze-status", max(1, min(5, int(job["deadline"] - now))))
            status = answer.get("return") if answer["ok"] else None
            # Armed before the freeze call: thawed counts only after the freeze was seen.
            seen_frozen = seen_frozen or status == "frozen"
            if seen_frozen and status == "thawed":
                disarm(job)
                return 0
            next_poll = time.time() + job["poll_s"]
        time.sleep(max(0.05, min(1.0, job["deadline"] - time.time(), next_poll - time.time())))
    return 0


def main():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    job = json.loads(sys.argv[1])
    # Tells the freezer it runs (the pipe's write end is open only until here).
    os.write(job["ready_fd"], str(os.getpid()).encode())
    os.close(job["ready_fd"])
    return watch(job)


sys.exit(main())
'''


def spawn_watchdog(job: SafetyThaw, store: StateStore) -> int:
    """Start the detached watchdog program; returns its pid.

    setsid + a second fork put it in its own session, reparented to init (the launcher's
    monitor), so it outlives the exec session and even a SIGKILL of this process; its stdio
    leaves the exec session's pipes (which would otherwise keep ``kubectl exec`` waiting). Then
    it execs a fresh, small interpreter: none of this process's memory goes with it.
    """
    read_end, write_end = os.pipe()
    program = {
        "token": job.token, "uri": job.uri, "domain": job.domain, "deadline": job.deadline,
        "agent_timeout_s": job.agent_timeout_s, "state_path": store.state_path, "lock_path": store.lock_path,
        "log_path": store.log_path, "libvirt_dir": os.path.dirname(os.path.abspath(libvirt.__file__)),
        "poll_s": WATCHDOG_AGENT_POLL_S, "retry_interval_s": WATCHDOG_RETRY_INTERVAL_S,
        "retry_window_s": WATCHDOG_RETRY_WINDOW_S, "ready_fd": write_end,
    }
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _become_watchdog(program, store, read_end, write_end)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        reported = pipe.read()  # EOF once the watchdog wrote its pid, or died before
    try:
        return int(reported)
    except ValueError:
        raise FreezerError("failed", "the safety-thaw watchdog did not start (see %s)" % store.stderr_path)


def _become_watchdog(program: Dict[str, Any], store: StateStore, read_end: int, write_end: int) -> None:
    """Runs in the forked child and never returns (os._exit skips the parent's cleanup code)."""
    try:
        os.close(read_end)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _redirect_stdio(store.stderr_path)
        # Drops the inherited lock descriptor (holding it would keep the domain locked for our whole
        # life) and the parent's libvirt socket; only the pipe that reports the pid stays.
        _close_inherited_fds(keep=write_end)
        os.set_inheritable(write_end, True)
        python = sys.executable or "python3"
        os.execv(python, [python, "-S", "-c", WATCHDOG_SOURCE, json.dumps(program)])
    except BaseException:  # nothing may escape into the parent's code path
        with contextlib.suppress(Exception):
            log.exception("safety-thaw watchdog failed to start")
    finally:
        os._exit(1)


def _redirect_stdio(stderr_path: str) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    errors = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(errors, 2)
    os.close(devnull)
    os.close(errors)


def _close_inherited_fds(keep: int) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


# --- libvirt ---------------------------------------------------------------------------------


def require_libvirt() -> None:
    if libvirt is None or libvirt_qemu is None:
        raise FreezerError("no-libvirt-python", "python3 here has no libvirt module (libvirt-python)")
    # libvirt prints every error to stderr by itself; ours are reported in the JSON instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def candidate_uris(forced: Optional[str]) -> List[str]:
    if forced:
        return [forced]
    listed = [uri.strip() for uri in os.environ.get(URIS_ENV, "").split(",") if uri.strip()]
    return listed or list(DEFAULT_URIS)


def socket_of(uri: str) -> Optional[str]:
    """The ``socket=`` path of a unix-socket URI, if it names one."""
    sockets = parse_qs(urlsplit(uri).query).get("socket")
    return sockets[0] if sockets else None


def connect(candidates: Sequence[str], report: Report) -> Tuple[Any, str]:
    """Open the first candidate URI that answers; records every attempt in ``uris_tried``."""
    tried: List[Dict[str, str]] = []
    report["uris_tried"] = tried
    for uri in candidates:
        socket_path = socket_of(uri)
        if socket_path and not os.path.exists(socket_path):
            tried.append({"uri": uri, "result": "skipped", "error": "socket %s does not exist" % socket_path})
            continue
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            tried.append({"uri": uri, "result": "failed", "error": exc.get_error_message() or str(exc)})
            continue
        tried.append({"uri": uri, "result": "connected"})
        report["uri"] = uri
        log.info("connected to %s", uri)
        return conn, uri
    details = "; ".join("%s: %s" % (entry["uri"], entry["error"]) for entry in tried)
    raise FreezerError("libvirt-unreachable", "no libvirt URI answered (%s)" % details)


def lookup_domain(conn: Any, name: str) -> Any:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        raise FreezerError.from_libvirt(exc, "looking up domain %s" % name)


def ensure_running(dom: Any, report: Report) -> None:
    """A paused or stopped guest cannot answer its agent: say so instead of waiting for a timeout."""
    try:
        state, _reason = dom.state()
    except libvirt.libvirtError as exc:
        raise FreezerError.from_libvirt(exc, "reading the domain state")
    name = DOMAIN_STATES.get(state, "state %d" % state)
    report["domain_state"] = name
    if state not in RUNNING_STATES:
        raise FreezerError(
            "domain-not-running", "domain %s is %s, not running: its guest agent cannot answer" % (dom.name(), name)
        )


def agent_command(dom: Any, execute: str, timeout_s: int, arguments: Optional[Dict[str, Any]] = None) -> Any:
    """One guest agent command with its own time limit; returns the agent's ``return`` value.

    Freeze and thaw go this way too, not through virDomainFSFreeze/FSThaw: those wait as long as the
    domain's agent response timeout says, a per-domain setting that virt-launcher relies on (default
    -2, block; KubeVirt v1.6+ freezes with FSFreeze). Changing it, even for a moment, would change
    every later KubeVirt freeze of this VM, and libvirt has no way to read it back to restore it.
    """
    command: Dict[str, Any] = {"execute": execute}
    if arguments:
        command["arguments"] = arguments
    reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), timeout_s, 0)
    try:
        return json.loads(reply)["return"]
    except (ValueError, KeyError, TypeError):
        raise FreezerError("failed", "unexpected guest agent reply to %s: %r" % (execute, reply))


def read_agent_status(dom: Any, timeout_s: int) -> str:
    """The agent's own answer to guest-fsfreeze-status: "frozen" or "thawed"."""
    try:
        return str(agent_command(dom, "guest-fsfreeze-status", timeout_s))
    except libvirt.libvirtError as exc:
        raise FreezerError.from_libvirt(exc, "reading guest-fsfreeze-status")


def _freeze_or_thaw(dom: Any, execute: str, arguments: Optional[Dict[str, Any]], agent_timeout_s: int,
                    fallback: Callable[[], int]) -> int:
    try:
        return int(agent_command(dom, execute, agent_timeout_s, arguments))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != VirErr.NO_SUPPORT:
            raise
    # A driver without raw agent commands (libvirt's test driver; KubeVirt's qemu always has them):
    # its FSFreeze/FSThaw, with the domain's own agent timeout, which stays untouched.
    return int(fallback())


def freeze_filesystems(dom: Any, mountpoints: List[str], agent_timeout_s: int) -> int:
    # guest-fsfreeze-freeze-list is what libvirt sends for a list of mountpoints, too.
    execute, arguments = ("guest-fsfreeze-freeze-list", {"mountpoints": mountpoints}) if mountpoints else (
        "guest-fsfreeze-freeze", None)
    try:
        count = _freeze_or_thaw(dom, execute, arguments, agent_timeout_s,
                                lambda: dom.fsFreeze(mountpoints or None, 0))
    except libvirt.libvirtError as exc:
        raise FreezerError.from_libvirt(exc, "freezing the guest filesystems")
    wanted = len(set(mountpoints))
    if mountpoints and count < wanted:
        # A partial freeze is no consistent snapshot of what was asked: undo it, then refuse.
        if count:
            thaw_filesystems(dom, agent_timeout_s)
        raise FreezerError("refused", "the guest froze %d of the %d requested mountpoints %s (is each one a "
                           "mounted filesystem in the guest?)" % (count, wanted, mountpoints))
    return count


def thaw_filesystems(dom: Any, agent_timeout_s: int) -> int:
    try:
        return _freeze_or_thaw(dom, "guest-fsfreeze-thaw", None, agent_timeout_s, lambda: dom.fsThaw(None, 0))
    except libvirt.libvirtError as exc:
        raise FreezerError.from_libvirt(exc, "thawing the guest filesystems")


# --- the actions -----------------------------------------------------------------------------


@dataclass
class Session:
    uri: str
    dom: Any
    store: StateStore


@contextlib.contextmanager
def open_session(opts: Options, report: Report) -> Iterator[Session]:
    conn, uri = connect(candidate_uris(opts.uri), report)
    try:
        dom = lookup_domain(conn, opts.domain)
        store = StateStore(resolve_state_dir(opts.state_dir), uri, opts.domain)
        report["state_dir"] = store.state_dir
        yield Session(uri=uri, dom=dom, store=store)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def status_before_action(session: Session, opts: Options, report: Report, fail_fast: bool) -> Optional[str]:
    timeout_s = min(opts.agent_timeout, STATUS_READ_TIMEOUT_S)
    try:
        status: Optional[str] = read_agent_status(session.dom, timeout_s)
    except FreezerError as err:
        if fail_fast and err.code in FAIL_FAST_CODES:
            raise
        warn(report, "could not read the freeze status first (%s); going ahead" % err.message)
        status = None
    report["status_before"] = status
    log.info("guest freeze status before the %s: %s", opts.action, status or "unknown")
    return status


def confirm_status(session: Session, opts: Options, report: Report, expected: str) -> None:
    """Read the status back: "unknown" when unreadable, an error when contrary to the action."""
    timeout_s = min(opts.agent_timeout, STATUS_READ_TIMEOUT_S)
    try:
        status = read_agent_status(session.dom, timeout_s)
    except FreezerError as err:
        warn(report, "could not read the freeze status back: %s" % err.message)
        status = "unknown"
    report["status"] = status
    if status not in (expected, "unknown"):
        raise FreezerError("refused", "after the %s the guest agent reports %r" % (opts.action, status))


def rearm_safety_thaw(session: Session, opts: Options, report: Report, mountpoints: Sequence[str]) -> None:
    report["replaced_safety_thaw"] = disarm_safety_thaw(session.store)
    report["safety_thaw"] = None
    if opts.unfreeze_timeout > 0:
        state = arm_safety_thaw(session.store, session.uri, opts.domain, opts.unfreeze_timeout, opts.agent_timeout,
                                mountpoints)
        report["safety_thaw"] = state.describe()


def check_covers(session: Session, opts: Options) -> List[str]:
    """A guest already frozen by an earlier freeze of ours covers what it froze then: refuse a
    request for more, since the agent cannot freeze more while frozen. Returns what stays frozen."""
    earlier = session.store.read()
    if earlier is None or not earlier.mountpoints:
        return []   # all filesystems (or frozen by someone else: the agent cannot tell which)
    if opts.mountpoints and set(opts.mountpoints) <= set(earlier.mountpoints):
        return list(earlier.mountpoints)
    raise FreezerError(
        "refused",
        "the guest is already frozen, but only for %s (an earlier freeze); thaw it first to freeze %s"
        % (earlier.mountpoints, opts.mountpoints or "all filesystems"),
    )


def agent_says(session: Session) -> Optional[str]:
    """The agent's freeze status, or None when it cannot be read."""
    try:
        return read_agent_status(session.dom, STATUS_READ_TIMEOUT_S)
    except FreezerError:
        return None


@contextlib.contextmanager
def locked_running_session(opts: Options, report: Report) -> Iterator[Session]:
    """A session on a running domain, holding the domain's lock (freeze and thaw change its state)."""
    report["agent_timeout_s"] = opts.agent_timeout
    with open_session(opts, report) as session:
        ensure_running(session.dom, report)
        with session.store.locked():
            yield session


def vmi_of(opts: Options) -> Tuple[str, str]:
    """(namespace, name) of the VMI: as given, else from the domain name (namespaces have no "_")."""
    namespace, _, name = opts.domain.partition("_")
    return opts.namespace or namespace, opts.name or name


def cancel_kubevirt_timer(opts: Options, report: Report) -> None:
    """``virt-freezer --unfreeze``, where the pod has it: it goes through virt-launcher, which first
    cancels its own safety timer (then thaws a guest still frozen; a thawed one it leaves alone).

    That timer is armed by KubeVirt's freezes (VirtualMachineSnapshot, Velero's hooks, our api and
    virt-freezer methods) and only virt-launcher can cancel it: after a thaw straight through libvirt,
    like ours, it stays armed and later thaws whatever freeze is then in place, ours included.
    """
    if not os.access(VIRT_FREEZER, os.X_OK):
        return
    import subprocess  # only here: the freezer's memory is the VM's

    namespace, name = vmi_of(opts)
    command = [VIRT_FREEZER, "--unfreeze", "--name", name, "--namespace", namespace]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=VIRT_FREEZER_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        warn(report, "could not cancel KubeVirt's safety timer (%s): %s" % (" ".join(command), exc))
        return
    said = (done.stderr.strip().splitlines() or [""])[-1]
    report["virt_freezer"] = {"command": command, "exit_code": done.returncode, "last_line": said}
    if done.returncode != 0:
        warn(report, "%s exited %d: KubeVirt's safety timer may still be armed (%s)"
             % (VIRT_FREEZER, done.returncode, said))


def run_freeze(opts: Options, report: Report) -> None:
    report["mountpoints"] = list(opts.mountpoints)
    with locked_running_session(opts, report) as session:
        already = status_before_action(session, opts, report, fail_fast=True) == "frozen"
        report["already"] = already
        if not already:
            # A timer left by an earlier KubeVirt freeze would thaw this one mid-backup.
            cancel_kubevirt_timer(opts, report)
        covered = check_covers(session, opts) if already else list(opts.mountpoints)
        # Armed before the freeze call: a freeze that completes after we were killed is still undone.
        rearm_safety_thaw(session, opts, report, covered)
        report["filesystems"] = None
        if not already:
            try:
                report["filesystems"] = freeze_filesystems(session.dom, opts.mountpoints, opts.agent_timeout)
            except FreezerError as err:
                if err.code == "refused" and agent_says(session) == "frozen":
                    # Refused because it is frozen already (the status read before did not say so):
                    # it IS frozen, so the safety thaw stays armed.
                    report["already"] = True
                    warn(report, "the guest was frozen already: %s" % err.message)
                else:
                    if err.code in NOTHING_FROZEN_CODES:
                        disarm_safety_thaw(session.store)
                        report["safety_thaw"] = None
                    raise
            else:
                log.info("froze %d filesystems", report["filesystems"])
        confirm_status(session, opts, report, "frozen")


def run_thaw(opts: Options, report: Report) -> None:
    with locked_running_session(opts, report) as session:
        already = status_before_action(session, opts, report, fail_fast=False) == "thawed"
        report["already"] = already
        report["filesystems"] = None
        if not already:
            try:
                report["filesystems"] = thaw_filesystems(session.dom, opts.agent_timeout)
                log.info("thawed %d filesystems", report["filesystems"])
            except FreezerError as err:
                if VSS_RELEASED not in err.message:
                    raise
                # A Windows guest's VSS holds a freeze ~10 s, then lets go by itself; its agent still
                # thaws (leaves its frozen state), so the thaw worked but the freeze did not hold.
                report["held"] = False
                warn(report, "Windows VSS had already released the freeze: %s" % err.message)
        confirm_status(session, opts, report, "thawed")
        # Only now: a failed thaw keeps its safety thaw as the next chance.
        report["cancelled_safety_thaw"] = disarm_safety_thaw(session.store)
        # Thawed straight through libvirt, so KubeVirt's timer, if one is armed, is cancelled apart.
        cancel_kubevirt_timer(opts, report)


def run_status(opts: Options, report: Report) -> None:
    with open_session(opts, report) as session:
        state = session.store.read()
        report["safety_thaw"] = state.describe() if state else None
        report["last_safety_thaw"] = session.store.last_log()
        report["last_disarm"] = session.store.last_log("disarmed")
        ensure_running(session.dom, report)
        report["status"] = read_agent_status(session.dom, opts.agent_timeout)

# --- hold: a freeze held by one session (``kubectl freeze run``) ------------------------------

HOLD_THAW_REQUEST = b"thaw"


class _Released(Exception):
    """The held freeze must end now; ``reason`` says why (a signal, the max-hold alarm)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _raise_released(signum: int, _frame: Any) -> None:
    raise _Released("max-hold" if signum == signal.SIGALRM else "signal %s" % signal.Signals(signum).name)


def emit(line: Dict[str, Any]) -> None:
    """One JSON line on stdout, flushed at once: the client acts on it while we keep running."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def wait_for_release(max_hold_s: int) -> str:
    """Block until the client asks for the thaw or the session is gone; returns why it ended.

    stdin is the session: the runtime closes it when the client goes away (SIGKILL, network
    cut), so EOF means "thaw now" rather than waiting for the safety thaw. The max-hold alarm
    covers a session that is cut without the runtime noticing (no EOF ever comes).
    """
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(signum, _raise_released)
    if max_hold_s:
        signal.alarm(max_hold_s)
    try:
        while True:
            # sys.stdin.buffer, not fd 0: the bootstrap's read of the source may have buffered more
            line = sys.stdin.buffer.readline()
            if not line:
                return "stdin-eof"
            if line.strip() == HOLD_THAW_REQUEST:
                return "request"
    except _Released as released:
        return released.reason
    except OSError as exc:
        return "stdin-error: %s" % exc
    finally:
        # From here on the thaw must not be cut short by another signal (ignored before the alarm
        # is cleared, so that none lands in between).
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        signal.alarm(0)


def run_hold(opts: Options, report: Report) -> None:
    """Freeze, report ``{"event": "frozen"}`` on stdout, hold until released, thaw, report.

    Unlike freeze, a guest that is frozen already is refused and left alone: its freeze belongs to
    someone else (another ``freeze run``?), and this session's thaw would end it under them.
    The safety thaw is armed before the freeze as for freeze, and stays armed underneath.
    """
    report["mountpoints"] = list(opts.mountpoints)
    report["agent_timeout_s"] = opts.agent_timeout
    report["freeze_attempted"] = False
    with open_session(opts, report) as session:
        ensure_running(session.dom, report)
        with session.store.locked():
            before = status_before_action(session, opts, report, fail_fast=True)
            if before == "frozen":
                raise FreezerError("refused", "the guest is frozen already (by another freeze run or someone "
                                   "else); a held freeze starts from a thawed guest, so it was left alone")
            if before != "thawed":
                # Unknown: it may be someone else's freeze, whose safety thaw the re-arm below would replace.
                raise FreezerError("failed", "could not read the guest's freeze state before the hold, so it was "
                                   "left alone; check the guest agent and try again")
            report["already"] = False
            # A timer left by an earlier KubeVirt freeze would thaw this hold in the middle of COMMAND.
            cancel_kubevirt_timer(opts, report)
            rearm_safety_thaw(session, opts, report, opts.mountpoints)
            armed = session.store.read()
            token = armed.token if armed else None
            report["freeze_attempted"] = True  # from here on the guest may end up frozen
            try:
                report["filesystems"] = freeze_filesystems(session.dom, opts.mountpoints, opts.agent_timeout)
            except FreezerError as err:
                if err.code in NOTHING_FROZEN_CODES:
                    disarm_safety_thaw(session.store)
                    report["safety_thaw"] = None
                raise
            frozen_at = time.monotonic()
            report["frozen_at"] = rfc3339(time.time())
            if report["filesystems"]:
                # The agent's own answer to the freeze (how many it froze): a read-back would only
                # lengthen the window COMMAND waits for.
                report["status"] = "frozen"
            else:
                confirm_status(session, opts, report, "frozen")
        try:
            emit(dict(report, event="frozen", ok=True, action="hold", domain=opts.domain))
            reason = wait_for_release(opts.max_hold)
        except OSError:  # stdout is gone (EPIPE): so is the client
            reason = "stdout-closed"
        except _Released as released:  # a signal before wait_for_release's own try: thaw all the same
            reason = released.reason
        report["released_by"] = reason
        log.info("releasing the held freeze: %s", reason)
        with session.store.locked():
            held_thaw(session, opts, report, token, frozen_at)


def held_thaw(session: Session, opts: Options, report: Report, token: Optional[str], frozen_at: float) -> None:
    """The thaw that ends a hold, and whether the freeze held all along (``held``)."""
    held = True
    current = session.store.read()
    if token is not None and current is None:
        # The watchdog fired, or disarmed itself after it saw someone else thaw the guest: the
        # guest was thawed under the hold, and a freeze it is in now belongs to someone else
        # (a VirtualMachineSnapshot, say), so it is left alone.
        now = agent_says(session)
        warn(report, "the guest was thawed during the hold (the safety thaw fired, or someone else thawed "
             "it)%s" % ("; it is frozen again by someone else, and that freeze was left alone"
                        if now == "frozen" else ""))
        report.update(filesystems_thawed=None, status_before_thaw=now, thawed_at=None, window_ms=None,
                      held=False, status=now or "unknown")
        return
    if current is not None and current.token != token:
        # A newer freeze through the freezer owns the guest now: its thaw is not ours to do.
        report.update(status_before_thaw=None, held=False, thawed_at=None, window_ms=None)
        raise FreezerError("refused", "another freeze replaced this hold's (safety thaw %s); left it frozen"
                           % rfc3339(current.deadline))
    # No status read first (it would lengthen the window): the agent's thaw answers how many
    # filesystems it thawed, 0 when the guest was thawed already.
    report["filesystems_thawed"] = None
    try:
        report["filesystems_thawed"] = thaw_filesystems(session.dom, opts.agent_timeout)
    except FreezerError as err:
        if VSS_RELEASED not in err.message:
            raise
        held = False
        warn(report, "Windows VSS had released the freeze before the hold ended: %s" % err.message)
    thawed_at = time.monotonic()
    if report["filesystems_thawed"] == 0:
        held = False
        warn(report, "the guest was thawed already when the hold ended: someone thawed it during the window")
    report["status_before_thaw"] = "thawed" if report["filesystems_thawed"] == 0 else "frozen"
    report["thawed_at"] = rfc3339(time.time())
    report["window_ms"] = int((thawed_at - frozen_at) * 1000)
    report["held"] = held
    confirm_status(session, opts, report, "thawed")
    if current is not None:
        report["cancelled_safety_thaw"] = disarm_safety_thaw(session.store)


RUNNERS: Dict[str, Callable[[Options, Report], None]] = {
    "freeze": run_freeze,
    "thaw": run_thaw,
    "status": run_status,
    "hold": run_hold,
}


def main(argv: Sequence[str]) -> int:
    started = time.monotonic()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s freezer[%(process)d] %(levelname)s %(message)s"
    )
    report: Report = {"ok": False, "action": argv[0] if argv and argv[0] in ACTIONS else None, "domain": None}
    exit_code = EXIT_OK
    try:
        opts = parse_args(argv)
        report["domain"] = opts.domain
        require_libvirt()
        RUNNERS[opts.action](opts, report)
        report["ok"] = True
    except _HelpRequested:
        report.update(ok=True, action="help")
    except FreezerError as err:
        log.error("%s", err.message)
        report["error"] = err.to_json()
        exit_code = err.exit_code
    except Exception as exc:  # one JSON object for every outcome, even a bug
        log.exception("unexpected error")
        failure = FreezerError("failed", "unexpected error: %r" % exc)
        report["error"] = failure.to_json()
        exit_code = failure.exit_code
    report["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
