"""Label values: which event fields become Prometheus labels, what a valid value is, and the
per-worker bound on how many distinct values each label may take.

Every distinct shop, queue, team, agent or channel becomes series on the page. One buggy or
hostile producer sending a new agent id per event would grow the worker's memory and
Prometheus' series without bound; the ``LabelGuard`` folds values past a label's limit into
``OVERFLOW`` ("other") before they reach any state, and counts each folded event.
"""

from __future__ import annotations

import re
from typing import Any

from cs_pulse.domain.model import Event

OVERFLOW = "other"
CHANNELS = ("chat", "email", "social", "phone")
# A label value: 1-64 characters of this set (what every schema's id fields allow).
VALUE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
# Label -> the event fields (top level, or a transfer's ``to_*``) that carry its values.
FIELDS: dict[str, tuple[str, ...]] = {
    "shop": ("shop_id",),
    "queue": ("queue", "to_queue"),
    "team": ("team", "to_team"),
    "agent": ("agent_id", "to_agent_id"),
    "channel": ("channel",),
}
DEFAULT_LIMITS: dict[str, int] = {
    "shop": 500, "queue": 1000, "team": 1000, "agent": 5000, "channel": 16}


def invalid_label(data: dict[str, Any]) -> str | None:
    """The first label field of a decoded JSON object whose value is not a valid label value
    (``field: value``), or None."""
    for label, names in FIELDS.items():
        for name in names:
            if name not in data:
                continue
            value = data[name]
            if label == "channel":
                ok = value in CHANNELS
            else:
                ok = isinstance(value, str) and VALUE.fullmatch(value) is not None
            if not ok:
                return f"{name}: {value!r}"[:200]
    return None


class LabelGuard:
    """At most ``limits[label]`` distinct values per label on this worker, first come first
    kept; later values become ``OVERFLOW``. ``overflow`` counts folded events per label."""

    __slots__ = ("known", "limits", "overflow")

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.known: dict[str, set[str]] = {label: set() for label in FIELDS}
        self.overflow: dict[str, float] = {label: 0.0 for label in FIELDS}

    def admit(self, label: str, value: str) -> str:
        known = self.known[label]
        if not value or value in known:
            return value
        if len(known) < self.limits.get(label, DEFAULT_LIMITS[label]):
            known.add(value)
            return value
        self.overflow[label] += 1.0
        return OVERFLOW

    def apply(self, ev: Event) -> None:
        """Fold the event's label values past their limits, in place (the event's own fields
        and the raw ``attrs`` the domain reads a transfer's ``to_*`` from)."""
        attrs = ev.attrs
        shop = self.admit("shop", ev.shop_id)
        if shop != ev.shop_id:
            ev.shop_id = attrs["shop_id"] = shop
        queue = self.admit("queue", ev.queue)
        if queue != ev.queue:
            ev.queue = attrs["queue"] = queue
        team = self.admit("team", ev.team)
        if team != ev.team:
            ev.team = attrs["team"] = team
        agent = self.admit("agent", ev.agent_id)
        if agent != ev.agent_id:
            ev.agent_id = attrs["agent_id"] = agent
        channel = self.admit("channel", ev.channel)
        if channel != ev.channel:
            ev.channel = attrs["channel"] = channel
        for label, name in (("queue", "to_queue"), ("team", "to_team"),
                            ("agent", "to_agent_id")):
            value = attrs.get(name)
            if isinstance(value, str) and value:
                attrs[name] = self.admit(label, value)
