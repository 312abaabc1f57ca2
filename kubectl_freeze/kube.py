"""The Kubernetes API calls the plugin makes, as plain dicts, with errors turned into PluginErrors.

Every call goes through ``Kube._call`` (raw JSON; no model deserialisation) so that one place
applies ``--request-timeout`` and says what went wrong in words a user can act on:
unreachable cluster, rejected credentials, a forbidden verb/resource, not found, conflict.
Exec gets its own ApiClient per call (``kubernetes.stream.stream`` swaps the client's request
method while it runs).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote

from .config import Cluster
from .errors import Failed

KUBEVIRT = ("kubevirt.io", "v1")
SUBRESOURCES = ("subresources.kubevirt.io", "v1")


class KubeError(Failed):
    """An API call failed; ``status`` is the HTTP status (0 when the cluster was unreachable)."""

    def __init__(self, status: int, message: str, hint: str | None = None, reason: str = ""):
        super().__init__(message, hint)
        self.status = status
        self.reason = reason


@dataclass
class Access:
    """What a call needs, for the forbidden/not-found messages: verb, resource[/sub], group."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    name: str | None = None

    def describe(self) -> str:
        res = f"{self.resource}.{self.group}" if self.group else self.resource
        where = f" in namespace {self.namespace!r}" if self.namespace else " cluster-wide"
        return f"{self.verb} {res}{where}"


@dataclass
class ExecResult:
    exit_code: int | None  # None: the command did not run (or the stream broke)
    stdout: str
    stderr: str
    failure: str = ""  # the exec Status message when there was no exit code
    timed_out: bool = False
    broke: bool = False  # the stream broke after the command started: it may have done its work

    @property
    def started(self) -> bool:
        """False when the runtime could not start the command (no such file...)."""
        if self.exit_code in (126, 127):
            return False
        if self.exit_code is None:
            return False
        return True


