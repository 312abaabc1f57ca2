"""The home-made exec behaves like containerd/CRI-O when the client goes away (facts sheet, "Exec
sessions"): the process's stdin reads EOF, its later writes get EPIPE, and it is NOT killed. The
held freeze of `kubectl freeze run` relies on exactly this to thaw when its client dies."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.conftest import KUBECTL

pytestmark = [pytest.mark.rig, pytest.mark.cluster]

SCRIPT = """trap '' PIPE
echo started > {out}
read line
echo "eof $?" >> {out}
sleep 0.5
echo hello
echo "write $?" >> {out}
sleep 1
echo alive >> {out}
"""


@pytest.mark.parametrize("how", ["client SIGKILLed", "apiserver restarted"])
def test_a_lost_exec_client_gives_stdin_eof_then_epipe_and_the_process_lives_on(cluster, tmp_path, how):
    pod = cluster.sim.pod_names("e2e", "vm1")[0]
    # In a folder of the pod's that its runtime user (uid 107 on a non-root launcher) may write.
    out = cluster.sim.backend.sandboxes[("e2e", pod)].run_dir / "kubevirt-private" / "exec-loss-seen"
    out.unlink(missing_ok=True)
    client = subprocess.Popen([KUBECTL, "exec", "-i", pod, "-c", "compute", "--", "sh", "-c",
                               SCRIPT.format(out="/run/kubevirt-private/exec-loss-seen")], env=cluster.env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not out.exists():
            assert time.monotonic() < deadline, client.stderr.read1(4000) if client.poll() is not None else ""
            time.sleep(0.05)
        if how == "client SIGKILLed":
            client.send_signal(signal.SIGKILL)
        else:
            cluster.sim.server.restart()
        deadline = time.monotonic() + 15
        while "alive" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        # read returned 1 (EOF), the write after failed (EPIPE), and the process went on to the end
        assert out.read_text().split("\n")[:4] == ["started", "eof 1", "write 1", "alive"]
    finally:
        client.kill()
        client.communicate(timeout=10)
