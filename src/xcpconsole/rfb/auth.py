"""VNC Authentication (security type 2): DES of a 16-byte challenge.

The key is the password's first 8 bytes (zero-padded) with the bits of each
byte reversed, a quirk of the original VNC code that every implementation
copies.  ``cryptography`` has no single-DES cipher, but TripleDES with
K1=K2=K3 is encrypt-decrypt-encrypt with one key, which is exactly single
DES (we pass the key three times: 8-byte keys are deprecated); ECB because
each 8-byte half of the challenge is encrypted independently.  TripleDES
moved to the ``decrepit`` package in cryptography 43 (the old location warns
and will go away).
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives.ciphers import Cipher, modes

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - cryptography < 43
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

from ..errors import ProtocolError

CHALLENGE_LEN = 16

_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def des_key(password: str) -> bytes:
    """The DES key VNC derives from a password (latin-1, 8 bytes, bits reversed)."""
    raw = password.encode("latin-1", "replace")[:8].ljust(8, b"\0")
    return raw.translate(_REVERSED)


def make_challenge() -> bytes:
    return os.urandom(CHALLENGE_LEN)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The client's 16-byte answer to ``challenge``."""
    if len(challenge) != CHALLENGE_LEN:
        raise ProtocolError(f"VNC auth challenge must be {CHALLENGE_LEN} bytes")
    enc = Cipher(TripleDES(des_key(password) * 3), modes.ECB()).encryptor()
    return enc.update(challenge) + enc.finalize()


def check_vnc_auth(password: str, challenge: bytes, response: bytes) -> bool:
    """Whether ``response`` proves knowledge of ``password`` (constant-time compare)."""
    return hmac.compare_digest(vnc_auth_response(password, challenge), bytes(response))
