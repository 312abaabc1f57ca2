"""The `compute` container of a simulated virt-launcher pod, for `kubectl exec`.

A command runs in a private mount namespace that looks like the container where it matters:
- the pod's own /run (kept between exec sessions, as a pod's filesystem is), holding
  /run/libvirt bound to the real libvirt daemon's socket folder (so `virsh` and
  `qemu:///system` reach the real guests) and /run/kubevirt/sockets/launcher-sock, the pod's
  virt-launcher command socket;
- the host's /tmp stays visible: the simulator, the rig and the python that stands in for the
  image's python3 may all live below it (CI clones anywhere);
- /usr/bin seen through an overlay whose top layer holds /usr/bin/virt-freezer and, for the
  image, python3: the stock image whites out every python (stock launcher images have none);
  the python image has a python3 with libvirt-python.
The real `virsh` and the rest of the host's /usr/bin show through. Every process started in a
sandbox carries KF_SIM_INSTANCE in its environment, so the simulator can end what a pod left
running (the freezer's safety-thaw watchdog outlives its exec session on purpose).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

VIRT_FREEZER = Path(__file__).with_name("virt_freezer.py")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class PodSandbox:
    root: Path                 # this pod's folder on the host
    python_image: bool         # python3 + libvirt-python present in the container
    libvirt_socket_dir: Path
    instance: str              # the simulator's tag, for cleaning up

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def launcher_socket(self) -> Path:
        return self.run_dir / "kubevirt" / "sockets" / "launcher-sock"

    def prepare(self) -> None:
        for d in ("run/libvirt", "run/kubevirt/sockets", "run/kubevirt-private", "usr-bin"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        top = self.root / "usr-bin"
        _write_script(top / "virt-freezer", f"exec {sys.executable} {VIRT_FREEZER} \"$@\"")
        if self.python_image:
            _write_script(top / "python3", f"exec {sys.executable} \"$@\"")
        else:
            for entry in Path("/usr/bin").glob("python*"):
                whiteout = top / entry.name
                if not whiteout.exists():
                    os.mknod(whiteout, 0o600 | 0o020000, os.makedev(0, 0))

    def command(self, argv: list[str]) -> list[str]:
        """The host command line that runs `argv` inside this sandbox."""
        r = self.root
        setup = " && ".join([
            f"mount --bind {r / 'run'} /run",
            f"mount --bind {self.libvirt_socket_dir} /run/libvirt",
            f"mount -t overlay overlay -o lowerdir={r / 'usr-bin'}:/usr/bin /usr/bin",
            "cd /",
            f'exec env -i PATH={CONTAINER_PATH} HOME=/root HOSTNAME={shlex.quote(r.name)} '
            f'KF_SIM_INSTANCE={self.instance} "$@"',
        ])
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv]


def _write_script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def kill_instance_processes(instance: str, sandbox: PodSandbox | None = None) -> int:
    """Ends every process a sandbox of this simulator (or only `sandbox`) started; returns how many."""
    marker = f"KF_SIM_INSTANCE={instance}".encode()
    pod_marker = f"HOSTNAME={sandbox.root.name}".encode() if sandbox else None
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in env and (pod_marker is None or pod_marker in env):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
