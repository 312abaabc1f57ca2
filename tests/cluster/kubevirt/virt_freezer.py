"""/usr/bin/virt-freezer as KubeVirt ships it in the compute container (cmd/virt-freezer).

It talks to virt-launcher over /run/kubevirt/sockets/launcher-sock (here one JSON line each
way instead of gRPC) and behaves as the real one does for its callers: flags `--freeze` |
`--unfreeze`, `--name`, `--namespace`, `--unfreezeTimeoutSeconds` (default 300); JSON log lines
on stderr; exit 0 WITHOUT freezing when the domain is not running or there is no guest agent
("No guest agent, exiting"); exit 1 on bad flags or a failure.
"""

import json
import socket
import sys
from datetime import datetime, timezone

SOCKET = "/run/kubevirt/sockets/launcher-sock"


def log(level, msg, **extra):
    line = {"component": "virt-freezer", "level": level, "msg": msg,
            "pos": "virt-freezer.go:0",
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **extra}
    sys.stderr.write(json.dumps(line) + "\n")


def parse(argv):
    """Go's pflag: --flag, --flag=value, --flag value (and single-dash forms)."""
    opts = {"freeze": False, "unfreeze": False, "name": "", "namespace": "",
            "unfreezeTimeoutSeconds": "300"}
    i = 0
    while i < len(argv):
        arg = argv[i].lstrip("-")
        if not argv[i].startswith("-") or not arg:
            raise ValueError(f"unexpected argument {argv[i]!r}")
        key, _, value = arg.partition("=")
        if key not in opts:
            raise ValueError(f"unknown flag: --{key}")
        if isinstance(opts[key], bool):
            opts[key] = value.lower() in ("", "true", "1")
        else:
            if not _:
                i += 1
                if i >= len(argv):
                    raise ValueError(f"flag needs an argument: --{key}")
                value = argv[i]
            opts[key] = value
        i += 1
    return opts


def call(request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(120)
        s.connect(SOCKET)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def main(argv):
    try:
        opts = parse(argv)
        timeout = int(opts["unfreezeTimeoutSeconds"])
    except ValueError as e:
        log("error", str(e))
        return 1
    if opts["freeze"] == opts["unfreeze"]:
        log("error", "Please specify exactly one of --freeze or --unfreeze")
        return 1
    if not opts["name"] or not opts["namespace"]:
        log("error", "--name and --namespace are required")
        return 1
    vmi = f"{opts['namespace']}/{opts['name']}"
    try:
        info = call({"op": "info"})
        if not info.get("running"):
            log("info", "Domain is not running, exiting", name=opts["name"], namespace=opts["namespace"])
            return 0
        if not info.get("agent"):
            log("info", "No guest agent, exiting", name=opts["name"], namespace=opts["namespace"])
            return 0
        action = "freeze" if opts["freeze"] else "unfreeze"
        reply = call({"op": action, "unfreezeTimeoutSeconds": timeout})
    except OSError as e:
        log("error", f"Failed to connect to cmd client: {e}", reason=str(e))
        return 1
    if not reply.get("ok"):
        log("error", f"Failed to {action} VMI {vmi}", reason=reply.get("error", ""))
        return 1
    log("info", f"Successfully {'froze' if action == 'freeze' else 'unfroze'} VMI {vmi}",
        name=opts["name"], namespace=opts["namespace"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
