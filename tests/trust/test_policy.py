"""The pure trust policy: every branch of :func:`decide`, with plain values, no sockets.

The expected messages are written out in full: they are what users read (and
what the CLI tests grep), so a change in wording must be a deliberate one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from xcpconsole.errors import ConfigError
from xcpconsole.trust import Accept, Ask, Origin, Refuse, Source, TrustStore, decide
from xcpconsole.trust.policy import Decision, uses_system_cas

KEY = "xcp.example:443"
A = ":".join(["AA"] * 32)
B = ":".join(["BB"] * 32)
C = ":".join(["CC"] * 32)
KH = "/home/u/.config/xcpconsole/known_hosts"

PIN = Source.pin()
LINE3 = Source.known_hosts(KH, 3)
LINE7 = Source.known_hosts(KH, 7)
TOFU = Source.tofu(KH)
MASTER = Source.master("10.0.0.1:443")

INSECURE = (f"--insecure: the certificate of {KEY} is NOT checked (SHA-256 {A}); "
            "anyone in the middle can read the password")
PIN_MISMATCH = (
    f"the certificate of {KEY} does not match the pinned fingerprint:\n"
    f"  expected SHA256:{B}\n  got      SHA256:{A}\n"
    "Refusing to connect (wrong host, a new certificate, or someone in the middle).")
CHANGED = (
    f"THE CERTIFICATE OF {KEY} HAS CHANGED!\n"
    f"  remembered SHA256:{B} ({KH}:3)\n  now        SHA256:{A}\n"
    "Someone may be intercepting the connection, or the host got a new certificate. "
    f"If you are sure it is legitimate, delete that line of {KH} "
    "or pin the new one with --fingerprint.")
CHANGED_TWO = (
    f"THE CERTIFICATE OF {KEY} HAS CHANGED!\n"
    f"  remembered SHA256:{B} ({KH}:3)\n"
    f"  remembered SHA256:{C} ({KH}:7)\n  now        SHA256:{A}\n"
    "Someone may be intercepting the connection, or the host got a new certificate. "
    f"If you are sure it is legitimate, delete those lines of {KH} "
    "or pin the new one with --fingerprint.")
CHANGED_TOFU = (
    f"THE CERTIFICATE OF {KEY} HAS CHANGED!\n"
    f"  remembered SHA256:{B} (accepted in this run, {KH})\n  now        SHA256:{A}\n"
    "Someone may be intercepting the connection, or the host got a new certificate. "
    f"If you are sure it is legitimate, delete that line of {KH} "
    "or pin the new one with --fingerprint.")
MASTER_MISMATCH = (
    f"the certificate of {KEY} is not the one the pool master lists for it:\n"
    f"  expected SHA256:{B} (listed by the pool master 10.0.0.1:443)\n"
    f"  got      SHA256:{A}\n"
    "Refusing to connect (a certificate the master does not know of, or someone in the middle).")
QUESTION = (
    f"The certificate of {KEY} is not signed by a CA this machine trusts.\n"
    f"  SHA-256 fingerprint: {A}\n"
    "Compare it with the host's (on the host: openssl x509 -noout -fingerprint "
    "-sha256 -in /etc/xensource/xapi-ssl.pem).\n"
    f"Trust it and remember it in {KH}? [y/N] ")
ASK = Ask(question=QUESTION, fingerprint=A,
          declined=f"the certificate of {KEY} was not accepted")
UNKNOWN = (
    f"the certificate of {KEY} is not signed by a trusted CA and is not known "
    f"(SHA-256 {A}).\nIf that is the host's fingerprint, pin it: "
    f"--fingerprint {A}  or  XCP_FINGERPRINT={A}\n"
    "(or run once interactively to remember it in known_hosts).")


@dataclass
class Case:
    """One row: what is trusted for KEY (and elsewhere), the flags, and the verdict on A."""

    trusted: list[tuple[str, Source]] = field(default_factory=list)
    insecure: bool = False
    ca_verified: bool = False
    interactive: bool = False
    want: Decision = field(default_factory=Accept)
    other: list[tuple[str, str, Source]] = field(default_factory=list)  # other keys


CASES: dict[str, Case] = {
    # --insecure: nothing else matters, and it always warns
    "insecure": Case(insecure=True, want=Accept(INSECURE)),
    "insecure beats a mismatching pin": Case([(B, PIN)], insecure=True, want=Accept(INSECURE)),
    "insecure beats a changed line": Case([(B, LINE3)], insecure=True, want=Accept(INSECURE)),
    "insecure with a matching pin still warns": Case([(A, PIN)], insecure=True,
                                                     want=Accept(INSECURE)),
    "insecure, interactive": Case(insecure=True, interactive=True, want=Accept(INSECURE)),
    "insecure, CA-verified": Case(insecure=True, ca_verified=True, want=Accept(INSECURE)),
    # a trusted fingerprint matches, whatever its source
    "pin matches": Case([(A, PIN)], want=Accept()),
    "known_hosts line matches": Case([(A, LINE3)], want=Accept()),
    "accepted in this run": Case([(A, TOFU)], want=Accept()),
    "master vouches": Case([(A, MASTER)], want=Accept()),
    "one of several matches": Case([(B, LINE3), (A, MASTER)], want=Accept()),
    "pin matches, lower-case spelling": Case([(A.lower(), PIN)], want=Accept()),
    # trusted fingerprints exist but none matches: refused, CAs and questions do not help
    "pin mismatch": Case([(B, PIN)], want=Refuse(PIN_MISMATCH)),
    "pin mismatch, CA-verified": Case([(B, PIN)], ca_verified=True, want=Refuse(PIN_MISMATCH)),
    "pin mismatch, interactive": Case([(B, PIN)], interactive=True, want=Refuse(PIN_MISMATCH)),
    "pin message wins over a line": Case([(B, PIN), (C, LINE7)], want=Refuse(
        PIN_MISMATCH)),
    "changed line": Case([(B, LINE3)], want=Refuse(CHANGED)),
    "changed line, interactive": Case([(B, LINE3)], interactive=True, want=Refuse(CHANGED)),
    "changed line, CA-verified": Case([(B, LINE3)], ca_verified=True, want=Refuse(CHANGED)),
    "two changed lines": Case([(B, LINE3), (C, LINE7)], want=Refuse(CHANGED_TWO)),
    "changed after a yes in this run": Case([(B, TOFU)], want=Refuse(CHANGED_TOFU)),
    "line message wins over the master": Case([(B, LINE3), (C, MASTER)], want=Refuse(CHANGED)),
    "master lists another": Case([(B, MASTER)], want=Refuse(MASTER_MISMATCH)),
    "master lists another, interactive": Case([(B, MASTER)], interactive=True,
                                              want=Refuse(MASTER_MISMATCH)),
    # nothing trusted for KEY: the system CAs, then a question, then a refusal
    "CA-verified": Case(ca_verified=True, want=Accept()),
    "CA-verified, interactive: no question": Case(ca_verified=True, interactive=True,
                                                  want=Accept()),
    "unknown, interactive: ask": Case(interactive=True, want=ASK),
    "unknown, not interactive: refuse": Case(want=Refuse(UNKNOWN)),
    "another host's pin does not count": Case(other=[("xcp.example:444", B, PIN)],
                                              want=Refuse(UNKNOWN)),
    "another host's line does not count": Case(other=[("10.0.0.2:443", A, LINE3)],
                                               interactive=True, want=ASK),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case) -> None:
    store = TrustStore()
    for fingerprint, source in case.trusted:
        store.add(KEY, fingerprint, source)
    for key, fingerprint, source in case.other:
        store.add(key, fingerprint, source)
    got = decide(store, KEY, A, insecure=case.insecure, ca_verified=case.ca_verified,
                 interactive=case.interactive, remember_in=KH)
    assert got == case.want


@pytest.mark.parametrize(("trusted", "insecure", "want"), [
    ([], False, True),
    ([], True, False),
    ([(A, PIN)], False, False),
    ([(A, LINE3)], False, False),
    ([(A, MASTER)], False, False),
    ([(A, PIN)], True, False),
])
def test_system_cas_only_when_nothing_else_decides(
        trusted: list[tuple[str, Source]], insecure: bool, want: bool) -> None:
    store = TrustStore()
    for fingerprint, source in trusted:
        store.add(KEY, fingerprint, source)
    store.add("elsewhere:1", B, PIN)
    assert uses_system_cas(store, KEY, insecure=insecure) is want


def test_store_normalises_and_keeps_the_first_source() -> None:
    store = TrustStore()
    store.add(KEY, "sha256:" + A.lower().replace(":", ""), PIN)
    store.add(KEY, A, LINE3)
    store.add(KEY, B, MASTER)
    assert store.trusted(KEY) == {A: PIN, B: MASTER}
    assert KEY in store and "other:1" not in store and 42 not in store
    assert store.trusted("other:1") == {}
    copy = store.trusted(KEY)
    assert isinstance(copy, dict)
    copy.clear()
    assert store.trusted(KEY) == {A: PIN, B: MASTER}
    assert A in repr(store)


def test_store_refuses_what_is_not_a_fingerprint() -> None:
    with pytest.raises(ConfigError):
        TrustStore().add(KEY, "AB:CD", PIN)


@pytest.mark.parametrize(("source", "origin", "text"), [
    (Source.pin(), Origin.PIN, "--fingerprint"),
    (Source.pin("XCP_FINGERPRINT"), Origin.PIN, "XCP_FINGERPRINT"),
    (Source.known_hosts(KH, 3), Origin.KNOWN_HOSTS, f"{KH}:3"),
    (Source.tofu(KH), Origin.TOFU, f"accepted in this run, {KH}"),
    (Source.master("10.0.0.1:443"), Origin.MASTER, "listed by the pool master 10.0.0.1:443"),
])
def test_sources_say_where(source: Source, origin: Origin, text: str) -> None:
    assert source.origin is origin and str(source) == text


def test_decide_is_pure() -> None:
    """The same question twice gets the same answer and leaves the store as it was."""
    store = TrustStore()
    store.add(KEY, B, LINE3)
    before = store.trusted(KEY)
    first = decide(store, KEY, A, insecure=False, ca_verified=False, interactive=True,
                   remember_in=KH)
    again = decide(store, KEY, A, insecure=False, ca_verified=False, interactive=True,
                   remember_in=KH)
    assert first == again == Refuse(CHANGED) and store.trusted(KEY) == before
