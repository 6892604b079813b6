"""Prometheus rules and Alertmanager config, checked by Debian's promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.prometheus
DEPLOY = Path(__file__).parents[1] / "deploy"


def run(*args: str) -> str:
    """Run a Prometheus tool from deploy/; returns its standard output."""
    tool = shutil.which(args[0])
    assert tool, f"{args[0]} not installed (./dev setup installs it from Debian)"
    done = subprocess.run([tool, *args[1:]], capture_output=True, text=True, cwd=DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rules_and_config_are_valid() -> None:
    run("promtool", "check", "rules", "prometheus/rules/recording.yml",
        "prometheus/rules/alerts.yml")
    run("promtool", "check", "config", "prometheus/prometheus.yml")


def test_alert_rule_unit_tests() -> None:
    out = run("promtool", "test", "rules", "prometheus/tests/alerts_test.yml")
    assert "SUCCESS" in out and "FAILED" not in out


def test_recording_rules_follow_level_metric_operations() -> None:
    import yaml

    doc = yaml.safe_load((DEPLOY / "prometheus/rules/recording.yml").read_text())
    names = [r["record"] for g in doc["groups"] for r in g["rules"]]
    assert names and all(len(n.split(":")) == 3 for n in names), names


def test_every_alert_has_severity_summary_description_runbook_and_for() -> None:
    import yaml

    doc = yaml.safe_load((DEPLOY / "prometheus/rules/alerts.yml").read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"]]
    assert len(alerts) == 12
    runbooks = Path(__file__).parents[1] / "docs" / "runbooks"
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert rule["for"]
        page = rule["annotations"]["runbook_url"].rsplit("/", 1)[-1]
        assert (runbooks / page).exists(), page


def test_alertmanager_config_and_routes() -> None:
    run("amtool", "check-config", "alertmanager/alertmanager.yml")

    def route(*labels: str) -> str:
        return run("amtool", "config", "routes", "test",
                   "--config.file=alertmanager/alertmanager.yml", *labels).strip()

    assert route("severity=page", "shop=shop-1") == "oncall,supervisors"
    assert route("severity=page", "shop=shop-eu") == "oncall,supervisors-eu"
    assert route("severity=ticket", "shop=shop-eu") == "supervisors-eu"
    assert route("severity=ticket", "shop=shop-1") == "supervisors"
