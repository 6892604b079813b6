"""The metric catalogue is the one declaration: names follow Prometheus conventions, every
family a worker exports is declared with the type and labels it is exported with, and every
file generated from the catalogue is up to date."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cs_pulse.metrics import generate, readme
from cs_pulse.metrics.catalogue.families import FAMILIES
from cs_pulse.metrics.collector import engine_registry
from cs_pulse.settings import Settings
from cs_pulse.sources.simulate import SimConfig
from harness import simulated_worker

ROOT = Path(__file__).resolve().parents[2]
ID_LABELS = {"customer", "customer_id", "conversation", "conversation_id", "event_id", "order"}


def test_names_follow_prometheus_conventions() -> None:
    for fam in FAMILIES.values():
        assert fam.name.startswith("cs_"), fam.name
        assert not fam.name.endswith("_total"), f"{fam.name}: counters are declared bare"
        assert not ID_LABELS & set(fam.labels), fam.name
        if fam.unit == "seconds":
            assert fam.name.endswith("_seconds"), fam.name
        if fam.unit == "ratio":
            assert fam.name.endswith("_ratio"), fam.name
        assert fam.help.endswith((".", ")")), fam.name


def simulated_page() -> dict[str, tuple[str, set[str]]]:
    shops = json.loads((ROOT / "deploy" / "shops.json").read_text())
    settings = Settings(partitions=2, shops=shops)
    ip, now = simulated_worker(settings, SimConfig(seed=5, start=1_700_000_000.0,
                                                   duration=4 * 3600, shops=1,
                                                   agents_per_shop=6))
    ip.engine.sweep()
    text = generate_latest(engine_registry(ip.engine, settings, now=now)).decode()
    return {fam.name: (fam.type, {k for s in fam.samples for k in s.labels} - {"le"})
            for fam in text_string_to_metric_families(text)}


def test_every_exported_family_is_declared_with_its_type_and_labels() -> None:
    page = simulated_page()
    for name, (type_, labels) in page.items():
        spec = FAMILIES[name]
        assert type_ == spec.type, name
        assert labels <= set(spec.labels), (name, labels, spec.labels)
    # A simulated day reaches most of the catalogue (the rest needs orders, reviews, ...).
    assert len(page) >= 0.75 * len(FAMILIES), sorted(set(FAMILIES) - set(page))


def test_the_readme_table_lists_every_family() -> None:
    table = readme.metric_table()
    for fam in FAMILIES.values():
        assert f"`{fam.name}" in table


def test_no_generated_file_is_stale() -> None:
    assert generate.stale(ROOT) == [], "run python -m cs_pulse.metrics.generate"


def test_generate_writes_every_file_into_a_root_and_then_finds_none_stale(tmp_path: Path
                                                                          ) -> None:
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text())
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.stale(tmp_path) == []
    assert generate.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "grafana/dashboards/floor.json").write_text("{}")
    assert generate.main(["--root", str(tmp_path), "--check"]) == 1
