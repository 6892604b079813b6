"""The SLO catalogue: objectives, thresholds and (later in this module) the alerts and recording
rules built from them. The only place these numbers are written: rules, boards, the README and
the staffing gauges are generated from or read them here.

The service-level split (answered within 30 s, abandoned within 5 s is not counted) is a fact
definition, so it lives with the facts (``domain/facts.py``) and is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from cs_pulse.domain.facts import SERVICE_LEVEL_TARGET_MS, SHORT_ABANDON_MS

SERVICE_LEVEL_SECONDS = SERVICE_LEVEL_TARGET_MS // 1000   # "answered within 30 s"
SHORT_ABANDON_SECONDS = SHORT_ABANDON_MS // 1000


@dataclass(frozen=True)
class Threshold:
    """A warning/critical pair on one number. ``below`` means lower is worse."""

    critical: float
    warning: float | None = None
    below: bool = False


THRESHOLDS: dict[str, Threshold] = {
    # Floor target: share of customers answered within SERVICE_LEVEL_SECONDS. Also the
    # staffing target (agents needed for it) and the first-response tier share target.
    "service_level": Threshold(critical=0.80, warning=0.70, below=True),
    "first_response_tier": Threshold(critical=0.80, warning=0.70, below=True),
    "first_response_p90_seconds": Threshold(critical=float(SERVICE_LEVEL_SECONDS)),
    "oldest_waiting_seconds": Threshold(critical=120.0, warning=60.0),
    "abandonment": Threshold(critical=0.10),
    "reply_rate": Threshold(critical=0.90, below=True),
    "staffing_gap_agents": Threshold(critical=0.0),
    "forbidden_phrases_per_day": Threshold(critical=5.0, warning=1.0),
    "last_event_age_seconds": Threshold(critical=300.0),
}
