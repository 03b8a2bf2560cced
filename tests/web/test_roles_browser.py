"""Roles and the console limit, as the host decides them, seen from the CLI and the page.

The simulated host has three users: the pool-admin, a read-only ``auditor`` and a
vm-operator ``ops``, and ``limit_console_sessions`` on.  The gateway keeps using each
user's own XenAPI session, so the host sees (and names) real users.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simproc import default_inventory, sim_with_inventory

from .conftest import XCPCONSOLE, GatewayProcess, launch_gateway
from .test_browser import TIMEOUT_MS, open_console, sign_in, wait_canvas_not_blank

pytestmark = pytest.mark.peers

VM = "debian-pv"
USERS = {"auditor": ("look-only-1", "read-only"), "ops": ("op-pass-2", "vm-operator")}


@pytest.fixture(scope="module")
def roles_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    default = default_inventory().replace("limit_console_sessions = false",
                                          "limit_console_sessions = true")
    assert "limit_console_sessions = true" in default
    users = "".join(f'\n[[users]]\nname = "{name}"\npassword = "{pw}"\nrole = "{role}"\n'
                    for name, (pw, role) in USERS.items())
    with sim_with_inventory(tmp_path_factory.mktemp("roles"), default + users) as sim:
        yield sim


@pytest.fixture(scope="module")
def roles_gateway(roles_sim: Any, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[GatewayProcess]:
    gw = launch_gateway(roles_sim, tmp_path_factory.mktemp("gateway"))
    try:
        yield gw
    finally:
        gw.stop()


def cli(sim: Any, user: str, password: str, *args: str, tmp: Path
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim.url, XCP_USER=user, XCP_PASSWORD=password,
               XCP_FINGERPRINT=sim.fingerprint, HOME=str(tmp))
    return subprocess.run([str(XCPCONSOLE), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_read_only_user_lists_but_cannot_open(roles_sim: Any, roles_gateway: GatewayProcess,
                                              browser: Any, tmp_path: Path) -> None:
    pw = USERS["auditor"][0]
    r = cli(roles_sim, "auditor", pw, "vms", "--json", tmp=tmp_path)
    assert r.returncode == 0 and VM in r.stdout
    r = cli(roles_sim, "auditor", pw, "screenshot", VM, str(tmp_path / "x.png"), tmp=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "role" in r.stderr and "not open its console" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.png").exists()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, roles_gateway.url, "auditor", pw)
        page.goto(roles_gateway.url + "/vms")
        row = page.locator("tr.vm", has=page.locator("td.name", has_text=VM))
        row.locator('a[data-protocol="rfb"]').click()
        page.wait_for_selector('#console[data-state="failed"]')
        assert "not open its console" in page.inner_text("#status")
    finally:
        context.close()


def test_console_limit_names_who_holds_the_console(roles_sim: Any,
                                                   roles_gateway: GatewayProcess,
                                                   browser: Any, tmp_path: Path) -> None:
    holder = browser.new_context()
    other = browser.new_context()
    try:
        first = holder.new_page()
        first.set_default_timeout(TIMEOUT_MS)
        sign_in(first, roles_gateway.url, roles_sim.user, roles_sim.password)
        open_console(first, roles_gateway.url, VM, "rfb")
        wait_canvas_not_blank(first)
        # the CLI of another user names the pool-admin holding it
        r = cli(roles_sim, "ops", USERS["ops"][0], "screenshot", VM, str(tmp_path / "y.png"),
                tmp=tmp_path)
        assert r.returncode != 0
        assert f"{roles_sim.user} is using this console" in r.stderr, r.stderr
        # and so does the page of another user, while it keeps retrying
        second = other.new_page()
        second.set_default_timeout(TIMEOUT_MS)
        sign_in(second, roles_gateway.url, "ops", USERS["ops"][0])
        second.goto(roles_gateway.url + "/vms")
        row = second.locator("tr.vm", has=second.locator("td.name", has_text=VM))
        row.locator('a[data-protocol="rfb"]').click()
        second.wait_for_function(
            "(who) => document.getElementById('status').textContent.includes(who)",
            arg=f"{roles_sim.user} is using this console")
        assert second.get_attribute("#console", "data-state") == "reconnecting"
    finally:
        holder.close()
        other.close()


def test_a_read_only_user_never_gets_another_users_screen(
        roles_sim: Any, roles_gateway: GatewayProcess, browser: Any) -> None:
    """Issue 11, finding 1: thumbnails are kept per host user, so the auditor, whose role
    may list VMs but not open their consoles, gets no picture, not the admin's."""
    admin, auditor = browser.new_context(), browser.new_context()
    try:
        first = admin.new_page()
        first.set_default_timeout(TIMEOUT_MS)
        sign_in(first, roles_gateway.url, roles_sim.user, roles_sim.password)
        deadline = time.monotonic() + 30
        while True:  # the admin's own capture arrives
            vms = {vm["name"]: vm for vm in first.request.get(
                roles_gateway.url + "/api/vms").json()}
            if vms[VM]["thumbnail"]:
                break
            assert time.monotonic() < deadline, vms[VM]
            time.sleep(0.5)
        url = roles_gateway.url + vms[VM]["thumbnail"]
        shot = first.request.get(url)
        assert shot.status == 200 and shot.body().startswith(b"\x89PNG")
        second = auditor.new_page()
        second.set_default_timeout(TIMEOUT_MS)
        sign_in(second, roles_gateway.url, "auditor", USERS["auditor"][0])
        for _ in range(6):  # its own captures are refused by the host, again and again
            listed = {vm["name"]: vm for vm in second.request.get(
                roles_gateway.url + "/api/vms").json()}
            assert listed[VM]["thumbnail"] is None
            assert second.request.get(url).status == 404
            time.sleep(0.5)
        assert first.request.get(url).status == 200  # the admin's picture is still its own
    finally:
        admin.close()
        auditor.close()
