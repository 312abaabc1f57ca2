"""durations.py: Go-style durations with friendly errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kubectl_freeze.durations import human, parse_duration, to_go, whole_seconds
from kubectl_freeze.errors import EXIT_USAGE, UsageError


@pytest.mark.parametrize("text,seconds", [
    ("5m", 300), ("0", 0), ("1m30s", 90), ("300ms", 0.3), ("1.5h", 5400), ("2h0m1s", 7201), (".5s", 0.5),
    ("+10s", 10), ("1µs", 1e-6), ("1us", 1e-6),
])
def test_parse_go_durations(text, seconds):
    assert parse_duration(text, "--x").total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text,words", [
    ("5", "number without a unit"),
    ("2d", "unit 'd'"),
    ("-1s", "negative"),
    ("abc", "not a duration"),
    ("5m x", "not a duration"),
    ("1..5s", "not a duration"),
    ("", "needs a duration"),
    ("1e3s", "unit 'e'"),
])
def test_bad_durations_are_usage_errors_naming_the_flag(text, words):
    with pytest.raises(UsageError) as info:
        parse_duration(text, "--unfreeze-timeout")
    assert info.value.exit_code == EXIT_USAGE
    assert "--unfreeze-timeout" in info.value.line() and words in info.value.line()


def test_bare_seconds_only_where_kubectl_allows_them():
    assert parse_duration("10", "--request-timeout", allow_bare_seconds=True) == timedelta(seconds=10)
    with pytest.raises(UsageError):
        parse_duration("10", "--timeout")


@pytest.mark.parametrize("seconds,go", [(300, "5m0s"), (0, "0s"), (90, "1m30s"), (0.3, "300ms"), (3601, "1h0m1s"),
                                        (1.5, "1.5s")])
def test_to_go_matches_go_duration_string(seconds, go):
    assert to_go(timedelta(seconds=seconds)) == go


def test_whole_seconds_rounds_up_and_human_is_short():
    assert whole_seconds(timedelta(milliseconds=300)) == 1
    assert whole_seconds(timedelta(minutes=5)) == 300
    assert [human(timedelta(seconds=s)) for s in (0, 0.25, 2, 90, 300)] == ["0s", "250ms", "2s", "1m30s", "5m"]
