"""Fixtures of the console's end-to-end journeys: one ``provisioning up`` and one
Chromium per module, and the admin's signed-in page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers.browser import (
    CHROMIUM,
    ConsoleWatch,
    Enrolment,
    Product,
    first_sign_in,
    launch_chromium,
    screenshot_dirs,
    start_product,
    stop_product,
)

# Short enough that a journey sees its access token expire and be refreshed silently.
ACCESS_TOKEN_TTL_S = 12


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    p = start_product(tmp_path_factory.mktemp("console"), access_token_ttl_s=str(ACCESS_TOKEN_TTL_S))
    yield p
    stop_product(p)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return screenshot_dirs(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture(scope="module")
def watch() -> ConsoleWatch:
    return ConsoleWatch()


@dataclass
class Admin:
    page: Page
    enrolment: Enrolment


@pytest.fixture(scope="module")
def admin(chromium: Browser, product: Product, shots: list[Path], watch: ConsoleWatch) -> Iterator[Admin]:
    """The admin's page at 1280 by 800, signed in through the first sign-in journey."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch.attach(page)
    yield Admin(page, first_sign_in(page, product, shots))
    context.close()
