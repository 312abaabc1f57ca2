"""output.py: tables, colour rules, formats."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import yaml

from kubectl_freeze import output
from kubectl_freeze.status import public, status_row
from tests.test_targets_unit import make_pod, make_vmi

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_color_rules():
    assert output.color_enabled("auto", Tty(), {}) is True
    assert output.color_enabled("auto", io.StringIO(), {}) is False
    assert output.color_enabled("auto", Tty(), {"NO_COLOR": "1"}) is False
    assert output.color_enabled("auto", Tty(), {"TERM": "dumb"}) is False
    assert output.color_enabled("always", io.StringIO(), {"NO_COLOR": "1"}) is True
    assert output.color_enabled("never", Tty(), {}) is False


def test_table_is_kubectl_style_and_colours_only_when_asked():
    text = output.render_table(["NAME", "FREEZE"], [["a", "frozen"], ["long-name", "thawed"]], colored=[1])
    assert text == "NAME        FREEZE\na           frozen\nlong-name   thawed\n"
    assert "\x1b[" not in text
    colored = output.render_table(["NAME", "FREEZE"], [["a", "frozen"]], colored=[1], color=True)
    assert "\x1b[36mfrozen\x1b[0m" in colored and colored.startswith("NAME   FREEZE\n")
    assert output.render_table(["NAME"], [["a"]], no_headers=True) == "a\n"


def test_age_and_until():
    stamp = (NOW - timedelta(seconds=75)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert output.age(stamp, NOW) == "75s"
    assert output.age((NOW - timedelta(minutes=5, seconds=3)).isoformat(), NOW) == "5m3s"
    assert output.age((NOW - timedelta(hours=3)).isoformat(), NOW) == "3h"
    assert output.age(None, NOW) == "-"
    assert output.until((NOW + timedelta(minutes=4, seconds=30)).isoformat(), NOW) == "in 4m30s"
    assert output.until((NOW - timedelta(seconds=1)).isoformat(), NOW) == "due"


def report(result="frozen", **extra):
    item = {"namespace": "demo", "name": "vm1", "action": "freeze", "result": result, "ok": result == "frozen",
            "method": "freezer", "pod": "virt-launcher-vm1-x", "node": "n1", "confirmedBy": ["agent", "vmi-status"],
            "agent": {"status": "frozen", "already": False, "filesystems": 2},
            "safetyThaw": {"after": "5m0s", "deadline": None}, "timings": {"totalMs": 1234}, **extra}
    return {"kind": "FreezeReport", "action": "freeze", "exitCode": 0, "items": [item]}


def test_report_table_and_wide():
    assert output.report_table(report()) == (
        "NAME   RESULT   CONFIRMED BY       METHOD    TIME\n"
        "vm1    frozen   agent+vmi-status   freezer   1.2s\n")
    wide = output.report_table(report(), wide=True)
    assert "NAMESPACE" in wide and "virt-launcher-vm1-x" in wide and "ALREADY" in wide


def test_names_output():
    assert output.names(report()["items"]) == "virtualmachineinstance.kubevirt.io/vm1\n"


def test_json_and_yaml_round_trip():
    data = report()
    assert json.loads(output.dump(data, "json")) == data
    assert yaml.safe_load(output.dump(data, "yaml")) == data


def test_plan_text_shows_pod_method_and_command_or_request():
    plan = report("planned", plan={"pod": "p", "container": "compute", "command": ["python3", "-c", "<x>", "a b"]},
                  methodReason="the compute container has python3 with libvirt")
    text = output.plan_text(plan)
    assert "demo/vm1: would freeze with method freezer (the compute container has python3" in text
    assert "exec in pod p container compute: python3 -c <x> 'a b'" in text
    assert text.endswith("dry run: nothing was changed\n")
    api = report("planned", method="api", plan={"request": {"method": "PUT", "path": "/x/freeze",
                                                            "body": {"unfreezeTimeout": "5m0s"}}})
    assert 'PUT /x/freeze {"unfreezeTimeout": "5m0s"}' in output.plan_text(api)


def rows():
    frozen = make_vmi("a", frozen=True)
    event = {"reason": "FilesystemsFrozen", "lastTimestamp": "2026-01-01T11:58:00Z",
             "metadata": {"annotations": {"kubectl-freeze.kubevirt.io/safety-thaw-deadline": "2026-01-01T12:03:00Z",
                                          "kubectl-freeze.kubevirt.io/method": "api"}},
             "message": "m"}
    return [public(status_row(frozen, make_pod("a"), event)),
            public(status_row(make_vmi("b", agent=False, ns="other"), None, None))]


def test_status_row_facts():
    a, b = rows()
    assert (a["freeze"], a["since"], a["agent"], a["pod"]) == ("frozen", "2026-01-01T11:58:00Z", "connected",
                                                              "virt-launcher-a-abcde")
    assert a["safetyThawDeadline"] == "2026-01-01T12:03:00Z" and a["lastAction"]["method"] == "api"
    assert (b["freeze"], b["since"], b["agent"], b["pod"]) == ("thawed", None, "none", None)


def test_status_table_columns():
    text = output.status_table(rows(), all_namespaces=True, live=True)
    header = text.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "PHASE", "AGENT", "FREEZE", "LIVE", "SINCE", "NODE", "POD"]
    plain = output.status_table(rows())
    assert plain.splitlines()[0].split() == ["NAME", "PHASE", "AGENT", "FREEZE", "SINCE", "NODE", "POD"]
    assert plain.splitlines()[2].split() == ["b", "Running", "none", "thawed", "-", "node1", "-"]


def test_status_detail_view():
    text = output.status_detail(rows()[0])
    assert "Freeze (VMI status): frozen since 2026-01-01T11:58:00Z" in text
    assert "Launcher pod:" in text and "Safety thaw:" in text


def test_printer_streams_and_quiet():
    out, err = io.StringIO(), io.StringIO()
    printer = output.Printer("never", quiet=True, out=out, err=err, env={})
    printer.data("data\n")
    printer.progress("working")
    printer.warn("careful\n   now")
    printer.error("bad\nthing")
    assert out.getvalue() == "data\n"
    assert err.getvalue() == "warning: careful now\nerror: bad thing\n"
