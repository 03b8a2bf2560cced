"""The gateway in front of a simulated 3-host pool, the master pinned only, in Chromium.

A console of a VM on a member opens; after a live migration the page reconnects by
itself to the VM's new host; after a master change the signed-in user stays signed in
and consoles still open.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sim.simpool import PoolProcess, pool_of
from simproc import launch_sim

from .conftest import XCPCONSOLE, GatewayProcess, launch_gateway
from .test_browser import TIMEOUT_MS, open_console, sign_in, wait_canvas_not_blank

pytestmark = pytest.mark.peers

TEXT_VM = "alpine-pv-text"  # on a member


@pytest.fixture
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolProcess]:
    sim = launch_sim(tmp_path_factory.mktemp("pool"), "--hosts", "3")
    try:
        yield pool_of(sim)
    finally:
        sim.stop()


@pytest.fixture
def pool_gateway(pool: PoolProcess, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[GatewayProcess]:
    gw = launch_gateway(pool.sim, tmp_path_factory.mktemp("gateway"))  # pins the master
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def pool_page(browser: Any, pool_gateway: GatewayProcess, pool: PoolProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(pg, pool_gateway.url, pool.sim.user, pool.sim.password)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


def cli_screenshot(pool: PoolProcess, vm: str, out: Path) -> np.ndarray:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_PASSWORD=pool.sim.password, HOME=str(out.parent))
    subprocess.run([str(XCPCONSOLE), "screenshot", vm, str(out), "--host", pool.master.url,
                    "--user", pool.sim.user, "--fingerprint", pool.master.fingerprint],
                   env=env, check=True, timeout=60, capture_output=True)
    return np.asarray(Image.open(out).convert("RGB"))


def same_screen(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.any(
        np.abs(a.astype(int) - b.astype(int)) > 16, axis=2).mean() < 0.02


def test_console_follows_a_migration(pool_page: Any, pool_gateway: GatewayProcess,
                                     pool: PoolProcess, tmp_path: Path) -> None:
    open_console(pool_page, pool_gateway.url, TEXT_VM, "rfb")
    before = wait_canvas_not_blank(pool_page)
    assert same_screen(before, cli_screenshot(pool, TEXT_VM, tmp_path / "before.png"))
    lister = pool_page.context.new_page()
    lister.goto(pool_gateway.url + "/vms")
    old_row = lister.locator("tr.vm", has=lister.locator("td.name", has_text=TEXT_VM))
    old_host = old_row.get_attribute("data-host")
    assert old_host
    s = pool.session()
    try:
        vm = s.xenapi.VM.get_by_name_label(TEXT_VM)[0]
        here = s.xenapi.VM.get_resident_on(vm)
        master = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        target = next(h for h in s.xenapi.host.get_all() if h not in (here, master))
        s.xenapi.VM.pool_migrate(vm, target, {})
    finally:
        s.xenapi.session.logout()
    # the VM list (open in another tab before the move) shows the new host by itself
    s = pool.session()
    try:
        new_name = s.xenapi.host.get_name_label(target)
    finally:
        s.xenapi.session.logout()
    # the host closed the page's tunnel; the page reconnects, now to the new host
    pool_page.wait_for_selector('#console:not([data-state="connected"])')
    pool_page.wait_for_selector('#console[data-state="connected"]')
    shown = wait_canvas_not_blank(pool_page)
    assert same_screen(shown, cli_screenshot(pool, TEXT_VM, tmp_path / "after.png"))
    assert new_name != old_host
    lister.wait_for_selector(f'tr.vm[data-host="{new_name}"] td.name:text("{TEXT_VM}")')
    lister.close()


def test_users_stay_signed_in_across_a_master_change(
        pool_page: Any, pool_gateway: GatewayProcess, pool: PoolProcess) -> None:
    s = pool.session()
    try:
        new_master = next(ref for ref in s.xenapi.host.get_all()
                          if s.xenapi.host.get_address(ref) == pool.members[0].address)
        s.xenapi.pool.designate_new_master(new_master)
    finally:
        with contextlib.suppress(Exception):  # the old master now says HOST_IS_SLAVE
            s.xenapi.session.logout()
    pool_page.goto(pool_gateway.url + "/vms")
    assert pool_page.url.endswith("/vms")  # not sent back to the sign-in page
    assert pool_page.locator("tr.vm").count() >= 3
    open_console(pool_page, pool_gateway.url, TEXT_VM, "rfb")
    wait_canvas_not_blank(pool_page)
