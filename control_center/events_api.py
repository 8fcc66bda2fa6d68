"""``/ws`` and ``/events`` on the control center: security and admin events.

Logins, failed logins, user, policy and webhook changes, for those allowed to
read the audit log.
"""

from __future__ import annotations

from control_center.events import VOCABULARY
from shared.events.streams import StreamConfig, stream_api

CONFIG = StreamConfig(VOCABULARY, resource="audit", action="read")

api = stream_api(CONFIG)
