"""Which VMIs a run acts on, whether they can be frozen now, and which pod runs each.

The decisions are pure functions of the VMI/pod dicts (unit-tested); ``resolve_targets``
does the reads. Nothing here changes the cluster: every refusal happens before any action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import Failed, UsageError
from .kube import Kube, KubeError

FREEZE = "freeze"
UNFREEZE = "unfreeze"
LAUNCHER_SELECTOR = "kubevirt.io=virt-launcher"
CREATED_BY = "kubevirt.io/created-by"
MIGRATION_JOB = "kubevirt.io/migrationJobUID"
COMPUTE = "compute"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_KIND_PREFIXES = (
    "vm",
    "vms",
    "vmi",
    "vmis",
    "virtualmachine",
    "virtualmachines",
    "virtualmachineinstance",
    "virtualmachineinstances",
    "virtualmachine.kubevirt.io",
    "virtualmachineinstance.kubevirt.io",
)


# -- names ---------------------------------------------------------------------------------
def parse_name(arg: str) -> str:
    """A VM name from NAME or KIND/NAME (vm/x, vmi/x, virtualmachineinstance.kubevirt.io/x)."""
    name = arg.strip()
    if "/" in name:
        kind, _, name = name.partition("/")
        if kind.lower() not in _KIND_PREFIXES:
            raise UsageError(f"invalid name {arg!r}: {kind!r} is not a VM kind", "give NAME or vm/NAME")
    if not name or len(name) > 253 or not _NAME.match(name):
        raise UsageError(
            f"invalid name {arg!r}",
            "a VM name is lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        )
    return name


def parse_names(args: list[str]) -> list[str]:
    names: list[str] = []
    for arg in args:
        name = parse_name(arg)
        if name not in names:
            names.append(name)
    return names


# Kubernetes label selector syntax (apimachinery labels.Parse), checked before anything is sent.
_LABEL = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL}"
_VALUE = rf"(?:{_LABEL})?"
_REQUIREMENT = re.compile(
    rf"^\s*(?:!\s*{_KEY}|{_KEY}(?:\s*(?:==?|!=)\s*{_VALUE}|\s*[<>]\s*-?\d+"
    rf"|\s+(?:in|notin)\s*\(\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*\))?)\s*$"
)


def check_selector(selector: str) -> None:
    """UsageError for a label selector the API server would reject (so nothing is sent)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    for part in parts:
        if not _REQUIREMENT.match(part):
            raise UsageError(f"invalid label selector {selector!r} (at {part.strip()!r})",
                             "e.g. -l app=db, -l 'tier in (db,cache)', -l '!legacy'")


# -- reading a VMI -------------------------------------------------------------------------
def _status(vmi: dict) -> dict:
    return vmi.get("status") or {}


def condition(vmi: dict, kind: str) -> dict | None:
    for cond in _status(vmi).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def agent_connected(vmi: dict) -> bool:
    """KubeVirt removes AgentConnected when the agent goes; present and not False = connected."""
    cond = condition(vmi, "AgentConnected")
    return cond is not None and str(cond.get("status", "True")) != "False"


def is_paused(vmi: dict) -> bool:
    cond = condition(vmi, "Paused")
    return cond is not None and str(cond.get("status")) == "True"


def migration_in_progress(vmi: dict) -> dict | None:
    """The migrationState of a migration that has started and neither completed nor failed."""
    state = _status(vmi).get("migrationState") or None
    if not state:
        return None
    if state.get("startTimestamp") and not state.get("completed") and not state.get("failed"):
        return state
    return None


def migrating_now(vmi: dict, pods: list[dict] | None = None) -> str | None:
    """Why this VMI is migrating right now (None: it is not), from a fresh read of the VMI and,
    when given, its launcher pods: a migrationState with a startTimestamp and no endTimestamp
    (neither completed nor failed), or a live pod of the VMI carrying the migration target label
    (kubevirt.io/migrationJobUID) of a migration the VMI has not finished (KubeVirt makes the target
    pod before it writes migrationState)."""
    state = _status(vmi).get("migrationState") or {}
    if state.get("startTimestamp") and not state.get("endTimestamp") \
            and not state.get("completed") and not state.get("failed"):
        return f"migrating to node {state.get('targetNode') or '?'}"
    uid = (vmi.get("metadata") or {}).get("uid", "")
    for pod in pods or []:
        meta = pod.get("metadata") or {}
        job = (meta.get("labels") or {}).get(MIGRATION_JOB)
        if not job or not _controlled_by(pod, uid):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
            continue
        if not state or (job == state.get("migrationUid") and not state.get("endTimestamp")
                         and not state.get("completed") and not state.get("failed")):
            node = (pod.get("spec") or {}).get("nodeName") or "?"
            return f"migrating (target pod {meta.get('name')} on node {node})"
    return None


# Windows' VSS holds the writes of a freeze for about 10 s, then lets go (the agent still says frozen).
VSS_HOLD_S = 10.0


