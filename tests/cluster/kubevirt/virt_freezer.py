"""/usr/bin/virt-freezer as KubeVirt ships it in the compute container (cmd/virt-freezer/virt-freezer.go).

It talks to virt-launcher over /run/kubevirt/sockets/launcher-sock (here one JSON line each way
instead of gRPC) and behaves as the real one does for its callers:
- flags parsed by spf13/pflag (v1.0.10, ExitOnError): `--freeze`, `--unfreeze`, `--name`,
  `--namespace`, `--unfreezeTimeoutSeconds` (int32, default 300); `--help`/`-h` print the usage on
  stderr and exit 0; an unknown flag, a missing value or a bad bool/int prints the usage and then
  pflag's plain-text error on stderr and exits 2;
- then "Failed to parse flags" (exit 1) without --freeze/--unfreeze or without --name/--namespace;
- guest info first: no agent -> "No guest agent, exiting", exit 0; then the domain: not running ->
  "VM domain not running, no need to freeze/unfreeze", exit 0;
- a failed freeze logs "Freezing VMI failed" (after "Guest agent not available for now" it first
  asks for an unfreeze and says to make sure the agent runs), a failed unfreeze "Unfreezing VMI
  failed", exit 1; success logs "Operation completed successfully", exit 0;
- every log line is KubeVirt's JSON on stderr with component "freezer".
Standard library only: it runs with the host's python in the pod sandbox.
"""

import json
import os
import socket
import sys
from datetime import datetime, timezone

SOCKET = "/run/kubevirt/sockets/launcher-sock"
PROGRAM = "/usr/bin/virt-freezer"          # os.Args[0] as KubeVirt's callers run it
GA_NOT_AVAILABLE = "Guest agent not available for now"
VSS_FREEZE_LIMIT = "fsfreeze is limited"

# name -> (pflag type, default, usage), in the order pflag prints them (sorted)
FLAGS = {
    "freeze": ("bool", "false", "Freeze VM"),
    "name": ("string", "", "Name of the VirtualMachineInstance"),
    "namespace": ("string", "", "Namespace of the VirtualMachineInstance"),
    "unfreeze": ("bool", "false", "Unfreeze VM"),
    "unfreezeTimeoutSeconds": ("int32", "300",
                               "Timeout in seconds to automatically unfreeze the VirtualMachineInstance"),
}


class PflagError(Exception):
    """pflag's ExitOnError: usage, then this text, exit 2."""


class HelpRequested(Exception):
    pass


