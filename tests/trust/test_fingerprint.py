"""Fingerprints: every usual spelling reads the same, anything else is a ConfigError."""

from __future__ import annotations

import hashlib

import pytest

from xcpconsole.errors import ConfigError
from xcpconsole.trust import fingerprint_of, normalise_fingerprint

FP = ("7D:D2:83:99:A1:DD:68:1A:C5:D3:E2:5E:65:90:C7:AC:"
      "E2:41:8C:C0:5C:ED:F3:F0:42:F7:48:CD:AE:64:99:B3")


@pytest.mark.parametrize("text", [
    FP, FP.lower(), FP.replace(":", ""), "SHA256:" + FP, "sha256:" + FP.replace(":", "").lower(),
    "  " + FP + "\n", FP.replace(":", " "),
])
def test_fingerprint_spellings(text: str) -> None:
    assert normalise_fingerprint(text) == FP


def test_sha_dash_256_prefix() -> None:
    assert normalise_fingerprint("SHA-256:" + FP.lower()) == FP


@pytest.mark.parametrize("text", [
    f"sha256 Fingerprint={FP}\n",          # openssl 3 (x509 -noout -fingerprint -sha256)
    f"SHA256 Fingerprint={FP}",            # openssl 1.1
    f"SHA256 Fingerprint={FP.lower()}",
    f"sha256 fingerprint = {FP}",
    f"  TLS fingerprint (SHA-256): {FP}",  # the line `xcpconsole sim` prints
    f"SHA256: {FP.replace(':', '')}",
])
def test_whole_lines_people_paste(text: str) -> None:
    assert normalise_fingerprint(text) == FP


@pytest.mark.parametrize("text", [
    f"SHA1 Fingerprint={FP}", f"md5 Fingerprint={FP}", f"sha512 Fingerprint={FP}",
])
def test_a_label_of_another_digest_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="must be a SHA-256"):
        normalise_fingerprint(text)


@pytest.mark.parametrize("text", ["", "AB:CD", FP + ":00", FP.replace("7D", "7G"), "MD5:" + FP,
                                  "Fingerprint=", f"sha256 Fingerprint={FP[:-3]}"])
def test_bad_fingerprints(text: str) -> None:
    with pytest.raises(ConfigError):
        normalise_fingerprint(text)


def test_fingerprint_of_is_sha256_of_der_in_colon_hex() -> None:
    der = b"not really a certificate"
    want = hashlib.sha256(der).hexdigest().upper()
    got = fingerprint_of(der)
    assert got.replace(":", "") == want and len(got.split(":")) == 32
    assert normalise_fingerprint(got) == got


def test_settings_uses_the_same_normaliser() -> None:
    import xcpconsole.settings as settings

    assert settings.normalise_fingerprint is normalise_fingerprint
