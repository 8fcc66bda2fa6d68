"""``/ws`` and ``/events`` on the control center: security and admin events.

Logins, failed logins, user, policy and webhook changes, for those allowed to
read the audit log.
"""

from __future__ import annotations

from shared.events.streams import CONTROL_CENTER_KINDS, StreamConfig, stream_api

CONFIG = StreamConfig(kinds=CONTROL_CENTER_KINDS, resource="audit", action="read")

api = stream_api(CONFIG)
