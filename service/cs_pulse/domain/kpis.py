"""KPI formulas over folded counts: the single definition used by the exporter and the tests."""

from __future__ import annotations

from .catalogue import HISTOGRAMS, quantile

Counts = dict[str, float]


def ratio(num: float, den: float) -> float | None:
    return None if den <= 0 else num / den


def hist_counts(counts: Counts, kind: str) -> list[float]:
    return [counts.get(f"{kind}:{i}", 0.0) for i in range(len(HISTOGRAMS[kind]) + 1)]


def hist_stats(counts: Counts, kind: str) -> dict[str, float | None]:
    buckets = hist_counts(counts, kind)
    bounds = HISTOGRAMS[kind]
    return {
        "avg": ratio(counts.get(f"{kind}:sum", 0.0), counts.get(f"{kind}:count", 0.0)),
        "p50": quantile(bounds, buckets, 0.5),
        "p90": quantile(bounds, buckets, 0.9),
    }


def kpis(c: Counts) -> dict[str, float | None]:
    """Ratios of the catalogue; None where the denominator is zero (no data, not 0 %)."""
    g = c.get
    answered = g("sl_answered_within", 0.0) + g("sl_answered_after", 0.0)
    online = g("online_seconds", 0.0)
    span = g("last_online", 0.0) - g("first_online", 0.0) if "first_online" in c else 0.0
    return {
        "reply_rate": ratio(g("runs_answered", 0.0),
                            g("runs_answered", 0.0) + g("runs_unanswered", 0.0)),
        "conversation_reply_rate": ratio(g("ended_replied", 0.0), g("ended", 0.0)),
        "service_level": ratio(g("sl_answered_within", 0.0),
                               answered + g("sl_abandoned_after", 0.0)),
        "abandonment": ratio(g("abandoned", 0.0), g("queued", 0.0)),
        "short_abandonment": ratio(g("abandoned_short", 0.0), g("queued", 0.0)),
        "transfer": ratio(g("transferred", 0.0), g("conversations", 0.0)),
        "escalation": ratio(g("escalated", 0.0), g("conversations", 0.0)),
        "fcr": ratio(g("resolved", 0.0) - g("resolved_reopened", 0.0), g("resolved", 0.0)),
        "csat": ratio(g("csat:sum", 0.0), g("csat:count", 0.0)),
        "csat_satisfied": ratio(g("csat_ge4", 0.0), g("csat:count", 0.0)),
        "attitude_positive": ratio(g("attitude_positive", 0.0), g("attitude_rated", 0.0)),
        "conversion": ratio(g("converted", 0.0), g("served", 0.0)),
        "aht_seconds": ratio(g("handle:sum", 0.0), g("handle:count", 0.0)),
        "slot_utilisation": ratio(g("open_seconds", 0.0), g("capacity_seconds", 0.0)),
        "online_rate": ratio(online, span) if span > 0 else None,
    }
