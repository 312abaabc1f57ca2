"""A real TCG guest with qemu-guest-agent and ext4 data disks that write a heartbeat."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from .artifacts import BootArtifacts, make_data_disk

HEARTBEAT = re.compile(r"^KF-HB (\d+) (\d+) ([\d.]+)\s*$", re.M)


@dataclass(frozen=True)
class GuestSpec:
    namespace: str = "demo"
    name: str = "vm1"
    agent: bool = True
    data_disks: int = 2
    memory_mib: int = 256
    heartbeat_s: float = 0.2   # the heartbeat loops' sleep (0.02 for benchmarks that time windows)

    @property
    def domain(self) -> str:
        # KubeVirt names the libvirt domain of a VMI <namespace>_<name>.
        return f"{self.namespace}_{self.name}"


def domain_xml(spec: GuestSpec, boot: BootArtifacts, disks: list[Path], console: Path, control: Path) -> str:
    disk_xml = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{escape(str(path))}'/><target dev='vd{chr(ord('a') + i)}' bus='virtio'/></disk>"
        for i, path in enumerate(disks)
    )
    agent_xml = (
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
        if spec.agent else ""
    )
    return f"""<domain type='qemu'>
  <name>{escape(spec.domain)}</name>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(boot.kernel))}</kernel>
    <initrd>{escape(str(boot.initrd))}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet kf.hb={spec.heartbeat_s:g}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {disk_xml}
    <serial type='file'><source path='{escape(str(console))}'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{escape(str(control))}'/><target port='1'/></serial>
    {agent_xml}
    <memballoon model='none'/>
  </devices>
</domain>"""


@dataclass
class Guest:
    spec: GuestSpec
    uri: str
    workdir: Path
    _conn: object = field(default=None, repr=False)

    @property
    def domain(self) -> str:
        return self.spec.domain

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    @property
    def control_socket(self) -> Path:
        return self.workdir / "control.sock"

    def disk_path(self, disk: int) -> Path:
        return self.workdir / f"data{disk}.img"

    def create(self, boot: BootArtifacts) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        disks = [self.disk_path(i + 1) for i in range(self.spec.data_disks)]
        for path in disks:
            make_data_disk(path)
        self.console_log.write_text("")
        xml = domain_xml(self.spec, boot, disks, self.console_log, self.control_socket)
        self.connection().createXML(xml, 0)

    def connection(self):
        import libvirt

        # libvirt prints every error on stderr by default; the callers handle them.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        if self._conn is None:
            self._conn = libvirt.open(self.uri)
        return self._conn

    def dom(self):
        return self.connection().lookupByName(self.domain)

    def console(self) -> str:
        return self.console_log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Returns once init is up and, for a guest with an agent, the agent answers a ping."""
        deadline = time.monotonic() + timeout
        while "KF-READY" not in self.console():
            self._check_deadline(deadline, "the guest's init")
            time.sleep(0.2)
        if self.spec.agent:
            self.wait_agent(deadline - time.monotonic())

    def wait_agent(self, timeout: float = 30.0) -> None:
        import libvirt

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.agent_command({"execute": "guest-ping"}, timeout=2)
                return
            except libvirt.libvirtError:
                self._check_deadline(deadline, "the guest agent")
                time.sleep(0.3)

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            tail = self.console()[-2000:]
            raise TimeoutError(f"{self.domain}: {what} did not come up; console tail:\n{tail}")

    def agent_command(self, command: dict, timeout: int = 10) -> object:
        import libvirt_qemu

        reply = libvirt_qemu.qemuAgentCommand(self.dom(), json.dumps(command), timeout, 0)
        return json.loads(reply).get("return")

    def agent_status(self) -> str:
        return str(self.agent_command({"execute": "guest-fsfreeze-status"}))

    def heartbeats(self, disk: int = 1) -> list[tuple[int, float]]:
        """(counter, guest uptime) of every heartbeat line the guest wrote to disk `disk`."""
        return [
            (int(count), float(uptime))
            for d, count, uptime in HEARTBEAT.findall(self.console())
            if int(d) == disk
        ]

    def last_heartbeat(self, disk: int = 1) -> int:
        beats = self.heartbeats(disk)
        return beats[-1][0] if beats else 0

    def heartbeat_file(self, disk: int = 1) -> list[tuple[int, float]]:
        """The heartbeat file as it is on the guest's disk, read through the agent (not while frozen)."""
        handle = self.agent_command(
            {"execute": "guest-file-open", "arguments": {"path": f"/mnt/data{disk}/heartbeat"}}
        )
        chunks = []
        try:
            while True:
                part = self.agent_command(
                    {"execute": "guest-file-read", "arguments": {"handle": handle, "count": 65536}}
                )
                chunks.append(base64.b64decode(part["buf-b64"]))
                if part.get("eof"):
                    break
        finally:
            self.agent_command({"execute": "guest-file-close", "arguments": {"handle": handle}})
        rows = []
        for line in b"".join(chunks).decode().splitlines():
            count, uptime = line.split()
            rows.append((int(count), float(uptime)))
        return rows

    def agent(self, command: str, timeout: float = 15.0) -> None:
        """Controls qemu-ga inside the guest: stop (SIGSTOP), cont, kill or start."""
        self._control(f"agent-{command}", timeout)

    def agent_delay(self, action: str, seconds: float, timeout: float = 15.0) -> None:
        """A slow agent: qemu-ga's fsfreeze hook waits `seconds` before each freeze ("freeze")
        or after each thaw ("thaw"), answering nothing meanwhile; 0 for no wait."""
        self._control(f"delay-{action} {seconds:g}", timeout)

    def freeze_delay(self, seconds: int, timeout: float = 15.0) -> None:
        """Every later freeze takes `seconds` longer (qemu-ga's fsfreeze hook sleeps); 0 ends it."""
        self.agent_delay("freeze", seconds, timeout)

    def _control(self, line: str, timeout: float) -> None:
        acks = self.console().count(f"KF-ACK {line}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.control_socket))
            s.sendall(line.encode() + b"\n")
            deadline = time.monotonic() + timeout
            while self.console().count(f"KF-ACK {line}") <= acks:
                self._check_deadline(deadline, f"the acknowledgement of {line}")
                time.sleep(0.05)

    def destroy(self) -> None:
        import libvirt

        try:
            self.dom().destroy()
        except libvirt.libvirtError:
            pass
        if self._conn is not None:
            self._conn.close()
            self._conn = None
