"""``cs-pulse audit``: the comparison rules, and the command on a history file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cs_pulse.audit.compare import compared, differences, table
from cs_pulse.cli import main
from stories import generate


def test_absent_counts_are_zero_but_absent_ratios_are_a_difference() -> None:
    recomputed = compared([("cs_runs_total", {"outcome": "answered"}, 0.0),
                           ("cs_reply_rate_ratio", {"window": "5m"}, 1.0),
                           ("cs_handle_seconds_bucket", {"le": "30"}, 2.0)])
    live = compared([("cs_handle_seconds_bucket", {"le": "30.0"}, 2.0),
                     ("cs_waiting_conversations", {}, 0.0)])
    diffs = differences(recomputed, live)
    assert [(d.name, d.recomputed, d.live) for d in diffs] == [
        ("cs_reply_rate_ratio", 1.0, None)]
    assert "absent" in table(diffs)


def test_tolerance_is_relative_and_worker_only_metrics_are_not_compared() -> None:
    a = compared([("cs_first_response_seconds_sum", {}, 1e6),
                  ("cs_input_rewinds_total", {}, 3.0)])
    b = compared([("cs_first_response_seconds_sum", {}, 1e6 + 0.1)])
    assert differences(a, b, tolerance=1e-6) == []
    assert len(differences(a, b, tolerance=1e-9)) == 1


def write_jsonl(path: Path, seed: int) -> None:
    story = generate(seed, conversations=5, disorder=False)
    lines = [r[3] for r in story.records if r[3] and r[3].startswith(b'{"schema')]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_audit_of_a_history_file_against_the_engine(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "history.jsonl"
    write_jsonl(history, seed=7)
    assert main(["audit", str(history), "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    assert "numbers compared; 0 differ" in out


def test_audit_reports_a_difference_and_exits_non_zero(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    history = tmp_path / "history.jsonl"
    write_jsonl(history, seed=8)
    import cs_pulse.audit.run as run

    real = run.engine_samples

    def off_by_one(*args: object, **kwargs: object) -> list[tuple[str, dict[str, str], float]]:
        samples = real(*args, **kwargs)  # type: ignore[arg-type]
        return [(n, lab, v + 1 if n == "cs_conversations_total" else v)
                for n, lab, v in samples]

    monkeypatch.setattr(run, "engine_samples", off_by_one)
    assert main(["audit", str(history)]) == 1
    out = capsys.readouterr().out
    assert "cs_conversations_total" in out and "recomputed" in out
    assert orjson.loads(history.read_bytes().splitlines()[0])["schema_version"] == 1
