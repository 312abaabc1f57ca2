"""A throwaway CA (trustme) and the apiserver's serving certificate."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass
class ServingTLS:
    ca: trustme.CA = field(default_factory=trustme.CA)
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost")

    def __post_init__(self) -> None:
        self._cert = self.ca.issue_cert(*self.hosts)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        # kubectl's websocket dialer and the python client both speak HTTP/1.1
        context.set_alpn_protocols(["http/1.1"])
        return context

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    @property
    def ca_data(self) -> str:
        """For a kubeconfig's `certificate-authority-data`."""
        return base64.b64encode(self.ca_pem).decode()

    def write_ca(self, path: Path) -> Path:
        path.write_bytes(self.ca_pem)
        return path
