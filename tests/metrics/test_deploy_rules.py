"""Prometheus rules and Alertmanager config, checked by Debian's promtool and amtool; the rule
files generated from the SLO catalogue (``python -m cs_pulse.metrics.generate``)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cs_pulse.metrics import rules
from cs_pulse.metrics.catalogue import slo

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"


def run(*args: str) -> str:
    """Run a Prometheus tool from deploy/; returns its standard output."""
    tool = shutil.which(args[0])
    assert tool, f"{args[0]} not installed (./dev setup installs it from Debian)"
    done = subprocess.run([tool, *args[1:]], capture_output=True, text=True, cwd=DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.prometheus
def test_rules_and_config_are_valid() -> None:
    run("promtool", "check", "rules", "prometheus/rules/recording.yml",
        "prometheus/rules/alerts.yml")
    run("promtool", "check", "config", "prometheus/prometheus.yml")


@pytest.mark.prometheus
def test_alert_rule_unit_tests() -> None:
    out = run("promtool", "test", "rules", "prometheus/tests/alerts_test.yml")
    assert "SUCCESS" in out and "FAILED" not in out


def test_recording_rules_follow_level_metric_operations() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus/rules/recording.yml").read_text())
    names = [r["record"] for g in doc["groups"] for r in g["rules"]]
    assert names and all(len(n.split(":")) == 3 for n in names), names


def test_every_alert_has_severity_summary_description_runbook_and_for() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus/rules/alerts.yml").read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"]]
    assert len(alerts) == 14
    runbooks = Path(__file__).parents[2] / "docs" / "runbooks"
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert rule["for"]
        page = rule["annotations"]["runbook_url"].rsplit("/", 1)[-1]
        assert (runbooks / page).exists(), page


@pytest.mark.prometheus
def test_alertmanager_config_and_routes() -> None:
    run("amtool", "check-config", "alertmanager/alertmanager.yml")

    def route(*labels: str) -> str:
        return run("amtool", "config", "routes", "test",
                   "--config.file=alertmanager/alertmanager.yml", *labels).strip()

    assert route("severity=page", "shop=shop-1") == "oncall,supervisors"
    assert route("severity=page", "shop=shop-eu") == "oncall,supervisors-eu"
    assert route("severity=ticket", "shop=shop-eu") == "supervisors-eu"
    assert route("severity=ticket", "shop=shop-1") == "supervisors"


def by_name(text: str) -> dict[str, dict[str, Any]]:
    """The rules of a Prometheus rule file or Grafana's floor rules, by alert name or uid."""
    groups = yaml.safe_load(text)["groups"]
    return {r.get("alert") or r.get("record") or r["uid"]: r for g in groups for r in g["rules"]}


def test_committed_rule_files_are_generated_from_the_catalogue() -> None:
    for path, text in rules.render().items():
        assert (REPO / path).read_text() == text, \
            f"{path} is stale: run python -m cs_pulse.metrics.generate"


def test_generated_yaml_reads_back_as_the_documents() -> None:
    def without_comments(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: without_comments(v) for k, v in node.items() if k != rules.WHY}
        if isinstance(node, list):
            return [without_comments(v) for v in node]
        return node

    texts = rules.render()
    for path, document in rules.documents().items():
        assert yaml.safe_load(texts[path]) == without_comments(document), path


def test_thresholds_and_objective_reach_every_expression_and_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(slo.THRESHOLDS, "abandonment", slo.Threshold(critical=0.25))
    monkeypatch.setitem(slo.THRESHOLDS, "oldest_waiting_seconds",
                        slo.Threshold(critical=300.0, warning=60.0))
    monkeypatch.setitem(slo.THRESHOLDS, "service_level",
                        slo.Threshold(critical=0.85, warning=0.7, below=True))
    stricter = dataclasses.replace(
        slo.CONFIG, paging_slo=dataclasses.replace(slo.PAGING_SLO, objective=0.99))
    texts = rules.render(stricter)
    alerts, floor = by_name(texts[rules.ALERTS_FILE]), by_name(texts[rules.GRAFANA_FILE])

    abandonment = alerts["CsAbandonmentHigh"]
    assert abandonment["expr"] == "shop_queue:cs_abandonment:ratio_rate15m > 0.25"
    assert abandonment["annotations"]["summary"].endswith("abandonment above 25 %")

    oldest, oldest_floor = alerts["CsOldestWaitingTooLong"], floor["cs-floor-oldest-waiting"]
    assert oldest["expr"] == "shop_queue:cs_oldest_waiting_seconds:max > 300"
    assert oldest["annotations"]["summary"].endswith("waited over 5 minutes")
    assert oldest_floor["title"] == "A customer has waited over 5 minutes"
    assert oldest_floor["data"][1]["model"]["conditions"][0]["evaluator"] == \
        {"type": "gt", "params": [300]}

    sl_floor = floor["cs-floor-sl30-peak"]
    assert sl_floor["data"][1]["model"]["conditions"][0]["evaluator"] == \
        {"type": "lt", "params": [0.85]}
    assert "85 %" in sl_floor["title"] and "85 %" in sl_floor["annotations"]["description"]
    assert "answer 85 % within 30 s" in alerts["CsStaffingGap"]["annotations"]["description"]

    for name, factor in (("CsServiceLevelFastBurn", "14.4"), ("CsServiceLevelSlowBurn", "6")):
        assert alerts[name]["expr"].count(f"> ({factor} * 0.01)") == 2, name
    assert "Paging objective: 99 % " in texts[rules.ALERTS_FILE]
    assert "10 %" not in str(abandonment) and "2 minutes" not in str(oldest_floor)


def test_one_declaration_per_alert_and_floor_rule() -> None:
    catalogue = slo.alerts()
    names = [a.name for a in catalogue]
    assert len(names) == len(set(names))
    floor = by_name(rules.render()[rules.GRAFANA_FILE])
    assert list(floor) == ["cs-floor-sl30-peak", "cs-floor-oldest-waiting",
                           "cs-floor-staffing-gap"]   # the uids Grafana already knows
    alerts = by_name(rules.render()[rules.ALERTS_FILE])
    for alert in catalogue:
        if alert.floor and alert.prometheus:   # the same condition, for and severity in both
            grafana, prometheus = floor[alert.floor.uid], alerts[alert.name]
            assert grafana["for"] == prometheus["for"]
            assert grafana["labels"]["severity"] == prometheus["labels"]["severity"]
            assert grafana["data"][0]["model"]["expr"] in prometheus["expr"]


def test_burn_rate_windows_are_recorded_once_each() -> None:
    recorded = by_name(rules.render()[rules.RECORDING_FILE])
    windows = [w for r in slo.PAGING_SLO.burn_rates for w in (r.long_window, r.short_window)]
    for window in windows:
        assert slo.error_ratio_record(window) in recorded
    errors = [n for n in recorded if n.startswith("shop_queue:cs_service_level_errors:")]
    assert len(errors) == len(set(windows))


def test_alerts_read_only_recorded_series() -> None:
    texts = rules.render()
    recorded = set(by_name(texts[rules.RECORDING_FILE]))
    exprs = [r["expr"] for r in by_name(texts[rules.ALERTS_FILE]).values()]
    exprs += [d["model"]["expr"] for r in by_name(texts[rules.GRAFANA_FILE]).values()
              for d in r["data"] if d["datasourceUid"] != "__expr__"]
    for expr in exprs:
        for name in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", expr):
            assert name in recorded, (name, expr)


def test_every_alert_has_a_runbook() -> None:
    for alert in slo.alerts():
        assert (REPO / "docs" / "runbooks" / alert.runbook).is_file(), alert.name