def log(level, msg, line, reason=None):
    """kubevirt.io/client-go/log: a go-kit JSON line (keys sorted) with component "freezer"."""
    entry = {"component": "freezer", "level": level, "msg": msg, "pos": f"virt-freezer.go:{line}",
             "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if reason is not None:
        entry["reason"] = reason
    sys.stderr.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")


def usage():
    """pflag's defaultUsage: FlagUsages() aligned at the longest "      --flag type" plus two."""
    heads = {}
    for name, (kind, _default, _text) in FLAGS.items():
        heads[name] = f"      --{name}" + ("" if kind == "bool" else f" {kind}")
    width = max(len(h) for h in heads.values()) + 1
    lines = [f"Usage of {PROGRAM}:"]
    for name, (kind, default, text) in FLAGS.items():
        zero = {"bool": "false", "string": "", "int32": "0"}[kind]
        suffix = "" if default == zero else (f' (default "{default}")' if kind == "string" else f" (default {default})")
        lines.append(f"{heads[name]} {' ' * (width - len(heads[name]))} {text}{suffix}")
    sys.stderr.write("\n".join(lines) + "\n")


def parse_bool(text):
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_int32(text):
    """Go's strconv.ParseInt(s, 0, 32)."""
    body = text[1:] if text[:1] in "+-" else text
    try:
        if body[:2].lower() in ("0x", "0o", "0b"):
            value = int(body, 0)
        elif len(body) > 1 and body.startswith("0"):
            value = int(body, 8)
        else:
            if not body.isdigit():
                raise ValueError(body)
            value = int(body, 10)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
    value = -value if text.startswith("-") else value
    if not -2**31 <= value < 2**31:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def parse(argv):
    """pflag.Parse() of the five flags (interspersed arguments are kept and ignored)."""
    values = {name: default for name, (_kind, default, _text) in FLAGS.items()}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue
        if not arg.startswith("--"):
            letter = arg[1]
            if letter == "h":
                raise HelpRequested()
            raise PflagError(f"unknown shorthand flag: {letter!r} in {arg}")
        name, has_value, value = arg[2:].partition("=")
        if not name or name[0] in "-=":
            raise PflagError(f"bad flag syntax: {arg}")
        if name not in FLAGS:
            if name == "help":
                raise HelpRequested()
            raise PflagError(f"unknown flag: --{name}")
        kind = FLAGS[name][0]
        if not has_value:
            if kind == "bool":
                value = "true"          # NoOptDefVal
            elif args:
                value = args.pop(0)
            else:
                raise PflagError(f"flag needs an argument: --{name}")
        try:
            if kind == "bool":
                parse_bool(value)
            elif kind == "int32":
                parse_int32(value)
        except ValueError as e:
            raise PflagError(f'invalid argument "{value}" for "--{name}" flag: {e}') from None
        values[name] = value
    return {"freeze": parse_bool(values["freeze"]), "unfreeze": parse_bool(values["unfreeze"]),
            "name": values["name"], "namespace": values["namespace"],
            "unfreezeTimeoutSeconds": parse_int32(values["unfreezeTimeoutSeconds"])}


def call(request):
    """One command to the launcher; OSError when it cannot be reached."""
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
    reply = json.loads(data or b"{}")
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error") or "no answer from the launcher")
    return reply


def run(opts):
    """virt-freezer.go's run(): 0 or 1."""
    try:
        info = call({"op": "info"})
    except (OSError, RuntimeError) as e:
        log("error", "Failed to get guest info", 105, str(e))
        return 1
    if not info.get("gaVersion"):
        log("info", "No guest agent, exiting", 110)
        return 0
    log("info", f"Guest agent version is {info['gaVersion']}", 114)
    if not info.get("running"):
        log("info", "VM domain not running, no need to freeze/unfreeze", 121)
        return 0
    if opts["freeze"]:
        try:
            call({"op": "freeze", "unfreezeTimeoutSeconds": opts["unfreezeTimeoutSeconds"]})
        except (OSError, RuntimeError) as e:
            if GA_NOT_AVAILABLE in str(e):
                try:
                    call({"op": "unfreeze"})   # its error is ignored, as in virt-freezer.go
                except (OSError, RuntimeError):
                    pass
                if "windows" in str(info.get("os", "")).lower():
                    log("error", "Freezing VMI failed, please make sure guest agent and VSS are running and try "
                                 "again", 131, str(e))
                else:
                    log("error", "Freezing VMI failed, please make sure guest agent is running and try again",
                        133, str(e))
            else:
                log("error", "Freezing VMI failed", 136, str(e))
            return 1
    else:
        try:
            call({"op": "unfreeze"})
        except (OSError, RuntimeError) as e:
            if VSS_FREEZE_LIMIT in str(e):
                log("error", "Unfreezing VMI failed, please try again. If problem continues, stop the VM and "
                             "backup while down", 144, str(e))
            else:
                log("error", "Unfreezing VMI failed", 146, str(e))
            return 1
    log("info", "Operation completed successfully", 152)
    return 0


def main(argv):
    try:
        opts = parse(argv)
    except HelpRequested:
        usage()
        return 0
    except PflagError as e:
        usage()
        sys.stderr.write(f"{e}\n")
        return 2
    if not opts["freeze"] and not opts["unfreeze"]:
        log("error", "Failed to parse flags", 161, "either --freeze or --unfreeze must be set")
        return 1
    if not opts["name"] or not opts["namespace"]:
        log("error", "Failed to parse flags", 161, "both --name and --namespace must be provided")
        return 1
    if not os.path.exists(SOCKET):
        log("error", "Failed to connect launcher", 55, f"dial unix {SOCKET}: connect: no such file or directory")
        return 1
    return run(opts)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
