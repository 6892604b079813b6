"""First-response tiers: each channel's benchmark (Zendesk 2023) and the clock it is read on.

Configured in the shops JSON (``CS_PULSE_SHOPS``), top level; a channel or field not given keeps
its default::

    {"first_response_tiers": {"email": {"excellent": 1800, "good": 7200, "acceptable": 28800,
                                        "clock": "business"}}}

The ``business`` clock counts only the shop's opening hours (``ShopCalendar.open_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # calendar.py reads the tiers with the rest of the shops file
    from .calendar import ShopCalendar

TIERS = ("excellent", "good", "acceptable")
TIER_KINDS = {tier: f"first_response_within_{tier}" for tier in TIERS}   # counter fact kinds
CLOCKS = ("wall", "business")


@dataclass(frozen=True)
class ChannelTiers:
    excellent: float   # seconds
    good: float
    acceptable: float
    clock: str = "wall"

    def targets(self) -> dict[str, float]:
        return {tier: getattr(self, tier) for tier in TIERS}

    def within(self, cal: ShopCalendar, wait_start: int, answer: int) -> dict[str, bool]:
        """Per tier: is the wait (epoch ms) within its target on this channel's clock?"""
        ms = (cal.open_ms(wait_start, answer) if self.clock == "business"
              else answer - wait_start)
        return {tier: ms <= target * 1000 for tier, target in self.targets().items()}


# No phone figures in the benchmark: phone takes chat's (its page is the 30 s service level).
DEFAULT_TIERS: dict[str, ChannelTiers] = {
    "chat": ChannelTiers(60, 300, 3600, "wall"),
    "phone": ChannelTiers(60, 300, 3600, "wall"),
    "social": ChannelTiers(900, 3600, 7200, "business"),
    "email": ChannelTiers(3600, 14400, 43200, "business"),
}


def tiers_from_config(cfg: dict[str, Any]) -> dict[str, ChannelTiers]:
    """Defaults overridden by ``cfg["first_response_tiers"]``; refuses what cannot be meant."""
    out = dict(DEFAULT_TIERS)
    for channel, fields in cfg.get("first_response_tiers", {}).items():
        unknown = set(fields) - {*TIERS, "clock"}
        if unknown:
            raise ValueError(f"first_response_tiers.{channel}: unknown {sorted(unknown)}")
        base = out.get(channel, DEFAULT_TIERS["chat"])
        excellent, good, acceptable = (float(fields.get(t, getattr(base, t))) for t in TIERS)
        tiers = ChannelTiers(excellent, good, acceptable, str(fields.get("clock", base.clock)))
        if tiers.clock not in CLOCKS:
            raise ValueError(f"first_response_tiers.{channel}.clock: {tiers.clock!r}")
        if not 0 <= tiers.excellent <= tiers.good <= tiers.acceptable:
            raise ValueError(f"first_response_tiers.{channel}: need excellent <= good <= "
                             "acceptable")
        out[channel] = tiers
    return out
