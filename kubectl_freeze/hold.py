"""A freeze held by one exec session per VM, for ``kubectl freeze run``.

The in-pod side freezes, prints ``{"event": "frozen", ...}`` (one JSON line), then waits on its
stdin; the thaw is the line ``thaw`` over the same session, answered by a final JSON object.
If the session is lost (the client SIGKILLed, the network cut, stdin closed), the runtime closes
the process's stdin and the in-pod side thaws at once; the safety thaw stays armed underneath as
the last resort (and ``--max-hold`` bounds a session cut without an EOF).

Two in-pod sides, one contract:
- python launcher images: the bundled freezer's ``hold`` action (kubectl_freeze/freezer.py);
- stock images (no python3): ``HOLD_SH``, POSIX sh around KubeVirt's /usr/bin/virt-freezer (so
  KubeVirt's own timer is the safety thaw) and ``virsh`` to ask the guest agent itself.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .freezer import DEFAULT_URIS
from .kube import parse_exec_status
from .methods import bundled, virt_freezer
from .targets import COMPUTE, Target

THAW_LINE = b"thaw\n"
POLL_S = 0.02  # how often the session thread looks for a thaw request: bounds the added window

# The held session for stock launcher images. Arguments: NAME NAMESPACE DOMAIN UNFREEZE_TIMEOUT_S
# MAX_HOLD_S URI... It prints the same JSON lines as the bundled freezer's hold (fewer fields).
# `read` returns non-zero at stdin's EOF (the session is gone); SIGHUP/SIGPIPE/SIGTERM/SIGINT and
# the max-hold alarm (a background sleep that signals this shell) thaw at once too.
HOLD_SH = r"""name=$1 ns=$2 domain=$3 timeout=$4 maxhold=$5
shift 5
uris=$*
err=/tmp/kubectl-freeze-hold.$$
agent() {
    for uri in $uris; do
        case "$uri" in *socket=*) [ -S "${uri#*socket=}" ] || continue ;; esac
        virsh -c "$uri" domstate "$domain" >/dev/null 2>&1 || continue
        out=$(virsh -c "$uri" qemu-agent-command "$domain" '{"execute":"guest-fsfreeze-status"}' 2>&1)
        case "$out" in *'"frozen"'*) echo frozen ;; *'"thawed"'*) echo thawed ;; *) echo unknown ;; esac
        return
    done
    echo unknown
}
jstr() { printf '"%s"' "$(printf %s "$1" | tr -d '\000-\037"\\' | tail -c 300)"; }
lasterr() { grep -v '^$' "$err" 2>/dev/null | tail -n 1; }
attempted=false
fail() {  # code exit_code message
    printf '{"ok": false, "action": "hold", "domain": %s, "freeze_attempted": %s, "error": {"code": "%s", "exit_code": %s, "message": %s}}\n' \
        "$(jstr "$domain")" "$attempted" "$1" "$2" "$(jstr "$3")"
    rm -f "$err"
    exit "$2"
}
before=$(agent)
[ "$before" = frozen ] && fail refused 8 "the guest is frozen already (by another freeze run or someone else); a held freeze starts from a thawed guest, so it was left alone"
attempted=true
virt-freezer --freeze --name "$name" --namespace "$ns" --unfreezeTimeoutSeconds "$timeout" 2>"$err"
rc=$?
t0=$(date -u +%s%N)
frozen_at=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
status=$(agent)
if [ "$status" != frozen ]; then
    # virt-freezer's exit 0 proves nothing (no agent -> exit 0): the agent's answer decides.
    why=$(lasterr)
    if [ "$status" = unknown ]; then
        virt-freezer --unfreeze --name "$name" --namespace "$ns" 2>/dev/null
    fi
    fail failed 1 "virt-freezer exited $rc but the guest agent says $status: $why"
fi
released_by=""
sleeper=""
watcher=""
seen=/tmp/kubectl-freeze-hold-seen.$$
release() {
    trap '' HUP PIPE TERM INT ALRM
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    [ -n "$watcher" ] && kill "$watcher" 2>/dev/null
    [ -n "$released_by" ] || released_by=$1
    # what the watcher saw last (no agent call here: it would lengthen the window)
    before=frozen
    [ -s "$seen" ] && read -r before <"$seen"
    rm -f "$seen" "$seen.tmp"
    held=true
    ok=true
    error=""
    if [ "$before" = thawed ]; then
        held=false
    else
        if ! virt-freezer --unfreeze --name "$name" --namespace "$ns" 2>"$err"; then
            case "$(cat "$err")" in
                *"limited up to 10 seconds"*) held=false ;;
                *) ok=false; error=$(lasterr) ;;
            esac
        fi
    fi
    t1=$(date -u +%s%N)
    thawed_at=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
    status=$(agent)
    [ "$status" = frozen ] && ok=false && error="after the thaw the guest agent reports frozen ${error}"
    code=0
    tail='}'
    if [ "$ok" = false ]; then
        code=1
        tail=", \"error\": {\"code\": \"failed\", \"exit_code\": 1, \"message\": $(jstr "$error")}}"
    fi
    printf '{"ok": %s, "action": "hold", "domain": %s, "released_by": "%s", "status_before_thaw": "%s", "status": "%s", "held": %s, "frozen_at": "%s", "thawed_at": "%s", "window_ms": %s%s\n' \
        "$ok" "$(jstr "$domain")" "$released_by" "$before" "$status" "$held" "$frozen_at" "$thawed_at" \
        "$(( (t1 - t0) / 1000000 ))" "$tail" 2>/dev/null
    rm -f "$err"
    exit "$code"
}
trap 'release "signal HUP"' HUP
trap 'release "stdout-closed"' PIPE
trap 'release "signal TERM"' TERM
trap 'release "signal INT"' INT
trap 'release max-hold' ALRM
# Watches the guest during the window (once a second), so that a thaw by someone else shows.
(while :; do agent >"$seen.tmp" && mv "$seen.tmp" "$seen"; sleep 1; done) </dev/null >/dev/null 2>&1 &
watcher=$!
if [ "$maxhold" -gt 0 ]; then
    (sleep "$maxhold"; kill -ALRM $$) </dev/null >/dev/null 2>&1 &
    sleeper=$!
