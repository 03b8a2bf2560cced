"""A VM name with characters XML 1.0 cannot carry (ESC, other C0 controls) must not
break the XML-RPC replies, and with them the whole VM list (it did: the official SDK's
parser refused the reply).  JSON-RPC carries the name as it is."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

from simproc import XCPCONSOLE, default_inventory, sim_with_inventory

EVIL = '[[vm]]\nname_label = "evil\\u001b]0;pwned\\u0007name\\u0001"\npower_state = "Halted"\n'


def test_control_characters_in_a_name_do_not_break_the_vm_list(tmp_path: Path) -> None:
    with sim_with_inventory(tmp_path, default_inventory() + "\n" + EVIL) as sim:
        names = {r["name_label"] for r in sim.session().xenapi.VM.get_all_records().values()}
        assert "evil\ufffd]0;pwned\ufffdname\ufffd" in names and "win-hvm" in names
        # JSON-RPC: the name as the inventory has it
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

        def rpc(method: str, params: list[object]) -> object:
            body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                               "id": 1}).encode()
            req = urllib.request.Request(sim.url + "/jsonrpc", body,
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return json.loads(resp.read())["result"]

        sid = rpc("session.login_with_password", [sim.user, sim.password, "2.21", "t"])
        records = rpc("VM.get_all_records", [sid])
        assert isinstance(records, dict)
        assert "evil\x1b]0;pwned\x07name\x01" in {r["name_label"] for r in records.values()}
        # and the CLI lists every VM, the name shown safely
        out = subprocess.run(
            [str(XCPCONSOLE), "vms", "--host", sim.url, "--user", sim.user,
             "--fingerprint", sim.fingerprint],
            env={"XCP_PASSWORD": sim.password, "HOME": str(tmp_path), "PATH": "/usr/bin"},
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "win-hvm" in out.stdout and "\x1b" not in out.stdout and "\x07" not in out.stdout
