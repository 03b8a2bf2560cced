"""The console pages in Chromium: Start a halted VM and connect, the power menu, permanent
errors shown as such (no retry loop), "Retry now", a one-line status, the send-key menu,
native paste typing into the graphical console, the text console at 80 columns, and our
HTML 404 page."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .test_browser import (
    TIMEOUT_MS,
    XTERM_TEXT,
    open_console,
    sign_in,
    vm_record,
    wait_canvas_not_blank,
)

pytestmark = pytest.mark.peers

HALTED_VM = "centos-halted"  # QEMU behind its console once started
VT_VM = "debian-pv"  # rfb only
TEXT_VM = "alpine-pv-text"  # rfb + vt100 on the same terminal

WRAP_SEND_KEY = """() => {
  const rfb = window.xcpRfb;
  window.sentKeys = [];
  const send = rfb.sendKey.bind(rfb);
  rfb.sendKey = (keysym, code, down) => { window.sentKeys.push([keysym, code, down]);
                                          send(keysym, code, down); };
}"""


def new_page(browser: Any, gateway: Any, sim: Any, **options: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(**({"viewport": {"width": 1280, "height": 900}} | options))
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(pg, gateway.url, sim.user, sim.password)
    return context, pg, errors


@pytest.fixture
def page(browser: Any, gateway: Any, sim_host: Any) -> Iterator[Any]:
    context, pg, errors = new_page(browser, gateway, sim_host)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


def uuid_of(sim: Any, name: str) -> str:
    return str(vm_record(sim, name)[1]["uuid"])


def power_state(sim: Any, name: str) -> str:
    return str(vm_record(sim, name)[1]["power_state"])


def token_requests(pg: Any) -> list[str]:
    seen: list[str] = []
    pg.on("request", lambda r: seen.append(r.url) if r.url.endswith("/token") else None)
    return seen


def test_start_a_halted_vm_from_its_console_page(page: Any, gateway: Any, sim_host: Any
                                                 ) -> None:
    assert power_state(sim_host, HALTED_VM) == "Halted"
    page.goto(f"{gateway.url}/vms/{uuid_of(sim_host, HALTED_VM)}/console/rfb")
    page.wait_for_selector('#console[data-state="stopped"]')
    assert page.inner_text("#status") == "VM halted"
    assert "is halted: its console exists only while it runs" in page.inner_text("#notice")
    assert page.inner_text("#notice-hint") == "Start it to use its console."
    start = page.locator('#notice .power-action[data-action="start"]')
    assert start.is_visible()
    assert not page.locator('#notice .power-action[data-action="resume"]').is_visible()
    assert not page.is_visible("#btn-retry")
    # The power menu offers what a halted VM can do, nothing else.
    page.click("#power summary")
    shown = [b.get_attribute("data-action")
             for b in page.locator("#power .power-action").all() if b.is_visible()]
    assert shown == ["start"]
    page.click("#power summary")
    start.click()  # no confirmation for Start
    page.wait_for_selector('#console[data-state="connected"]', timeout=60_000)
    assert power_state(sim_host, HALTED_VM) == "Running"
    assert page.is_hidden("#notice")
    wait_canvas_not_blank(page)
    # Force shutdown asks first; then the page shows the halted VM again, with Start.
    page.click("#power summary")
    running = [b.get_attribute("data-action")
               for b in page.locator("#power .power-action").all() if b.is_visible()]
    assert running == ["shutdown", "reboot", "suspend", "pause", "force-shutdown",
                       "force-reboot"]
    page.click('#power .power-action[data-action="force-shutdown"]')
    page.wait_for_selector("#confirm[open]")
    assert "Force shutdown “centos-halted”?" in page.inner_text("#confirm-text")
    assert "unsaved work" in page.inner_text("#confirm-warning")
    page.click("#confirm-ok")
    page.wait_for_selector('#console[data-state="stopped"]')
    assert power_state(sim_host, HALTED_VM) == "Halted"
    assert page.locator('#notice .power-action[data-action="start"]').is_visible()


def test_someone_else_starting_the_vm_connects_the_page(page: Any, gateway: Any,
                                                        sim_host: Any) -> None:
    ref, rec = vm_record(sim_host, HALTED_VM)
    assert rec["power_state"] == "Halted"
    page.goto(f"{gateway.url}/vms/{rec['uuid']}/console/rfb")
    page.wait_for_selector('#console[data-state="stopped"]')
    s = sim_host.session()
    try:
        s.xenapi.VM.start(ref, False, False)
        page.wait_for_selector('#console[data-state="connected"]', timeout=60_000)
    finally:
        s.xenapi.VM.hard_shutdown(ref)
        s.xenapi.session.logout()


def test_permanent_error_is_shown_without_retrying(page: Any, gateway: Any, sim_host: Any
                                                   ) -> None:
    tokens = token_requests(page)
    page.goto(f"{gateway.url}/vms/{uuid_of(sim_host, VT_VM)}/console/vt100")
    page.wait_for_selector('#console[data-state="failed"]')
    assert "has no vt100 console" in page.inner_text("#status")
    assert "has no vt100 console" in page.inner_text("#notice-text")
    assert "Open one of the consoles it has" in page.inner_text("#notice-hint")
    page.wait_for_timeout(4500)  # a temporary error would have been retried by now (1 s)
    assert len(tokens) == 1 and page.get_attribute("#console", "data-state") == "failed"
    assert page.is_visible("#btn-retry")
    page.click("#btn-retry")  # "Retry now": one more try, at once
    deadline = time.monotonic() + 10
    while len(tokens) < 2:
        assert time.monotonic() < deadline, "Retry now asked for no token"
        page.wait_for_timeout(100)
    page.wait_for_selector('#console[data-state="failed"]')
    page.wait_for_timeout(1500)
    assert len(tokens) == 2


def test_retry_now_skips_the_wait(page: Any, gateway: Any) -> None:
    open_console(page, gateway.url, VT_VM, "rfb")
    tokens = token_requests(page)
    page.evaluate("() => window.xcpRfb.disconnect()")  # as if the connection dropped
    page.wait_for_selector('#console[data-state="reconnecting"]')
    page.click("#btn-retry")
    page.wait_for_selector('#console[data-state="connected"]')
    assert len(tokens) == 1
    assert page.is_hidden("#btn-retry")


def test_a_long_status_keeps_the_toolbar_on_its_lines(browser: Any, gateway: Any,
                                                      sim_host: Any) -> None:
    context, pg, errors = new_page(browser, gateway, sim_host,
                                   viewport={"width": 900, "height": 700})
    try:
        open_console(pg, gateway.url, VT_VM, "rfb")
        bar = pg.locator("nav.toolbar")
        height = bar.bounding_box()["height"]
        line = pg.locator("#status").bounding_box()["height"]
        pg.evaluate("() => { document.getElementById('status').textContent = "
                    "'The host refused the console because of a very long reason '.repeat(8); }")
        assert bar.bounding_box()["height"] == height
        assert pg.locator("#status").bounding_box()["height"] == line
        assert pg.evaluate("() => { const s = document.getElementById('status');"
                           " return s.scrollWidth > s.clientWidth; }")
    finally:
        context.close()
    assert not errors, errors


def test_send_key_menu(page: Any, gateway: Any) -> None:
    open_console(page, gateway.url, VT_VM, "rfb")
    page.evaluate(WRAP_SEND_KEY)
    page.click("#keys-menu summary")
    page.click('#keys-menu button:text-is("Ctrl-Alt-F2")')
    assert page.evaluate("window.sentKeys") == [
        [0xFFE3, "ControlLeft", True], [0xFFE9, "AltLeft", True], [0xFFBF, "F2", True],
        [0xFFBF, "F2", False], [0xFFE9, "AltLeft", False], [0xFFE3, "ControlLeft", False]]
    assert page.get_attribute("#keys-menu", "open") is None  # the menu closed
    page.evaluate("() => { window.sentKeys = []; }")
    page.click("#keys-menu summary")
    page.fill("#sysrq-letter", "s")
    page.click("#key-sysrq")
    assert page.evaluate("window.sentKeys") == [
        [0xFFE9, "AltLeft", True], [0xFF15, "PrintScreen", True], [0x73, "KeyS", True],
        [0x73, "KeyS", False], [0xFF15, "PrintScreen", False], [0xFFE9, "AltLeft", False]]
    page.evaluate("() => { window.sentKeys = []; }")
    page.click("#btn-cad")
    assert [k[0] for k in page.evaluate("window.sentKeys")] == [
        0xFFE3, 0xFFE9, 0xFFFF, 0xFFFF, 0xFFE9, 0xFFE3]


def test_ctrl_v_types_the_clipboard(browser: Any, gateway: Any, sim_host: Any) -> None:
    word = f"pasted{os.getpid() % 1000}"
    context, pg, errors = new_page(browser, gateway, sim_host)
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
        open_console(pg, gateway.url, TEXT_VM, "rfb")
        wait_canvas_not_blank(pg)
        pg.evaluate(WRAP_SEND_KEY)
        pg.evaluate("(text) => navigator.clipboard.writeText(text)", f"echo {word}\n")
        pg.click("#screen canvas")
        pg.keyboard.press("Control+V")
        pg.wait_for_function("() => window.sentKeys.some(k => k[0] === 0xff0d)")
        sent = pg.evaluate("window.sentKeys")
        downs = [k[0] for k in sent if k[2] is True]  # (a press+release is 3 calls)
        typed = "".join(chr(k) for k in downs if k < 0x100)
        assert f"echo {word}" in typed
        # Control went up before the text (else the guest gets Ctrl-E, Ctrl-C...)
        first_char = next(i for i, k in enumerate(sent) if k[0] == ord("e"))
        assert [0xFFE3, "ControlLeft", False] in sent[:first_char]
        # The text reached the terminal behind the console as typed (with Control still
        # down it would be ^E^C^H^O): the same terminal, read as text.
        open_console(pg, gateway.url, TEXT_VM, "vt100")
        pg.wait_for_function(f"() => ({XTERM_TEXT})().includes('echo {word}')")
    finally:
        context.close()
    assert not errors, errors


@pytest.mark.parametrize("width", [560, 320])
def test_text_console_keeps_80_columns(browser: Any, gateway: Any, sim_host: Any,
                                       width: int) -> None:
    context, pg, errors = new_page(browser, gateway, sim_host,
                                   viewport={"width": width, "height": 600})
    try:
        open_console(pg, gateway.url, TEXT_VM, "vt100")
        assert pg.evaluate("window.xcpTerm.cols") >= 80
        font = pg.evaluate("window.xcpTerm.options.fontSize")
        scrolls = pg.evaluate("() => { const b = document.getElementById('terminal');"
                              " return b.scrollWidth > b.clientWidth; }")
        if width == 560:
            assert font < 15 and not scrolls  # a smaller font fits 80 columns
        else:
            assert font == 9 and scrolls  # the smallest font does not: it scrolls sideways
        assert pg.is_visible("#power summary")  # the text console has the power menu too
    finally:
        context.close()
    assert not errors, errors


def test_unknown_url_gets_an_html_page(page: Any, gateway: Any) -> None:
    resp = page.goto(gateway.url + "/vms/x/nothing-here")
    assert resp.status == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert page.inner_text("h1") == "Page not found"
    assert "/vms/x/nothing-here" in page.inner_text("main")
    page.click("text=Back to the VM list")
    page.wait_for_url("**/vms")
