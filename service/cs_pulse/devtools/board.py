"""The demo's terminal board (rich): per shop the live KPIs and a service-level sparkline, the
alerts that Alertmanager holds (and those Prometheus has pending), and what reached the webhook
receiver. Everything shown is read from Prometheus and Alertmanager; the functions that turn
their answers into rows are pure, and ``render`` only lays them out."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

WINDOW_SECONDS = 30       # the board's KPI window, wall time
WINDOW = f"{WINDOW_SECONDS}s"
TREND_SECONDS = 300       # the sparkline: the last five minutes ...
TREND_STEP = 10           # ... one block per 10 s
SL_TARGET = 0.8           # colour only: the floor's service-level target
BLOCKS = "▁▂▃▄▅▆▇█"

_SETTLED = 'outcome=~"answered_within|answered_after|abandoned_after"'
SL30 = (f'sum by (shop) (rate(cs_service_level_contacts_total{{outcome="answered_within"}}'
        f'[{WINDOW}])) / sum by (shop) (rate(cs_service_level_contacts_total{{{_SETTLED}}}'
        f'[{WINDOW}]))')
SHOP_QUERIES: dict[str, str] = {
    "sl30": SL30,
    "frt_p90": "histogram_quantile(0.9, sum by (shop, le) "
               f"(rate(cs_first_response_seconds_bucket[{WINDOW}])))",
    "reply_rate": "sum by (shop) (rate(cs_customer_messages_concluded_total"
                  f'{{outcome="answered"}}[{WINDOW}])) / sum by (shop) '
                  f"(rate(cs_customer_messages_concluded_total[{WINDOW}]))",
    "abandonment": f"sum by (shop) (rate(cs_abandoned_total[{WINDOW}])) / sum by (shop) "
                   f"(rate(cs_queued_total[{WINDOW}]))",
    "waiting": "sum by (shop) (cs_waiting_conversations)",
    "oldest_waiting": "max by (shop) (cs_oldest_waiting_seconds)",
    "online": "max by (shop) (cs_staffing_agents_online)",
    "needed": "max by (shop) (cs_staffing_agents_needed)",
    "peak": "max by (shop) (cs_peak_hour)",
}
CLOCK = "max(cs_window_end_timestamp_seconds)"
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


@dataclass
class ShopRow:
    shop: str
    sl30: float | None = None
    frt_p90: float | None = None
    reply_rate: float | None = None
    abandonment: float | None = None
    waiting: float | None = None
    oldest_waiting: float | None = None
    online: float | None = None
    needed: float | None = None
    peak: float | None = None
    trend: list[float | None] = field(default_factory=list)


@dataclass
class AlertRow:
    name: str
    severity: str
    state: str                 # firing (Alertmanager has it) or pending (Prometheus's for:)
    shop: str
    queue: str
    summary: str
    runbook_url: str
    since: float | None        # epoch seconds


@dataclass
class Notification:
    at: float                  # wall seconds after the traffic started
    receiver: str              # the webhook path: /oncall, /supervisors, ...
    status: str                # firing or resolved
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Board:
    scenario: str
    clock: str                 # simulated local time
    chapter: str
    elapsed: float             # wall seconds since the traffic started
    speed: float
    shops: list[ShopRow]
    alerts: list[AlertRow]
    notifications: list[Notification]
    urls: dict[str, str]
    log_dir: str
    note: str = ""


# --- Prometheus and Alertmanager answers -> rows ---------------------------------------------

def vector(answer: dict[str, Any], label: str = "shop") -> dict[str, float]:
    """An instant query's answer as {label value: value} (NaN and +Inf kept as floats)."""
    if answer.get("status") != "success":
        return {}
    return {r["metric"].get(label, ""): float(r["value"][1])
            for r in answer["data"]["result"]}


