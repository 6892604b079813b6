"""The one mapping from ``Settings`` to Kafka client options (security included), and the
start-up connection check.

Every Kafka client of the project (the Faust app, the catch-up reader, topic admin, producers,
the audit and history readers, the bench) takes its options from here, so none builds
security options itself:

* ``aiokafka_kwargs(target)``: ``bootstrap_servers`` plus ``security_protocol``,
  ``ssl_context`` and ``sasl_*`` for an aiokafka producer, consumer or admin client;
* ``faust_credentials(settings)``: the same as Faust's ``broker_credentials``;
* ``check_connection(target)``: one connection and one metadata request before a long-running
  client starts, failing as ``KafkaAccessError`` (one line, an exit code) instead of the
  endless retries and tracebacks of Faust and aiokafka.

A target is a ``Settings`` or a bare ``host:port`` (plaintext: the embedded development
broker and the tests).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from cs_pulse.settings import ConfigError, Settings, env_name

KafkaTarget = Settings | str

EX_UNAVAILABLE = 69   # sysexits: the broker does not answer (restarting later may help)
EX_NOPERM = 77        # sysexits: refused: credentials or certificates (restarting will not)
EX_CONFIG = 78        # sysexits: the listener speaks another protocol (restarting will not)

_contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}


class KafkaAccessError(RuntimeError):
    """The brokers cannot be reached or refuse this client: one line, and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _settings(target: KafkaTarget) -> Settings:
    if isinstance(target, Settings):
        return target
    return Settings.model_construct(broker=target)   # plaintext, no other variable read


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise): the broker verified against
    ``kafka_ssl_cafile`` (the system's CAs if unset) and its host name, and the client
    certificate presented if configured. Built once per configuration; a bad PEM file is a
    ``ConfigError`` naming its variable."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    key_password = settings.kafka_ssl_key_password.get_secret_value() or None
    files = (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    cache_key = (*files, key_password)
    if cache_key not in _contexts:
        from aiokafka.helpers import create_ssl_context

        cafile, certfile, keyfile = (str(f) if f is not None else None for f in files)
        helpers_log = logging.getLogger("aiokafka.helpers")   # "Loading SSL CA from ...": a
        level = helpers_log.level                             # line on every command's stderr
        helpers_log.setLevel(logging.WARNING)
        try:
            context = create_ssl_context(cafile=cafile)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"CS_PULSE_KAFKA_SSL_CAFILE: not a PEM CA certificate ({exc})"
                              ) from None
        finally:
            helpers_log.setLevel(level)
        if certfile is not None:
            try:
                context.load_cert_chain(certfile, keyfile, key_password)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError("CS_PULSE_KAFKA_SSL_CERTFILE/KEYFILE/KEY_PASSWORD: cannot "
                                  f"load the client certificate and key ({exc})") from None
        _contexts[cache_key] = context
    return _contexts[cache_key]


def security_kwargs(target: KafkaTarget) -> dict[str, Any]:
    """``security_protocol``, ``ssl_context`` and the ``sasl_*`` options of an aiokafka
    client."""
    s = _settings(target)
    out: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    context = ssl_context(s)
    if context is not None:
        out["ssl_context"] = context
    if s.kafka_security_protocol.startswith("SASL_"):
        out.update(sasl_mechanism=s.kafka_sasl_mechanism,
                   sasl_plain_username=s.kafka_sasl_username,
                   sasl_plain_password=s.kafka_sasl_password_value)
    return out


def aiokafka_kwargs(target: KafkaTarget) -> dict[str, Any]:
    """``bootstrap_servers`` and the security options of an aiokafka producer, consumer or
    admin client: ``AIOKafkaConsumer(topic, **aiokafka_kwargs(settings), group_id=None)``."""
    return {"bootstrap_servers": _settings(target).bootstrap, **security_kwargs(target)}


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` (None for PLAINTEXT): ``SSLCredentials`` for SSL,
    ``SASLCredentials`` (PLAIN or SCRAM, with the TLS context for SASL_SSL) for SASL."""
    from faust.auth import SASLCredentials, SSLCredentials

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return SSLCredentials(context)
    return SASLCredentials(username=settings.kafka_sasl_username,
                           password=settings.kafka_sasl_password_value,
                           mechanism=settings.kafka_sasl_mechanism, ssl_context=context)


def child_env(target: KafkaTarget) -> dict[str, str]:
    """``CS_PULSE_BROKER`` and every ``CS_PULSE_KAFKA_*`` security variable (empty: unset) that
    give a child process (a worker started by the bench or the demo) this target's
    connection, whatever its parent's environment says."""
    s = _settings(target)
    values: dict[str, Any] = {
        "broker": s.broker, "kafka_security_protocol": s.kafka_security_protocol,
        "kafka_sasl_mechanism": s.kafka_sasl_mechanism,
        "kafka_sasl_username": s.kafka_sasl_username,
        "kafka_sasl_password": s.kafka_sasl_password.get_secret_value(),
        "kafka_sasl_password_file": s.kafka_sasl_password_file,
        "kafka_ssl_cafile": s.kafka_ssl_cafile, "kafka_ssl_certfile": s.kafka_ssl_certfile,
        "kafka_ssl_keyfile": s.kafka_ssl_keyfile,
        "kafka_ssl_key_password": s.kafka_ssl_key_password.get_secret_value(),
        "kafka_connect_timeout": s.kafka_connect_timeout}
    return {env_name(name): "" if value is None else str(value)
            for name, value in values.items()}


def librdkafka_config(target: KafkaTarget) -> dict[str, str]:
    """The same connection for a librdkafka client (the bench's quix-streams job runs in its
    own virtualenv: ``quixstreams.kafka.configuration.ConnectionConfig.from_librdkafka_dict``).
    librdkafka verifies the broker's host name as aiokafka does."""
    s = _settings(target)
    protocol = s.kafka_security_protocol
    config = {"bootstrap.servers": s.bootstrap, "security.protocol": protocol.lower()}
    if protocol.startswith("SASL_"):
        config |= {"sasl.mechanism": s.kafka_sasl_mechanism,
                   "sasl.username": s.kafka_sasl_username,
                   "sasl.password": s.kafka_sasl_password_value}
    files = {"ssl.ca.location": s.kafka_ssl_cafile,
             "ssl.certificate.location": s.kafka_ssl_certfile,
             "ssl.key.location": s.kafka_ssl_keyfile or s.kafka_ssl_certfile}
    if protocol.endswith("SSL"):
        config |= {k: str(v) for k, v in files.items() if v is not None}
        if s.kafka_ssl_key_password.get_secret_value():
            config["ssl.key.password"] = s.kafka_ssl_key_password.get_secret_value()
    return config


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for server in bootstrap.split(","):
        server = server.strip().split("://", 1)[-1]
        host, _, port = server.rpartition(":")
        if not host:   # no port given
            host, port = server, "9092"
        out.append((host.strip("[]"), int(port)))
    return out


def _reason(exc: BaseException, settings: Settings) -> tuple[str, int]:
    """What went wrong, with the variables to check, and the exit code."""
    from aiokafka import errors

    while isinstance(exc, errors.KafkaConnectionError) and isinstance(
            exc.__cause__, BaseException):
        exc = exc.__cause__   # aiokafka wraps the SSL error of a handshake
    sasl = "check CS_PULSE_KAFKA_SASL_USERNAME/PASSWORD"
    if isinstance(exc, errors.SaslAuthenticationFailed | errors.AuthenticationFailedError):
        return f"SASL authentication failed ({sasl})", EX_NOPERM
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return (f"the broker does not accept SASL mechanism {settings.kafka_sasl_mechanism} "
                "(check CS_PULSE_KAFKA_SASL_MECHANISM)"), EX_NOPERM
    if isinstance(exc, errors.IllegalSaslStateError):
        return (f"the listener expects no SASL (check CS_PULSE_KAFKA_SECURITY_PROTOCOL="
                f"{settings.kafka_security_protocol})"), EX_CONFIG
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the broker's TLS certificate is not trusted: {exc.verify_message} "
                "(check CS_PULSE_KAFKA_SSL_CAFILE)"), EX_NOPERM
    if isinstance(exc, ssl.SSLError):
        what = exc.reason or str(exc)
        if "CERTIFICATE_REQUIRED" in what.upper() or "UNKNOWN_CA" in what.upper() or (
                "BAD_CERTIFICATE" in what.upper()):
            return (f"the broker refused the client certificate: {what} "
                    "(check CS_PULSE_KAFKA_SSL_CERTFILE/KEYFILE)"), EX_NOPERM
        return (f"TLS handshake failed: {what} (check CS_PULSE_KAFKA_SECURITY_PROTOCOL="
                f"{settings.kafka_security_protocol} and CS_PULSE_KAFKA_SSL_*)"), EX_NOPERM
    protocol = f"CS_PULSE_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
    if isinstance(exc, asyncio.IncompleteReadError):
        # The answer to the first request is not Kafka's: a TLS alert, or a SASL listener's.
        return (f"the broker answered in another protocol (check {protocol}: does the "
                "listener use TLS or SASL?)"), EX_CONFIG
    if isinstance(exc, ConnectionResetError) and settings.kafka_security_protocol.endswith(
            "SSL"):
        # A plaintext listener drops a TLS handshake (its first bytes as a huge request).
        return (f"the broker dropped the TLS handshake (check {protocol}: is the listener "
                "TLS?)"), EX_CONFIG
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (check CS_PULSE_BROKER)", EX_UNAVAILABLE
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"no answer (check CS_PULSE_BROKER and {protocol})", EX_UNAVAILABLE
    if isinstance(exc, errors.KafkaConnectionError | ConnectionError):
        return (f"the broker closed the connection{f' ({exc})' if str(exc) else ''} (check "
                f"CS_PULSE_BROKER and {protocol})"), EX_UNAVAILABLE
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} (check CS_PULSE_BROKER)", EX_UNAVAILABLE
    return f"{type(exc).__name__}: {exc}", EX_UNAVAILABLE


async def check_connection(target: KafkaTarget, timeout: float | None = None) -> None:
    """Connect (TLS, SASL) to a bootstrap broker and ask for metadata, within ``timeout``
    seconds (default ``kafka_connect_timeout``), or raise ``KafkaAccessError``. Refused
    credentials or certificates fail at once; an unreachable broker is retried until the
    timeout (a broker still starting)."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    settings = _settings(target)
    timeout = settings.kafka_connect_timeout if timeout is None else timeout
    options = security_kwargs(settings)
    deadline = time.monotonic() + timeout
    where = settings.bootstrap
    while True:
        reason, code = "no broker tried", EX_UNAVAILABLE
        for host, port in _hosts(settings.bootstrap):
            left = max(0.1, deadline - time.monotonic())
            conn = None
            try:
                conn = await asyncio.wait_for(create_conn(
                    host, port, request_timeout_ms=int(left * 1000), **options), left)
                await asyncio.wait_for(conn.send(MetadataRequest([])), left)
                return
            except Exception as exc:
                reason, code = _reason(exc, settings)
                where = f"{host}:{port}"
                if code != EX_UNAVAILABLE:   # retrying will not help
                    raise KafkaAccessError(f"cannot connect to Kafka at {where}: {reason}",
                                           code) from None
            finally:
                if conn is not None:
                    conn.close()
        if time.monotonic() + 1.0 > deadline:
            raise KafkaAccessError(f"cannot connect to Kafka at {where} within {timeout:g} s: "
                                   f"{reason}", code)
        await asyncio.sleep(1.0)


def require_connection(target: KafkaTarget, timeout: float | None = None) -> None:
    """``check_connection`` from synchronous code (the CLI, before a command starts)."""
    asyncio.run(check_connection(target, timeout))
