"""The console's journeys in real headless Chromium against a real ``provisioning up``.

One product and one browser for the module; the tests run in file order and share the
admin's signed-in page (its first sign-in is the enrolment journey). Each journey saves a
screenshot (``PROVISIONING_CONSOLE_SCREENSHOTS=docs/screenshots`` refreshes the README's).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from shared.security.tokens import CLOCK_SKEW_S
from tests.console.conftest import ACCESS_TOKEN_TTL_S, Admin
from tests.helpers.browser import EXAMPLES, ConsoleWatch, Product, batch_file, shoot

VIEWER_PASSWORD = "viewer-e2e-password-1"
expect.set_options(timeout=30_000)


def expect_status(page: Page, op: str, status: str, timeout: float = 30_000) -> None:
    expect(page.locator(f'.dag-node[data-op="{op}"]')).to_have_attribute(
        "data-status", status, timeout=timeout
    )


def submit_text(page: Page, product: Product, text: str) -> str:
    """Paste a batch on the submit page, execute it, land on its live page; its id."""
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Batch file", exact=True).fill(text)
    page.get_by_role("button", name="Execute").click()
    expect(page).to_have_url(re.compile(re.escape(product.url) + r"/batches/[^/]+$"))
    return page.url.rsplit("/", 1)[1]


def test_first_sign_in_enrols_mfa_and_lands_on_the_dashboard(admin: Admin, shots: list[Path]) -> None:
    page = admin.page
    assert len(admin.enrolment.backup_codes) == 10
    assert admin.enrolment.downloaded.split() == admin.enrolment.backup_codes
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Users")).to_be_visible()
    expect(page.get_by_text("admin (admin)")).to_be_visible()
    # The access token is in memory only: nothing in storage, nothing in the URL.
    storage = page.evaluate("() => JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage)])")
    assert storage == "[[],[]]"
    assert "token" not in page.url
    cookies = page.context.cookies()
    refresh = [c for c in cookies if c["name"] == "provisioning_refresh"]
    assert refresh and refresh[0]["httpOnly"] and refresh[0]["sameSite"] == "Strict"
    shoot(page, shots, "signin-done")


def test_multi_cloud_batch_nodes_turn_completed_live(
    admin: Admin, product: Product, shots: list[Path]
) -> None:
    page = admin.page
    batch_id = submit_text(page, product, batch_file("multi_cloud_deployment.json", latency_s=3.0))
    page.evaluate("() => { window.__noReload = 1 }")
    expect(page.get_by_role("heading", name="multi_cloud_deployment")).to_be_visible()
    expect(page.locator(".live-live")).to_be_visible()
    # Seen running first, then completed, by the stream: the page is never reloaded.
    expect_status(page, "upcloud_servers", "Running")
    shoot(page, shots, "batch-dag", published=True)
    expect_status(page, "upcloud_servers", "Completed")
    expect_status(page, "aws_taskservs", "Running")
    expect_status(page, "aws_taskservs", "Completed")
    expect(page.locator(".page-head .badge")).to_have_text(re.compile("Completed"))
    assert page.evaluate("() => window.__noReload") == 1
    # Node details: provider, attempts, output, the command.
    node_el = page.locator('.dag-node[data-op="aws_taskservs"]')
    node_el.click()
    details = page.locator(".op-details")
    expect(details).to_contain_text("aws")
    expect(details.locator("dd").filter(has_text=re.compile(r"^1 of \d+$"))).to_have_count(1)
    expect(details).to_contain_text("Command")
    # not a command operation: no undo argv, the provider's own rollback undoes it
    expect(details).to_contain_text("the provider's rollback of taskserv_batch (aws)")
    page.get_by_role("tab", name="Journal").click()
    expect(page.locator("#panel-journal table")).to_contain_text("Completed")
    page.get_by_role("tab", name="Snapshots").click()
    expect(page.locator("#panel-snapshots li").first).to_be_visible()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Recent", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="multi_cloud_deployment").first).to_be_visible()
    expect(page.get_by_text("Recent audit events")).to_be_visible()
    shoot(page, shots, "dashboard", published=True)
    page.goto(f"{product.url}/batches/{batch_id}")  # kept for the rollback journey below
    expect_status(page, "aws_taskservs", "Completed")


def test_failing_batch_rolls_back_live(
    admin: Admin, product: Product, shots: list[Path], tmp_path: Path
) -> None:
    page = admin.page
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Upload a file").set_input_files(str(EXAMPLES / "failing_rollback.yaml"))
    expect(page.get_by_text("4 operations read.")).to_be_visible()
    page.get_by_role("button", name="Execute").click()
    expect(page.get_by_role("heading", name="failing_rollback")).to_be_visible()
    expect_status(page, "network", "RolledBack")
    expect_status(page, "app_servers", "RolledBack")
    expect_status(page, "monitoring", "Cancelled")
    expect(page.locator(".page-head .badge")).to_have_text(re.compile("Failed"))
    page.get_by_role("tab", name="Rollback").click()
    expect(page.locator("#panel-rollback")).to_contain_text("operations_executed")
    shoot(page, shots, "batch-rolled-back")


def test_a_command_operations_details_show_its_command_and_undo(
    admin: Admin, product: Product, shots: list[Path]
) -> None:
    page = admin.page
    submit_text(page, product, batch_file("local_commands.json"))
    expect_status(page, "verify", "Completed")
    page.locator('.dag-node[data-op="write_config"]').click()
    details = page.locator(".op-details")
    expect(details).to_contain_text("sh -c 'echo")
    expect(details).to_contain_text("rm -f example/site/config.txt")
    shoot(page, shots, "command-undo")
    page.locator('.dag-node[data-op="verify"]').click()
    expect(details).to_contain_text("ls -l example/site")
    expect(details).to_contain_text("no undo command: a rollback leaves it as it is")


def test_submit_shows_field_errors_and_the_cycle(admin: Admin, shots: list[Path]) -> None:
    page = admin.page
    page.get_by_role("link", name="Submit").click()
    bad = {
        "name": "bad",
        "operations": [
            {"id": "net", "type": "server_batch", "provider": "local"},
            {"id": "srv", "type": "server_batch", "provider": "local", "dependencies": ["ghost"]},
        ],
    }
    page.get_by_label("Batch file", exact=True).fill(json.dumps(bad))
    page.get_by_role("button", name="Validate and plan").click()
    problem = page.locator('.op-problems li[data-operation="srv"]')
    expect(problem).to_contain_text("dependencies")
    expect(problem).to_contain_text("unknown operation 'ghost'")
    expect(page.get_by_role("alert")).to_contain_text("ghost")

    cyclic = {
        "name": "cyclic",
        "operations": [
            {"id": "a", "type": "server_batch", "provider": "local", "dependencies": ["c"]},
            {"id": "b", "type": "server_batch", "provider": "local", "dependencies": ["a"]},
            {"id": "c", "type": "server_batch", "provider": "local", "dependencies": ["b"]},
        ],
    }
    page.get_by_label("Batch file", exact=True).fill(json.dumps(cyclic))
    page.get_by_role("button", name="Validate and plan").click()
    expect(page.locator(".notice")).to_contain_text("Dependency cycle: a → b → c → a")
    expect(page.locator(".dag-node.on-cycle")).to_have_count(3)
    expect(page.locator(".react-flow__edge.cycle-edge")).to_have_count(3)
    shoot(page, shots, "submit-cycle")

    # A valid one in check mode shows the plan: generations and what each would do.
    page.get_by_label("Batch file", exact=True).fill(batch_file("multi_cloud_deployment.json"))
    page.get_by_role("button", name="Validate and plan").click()
    expect(page.get_by_text("Generation 1: upcloud_servers")).to_be_visible()
    expect(page.get_by_text("Generation 2: aws_taskservs")).to_be_visible()


def test_cancel_a_running_batch(admin: Admin, product: Product, shots: list[Path]) -> None:
    page = admin.page
    submit_text(page, product, batch_file("multi_cloud_deployment.json", latency_s=20.0))
    expect_status(page, "upcloud_servers", "Running")
    page.get_by_role("button", name="Cancel batch").click()
    dialog = page.get_by_role("dialog", name="Cancel this batch?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel the batch").click()
    expect(page.locator(".page-head .badge")).to_have_text(re.compile("Cancelled"))
    expect_status(page, "upcloud_servers", "Cancelled")
    expect_status(page, "aws_taskservs", "Cancelled")
    shoot(page, shots, "batch-cancelled")


def test_rollback_of_selected_operations_with_its_confirmation(
    admin: Admin, product: Product, shots: list[Path]
) -> None:
    page = admin.page
    page.goto(product.url + "/batches?status=Completed")
    page.get_by_role("link", name="multi_cloud_deployment").first.click()
    expect_status(page, "aws_taskservs", "Completed")
    page.get_by_role("checkbox", name="roll back upcloud_servers").check()
    page.get_by_role("button", name="Roll back selected (1)").click()
    dialog = page.get_by_role("dialog", name="Roll back these operations?")
    # The dependent is undone first, then what was selected.
    expect(dialog.locator("ol li")).to_have_count(2)
    expect(dialog.locator("ol li").nth(0)).to_contain_text("aws_taskservs")
    expect(dialog.locator("ol li").nth(1)).to_contain_text("upcloud_servers")
    shoot(page, shots, "rollback-confirmation")
    dialog.get_by_role("button", name="Roll back 2 operations").click()
    expect_status(page, "aws_taskservs", "RolledBack")
    expect_status(page, "upcloud_servers", "RolledBack")
    expect(page.locator(".notice")).to_have_text("Rollback finished: 2 undone, 0 failed")


def test_a_viewer_sees_no_admin_pages_and_gets_the_403_message(
    admin: Admin, chromium: Browser, product: Product, shots: list[Path], watch: ConsoleWatch
) -> None:
    page = admin.page
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Password", exact=True).fill(VIEWER_PASSWORD)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator(".notice")).to_have_text("User vera created")

    # A phone-sized screen: usable, nothing wider than the screen.
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    try:
        viewer = context.new_page()
        watch.attach(viewer)
        viewer.goto(product.url + "/")
        viewer.get_by_label("Username").fill("vera")
        viewer.get_by_label("Password").fill(VIEWER_PASSWORD)
        viewer.get_by_role("button", name="Sign in").click()
        expect(viewer.get_by_role("heading", name="Dashboard")).to_be_visible()
        nav = viewer.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Batches")).to_be_visible()
        for hidden in ("Users", "Policies", "Audit", "Webhooks", "Submit"):
            expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
        assert viewer.evaluate("() => document.documentElement.scrollWidth") <= 390
        shoot(viewer, shots, "viewer-phone-dashboard")
        viewer.goto(product.url + "/admin/users")
        expect(viewer.get_by_role("alert")).to_contain_text(
            "permission denied: users:read is not granted to vera"
        )
        shoot(viewer, shots, "viewer-forbidden")
    finally:
        context.close()


def test_a_policy_edit_with_a_bad_rule_is_refused_with_the_error(admin: Admin, shots: list[Path]) -> None:
    page = admin.page
    page.get_by_role("link", name="Policies").click()
    page.get_by_role("button", name="default").click()
    rules_box = page.get_by_label("Rules (JSON)")
    rules = json.loads(rules_box.input_value())
    rules.append(
        {"effect": "Allow", "resource": "batch", "action": ["read"], "condition": "batch.environment < 'p'"}
    )
    rules_box.fill(json.dumps(rules, indent=2))
    page.get_by_role("button", name="Save policy").click()
    errors = page.get_by_role("list", name="problems in the rules")
    expect(errors).to_contain_text(f"rules.{len(rules) - 1}.condition")
    expect(errors).to_contain_text("batch.environment is null")
    expect(page.get_by_role("alert")).to_contain_text("Not saved")
    shoot(page, shots, "policy-refused")


def test_audit_and_webhook_pages(admin: Admin, shots: list[Path]) -> None:
    page = admin.page
    page.get_by_role("link", name="Audit").click()
    actions = page.locator("tbody summary")
    expect(actions.filter(has_text="auth.mfa_enable")).to_have_count(1)
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.get_by_text("The chain is intact")).to_be_visible()
    page.get_by_label("Action").fill("auth.login")
    page.get_by_role("button", name="Apply filters").click()
    expect(actions.filter(has_text="auth.mfa_enable")).to_have_count(0)
    expect(actions.filter(has_text="auth.login").first).to_be_visible()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV").click()
    exported = Path(dl.value.path()).read_text()
    assert exported.splitlines()[0].startswith("id,") and "auth.login" in exported
    shoot(page, shots, "audit")

    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    page.get_by_label("Events (comma-separated)").fill("batch.*")
    page.get_by_role("button", name="Create webhook").click()
    secret = page.locator(".secret-box code.secret")
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    page.get_by_role("button", name="I saved it").click()
    expect(page.locator(".secret-box")).to_have_count(0)
    page.get_by_role("button", name="Send a test").click()
    expect(page.locator(".notice")).to_contain_text("Test delivery queued")
    page.get_by_role("button", name="Deliveries").click()
    expect(page.get_by_role("cell", name="webhook.test")).to_be_visible()
    shoot(page, shots, "webhooks")


@pytest.mark.slow  # about 20 s on two idle cores: python3 -m pytest -m slow tests/console
@pytest.mark.timeout(240)
def test_a_5000_operation_batch_stays_usable(admin: Admin, product: Product) -> None:
    page = admin.page
    ops: list[dict[str, object]] = [{"id": "root", "type": "server_batch", "provider": "noop"}]
    ops += [
        {"id": f"op{i:04}", "type": "server_batch", "provider": "noop", "dependencies": ["root"]}
        for i in range(4999)
    ]
    submit_text(page, product, json.dumps({"name": "five_thousand", "parallel_limit": 50, "operations": ops}))
    expect(page.locator(".page-head .badge")).to_have_text(re.compile("Completed"), timeout=60_000)
    # One node per wide layer, with its counts, until expanded; the table pages by 200.
    layer = page.locator('.dag-layer[data-layer="1"]')
    expect(layer).to_contain_text("Layer 2: 4999 operations")
    expect(layer).to_contain_text("4999 Completed")
    expect(page.locator("table.ops tbody tr")).to_have_count(200)
    expect(page.get_by_role("button", name="Show 200 more of 4800")).to_be_visible()
    page.get_by_role("button", name="Show 100 of layer 2").click()
    expect(layer).to_contain_text("Layer 2: 4899 more operations")
    # Only what is in view is drawn: some of the 100, all Completed.
    drawn = page.locator('.dag-node[data-op^="op"]')
    expect(drawn.first).to_have_attribute("data-status", "Completed")
    assert drawn.count() <= 100


def test_an_expired_access_token_is_refreshed_silently(
    admin: Admin, product: Product, watch: ConsoleWatch
) -> None:
    page = admin.page
    page.get_by_role("link", name="Batches", exact=True).click()
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    # Wait until the token held in memory is expired, even with the clock skew the service
    # allows: counted from the last token the page was given (a refresh seen meanwhile moves
    # the end), not from now, so the journeys before it have already spent part of the wait.
    while (left := watch.token_seen_at[id(page)] + ACCESS_TOKEN_TTL_S + CLOCK_SKEW_S + 1 - time.time()) > 0:
        page.wait_for_timeout(left * 1000)  # answers seen during the wait are counted
    refreshes = watch.count("POST", "/auth/refresh", 200)
    page.get_by_role("link", name="Checkpoints").click()
    expect(page.get_by_role("heading", name="Checkpoints")).to_be_visible()
    expect(
        page.get_by_role("cell", name=re.compile("before batch multi_cloud_deployment")).first
    ).to_be_visible()
    assert watch.count("POST", "/auth/refresh", 200) > refreshes
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


def test_logout_ends_the_session(
    admin: Admin, product: Product, shots: list[Path], watch: ConsoleWatch
) -> None:
    page = admin.page
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(product.url + "/signin")
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert watch.count("POST", "/auth/logout", 200) == 1
    # The refresh cookie is gone: a reload does not restore the session.
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(page, shots, "signed-out")
    # No page broke the Content-Security-Policy or threw.
    assert watch.problems == []
