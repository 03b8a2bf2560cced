"""VNC Authentication against known answers and against Xvnc's own password tool."""

from __future__ import annotations

import shutil
import subprocess

from xcpconsole.rfb.auth import check_vnc_auth, des_key, make_challenge, vnc_auth_response

# The fixed key every VNC server uses to obfuscate ~/.vnc/passwd (d3des "fixedkey").
_PASSWD_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7])


def test_key_bits_are_reversed_per_byte() -> None:
    # 'a' = 0x61 = 01100001 -> 10000110 = 0x86; padding with zeros
    assert des_key("a") == b"\x86" + bytes(7)
    assert des_key("abcdefghij") == des_key("abcdefgh")  # only 8 bytes count


def test_check_round_trip() -> None:
    ch = make_challenge()
    assert len(ch) == 16 and ch != make_challenge()
    assert check_vnc_auth("pw", ch, vnc_auth_response("pw", ch))
    assert not check_vnc_auth("pw", ch, vnc_auth_response("px", ch))


def test_matches_tigervnc_d3des() -> None:
    """TigerVNC's vncpasswd stores the password DES-encrypted with a fixed key through
    the same bit-reversing d3des key schedule VNC Authentication uses; so treating the
    fixed key as a "password" and the padded password as a "challenge" must reproduce
    its file byte for byte."""
    tool = shutil.which("vncpasswd")
    assert tool, "vncpasswd (tigervnc-tools) is required"
    stored = subprocess.run([tool, "-f"], input=b"s3cret\n", capture_output=True,
                            check=True, timeout=10).stdout
    assert len(stored) == 8
    ours = vnc_auth_response(_PASSWD_KEY.decode("latin-1"), b"s3cret\0\0" * 2)
    assert ours == stored * 2
