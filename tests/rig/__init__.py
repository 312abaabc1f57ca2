"""Real QEMU guests with a real qemu-guest-agent, run by a private libvirt daemon."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import BootArtifacts, ensure_boot_artifacts
from .daemon import LibvirtDaemon
from .guest import Guest, GuestSpec

__all__ = ["Rig", "Guest", "GuestSpec"]


@dataclass
class Rig:
    daemon: LibvirtDaemon
    boot_artifacts: BootArtifacts
    guests: dict[str, Guest] = field(default_factory=dict)
    owns_workdir: bool = False

    @classmethod
    def start(cls, workdir: Path | None = None) -> "Rig":
        owns = workdir is None
        # Short paths: QEMU's unix sockets live below it and sun_path holds 108 bytes.
        workdir = Path(workdir or tempfile.mkdtemp(prefix="kf-rig-"))
        artifacts = ensure_boot_artifacts()
        daemon = LibvirtDaemon(workdir / "libvirt")
        daemon.start()
        return cls(daemon=daemon, boot_artifacts=artifacts, owns_workdir=owns)

    @property
    def workdir(self) -> Path:
        return self.daemon.workdir.parent

    @property
    def uri(self) -> str:
        return self.daemon.uri

    @property
    def socket_dir(self) -> Path:
        return self.daemon.socket_dir

    def boot(self, spec: GuestSpec, timeout: float = 90.0) -> Guest:
        return self.boot_many([spec], timeout)[0]

    def boot_many(self, specs: list[GuestSpec], timeout: float = 120.0) -> list[Guest]:
        """Starts every guest first and then waits for all, so their boots overlap."""
        guests = []
        for spec in specs:
            guest = Guest(spec=spec, uri=self.uri, workdir=self.workdir / "guests" / spec.domain)
            guest.create(self.boot_artifacts)
            self.guests[spec.domain] = guest
            guests.append(guest)
        for guest in guests:
            guest.wait_ready(timeout)
        return guests

    def stop(self) -> None:
        for guest in self.guests.values():
            guest.destroy()
        self.guests.clear()
        self.daemon.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
