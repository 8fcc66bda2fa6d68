"""API7 server-side request forgery: a webhook target is the only URL the product fetches.

Webhook URLs are refused (422 naming ``url``) when they point at this machine,
a private or link-local network, a cloud metadata address, or use another
scheme; every written form of an address is caught, and the check runs again
at every send (tests/shared/webhooks/test_webhooks.py covers a name that turns private
after it was registered).
"""

from __future__ import annotations

import pytest

from tests.helpers.services import Services, bearer

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",  # short form
    "http://2130706433/hook",  # decimal
    "http://0x7f000001/hook",  # hexadecimal
    "http://0177.0.0.1/hook",  # octal
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::ffff:7f00:1]/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fe80::1]/hook",  # link-local
    "http://[fd00::1]/hook",  # unique local
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://localhost:9080/users",
    "http://localhost./hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://example.com/hook",
    "https://admin:pw@example.com/hook",
    "http:///hook",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_internal_and_odd_targets_are_refused(services: Services, url: str) -> None:
    admin = await services.admin()
    resp = await services.cc.post("/webhooks", json={"url": url, "events": ["*"]}, headers=bearer(admin))
    doc = await resp.json()
    assert resp.status == 422, (url, doc)
    assert doc["details"]["fields"][0]["field"] == "url"
    # an update cannot move an accepted webhook to such a target either
    resp = await services.cc.post(
        "/webhooks", json={"url": "https://hooks.example.com/ok", "events": ["*"]}, headers=bearer(admin)
    )
    hook = (await resp.json())["data"]["id"]
    resp = await services.cc.put(f"/webhooks/{hook}", json={"url": url}, headers=bearer(admin))
    assert resp.status == 422, (url, await resp.text())