def is_windows(vmi: dict) -> bool:
    info = _status(vmi).get("guestOSInfo") or {}
    return info.get("id", "").lower() == "mswindows" or "windows" in str(info.get("name", "")).lower()


def freeze_status(vmi: dict) -> str:
    """'frozen' or 'thawed' as the VMI status says (KubeVirt removes the field when thawed)."""
    return "frozen" if _status(vmi).get("fsFreezeStatus") == "frozen" else "thawed"


def ref(vmi: dict) -> str:
    meta = vmi.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


def paused_skip_reason(vmi: dict, action: str) -> str | None:
    """With --skip-paused: why this VMI is left out of the run, or None when it is not."""
    if not is_paused(vmi):
        return None
    if action == FREEZE:
        return ("paused: it writes nothing while paused, but its filesystems were not flushed, so a snapshot "
                "of it is crash-consistent only (as after a power cut); it was not frozen")
    if freeze_status(vmi) != "frozen":
        return "paused: a paused guest cannot be thawed, and its VMI status does not show it frozen"
    return None     # frozen and paused: never hidden; the thaw fails at once and says so


def preflight(vmi: dict, action: str) -> list[str]:
    """Refuse (Failed) when ``action`` cannot work on this VMI now; else return warnings."""
    meta, status = vmi.get("metadata") or {}, _status(vmi)
    name, where = meta.get("name", "?"), ref(vmi)
    phase = status.get("phase") or "Pending"
    warnings: list[str] = []
    if meta.get("deletionTimestamp"):
        raise Failed(f"VMI {where} is being deleted", "nothing to freeze; wait until it is gone or restarted")
    if phase in ("Succeeded", "Failed"):
        raise Failed(f"VMI {where} has stopped (phase {phase})", f"start it first: virtctl start {name}")
    if phase != "Running":
        raise Failed(
            f"VMI {where} is {phase}, not Running",
            f"wait until it runs (kubectl get vmi {name} -n {meta.get('namespace')} -w) and try again",
        )
    if not status.get("nodeName"):
        raise Failed(f"VMI {where} has no node in its status", "wait until it is scheduled and running")
    if is_paused(vmi) and action == FREEZE:
        # KubeVirt 1.6+ answers a freeze of a paused VMI with success and freezes nothing: the
        # guest's page cache is not flushed, so its snapshot is only crash-consistent.
        raise Failed(
            f"VMI {where} is paused, so its guest agent cannot answer",
            f"unpause it first (virtctl unpause vm {name}), or pass --skip-paused to freeze the others; "
            "a paused guest writes nothing, but it is not flushed either",
        )
    if not agent_connected(vmi):
        if action == FREEZE:
            raise Failed(
                f"VMI {where} has no connected guest agent (no AgentConnected condition)",
                "install and start qemu-guest-agent in the guest, then try again",
            )
        warnings.append(f"{where} has no connected guest agent: the thaw will likely fail")
    migration = migration_in_progress(vmi)
    if migration and action == FREEZE:
        raise Failed(
            f"VMI {where} is migrating to node {migration.get('targetNode') or '?'}",
            "KubeVirt refuses to freeze during a migration; wait until it finishes and try again",
        )
    if action == FREEZE and is_windows(vmi):
        warnings.append(
            f"{where} runs Windows: VSS holds a freeze for only about 10 seconds, "
            "after which writes go on while the guest agent still says frozen; take the backup within "
            "10 s (the unfreeze exits 4 when the freeze did not hold)"
        )
    return warnings


# -- the launcher pod ----------------------------------------------------------------------
def _controlled_by(pod: dict, uid: str) -> bool:
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("uid") == uid and owner.get("controller", True):
            return True
    return bool(uid) and (meta.get("labels") or {}).get(CREATED_BY) == uid


def _is_migration_target(pod: dict, vmi: dict) -> bool:
    """A target pod of a migration the VMI has not completed yet."""
    meta = pod.get("metadata") or {}
    job = (meta.get("labels") or {}).get(MIGRATION_JOB)
    state = _status(vmi).get("migrationState") or {}
    finished = bool(state.get("completed")) and not state.get("failed")
    if state.get("targetPod") and state.get("targetPod") == meta.get("name") and not finished:
        return True
    if job and job == state.get("migrationUid") and not finished:
        return True
    if job and not state:
        return True
    return False


def select_launcher_pod(vmi: dict, pods: list[dict]) -> dict | None:
    """The pod KubeVirt talks to: the newest pod controlled by the VMI on the VMI's node."""
    uid = (vmi.get("metadata") or {}).get("uid", "")
    node = _status(vmi).get("nodeName")
    best = None
    for pod in pods:
        if not _controlled_by(pod, uid):
            continue
        if node and (pod.get("spec") or {}).get("nodeName") != node:
            continue
        if _is_migration_target(pod, vmi):
            continue
        key = ((pod.get("metadata") or {}).get("creationTimestamp") or "", pod["metadata"].get("name", ""))
        if best is None or key > best[0]:
            best = (key, pod)
    return best[1] if best else None


