"""Configuration and the command line: one validated ``Settings`` read from ``CS_PULSE_*``, a bad
value named in one line (exit 2), nothing else reading the environment, the event schemas as
package data, and the click CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from cs_pulse import cli
from cs_pulse.settings import (
    ConfigError,
    Settings,
    describe,
    env_name,
    forbidden_phrases_config,
    load_settings,
    shops_config,
)

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service" / "cs_pulse"
COMMANDS = ("worker", "simulate", "replay", "demo", "staffing", "webhook", "audit", "sink",
            "scorecard", "attendance", "kafka")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CS_PULSE_* of the caller's shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("CS_PULSE_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_documented_ones() -> None:
    s = Settings()
    assert (s.broker, s.app_id, s.partitions, s.metrics_host, s.metrics_port) == (
        "127.0.0.1:9092", "cs-pulse", 8, "0.0.0.0", 9464)
    assert (s.events_topic, s.dlq_topic, s.facts_topic, s.customers_topic) == (
        "cs.events", "cs.events.dlq", "cs.facts", "cs.customers")
    assert (s.grace_seconds, s.batch_size, s.session_timeout) == (
        5.0, 2000, 30.0)
    assert (s.data_dir, s.shops, s.forbidden_phrases) == ("/tmp/cs-pulse", {}, [])
    assert (s.chatwoot_secret.get_secret_value(), s.chatwoot_shop) == ("", "chatwoot")
    assert (s.webhook_host, s.webhook_port, s.loglevel) == ("0.0.0.0", 8088, "warn")
    assert (s.history_dir, s.history_days) == (Path("history"), 400)
    assert s.cache == Path.home() / ".cache" / "cs-pulse"
    assert (s.broker_url, s.bootstrap) == ("kafka://127.0.0.1:9092", "127.0.0.1:9092")
    assert s.calendars.for_shop("any").tz == "Asia/Shanghai"


def test_every_variable_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("# comment\n不知道\n\n你自己看\n", encoding="utf-8")
    env = {
        "BROKER": "kafka://k:9093", "APP_ID": "a", "EVENTS_TOPIC": "e", "DLQ_TOPIC": "d",
        "FACTS_TOPIC": "f", "CUSTOMERS_TOPIC": "c", "PARTITIONS": "3", "METRICS_HOST": "h",
        "METRICS_PORT": "9000", "GRACE_SECONDS": "2.5", "BATCH_SIZE": "10",
        "SESSION_TIMEOUT": "6", "DATA_DIR": "/d", "LOGLEVEL": "info", "EVENT_LOOP": "asyncio",
        "SHOPS": '{"default": {"tz": "Europe/Paris"}}', "FORBIDDEN_PHRASES": str(phrases),
        "CHATWOOT_SECRET": "s3cret", "CHATWOOT_SHOP": "cw", "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": "8089", "HISTORY_DIR": "/h", "HISTORY_DAYS": "30", "CACHE": "/c",
    }
    # Kafka security; KAFKA_SASL_PASSWORD (exclusive with its _FILE) in test_kafka_client.py
    (tmp_path / "pw").write_text("kafka-pw\n")
    env |= {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw"),
            "KAFKA_SSL_CAFILE": str(phrases), "KAFKA_SSL_CERTFILE": str(phrases),
            "KAFKA_SSL_KEYFILE": str(phrases), "KAFKA_SSL_KEY_PASSWORD": "kp",
            "KAFKA_CONNECT_TIMEOUT": "5"}
    # The webhook's limits (README "Webhook limits")
    env |= {"WEBHOOK_FRESHNESS_SECONDS": "60", "WEBHOOK_MAX_BODY_BYTES": "4096",
            "WEBHOOK_RATE": "2.5", "WEBHOOK_RATE_BURST": "7", "WEBHOOK_RATE_CLIENTS": "9",
            "WEBHOOK_READ_TIMEOUT": "1.5", "WEBHOOK_MAX_IN_FLIGHT": "3",
            "WEBHOOK_REPLAY_CAPACITY": "11", "WEBHOOK_TRUSTED_PROXIES": "10.0.0.0/8,::1"}
    # The chat platforms and the spool (README "Chat platforms")
    env |= {"CHATWOOT_URL_TOKEN": "tok", "CHATWOOT_AUTO_RESOLVE_MINUTES": "1440",
            "INTERCOM_CLIENT_SECRET": "ic", "INTERCOM_SHOP": "ics",
            "WEBHOOK_SPOOL_DIR": "/spool", "WEBHOOK_SPOOL_MAX_BYTES": "2048",
            "WEBHOOK_SPOOL_FSYNC": "false", "ZENDESK_WEBHOOK_SECRET": "zd",
            "ZENDESK_SHOP": "zds", "ZENDESK_AUTOMATION_AUTHOR_IDS": "111, 222"}
    # Label limits (README "Limits"), the zombie-fencing test's switch, the GC tuning, the
    # changelog standby
    env |= {"MAX_SHOPS": "2", "MAX_QUEUES": "3", "MAX_TEAMS": "4", "MAX_AGENTS": "5",
            "MAX_CHANNELS": "6", "PAUSE_HOLDS_FLUSHES": "false", "GC_TUNING": "false",
            "WARM_STANDBY": "false", "LOCAL_COPY": "false"}
    for name, value in env.items():
        monkeypatch.setenv(f"CS_PULSE_{name}", value)
    s = Settings()
    assert (s.broker_url, s.bootstrap, s.app_id) == ("kafka://k:9093", "k:9093", "a")
    assert (s.events_topic, s.dlq_topic, s.facts_topic, s.customers_topic) == ("e", "d", "f", "c")
    assert (s.partitions, s.metrics_host, s.metrics_port) == (3, "h", 9000)
    assert (s.grace_seconds, s.batch_size, s.session_timeout) == (
        2.5, 10, 6.0)
    assert (s.data_dir, s.loglevel, s.event_loop) == ("/d", "info", "asyncio")
    assert s.calendars.for_shop("x").tz == "Europe/Paris"
    assert s.forbidden_phrases == ["不知道", "你自己看"]
    assert s.chatwoot_secret.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    assert (s.chatwoot_shop, s.webhook_host, s.webhook_port) == ("cw", "127.0.0.1", 8089)
    assert (s.history_dir, s.history_days, s.cache) == (Path("/h"), 30, Path("/c"))
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism, s.kafka_sasl_username) == (
        "SASL_SSL", "PLAIN", "u")
    assert s.kafka_sasl_password_value == "kafka-pw" and "kafka-pw" not in repr(s)
    assert s.kafka_ssl_cafile == s.kafka_ssl_certfile == s.kafka_ssl_keyfile == phrases
    assert (s.kafka_ssl_key_password.get_secret_value(), s.kafka_connect_timeout) == ("kp", 5.0)
    assert (s.webhook_freshness_seconds, s.webhook_max_body_bytes, s.webhook_rate,
            s.webhook_rate_burst, s.webhook_rate_clients, s.webhook_read_timeout,
            s.webhook_max_in_flight, s.webhook_replay_capacity, s.webhook_trusted_proxies) == (
        60.0, 4096, 2.5, 7, 9, 1.5, 3, 11, ["10.0.0.0/8", "::1/128"])
    assert (s.chatwoot_url_token.get_secret_value(), s.chatwoot_auto_resolve_minutes) == (
        "tok", 1440.0)
    assert (s.intercom_client_secret.get_secret_value(), s.intercom_shop) == ("ic", "ics")
    assert (s.webhook_spool_dir, s.webhook_spool_max_bytes, s.webhook_spool_fsync) == (
        Path("/spool"), 2048, False)
    assert (s.zendesk_webhook_secret.get_secret_value(), s.zendesk_shop,
            s.zendesk_automation_author_ids) == ("zd", "zds", ["111", "222"])
    assert s.label_limits == {"shop": 2, "queue": 3, "team": 4, "agent": 5, "channel": 6}
    assert s.pause_holds_flushes is False and s.gc_tuning is False and s.warm_standby is False
    assert s.local_copy is False
    # Every field has its variable: nothing is configurable only in code.
    assert {env_name(f) for f in Settings.model_fields} == {
        f"CS_PULSE_{n}" for n in [*env, "KAFKA_SASL_PASSWORD"]}


def test_the_readme_configuration_table_names_only_settings_variables() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(CS_PULSE_[A-Z_0-9]+)`", section))
    assert documented
    assert documented <= {env_name(f) for f in Settings.model_fields}


def test_shops_and_phrases_keep_their_formats(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    shops = tmp_path / "shops.json"
    shops.write_text(json.dumps({"shops": {"s1": {"tz": "UTC"}}}))
    monkeypatch.setenv("CS_PULSE_SHOPS", str(shops))
    monkeypatch.setenv("CS_PULSE_FORBIDDEN_PHRASES", '["a", "b"]')
    s = Settings()
    assert s.shops == shops_config(str(shops)) == {"shops": {"s1": {"tz": "UTC"}}}
    assert s.calendars.for_shop("s1").tz == "UTC"
    assert forbidden_phrases_config() == ["a", "b"] == s.forbidden_phrases
    assert shops_config("") == {} and forbidden_phrases_config("") == []


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PARTITIONS", "SHOPS", "FORBIDDEN_PHRASES"):
        monkeypatch.setenv(f"CS_PULSE_{name}", "")
    s = Settings()
    assert (s.partitions, s.shops, s.forbidden_phrases) == (8, {}, [])


def test_keyword_construction_copies_and_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_PULSE_PARTITIONS", "5")
    s = Settings(partitions=4, grace_seconds=0, shops={"default": {"tz": "UTC"}})
    assert (s.partitions, s.grace_seconds) == (4, 0.0)
    assert Settings().partitions == 5
    copy = s.model_copy(update={"shops": {}})
    assert copy.calendars.for_shop("x").tz == "Asia/Shanghai"
    assert s.calendars.for_shop("x").tz == "UTC"
    with pytest.raises(ValidationError):
        s.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(("name", "value", "line"), [
    ("PARTITIONS", "eight", "CS_PULSE_PARTITIONS: Input should be a valid integer, unable to "
                            "parse string as an integer (got 'eight')"),
    ("PARTITIONS", "0", "CS_PULSE_PARTITIONS: Input should be greater than or equal to 1 "
                        "(got '0')"),
    ("GRACE_SECONDS", "-1", "CS_PULSE_GRACE_SECONDS: Input should be greater than or equal to 0 "
                            "(got '-1')"),
    ("SHOPS", "/no/such/shops.json",
     "CS_PULSE_SHOPS: cannot read /no/such/shops.json: No such file or directory"),
    ("SHOPS", '{"shops": ', "CS_PULSE_SHOPS: not valid JSON: Expecting value: line 1 column 11 "
                            "(char 10)"),
    ("SHOPS", '{"default": {"opening": [["Mon-Fri", "9h", "18:00"]]}}',
     "CS_PULSE_SHOPS: invalid shop calendar: ValueError: not enough values to unpack "
     "(expected 2, got 1)"),
    ("FORBIDDEN_PHRASES", "/no/such/file",
     "CS_PULSE_FORBIDDEN_PHRASES: cannot read /no/such/file: No such file or directory"),
])
def test_a_bad_value_names_the_variable_in_one_line(monkeypatch: pytest.MonkeyPatch, name: str,
                                                    value: str, line: str) -> None:
    monkeypatch.setenv(f"CS_PULSE_{name}", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == line
    with pytest.raises(ValidationError) as raw:
        Settings()
    assert describe(raw.value) == line


def test_several_bad_values_share_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_PULSE_METRICS_PORT", "http")
    monkeypatch.setenv("CS_PULSE_GRACE_SECONDS", "-1")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).count("\n") == 0
    assert str(err.value).startswith("CS_PULSE_METRICS_PORT: ")
    assert "; CS_PULSE_GRACE_SECONDS: Input should be greater than or equal to 0" in str(err.value)


def test_the_cli_prints_the_line_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CS_PULSE_PARTITIONS", "eight")
    result = CliRunner().invoke(cli.cli, ["sink"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: CS_PULSE_PARTITIONS: Input should be a valid integer, "
                             "unable to parse string as an integer (got 'eight')\n")
    assert result.stdout == ""
    assert cli.main(["audit", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: CS_PULSE_PARTITIONS: ") and err.count("\n") == 1
    # Help and commands that need no configuration still work.
    assert cli.main(["sink", "--help"]) == 0
    assert cli.main(["staffing", "--arrivals", "100", "--aht", "180"]) == 0
    assert "recommendation:" in capsys.readouterr().out


def test_the_installed_command_exits_2_without_a_traceback() -> None:
    env = {"CS_PULSE_PARTITIONS": "eight", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "cs_pulse.cli", "worker"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: CS_PULSE_PARTITIONS: Input should be a valid integer, unable to parse string "
        "as an integer (got 'eight')"]


def test_the_webhook_needs_a_platform(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["webhook"]) == 2
    assert capsys.readouterr().err == (
        "Error: cs-pulse webhook: no platform configured (set CS_PULSE_CHATWOOT_SECRET, "
        "CS_PULSE_INTERCOM_CLIENT_SECRET or CS_PULSE_ZENDESK_WEBHOOK_SECRET; see README: Chat "
        "platforms)\n")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^  (\w+)\s", out.split("Commands:", 1)[1], flags=re.M)
    assert sorted(listed) == sorted(COMMANDS)
    (script,) = entry_points(group="console_scripts", name="cs-pulse")
    assert script.value == "cs_pulse.cli:main"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["nope"]) == 2
    assert cli.main(["scorecard"]) == 2
    assert "Missing option '--month'" in capsys.readouterr().err
    assert cli.main(["simulate", "--start", "yesterday"]) == 2
    assert "Invalid value for --start" in capsys.readouterr().err
    assert cli.main(["attendance", "--from", "2023-11", "--to", "2023-11-30"]) == 2


def test_commands_keep_their_options(capsys: pytest.CaptureFixture[str]) -> None:
    options = {
        "worker": ["--loglevel"],
        "simulate": ["--seed", "--speed", "--duration", "--rate", "--shops", "--agents",
                     "--start"],
        "replay": ["--format", "--speedup", "--limit", "--keep-time"],
        "demo": ["--duration", "--speed"],
        "staffing": ["--arrivals", "--interval", "--aht", "--target", "--within",
                     "--concurrency", "--patience"],
        "webhook": ["--port"],
        "audit": ["--format", "--url", "--at", "--tolerance", "--wait", "--no-pipeline",
                  "--limit"],
        "sink": ["--dir", "--keep-days", "--idle-exit"],
        "scorecard": ["--month", "--team", "--rules", "--soft", "--output", "--history",
                      "--file", "--format"],
        "attendance": ["--from", "--to", "--day", "--history", "--file", "--format"],
        "kafka": ["--port"],
    }
    for command, names in options.items():
        assert cli.main([command, "--help"]) == 0
        out = capsys.readouterr().out
        for name in names:
            assert re.search(rf"^\s+{name}\b", out, flags=re.M), (command, name)


def test_staffing_table_takes_explicit_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    from cs_pulse.reports.staffing_table import print_table, table

    print_table(100, 1800, 180, 0.8, 20)
    assert capsys.readouterr().out == table(100, 1800, 180, 0.8, 20) + "\n"


ENV_READ = re.compile(r"\bos\.environ\b|\bgetenv\b|\bputenv\b|\bfrom os import\b.*\benviron\b")


def test_nothing_but_settings_reads_the_environment() -> None:
    """Only ``settings.py`` reads ``CS_PULSE_*``; a development tool may copy the environment
    for a child process, on a line marked ``# env-ok: <why>``."""
    offenders = []
    for path in sorted(SERVICE.rglob("*.py")):
        rel = path.relative_to(SERVICE).as_posix()
        if rel == "settings.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not ENV_READ.search(line):
                continue
            if rel.startswith("devtools/") and re.search(r"# env-ok: \S", line):
                continue
            offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []


def test_schemas_are_package_data() -> None:
    from cs_pulse.ingest.decode import Decoder, Rejected, schema_files

    packaged = resources.files("cs_pulse") / "schemas"
    top = sorted((ROOT / "schemas").glob("*.v1.json"))
    assert top and [f.name for f in schema_files()] == [p.name for p in top]
    for p in top:
        assert (packaged / p.name).read_bytes() == p.read_bytes()
    example = json.loads(top[0].read_bytes())["examples"][0]
    decoded = Decoder(now=lambda: example["ts"] / 1000).decode(json.dumps(example).encode())
    assert not isinstance(decoded, Rejected), decoded
