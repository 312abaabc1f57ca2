"""`ApiServer`: the simulated kube-apiserver, served over HTTPS from a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any, Coroutine, Optional, Sequence

from aiohttp import web

from . import kubeconfig
from .audit import AuditLog
from .auth import Users
from .backend import Backend
from .routes import ApiApp
from .store import Store
from .tls import ServingTLS
from .watch import WatchHub


class ApiServer:
    """Start with `start()` (or `with ApiServer(...) as srv:`); everything else is thread-safe
    and called from the test's thread:

        srv = ApiServer(backend, store=store, bookmark_interval=1.0).start()
        srv.url, srv.ca_path, srv.token_for("viewer")
        srv.write_kubeconfig(path, user="admin", namespace="demo", context="sim")
        srv.drop_watches(); srv.restart(); srv.stop()
        mark = srv.audit.mark(); ...; srv.audit.changes_since(mark)   # see audit.py
    """

    def __init__(self, backend: Backend, store: Optional[Store] = None, users: Optional[Users] = None,
                 *, bookmark_interval: float = 5.0, host: str = "127.0.0.1", port: int = 0,
                 workdir: Optional[Path] = None):
        self.backend = backend
        self.store = store or Store()
        self.users = users or Users.defaults()
        self.host = host
        self.port = port
        self.tls = ServingTLS()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sim-apiserver-"))
        self.ca_path = self.tls.write_ca(self.workdir / "ca.crt")
        self.watches = WatchHub(self.store, bookmark_interval)
        self.requests: deque[tuple[str, str, int]] = deque(maxlen=2000)   # (method, path, status)
        # Per server instance, kept across restart(): what every client sent (method, URI, verb, user).
        self.audit = AuditLog()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._app: Optional[ApiApp] = None

    # ----- lifecycle ----------------------------------------------------------------------
    def start(self) -> "ApiServer":
        if self._thread is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="sim-apiserver",
                                            daemon=True)
            self._thread.start()
        self._call(self._serve())
        return self

    def stop(self) -> None:
        """Close every stream and socket, stop the loop and join its thread."""
        if self._thread is not None and self._loop is not None:
            self._call(self._shutdown())
            self._call(self._cancel_leftover_tasks())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._thread = self._loop = None
        # Also for a server that never started: its CA was written at construction.
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop serving and serve again on the same port, with the same store and tokens
        (open watches and exec streams are cut, as by a restarting apiserver)."""
        self._call(self._shutdown())
        self._call(self._serve())

    def drop_watches(self) -> None:
        """End every open watch stream; clients see the stream close and must re-watch."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.watches.drop_all)

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ----- what clients need ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def token_for(self, user: str) -> str:
        return self.users[user].token

    def kubeconfig(self, contexts: Sequence[kubeconfig.Context], current: str = "") -> dict:
        tokens = {name: self.token_for(name) for name in self.users.names()}
        return kubeconfig.kubeconfig(self.url, self.tls.ca_data, tokens, contexts, current=current)

    def write_kubeconfig(self, path: Path, user: str = "admin", namespace: str = "demo",
                         context: str = "sim",
                         extra_contexts: Sequence[kubeconfig.Context] = ()) -> Path:
        """Write a kubeconfig whose current context is `context` (`user` in `namespace`);
        `extra_contexts` adds more contexts (and their users) to the same file."""
        contexts = [kubeconfig.Context(context, user, namespace), *extra_contexts]
        return kubeconfig.write(Path(path), self.kubeconfig(contexts, current=context))

    def client_configuration(self, user: str = "admin") -> Any:
        """A kubernetes.client.Configuration for `user`."""
        return kubeconfig.client_configuration(self.url, self.ca_path, self.token_for(user))

    # ----- internals ------------------------------------------------------------------------
    def _call(self, coroutine: Coroutine, timeout: float = 30.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _serve(self) -> None:
        self._app = ApiApp(self.store, self.backend, self.users, self.watches,
                           lambda: f"{self.host}:{self.port}", self.requests, self.audit)
        self._runner = web.AppRunner(self._app.build(), access_log=None, handler_cancellation=True,
                                     shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls.server_context(),
                           reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is None or self._app is None:
            return
        self.watches.drop_all()
        for ws in list(self._app.websockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutting down")
        await self._runner.cleanup()
        self._runner = None

    async def _cancel_leftover_tasks(self) -> None:
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
