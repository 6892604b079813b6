"""Recompute every KPI sample of an events log with DuckDB SQL (glue only).

Python here loads the records, validates them against ``schemas/*.v1.json`` (the rejection
reason order of the README's "Event model"), runs the SQL files of ``audit/sql`` in order,
renders the samples and feeds the staffing inputs to ``domain.staffing.recommend``.  All metric
logic is in the SQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import duckdb
import fastjsonschema
import orjson

from cs_pulse.domain.staffing import recommend

Record = tuple[int, int, bytes | None, bytes | None]   # (partition, offset, key, value)
Sample = tuple[str, dict[str, str], float]              # (sample name, labels, value)
# A partition release: (partition, offset it followed, clock in epoch ms or None: no clock);
# the old (partition, offset) pairs are releases without a clock.
Release = tuple[int, int, int | None] | tuple[int, int]

MAX_RECORD_BYTES = 64 * 1024
TS_MIN = 631_152_000_000          # 1990-01-01
TS_MAX = 4_102_444_800_000        # 2100-01-01
FUTURE_SLACK_MS = 300_000         # "> 5 min ahead of the worker clock"

DEFAULT_CALENDAR: dict[str, Any] = {
    "tz": "Asia/Shanghai",
    "peaks": [["10:00", "12:00"], ["14:00", "17:00"], ["20:00", "23:00"]],
    "sale_days": ["11-11", "06-18", "12-12"],
}

# README "Event model": fields that become labels, and the values a label may take.
_LABEL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-")
_LABEL_FIELDS = ("shop_id", "queue", "to_queue", "team", "to_team", "agent_id", "to_agent_id")
_CHANNELS = {"chat", "email", "social", "phone"}
_INT_FIELDS = ("ts", "chars", "max_concurrency", "violations")
# README "Forbidden phrases": "The worker ignores any text that still reaches the topic (it is
# not matched, stored or forwarded)": validated with the schema, then dropped.
_IGNORED_FIELDS = ("text",)


def _schema_files() -> list[Traversable]:
    """``schemas/*.v1.json``, package data of ``cs_pulse``, in name order."""
    folder = resources.files("cs_pulse") / "schemas"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".v1.json")),
                  key=lambda f: f.name)


@lru_cache(maxsize=1)
def _schemas() -> dict[str, tuple[list[Any], Callable[[Any], Any]]]:
    out: dict[str, tuple[list[Any], Callable[[Any], Any]]] = {}
    for path in _schema_files():
        schema = orjson.loads(path.read_bytes())
        required = list(schema.get("required", []))
        # README: "required" includes the conditional requirements (``if``/``then``) and
        # "one of" groups (``anyOf`` of required lists).
        cond, then = schema.get("if"), schema.get("then")
        if cond and then and then.get("required"):
            consts = {k: v["const"] for k, v in cond.get("properties", {}).items()
                      if "const" in v}
            required.append(("if", consts, list(then["required"])))
        groups = [alt.get("required", []) for alt in schema.get("anyOf", [])]
        if groups:
            required.append(("any", groups))
        out[str(schema["title"])] = (required, fastjsonschema.compile(schema))
    if not out:
        raise RuntimeError("no event schemas found in the cs_pulse package (cs_pulse/schemas)")
    return out


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def classify(value: bytes | None, now_ms: float) -> tuple[str | None, dict[str, Any] | None]:
    """(rejection reason, None) or (None, event): the first reason that applies, in the
    README's order: oversized, malformed_json, not_object, unknown_type, missing_field,
    ancient_timestamp, future_timestamp, invalid_label, invalid_field."""
    if value is None:
        return "malformed_json", None
    if len(value) > MAX_RECORD_BYTES:
        return "oversized", None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "malformed_json", None
    if not isinstance(obj, dict):
        return "not_object", None
    schemas = _schemas()
    etype = obj.get("type")
    if not isinstance(etype, str) or etype not in schemas:
        return "unknown_type", None
    required, validate = schemas[etype]
    for field in required:
        if isinstance(field, str):
            missing = field not in obj
        elif field[0] == "if":
            missing = (all(obj.get(k) == v for k, v in field[1].items())
                       and any(f not in obj for f in field[2]))
        else:
            missing = not any(all(f in obj for f in group) for group in field[1])
        if missing:
            return "missing_field", None
    ts = obj["ts"]
    if _is_integer(ts):
        if ts < TS_MIN:
            return "ancient_timestamp", None
        if ts > TS_MAX or ts > now_ms + FUTURE_SLACK_MS:
            return "future_timestamp", None
    for field in _LABEL_FIELDS:
        if field in obj:
            v = obj[field]
            if not (isinstance(v, str) and 1 <= len(v) <= 64 and set(v) <= _LABEL_CHARS):
                return "invalid_label", None
    if "channel" in obj and obj["channel"] not in _CHANNELS:
        return "invalid_label", None
    try:
        validate(obj)
    except fastjsonschema.JsonSchemaException:
        return "invalid_field", None
    for field in _INT_FIELDS:
        if field in obj and _is_integer(obj[field]):
            obj[field] = int(obj[field])
    for field in _IGNORED_FIELDS:
        obj.pop(field, None)
    return None, obj


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# README "First response against channel tiers": default targets (seconds) and clocks.
TIERS = ("excellent", "good", "acceptable")
DEFAULT_TIERS: dict[str, dict[str, Any]] = {
    "chat": {"excellent": 60, "good": 300, "acceptable": 3600, "clock": "wall"},
    "phone": {"excellent": 60, "good": 300, "acceptable": 3600, "clock": "wall"},
    "social": {"excellent": 900, "good": 3600, "acceptable": 7200, "clock": "business"},
    "email": {"excellent": 3600, "good": 14400, "acceptable": 43200, "clock": "business"},
}


def _minutes(hhmm: str) -> int:
    hours, minutes = str(hhmm).split(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value <= 24 * 60 or not 0 <= int(minutes) < 60:
        raise ValueError(f"bad local time {hhmm!r} in the shop calendar")
    return value


def _days(spec: str) -> list[int]:
    """ISO day numbers (1 = mon ... 7 = sun) of a ``days`` spec: a name, a range (wrapping
    allowed) or a comma list of those."""
    out: list[int] = []
    for part in str(spec).lower().split(","):
        ends = [d.strip() for d in part.split("-")]
        if len(ends) > 2 or any(d not in _DAY_NAMES for d in ends):
            raise ValueError(f"bad days {spec!r} in the shop calendar")
        first, last = _DAY_NAMES.index(ends[0]), _DAY_NAMES.index(ends[-1])
        span = (last - first) % 7
        out += [(first + i) % 7 + 1 for i in range(span + 1)]
    return sorted(set(out))


def _opening(entries: Iterable[Any]) -> list[list[int]]:
    """``opening`` as [iso day, start minute, end minute] rows (end may be 1440 = 24:00)."""
    rows: list[list[int]] = []
    for days, start, end in entries:
        lo, hi = _minutes(start), _minutes(end)
        if hi < lo:
            raise ValueError(f"opening interval {start}-{end} crosses midnight (write two)")
        rows += [[d, lo, hi] for d in _days(days)]
    return rows


CalendarRow = tuple[str, str, list[list[str]], list[str], list[list[int]], list[str]]


def _calendars(shops: dict[str, Any] | None) -> list[CalendarRow]:
    """One row per configured shop (its entry over the default's) and the default (shop '')."""
    cfg = shops or {}
    default = {**DEFAULT_CALENDAR, **(cfg.get("default") or {})}

    def row(shop: str, merged: dict[str, Any]) -> CalendarRow:
        return (shop, str(merged["tz"]), [list(p) for p in merged["peaks"]],
                list(merged["sale_days"]), _opening(merged.get("opening") or []),
                [str(d) for d in merged.get("closed") or []])

    rows = [row("", default)]
    for shop, entry in (cfg.get("shops") or {}).items():
        rows.append(row(str(shop), {**default, **(entry or {})}))
    return rows


def _tiers(shops: dict[str, Any] | None) -> list[tuple[str, str, float, str]]:
    """(channel, tier, target seconds, clock): the defaults with the top-level
    ``first_response_tiers`` over them; a channel the defaults do not name starts from chat's."""
    overrides = (shops or {}).get("first_response_tiers") or {}
    rows = []
    for channel in [*DEFAULT_TIERS, *(c for c in overrides if c not in DEFAULT_TIERS)]:
        merged = {**DEFAULT_TIERS.get(channel, DEFAULT_TIERS["chat"]),
                  **(overrides.get(channel) or {})}
        clock = str(merged["clock"])
        if clock not in ("wall", "business"):
            raise ValueError(f"first_response_tiers: clock {clock!r} of {channel!r}")
        rows += [(str(channel), tier, float(merged[tier]), clock) for tier in TIERS]
    return rows


def _sql_files() -> list[tuple[str, str]]:
    folder = resources.files("cs_pulse.audit").joinpath("sql")
    files = [(f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir()
             if f.name.endswith(".sql")]
    return sorted(files)


def _release_rows(releases: Iterable[Release]) -> list[tuple[int, int, int | None]]:
    """Distinct (partition, offset, clock ms | None) rows; a 2-tuple has no clock."""
    rows: set[tuple[int, int, int | None]] = set()
    for rel in releases:
        if len(rel) == 2:
            part, off, clock = rel[0], rel[1], None
        elif len(rel) == 3:
            part, off, clock = rel[0], rel[1], rel[2]
        else:
            raise ValueError(f"a release is (partition, offset[, clock_ms]), not {rel!r}")
        rows.add((int(part), int(off), None if clock is None else int(clock)))
    return sorted(rows, key=lambda r: (r[0], r[1], -1 if r[2] is None else r[2]))


def load(con: duckdb.DuckDBPyConnection, records: Iterable[Record], now: float, *,
         grace_seconds: float = 5.0, shops: dict[str, Any] | None = None,
         releases: Iterable[Release] = ()) -> None:
    """Create the input tables (raw_valid, raw_rejected, releases, params, shop_cfg,
    tier_cfg).  ``releases``: (partition, offset, clock_ms) — a release right after that
    offset, with its clock (epoch ms, or None for a release without one); (partition, offset)
    pairs are accepted as releases without a clock."""
    now_ms = round(now * 1000.0)   # README: the reading instant, in whole milliseconds
    parts: list[int] = []
    offs: list[int] = []
    docs: list[str] = []
    bad_parts: list[int] = []
    bad_offs: list[int] = []
    reasons: list[str] = []
    for part, off, _key, value in sorted(records, key=lambda r: (r[0], r[1])):
        reason, obj = classify(value, now * 1000.0)
        if reason is not None:
            bad_parts.append(part)
            bad_offs.append(off)
            reasons.append(reason)
        else:
            parts.append(part)
            offs.append(off)
            docs.append(orjson.dumps(obj).decode())
    con.execute("CREATE OR REPLACE TABLE raw_valid AS SELECT unnest($1::INTEGER[]) AS part, "
                "unnest($2::BIGINT[]) AS off, CAST(unnest($3::VARCHAR[]) AS JSON) AS j",
                [parts, offs, docs])
    con.execute("CREATE OR REPLACE TABLE raw_rejected AS SELECT unnest($1::INTEGER[]) AS part, "
                "unnest($2::BIGINT[]) AS off, unnest($3::VARCHAR[]) AS reason",
                [bad_parts, bad_offs, reasons])
    rel = _release_rows(releases)
    con.execute("CREATE OR REPLACE TABLE releases AS SELECT unnest($1::INTEGER[]) AS part, "
                "unnest($2::BIGINT[]) AS off, unnest($3::BIGINT[]) AS clock_ms",
                [[p for p, _, _ in rel], [o for _, o, _ in rel], [c for _, _, c in rel]])
    con.execute("CREATE OR REPLACE TABLE params AS SELECT $1::BIGINT AS now_ms, "
                "$2::DOUBLE AS now_s, $3::BIGINT AS grace_ms",
                [now_ms, float(now), round(grace_seconds * 1000.0)])
    cal = _calendars(shops)
    con.execute("CREATE OR REPLACE TABLE shop_cfg (shop VARCHAR, tz VARCHAR, "
                "peaks VARCHAR[][], sale_days VARCHAR[], opening INTEGER[][], "
                "closed VARCHAR[])")
    con.executemany("INSERT INTO shop_cfg VALUES (?, ?, ?, ?, ?, ?)", [list(r) for r in cal])
    con.execute("CREATE OR REPLACE TABLE tier_cfg (channel VARCHAR, tier VARCHAR, "
                "target_s DOUBLE, clock VARCHAR)")
    con.executemany("INSERT INTO tier_cfg VALUES (?, ?, ?, ?)",
                    [list(r) for r in _tiers(shops)])


def run_sql(con: duckdb.DuckDBPyConnection) -> None:
    for _name, text in _sql_files():
        con.execute(text)


def _staffing_samples(con: duckdb.DuckDBPyConnection, sl_target: float,
                      sl_seconds: float) -> list[Sample]:
    out: list[Sample] = []
    rows = con.execute("SELECT shop, arrival_rate, aht, concurrency, agents_online, patience "
                       "FROM staffing_inputs ORDER BY shop").fetchall()
    for shop, arrival, aht, conc, online, patience in rows:
        rec = recommend(float(arrival), float(aht), int(online), float(conc),
                        target_level=sl_target, target_seconds=sl_seconds,
                        patience_seconds=None if patience is None else float(patience))
        labels = {"shop": str(shop)}
        if aht > 0:   # README: needed and gap only once an AHT is known
            out += [("cs_staffing_agents_needed", labels, float(rec.agents_needed)),
                    ("cs_staffing_gap_agents", labels, float(rec.gap))]
        out += [
            ("cs_staffing_arrival_rate", labels, float(arrival)),
            ("cs_staffing_handle_seconds", labels, float(aht)),
            ("cs_staffing_concurrency", labels, float(rec.concurrency)),
            ("cs_staffing_agents_online", labels, float(online)),
        ]
        if rec.expected_service_level is not None:
            out.append(("cs_staffing_expected_service_level_ratio", labels,
                        float(rec.expected_service_level)))
        if rec.expected_asa_seconds is not None and math.isfinite(rec.expected_asa_seconds):
            out.append(("cs_staffing_expected_asa_seconds", labels,
                        float(rec.expected_asa_seconds)))
        if rec.expected_abandon is not None:
            out.append(("cs_staffing_expected_abandon_ratio", labels,
                        float(rec.expected_abandon)))
        if patience is not None:
            out.append(("cs_staffing_patience_seconds", labels, float(patience)))
    return [(n, dict(lb), v) for n, lb, v in out]


def recompute(records: Iterable[Record], now: float, *, grace_seconds: float = 5.0,
              shops: dict[str, Any] | None = None, sl_target: float = 0.8,
              sl_seconds: float = 30.0, releases: Iterable[Release] = ()
              ) -> list[Sample]:
    """Every sample a worker exports for this log at ``now`` (delivery counters, lags and
    owned-partition gauges aside).  ``releases``: see ``load``."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        load(con, records, now, grace_seconds=grace_seconds, shops=shops, releases=releases)
        run_sql(con)
        rows = con.execute("SELECT name, labels, value FROM samples").fetchall()
        out: list[Sample] = [
            (str(name), {str(k): str(v) for k, v in labels}, float(value))
            for name, labels, value in rows
        ]
        out += _staffing_samples(con, sl_target, sl_seconds)
    finally:
        con.close()
    out.sort(key=lambda s: (s[0], sorted(s[1].items())))
    return out
