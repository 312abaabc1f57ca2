"""Pure logic behind the bad-input table (tests/test_bad_input.py): duration bounds, kubeconfig shape."""

from __future__ import annotations

import pytest

from kubectl_freeze import cli
from kubectl_freeze.config import check_kubeconfig_shape
from kubectl_freeze.durations import KUBEVIRT_MAX_SECONDS, parse_duration
from kubectl_freeze.errors import UsageError


@pytest.mark.parametrize("text, bare", [("2562048h", False), ("100000000h", False),
                                        ("99999999999999999999", True), ("9223372037", True)])
def test_durations_beyond_gos_int64_nanoseconds_are_usage_errors(text, bare):
    with pytest.raises(UsageError, match="longer than a Go duration can be"):
        parse_duration(text, "--timeout", allow_bare_seconds=bare)


def test_the_longest_go_duration_is_accepted():
    assert parse_duration("2562047h", "--timeout").total_seconds() == 2562047 * 3600
    assert parse_duration("9223372036", "--request-timeout", allow_bare_seconds=True).total_seconds() == 9223372036


@pytest.mark.parametrize("doc, says", [
    (["a", "list"], "is not a kubeconfig"),
    ("a string", "is not a kubeconfig"),
    ({"clusters": 5}, "'clusters' is not a list"),
    ({"users": ["name"]}, "'users' is not a list of entries"),
    ({"contexts": [{"name": "c", "context": "x"}]}, "context 'c' is not a mapping"),
])
def test_kubeconfigs_of_the_wrong_shape_are_usage_errors(doc, says):
    with pytest.raises(UsageError, match=says):
        check_kubeconfig_shape(doc, "/k")


def test_an_empty_kubeconfig_is_an_empty_mapping():
    assert check_kubeconfig_shape(None, "/k") == {}


def test_a_safety_thaw_kubevirt_cannot_hold_is_refused():
    with pytest.raises(UsageError, match="KubeVirt can"):
        cli._safety_thaw(f"{KUBEVIRT_MAX_SECONDS + 1}s", False)
    assert cli._safety_thaw(f"{KUBEVIRT_MAX_SECONDS}s", False).total_seconds() == KUBEVIRT_MAX_SECONDS
