"""A real browser (headless Chromium + Playwright) against ``xcpconsole serve`` and the
simulated host: sign in, graphical consoles (virtual terminal and QEMU) in noVNC, a
text console in xterm.js, and power actions through the console page's power menu."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.peers

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
VT_VM = "debian-pv"  # rfb console served by the virtual terminal (vncterm)
QEMU_VM = "win-hvm"  # rfb console served by a real QEMU
TEXT_VM = "alpine-pv-text"  # rfb + vt100 consoles on the same terminal
TIMEOUT_MS = 30_000

CANVAS_PNG = """() => {
  const c = document.querySelector('#screen canvas');
  return c ? c.toDataURL('image/png') : null;
}"""
XTERM_TEXT = """() => {
  const b = window.xcpTerm.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join('\\n');
}"""


def vm_record(sim: Any, name: str) -> tuple[str, dict[str, Any]]:
    s = sim.session()
    try:
        (ref,) = s.xenapi.VM.get_by_name_label(name)
        return ref, s.xenapi.VM.get_record(ref)
    finally:
        s.xenapi.session.logout()


def canvas_rgb(page: Any) -> np.ndarray:
    url = page.evaluate(CANVAS_PNG)
    assert url and url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def wait_canvas_not_blank(page: Any, timeout: float = 30) -> np.ndarray:
    deadline = time.monotonic() + timeout
    while True:
        rgb = canvas_rgb(page)
        if rgb.size and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1:
            return rgb
        if time.monotonic() > deadline:
            pytest.fail("the noVNC canvas stayed blank")
        page.wait_for_timeout(250)


@pytest.fixture
def page(browser: Any, gateway: Any, sim_host: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(pg, gateway.url, sim_host.user, sim_host.password)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


def sign_in(pg: Any, base: str, user: str, password: str) -> None:
    pg.goto(base + "/login")
    pg.fill("#username", user)
    pg.fill("#password", password)
    pg.click("#signin")
    pg.wait_for_url("**/vms")


def open_console(pg: Any, base: str, vm: str, protocol: str) -> None:
    pg.goto(base + "/vms")
    row = pg.locator("tr.vm", has=pg.locator("td.name", has_text=vm))
    row.locator(f'a[data-protocol="{protocol}"]').click()
    pg.wait_for_selector('#console[data-state="connected"]')


def test_wrong_password_shows_error(browser: Any, gateway: Any, sim_host: Any) -> None:
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(gateway.url + "/login")
        pg.fill("#username", sim_host.user)
        pg.fill("#password", "not-the-password")
        pg.click("#signin")
        assert "Wrong user name or password" in pg.inner_text("#login-error")
        assert pg.url.endswith("/login")
    finally:
        context.close()


def test_vm_list_shows_power_states(page: Any, gateway: Any, sim_host: Any) -> None:
    rows = page.locator("tr.vm")
    states = {rows.nth(i).locator("td.name").inner_text(): rows.nth(i).get_attribute(
        "data-power-state") for i in range(rows.count())}
    assert states[QEMU_VM] == "Running" and states["centos-halted"] == "Halted"


@pytest.mark.parametrize("vm", [VT_VM, QEMU_VM])
def test_graphical_console_matches_screenshot(page: Any, gateway: Any, sim_host: Any,
                                              vm: str, tmp_path: Path) -> None:
    open_console(page, gateway.url, vm, "rfb")
    shown = wait_canvas_not_blank(page)
    page.screenshot(path=str(tmp_path / "page.png"))
    env = dict(os.environ, XCP_PASSWORD=sim_host.password, HOME=str(tmp_path))
    out = tmp_path / "cli.png"
    subprocess.run([str(XCPCONSOLE), "screenshot", vm, str(out), "--host", sim_host.url,
                    "--user", sim_host.user, "--fingerprint", sim_host.fingerprint],
                   env=env, check=True, timeout=60, capture_output=True)
    cli = np.asarray(Image.open(out).convert("RGB"))
    assert cli.shape == shown.shape
    differing = np.any(np.abs(cli.astype(int) - shown.astype(int)) > 16, axis=2).mean()
    assert differing < 0.02, f"{differing:.1%} of pixels differ from `xcpconsole screenshot`"


def test_typing_into_the_virtual_terminal(page: Any, gateway: Any) -> None:
    word = f"xyzzy{os.getpid() % 1000}"
    open_console(page, gateway.url, TEXT_VM, "rfb")
    wait_canvas_not_blank(page)
    before = canvas_rgb(page)
    page.click("#screen canvas")
    page.keyboard.type(f"echo {word}")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 20
    while np.array_equal(canvas_rgb(page), before):
        assert time.monotonic() < deadline, "typing did not change the graphical console"
        page.wait_for_timeout(200)
    # The same terminal, read as text through the vt100 console in xterm.js.
    open_console(page, gateway.url, TEXT_VM, "vt100")
    page.wait_for_function(f"() => window.xcpTerm && ({XTERM_TEXT})().includes('{word}')")


def wait_terminal_text(page: Any, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = str(page.evaluate(XTERM_TEXT))
        if needle in text:
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} never showed in the xterm.js buffer:\n{text[-1500:]}")
        page.wait_for_timeout(200)


def test_text_console_shows_boot_log(page: Any, gateway: Any) -> None:
    open_console(page, gateway.url, TEXT_VM, "vt100")
    page.wait_for_function(f"() => ({XTERM_TEXT})().trim().length > 20")
    text = wait_terminal_text(page, "login")
    assert "Welcome to" in text or "systemd" in text, text[-2000:]
    page.click("#terminal")
    # Another test may have left the terminal at "Password:", which does not echo.
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"() => /(login:|[#$])\\s*$/.test(({XTERM_TEXT})().trimEnd())")
    page.keyboard.type("plugh")
    wait_terminal_text(page, "plugh")


def test_reboot_button_reboots_the_vm(page: Any, gateway: Any, sim_host: Any) -> None:
    _ref, before = vm_record(sim_host, VT_VM)
    open_console(page, gateway.url, VT_VM, "rfb")
    page.click("#power summary")
    page.click('#power .power-action[data-action="reboot"]')
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    deadline = time.monotonic() + 30
    while vm_record(sim_host, VT_VM)[1]["domid"] == before["domid"]:
        assert time.monotonic() < deadline, "VM.clean_reboot did not happen"
        time.sleep(0.2)
    # The page notices the console went away and reconnects to the rebooted VM.
    page.wait_for_selector('#console[data-state="connected"]', timeout=60_000)
    wait_canvas_not_blank(page)


def test_shutdown_button_halts_the_vm(page: Any, gateway: Any, sim_host: Any) -> None:
    ref, before = vm_record(sim_host, QEMU_VM)
    assert before["power_state"] == "Running"
    open_console(page, gateway.url, QEMU_VM, "rfb")
    shutdown = '#power .power-action[data-action="shutdown"]'
    page.click("#power summary")
    page.click(shutdown)
    page.click("#confirm-cancel")  # cancelling does nothing
    page.wait_for_timeout(500)
    assert vm_record(sim_host, QEMU_VM)[1]["power_state"] == "Running"
    assert page.get_attribute("#console", "data-state") == "connected"
    page.click("#power summary")
    page.click(shutdown)
    page.click("#confirm-ok")
    deadline = time.monotonic() + 30
    while vm_record(sim_host, QEMU_VM)[1]["power_state"] != "Halted":
        assert time.monotonic() < deadline, "VM.clean_shutdown did not happen"
        time.sleep(0.2)
    # A halted VM is not retried like a lost connection: the page says so, offers
    # Start, and connects when the VM runs again (here started by someone else).
    page.wait_for_selector('#console[data-state="stopped"]')
    s = sim_host.session()
    try:
        s.xenapi.VM.start(ref, False, False)
    finally:
        s.xenapi.session.logout()
    page.wait_for_selector('#console[data-state="connected"]', timeout=60_000)
