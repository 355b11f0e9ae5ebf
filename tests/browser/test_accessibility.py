"""Every page of the console, filled with data, audited by axe-core at 1280x800 and
390x844 (no serious or critical violation, nothing wider than the window), with a
screenshot of each in tests/artifacts/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import claimed, complete, pool, share_group, started
from tests.browser.conftest import ConsolePage

pytestmark = pytest.mark.sqlite_only


def test_every_page_passes_the_accessibility_audit_at_both_sizes(
    console: ConsolePage,
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: Callable[..., str],
    make_machine: Callable[..., tuple[str, str]],
) -> None:
    # A world worth looking at: a busy group with history, a shared user, an empty group.
    busy = pool(api, admin, make_group, make_machine, machines=2)
    done = started(api, busy.connection_id, as_=admin, flow="Month-end close")
    assert claimed(api, busy.key) is not None
    complete(api, busy.key, done["id"])
    started(api, busy.connection_id, as_=admin, flow="Invoice intake")
    started(api, busy.connection_id, as_=admin, flow="Payroll", priority="HIGH")
    started(api, busy.connection_id, as_=admin, flow="Reconcile", priority="LOW")
    assert claimed(api, busy.key) is not None
    share_group(api, busy.group_id, make_user(name="dana"), "CO_OWNER", as_=admin)
    make_group(name="Empty group")

    page = console.open("/console/")
    expect(page.get_by_label("Bearer token")).to_be_visible()
    console.audit("sign-in")

    console.sign_in(admin)
    console.audit("groups", ready=_counts_live)

    page.locator(f"tr[data-group='{busy.group_id}'] a").click()
    console.audit("group", ready=_group_ready)

    page.get_by_role("button", name="Re-generate password").click()
    page.get_by_role("button", name="Re-generate now").click()
    expect(page.get_by_label("New group password")).to_be_visible()
    console.audit("group-password")

    for link, name, marker in (
        ("Machines", "machines", "tr[data-machine]"),
        ("Runs", "runs", "tr[data-run]"),
        ("Administration", "admin", "[data-testid=audit] tbody tr"),
    ):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.locator(marker).first).to_be_visible()
        console.audit(name)

    page.get_by_role("link", name="Machine groups", exact=True).last.click()
    page.get_by_role("link", name="Empty group").click()
    expect(page.get_by_text("No machines yet")).to_be_visible()
    console.audit("group-empty")


def _counts_live(page: Page) -> None:
    expect(page.locator("[data-live]")).to_have_attribute("data-live", "live")


def _group_ready(page: Page) -> None:
    expect(page.locator("dl.facts [data-count=online]")).to_have_text("2")
    expect(page.get_by_test_id("running").locator("tbody tr")).to_have_count(1)
