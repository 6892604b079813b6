"""Label values: which event fields become Prometheus labels, what a valid value is, and the
per-worker bound on how many distinct values each label may take.

Every distinct shop, queue, team, agent or channel becomes series on the page. One buggy or
hostile producer sending a new agent id per event would grow the worker's memory and
Prometheus' series without bound; the ``LabelGuard`` folds values past a label's limit into
``OVERFLOW`` ("other") before they reach any state, and counts each folded event.
"""

from __future__ import annotations

import re
from typing import Any, Final

from cs_pulse.domain.model import Event

OVERFLOW = "other"
CHANNELS = ("chat", "email", "social", "phone")
# A label value: 1-64 characters of this set (what every schema's id fields allow).
VALUE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
# Label -> the event fields that carry its values: the event's own field first (``apply`` relies
# on it), then a transfer's ``to_*``.
FIELDS: dict[str, tuple[str, ...]] = {
    "shop": ("shop_id",),
    "queue": ("queue", "to_queue"),
    "team": ("team", "to_team"),
    "agent": ("agent_id", "to_agent_id"),
    "channel": ("channel",),
}
DEFAULT_LIMITS: dict[str, int] = {
    "shop": 500, "queue": 1000, "team": 1000, "agent": 5000, "channel": 16}


# Values already matched: a worker sees the same few hundred shops, queues and agents in
# every event, and a set lookup is a tenth of a regex match. Bounded: cleared when full.
_MATCHED: Final[set[str]] = set()
_MATCHED_MAX: Final = 100_000


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
            elif not isinstance(value, str):
                ok = False
            elif value in _MATCHED:
                ok = True
            else:
                ok = VALUE.fullmatch(value) is not None
                if ok:
                    if len(_MATCHED) >= _MATCHED_MAX:
                        _MATCHED.clear()
                    _MATCHED.add(value)
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
        """Fold the event's label values past their limits, in place: the event's own field
        (each label's first in ``FIELDS``, also in the raw ``attrs``) and a transfer's ``to_*``
        (only in ``attrs``, where the domain reads them)."""
        attrs = ev.attrs
        for label, names in FIELDS.items():
            own = names[0]
            value: str = getattr(ev, own)
            kept = self.admit(label, value)
            if kept != value:
                setattr(ev, own, kept)
                attrs[own] = kept
            for name in names[1:]:
                other = attrs.get(name)
                if isinstance(other, str) and other:
                    attrs[name] = self.admit(label, other)
