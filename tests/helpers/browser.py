"""The console end to end: a real ``provisioning up`` on a fresh data directory and a
real headless Chromium (Debian's ``chromium``, never a downloaded browser) driven by
Playwright.

``start_product`` runs ``python -m provisioning up`` as a subprocess on free ports and
waits until both services answer; ``launch_chromium`` starts the browser with the flags
CI uses. ``ConsoleWatch`` records what a page did (responses, Content-Security-Policy
violations, uncaught errors) so a journey can assert on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Response

HOST = "127.0.0.1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "console-e2e-first-boot-secret"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# Where the README's screenshots are refreshed from: set it to docs/screenshots.
SCREENSHOTS_ENV = "PROVISIONING_CONSOLE_SCREENSHOTS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Product:
    """A running ``provisioning up``."""

    url: str
    orchestrator_url: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_product(base: Path, **settings: str) -> Product:
    """``provisioning up`` on a fresh data directory under ``base``; ``settings`` are
    ``PROVISIONING_*`` variables without the prefix (``access_token_ttl_s="10"``)."""
    cc_port, orch_port = free_port(), free_port()
    data_dir = base / "data"
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_DATA_DIR": str(data_dir),
            "PROVISIONING_DB_URL": "mem://",
            "PROVISIONING_HOST": HOST,
            "PROVISIONING_CONTROL_CENTER_PORT": str(cc_port),
            "PROVISIONING_ORCHESTRATOR_PORT": str(orch_port),
            "PROVISIONING_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PROVISIONING_LOG_LEVEL": "WARNING",
            "PROVISIONING_ACCESS_LOG": "false",
            # A browser journey makes many requests from one address in a minute.
            "PROVISIONING_RATE_LIMIT_DEFAULT": "5000/minute",
            "PROVISIONING_RATE_LIMIT_AUTH": "100/minute",
            "PROVISIONING_RATE_LIMIT_REFRESH": "1000/minute",
            "PROVISIONING_RATE_LIMIT_BATCH": "200/minute",
            "PROVISIONING_WEBHOOKS_ALLOW_PRIVATE": "true",  # the test webhook is local
            "PROVISIONING_ARGON2_TIME_COST": "1",
            "PROVISIONING_ARGON2_MEMORY_KIB": "8",
            "PROVISIONING_ARGON2_PARALLELISM": "1",
        }
    )
    env.update({f"PROVISIONING_{k.upper()}": v for k, v in settings.items()})
    log = base / "provisioning-up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioning", "up"], env=env, stdout=out, stderr=out, cwd=base
        )
    product = Product(f"http://{HOST}:{cc_port}", f"http://{HOST}:{orch_port}", data_dir, log, proc, env)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"provisioning up exited with {proc.returncode}:\n{product.log_text()}")
        if _answers(product.url + "/health") and _answers(product.orchestrator_url + "/health"):
            return product
        time.sleep(0.2)
    stop_product(product)
    raise AssertionError(f"provisioning up did not start:\n{product.log_text()}")


def stop_product(product: Product) -> None:
    if product.proc.poll() is None:
        product.proc.send_signal(signal.SIGTERM)
        try:
            product.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            product.proc.kill()
            product.proc.wait()


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


TOKEN_ISSUERS = ("/auth/login", "/auth/refresh")  # the answers that carry a new access token


@dataclass
class ConsoleWatch:
    """What a page did: every response, CSP violations, uncaught errors, and when it was
    last given an access token."""

    responses: list[tuple[str, str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # id(page) → when that page last received an access token (seen after it was signed)
    token_seen_at: dict[int, float] = field(default_factory=dict)

    def attach(self, page: Page) -> None:
        page.on("response", lambda resp: self._response(page, resp))
        page.on("console", self._console)
        page.on("pageerror", lambda err: self.problems.append(f"uncaught: {err}"))

    def _response(self, page: Page, resp: Response) -> None:
        method, url, status = resp.request.method, resp.url, resp.status
        self.responses.append((method, url, status))
        if method == "POST" and status == 200 and url.split("?")[0].endswith(TOKEN_ISSUERS):
            self.token_seen_at[id(page)] = time.time()

    def _console(self, msg: ConsoleMessage) -> None:
        text = msg.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.problems.append(f"CSP: {text}")

    def count(self, method: str, path: str, status: int | None = None) -> int:
        return sum(
            1
            for m, url, st in self.responses
            if m == method and url.split("?")[0].endswith(path) and (status is None or st == status)
        )


def batch_file(name: str, *, latency_s: float | None = None) -> str:
    """An example batch as JSON text; ``latency_s`` slows its simulated operations so a
    browser can watch them run."""
    doc: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    if latency_s is not None:
        for op in doc["operations"]:
            op["simulate"] = {**op.get("simulate", {}), "latency_s": latency_s, "progress_steps": 3}
    return json.dumps(doc, indent=2)


def screenshot_dirs(tmp: Path) -> list[Path]:
    """Where screenshots go: a temporary directory, then the one named by
    ``PROVISIONING_CONSOLE_SCREENSHOTS`` (docs/screenshots refreshes the README's)."""
    dirs = [tmp]
    extra = os.environ.get(SCREENSHOTS_ENV)
    if extra:
        path = Path(extra) if Path(extra).is_absolute() else REPO / extra
        path.mkdir(parents=True, exist_ok=True)
        dirs.append(path)
    return dirs


def shoot(page: Page, dirs: list[Path], name: str, *, published: bool = False) -> Path:
    """Save a screenshot of the page in the temporary directory; a ``published`` one (the
    README's) also in the directory ``PROVISIONING_CONSOLE_SCREENSHOTS`` names."""
    first = dirs[0] / f"{name}.png"
    page.screenshot(path=str(first), full_page=False)
    for d in dirs[1:] if published else []:
        (d / f"{name}.png").write_bytes(first.read_bytes())
    return first


@dataclass
class Enrolment:
    """What the first sign-in showed: the TOTP secret and the backup codes (one spent)."""

    secret: str
    backup_codes: list[str]
    downloaded: str


def first_sign_in(page: Page, product: Product, dirs: list[Path]) -> Enrolment:
    """The admin's first sign-in on the console: password, MFA enrolment on the page (QR
    code, a pyotp code), the 10 backup codes with copy and download, then the sign-in
    with one of them. Asserts every step; ends on the dashboard."""
    import pyotp
    from playwright.sync_api import expect

    page.goto(product.url + "/")
    expect(page).to_have_url(product.url + "/signin")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    qr = page.get_by_role("img", name="QR code of the authenticator secret")
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    secret = page.locator("code.secret").inner_text().strip()
    shoot(page, dirs, "signin-mfa-enrolment")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Enable MFA").click()
    expect(page.get_by_role("heading", name="Your backup codes")).to_be_visible()
    codes = [c.strip() for c in page.locator(".backup-codes code").all_inner_texts()]
    assert len(codes) == 10 and len(set(codes)) == 10
    shoot(page, dirs, "signin-backup-codes")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download").click()
    downloaded = Path(dl.value.path()).read_text()
    page.get_by_role("button", name="I saved them: continue to sign in").click()
    # The TOTP code just used cannot be used again (its time step is spent): a backup code.
    expect(page.get_by_text("MFA is enabled")).to_be_visible()
    page.get_by_label("Authentication code").fill(codes[0])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return Enrolment(secret, codes, downloaded)
