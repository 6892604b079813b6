"""The demo's peak-breach scenario, headless, end to end: embedded Kafka, a worker, the
simulator's scripted staffing, Debian's Prometheus evaluating the project's rule files and
Alertmanager routing to the webhook receiver. The page must reach on-call (and the shop's
supervisors) firing, and then resolved once staffing recovers."""

from __future__ import annotations

import shutil
import time

import pytest

from cs_pulse.devtools.demo import PAGE, DemoResult, run_demo

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]


def test_peak_breach_pages_and_resolves(capsys: pytest.CaptureFixture[str]) -> None:
    began = time.monotonic()
    result = run_demo(duration=400, headless=True, until=DemoResult.page_fired_and_resolved)
    took = time.monotonic() - began
    out = capsys.readouterr().out
    timeline = "\n".join(result.timeline())
    print(f"demo test: {took:.0f} s wall, {result.traffic_seconds:.0f} s of traffic\n{timeline}")

    fired = result.received(PAGE, "firing")
    resolved = result.received(PAGE, "resolved")
    assert fired, f"no page reached on-call in {result.traffic_seconds:.0f} s:\n{out}"
    assert resolved, f"the page did not resolve:\n{out}"
    assert result.page_fired_and_resolved(), timeline
    assert {n.labels["shop"] for n in fired + resolved} == {"shop-1"}    # shop-2 stays staffed
    page = fired[0]
    assert page.labels["severity"] == "page"
    assert page.annotations["runbook_url"].endswith("docs/runbooks/service-level-burn.md")
    assert result.received(PAGE, "firing", receiver="/supervisors")     # continue: true
    # Fired while shop-1 was down to one agent (wall ~10-190 s), resolved after it recovered.
    assert 60 < page.at < 190 < min(n.at for n in resolved)

    # The board's plain-text twin told the story; the children's noise went to the log files.
    assert "one agent left" in out and "14 agents back on" in out
    assert "firing: CsServiceLevelFastBurn shop-1/" in out
    for noise in ("ƒaµS†", "Group Coordinator", "NotLeaderForPartition", "Traceback"):
        assert noise not in out
    logs = {p.name for p in result.log_dir.iterdir()}
    assert {"worker.log", "simulator.log", "prometheus.log", "alertmanager.log",
            "kafka.log"} <= logs
    assert not {"worker-data", "prometheus-data", "alertmanager-data"} & logs
    assert took < 420
    shutil.rmtree(result.log_dir)      # kept when an assertion fails, to read
