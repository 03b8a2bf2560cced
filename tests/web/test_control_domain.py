"""The control domain's console is not in the gateway's VM list, and does not open by
URL either (it did: the list hid it, the console page and its token did not)."""

from __future__ import annotations

from simproc import SimProcess

from .test_host_session_end import real_gateway


async def test_control_domain_console_not_offered_by_url(sim_host: SimProcess) -> None:
    sdk = sim_host.session()
    records = sdk.xenapi.VM.get_all_records()
    dom0 = next(r["uuid"] for r in records.values() if r["is_control_domain"])
    gw = await real_gateway(sim_host)
    try:
        assert (await gw.login(sim_host.user, sim_host.password)).status == 303
        assert dom0 not in await (await gw.client.get("/vms")).text()
        page = await gw.client.get(f"/vms/{dom0}/console/rfb")
        assert page.status == 404
        token = await gw.client.post(f"/vms/{dom0}/console/rfb/token",
                                     headers={"X-CSRF-Token": await gw.csrf(),
                                              "Origin": gw.origin})
        assert token.status == 404, await token.text()
    finally:
        await gw.client.close()
