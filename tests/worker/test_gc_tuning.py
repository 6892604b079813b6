"""The worker's garbage-collector tuning (``worker.app.tune_gc``; README "Performance")."""

from __future__ import annotations

import gc

from cs_pulse.settings import Settings
from cs_pulse.worker.app import GC_THRESHOLDS, tune_gc


def test_the_worker_tunes_its_gc_unless_told_not_to() -> None:
    assert Settings().gc_tuning   # CS_PULSE_GC_TUNING=false turns it off (test_settings_cli)


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
