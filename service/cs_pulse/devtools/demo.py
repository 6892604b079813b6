"""``cs-pulse demo``: embedded Kafka + one worker + the simulator, with a live KPI summary.

Everything runs on 127.0.0.1 and stops by itself after ``--duration`` seconds (or on ^C).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cs_pulse.devtools.embedded_kafka import KafkaBroker, free_port


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name].append((s.labels, s.value))
    return out


def summary(m: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    def total(name: str, **match: str) -> float:
        return sum(v for labels, v in m.get(name, [])
                   if all(labels.get(k) == want for k, want in match.items()))

    def per_shop(name: str, **match: str) -> dict[str, float]:
        acc: dict[str, float] = defaultdict(float)
        for labels, v in m.get(name, []):
            if all(labels.get(k) == want for k, want in match.items()):
                acc[labels.get("shop", "")] += v
        return acc

    lines = [f"{'shop':<10} {'SL30':>8} {'FRT p90':>8} {'reply':>6} {'abandon':>8} "
             f"{'waiting':>8} {'oldest':>7} {'online':>7} {'needed':>7} {'peak':>5}"]
    sl_in = per_shop("cs_service_level_contacts_total", outcome="answered_within")
    sl_den: dict[str, float] = defaultdict(float)
    for o in ("answered_within", "answered_after", "abandoned_after"):
        for shop, v in per_shop("cs_service_level_contacts_total", outcome=o).items():
            sl_den[shop] += v
    frt: dict[str, float] = defaultdict(float)
    for labels, v in m.get("cs_first_response_window_seconds", []):
        if labels.get("window") == "5m" and labels.get("stat") == "p90":
            frt[labels["shop"]] = max(frt[labels["shop"]], v)
    answered = per_shop("cs_customer_messages_concluded_total", outcome="answered")
    unanswered = per_shop("cs_customer_messages_concluded_total", outcome="unanswered")
    abandoned, queued = per_shop("cs_abandoned_total"), per_shop("cs_queued_total")
    waiting = per_shop("cs_waiting_conversations")
    oldest: dict[str, float] = defaultdict(float)
    for labels, v in m.get("cs_oldest_waiting_seconds", []):
        oldest[labels["shop"]] = max(oldest[labels["shop"]], v)
    online, needed = per_shop("cs_staffing_agents_online"), per_shop("cs_staffing_agents_needed")
    peak = per_shop("cs_peak_hour")

    def pct(n: float, d: float) -> str:
        return f"{100 * n / d:6.1f}%" if d else "     -"

    for shop in sorted(set(queued) | set(online)):
        lines.append(
            f"{shop:<10} {pct(sl_in[shop], sl_den[shop]):>8} {frt[shop]:7.1f}s "
            f"{pct(answered[shop], answered[shop] + unanswered[shop]):>6} "
            f"{pct(abandoned[shop], queued[shop]):>8} {waiting[shop]:8.0f} {oldest[shop]:6.0f}s "
            f"{online[shop]:7.0f} {needed[shop]:7.0f} {'yes' if peak[shop] else 'no':>5}")
    lines.append(f"events processed {total('cs_events_processed_total'):.0f}, rejected "
                 f"{total('cs_events_rejected_total'):.0f}")
    return "\n".join(lines)


def run_demo(duration: float = 600.0, speed: float = 10.0, metrics_port: int = 9464,
             cache: Path | None = None) -> int:
    """Embedded Kafka (jars in ``cache``), one worker serving ``/metrics`` on 127.0.0.1:
    ``metrics_port`` and the simulator at ``speed``; a live summary until ``duration`` seconds
    have passed (0: until ^C)."""
    print("starting embedded Kafka (first run downloads the broker jars with mvn)...", flush=True)
    broker = KafkaBroker(port=free_port(), cache=cache).start()
    # The children are cs-pulse processes: they inherit this environment (PATH, HOME, the
    # virtualenv, and the user's other CS_PULSE_* settings, which they validate themselves),
    # with the demo's broker, listener and partitions on top.
    env = dict(os.environ,  # env-ok: devtools, environment of child processes
               CS_PULSE_BROKER=broker.bootstrap, CS_PULSE_METRICS_PORT=str(metrics_port),
               CS_PULSE_METRICS_HOST="127.0.0.1", CS_PULSE_PARTITIONS="4")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "cs_pulse.cli", "worker"], env=env))
        sim_seconds = duration if duration > 0 else 24 * 3600
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cs_pulse.cli", "simulate", "--speed", str(speed),
             "--duration", str(sim_seconds), "--rate", "3000"], env=env))
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        print(f"\nKafka: {broker.bootstrap}\nmetrics: {url}\n", flush=True)
        deadline = time.monotonic() + duration if duration > 0 else float("inf")
        while time.monotonic() < deadline:
            time.sleep(3)
            try:
                text = summary(scrape(url))
            except OSError:
                text = "waiting for the worker..."
            print(f"\x1b[2J\x1b[H cs-pulse demo  {time.strftime('%H:%M:%S')}  {url}\n\n{text}",
                  flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
    return 0
