"""Runtime configuration: one validated ``Settings``, read from the ``CS_PULSE_*`` environment
variables (documented in the README). No other module reads the environment: the edges (the
CLI, the tests, the benchmarks) build a ``Settings`` and hand it, or values from it, on.

An empty variable counts as unset. A bad value fails at start-up with one line naming the
variable (``ConfigError``, see ``load_settings``), e.g. ``CS_PULSE_PARTITIONS: Input should be
a valid integer, unable to parse string as an integer (got 'eight')``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cs_pulse.domain.calendar import Calendars
from cs_pulse.domain.labels import DEFAULT_LIMITS

ENV_PREFIX = "CS_PULSE_"


class ConfigError(ValueError):
    """Invalid configuration, as one line naming the variable(s)."""


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse_json(text: str, kind: type, what: str) -> Any:
    """``text`` as JSON of type ``kind`` (dict or list), or one ValueError line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValueError(f"must be a JSON {what}")
    return value


def shops_config(value: str | None = None) -> dict[str, Any]:
    """``CS_PULSE_SHOPS``: inline JSON or a path to a JSON file ({} if empty): per shop ``tz``,
    ``peaks`` and ``sale_days`` (see ``domain/calendar.py``). ``None``: the configured one."""
    if value is None:
        return dict(Settings().shops)
    if not value.strip():
        return {}
    text = value if value.lstrip().startswith("{") else _read_file(value)
    config: dict[str, Any] = _parse_json(text, dict, "object")
    return config


def forbidden_phrases_config(value: str | None = None) -> list[str]:
    """``CS_PULSE_FORBIDDEN_PHRASES``: an inline JSON list, or a UTF-8 file with one phrase per
    line (blank lines and lines starting with ``#`` skipped); [] if empty. ``None``: the
    configured ones."""
    if value is None:
        return list(Settings().forbidden_phrases)
    if not value.strip():
        return []
    if value.lstrip().startswith("["):
        return [str(p) for p in _parse_json(value, list, "list")]
    lines = _read_file(value).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


class _Memo:
    """Values derived from a ``Settings``' fields, built on first use. Not part of its value:
    any two compare equal. Each entry remembers the object it was derived from, so a
    ``model_copy(update=...)`` (which shares the memo) never sees a stale one."""

    __slots__ = ("calendars", "shops")

    def __init__(self) -> None:
        self.shops: dict[str, Any] | None = None
        self.calendars: Calendars | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Memo)

    __hash__ = None  # type: ignore[assignment]


