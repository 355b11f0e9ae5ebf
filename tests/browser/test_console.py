"""The seed's journeys in the console, in a real browser against a live server.

Every page is guarded (tests/browser/conftest.py): no request to another host, no
console error. Changes made through the API (runs started, claimed by an agent, grants
revoked) reach the open page over its WebSocket: the tests assert it was never reloaded.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import Pool, claimed, complete, pool, share_group, started
from tests.browser.conftest import TOKEN_KEY, ConsolePage, OpenConsole

pytestmark = pytest.mark.sqlite_only

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]


@pytest.fixture
def group(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> Pool:
    """A group of one online machine, and a connection to start runs on it."""
    return pool(api, admin, make_group, make_machine)


def _count(page: Page, name: str) -> Locator:
    """One of the group page's live counts."""
    return page.locator(f"dl.facts [data-count={name}]")


def test_sign_in_create_a_group_and_see_it_in_the_list(
    console: ConsolePage, admin: Account
) -> None:
    page = console.sign_in(admin)
    expect(page.get_by_test_id("me-roles")).to_have_text("System administrator")
    assert admin.token not in page.url
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == admin.token

    page.get_by_role("button", name="New machine group").click()
    page.get_by_label("Name", exact=True).fill("Finance bots")
    page.get_by_label("Description").fill("Month-end close")
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("status").filter(has_text="Created machine group")).to_be_visible()
    row = page.locator("table.groups tbody tr").filter(has_text="Finance bots")
    expect(row).to_contain_text("Month-end close")
    expect(row).to_contain_text("Owner")
    expect(row.locator("[data-count=machines]")).to_have_text("0")

    # The same name again: the API's own words, next to the name field.
    page.get_by_role("button", name="New machine group").click()
    page.get_by_label("Name", exact=True).fill("finance BOTS")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#new-name-error")).to_contain_text("already")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Filter by name").fill("nothing like it")
    expect(page.get_by_text("No machine group you can see has")).to_be_visible()
    page.get_by_label("Filter by name").fill("finance")
    expect(page.locator("table.groups tbody tr")).to_have_count(1)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Bearer token")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None


def test_a_refused_token_is_said_next_to_the_field(console: ConsolePage) -> None:
    console.allow_error("status of 401")
    page = console.open("/console/")
    page.get_by_label("Bearer token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token-error")).to_contain_text("token")
    expect(page.get_by_label("Bearer token")).to_have_attribute("aria-invalid", "true")


def test_the_group_page_follows_its_queue_live_until_the_run_finishes(
    console: ConsolePage, api: Api, admin: Account, group: Pool
) -> None:
    console.sign_in(admin)
    page = console.open_group(group.group_id)
    expect(_count(page, "online")).to_have_text("1")
    expect(page.get_by_text("Nothing is queued")).to_be_visible()
    console.mark_document()

    run = started(api, group.connection_id, as_=admin, flow="Invoice")
    expect(_count(page, "queued")).to_have_text("1")
    queued = page.get_by_test_id("queue").locator(f"tr[data-run='{run['id']}']")
    expect(queued).to_contain_text("Invoice")
    expect(queued.locator("td[data-label=Position]")).to_have_text("1")
    expect(queued.get_by_role("combobox")).to_have_value("NORMAL")

    # A second run, high priority, goes ahead of the first in dispatch order.
    urgent = started(api, group.connection_id, as_=admin, flow="Payroll", priority="HIGH")
    expect(_count(page, "queued")).to_have_text("2")
    rows = page.get_by_test_id("queue").locator("tbody tr")
    expect(rows.nth(0)).to_contain_text("Payroll")
    expect(rows.nth(1)).to_contain_text("Invoice")

    # Cancel the urgent one from the page.
    rows.nth(0).get_by_role("button", name="Cancel run").click()
    expect(_count(page, "queued")).to_have_text("1")
    expect(rows).to_have_count(1)

    # The agent claims the run: it runs on the machine, then finishes.
    claim = claimed(api, group.key)
    assert claim is not None and claim["id"] == run["id"]
    expect(_count(page, "running")).to_have_text("1")
    expect(_count(page, "queued")).to_have_text("0")
    running = page.get_by_test_id("running").locator(f"tr[data-run='{run['id']}']")
    expect(running).to_contain_text("Invoice")
    expect(running.locator("td[data-label=Machine]")).not_to_have_text("—")
    expect(running.locator("td[data-label=Elapsed]")).to_contain_text("s")
    expect(page.locator("tr[data-machine] .badge")).to_have_text("Busy")

    complete(api, group.key, run["id"])
    expect(_count(page, "running")).to_have_text("0")
    finished = page.get_by_test_id("history").locator(f"tr[data-run='{run['id']}']")
    expect(finished).to_contain_text("Succeeded")
    expect(
        page.get_by_test_id("history").locator(f"tr[data-run='{urgent['id']}']")
    ).to_contain_text("Cancelled")
    console.assert_same_document()


