"""Method "auto": probe the compute container once per launcher image, then pick.

Decision table (``decide``):

=================  ===================  ==================  ==============
exec allowed       python3 + libvirt    /usr/bin/virt-freezer  -> method
=================  ===================  ==================  ==============
no (403)           -                    -                   api
yes                yes                  -                   freezer
yes                no                   yes                 virt-freezer
yes                no                   no                  api
=================  ===================  ==================  ==============

``--mountpoint`` needs the bundled freezer; when auto cannot use it, that is an error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..errors import Failed
from ..kube import KubeError
from ..targets import COMPUTE, Target, compute_image
from . import bundled, subresource, virt_freezer

PYTHON_PROBE = ["python3", "-c", "import libvirt, libvirt_qemu"]
VIRT_FREEZER_PROBE = [virt_freezer.BINARY, "--help"]
PROBE_TIMEOUT = 20.0


@dataclass
class Probe:
    exec_allowed: bool
    python_libvirt: bool = False
    virt_freezer: bool = False
    note: str = ""
    elapsed_ms: int = 0


def decide(probe: Probe) -> str:
    if not probe.exec_allowed:
        return subresource.NAME
    if probe.python_libvirt:
        return bundled.NAME
    if probe.virt_freezer:
        return virt_freezer.NAME
    return subresource.NAME


def explain(probe: Probe, method: str) -> str:
    if not probe.exec_allowed:
        return "exec into the launcher pod is forbidden, so the subresource API"
    if method == bundled.NAME:
        return "the compute container has python3 with libvirt"
    if method == virt_freezer.NAME:
        return "the compute container has no python3 with libvirt but has /usr/bin/virt-freezer"
    return "the compute container has neither python3 with libvirt nor /usr/bin/virt-freezer"


def _ran(result) -> bool:
    """The probe command existed and ran (any real exit code but 126/127)."""
    return result.exit_code is not None and result.exit_code not in (126, 127)


def probe(kube, target: Target) -> Probe:
    started = time.monotonic()
    try:
        py = kube.exec(target.namespace, target.pod_name, COMPUTE, PYTHON_PROBE, timeout=PROBE_TIMEOUT)
        if py.exit_code == 0:
            return Probe(True, python_libvirt=True, elapsed_ms=int((time.monotonic() - started) * 1000))
        vf = kube.exec(target.namespace, target.pod_name, COMPUTE, VIRT_FREEZER_PROBE, timeout=PROBE_TIMEOUT)
        note = "" if _ran(py) else "no python3"
        return Probe(True, virt_freezer=_ran(vf), note=note, elapsed_ms=int((time.monotonic() - started) * 1000))
    except KubeError as exc:
        if exc.status == 403:
            return Probe(False, note=exc.message, elapsed_ms=int((time.monotonic() - started) * 1000))
        raise


class Prober:
    """Probe results of this run, one per launcher image (pods of one image answer alike)."""

    def __init__(self, kube):
        self.kube = kube
        self._cache: dict[str, Probe] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, target: Target) -> Probe:
        key = compute_image(target.pod) or f"pod:{target.namespace}/{target.pod_name}"
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._cache:
                self._cache[key] = probe(self.kube, target)
            return self._cache[key]


def choose(prober: Prober, target: Target, mountpoints: list[str]) -> tuple[str, Probe]:
    result = prober.get(target)
    method = decide(result)
    if mountpoints and method != bundled.NAME:
        raise Failed(
            f"--mountpoint needs the bundled freezer, but for {target.ref} auto would use {method}: "
            f"{explain(result, method)}",
            "drop --mountpoint to freeze every filesystem",
        )
    return method, result
