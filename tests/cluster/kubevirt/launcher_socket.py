"""The pod's virt-launcher command socket that /usr/bin/virt-freezer talks to.

KubeVirt speaks gRPC here; the simulator speaks one JSON line each way, which is all its
virt-freezer needs: `info` (is the domain running, is a guest agent connected), `freeze`
and `unfreeze`.
"""

from __future__ import annotations

import json
import socketserver
import threading
from pathlib import Path
from typing import Callable

from .cmdclient import command_failed
from .launcher import Launcher, LauncherError

# The qemu-guest-agent version GetGuestInfo reports (Debian 12's).
GA_VERSION = "7.2.22"


class LauncherSocket:
    def __init__(self, path: Path, launcher: Launcher, agent_connected: Callable[[], bool]):
        self.path = path
        launcher_ref, agent_ref = launcher, agent_connected

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline() or b"{}")
                    reply = _serve(launcher_ref, agent_ref, request)
                except LauncherError as e:
                    # what the cmd client returns for a failed command: virt-freezer logs it as is
                    command = {"freeze": "Freeze", "unfreeze": "Unfreeze"}.get(request.get("op"), "Unknown")
                    reply = {"ok": False, "error": command_failed(command, e)}
                except ValueError as e:
                    reply = {"ok": False, "error": str(e)}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        if path.exists():
            path.unlink()
        self._server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"launcher-sock {path}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


def _serve(launcher: Launcher, agent_connected: Callable[[], bool], request: dict) -> dict:
    op = request.get("op")
    if op == "info":
        # GetGuestInfo's GAVersion is empty without a connected agent; GetDomain gives the state.
        agent = agent_connected()
        return {"ok": True, "running": launcher.is_running(), "agent": agent,
                "gaVersion": GA_VERSION if agent else "",
                "os": ("Microsoft Windows Server 2022" if launcher.windows else "Debian GNU/Linux") if agent else ""}
    if op == "freeze":
        launcher.freeze(float(request.get("unfreezeTimeoutSeconds", 300)))
        return {"ok": True}
    if op == "unfreeze":
        launcher.unfreeze()
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {op!r}"}