def test_the_list_counts_move_live(
    console: ConsolePage, api: Api, admin: Account, group: Pool
) -> None:
    page = console.sign_in(admin)
    row = page.locator(f"tr[data-group='{group.group_id}']")
    expect(row.locator("[data-count=machines]")).to_have_text("1")
    expect(page.locator("[data-live]")).to_have_attribute("data-live", "live")
    console.mark_document()
    started(api, group.connection_id, as_=admin)
    expect(row.locator("[data-count=queued]")).to_have_text("1")
    console.assert_same_document()


def test_delete_is_refused_in_the_apis_words_while_machines_remain(
    console: ConsolePage, api: Api, admin: Account, group: Pool
) -> None:
    console.sign_in(admin)
    page = console.open_group(group.group_id)
    page.get_by_role("button", name="Delete group").click()
    page.get_by_role("button", name="Yes, delete the group").click()
    expect(page.locator("#delete-error")).to_have_text(
        "remove the group's 1 machine(s) before deleting it"
    )
    expect(page.get_by_role("heading", level=1)).to_be_visible()

    # Maintenance and details from the same settings.
    switch = page.get_by_role("switch", name="Maintenance")
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(page.locator("tr[data-machine] .badge")).to_have_text("Maintenance")
    page.get_by_role("button", name="Edit details").click()
    page.get_by_label("Name", exact=True).fill("Renamed bots")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed bots")


def test_share_with_a_user_and_see_them_in_the_access_list(
    console: ConsolePage, admin: Account, make_user: MakeUser, make_group: MakeGroup
) -> None:
    dana = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"], name="dana")
    group_id = make_group(name="Shared bots")
    console.sign_in(admin)
    page = console.open_group(group_id)
    access = page.get_by_test_id("access-list")
    expect(access.locator("tbody tr").first).to_contain_text("Owner")

    page.get_by_label("Person's user name").fill("nobody-by-that-name")
    page.get_by_role("button", name="Share").click()
    expect(page.locator("#share-name-error")).to_contain_text("No user is named")

    page.get_by_label("Person's user name").fill(dana.name)
    page.get_by_label("Access", exact=True).select_option("CO_OWNER")
    page.get_by_role("button", name="Share").click()
    dana_row = access.locator(f"tr[data-user='{dana.name}']")
    expect(dana_row).to_contain_text("Co-owner")
    expect(access.locator("tbody tr").first).to_contain_text(admin.name)

    dana_row.get_by_role("button", name="Remove access").click()
    expect(dana_row).to_have_count(0)


def test_regenerate_the_password_and_read_it_once(
    console: ConsolePage, admin: Account, make_group: MakeGroup
) -> None:
    group_id = make_group()
    console.sign_in(admin)
    page = console.open_group(group_id)
    page.get_by_role("button", name="Re-generate password").click()
    page.get_by_role("button", name="Re-generate now").click()

    expect(page.get_by_text("shown only once and cannot be recovered")).to_be_visible()
    shown = page.get_by_label("New group password")
    password = shown.input_value()
    assert len(password) >= 12
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == password

    page.get_by_role("button", name="Done").click()
    expect(shown).to_have_count(0)
    page.reload()
    expect(page.get_by_role("button", name="Re-generate password")).to_be_visible()
    assert password not in page.content()


def test_a_user_level_viewer_sees_no_share_edit_or_delete_controls(
    console: ConsolePage,
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    group_id = make_group(name="Look but do not touch")
    share_group(api, group_id, viewer, "USER", as_=admin)
    page = console.sign_in(viewer)
    row = page.locator(f"tr[data-group='{group_id}']")
    expect(row).to_contain_text("User")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Look but do not touch")
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    for control in ("Manage access", "Group settings"):
        expect(page.get_by_role("heading", name=control)).to_have_count(0)
    for button in ("Share", "Edit details", "Delete group", "Re-generate password"):
        expect(page.get_by_role("button", name=button)).to_have_count(0)
    expect(page.get_by_role("switch")).to_have_count(0)
    expect(page.get_by_role("link", name="Administration")).to_have_count(0)


def test_a_revoked_viewers_open_page_stops_showing_the_group(
    open_console: OpenConsole,
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    group_id = make_group(name="Soon gone")
    share_group(api, group_id, viewer, "USER", as_=admin)
    console = open_console()
    console.sign_in(viewer)
    page = console.open_group(group_id)
    expect(page.get_by_role("heading", level=1)).to_have_text("Soon gone")
    expect(_count(page, "online")).to_have_text("0")
    console.mark_document()

    # The owner revokes the grant from their own console.
    owner = open_console()
    owner.sign_in(admin)
    owner_page = owner.open_group(group_id)
    owner_page.get_by_test_id("access-list").locator(f"tr[data-user='{viewer.name}']").get_by_role(
        "button", name="Remove access"
    ).click()
    expect(owner_page.get_by_text(f"Removed {viewer.name}'s access.")).to_be_visible()

    expect(page.get_by_test_id("lost-access")).to_contain_text(
        "You no longer have access to this group"
    )
    expect(page.get_by_text("Soon gone")).to_have_count(0)
    expect(page.get_by_role("heading", name="Queue")).to_have_count(0)
    console.assert_same_document()
