"""Runtime configuration, all from environment variables (documented in the README)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs_pulse.domain.calendar import Calendars


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def shops_config(value: str | None = None) -> dict[str, Any]:
    """``CS_PULSE_SHOPS``: inline JSON or a path to a JSON file ({} if unset): per shop ``tz``,
    ``peaks`` and ``sale_days`` (see ``domain/calendar.py``)."""
    raw = value if value is not None else os.environ.get("CS_PULSE_SHOPS", "")
    if not raw:
        return {}
    text = raw if raw.lstrip().startswith("{") else Path(raw).read_text()
    config: dict[str, Any] = json.loads(text)
    return config


def forbidden_phrases_config(value: str | None = None) -> list[str]:
    """``CS_PULSE_FORBIDDEN_PHRASES``: an inline JSON list, or a UTF-8 file with one phrase per
    line (blank lines and lines starting with ``#`` skipped); [] if unset."""
    raw = value if value is not None else os.environ.get("CS_PULSE_FORBIDDEN_PHRASES", "")
    if not raw:
        return []
    if raw.lstrip().startswith("["):
        return [str(p) for p in json.loads(raw)]
    lines = Path(raw).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class Settings:
    broker: str = field(default_factory=lambda: _env("CS_PULSE_BROKER", "127.0.0.1:9092"))
    app_id: str = field(default_factory=lambda: _env("CS_PULSE_APP_ID", "cs-pulse"))
    events_topic: str = field(default_factory=lambda: _env("CS_PULSE_EVENTS_TOPIC", "cs.events"))
    dlq_topic: str = field(default_factory=lambda: _env("CS_PULSE_DLQ_TOPIC", "cs.events.dlq"))
    facts_topic: str = field(default_factory=lambda: _env("CS_PULSE_FACTS_TOPIC", "cs.facts"))
    customers_topic: str = field(
        default_factory=lambda: _env("CS_PULSE_CUSTOMERS_TOPIC", "cs.customers"))
    partitions: int = field(default_factory=lambda: int(_env("CS_PULSE_PARTITIONS", "8")))
    metrics_host: str = field(default_factory=lambda: _env("CS_PULSE_METRICS_HOST", "0.0.0.0"))
    metrics_port: int = field(default_factory=lambda: int(_env("CS_PULSE_METRICS_PORT", "9464")))
    grace_seconds: float = field(
        default_factory=lambda: float(_env("CS_PULSE_GRACE_SECONDS", "5")))
    batch_size: int = field(default_factory=lambda: int(_env("CS_PULSE_BATCH_SIZE", "2000")))
    batch_seconds: float = field(
        default_factory=lambda: float(_env("CS_PULSE_BATCH_SECONDS", "0.05")))
    sl_target_level: float = field(
        default_factory=lambda: float(_env("CS_PULSE_SL_TARGET", "0.8")))
    sl_target_seconds: float = field(
        default_factory=lambda: float(_env("CS_PULSE_SL_SECONDS", "30")))
    session_timeout: float = field(
        default_factory=lambda: float(_env("CS_PULSE_SESSION_TIMEOUT", "30")))
    data_dir: str = field(default_factory=lambda: _env("CS_PULSE_DATA_DIR", "/tmp/cs-pulse"))
    shops: dict[str, Any] = field(default_factory=lambda: shops_config())
    calendars: Calendars = field(init=False)   # from ``shops``

    def __post_init__(self) -> None:
        object.__setattr__(self, "calendars", Calendars.from_config(self.shops))

    @property
    def broker_url(self) -> str:
        return self.broker if "://" in self.broker else f"kafka://{self.broker}"

    @property
    def bootstrap(self) -> str:
        return self.broker.split("://", 1)[-1]
