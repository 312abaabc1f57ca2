"""The guest agent's own freeze status, read with `virsh` in the compute container.

Every launcher image has virsh (stock ones have no python3), so ``kubectl freeze status
--live`` uses this where the bundled freezer cannot run. It tries the libvirt URIs KubeVirt's
launchers use, in the freezer's order, and asks the agent on the first one that knows the domain.
"""

from __future__ import annotations

import json

from ..freezer import DEFAULT_URIS
from ..targets import COMPUTE, Target

SCRIPT = r"""domain=$1; shift
for uri in "$@"; do
    case "$uri" in *socket=*) [ -S "${uri#*socket=}" ] || continue ;; esac
    virsh -c "$uri" domstate "$domain" >/dev/null 2>&1 || continue
    exec virsh -c "$uri" qemu-agent-command "$domain" '{"execute":"guest-fsfreeze-status"}'
done
echo "no libvirt URI of this launcher knows the domain $domain" >&2
exit 1
"""


def command(target: Target) -> list[str]:
    return ["sh", "-c", SCRIPT, "sh", target.domain, *DEFAULT_URIS]


def parse_status(stdout: str) -> str | None:
    """"frozen" or "thawed" from virsh's `{"return":"..."}` line, else None."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line).get("return")
        except (ValueError, AttributeError):
            continue
        if value in ("frozen", "thawed"):
            return value
    return None


def read(kube, target: Target, timeout: float):
    """Ask the agent in ``target``'s compute container: ("frozen"|"thawed"|None, the ExecResult)."""
    result = kube.exec(target.namespace, target.pod_name, COMPUTE, command(target), timeout=timeout)
    return parse_status(result.stdout), result