class Settings(BaseSettings):
    """Every ``CS_PULSE_*`` variable; ``Settings(partitions=4)`` overrides by keyword, and
    ``settings.model_copy(update={...})`` makes a modified copy (frozen: no assignment)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, env_ignore_empty=True, populate_by_name=True,
        extra="forbid", validate_default=True)

    # Kafka and the stream workers
    broker: str = "127.0.0.1:9092"
    app_id: str = "cs-pulse"
    events_topic: str = "cs.events"
    dlq_topic: str = "cs.events.dlq"
    facts_topic: str = "cs.facts"
    customers_topic: str = "cs.customers"
    partitions: int = Field(default=8, ge=1)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    grace_seconds: float = Field(default=5.0, ge=0)
    batch_size: int = Field(default=2000, ge=1)
    session_timeout: float = Field(default=30.0, gt=0)
    # After a pause (SIGSTOP, VM freeze) hold flushes for a session timeout. Turned off only
    # by the zombie-fencing test, to make a zombie that writes (README "Zombie fencing").
    pause_holds_flushes: bool = True
    # Follow every changelog partition between rebalances, so a takeover reads only its tail
    # (worker/changelog_store.py): costs the memory of the other workers' rows.
    warm_standby: bool = True
    # Keep each changelog's rows in the data directory too, so a worker restarted on it reads
    # only the changelogs' tail (worker/local_copy.py).
    local_copy: bool = True
    data_dir: str = "/tmp/cs-pulse"
    loglevel: str = "warn"                     # ``cs-pulse worker --loglevel`` default
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"   # the worker's (uvloop: faster I/O)
    gc_tuning: bool = True   # the worker's garbage collector: see ``worker.app.tune_gc``
    # Distinct values each label may take on one worker; later ones are folded into "other"
    # (see domain/labels.py and README "Limits").
    max_shops: int = Field(default=DEFAULT_LIMITS["shop"], ge=1)
    max_queues: int = Field(default=DEFAULT_LIMITS["queue"], ge=1)
    max_teams: int = Field(default=DEFAULT_LIMITS["team"], ge=1)
    max_agents: int = Field(default=DEFAULT_LIMITS["agent"], ge=1)
    max_channels: int = Field(default=DEFAULT_LIMITS["channel"], ge=1)
    # Shop calendars and first-response tiers: inline JSON or a JSON file (see shops_config).
    shops: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    # The ingest edge: forbidden phrases (see forbidden_phrases_config)
    forbidden_phrases: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Chat platforms (``cs-pulse webhook``, README "Chat platforms"); a platform is served
    # once its secret (or, for Chatwoot before 4.11.2, its URL token) is set.
    chatwoot_secret: SecretStr = SecretStr("")
    chatwoot_url_token: SecretStr = SecretStr("")   # opt-in: unsigned Chatwoot < 4.11.2
    chatwoot_shop: str = "chatwoot"
    # A resolve this long after the conversation's last activity is Chatwoot's auto-resolve
    # (closed by timeout); 0: never assumed. Set it to the account's "auto-resolve after".
    chatwoot_auto_resolve_minutes: float = Field(default=0.0, ge=0)
    intercom_client_secret: SecretStr = SecretStr("")
    intercom_shop: str = "intercom"
    zendesk_webhook_secret: SecretStr = SecretStr("")
    zendesk_shop: str = ""                       # "": the body's account_id
    # Zendesk marks nothing automated: the user ids of integration and automation seats
    # (comma-separated), whose public comments are bot messages, not human answers.
    zendesk_automation_author_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_host: str = "0.0.0.0"
    webhook_port: int = Field(default=8088, ge=0, le=65535)
    # The receiver's disk spool: deliveries are answered once here and produced from here.
    webhook_spool_dir: Path | None = None        # default: <data_dir>/webhook-spool
    webhook_spool_max_bytes: int = Field(default=1024 ** 3, ge=1024)
    webhook_spool_fsync: bool = True             # false: survives a killed process, not a power cut
    # Its limits (README "Webhook limits"): signature freshness (also how long a delivery is
    # remembered against replays), body size, per-client rate (token bucket: rate per second,
    # burst; at most rate_clients buckets kept), time to send the headers and again the body,
    # requests in flight, remembered deliveries, and the proxies whose X-Forwarded-For is
    # believed (comma-separated addresses or CIDR networks; none by default).
    webhook_freshness_seconds: float = Field(default=300.0, gt=0)
    webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    webhook_rate: float = Field(default=50.0, gt=0)
    webhook_rate_burst: int = Field(default=200, ge=1)
    webhook_rate_clients: int = Field(default=10_000, ge=1)
    webhook_read_timeout: float = Field(default=10.0, gt=0)
    webhook_max_in_flight: int = Field(default=64, ge=1)
    webhook_replay_capacity: int = Field(default=100_000, ge=1)
    webhook_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # History sink and the reports that read it
    history_dir: Path = Path("history")
    history_days: int = Field(default=400, ge=1)
    # Kafka security (every Kafka client: cs_pulse/kafka_client.py). SASL_* need a username and
    # a password (or a file holding it, as Kubernetes mounts secrets); SSL/SASL_SSL verify the
    # broker against the CA file (default: the system's CAs); a certificate (and its key, if
    # not in the same PEM file) is presented to brokers that require one (mTLS).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_connect_timeout: float = Field(default=30.0, gt=0)   # start-up connection check
    # Development tools: cache of the embedded Kafka broker's jars
    cache: Path = Field(default_factory=lambda: Path.home() / ".cache" / "cs-pulse")

    _memo: _Memo = PrivateAttr(default_factory=_Memo)

    @field_validator("shops", mode="before")
    @classmethod
    def _read_shops(cls, value: Any) -> Any:
        return shops_config(value) if isinstance(value, str) else value

    @field_validator("shops")
    @classmethod
    def _check_calendars(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Calendars.from_config(value)   # a typo fails at start-up, not later
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid shop calendar: {type(exc).__name__}: {exc}") from None
        return value

    @field_validator("forbidden_phrases", mode="before")
    @classmethod
    def _read_phrases(cls, value: Any) -> Any:
        return forbidden_phrases_config(value) if isinstance(value, str) else value

    @field_validator("chatwoot_shop", "intercom_shop", "zendesk_shop")
    @classmethod
    def _shop_label(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,64}", value):
            raise ValueError("a shop id is 1-64 of A-Z a-z 0-9 _ . : @ -")
        return value

    @field_validator("webhook_trusted_proxies", "zendesk_automation_author_ids", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) \
            else value

    @field_validator("webhook_trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        try:   # normalised: "10.0.0.1" -> "10.0.0.1/32"
            return [str(ipaddress.ip_network(p, strict=False)) for p in value]
        except ValueError as exc:
            raise ValueError(f"not an IP address or network: {exc}") from None

    @field_validator("kafka_sasl_password_file", "kafka_ssl_cafile", "kafka_ssl_certfile",
                     "kafka_ssl_keyfile")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_file(str(value))   # a missing or unreadable file fails at start-up
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        """Combinations of the Kafka security variables that cannot work, as one line."""
        protocol = self.kafka_security_protocol
        given = f"with CS_PULSE_KAFKA_SECURITY_PROTOCOL={protocol}"
        if protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(f"CS_PULSE_KAFKA_SASL_USERNAME: required {given}")
            has_password = bool(self.kafka_sasl_password.get_secret_value())
            if has_password == (self.kafka_sasl_password_file is not None):
                raise ValueError(
                    "CS_PULSE_KAFKA_SASL_PASSWORD or CS_PULSE_KAFKA_SASL_PASSWORD_FILE: "
                    f"{'one only' if has_password else 'one is required'} {given}")
            if self.kafka_sasl_password_file is not None and not self.kafka_sasl_password_value:
                raise ValueError("CS_PULSE_KAFKA_SASL_PASSWORD_FILE: the file is empty")
        else:
            sasl = {"kafka_sasl_username": self.kafka_sasl_username,
                    "kafka_sasl_password": self.kafka_sasl_password.get_secret_value(),
                    "kafka_sasl_password_file": self.kafka_sasl_password_file}
            stray = next((name for name, v in sasl.items() if v), None)
            if stray:
                raise ValueError(f"{env_name(stray)}: only used with CS_PULSE_KAFKA_SECURITY_"
                                 f"PROTOCOL=SASL_PLAINTEXT or SASL_SSL (is {protocol})")
        if not protocol.endswith("SSL"):
            tls = {"kafka_ssl_cafile": self.kafka_ssl_cafile,
                   "kafka_ssl_certfile": self.kafka_ssl_certfile,
                   "kafka_ssl_keyfile": self.kafka_ssl_keyfile,
                   "kafka_ssl_key_password": self.kafka_ssl_key_password.get_secret_value()}
            stray = next((name for name, v in tls.items() if v), None)
            if stray:
                raise ValueError(f"{env_name(stray)}: only used with CS_PULSE_KAFKA_SECURITY_"
                                 f"PROTOCOL=SSL or SASL_SSL (is {protocol})")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("CS_PULSE_KAFKA_SSL_KEYFILE: needs CS_PULSE_KAFKA_SSL_CERTFILE "
                             "(the client certificate)")
        return self

    @property
    def kafka_sasl_password_value(self) -> str:
        """The SASL password: ``kafka_sasl_password``, or the file's content read now (a
        rotated Kubernetes secret is picked up by the next client), without the final
        newline."""
        if self.kafka_sasl_password_file is not None:
            return _read_file(str(self.kafka_sasl_password_file)).rstrip("\r\n")
        return self.kafka_sasl_password.get_secret_value()

    @property
    def calendars(self) -> Calendars:
        """The shop calendars built from ``shops`` (once per Settings)."""
        memo = self._memo
        if memo.calendars is None or memo.shops is not self.shops:
            memo.calendars, memo.shops = Calendars.from_config(self.shops), self.shops
        return memo.calendars

    @property
    def label_limits(self) -> dict[str, int]:
        return {"shop": self.max_shops, "queue": self.max_queues, "team": self.max_teams,
                "agent": self.max_agents, "channel": self.max_channels}

    @property
    def broker_url(self) -> str:
        return self.broker if "://" in self.broker else f"kafka://{self.broker}"

    @property
    def bootstrap(self) -> str:
        return self.broker.split("://", 1)[-1]


def env_name(field: str) -> str:
    """The environment variable of a ``Settings`` field (or of an alias already naming one)."""
    if field.upper().startswith(ENV_PREFIX):
        return field.upper()
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return ENV_PREFIX + field.upper()


def describe(error: ValidationError) -> str:
    """One line for a ``Settings`` validation error: ``CS_PULSE_X: message (got 'value')``,
    several joined by "; "."""
    parts = []
    for e in error.errors(include_url=False):
        loc = e.get("loc", ())
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if not loc and msg.startswith(ENV_PREFIX):   # a combination, naming its variables
            parts.append(msg)
            continue
        name = env_name(str(loc[0])) if loc else "configuration"
        name += "".join(f"[{p!r}]" for p in loc[1:])
        value = e.get("input")
        secret = bool(loc) and any(w in str(loc[0]).lower() for w in ("secret", "password"))
        if isinstance(value, str | int | float) and not secret and e.get("type") != "value_error":
            shown = repr(value)
            msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        parts.append(f"{name}: {msg}")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """``Settings(**overrides)`` from the environment; a bad value raises ``ConfigError`` with
    one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