def matrix(answer: dict[str, Any], start: float, step: float, points: int,
           label: str = "shop") -> dict[str, list[float | None]]:
    """A range query's answer as {label value: one value or None per step from ``start``}."""
    out: dict[str, list[float | None]] = {}
    if answer.get("status") != "success":
        return out
    for r in answer["data"]["result"]:
        row: list[float | None] = [None] * points
        for ts, value in r["values"]:
            i = round((float(ts) - start) / step)
            if 0 <= i < points:
                row[i] = float(value)
        out[r["metric"].get(label, "")] = row
    return out


def shop_rows(values: dict[str, dict[str, float]],
              trends: dict[str, list[float | None]]) -> list[ShopRow]:
    """Rows from ``{field: {shop: value}}`` (the answers to ``SHOP_QUERIES``), one per shop
    that any of them names, in shop order; NaN (no data in the window) becomes None."""
    shops = sorted({shop for by_shop in values.values() for shop in by_shop} | set(trends))
    rows = []
    for shop in shops:
        row = ShopRow(shop, trend=list(trends.get(shop, [])))
        for name, by_shop in values.items():
            v = by_shop.get(shop)
            setattr(row, name, None if v is None or v != v else v)
        rows.append(row)
    return rows


def alert_rows(firing: Iterable[dict[str, Any]], rules: Iterable[dict[str, Any]]
               ) -> list[AlertRow]:
    """Alerts from Alertmanager's API (v2: what it holds is firing) and Prometheus's pending
    ones (``/api/v1/alerts``); pages first, then by name, shop and queue."""
    rows = []
    for a in firing:
        rows.append(_alert(a["labels"], a.get("annotations", {}), "firing", a.get("startsAt")))
    for a in rules:
        if a.get("state") == "pending":
            rows.append(_alert(a["labels"], a.get("annotations", {}), "pending",
                               a.get("activeAt")))
    return sorted(rows, key=lambda r: (r.severity != "page", r.state != "firing", r.name,
                                       r.shop, r.queue))


def _alert(labels: dict[str, str], annotations: dict[str, str], state: str,
           since: str | None) -> AlertRow:
    return AlertRow(labels.get("alertname", "?"), labels.get("severity", ""), state,
                    labels.get("shop", ""), labels.get("queue", ""),
                    annotations.get("summary", ""), annotations.get("runbook_url", ""),
                    _epoch(since))


