"""The Kafka security settings: their validation (one line naming the variable) and the one
mapping to aiokafka, Faust and librdkafka options (``kafka_client.py``). Against a real broker:
``tests/worker/test_kafka_security_kafka.py``."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from cs_pulse import cli
from cs_pulse.kafka_client import (
    aiokafka_kwargs,
    child_env,
    faust_credentials,
    librdkafka_config,
    ssl_context,
)
from cs_pulse.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CS_PULSE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate and key in one PEM file (a CA file and a client identity)."""
    folder = tmp_path_factory.mktemp("pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=t", "-keyout", "key.pem", "-out", "cert.pem"], cwd=folder,
                   check=True, capture_output=True)
    both = folder / "both.pem"
    both.write_text((folder / "key.pem").read_text() + (folder / "cert.pem").read_text())
    return both


def env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(f"CS_PULSE_KAFKA_{name}", value)


def refusal(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    env(monkeypatch, **variables)
    with pytest.raises(ConfigError) as error:
        load_settings()
    return str(error.value)


def test_plaintext_by_default() -> None:
    s = Settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("PLAINTEXT", "SCRAM-SHA-512")
    assert aiokafka_kwargs(s) == {"bootstrap_servers": "127.0.0.1:9092",
                                  "security_protocol": "PLAINTEXT"}
    assert aiokafka_kwargs("h:1") == {"bootstrap_servers": "h:1",
                                      "security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None and ssl_context(s) is None


def test_combinations_that_cannot_work_fail_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    assert refusal(monkeypatch, SECURITY_PROTOCOL="SASL_SSL") == (
        "CS_PULSE_KAFKA_SASL_USERNAME: required with CS_PULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL")
    assert refusal(monkeypatch, SASL_USERNAME="u") == (
        "CS_PULSE_KAFKA_SASL_PASSWORD or CS_PULSE_KAFKA_SASL_PASSWORD_FILE: one is required "
        "with CS_PULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert refusal(monkeypatch, SASL_PASSWORD="p", SASL_PASSWORD_FILE=str(empty)).startswith(
        "CS_PULSE_KAFKA_SASL_PASSWORD or CS_PULSE_KAFKA_SASL_PASSWORD_FILE: one only")
    monkeypatch.delenv("CS_PULSE_KAFKA_SASL_PASSWORD")
    assert refusal(monkeypatch) == "CS_PULSE_KAFKA_SASL_PASSWORD_FILE: the file is empty"
    assert refusal(monkeypatch, SASL_PASSWORD_FILE=str(tmp_path / "nope")).startswith(
        f"CS_PULSE_KAFKA_SASL_PASSWORD_FILE: cannot read {tmp_path / 'nope'}: ")
    assert refusal(monkeypatch, SASL_MECHANISM="GSSAPI").startswith(
        "CS_PULSE_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or")
    for name in list(os.environ):
        if name.startswith("CS_PULSE_KAFKA_"):
            monkeypatch.delenv(name)
    assert refusal(monkeypatch, SSL_CAFILE=str(empty)) == (
        "CS_PULSE_KAFKA_SSL_CAFILE: only used with CS_PULSE_KAFKA_SECURITY_PROTOCOL=SSL or "
        "SASL_SSL (is PLAINTEXT)")
    assert refusal(monkeypatch, SECURITY_PROTOCOL="SSL", SSL_KEYFILE=str(empty)).startswith(
        "CS_PULSE_KAFKA_SSL_KEYFILE: needs CS_PULSE_KAFKA_SSL_CERTFILE")


def test_a_secret_never_appears_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, SASL_PASSWORD="hunter2")
    assert "hunter2" not in message and message.startswith("CS_PULSE_KAFKA_SASL_PASSWORD: ")


def test_the_cli_prints_one_line_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    env(monkeypatch, SECURITY_PROTOCOL="SASL_SSL", SASL_PASSWORD="p")
    assert cli.main(["worker"]) == 2
    assert capsys.readouterr().err == (
        "Error: CS_PULSE_KAFKA_SASL_USERNAME: required with "
        "CS_PULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n")


def test_sasl_ssl_with_scram_maps_to_every_client(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path, pem: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")   # as a Kubernetes secret file, newline included
    env(monkeypatch, SECURITY_PROTOCOL="SASL_SSL", SASL_USERNAME="svc",
        SASL_PASSWORD_FILE=str(password), SSL_CAFILE=str(pem))
    monkeypatch.setenv("CS_PULSE_BROKER", "k1:9093,k2:9093")
    s = Settings()
    kwargs = aiokafka_kwargs(s)
    context = kwargs.pop("ssl_context")
    assert kwargs == {"bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "SASL_SSL",
                      "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc",
                      "sasl_plain_password": "s3cret"}
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED and ssl_context(s) is context
    credentials = faust_credentials(s)
    assert (credentials.protocol.value, credentials.mechanism.value) == (
        "SASL_SSL", "SCRAM-SHA-512")
    assert (credentials.username, credentials.password) == ("svc", "s3cret")
    assert credentials.ssl_context is context
    assert librdkafka_config(s) == {
        "bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": "s3cret",
        "ssl.ca.location": str(pem)}
    # A child process (bench, demo) gets the same connection, whatever its parent's variables.
    monkeypatch.setattr(os, "environ", {**os.environ, **child_env(s)})
    assert Settings() == s


def test_mtls_presents_the_client_certificate(monkeypatch: pytest.MonkeyPatch,
                                              pem: Path) -> None:
    env(monkeypatch, SECURITY_PROTOCOL="SSL", SSL_CAFILE=str(pem), SSL_CERTFILE=str(pem))
    s = Settings()
    credentials = faust_credentials(s)
    assert credentials.protocol.value == "SSL" and credentials.context is ssl_context(s)
    assert aiokafka_kwargs(s)["security_protocol"] == "SSL"
    assert librdkafka_config(s)["ssl.key.location"] == str(pem)


def test_a_file_that_is_no_certificate_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path, pem: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    env(monkeypatch, SECURITY_PROTOCOL="SSL", SSL_CAFILE=str(pem), SSL_CERTFILE=str(junk))
    with pytest.raises(ConfigError, match=r"^CS_PULSE_KAFKA_SSL_CERTFILE/KEYFILE/KEY_PASSWORD"):
        aiokafka_kwargs(Settings())


def test_the_worker_refuses_an_unreachable_broker_in_bounded_time() -> None:
    """Nothing listens: one line and EX_UNAVAILABLE after CS_PULSE_KAFKA_CONNECT_TIMEOUT,
    not Faust's endless retries."""
    from cs_pulse.devtools.embedded_kafka import free_port

    port = free_port()
    variables = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                 "CS_PULSE_BROKER": f"127.0.0.1:{port}", "CS_PULSE_KAFKA_CONNECT_TIMEOUT": "2"}
    done = subprocess.run([sys.executable, "-m", "cs_pulse.cli", "worker"], env=variables,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 69
    assert done.stderr.splitlines() == [
        f"Error: cannot connect to Kafka at 127.0.0.1:{port} within 2 s: connection refused "
        "(check CS_PULSE_BROKER)"]
