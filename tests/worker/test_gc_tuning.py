"""The worker's garbage-collector tuning (``worker.app.tune_gc``; README "Performance")."""

from __future__ import annotations

import gc

import pytest

from cs_pulse.settings import Settings
from cs_pulse.worker.app import GC_THRESHOLDS, tune_gc


def test_tune_gc_collects_young_objects_less_often_and_freezes_what_exists() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 50 * before[0]
        assert gc.get_freeze_count() > 10_000   # the modules loaded so far
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_gc_tuning_is_on_by_default_and_off_with_its_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CS_PULSE_GC_TUNING", raising=False)
    assert Settings().gc_tuning
    monkeypatch.setenv("CS_PULSE_GC_TUNING", "false")
    assert not Settings().gc_tuning
