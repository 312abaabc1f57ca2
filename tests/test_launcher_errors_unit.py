"""methods/launcher_errors.py and the virt-freezer method's reading of KubeVirt's texts (pure logic)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kubectl_freeze.methods import FREEZE, Options, launcher_errors, virt_freezer
from kubectl_freeze.targets import Target
from tests.test_targets_unit import make_pod, make_vmi

TARGET = Target(make_vmi(), make_pod())
OPTS = Options(unfreeze_timeout=timedelta(minutes=5))


@pytest.mark.parametrize("inner, code, libvirt_code, maybe", [
    ("LibvirtError(Code=86, Domain=10, Message='Guest agent is not responding: QEMU guest agent is not connected')",
     "agent-not-connected", 86, False),
    ("LibvirtError(Code=86, Domain=10, Message='Guest agent is not responding: Guest agent not available for now')",
     "agent-timeout", 86, True),
    ("LibvirtError(Code=55, Domain=10, Message='Requested operation is not valid: domain is not running')",
     "domain-not-running", 55, False),
    ("failed to freeze VMI, VMI is currently during migration", "migrating", None, False),
])
def test_the_launchers_message_is_read_out_of_the_cmd_client_text(inner, code, libvirt_code, maybe):
    text = f"server error. command Freeze failed: {json.dumps(inner)}"
    failure = launcher_errors.parse(f"Internal error occurred: unexpected return code 400 (400 Bad Request), "
                                    f"message: {text}")
    assert (failure.command, failure.code, failure.libvirt_code, failure.maybe_froze) == \
        ("Freeze", code, libvirt_code, maybe)
    assert failure.hint


def test_no_launcher_message_in_other_texts():
    assert launcher_errors.parse("the API server failed (HTTP 503)") is None


def test_virt_freezer_exit_2_is_pflags_plain_text_and_nothing_ran():
    stderr = "Usage of /usr/bin/virt-freezer:\n      --freeze   Freeze VM\nunknown flag: --unfreezeTimeoutSeconds\n"
    out = virt_freezer.outcome_from_run(2, stderr, "", TARGET, FREEZE, OPTS)
    assert not out.ok and not out.maybe_changed
    assert "refused its arguments (exit 2: unknown flag: --unfreezeTimeoutSeconds)" in out.error.line()


def test_virt_freezer_success_without_a_prior_agent_answer_arms_the_requested_timer():
    logs = json.dumps({"component": "freezer", "level": "info", "msg": virt_freezer.SUCCESS})
    out = virt_freezer.outcome_from_run(0, logs, "", TARGET, FREEZE, OPTS, before="thawed")
    assert out.ok and out.detail["completed"] and out.safety_thaw_armed and out.safety_thaw_deadline
    kept = virt_freezer.outcome_from_run(0, logs, "", TARGET, FREEZE, OPTS, before="frozen")
    assert kept.already and kept.safety_thaw_deadline is None and kept.safety_thaw_armed is False
