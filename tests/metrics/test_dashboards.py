"""The Grafana dashboards built by cs_pulse.metrics.dashboards: committed JSON is current, and
every threshold on them is the SLO catalogue's (no broker, no Grafana)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cs_pulse.metrics import dashboards
from cs_pulse.metrics.catalogue import slo

REPO = Path(__file__).parents[2]
NAMES = ["agents.json", "floor.json", "pipeline.json", "volume.json"]

# Panels that must show a catalogue threshold: (file, title prefix) -> THRESHOLDS key.
EXPECTED = {
    ("floor.json", "Service level "): "service_level",
    ("floor.json", "First response p50 / p90"): "first_response_p90_seconds",
    ("floor.json", "Oldest waiting"): "oldest_waiting_seconds",
    ("floor.json", "Abandonment"): "abandonment",
    ("floor.json", "First response within tier"): "first_response_tier",
    ("floor.json", "Within tier today"): "first_response_tier",
    ("agents.json", "First response p90 by agent"): "first_response_p90_seconds",
    ("agents.json", "Reply rate"): "reply_rate",
    ("agents.json", "Forbidden phrases today"): "forbidden_phrases_per_day",
    ("pipeline.json", "Last event age"): "last_event_age_seconds",
}


def boards() -> dict[str, dict[str, Any]]:
    return {Path(rel).name: json.loads(text) for rel, text in dashboards.render().items()}


def panel(board: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [p for p in board["panels"] if p["title"].startswith(prefix)]
    assert len(found) == 1, (prefix, [p["title"] for p in board["panels"]])
    return found[0]


def steps(p: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def expected_steps(t: slo.Threshold) -> list[tuple[float | None, str]]:
    """Written out independently of the module: lower level, upper level, coloured by side."""
    if t.warning is None or t.warning == t.critical:
        return [(None, "green"), (t.critical, "red")] if not t.below else \
            [(None, "red"), (t.critical, "green")]
    lo, hi = sorted([t.critical, t.warning])
    if t.below:
        return [(None, "red"), (lo, "orange"), (hi, "green")]
    return [(None, "green"), (lo, "orange"), (hi, "red")]


def test_committed_json_is_rendered_from_code() -> None:
    rendered = dashboards.render()
    assert sorted(rendered) == [f"grafana/dashboards/{n}" for n in NAMES]
    for rel, text in rendered.items():
        assert text.endswith("}\n")
        assert (REPO / rel).read_text() == text, \
            f"{rel} is stale: run python -m cs_pulse.metrics.generate"
    assert not (REPO / "grafana/build.py").exists()


def test_provisioning_reads_the_rendered_folder() -> None:
    prov = (REPO / "grafana/provisioning/dashboards/cs-pulse.yml").read_text()
    compose = (REPO / "docker-compose.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in prov
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in compose


def test_uids_and_titles() -> None:
    b = boards()
    assert {n: (d["uid"], d["title"]) for n, d in b.items()} == {
        "floor.json": ("cs-floor", "Floor board"),
        "agents.json": ("cs-agents", "Agent scorecard"),
        "volume.json": ("cs-volume", "Volume and peaks"),
        "pipeline.json": ("cs-pipeline", "Pipeline health"),
    }


def test_every_panel_has_thresholds_and_catalogue_ones_match() -> None:
    b = boards()
    for name, d in b.items():
        for p in d["panels"]:
            assert steps(p), (name, p["title"])
            assert steps(p)[0][0] is None, (name, p["title"])
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
    for (name, prefix), key in EXPECTED.items():
        assert steps(panel(b[name], prefix)) == expected_steps(slo.THRESHOLDS[key]), \
            (name, prefix, key)
    keys = {(n, t): k for n, m in dashboards.threshold_keys().items() for t, k in m.items()}
    assert sorted(keys.values()) == sorted(EXPECTED.values())
    for (name, title), key in keys.items():
        p = panel(b[name], title)
        assert steps(p) == expected_steps(slo.THRESHOLDS[key])


def test_service_level_panel_keeps_range_unit_thresholds_and_line() -> None:
    """The old builder dropped ``thresholds`` when a panel had ``extra``: not any more."""
    sl = slo.THRESHOLDS["service_level"]
    p = panel(boards()["floor.json"], "Service level ")
    target = f"{sl.critical * 100:g} %"
    assert p["title"] == f"Service level {slo.SERVICE_LEVEL_SECONDS} s vs {target} target"
    defaults = p["fieldConfig"]["defaults"]
    assert (defaults["min"], defaults["max"], defaults["unit"]) == (0, 1, "percentunit")
    assert steps(p) == expected_steps(sl)
    assert defaults["thresholds"]["mode"] == "absolute"
    assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed", "line+area")
    assert p["type"] == "timeseries"


def test_titles_quote_the_catalogue() -> None:
    floor = boards()["floor.json"]
    staffing = panel(floor, "Staffing: needed vs online")
    assert staffing["title"] == (
        f"Staffing: needed vs online (Erlang C, "
        f"{slo.THRESHOLDS['service_level'].critical * 100:g} % in "
        f"{slo.SERVICE_LEVEL_SECONDS} s)")
    assert "2 min" in panel(floor, "Oldest waiting")["description"]


def test_every_dashboard_has_shop_variable_and_peak_annotation() -> None:
    for name, d in boards().items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert "shop" in variables, name
        shop = variables["shop"]
        assert shop["query"]["query"] == "label_values(cs_peak_hour, shop)"
        assert (shop["includeAll"], shop["multi"], shop["allValue"]) == (True, True, ".*")
        (peak,) = d["annotations"]["list"]
        assert peak["name"] == "Peak hours" and peak["enable"] is True, name
        assert peak["expr"] == 'shop:cs_peak_hour:max{shop=~"$shop"} == 1'
        assert peak["datasource"] == {"type": "prometheus", "uid": "cs-pulse-prometheus"}


def test_layout_stays_on_the_grid() -> None:
    for name, d in boards().items():
        ids = [p["id"] for p in d["panels"]]
        assert ids == list(range(1, len(ids) + 1)), name
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"], g)
        first = d["panels"][0]["gridPos"]
        assert (first["x"], first["y"]) == (0, 0)


def test_queries_cover_panels_variables_and_annotations() -> None:
    qs = dashboards.queries()
    assert sorted(qs) == NAMES
    b = boards()
    for name, exprs in qs.items():
        panel_exprs = [t["expr"] for p in b[name]["panels"] for t in p["targets"]]
        assert exprs[:len(panel_exprs)] == panel_exprs
        assert "cs_peak_hour" in exprs  # the shop variable's selector
        assert exprs[-1] == b[name]["annotations"]["list"][0]["expr"]
        assert not any(e.startswith("label_values") for e in exprs)


def test_changing_a_threshold_changes_the_rendered_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    before = panel(boards()["floor.json"], "Oldest waiting")
    assert steps(before) == [(None, "green"), (60.0, "orange"), (120.0, "red")]
    monkeypatch.setitem(slo.THRESHOLDS, "oldest_waiting_seconds",
                        slo.Threshold(critical=180.0, warning=90.0))
    monkeypatch.setitem(slo.THRESHOLDS, "service_level",
                        slo.Threshold(critical=0.9, warning=0.75, below=True))
    b = boards()
    after = panel(b["floor.json"], "Oldest waiting")
    assert steps(after) == [(None, "green"), (90.0, "orange"), (180.0, "red")]
    assert "3 min" in after["description"]
    sl = panel(b["floor.json"], "Service level ")
    assert steps(sl) == [(None, "red"), (0.75, "orange"), (0.9, "green")]
    assert "90 % target" in sl["title"]
    # ... and the committed JSON would then be stale.
    assert dashboards.render()["grafana/dashboards/floor.json"] != \
        (REPO / "grafana/dashboards/floor.json").read_text()


@pytest.mark.parametrize(("t", "want"), [
    (slo.Threshold(critical=0.8, warning=0.7, below=True),
     [(None, "red"), (0.7, "orange"), (0.8, "green")]),
    (slo.Threshold(critical=0.7, warning=0.8, below=True),
     [(None, "red"), (0.7, "orange"), (0.8, "green")]),
    (slo.Threshold(critical=0.9, below=True), [(None, "red"), (0.9, "green")]),
    (slo.Threshold(critical=120.0, warning=60.0), [(None, "green"), (60.0, "orange"),
                                                   (120.0, "red")]),
    (slo.Threshold(critical=300.0), [(None, "green"), (300.0, "red")]),
    (slo.Threshold(critical=5.0, warning=5.0), [(None, "green"), (5.0, "red")]),
    (None, [(None, "green")]),
])
def test_threshold_steps(t: slo.Threshold | None, want: list[tuple[float | None, str]]) -> None:
    assert [(s.value, s.color) for s in dashboards.threshold_steps(t)] == want