def status_message(body: Any) -> tuple[str, str]:
    """(message, reason) from a Kubernetes Status body (bytes/str/dict)."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip()[:300], ""
    if isinstance(body, dict):
        return str(body.get("message") or ""), str(body.get("reason") or "")
    return "", ""


def translate_api_error(status: int, body: Any, access: Access, cluster: Cluster) -> KubeError:
    """Turn an HTTP failure into a one-line message with what to do."""
    message, reason = status_message(body)
    detail = f" ({message})" if message else ""
    if status == 401:
        return KubeError(
            status,
            f"the cluster rejected the credentials of {cluster.describe()}{detail}",
            "log in again or check --kubeconfig/--context",
            reason,
        )
    if status == 403:
        who = f" as {cluster.user!r}" if cluster.user else ""
        hint = f"ask an admin to grant '{access.verb}' on '{access.resource}'"
        if access.group:
            hint += f" (API group {access.group})"
        if access.resource.startswith("virtualmachineinstances/"):
            hint += ", e.g. the kubevirt.io:edit role"
        if access.resource == "pods/exec":
            hint += ", or use --method api (no exec needed)"
        return KubeError(status, f"forbidden: you cannot {access.describe()}{who}{detail}", hint, reason)
    if status == 404:
        what = access.resource + (f" {access.name!r}" if access.name else "")
        where = f" in namespace {access.namespace!r}" if access.namespace else ""
        return KubeError(status, f"{what} not found{where}{detail}", None, reason)
    if status == 409:
        return KubeError(status, f"conflict: {message or 'the request conflicts with the object state'}", None, reason)
    if status == 429 or status >= 500:
        return KubeError(
            status, f"the API server failed to {access.describe()} (HTTP {status}){detail}", "try again", reason
        )
    return KubeError(status, f"cannot {access.describe()} (HTTP {status}){detail}", None, reason)


def unreachable(cluster: Cluster, exc: BaseException) -> KubeError:
    text = str(getattr(exc, "reason", None) or exc)
    text = re.sub(r"<urllib3[^>]*>:?\s*", "", text)
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return KubeError(
            0,
            f"the Kubernetes API at {cluster.server} did not answer in time ({text})",
            "check the cluster, or raise --request-timeout",
        )
    return KubeError(
        0,
        f"cannot reach the Kubernetes API at {cluster.server} ({text})",
        f"check that the cluster is up and that {cluster.describe()} is the right one (--context/--kubeconfig)",
    )


def parse_exec_status(raw: str) -> tuple[int | None, str]:
    """(exit code or None, message) from the exec error channel (channel 3)."""
    if not raw or not raw.strip():
        return None, "the exec stream closed without a status"
    try:
        status = json.loads(raw)
    except ValueError:
        return None, raw.strip()[:300]
    if status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), str(status.get("message") or "")
            except (TypeError, ValueError):
                break
    return None, str(status.get("message") or status.get("reason") or raw.strip()[:300])


_HANDSHAKE = re.compile(r"Handshake status (\d{3})")


class Kube:
    """The API calls of one run, all against the pinned ``cluster``."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self.cluster.new_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- plumbing -------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        access: Access,
        query: list | None = None,
        body: Any = None,
        stream: bool = False,
        timeout: Any = None,
        client=None,
    ):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if body is not None or method in ("PUT", "POST", "PATCH"):
            headers["Content-Type"] = "application/json"
        if timeout is None:
            timeout = self.cluster.request_timeout
        try:
            resp = (client or self.client).call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise translate_api_error(exc.status or 0, exc.body, access, self.cluster) from None
        except HTTPError as exc:
            raise unreachable(self.cluster, exc) from None
        if stream:
            return resp
        data = resp.data
        return json.loads(data) if data else {}

    @staticmethod
    def _path(group_version: tuple[str, str] | None, namespace: str | None, plural: str, name: str = "") -> str:
        base = f"/apis/{group_version[0]}/{group_version[1]}" if group_version else "/api/v1"
        if namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{plural}"
        if name:
            base += f"/{quote(name)}"
        return base

    # -- reads ----------------------------------------------------------------------------
    def get_vmi(self, namespace: str, name: str) -> dict:
        access = Access("get", "virtualmachineinstances", "kubevirt.io", namespace, name)
        return self._call("GET", self._path(KUBEVIRT, namespace, "virtualmachineinstances", name), access)

    def get_vm(self, namespace: str, name: str) -> dict:
        access = Access("get", "virtualmachines", "kubevirt.io", namespace, name)
        return self._call("GET", self._path(KUBEVIRT, namespace, "virtualmachines", name), access)

    def list_vmis(self, namespace: str | None, selector: str | None = None, field_selector: str | None = None) -> dict:
        access = Access("list", "virtualmachineinstances", "kubevirt.io", namespace)
        query = [("labelSelector", selector)] if selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        return self._call("GET", self._path(KUBEVIRT, namespace, "virtualmachineinstances"), access, query)

    def list_vms(self, namespace: str | None, selector: str | None = None) -> dict:
        access = Access("list", "virtualmachines", "kubevirt.io", namespace)
        query = [("labelSelector", selector)] if selector else []
        return self._call("GET", self._path(KUBEVIRT, namespace, "virtualmachines"), access, query)

    def list_pods(self, namespace: str | None, selector: str) -> list[dict]:
        access = Access("list", "pods", "", namespace)
        data = self._call("GET", self._path(None, namespace, "pods"), access, [("labelSelector", selector)])
        return list(data.get("items") or [])

    def list_events(self, namespace: str | None, field_selector: str | None = None) -> list[dict]:
        access = Access("list", "events", "", namespace)
        query = [("fieldSelector", field_selector)] if field_selector else None
        data = self._call("GET", self._path(None, namespace, "events"), access, query=query)
        return list(data.get("items") or [])

    # -- writes ---------------------------------------------------------------------------
    def create_event(self, namespace: str, event: dict) -> dict:
        access = Access("create", "events", "", namespace)
        return self._call("POST", self._path(None, namespace, "events"), access, body=event)

    def put_vmi_subresource(self, namespace: str, name: str, sub: str, body: dict | None, timeout=None) -> dict:
        """PUT .../virtualmachineinstances/NAME/{freeze,unfreeze} (202 on success)."""
        access = Access("update", f"virtualmachineinstances/{sub}", SUBRESOURCES[0], namespace, name)
        path = self._path(SUBRESOURCES, namespace, "virtualmachineinstances", name) + f"/{sub}"
        return self._call("PUT", path, access, body=body, timeout=timeout)

    # -- watch ----------------------------------------------------------------------------
    def watch_vmi(self, namespace: str, name: str, resource_version: str, timeout_seconds: int) -> Iterator[dict]:
        """Raw watch events for one VMI from ``resource_version`` (own connection, closed after)."""
        from kubernetes.watch.watch import iter_resp_lines

        access = Access("watch", "virtualmachineinstances", "kubevirt.io", namespace, name)
        query = [
            ("watch", "true"),
            ("fieldSelector", f"metadata.name={name}"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(max(1, int(timeout_seconds)))),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        client = self.cluster.new_client()
        try:
            resp = self._call(
                "GET",
                self._path(KUBEVIRT, namespace, "virtualmachineinstances"),
                access,
                query,
                stream=True,
                timeout=(10, timeout_seconds + 5),
                client=client,
            )
            try:
                for line in iter_resp_lines(resp):
                    if line.strip():
                        yield json.loads(line)
            finally:
                resp.close()
                resp.release_conn()
        finally:
            client.close()

    # -- exec -----------------------------------------------------------------------------
    def exec(self, namespace: str, pod: str, container: str, command: list[str], timeout: float,
             stdin: bytes | None = None) -> ExecResult:
        """Run ``command`` in ``pod``/``container`` (feeding it ``stdin``); never raises for a non-zero exit."""
        client = self.cluster.new_client()
        try:
            ws = self.open_exec(namespace, pod, container, command, stdin is not None, client)
            deadline = time.monotonic() + timeout
            stdout, stderr = [], []
            try:
                if stdin is not None:
                    ws.write_channel(0, stdin)
                    ws.close_channel(0)
                while ws.is_open() and time.monotonic() < deadline:
                    ws.update(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                    stdout.append(ws.read_channel(1))
                    stderr.append(ws.read_channel(2))
                timed_out = ws.is_open()
                raw_status = "" if timed_out else ws.read_channel(3)
            except Exception as exc:  # the stream broke mid-way: the command may have run
                return ExecResult(None, "".join(stdout), "".join(stderr), f"exec stream broke: {exc}",
                                  broke=True)
            finally:
                ws.close()
            if timed_out:
                return ExecResult(None, "".join(stdout), "".join(stderr), f"no answer within {timeout:.0f}s", True)
            code, message = parse_exec_status(raw_status)
            return ExecResult(code, "".join(stdout), "".join(stderr), message)
        finally:
            client.close()

    def open_exec(self, namespace: str, pod: str, container: str, command: list[str], stdin: bool, client):
        """The exec WebSocket (kubernetes.stream's WSClient) on ``client``; handshake errors as KubeErrors."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        access = Access("create", "pods/exec", "", namespace, pod)
        try:
            return stream(
                CoreV1Api(client).connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=command,
                container=container,
                stderr=True,
                stdin=stdin,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
        except ApiException as exc:
            # The client turns Ctrl-C during the handshake into an ApiException: keep it Ctrl-C.
            if isinstance(exc.__context__, KeyboardInterrupt) or isinstance(exc.reason, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            raise self._exec_error(exc, access) from None
        except AttributeError as exc:
            # kubernetes 36 fails on its own handshake error (ApiException with body None,
            # then e.body.decode()): the real error is the exception being handled then.
            if isinstance(exc.__context__, ApiException):
                raise self._exec_error(exc.__context__, access) from None
            raise

    def _exec_error(self, exc, access: Access) -> KubeError:
        """The exec handshake failed: the HTTP status is only in the reason text."""
        reason = str(exc.reason or "")
        match = _HANDSHAKE.search(reason)
        if match:
            body = reason.split("-+-+-")[-1].strip()
            body = re.sub(r"^b'(.*)'$", r"\1", body, flags=re.S)
            return translate_api_error(int(match.group(1)), body, access, self.cluster)
        if exc.status:
            return translate_api_error(exc.status, exc.body, access, self.cluster)
        return unreachable(self.cluster, RuntimeError(reason or "the exec stream could not be opened"))
