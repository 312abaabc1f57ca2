"""A private libvirt daemon that leaves the host's libvirt configuration alone.

libvirtd runs in its own mount namespace, where folders of this daemon's work dir are bound
over /etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt and /var/cache/libvirt, so
several daemons (one per test session, one per developer) can run side by side. Its sockets
live in `<workdir>/sock`, reachable from outside the namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Without systemd, udev or virtlogd; the guests run as root with no cgroups or namespaces.
QEMU_CONF = """\
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
user = "root"
group = "root"
remember_owner = 0
stdio_handler = "file"
"""

PRIVATE_DIRS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "run": "/run/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}


@dataclass
class LibvirtDaemon:
    workdir: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "sock"

    @property
    def socket(self) -> Path:
        return self.socket_dir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "libvirtd.log"

    def _write_config(self) -> Path:
        for name in list(PRIVATE_DIRS) + ["sock"]:
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        etc = self.workdir / "etc"
        (etc / "qemu.conf").write_text(QEMU_CONF)
        conf = etc / "libvirtd.conf"
        conf.write_text(
            f'unix_sock_dir = "{self.socket_dir}"\n'
            'unix_sock_rw_perms = "0770"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
            f'log_outputs = "3:file:{self.log_path}"\n'
        )
        return conf

    def start(self, timeout: float = 30.0) -> None:
        conf = self._write_config()
        binds = " && ".join(
            f"mkdir -p {target} && mount --bind {self.workdir / name} {target}"
            for name, target in PRIVATE_DIRS.items()
        )
        script = (
            f"{binds} && exec /usr/sbin/libvirtd --config {conf} "
            f"--pid-file {self.workdir / 'libvirtd.pid'}"
        )
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "libvirtd.out", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_answering(timeout)

    def _wait_until_answering(self, timeout: float) -> None:
        import libvirt

        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(
                    f"libvirtd exited with {self.process.returncode}; see {self.workdir}/libvirtd.out"
                )
            if self.socket.exists():
                try:
                    libvirt.open(self.uri).close()
                    return
                except libvirt.libvirtError as e:
                    last_error = str(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"libvirtd did not answer within {timeout}s: {last_error}")

    def stop(self) -> None:
        """Destroys every running domain, then stops the daemon and any QEMU left behind."""
        if self.process is None:
            return
        qemu_pids = self._qemu_pids()
        try:
            import libvirt

            conn = libvirt.open(self.uri)
            for dom in conn.listAllDomains():
                if dom.isActive():
                    try:
                        dom.destroy()
                    except libvirt.libvirtError:
                        pass
            conn.close()
        except Exception:  # noqa: BLE001 - the kill below is the fallback
            pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in qemu_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None

    def _qemu_pids(self) -> list[int]:
        pids = []
        for pidfile in (self.workdir / "run" / "qemu").glob("*.pid"):
            try:
                pids.append(int(pidfile.read_text().strip()))
            except (OSError, ValueError):
                pass
        return pids
