"""Decode and validate raw Kafka values into domain events, or a rejection reason.

Never raises on bad input: every failure becomes a ``Rejected`` with a short, bounded reason
(used as the ``reason`` label of ``cs_events_rejected_total`` and the DLQ header).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema_rs
import orjson

from cs_pulse.domain.labels import invalid_label
from cs_pulse.domain.model import Event

MAX_EVENT_BYTES = 64 * 1024
MAX_FUTURE_SKEW_SECONDS = 300.0
MIN_TS_MS = 631_152_000_000      # 1990-01-01
MAX_TS_MS = 4_102_444_800_000    # 2100-01-01
REASONS = (
    "oversized", "malformed_json", "not_object", "unknown_type", "missing_field",
    "invalid_field", "invalid_label", "future_timestamp", "ancient_timestamp",
)


def schema_files() -> list[Traversable]:
    """The event schemas ``schemas/*.v1.json``, package data of ``cs_pulse`` (the repository's
    top-level ``schemas/``, linked into the package), in name order."""
    folder = resources.files("cs_pulse") / "schemas"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".v1.json")),
                  key=lambda f: f.name)


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class _Schema:
    validate: Callable[[Any], Any]
    required: tuple[str, ...]
    one_of_required: tuple[tuple[str, ...], ...]   # anyOf: at least one of these groups
    required_if: tuple[tuple[dict[str, Any], tuple[str, ...]], ...]   # if const: then required


def _load_validators() -> dict[str, _Schema]:
    validators: dict[str, _Schema] = {}
    for path in schema_files():
        schema = orjson.loads(path.read_bytes())
        validators[schema["title"]] = _Schema(
            jsonschema_rs.validator_for(schema).validate, tuple(schema.get("required", ())),
            tuple(tuple(alt.get("required", ())) for alt in schema.get("anyOf", ())),
            _required_if(schema))
    if not validators:
        raise RuntimeError("no event schemas found in the cs_pulse package (cs_pulse/schemas)")
    return validators


def _required_if(schema: dict[str, Any]) -> tuple[tuple[dict[str, Any], tuple[str, ...]], ...]:
    """``if: {properties: {x: {const: v}}}, then: {required: [...]}`` pairs, top level."""
    cond, then = schema.get("if"), schema.get("then")
    if not cond or not then or not then.get("required"):
        return ()
    consts = {k: v["const"] for k, v in cond.get("properties", {}).items() if "const" in v}
    return ((consts, tuple(then["required"])),)


class Decoder:
    """Compiled validators for every event type; ``decode`` is the only entry point."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        import time

        self.validators = _load_validators()
        self.now = now or time.time

    @property
    def types(self) -> list[str]:
        return sorted(self.validators)

    def decode(self, raw: bytes | None) -> Event | Rejected:
        if raw is None:
            return Rejected("malformed_json", "empty value")
        if len(raw) > MAX_EVENT_BYTES:
            return Rejected("oversized", f"{len(raw)} bytes > {MAX_EVENT_BYTES}")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejected("malformed_json", str(exc)[:200])
        return self.validate(data)

    def validate(self, data: Any) -> Event | Rejected:
        """The first reason that applies, in the README's order."""
        if not isinstance(data, dict):
            return Rejected("not_object", type(data).__name__)
        type_ = data.get("type")
        schema = self.validators.get(type_) if isinstance(type_, str) else None
        if schema is None:
            return Rejected("unknown_type", repr(data.get("type"))[:100])
        missing = [f for f in schema.required if f not in data]
        for consts, fields in schema.required_if:
            if all(data.get(k) == v for k, v in consts.items()):
                missing += [f for f in fields if f not in data]
        if not missing and schema.one_of_required and not any(
                all(f in data for f in group) for group in schema.one_of_required):
            missing = ["|".join(g[0] for g in schema.one_of_required)]
        if missing:
            return Rejected("missing_field", f"missing {', '.join(missing)}"[:200])
        ts = data["ts"]
        if isinstance(ts, float) and ts.is_integer():   # 1.7e12 is an integer in JSON Schema
            ts = data["ts"] = int(ts)
        if isinstance(ts, int) and not isinstance(ts, bool):
            if ts < MIN_TS_MS:
                return Rejected("ancient_timestamp", f"ts {ts} before 1990")
            if ts > MAX_TS_MS or ts / 1000.0 > self.now() + MAX_FUTURE_SKEW_SECONDS:
                return Rejected("future_timestamp", f"ts {ts} ahead of worker clock")
        bad_label = invalid_label(data)
        if bad_label is not None:
            return Rejected("invalid_label", bad_label)
        try:
            schema.validate(data)
        except jsonschema_rs.ValidationError as exc:
            field = ".".join(str(p) for p in exc.instance_path) or "event"
            return Rejected("invalid_field", f"{field}: {exc.message}"[:200])
        data.pop("text", None)   # message text is the ingest edge's alone: never kept
        return Event(data)
