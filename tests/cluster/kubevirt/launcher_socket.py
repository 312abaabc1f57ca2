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

from .launcher import Launcher, LauncherError


class LauncherSocket:
    def __init__(self, path: Path, launcher: Launcher, agent_connected: Callable[[], bool]):
        self.path = path
        launcher_ref, agent_ref = launcher, agent_connected

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline() or b"{}")
                    reply = _serve(launcher_ref, agent_ref, request)
                except (ValueError, LauncherError) as e:
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
        return {"ok": True, "running": launcher.is_running(), "agent": agent_connected()}
    if op == "freeze":
        launcher.freeze(float(request.get("unfreezeTimeoutSeconds", 300)))
        return {"ok": True}
    if op == "unfreeze":
        launcher.unfreeze()
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {op!r}"}
