"""COMMAND of ``kubectl freeze run``: run locally, argv as given (no shell), in its own process
group, bounded by ``--max-window``.

Its own process group, so that stopping it (``--max-window``, Ctrl-C, SIGTERM) stops everything
it started, not just its first process. It also gets SIGTERM when the plugin dies
(PR_SET_PDEATHSIG): the guest thaws when the plugin's sessions go, and a backup still running
then would copy a thawed disk.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from .errors import UsageError

STOP_GRACE_S = 2.0  # SIGTERM first; SIGKILL after this long
PR_SET_PDEATHSIG = 1


def check_command(argv: list[str]) -> str:
    """The executable COMMAND would run; UsageError (nothing sent yet) when there is none."""
    if not argv:
        raise UsageError("no COMMAND given", "kubectl freeze run VM... -- COMMAND [ARGS...]")
    program = argv[0]
    if os.sep in program:
        if not os.path.exists(program):
            raise UsageError(f"COMMAND {program!r} does not exist")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise UsageError(f"COMMAND {program!r} is not executable")
        return program
    found = shutil.which(program)
    if found is None:
        raise UsageError(f"COMMAND {program!r} not found in PATH")
    return found


def _death_signal_setup():
    """What the child runs between fork and exec: die with the plugin (SIGTERM when it exits).
    prctl is looked up here, in the parent: a dlopen in the child of a threaded process may hang."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


@dataclass
class CommandResult:
    exit_code: int | None = None      # None: it did not start
    signal: str | None = None         # what ended it, when a signal did
    stopped_by: str | None = None     # "max-window" | "interrupt" when the plugin stopped it
    start_error: str = ""
    started_at: float = 0.0           # time.monotonic()
    ended_at: float = 0.0

    @property
    def duration_ms(self) -> int:
        return int((self.ended_at - self.started_at) * 1000) if self.ended_at else 0

    def to_dict(self, argv: list[str]) -> dict:
        return {"argv": list(argv), "exitCode": self.exit_code, "signal": self.signal, "stoppedBy": self.stopped_by,
                "durationMs": self.duration_ms, "startError": self.start_error or None}


class BackupCommand:
    def __init__(self, argv: list[str], env: dict[str, str], stdout=None):
        self.argv = argv
        self.env = env
        self.stdout = stdout            # None: the plugin's own stdout
        self.proc: subprocess.Popen | None = None
        self.result = CommandResult()

    def start(self) -> bool:
        self.result.started_at = time.monotonic()
        try:
            # start_new_session: its own process group (and no SIGINT from the terminal: the plugin
            # forwards what it gets, then thaws).
            self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True, stdout=self.stdout,
                                         preexec_fn=_death_signal_setup())
        except OSError as exc:
            self.result.ended_at = time.monotonic()
            self.result.start_error = f"{exc.strerror or exc}: {self.argv[0]}"
            self.result.exit_code = 126 if isinstance(exc, PermissionError) else 127
            return False
        return True

    def wait(self, max_window_s: float) -> CommandResult:
        """Wait for COMMAND; past ``max_window_s`` (from its start) stop it. KeyboardInterrupt
        (Ctrl-C, or SIGTERM as the CLI maps it) stops it too, then propagates."""
        assert self.proc is not None
        left = self.result.started_at + max_window_s - time.monotonic()
        try:
            self.proc.wait(timeout=max(0.0, left))
        except subprocess.TimeoutExpired:
            self.stop("max-window")
        except KeyboardInterrupt:
            self.stop("interrupt")
            raise
        finally:
            self._finish()
        return self.result

    def stop(self, why: str) -> None:
        """SIGTERM COMMAND's process group, SIGKILL after STOP_GRACE_S."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.result.stopped_by = why
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait()
        except KeyboardInterrupt:  # a second Ctrl-C: no more grace
            self._signal_group(signal.SIGKILL)
            self.proc.wait()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self) -> None:
        if self.proc is None or self.proc.returncode is None:
            return
        self.result.ended_at = self.result.ended_at or time.monotonic()
        code = self.proc.returncode
        if code < 0:
            self.result.signal = signal.Signals(-code).name
            self.result.exit_code = 128 - code
        else:
            self.result.exit_code = code
