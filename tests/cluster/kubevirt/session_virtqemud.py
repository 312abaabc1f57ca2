"""The libvirt socket of a non-root launcher pod: /run/libvirt/virtqemud-sock.

A non-root virt-launcher runs its own unprivileged virtqemud, whose QEMU driver opens only
qemu:///session: any other URI path gets "unexpected QEMU URI path '/system', try
qemu:///session" (libvirt's qemuConnectOpen). The rig's daemon is privileged and would open
qemu:///system too, so this socket stands in front of it: it passes every byte through, and
reads the client's messages only up to its first REMOTE_PROC_CONNECT_OPEN, which it answers
itself with that error when the URI's path is not /session. The socket belongs to uid 107
(mode 0700), as the session daemon's does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from pathlib import Path
from urllib.parse import urlsplit

# libvirt's RPC (src/rpc/virnetprotocol.x, src/remote/remote_protocol.x)
REMOTE_PROGRAM = 0x20008086
REMOTE_PROC_CONNECT_OPEN = 1
CALL, REPLY, STATUS_ERROR = 0, 1, 1
HEADER = struct.Struct(">IIIiIIi")   # length, prog, vers, proc, type, serial, status
VIR_ERR_INTERNAL_ERROR, VIR_FROM_QEMU, VIR_ERR_ERROR = 1, 10, 2


def _xdr_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)


def open_uri(payload: bytes) -> str | None:
    """The URI of a remote_connect_open_args (an optional string, then flags); None when absent."""
    (present,) = struct.unpack_from(">I", payload, 0)
    if not present:
        return None
    (size,) = struct.unpack_from(">I", payload, 4)
    return payload[8:8 + size].decode(errors="replace")


def refusal(vers: int, serial: int, path: str) -> bytes:
    """The daemon's error reply to a CONNECT_OPEN (a virNetMessageError)."""
    body = (struct.pack(">ii", VIR_ERR_INTERNAL_ERROR, VIR_FROM_QEMU)
            + struct.pack(">I", 1) + _xdr_string(f"unexpected QEMU URI path '{path}', try qemu:///session")
            + struct.pack(">i", VIR_ERR_ERROR)
            + struct.pack(">IIIIiiI", 0, 0, 0, 0, 0, 0, 0))   # dom, str1-3, int1, int2, net
    return HEADER.pack(HEADER.size + len(body), REMOTE_PROGRAM, vers, REMOTE_PROC_CONNECT_OPEN,
                       REPLY, serial, STATUS_ERROR) + body


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class SessionVirtqemudSocket:
    def __init__(self, path: Path, upstream: Path, uid: int):
        self.path, self.upstream = path, upstream
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        os.chown(path, uid, uid)
        path.chmod(0o700)
        self._listener.listen(16)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"virtqemud-sock {path}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            daemon.connect(str(self.upstream))
            threading.Thread(target=_pump, args=(daemon, client), daemon=True).start()
            if self._until_open(client, daemon):
                _pump(client, daemon)
        except OSError:
            pass
        finally:
            client.close()
            daemon.close()

    def _until_open(self, client: socket.socket, daemon: socket.socket) -> bool:
        """Pass the client's messages on up to its CONNECT_OPEN; False when it was refused."""
        while True:
            head = _recv_exactly(client, HEADER.size)
            length, prog, vers, proc, mtype, serial, _ = HEADER.unpack(head)
            body = _recv_exactly(client, length - HEADER.size)
            if prog == REMOTE_PROGRAM and proc == REMOTE_PROC_CONNECT_OPEN and mtype == CALL:
                uri = open_uri(body)
                path = urlsplit(uri).path if uri else ""
                if uri is not None and path != "/session":
                    client.sendall(refusal(vers, serial, path))
                    return False
                daemon.sendall(head + body)
                return True
            daemon.sendall(head + body)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
