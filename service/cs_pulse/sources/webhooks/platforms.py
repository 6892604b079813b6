"""The chat platforms ``cs-pulse webhook`` can serve: one module each, one line here.

Each factory returns the platform configured by the settings, or None when it is not (its
secret is unset); the receiver serves ``POST /<name>`` for every one configured."""

from __future__ import annotations

from cs_pulse.sources.webhooks import chatwoot, intercom, zendesk
from cs_pulse.sources.webhooks.platform import PlatformFactory

PLATFORMS: tuple[PlatformFactory, ...] = (chatwoot.platform, intercom.platform,
                                           zendesk.platform)
