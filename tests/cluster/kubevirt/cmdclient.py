"""How a virt-launcher failure reads once it has crossed KubeVirt's layers.

- virt-launcher's cmd server answers `Success: false` with `getErrorMessage(err)`: a libvirt error
  as `LibvirtError(Code=86, Domain=10, Message='...')`, any other error as its text;
- the cmd client (pkg/virt-handler/cmd-client) turns that into
  `server error. command Freeze failed: "<message as Go's %q>"`;
- virt-handler answers it as 400 Bad Request with that text as the body, and virt-api's
  `virtHandlerConn.doRequest` wraps it as `unexpected return code 400 (400 Bad Request), message:
  <body>`, which `errors.NewInternalError` prefixes with `Internal error occurred: ` (500).

Asserted this way in KubeVirt's tests/vmi_lifecycle_test.go.
"""

from __future__ import annotations

import json

from .launcher import LauncherError

# libvirt's VIR_FROM_QEMU: every error the launcher's freeze path gets (agent, domain state).
VIR_FROM_QEMU = 10
# virt-api's HTTP client to virt-handler (pkg/virt-api/rest/subresource.go)
VIRT_API_HANDLER_TIMEOUT_S = 10.0
VIRT_HANDLER_PORT = 8186


def launcher_message(error: LauncherError) -> str:
    """virt-launcher's getErrorMessage()."""
    if error.libvirt_code:
        domain = getattr(error, "libvirt_domain", 0) or VIR_FROM_QEMU
        return f"LibvirtError(Code={error.libvirt_code}, Domain={domain}, Message='{error}')"
    return str(error)


def go_quote(text: str) -> str:
    """Go's %q for the printable text these messages hold (JSON escaping agrees on it)."""
    return json.dumps(text, ensure_ascii=False)


def command_failed(command: str, error: LauncherError) -> str:
    """What the cmd client returns (and virt-freezer logs as the reason) for a failed command."""
    return f"server error. command {command} failed: {go_quote(launcher_message(error))}"


def virt_api_internal_error(handler_body: str, status: int = 400) -> str:
    """virt-api's 500 message for a non-2xx answer of virt-handler."""
    text = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
    return f"Internal error occurred: unexpected return code {status} ({status} {text}), message: {handler_body}"


def virt_api_timeout(handler_ip: str, namespace: str, name: str, sub: str) -> str:
    """virt-api's 500 message when virt-handler did not answer within its 10 s client timeout."""
    url = (f"https://{handler_ip}:{VIRT_HANDLER_PORT}/v1/namespaces/{namespace}"
           f"/virtualmachineinstances/{name}/{sub}")
    return (f'Internal error occurred: Put "{url}": context deadline exceeded '
            f"(Client.Timeout exceeded while awaiting headers)")

