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

Non-root launchers (KubeVirt's default, `status.runtimeUser: 107`) run every exec as uid/gid 107
(`qemu` in the image's passwd, HOME /home/qemu which does not exist), with no capabilities and
no_new_privs, with KubeVirt's XDG_* variables, and reach libvirt only at
/run/libvirt/virtqemud-sock (their own session virtqemud; here the rig's daemon behind a
socket that, like an unprivileged daemon, opens only qemu:///session). Root launchers
(runtimeUser 0) run as root and have the system virtqemud's sockets, so both qemu:///system
and the /session URI answer. The pod's
emptyDirs are 0777 with group 107 (fsGroup); the host's /root, which uid 107 cannot enter, is
replaced by an empty one with only the python standing in for the image's.
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
QEMU_UID = 107          # KubeVirt's non-root launchers run as qemu:qemu, 107:107
# The image's passwd and group: id 107 is qemu, HOME /home/qemu (absent from the image).
LAUNCHER_USERS = {"passwd": f"qemu:x:{QEMU_UID}:{QEMU_UID}:qemu user:/home/qemu:/sbin/nologin\n",
                  "group": f"qemu:x:{QEMU_UID}:\n"}
# A root launcher's system virtqemud: pod socket name -> the rig daemon's socket it is bound to.
# A non-root launcher's session virtqemud has one socket, virtqemud-sock, which the simulator
# serves itself (session_virtqemud.py: it opens only qemu:///session, as an unprivileged one does).
ROOT_SOCKETS = {"virtqemud-sock": "libvirt-sock", "virtqemud-sock-ro": "libvirt-sock-ro",
                "virtqemud-admin-sock": "libvirt-admin-sock"}
# The emptyDirs KubeVirt mounts there (kubelet makes them 0777, fsGroup adds group 107 + setgid).
EMPTY_DIRS = ("run/libvirt", "run/kubevirt", "run/kubevirt/sockets", "run/kubevirt-private")
# The compute container's environment (pkg/virt-controller/services/rendercontainer.go).
NONROOT_ENV = {"HOME": "/home/qemu", "XDG_CACHE_HOME": "/var/run/kubevirt-private",
               "XDG_CONFIG_HOME": "/var/run/kubevirt-private", "XDG_RUNTIME_DIR": "/var/run"}
ROOT_ENV = {"HOME": "/root"}
# KubeVirt's image builds libvirt with remote_default_mode=direct: a client without socket=
# goes to /run/libvirt/virtqemud-sock (root: qemu:///system; uid 107: $XDG_RUNTIME_DIR/libvirt/,
# the same place), and without a URI it finds the pod's one virtqemud. Debian's 9.0 client
# goes to libvirtd's sockets instead (as non-root it would even spawn a daemon of its own) and
# needs to be told the URI, so its config says both. A non-root client reads only
# $XDG_CONFIG_HOME/libvirt/libvirt.conf (KubeVirt keeps the session daemon's qemu.conf there).
CLIENT_CONF = 'remote_mode = "direct"\nuri_default = "qemu:///{}"\n'


@dataclass(frozen=True)
class PodSandbox:
    root: Path                 # this pod's folder on the host
    python_image: bool         # python3 + libvirt-python present in the container
    libvirt_socket_dir: Path
    instance: str              # the simulator's tag, for cleaning up
    runtime_user: int = QEMU_UID   # the VMI's status.runtimeUser: 107 (default) or 0 (root)

    @property
    def nonroot(self) -> bool:
        return self.runtime_user != 0

    @property
    def libvirt_sockets(self) -> dict[str, str]:
        """The rig daemon's sockets bound into the pod's /run/libvirt."""
        return {} if self.nonroot else ROOT_SOCKETS

    @property
    def session_socket(self) -> Path:
        """Where a non-root launcher's virtqemud listens."""
        return self.run_dir / "libvirt" / "virtqemud-sock"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def launcher_socket(self) -> Path:
        return self.run_dir / "kubevirt" / "sockets" / "launcher-sock"

    def prepare(self) -> None:
        for d in (*EMPTY_DIRS, "usr-bin", "etc", "host-root"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for d in EMPTY_DIRS:
            os.chown(self.root / d, 0, QEMU_UID)
            (self.root / d).chmod(0o2777)
        client_conf = (self.root / "run" / "kubevirt-private" / "libvirt" if self.nonroot
                       else self.root / "etc") / "libvirt.conf"
        client_conf.parent.mkdir(exist_ok=True)
        client_conf.write_text(CLIENT_CONF.format("session" if self.nonroot else "system"))
        if self.nonroot:
            os.chown(client_conf.parent, QEMU_UID, QEMU_UID)
        for name in self.libvirt_sockets:      # mount points for the daemon's sockets
            (self.root / "run" / "libvirt" / name).touch()
        # The launcher image's passwd and group know qemu (whatever user the pod runs as).
        for name, entry in LAUNCHER_USERS.items():
            (self.root / "etc" / name).write_text(with_id_107(Path("/etc", name).read_text(), entry))
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
        env = {"PATH": CONTAINER_PATH, **(NONROOT_ENV if self.nonroot else ROOT_ENV),
               "HOSTNAME": r.name, "KF_SIM_INSTANCE": self.instance}
        setup = [
            f"mount --bind {r / 'run'} /run",
            *(f"mount --bind {self.libvirt_socket_dir / source} /run/libvirt/{name}"
              for name, source in self.libvirt_sockets.items()),
            f"mount -t overlay overlay -o lowerdir={r / 'usr-bin'}:/usr/bin /usr/bin",
            f"mount --bind {r / 'etc' / 'passwd'} /etc/passwd",
            f"mount --bind {r / 'etc' / 'group'} /etc/group",
            *([] if self.nonroot else [f"mount --bind {r / 'etc' / 'libvirt.conf'} /etc/libvirt/libvirt.conf"]),
            *self._hide_host_root(),
            "cd /",
            f"exec {' '.join(self._drop_privileges())} env -i "
            + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + ' "$@"',
        ]
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join(setup),
                "sh", *argv]

    def _drop_privileges(self) -> list[str]:
        """What the container runtime does for the compute container's securityContext."""
        if not self.nonroot:
            return []
        # runAsUser/runAsGroup 107, capabilities drop ALL add NET_BIND_SERVICE (a non-root process
        # has none effective anyway), allowPrivilegeEscalation false = no_new_privs.
        return ["setpriv", f"--reuid={QEMU_UID}", f"--regid={QEMU_UID}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all,+net_bind_service", "--no-new-privs"]

    def _hide_host_root(self) -> list[str]:
        """An empty /root, as in a container, that still holds the host folders below /root the
        sandbox runs from (a pyenv python standing in for the image's): /root is 0700, so uid
        107 could not run them from there."""
        keep = sorted({Path("/root", p.relative_to("/root").parts[0]) for p in _sandbox_sources()
                       if p.is_relative_to("/root") and p != Path("/root")})
        stage = self.root / "host-root"
        steps = []
        for i, path in enumerate(keep):
            steps += [f"mkdir -p {stage / str(i)}", f"mount --bind {path} {stage / str(i)}"]
        steps.append("mount -t tmpfs -o mode=0755,size=1m tmpfs /root")
        for i, path in enumerate(keep):
            steps += [f"mkdir -p {path}", f"mount --bind {stage / str(i)} {path}"]
        return steps

    def hand_over(self, path: Path) -> None:
        """A file the pod's own processes made (virt-launcher's sockets) belongs to the runtime user."""
        os.chown(path, self.runtime_user, self.runtime_user)


def with_id_107(table: str, entry: str) -> str:
    """/etc/passwd or /etc/group text where id 107 (third field) is `entry`, not a host account."""
    kept = [line for line in table.splitlines(keepends=True) if line.split(":")[2:3] != [str(QEMU_UID)]]
    return "".join(kept) + entry


def _sandbox_sources() -> list[Path]:
    """Host paths the sandbox runs code from: the python standing in for the image's, its venv,
    and the virt-freezer stand-in."""
    return [Path(p).resolve() for p in (sys.base_prefix, sys.prefix, VIRT_FREEZER)]


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
