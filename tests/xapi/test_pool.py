"""What the master says about the pool's hosts (xcpconsole.xapi.pool), and what it vouches for.

``read_hosts`` takes the XenAPI call as a function, so the records here are exactly what a
host sends; ``XapiSession`` is driven through a stand-in SDK object that answers them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from xcpconsole.errors import XapiError
from xcpconsole.settings import HostSettings
from xcpconsole.trust import Origin
from xcpconsole.xapi import XapiSession
from xcpconsole.xapi.pool import parse_xapi_time, pem_fingerprint, read_hosts, vouched_store

FP_A = ":".join(["AA"] * 32)
FP_B = ":".join(["B0"] * 32)
SOON = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y%m%dT%H:%M:%SZ")
LATER = "20361129T05:00:00Z"

HOSTS = {
    "OpaqueRef:h1": {"uuid": "u1", "name_label": "master", "address": "10.0.0.1",
                     "hostname": "xcp-1.example"},
    "OpaqueRef:h2": {"uuid": "u2", "name_label": "member", "address": "10.0.0.2",
                     "hostname": "xcp-2.example"},
}
POOLS = {"OpaqueRef:p": {"master": "OpaqueRef:h1"}}
VMS = {"OpaqueRef:v1": {"name_label": "web", "power_state": "Running",
                        "resident_on": "OpaqueRef:h2"},
       "OpaqueRef:v2": {"name_label": "dom0", "power_state": "Running",
                        "resident_on": "OpaqueRef:h2", "is_control_domain": True}}


def certificates(member_not_after: str = LATER) -> dict[str, Any]:
    return {
        "OpaqueRef:c1": {"host": "OpaqueRef:h1", "type": "host",
                         "fingerprint_sha256": FP_A.lower(), "not_after": LATER},
        "OpaqueRef:c2": {"host": "OpaqueRef:h2", "type": "host",
                         "fingerprint_sha256": FP_B, "not_after": member_not_after},
        "OpaqueRef:c3": {"host": "OpaqueRef:h2", "type": "ca", "fingerprint_sha256": FP_A},
        "OpaqueRef:c4": {"host": "OpaqueRef:h1", "type": "host",
                         "fingerprint_sha256": "not-a-fingerprint"},
    }


def answering(records: dict[str, Any]) -> Any:
    calls: list[str] = []

    async def call(method: str, *args: Any) -> Any:
        calls.append(method)
        if method not in records:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
        value = records[method]
        return value(*args) if callable(value) else value

    call.calls = calls  # type: ignore[attr-defined]
    return call


async def test_hosts_with_their_certificates_master_first() -> None:
    call = answering({"host.get_all_records": HOSTS, "pool.get_all_records": POOLS,
                      "VM.get_all_records": VMS, "Certificate.get_all_records": certificates()})
    hosts = await read_hosts(call)
    # fingerprints normalised (lower case accepted), CA records and a malformed one ignored
    assert [(h.name_label, h.is_master, h.fingerprint) for h in hosts] == [
        ("master", True, FP_A), ("member", False, FP_B)]
    _master, member = hosts
    assert member.resident_vms == ("web",)  # control domains are not listed
    assert member.not_after == dt.datetime(2036, 11, 29, 5, 0, tzinfo=dt.UTC)
    assert not member.expires_within(30)
    assert member.to_json()["role"] == "member"


async def test_older_hosts_give_the_pem() -> None:
    pem, fingerprint, not_after = make_pem()
    call = answering({"host.get_all_records": HOSTS, "pool.get_all_records": POOLS,
                      "VM.get_all_records": {},
                      "host.get_server_certificate": lambda ref: pem})
    hosts = await read_hosts(call)
    assert {h.fingerprint for h in hosts} == {fingerprint}
    assert call.calls.count("host.get_server_certificate") == 2
    assert pem_fingerprint(pem) == (fingerprint, not_after)


def make_pem() -> tuple[str, str, dt.datetime]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "old-host")])
    not_after = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    import hashlib

    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), fingerprint, not_after


async def test_vouched_for_an_address_or_host_name_only() -> None:
    call = answering({"host.get_all_records": HOSTS, "pool.get_all_records": POOLS,
                      "VM.get_all_records": {}, "Certificate.get_all_records": certificates()})
    hosts = await read_hosts(call)
    by_ip = vouched_store(hosts, "10.0.0.2", 443, "10.0.0.1:443").trusted("10.0.0.2:443")
    assert list(by_ip) == [FP_B] and by_ip[FP_B].origin is Origin.MASTER
    by_name = vouched_store(hosts, "XCP-2.example", 8443, "m").trusted("XCP-2.example:8443")
    assert list(by_name) == [FP_B]
    assert vouched_store(hosts, "member", 443, "m").trusted("member:443") == {}  # a label
    assert vouched_store(hosts, "10.0.0.9", 443, "m").trusted("10.0.0.9:443") == {}


@pytest.mark.parametrize(("text", "want"), [
    ("20261202T05:06:07Z", dt.datetime(2026, 12, 2, 5, 6, 7, tzinfo=dt.UTC)),
    ("2026-12-02T05:06:07Z", dt.datetime(2026, 12, 2, 5, 6, 7, tzinfo=dt.UTC)),
    ("garbage", None), ("", None), (None, None)])
def test_xapi_times(text: object, want: dt.datetime | None) -> None:
    assert parse_xapi_time(text) == want


class FakeSdk:
    """The part of ``XenAPI.Session`` that ``XapiSession.call`` uses."""

    def __init__(self, records: dict[str, Any]) -> None:
        self.records = records
        self._session = "OpaqueRef:00000000-0000-4000-8000-000000000001"

    def xenapi_request(self, method: str, args: tuple[Any, ...]) -> Any:
        return self.records[method]


async def test_a_soon_expiring_member_certificate_is_warned_about_once(tmp_path: Path) -> None:
    warnings: list[str] = []
    settings = HostSettings(url="https://10.0.0.1", user="root", password="x",
                            known_hosts=tmp_path / "kh", warn=warnings.append)
    sdk = FakeSdk({"host.get_all_records": HOSTS, "pool.get_all_records": POOLS,
                   "Certificate.get_all_records": certificates(member_not_after=SOON)})
    xapi = XapiSession(sdk, settings)
    for _ in range(3):
        store = await xapi.vouched_for("10.0.0.2", 443)
        assert list(store.trusted("10.0.0.2:443")) == [FP_B]
    assert len(warnings) == 1 and "member (10.0.0.2) expires on" in warnings[0]
    assert await xapi.vouched_for("10.0.0.1", 443) is not None
    assert len(warnings) == 1  # the master's certificate is far from expiry