fi
printf '{"event": "frozen", "ok": true, "action": "hold", "domain": %s, "status_before": "%s", "status": "frozen", "frozen_at": "%s", "safety_thaw": {"timeout_s": %s}}\n' \
    "$(jstr "$domain")" "$before" "$frozen_at" "$timeout" || release stdout-closed
while :; do
    if read -r line; then
        case "$line" in thaw*) release request ;; esac
    else
        release stdin-eof
    fi
done
"""


def hold_command(target: Target, method: str, unfreeze_timeout_s: int, max_hold_s: int) -> tuple[list[str], bytes]:
    """(the exec command, what goes on stdin first) for a held freeze with ``method``."""
    if method == bundled.NAME:
        args = ["hold", target.domain, "--unfreeze-timeout", str(unfreeze_timeout_s), "--max-hold", str(max_hold_s)]
        source = bundled.payload()
        return ["python3", "-c", bundled.BOOTSTRAP, str(len(source)), *args], source
    if method == virt_freezer.NAME:
        return ["sh", "-c", HOLD_SH, "sh", target.name, target.namespace, target.domain, str(unfreeze_timeout_s),
                str(max_hold_s), *DEFAULT_URIS], b""
    raise ValueError(f"method {method!r} cannot hold a freeze in an exec session")


@dataclass
class HeldSession:
    """One VM's held freeze: the exec session, what the in-pod side said, and how it ended."""

    kube: Any
    target: Target
    method: str
    unfreeze_timeout_s: int
    max_hold_s: int
    frozen: dict | None = None        # the {"event": "frozen"} line
    final: dict | None = None         # the last JSON object, after the thaw (or a failed freeze)
    lost: str = ""                    # the session broke or closed before the final answer
    exit_code: int | None = None
    exit_message: str = ""
    stderr_tail: str = ""
    started_at: float = 0.0
    frozen_seen_at: float | None = None   # time.monotonic() when the frozen line arrived
    release_sent_at: float | None = None
    ended_at: float | None = None
    _release: threading.Event = field(default_factory=threading.Event)
    _frozen_or_done: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Open the session (KubeErrors: forbidden, not found... raise here) and start holding."""
        self.started_at = time.monotonic()
        command, prefix = hold_command(self.target, self.method, self.unfreeze_timeout_s, self.max_hold_s)
        client = self.kube.cluster.new_client()
        try:
            ws = self.kube.open_exec(self.target.namespace, self.target.pod_name, COMPUTE, command, True, client)
        except BaseException:
            client.close()
            raise
        if prefix:
            ws.write_channel(0, prefix)
        threading.Thread(target=self._pump, args=(ws, client), daemon=True,
                         name=f"hold-{self.target.ref}").start()

    def _pump(self, ws, client) -> None:
        out = ""
        try:
            while ws.is_open():
                if self._release.is_set() and self.release_sent_at is None:
                    ws.write_channel(0, THAW_LINE)
                    self.release_sent_at = time.monotonic()
                ws.update(timeout=POLL_S)
                out += ws.read_channel(1)
                err = ws.read_channel(2)
                if err:
                    self.stderr_tail = (self.stderr_tail + err)[-4000:]
                while "\n" in out:
                    line, out = out.split("\n", 1)
                    self._line(line)
            self.exit_code, self.exit_message = parse_exec_status(ws.read_channel(3))
        except Exception as exc:  # the stream broke: the in-pod side sees stdin's EOF and thaws
            self.lost = f"exec stream broke: {exc}"
        finally:
            if out.strip():
                self._line(out)
            if self.final is None and not self.lost:
                self.lost = self.exit_message or "the exec session ended without the in-pod side's answer"
            self.ended_at = time.monotonic()
            self._frozen_or_done.set()
            self._done.set()
            try:
                ws.close()
            finally:
                client.close()

    def _line(self, line: str) -> None:
        line = line.strip()
        if not line.startswith("{"):
            return
        try:
            value = json.loads(line)
        except ValueError:
            return
        if not isinstance(value, dict):
            return
        if value.get("event") == "frozen" and self.frozen is None:
            self.frozen = value
            self.frozen_seen_at = time.monotonic()
            self._frozen_or_done.set()
        else:
            self.final = value

    # -- what the orchestration asks ----------------------------------------------------------
    def wait_frozen(self, timeout: float) -> bool:
        """True once the in-pod side reported frozen (False: it failed, ended or did not answer)."""
        self._frozen_or_done.wait(max(0.0, timeout))
        return self.frozen is not None

    def release(self) -> None:
        self._release.set()

    def wait_done(self, timeout: float) -> bool:
        return self._done.wait(max(0.0, timeout))

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ended_early(self) -> bool:
        """The hold ended (session lost or the in-pod side thawed) before this client asked."""
        return self._done.is_set() and self.release_sent_at is None and self.frozen is not None

    def error_text(self) -> str:
        """What went wrong, in one line, from the in-pod side's answer or the session."""
        if self.final and self.final.get("error"):
            error = self.final["error"]
            return f"{error.get('code') or 'failed'}: {' '.join(str(error.get('message') or '').split())}"
        if self.lost:
            return self.lost
        tail = [line for line in self.stderr_tail.splitlines() if line.strip()]
        return tail[-1] if tail else f"exit {self.exit_code}"
