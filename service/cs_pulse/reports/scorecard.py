"""The monthly agent scorecard (月度考核): hard indicators from the event history, scored.

Monthly figures come from the raw log, never from Prometheus: the same DuckDB recomputation as
``cs-pulse audit`` (``audit/recompute.py``) runs on the history up to the month's end and up to
its start, each at that instant; an agent's monthly count is the difference of its counters, so
it holds exactly what was counted in the month (at each fact's count time, in the shop's time
zone). Customers received and converted, per agent and team, are counted over the month itself
(``RECEPTION_SQL``: distinct per day, so not a difference). Scoring rule: each hard indicator
scores ``weight * attainment`` clamped to [floor, cap] * weight (attainment = actual / target,
or target / actual where lower is better); soft indicators come from the supervisor's file and
are added as given.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Record

Counts = dict[str, float]
AgentKey = tuple[str, str, str]   # shop, team, agent


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


TEAM_MEAN_GMV = "team_mean_attributed_gmv"
RECEIVED, CONVERTED = "customers_received", "customers_converted"
MONTHLY = frozenset({RECEIVED, CONVERTED})   # counted over the month itself, not differenced

# Each indicator: how it is computed from an agent's monthly counts (sample names without the
# ``cs_agent_`` prefix, labels folded in as ``name{label}``). None: no data this month.
FORMULAS: dict[str, tuple[str, Callable[[Counts], float | None]]] = {
    "first_response_30s": (
        "share of first responses within 30 s",
        lambda c: _ratio(c.get("service_level_contacts_total{answered_within}", 0.0),
                         c.get("service_level_contacts_total{answered_within}", 0.0)
                         + c.get("service_level_contacts_total{answered_after}", 0.0))),
    "reply_rate": (
        "customer messages answered / concluded",
        lambda c: _ratio(c.get("customer_messages_concluded_total{answered}", 0.0),
                         c.get("customer_messages_concluded_total{answered}", 0.0)
                         + c.get("customer_messages_concluded_total{unanswered}", 0.0))),
    "csat": (
        "mean rating, normalised to 1-5",
        lambda c: _ratio(c.get("csat_score_sum", 0.0), c.get("csat_score_count", 0.0))),
    "conversion": (
        "served conversations with a qualifying order / served",
        lambda c: _ratio(c.get("converted_total", 0.0), c.get("served_total", 0.0))),
    "forbidden_phrases": (
        "forbidden-phrase occurrences",
        lambda c: c.get("forbidden_phrases_total", 0.0) if c else None),
    "negative_reviews": (
        "ratings <= 2 of 5",
        lambda c: c.get("csat_dissatisfied_total", 0.0) if c.get("csat_score_count") else None),
    "resolution_rate": (
        "resolutions / segment closes",
        lambda c: _ratio(c.get("resolved_total", 0.0), c.get("conversations_ended_total", 0.0))),
    "customer_conversion": (   # 咨询转换率 by customers
        "customers received who paid / customers received (once per day)",
        lambda c: _ratio(c.get(CONVERTED, 0.0), c.get(RECEIVED, 0.0))),
    "positive_reviews": (
        "ratings >= 4 of 5",
        lambda c: c.get("csat_satisfied_total", 0.0) if c.get("csat_score_count") else None),
    # After-sales, counted in the month they become known (a period rate, as in the shop's
    # own reports): a refund or return may come up to 30 days after its order.
    "refund_rate": (   # 退款率
        "customers refunded / customers converted (counted in the month)",
        lambda c: _ratio(c.get("customers_refunded_total", 0.0),
                         c.get("customers_converted_total", 0.0))),
    "return_rate": (   # 退货率
        "credited orders returned / credited orders (counted in the month)",
        lambda c: _ratio(c.get("orders_returned_total{return}", 0.0),
                         c.get("orders_credited_total", 0.0))),
    "exchange_rate": (   # 换货率
        "credited orders exchanged / credited orders (counted in the month)",
        lambda c: _ratio(c.get("orders_returned_total{exchange}", 0.0),
                         c.get("orders_credited_total", 0.0))),
    "gmv_share": (   # 成交额转换率: against the mean of the team's agents in the same month
        "attributed GMV / the team's mean attributed GMV per agent",
        lambda c: _ratio(c.get("attributed_gmv_total", 0.0), c.get(TEAM_MEAN_GMV, 0.0))),
}
SHOWN = {"handled": "conversations_handled_total",
         "first_responses": "first_response_seconds_count",
         "customers": "customers_received"}


@dataclass(frozen=True)
class Indicator:
    name: str                 # a key of FORMULAS
    target: float
    weight: float
    higher_is_better: bool = True


@dataclass(frozen=True)
class Rules:
    indicators: tuple[Indicator, ...]
    floor: float = 0.5        # of the weight
    cap: float = 1.5

    @staticmethod
    def from_config(cfg: dict[str, Any]) -> Rules:
        """``{"floor": 0.5, "cap": 1.5, "indicators": [{"name": ..., "target": ..., "weight":
        ..., "higher_is_better": true}]}``; anything left out keeps the default."""
        indicators = tuple(Indicator(**i) for i in cfg.get("indicators", [])) or \
            DEFAULT_RULES.indicators
        unknown = [i.name for i in indicators if i.name not in FORMULAS]
        if unknown:
            raise ValueError(f"unknown indicators {unknown}; known: {sorted(FORMULAS)}")
        return Rules(indicators, float(cfg.get("floor", DEFAULT_RULES.floor)),
                     float(cfg.get("cap", DEFAULT_RULES.cap)))


DEFAULT_RULES = Rules((
    Indicator("first_response_30s", 0.80, 20),
    Indicator("reply_rate", 0.95, 20),
    Indicator("csat", 4.5, 20),
    Indicator("customer_conversion", 0.30, 15),
    Indicator("forbidden_phrases", 5, 10, higher_is_better=False),
    Indicator("negative_reviews", 2, 15, higher_is_better=False),
))


@dataclass
class Line:
    indicator: str
    actual: float | None
    target: float
    weight: float
    score: float | None       # None: no data, not scored


@dataclass
class Card:
    shop: str
    team: str
    agent: str
    lines: list[Line] = field(default_factory=list)
    shown: dict[str, float] = field(default_factory=dict)
    hourly: dict[str, float] = field(default_factory=dict)   # "HH" -> customers (分时接待)

    @property
    def total(self) -> float:
        return sum(line.score for line in self.lines if line.score is not None)

    @property
    def out_of(self) -> float:
        return sum(line.weight for line in self.lines if line.score is not None)


def score(indicator: Indicator, actual: float | None, rules: Rules) -> float | None:
    if actual is None:
        return None
    if indicator.higher_is_better:
        attainment = actual / indicator.target if indicator.target > 0 else rules.cap
    else:
        attainment = indicator.target / actual if actual > 0 else rules.cap
    return indicator.weight * min(rules.cap, max(rules.floor, attainment))


def month_bounds(month: str, tz: str) -> tuple[int, int]:
    """[first instant, first instant of the next month) of ``YYYY-MM`` in ``tz``, epoch ms."""
    year, mon = (int(x) for x in month.split("-"))
    zone = ZoneInfo(tz)
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=zone)
    return round(start.timestamp() * 1000), round(end.timestamp() * 1000)


Stamped = list[tuple[Record, float, str]]   # a record, its event time (ms) and shop


def stamped(records: Iterable[Record]) -> Stamped:
    """The records that carry an event time, each decoded once (an invalid one - not JSON, not
    an object, no ``ts`` - has no time and no reading includes it)."""
    out = []
    for rec in records:
        try:
            event = orjson.loads(rec[3] or b"{}")
        except orjson.JSONDecodeError:
            continue
        ts = event.get("ts") if isinstance(event, dict) else None
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            out.append((rec, ts, str(event.get("shop_id", ""))))
    return out


def before(log: Stamped, limit_ms: int) -> list[Record]:
    return [rec for rec, ts, _ in log if ts < limit_ms]


# Receptions in [month start, month end): the recomputation's own (``cust_reception``, one row
# per served conversation: the agent and team who served it, the customer key, the local day
# of the serving answer as its midnight, the local hour the chat began, whether it converted),
# the same table the live customer counts are checked against. Month bounds are local
# midnights, so a day is in the month exactly when its serving answers are.
RECEPTIONS_SQL = """
CREATE TEMP TABLE receptions AS
SELECT shop, coalesce(team, '') AS team, agent, day_t AS day, hour, ckey AS customer, converted
FROM cust_reception
WHERE day_t >= {start} AND day_t < {end} AND agent IS NOT NULL
"""
# 接待 and 咨询转换率 by customers: a customer counts once per agent (or team) per local day of
# the serving answer, converted that day if one of those conversations converted (README
# "Conversion"), as known at the month's end.
RECEPTION_SQL = """
SELECT shop, team, agent, count(DISTINCT (day, customer)),
       count(DISTINCT (day, customer)) FILTER (WHERE converted)
