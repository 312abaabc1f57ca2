"""What virt-launcher said, read back out of KubeVirt's wrapped error texts.

Both the subresource API and /usr/bin/virt-freezer reach the launcher through its cmd client,
which reports a failure as ``server error. command Freeze failed: "<launcher message>"``; the
launcher's message is ``LibvirtError(Code=86, Domain=10, Message='...')`` for a libvirt error and
plain text otherwise ("VMI is currently during migration"). virt-api wraps that once more
(``Internal error occurred: unexpected return code 400 (400 Bad Request), message: ...``, 500).
The libvirt code and message are classified like the bundled freezer's own errors, so every
method gives the same hint for the same cause.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..freezer import NOTHING_FROZEN_CODES, classify_libvirt_error
from .bundled import _HINTS

_COMMAND_FAILED = re.compile(r'command (Freeze|Unfreeze) failed: ("(?:[^"\\]|\\.)*")')
_LIBVIRT_ERROR = re.compile(r"^LibvirtError\(Code=(\d+), Domain=(\d+), Message='(.*)'\)$", re.S)
# What a Windows guest agent answers a thaw after VSS released the freeze by itself (~10 s).
VSS_RELEASED = "limited up to 10 seconds"

_EXTRA_HINTS = {
    "migrating": "wait for the live migration to finish, then try again",
}


@dataclass(frozen=True)
class LauncherFailure:
    command: str                 # "Freeze" or "Unfreeze"
    message: str                 # libvirt's message, or the launcher's own text
    libvirt_code: int | None
    code: str                    # one of the bundled freezer's error codes, or "migrating"/"vss-limit"

    @property
    def hint(self) -> str | None:
        return _HINTS.get(self.code) or _EXTRA_HINTS.get(self.code)

    @property
    def maybe_froze(self) -> bool:
        """A failed freeze that may still have frozen the guest (an agent that did not answer in time)."""
        return self.code not in NOTHING_FROZEN_CODES and self.code not in ("migrating", "vss-limit")

    def describe(self) -> str:
        where = f" (libvirt error {self.libvirt_code})" if self.libvirt_code else ""
        return f"{self.code}: {self.message}{where}"


def parse(text: str) -> LauncherFailure | None:
    """The launcher's failure inside ``text``, or None when it holds none."""
    found = _COMMAND_FAILED.search(text or "")
    if not found:
        return None
    quoted = found.group(2)
    try:
        inner = json.loads(quoted)        # Go's %q and JSON agree on these texts
    except ValueError:
        inner = quoted[1:-1]
    libvirt = _LIBVIRT_ERROR.match(inner)
    if libvirt:
        code, message = int(libvirt.group(1)), libvirt.group(3)
        return LauncherFailure(found.group(1), message, code, classify_libvirt_error(code, message))
    low = inner.lower()
    if "during migration" in low:
        kind = "migrating"
    elif VSS_RELEASED in low:
        kind = "vss-limit"
    else:
        kind = "failed"
    return LauncherFailure(found.group(1), inner, None, kind)
