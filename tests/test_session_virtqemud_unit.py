"""The non-root launcher's libvirt socket stand-in: reading a CONNECT_OPEN and writing the
unprivileged daemon's refusal in libvirt's RPC encoding (pure logic; the real-guest proof is
tests/test_nonroot_launcher_real.py)."""

from __future__ import annotations

import struct

from tests.cluster.kubevirt.session_virtqemud import (HEADER, REMOTE_PROC_CONNECT_OPEN, REMOTE_PROGRAM, REPLY,
                                                      STATUS_ERROR, _xdr_string, open_uri, refusal)


def test_open_uri_reads_the_optional_uri_string():
    assert open_uri(struct.pack(">I", 1) + _xdr_string("qemu:///system") + struct.pack(">I", 0)) == "qemu:///system"
    assert open_uri(struct.pack(">II", 0, 0)) is None


def test_xdr_strings_are_padded_to_four_bytes():
    assert _xdr_string("abcde") == struct.pack(">I", 5) + b"abcde\0\0\0"
    assert len(_xdr_string("abcd")) == 8


def test_refusal_is_an_error_reply_to_the_same_call():
    packet = refusal(1, 42, "/system")
    length, prog, vers, proc, mtype, serial, status = HEADER.unpack_from(packet)
    assert length == len(packet) and length % 4 == 0
    assert (prog, vers, proc, mtype, serial, status) == (REMOTE_PROGRAM, 1, REMOTE_PROC_CONNECT_OPEN, REPLY, 42,
                                                         STATUS_ERROR)
    code, domain, present, size = struct.unpack_from(">iiII", packet, HEADER.size)
    assert (code, domain, present) == (1, 10, 1)     # VIR_ERR_INTERNAL_ERROR from the QEMU driver
    message = packet[HEADER.size + 16:HEADER.size + 16 + size].decode()
    assert message == "unexpected QEMU URI path '/system', try qemu:///session"
