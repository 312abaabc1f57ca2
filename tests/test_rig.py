"""The rig itself: real guests whose heartbeat proves when their filesystems were frozen."""

import time

import pytest

pytestmark = pytest.mark.rig


def test_guest_heartbeat_stops_while_frozen_and_resumes_after(guest):
    guest.dom().fsFreeze(["/mnt/data1"], 0)
    try:
        assert guest.agent_status() == "frozen"
        frozen_at = guest.last_heartbeat(1)
        other_disk = guest.last_heartbeat(2)
        time.sleep(1.5)
        assert guest.last_heartbeat(1) == frozen_at
        assert guest.last_heartbeat(2) > other_disk
    finally:
        guest.dom().fsThaw(None, 0)
    time.sleep(1)
    assert guest.last_heartbeat(1) > frozen_at
    gaps = [b[1] - a[1] for a, b in zip(guest.heartbeat_file(1), guest.heartbeat_file(1)[1:])]
    assert max(gaps) >= 1.5


def test_agent_can_be_stopped_and_continued(guest):
    import libvirt

    guest.agent("stop")
    with pytest.raises(libvirt.libvirtError, match="not available for now"):
        guest.agent_command({"execute": "guest-ping"}, timeout=2)
    guest.agent("cont")
    guest.wait_agent()


def test_agentless_guest_has_no_agent_configured(agentless_guest):
    import libvirt

    # A domain without the agent channel is not error 86 but "argument unsupported" (74).
    with pytest.raises(libvirt.libvirtError, match="guest agent is not configured") as err:
        agentless_guest.agent_status()
    assert err.value.get_error_code() == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED
    assert agentless_guest.last_heartbeat(1) > 0
