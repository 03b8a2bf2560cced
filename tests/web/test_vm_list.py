"""The VM list in Chromium: rows follow the host in place (no reload), details, the filter
by name, thumbnails that appear without 404s or rows moving, and power actions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .test_browser import vm_record
from .test_console_ui import new_page, power_state

pytestmark = pytest.mark.peers

HALTED_VM = "centos-halted"
NAMES = ["alpine-pv-text", "centos-halted", "debian-pv", "win-hvm"]


@pytest.fixture
def page(browser: Any, gateway: Any, sim_host: Any) -> Iterator[Any]:
    context, pg, errors = new_page(browser, gateway, sim_host)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


def row(pg: Any, name: str) -> Any:
    return pg.locator("tr.vm", has=pg.locator("td.name", has_text=name))


def visible_names(pg: Any) -> list[str]:
    return [r.locator("td.name").inner_text() for r in pg.locator("tr.vm").all()
            if r.is_visible()]


def wait_updates(pg: Any, more: int = 1) -> None:
    """Until the list has refreshed itself ``more`` times from now."""
    now = pg.evaluate("window.xcpListUpdates || 0")
    pg.wait_for_function("(n) => (window.xcpListUpdates || 0) >= n", arg=now + more,
                         timeout=20_000)


def test_filter_by_name(page: Any, gateway: Any) -> None:
    assert visible_names(page) == NAMES
    assert page.inner_text("#vm-count") == "4 VMs"
    page.fill("#vm-filter", "PV")  # any case, anywhere in the name
    assert visible_names(page) == ["alpine-pv-text", "debian-pv"]
    assert page.inner_text("#vm-count") == "2 of 4 VMs"
    assert page.is_hidden("#vm-no-match")
    page.fill("#vm-filter", "nothing-like-this")
    assert visible_names(page) == [] and page.is_visible("#vm-no-match")
    page.fill("#vm-filter", "win")
    wait_updates(page)  # an update keeps the filter
    assert visible_names(page) == ["win-hvm"]
    page.reload()  # and so does the address
    assert page.input_value("#vm-filter") == "win" and visible_names(page) == ["win-hvm"]
    page.fill("#vm-filter", "")
    assert visible_names(page) == NAMES


def test_rows_follow_the_host_without_a_reload(page: Any, sim_host: Any) -> None:
    ref, rec = vm_record(sim_host, HALTED_VM)
    assert rec["power_state"] == "Halted"
    page.evaluate("() => { window.notReloaded = 'yes'; }")
    halted = row(page, HALTED_VM)
    assert halted.locator("a.console-link").count() == 2
    assert not halted.locator("a.console-link").first.is_visible()  # none while halted
    assert halted.locator("td.host").inner_text() == ""
    s = sim_host.session()
    try:
        s.xenapi.VM.start(ref, False, False)
        page.wait_for_function(
            "(name) => [...document.querySelectorAll('tr.vm')].some(r =>"
            " r.dataset.name === name && r.dataset.powerState === 'Running')",
            arg=HALTED_VM, timeout=20_000)
        assert halted.locator("td.power").inner_text() == "Running"
        assert halted.locator("td.host").inner_text() == "xcp-sim"
        assert halted.locator('a[data-protocol="rfb"]').is_visible()
        assert not halted.locator('a[data-protocol="vt100"]').is_visible()  # it has none
        assert page.evaluate("window.notReloaded") == "yes"
    finally:
        s.xenapi.VM.hard_shutdown(ref)
        s.xenapi.session.logout()
    page.wait_for_function(
        "(name) => [...document.querySelectorAll('tr.vm')].some(r =>"
        " r.dataset.name === name && r.dataset.powerState === 'Halted')",
        arg=HALTED_VM, timeout=20_000)
    assert not halted.locator("a.console-link").first.is_visible()
    assert page.evaluate("window.notReloaded") == "yes"


def test_details(page: Any) -> None:
    details = row(page, "debian-pv").locator("td.details")
    assert details.locator(".memory").inner_text() == "512 MiB"
    assert details.locator(".vcpus").inner_text() == "1 vCPU"
    assert row(page, HALTED_VM).locator("td.details .memory").inner_text() == "64 MiB"


def test_thumbnails_appear_without_404s_or_moving_rows(browser: Any, gateway: Any,
                                                       sim_host: Any) -> None:
    context, pg, errors = new_page(browser, gateway, sim_host)
    failed: list[str] = []
    pg.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400
          else None)
    try:
        pg.goto(gateway.url + "/vms")
        boxes = {name: row(pg, name).bounding_box() for name in NAMES}
        pg.wait_for_function(
            "() => [...document.querySelectorAll('img.thumbnail')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length >= 3", timeout=30_000)
        for name in ("alpine-pv-text", "debian-pv", "win-hvm"):
            img = row(pg, name).locator(".thumb-box img.thumbnail")
            assert img.count() == 1 and "thumbnail.png?t=" in img.get_attribute("src")
        assert row(pg, HALTED_VM).locator("img").count() == 0
        assert {name: row(pg, name).bounding_box() for name in NAMES} == boxes
        assert failed == []
    finally:
        context.close()
    assert not errors, errors


def test_power_actions_from_the_list(page: Any, sim_host: Any) -> None:
    halted = row(page, HALTED_VM)
    page.evaluate("() => { window.notReloaded = 'yes'; }")
    halted.locator("summary").click()
    shown = [b.inner_text() for b in halted.locator(".power-action").all() if b.is_visible()]
    assert shown == ["Start"]
    halted.locator('.power-action[data-action="start"]').click()
    page.wait_for_function(
        "(name) => [...document.querySelectorAll('tr.vm')].some(r =>"
        " r.dataset.name === name && r.dataset.powerState === 'Running')",
        arg=HALTED_VM, timeout=30_000)
    assert power_state(sim_host, HALTED_VM) == "Running"
    halted.locator("summary").click()
    shown = [b.inner_text() for b in halted.locator(".power-action").all() if b.is_visible()]
    assert shown == ["Shut down", "Reboot", "Suspend", "Pause", "Force shutdown",
                     "Force reboot"]
    halted.locator('.power-action[data-action="shutdown"]').click()
    page.wait_for_selector("#confirm[open]")
    assert page.inner_text("#confirm-text") == "Shut down “centos-halted”?"
    page.click("#confirm-cancel")
    page.wait_for_timeout(500)
    assert power_state(sim_host, HALTED_VM) == "Running"
    halted.locator("summary").click()
    halted.locator('.power-action[data-action="shutdown"]').click()
    page.click("#confirm-ok")
    deadline = time.monotonic() + 30
    while power_state(sim_host, HALTED_VM) != "Halted":
        assert time.monotonic() < deadline, "VM.clean_shutdown did not happen"
        time.sleep(0.2)
    page.wait_for_function(
        "(name) => [...document.querySelectorAll('tr.vm')].some(r =>"
        " r.dataset.name === name && r.dataset.powerState === 'Halted')",
        arg=HALTED_VM, timeout=20_000)
    # An action the host refuses: the message says why.  The list is held stale (no
    # updates) while someone else starts the VM, so it still offers Start.
    page.route("**/api/vms", lambda route: route.abort())
    ref, _ = vm_record(sim_host, HALTED_VM)
    s = sim_host.session()
    try:
        s.xenapi.VM.start(ref, False, False)
        halted.locator("summary").click()
        halted.locator('.power-action[data-action="start"]').click()
        page.wait_for_selector('#message[data-kind="error"]:not([hidden])')
        assert page.inner_text("#message-text") == ("Cannot start this VM: it is running "
                                                    "(that needs it halted).")
        page.unroute("**/api/vms")
        page.wait_for_function(
            "(name) => [...document.querySelectorAll('tr.vm')].some(r =>"
            " r.dataset.name === name && r.dataset.powerState === 'Running')",
            arg=HALTED_VM, timeout=20_000)
    finally:
        s.xenapi.VM.hard_shutdown(ref)
        s.xenapi.session.logout()
    page.click("#message-close")
    assert page.is_hidden("#message")
    assert page.evaluate("window.notReloaded") == "yes"