FROM receptions GROUP BY GROUPING SETS ((shop, team, agent), (shop, team))
"""
# 分时接待: the same receptions by the local hour their chat began, once per agent (and team),
# day and hour (README "By hour").
HOURLY_SQL = """
SELECT shop, team, agent, hour, count(DISTINCT (day, customer))
FROM receptions
GROUP BY GROUPING SETS ((shop, team, agent, hour), (shop, team, hour))
"""


def agent_counts(log: Stamped, at_ms: int, settings: Settings,
                 month_start: int | None = None) -> dict[AgentKey, Counts]:
    """Every agent's cumulative counters at ``at_ms`` from the events before it (SQL); with
    ``month_start``, also each agent's (and, under agent "", each team's) customers received
    and converted in [month_start, at_ms), and by hour."""
    from cs_pulse.audit.run import sql_session

    reception: list[Any] = []
    by_hour: list[Any] = []
    with sql_session(before(log, at_ms), at_ms, settings) as con:
        samples = con.execute("SELECT name, labels, value FROM samples").fetchall()
        if month_start is not None:
            con.execute(RECEPTIONS_SQL.format(start=int(month_start), end=int(at_ms)))
            reception = con.execute(RECEPTION_SQL).fetchall()
            by_hour = con.execute(HOURLY_SQL).fetchall()
    out: dict[AgentKey, Counts] = {}
    for name, label_pairs, value in samples:
        labels = {str(k): str(v) for k, v in label_pairs}
        if not name.startswith("cs_agent_") or "le" in labels or \
                not name.endswith(("_total", "_sum", "_count")):
            continue   # cumulative counters only: a gauge has no monthly difference
        extra = [v for k, v in sorted(labels.items()) if k not in ("shop", "team", "agent")]
        key = name[len("cs_agent_"):] + (f"{{{','.join(extra)}}}" if extra else "")
        out.setdefault((labels["shop"], labels["team"], labels["agent"]), {})[key] = value
    for shop, team, agent, received, converted in reception:
        counts = out.setdefault((shop, team, agent or ""), {})
        counts[RECEIVED], counts[CONVERTED] = float(received), float(converted)
    for shop, team, agent, hour, n in by_hour:
        out.setdefault((shop, team, agent or ""), {})[f"{RECEIVED}@{hour:02d}"] = float(n)
    return out


def monthly(records: list[Record], month: str, settings: Settings) -> dict[AgentKey, Counts]:
    """Per agent: what was counted in the month, in each shop's time zone."""
    out: dict[AgentKey, Counts] = {}
    log = stamped(records)
    by_tz: dict[str, list[str]] = {}
    for shop in sorted({shop for _, _, shop in log if shop}):
        by_tz.setdefault(settings.calendars.for_shop(shop).tz, []).append(shop)
    for tz, tz_shops in by_tz.items():
        start, end = month_bounds(month, tz)
        before_ = agent_counts(log, start, settings)
        after = agent_counts(log, end, settings, month_start=start)
        for key, counts in after.items():
            if key[0] not in tz_shops:
                continue
            base = before_.get(key, {})
            month_counts = {k: v if k.split("@")[0] in MONTHLY else v - base.get(k, 0.0)
                            for k, v in counts.items()}
            if any(v for v in month_counts.values()):
                out[key] = month_counts
    return out


