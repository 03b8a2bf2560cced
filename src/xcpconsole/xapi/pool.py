"""The pool's hosts as the (trusted) master describes them, and what that vouches for.

In a pool every host has its own self-signed certificate, and a VM's console is served
by the host the VM runs on.  We trust the master once (pin or trust on first use); the
master's database then names each host's certificate: ``Certificate`` records of type
``host`` (``fingerprint_sha256``, ``not_after``), or on hosts older than that class, the
PEM from ``host.get_server_certificate``.  Those answers arrive over the verified
connection to the master, so they can pin each member before a byte goes to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..address import format_hostport
from ..errors import XapiError
from ..trust import Source, TrustStore, normalise_fingerprint

log = logging.getLogger("xcpconsole.xapi")

#: How long the master's answer is reused before it is read again.
CACHE_SECONDS = 60.0
#: Warn when a host certificate expires within this many days.
EXPIRY_WARNING_DAYS = 30

Call = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class HostInfo:
    """One host of the pool, as ``xcpconsole hosts`` lists it."""

    ref: str
    uuid: str
    name_label: str
    address: str
    hostname: str
    is_master: bool
    fingerprint: str  # SHA-256 of the host's server certificate ("" when unknown)
    not_after: dt.datetime | None
    resident_vms: tuple[str, ...] = ()  # name-labels of the VMs running there

    def to_json(self) -> dict[str, Any]:
        return {"name_label": self.name_label, "uuid": self.uuid, "address": self.address,
                "role": "master" if self.is_master else "member",
                "certificate_sha256": self.fingerprint,
                "certificate_not_after": self.not_after.isoformat() if self.not_after else None,
                "resident_vms": list(self.resident_vms)}

    def expires_within(self, days: int, now: dt.datetime | None = None) -> bool:
        if self.not_after is None:
            return False
        now = now or dt.datetime.now(dt.UTC)
        return self.not_after - now < dt.timedelta(days=days)


def parse_xapi_time(value: object) -> dt.datetime | None:
    """A XenAPI datetime (``20261202T05:00:00Z``, as XML-RPC or JSON sends it) in UTC."""
    text = str(getattr(value, "value", value) or "").strip()
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ",
                "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def pem_fingerprint(pem: str) -> tuple[str, dt.datetime | None]:
    """(SHA-256 fingerprint, not-after) of a PEM certificate (``host.get_server_certificate``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pem.encode("ascii", "replace"))
    der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2)), cert.not_valid_after_utc


async def read_hosts(call: Call, *, with_vms: bool = True) -> list[HostInfo]:
    """Every host of the pool with its server certificate, master first.

    Three round trips whatever the pool's size: ``host`` and ``pool`` records and
    ``Certificate`` records (or one ``get_server_certificate`` per host on older hosts);
    a fourth, ``with_vms``, for what runs where.
    """
    hosts = await call("host.get_all_records")
    pools = await call("pool.get_all_records")
    vms = await call("VM.get_all_records") if with_vms else {}
    if not isinstance(hosts, dict) or not isinstance(pools, dict):
        raise XapiError("MALFORMED_REPLY", ["host or pool records are not a map"])
    master = next((str(p.get("master", "")) for p in pools.values() if isinstance(p, dict)), "")
    certs = await _host_certificates(call, hosts)
    running: dict[str, list[str]] = {}
    for rec in (vms.values() if isinstance(vms, dict) else ()):
        if (isinstance(rec, dict) and rec.get("power_state") == "Running"
                and not rec.get("is_control_domain")):
            running.setdefault(str(rec.get("resident_on", "")), []).append(
                str(rec.get("name_label", "")))
    out = []
    for ref, rec in hosts.items():
        if not isinstance(rec, dict):
            continue
        fingerprint, not_after = certs.get(str(ref), ("", None))
        out.append(HostInfo(
            ref=str(ref), uuid=str(rec.get("uuid", "")),
            name_label=str(rec.get("name_label", "")), address=str(rec.get("address", "")),
            hostname=str(rec.get("hostname", "")), is_master=str(ref) == master,
            fingerprint=fingerprint, not_after=not_after,
            resident_vms=tuple(sorted(running.get(str(ref), []), key=str.lower))))
    out.sort(key=lambda h: (not h.is_master, h.name_label.lower(), h.address))
    return out


async def _host_certificates(call: Call, hosts: Mapping[str, Any]
                             ) -> dict[str, tuple[str, dt.datetime | None]]:
    """host ref -> (SHA-256, not_after) of its ``type=host`` certificate."""
    try:
        records = await call("Certificate.get_all_records")
    except XapiError as exc:
        if exc.code != "MESSAGE_METHOD_UNKNOWN":
            raise
        records = None
    out: dict[str, tuple[str, dt.datetime | None]] = {}
    if isinstance(records, dict):
        for rec in records.values():
            if not isinstance(rec, dict) or rec.get("type", "host") != "host":
                continue
            raw = rec.get("fingerprint_sha256") or rec.get("fingerprint") or ""
            try:
                fingerprint = normalise_fingerprint(str(raw))
            except Exception:  # a malformed record vouches for nothing
                log.warning("ignoring a Certificate record with a malformed fingerprint")
                continue
            out[str(rec.get("host", ""))] = (fingerprint, parse_xapi_time(rec.get("not_after")))
        return out
    for ref in hosts:  # hosts older than the Certificate class
        try:
            pem = await call("host.get_server_certificate", ref)
            out[str(ref)] = pem_fingerprint(str(pem))
        except (XapiError, ValueError) as exc:
            log.warning("no server certificate for host %s: %s", ref, exc)
    return out


def vouched_store(hosts: list[HostInfo], host: str, port: int, master: str) -> TrustStore:
    """What the master vouches for at ``host:port``: the certificate of the host whose
    management address (or host name) is ``host``."""
    store = TrustStore()
    key = format_hostport(host, port)
    for info in hosts:
        names = {info.address.lower(), info.hostname.lower()} - {""}
        if info.fingerprint and host.lower() in names:
            store.add(key, info.fingerprint, Source.master(master))
    return store
