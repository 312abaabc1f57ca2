"""Freeze methods: one module each; ``get(name)`` returns the implementation.

- ``freezer``      (bundled.py)      kubectl_freeze/freezer.py via exec: talks to libvirt itself
- ``virt-freezer`` (virt_freezer.py) KubeVirt's /usr/bin/virt-freezer via exec
- ``api``          (subresource.py)  PUT .../virtualmachineinstances/NAME/freeze|unfreeze
- ``auto``         (auto.py)         probe the compute container once per image, then pick
"""

from __future__ import annotations

from .base import FREEZE, UNFREEZE, Method, Options, Outcome

AUTO = "auto"
NAMES = (AUTO, "freezer", "virt-freezer", "api")


def get(name: str) -> Method:
    if name == "freezer":
        from .bundled import BundledFreezer

        return BundledFreezer()
    if name == "virt-freezer":
        from .virt_freezer import VirtFreezer

        return VirtFreezer()
    if name == "api":
        from .subresource import SubresourceApi

        return SubresourceApi()
    raise ValueError(f"unknown method {name!r}")


__all__ = ["AUTO", "FREEZE", "NAMES", "UNFREEZE", "Method", "Options", "Outcome", "get"]