def soft_scores(path: Path | None) -> dict[str, list[tuple[str, float]]]:
    """The supervisor's soft indicators: CSV ``agent,indicator,score`` (a score may exceed
    its nominal weight)."""
    if path is None:
        return {}
    out: dict[str, list[tuple[str, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["agent"], []).append((row["indicator"], float(row["score"])))
    return out


def cards(counts: dict[AgentKey, Counts], rules: Rules, team: str | None = None,
          soft: dict[str, list[tuple[str, float]]] | None = None) -> list[Card]:
    teams: dict[tuple[str, str], list[float]] = {}
    for (shop, team_, agent), c in counts.items():
        if agent:
            teams.setdefault((shop, team_), []).append(c.get("attributed_gmv_total", 0.0))
    out = []
    for (shop, team_, agent), c in sorted(counts.items()):
        if (team is not None and team_ != team) or not agent:
            continue   # agent "" holds a team's customer figures (see ``team_figures``)
        gmv = teams[(shop, team_)]
        c = {**c, TEAM_MEAN_GMV: sum(gmv) / len(gmv)}   # agents of the team active this month
        card = Card(shop, team_, agent, shown={k: c.get(v, 0.0) for k, v in SHOWN.items()},
                    hourly=hourly(c))
        for ind in rules.indicators:
            actual = FORMULAS[ind.name][1](c)
            card.lines.append(Line(ind.name, actual, ind.target, ind.weight,
                                   score(ind, actual, rules)))
        for name, value in (soft or {}).get(agent, []):
            card.lines.append(Line(f"soft:{name}", value, 0.0, 0.0, value))
        out.append(card)
    return out


def hourly(c: Counts) -> dict[str, float]:
    return {k.split("@")[1]: v for k, v in sorted(c.items()) if k.startswith(RECEIVED + "@")}


def team_figures(counts: dict[AgentKey, Counts], team: str | None = None
                 ) -> list[dict[str, Any]]:
    """Per team: customers received (once per day) and converted, their ratio, and the
    customers by the hour their chat started."""
    return [{"shop": shop, "team": team_, "customers_received": c.get(RECEIVED, 0.0),
             "customers_converted": c.get(CONVERTED, 0.0),
             "customer_conversion": _ratio(c.get(CONVERTED, 0.0), c.get(RECEIVED, 0.0)),
             "hourly": hourly(c)}
            for (shop, team_, agent), c in sorted(counts.items())
            if not agent and (team is None or team_ == team)]


def render(cards_: list[Card], fmt: str, teams: list[dict[str, Any]] | None = None) -> str:
    rows = [{"shop": c.shop, "team": c.team, "agent": c.agent, "indicator": line.indicator,
             "actual": line.actual, "target": line.target, "weight": line.weight,
             "score": line.score} for c in cards_ for line in c.lines]
    totals = [{"shop": c.shop, "team": c.team, "agent": c.agent, "total": round(c.total, 2),
               "out_of": c.out_of, **c.shown, "hourly": c.hourly} for c in cards_]
    if fmt == "json":
        return json.dumps({"lines": rows, "totals": totals, "teams": teams or []}, indent=2,
                          ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["agent"])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    lines = []
    for c in cards_:
        lines.append(f"{c.shop} / {c.team or '-'} / {c.agent}: {c.total:.1f} of {c.out_of:g} "
                     f"(handled {c.shown['handled']:g}, first responses "
                     f"{c.shown['first_responses']:g}, customers {c.shown['customers']:g})")
        if c.hourly:
            lines.append("    customers by hour: " + " ".join(f"{h}h:{n:g}"
                                                            for h, n in c.hourly.items()))
        for line in c.lines:
            actual = "n/a" if line.actual is None else f"{line.actual:.4g}"
            got = "not scored" if line.score is None else f"{line.score:.1f}"
            lines.append(f"    {line.indicator:<22} {actual:>10}  target {line.target:<8g} "
                         f"weight {line.weight:<4g} score {got}")
    for t in teams or []:
        ratio = t["customer_conversion"]
        lines.append(f"team {t['shop']} / {t['team'] or '-'}: customers received "
                     f"{t['customers_received']:g}, converted {t['customers_converted']:g} "
                     f"({'n/a' if ratio is None else f'{ratio:.1%}'})")
    return "\n".join(lines) + "\n"
