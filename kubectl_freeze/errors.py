"""Exit codes and the one error type the plugin raises.

Exit codes (documented in ``kubectl freeze --help`` too):

====  =====================================================================
0     done: every VM reached the requested state and it was confirmed
1     failed: nothing was done, or it was undone (a group freeze rolls back)
2     usage: bad flag, name, duration or selector; nothing was sent
3     unconfirmed: the action was carried out but its result could not be
      confirmed before ``--timeout`` ran out (the message says what was seen)
4     not held: the thaw worked, but the freeze it ended had not held (Windows
      VSS lets go of the writes after about 10 s): a backup taken after that
      is not consistent
130   interrupted (Ctrl-C or SIGTERM): a freeze under way was undone; the
      message names what was thawed again and anything not confirmed thawed
====  =====================================================================

Every failure ends as ONE line ``error: ...`` on stderr that says what was wrong
and what to do next; a traceback is printed only with ``-v``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNCONFIRMED = 3
EXIT_NOT_HELD = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

EXIT_CODES = {
    EXIT_OK: "done: every VM reached the requested state and it was confirmed",
    EXIT_FAILED: "failed: nothing was changed, or the change was undone",
    EXIT_USAGE: "usage error (bad flag, name, duration or selector); nothing was sent",
    EXIT_UNCONFIRMED: "done, but the result could not be confirmed before --timeout",
    EXIT_NOT_HELD: "thawed, but the freeze did not hold (Windows VSS let go after about 10s): "
                   "a backup taken after 10s is not consistent",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); a freeze under way was undone",
}


class PluginError(Exception):
    """A failure that ends the run with ``exit_code`` and a one-line message.

    ``message`` says what went wrong, ``hint`` what the user can do about it.
    """

    def __init__(self, exit_code: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The single stderr line for this error (without the ``error: `` prefix)."""
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text}; {' '.join(self.hint.split())}"
        return text

    def __str__(self) -> str:
        return self.line()


class UsageError(PluginError):
    """Bad input: nothing was sent to the cluster."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(EXIT_USAGE, message, hint)


class Failed(PluginError):
    """The action failed or was refused (exit 1)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(EXIT_FAILED, message, hint)


class Unconfirmed(PluginError):
    """The action was carried out but not confirmed in time (exit 3)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(EXIT_UNCONFIRMED, message, hint)


class NotHeld(PluginError):
    """Thawed, but the freeze had not held until the thaw (exit 4): the backup is not consistent."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(EXIT_NOT_HELD, message, hint)


def format_error_line(message: str) -> str:
    """``error: <message>`` squeezed onto one line."""
    return "error: " + " ".join(str(message).split())


class Interrupted(PluginError):
    """Ctrl-C: what was under way has been undone as far as possible (the message says)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(EXIT_INTERRUPTED, message, hint)
