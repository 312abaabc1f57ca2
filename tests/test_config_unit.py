"""config.py: kubeconfig lists, context and namespace resolution, in-cluster config."""

from __future__ import annotations

import pytest
import yaml

from kubectl_freeze import config
from kubectl_freeze.errors import Failed, UsageError


def kubeconfig_doc(contexts, current="", server="https://10.0.0.1:6443"):
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": u, "user": {"token": f"token-{u}"}} for u in {c[1] for c in contexts}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": u, **({"namespace": ns} if ns else {})}}
                     for n, u, ns in contexts],
    }


def write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_kubeconfig_paths_from_flag_env_list_or_home(tmp_path, monkeypatch):
    a = write(tmp_path / "a", kubeconfig_doc([("x", "u", None)], "x"))
    b = write(tmp_path / "b", kubeconfig_doc([("y", "u", None)], "y"))
    env = {"KUBECONFIG": f"{a}:{tmp_path / 'missing'}:{b}:{a}"}
    assert config.kubeconfig_paths(None, env) == [a, b]
    assert config.kubeconfig_paths(b, env) == [b]
    with pytest.raises(UsageError, match="no such file"):
        config.kubeconfig_paths(str(tmp_path / "nope"), env)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.kubeconfig_paths(None, {}) == []


def test_merge_first_file_wins_for_names_and_current_context():
    first = kubeconfig_doc([("shared", "alice", "one")], current="shared")
    second = kubeconfig_doc([("shared", "bob", "two"), ("other", "bob", None)], current="other")
    merged = config.merge_kubeconfigs([first, second])
    assert merged["current-context"] == "shared"
    assert config.pick_context(merged, None)["context"]["user"] == "alice"
    assert config.pick_context(merged, "other")["name"] == "other"


def test_pick_context_errors_list_the_choices():
    merged = config.merge_kubeconfigs([kubeconfig_doc([("a", "u", None), ("b", "u", None)])])
    with pytest.raises(UsageError, match="no current-context.*one of: a, b"):
        config.pick_context(merged, None)
    with pytest.raises(UsageError, match="context 'zz' is not in the kubeconfig; use one of: a, b"):
        config.pick_context(merged, "zz")


def test_resolve_pins_context_namespace_user_and_server(tmp_path):
    path = write(tmp_path / "kc", kubeconfig_doc([("dev", "alice", "team"), ("prod", "bob", None)], "dev"))
    cluster = config.resolve(kubeconfig=path, env={})
    assert (cluster.context, cluster.namespace, cluster.user, cluster.server) == (
        "dev", "team", "alice", "https://10.0.0.1:6443")
    assert cluster.configuration.api_key["BearerToken"].endswith("token-alice")
    other = config.resolve(kubeconfig=path, context="prod", namespace="ns2", request_timeout="15s", env={})
    assert (other.context, other.namespace, other.user, other.request_timeout) == ("prod", "ns2", "bob", 15.0)
    assert config.resolve(kubeconfig=path, context="prod", env={}).namespace == "default"


def test_resolve_bad_namespace_is_a_usage_error_before_reading_files():
    with pytest.raises(UsageError, match="invalid namespace 'Bad_NS'"):
        config.resolve(kubeconfig="/nonexistent", namespace="Bad_NS", env={})


def test_resolve_without_any_config_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(Failed, match="no kubeconfig found.*--kubeconfig"):
        config.resolve(env={})


def test_resolve_in_cluster_uses_the_service_account(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "ca.crt").write_text("not really a cert")
    (sa / "namespace").write_text("backup\n")
    monkeypatch.setattr(config, "SERVICE_ACCOUNT_DIR", str(sa))
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    cluster = config.resolve(env=env)
    assert (cluster.context, cluster.namespace, cluster.server) == (config.IN_CLUSTER, "backup",
                                                                    "https://10.96.0.1:443")
    with pytest.raises(UsageError, match="no kubeconfig inside this pod"):
        config.resolve(context="x", env=env)


@pytest.mark.parametrize("text,seconds", [(None, None), ("0", None), ("10", 10.0), ("2m", 120.0)])
def test_request_timeout_like_kubectl(text, seconds):
    assert config.parse_request_timeout(text) == seconds
