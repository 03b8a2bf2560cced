"""A view-only console page against a host with ``vm_console_idle_timeout`` = 3 s.

The host cuts a console that sends no key or pointer event (a page somebody only
watches) after the timeout; the page must reconnect by itself and keep showing the
console — and the gateway must not fake input to keep it open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simproc import launch_sim
from xcpconsole.sim import inventory as sim_inventory

from .conftest import GatewayProcess, launch_gateway
from .test_browser import TIMEOUT_MS, open_console, sign_in, wait_canvas_not_blank

pytestmark = pytest.mark.peers

VM = "debian-pv"  # the virtual terminal speaks RFB 3.3: the host's idle monitor applies

STATES = """() => {
  window.xcpStates = [];
  new MutationObserver(() => window.xcpStates.push(
      document.getElementById('console').dataset.state))
    .observe(document.getElementById('console'), {attributes: true,
                                                  attributeFilter: ['data-state']});
}"""


@pytest.fixture(scope="module")
def idle_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, GatewayProcess]]:
    tmp = tmp_path_factory.mktemp("idle")
    text = Path(sim_inventory.__file__).with_name("default_inventory.toml").read_text()
    (tmp / "inventory.toml").write_text(
        text.replace("[pool]\n", "[pool]\nvm_console_idle_timeout = 3\n", 1))
    sim = launch_sim(tmp / "state", "--inventory", str(tmp / "inventory.toml"))
    gw = launch_gateway(sim, tmp / "gw")
    try:
        yield sim, gw
    finally:
        gw.stop()
        sim.stop()


def test_a_watched_page_survives_the_idle_timeout(idle_gateway: tuple[Any, GatewayProcess],
                                                  browser: Any) -> None:
    sim, gw = idle_gateway
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, gw.url, sim.user, sim.password)
        open_console(page, gw.url, VM, "rfb")
        wait_canvas_not_blank(page)
        page.evaluate(STATES)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # watch only: no key, no mouse
            states = page.evaluate("window.xcpStates")
            if len(states) >= 2 and states[-1] == "connected":  # cut, then back
                break
            page.wait_for_timeout(250)
        states = page.evaluate("window.xcpStates")
        # the host cut it (idle) and the page came back by itself
        assert {"reconnecting", "connecting"} & set(states), states
        assert states[-1] == "connected", states
        page.wait_for_selector('#console[data-state="connected"]')
        wait_canvas_not_blank(page)
        assert page.get_attribute("#console", "data-state") == "connected"
    finally:
        context.close()