def compute_image(pod: dict | None) -> str:
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == COMPUTE:
            return str(container.get("image") or "")
    return ""


def check_pod(pod: dict | None, vmi: dict) -> None:
    where = ref(vmi)
    if pod is None:
        uid = (vmi.get("metadata") or {}).get("uid", "")
        raise Failed(
            f"no virt-launcher pod of VMI {where} found on node {_status(vmi).get('nodeName')}",
            f"check kubectl get pods -n {(vmi.get('metadata') or {}).get('namespace')} -l {CREATED_BY}={uid}",
        )
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("phase") not in (None, "Running"):
        raise Failed(f"launcher pod {meta.get('name')} of VMI {where} is {status.get('phase')}, not Running")
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if names and COMPUTE not in names:
        raise Failed(f"launcher pod {meta.get('name')} of VMI {where} has no {COMPUTE!r} container")


# -- targets ------------------------------------------------------------------------------
@dataclass
class Target:
    vmi: dict
    pod: dict | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: str = ""    # --skip-paused: why the run leaves this VMI alone ("" = it acts on it)

    @property
    def namespace(self) -> str:
        return self.vmi["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.vmi["metadata"]["name"]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def domain(self) -> str:
        return f"{self.namespace}_{self.name}"

    @property
    def pod_name(self) -> str:
        return ((self.pod or {}).get("metadata") or {}).get("name", "")

    @property
    def node(self) -> str:
        return _status(self.vmi).get("nodeName") or ""

    @property
    def frozen_before(self) -> bool:
        return freeze_status(self.vmi) == "frozen"

    @property
    def resource_version(self) -> str:
        return str((self.vmi.get("metadata") or {}).get("resourceVersion") or "")


def _not_found(kube: Kube, namespace: str, name: str) -> Failed:
    """Why there is no VMI: the VM exists but is not running, or there is nothing of that name."""
    try:
        vm = kube.get_vm(namespace, name)
    except KubeError:
        vm = None
    if vm:
        printable = (vm.get("status") or {}).get("printableStatus") or "not running"
        return Failed(
            f"VirtualMachine {namespace}/{name} exists but has no running instance ({printable})",
            f"start it first: virtctl start {name} -n {namespace}",
        )
    return Failed(
        f"VirtualMachineInstance {name!r} not found in namespace {namespace!r}",
        f"list them with: kubectl get vmi -n {namespace} (or pass -n NAMESPACE)",
    )


def fetch_vmis(kube: Kube, namespace: str | None, names: list[str], selector: str | None) -> list[dict]:
    """The VMIs named, or matching ``selector``; Failed when one is missing."""
    if names:
        vmis = []
        for name in names:
            try:
                vmis.append(kube.get_vmi(namespace, name))
            except KubeError as exc:
                if exc.status == 404 and "could not find the requested resource" not in exc.message:
                    raise _not_found(kube, namespace, name) from None
                if exc.status == 404:
                    raise Failed(
                        "the cluster does not serve virtualmachineinstances.kubevirt.io", "is KubeVirt installed?"
                    ) from None
                raise
        return vmis
    listing = kube.list_vmis(namespace, selector)
    return sorted(
        listing.get("items") or [],
        key=lambda v: (v["metadata"].get("namespace", ""), v["metadata"].get("name", "")),
    )


def resolve_targets(
    kube: Kube, namespace: str, names: list[str], selector: str | None, action: str, skip_paused: bool = False
) -> list[Target]:
    """Read the VMIs and their launcher pods; refuse before anything is changed."""
    vmis = fetch_vmis(kube, namespace, names, selector)
    if not vmis:
        where = f"in namespace {namespace!r}"
        raise Failed(f"no VirtualMachineInstance matches -l {selector!r} {where}", "check the selector and -n")
    problems: list[str] = []
    targets: list[Target] = []
    pods_by_ns: dict[str, list[dict]] = {}
    for vmi in vmis:
        why = paused_skip_reason(vmi, action) if skip_paused else None
        if why:
            targets.append(Target(vmi=vmi, warnings=[f"{ref(vmi)} is skipped: {why}"], skipped=why))
            continue
        try:
            warnings = preflight(vmi, action)
            ns = vmi["metadata"]["namespace"]
            if ns not in pods_by_ns:
                pods_by_ns[ns] = kube.list_pods(ns, LAUNCHER_SELECTOR)
            pod = select_launcher_pod(vmi, pods_by_ns[ns])
            check_pod(pod, vmi)
            targets.append(Target(vmi=vmi, pod=pod, warnings=warnings))
        except KubeError:
            raise
        except Failed as exc:
            problems.append(exc.line())
    if problems:
        if len(vmis) == 1:
            raise Failed(problems[0])
        verb = "frozen" if action == FREEZE else "thawed"
        raise Failed(f"{len(problems)} of {len(vmis)} VMs cannot be {verb}, so none was: " + " | ".join(problems))
    return targets
