"""Prometheus, Alertmanager and a webhook sink for the tests: the devtools pieces the demo runs
too (``cs_pulse.devtools.promstack``)."""

from cs_pulse.devtools.promstack import REPO, Alertmanager, Prometheus, WebhookSink

__all__ = ["REPO", "Alertmanager", "Prometheus", "WebhookSink"]