def _epoch(iso: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time as Go prints it (nanoseconds, ``Z``)."""
    m = _RFC3339.match(iso or "")
    if not m:
        return None
    head, frac, tz = m.groups()
    zone = "+00:00" if tz in (None, "Z") else tz
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}{zone}").timestamp()


def notifications(at: float, path: str, payload: dict[str, Any]) -> list[Notification]:
    """One webhook post (Alertmanager's JSON) as a notification per alert in it."""
    return [Notification(at, path, a.get("status", payload.get("status", "")),
                         a["labels"].get("alertname", "?"), dict(a["labels"]),
                         dict(a.get("annotations", {})))
            for a in payload.get("alerts", [])]


# --- layout ----------------------------------------------------------------------------------

def sparkline(values: Sequence[float | None], lo: float = 0.0, hi: float = 1.0) -> str:
    """One block per value between ``lo`` and ``hi`` (clamped); a gap for None."""
    out = []
    for v in values:
        if v is None or v != v:
            out.append(" ")
            continue
        x = (min(max(v, lo), hi) - lo) / (hi - lo) if hi > lo else 0.0
        out.append(BLOCKS[min(len(BLOCKS) - 1, int(x * len(BLOCKS)))])
    return "".join(out)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def secs(v: float | None) -> str:
    if v is None:
        return "-"
    if v == float("inf"):
        return "> max"
    return f"{v:.0f} s" if v < 120 else f"{v / 60:.1f} min"


def where(shop: str, queue: str) -> str:
    return "/".join(x for x in (shop, queue) if x)


def ago(since: float | None, now: float) -> str:
    if since is None:
        return ""
    s = max(0, int(now - since))
    return f"{s // 60}:{s % 60:02d}"


def shops_table(rows: list[ShopRow], speed: float) -> Table:
    t = Table(title=f"shops: KPIs over the last {WINDOW_SECONDS} s ("
                    f"{WINDOW_SECONDS * speed / 60:g} simulated minutes), SL30 over "
                    f"{TREND_SECONDS // 60} min ({TREND_SECONDS * speed / 60:g} simulated)",
              title_justify="left")
    for col in ("shop", "peak", "SL30", "FRT p90", "reply", "abandon", "waiting", "oldest",
                "online / needed"):
        t.add_column(col, justify="left" if col == "shop" else "right")
    t.add_column(f"SL30, {TREND_SECONDS // 60} min", no_wrap=True)
    for r in rows:
        short = r.online is not None and r.needed is not None and r.online < r.needed
        low = r.sl30 is not None and r.sl30 < SL_TARGET
        t.add_row(
            r.shop, "yes" if r.peak else "no",
            Text(pct(r.sl30), style="bold red" if low else "green"),
            secs(r.frt_p90), pct(r.reply_rate), pct(r.abandonment),
            "-" if r.waiting is None else f"{r.waiting:.0f}", secs(r.oldest_waiting),
            Text(f"{count(r.online)} / {count(r.needed)}", style="bold red" if short else ""),
            Text(sparkline(r.trend), style="cyan"))
    return t


def count(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def alerts_list(rows: list[AlertRow], now: float) -> RenderableType:
    """Each firing alert in a block: severity, name, shop/queue and for how long; the summary;
    the runbook link (on a line of its own, never cut short). The pending ones on one line."""
    firing = [a for a in rows if a.state == "firing"]
    pending = [a for a in rows if a.state != "firing"]
    lines = [Text("alerts firing (held by Alertmanager):", style="italic") if firing
             else Text("alerts firing: none", style="green")]
    for a in firing:
        style = "bold red" if a.severity == "page" else "yellow"
        lines.append(Text.assemble((f"  {a.severity:<7}{a.name}", style),
                                   f"  {where(a.shop, a.queue)}  for {ago(a.since, now)}"))
        if a.summary:
            lines.append(Text(f"         {a.summary}"))
        if a.runbook_url:
            lines.append(Text.assemble("         runbook ",
                                       (a.runbook_url, f"link {a.runbook_url}")))
    if pending:
        lines.append(Text(
            "pending (Prometheus waiting out the rule's for:): " + " · ".join(
                f"{a.name} {where(a.shop, a.queue)} {ago(a.since, now)}" for a in pending),
            style="dim"))
    return Group(*lines)


def notifications_table(rows: list[Notification], last: int = 6) -> RenderableType:
    if not rows:
        return Text("webhook receiver: nothing received yet", style="dim")
    t = Table(title=f"webhook receiver (last {min(last, len(rows))} of {len(rows)})",
              title_justify="left")
    for col in ("at", "receiver", "status", "alert", "shop/queue"):
        t.add_column(col)
    for n in rows[-last:]:
        style = "bold red" if n.status == "firing" else "green"
        t.add_row(f"+{n.at:.0f} s", n.receiver, Text(n.status, style=style), n.alertname,
                  where(n.labels.get("shop", ""), n.labels.get("queue", "")))
    return t


def render(board: Board, now: float | None = None) -> RenderableType:
    now = time.time() if now is None else now
    head = Text.assemble(
        ("cs-pulse demo", "bold"), f"  scenario {board.scenario}  ",
        ("simulated ", "dim"), (board.clock, "bold"), (f" ({board.speed:g}x)", "dim"),
        f"  +{int(board.elapsed)} s")
    parts: list[RenderableType] = [head, Text(board.chapter, style="italic")]
    if board.note:
        parts.append(Text(board.note, style="yellow"))
    parts += [shops_table(board.shops, board.speed), alerts_list(board.alerts, now),
              notifications_table(board.notifications)]
    urls = "  ".join(f"{k}: {v}" for k, v in board.urls.items())
    parts.append(Text(f"{urls}\nlogs: {board.log_dir}    Ctrl-C stops everything",
                      style="dim"))
    return Group(*parts)
