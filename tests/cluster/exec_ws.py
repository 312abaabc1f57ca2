"""`pods/exec` over WebSocket: the channel.k8s.io v4/v5 stream protocols.

Every binary frame starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error (one
JSON Status when the command ends), 4 resize. On v5 a frame `[255, channel]` closes that
channel (the client's stdin EOF). After the Status frame the server closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Optional

from aiohttp import WSMsgType, web
from multidict import MultiMapping

from . import errors
from .backend import Backend
from .requestinfo import query_flag

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)                    # our preference, whatever order the client offers
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_FRAME = 32 * 1024
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


def choose_protocol(offered_header: str) -> Optional[str]:
    offered = {item.strip() for item in offered_header.split(",")}
    return next((protocol for protocol in PROTOCOLS if protocol in offered), None)


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> "ExecOptions":
        command = query.getall("command", [])
        if not command:
            raise errors.bad_request("you must specify at least 1 command")
        options = cls(command=list(command), container=query.get("container", ""),
                      stdin=query_flag(query, "stdin"), stdout=query_flag(query, "stdout"),
                      stderr=query_flag(query, "stderr"), tty=query_flag(query, "tty"))
        if not (options.stdin or options.stdout or options.stderr):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        return options


def pick_container(pod: dict, requested: str) -> str:
    """The container exec runs in, checked like the apiserver does (400 when invalid)."""
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    container = requested or (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER, "")
    if not container:
        if len(containers) != 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, "
                                     f"choose one of: [{' '.join(containers)}]")
        container = containers[0]
    # Init containers (a native sidecar such as guest-console-log) are valid names too.
    init = [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
    if container not in containers + init:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def exit_status(code: int) -> dict:
    """The channel-3 Status kubelet sends when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


class WebSocketExecIO:
    """ExecIO over one accepted websocket."""

    def __init__(self, ws: web.WebSocketResponse, options: ExecOptions):
        self.stdin = options.stdin
        self.tty = options.tty
        self._ws = ws
        self._options = options
        self._stdin: asyncio.Queue[bytes] = asyncio.Queue()
        self._stdin_done = not options.stdin
        self._send_lock = asyncio.Lock()
        # Set when the client's socket is gone (closed, cut, the apiserver stopping): the runtime
        # then closes the process's stdio but does not kill it.
        self.gone = asyncio.Event()

    async def read_stdin(self) -> bytes:
        if self._stdin_done:
            return b""
        chunk = await self._stdin.get()
        self._stdin_done = not chunk
        return chunk

    async def write_stdout(self, data: bytes) -> None:
        if self._options.stdout:
            await self._send(STDOUT, data)

    async def write_stderr(self, data: bytes) -> None:
        if self._options.tty:           # a terminal has one output stream
            await self.write_stdout(data)
        elif self._options.stderr:
            await self._send(STDERR, data)

    async def send_status(self, status: dict) -> None:
        await self._send(ERROR, json.dumps(status).encode())

    async def _send(self, channel: int, data: bytes) -> None:
        for start in range(0, len(data), MAX_FRAME):
            async with self._send_lock:
                if self._ws.closed:
                    return                  # the client left: drop the output
                with contextlib.suppress(ConnectionError):
                    await self._ws.send_bytes(bytes([channel]) + data[start:start + MAX_FRAME])

    async def pump_client(self) -> None:
        """Read the client's frames until the socket closes; stdin EOF at the end."""
        try:
            async for message in self._ws:
                # like the apiserver, take text frames (the Python client's write_stdin) as bytes
                if message.type == WSMsgType.TEXT:
                    data = message.data.encode()
                elif message.type == WSMsgType.BINARY:
                    data = message.data
                else:
                    continue
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == STDIN and payload:
                    self._stdin.put_nowait(payload)
                elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                    self._stdin.put_nowait(b"")
        finally:
            self._stdin.put_nowait(b"")
            self.gone.set()


async def serve_exec(request: web.Request, backend: Backend, pod: dict, options: ExecOptions,
                     live: set[web.WebSocketResponse]) -> web.WebSocketResponse:
    """Upgrade, run the command through the backend, send its Status, close."""
    protocol = choose_protocol(request.headers.get("Sec-WebSocket-Protocol", ""))
    if protocol is None:
        raise errors.bad_request(f"no supported stream protocol offered; supported: {', '.join(PROTOCOLS)}")
    ws = web.WebSocketResponse(protocols=(protocol,), timeout=5.0)
    await ws.prepare(request)
    live.add(ws)
    io = WebSocketExecIO(ws, options)
    reader = asyncio.create_task(io.pump_client())
    try:
        try:
            status = exit_status(await backend.exec(pod, options.container, options.command, io))
        except errors.ApiError as error:
            status = error.status()
        except Exception as error:          # a backend bug must still end the stream cleanly
            status = errors.ApiError(500, "InternalError", f"exec failed: {error!r}").status()
        await io.send_status(status)
        await ws.close()
    finally:
        live.discard(ws)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return ws
