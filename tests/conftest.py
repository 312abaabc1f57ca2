"""Fixtures shared by every test: the rig of real guests, booted once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rig import Guest, GuestSpec, Rig


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    rig = Rig.start()
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="session")
def _rig_guests(rig: Rig) -> dict[str, Guest]:
    # Booted together so their ~10 s boots overlap.
    guests = rig.boot_many([
        GuestSpec(namespace="rig", name="agent", agent=True, data_disks=2),
        GuestSpec(namespace="rig", name="noagent", agent=False, data_disks=1),
    ])
    return {g.spec.name: g for g in guests}


def _restore(guest: Guest) -> None:
    """Leaves a shared guest running, with a live agent, thawed, whatever a test did to it."""
    import libvirt

    dom = guest.dom()
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    if guest.spec.agent:
        guest.agent("cont")
        try:
            guest.agent_command({"execute": "guest-ping"}, timeout=2)
        except libvirt.libvirtError:
            guest.agent("start")
        guest.wait_agent()
        dom.fsThaw(None, 0)


@pytest.fixture
def guest(_rig_guests: dict[str, Guest]) -> Iterator[Guest]:
    """A running guest with a guest agent and two ext4 data disks (/mnt/data1, /mnt/data2)."""
    g = _rig_guests["agent"]
    _restore(g)
    try:
        yield g
    finally:
        _restore(g)


@pytest.fixture
def agentless_guest(_rig_guests: dict[str, Guest]) -> Guest:
    """A running guest with no guest agent channel at all."""
    return _rig_guests["noagent"]
