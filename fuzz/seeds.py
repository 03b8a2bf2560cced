"""Valid messages each target starts from, so the fuzzer reaches deep states quickly."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from fuzz.targets import SERVER_HANDSHAKE


def _update(encoding: int, payload: bytes, w: int = 4, h: int = 4) -> bytes:
    return b"\0\0" + struct.pack(">H", 1) + struct.pack(">HHHHi", 0, 0, w, h, encoding) + payload


def _zlib_rect(encoding: int, raw: bytes) -> bytes:
    data = zlib.compress(raw)
    return struct.pack(">I", len(data)) + data if encoding == 6 else data


SEEDS: dict[str, list[bytes]] = {
    "connect_reply": [b"\0HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nRFB 003.008\n",
                      b"\0HTTP/1.0 503 Busy\r\nContent-Type: text/html\r\n\r\n<p>x</p>"],
    "rfb_client_handshake": [b"\0" + SERVER_HANDSHAKE,
                             b"\0RFB 003.003\n\0\0\0\x01" + SERVER_HANDSHAKE[18:],
                             b"\0RFB 003.008\n\x01\x02" + b"\0" * 16 + b"\0\0\0\0"],
    "rfb_client_updates": [b"\0" + _update(0, b"\x11\x22\x33\x00" * 16),
                           b"\0" + _update(1, struct.pack(">HH", 1, 1)),
                           b"\0" + _update(2, struct.pack(">I", 1) + b"\0" * 4 + b"\1" * 4
                                           + struct.pack(">HHHH", 0, 0, 2, 2)),
                           b"\0" + _update(5, b"\x01" + b"\x7f" * 64),
                           b"\0" + _update(6, _zlib_rect(6, b"\x10" * 64)),
                           b"\0" + _update(16, _zlib_rect(16, b"\x01" + b"\x20\x30\x40"
                                                          * 16)),
                           b"\0" + _update(7, b"\x80" + b"\x01\x02\x03"),
                           b"\0\x02\0\0\0\0\0\0\x03\x01\x02\x03" + b"\0\x03\0\0\0\0\0\x02hi"],
    "rfb_server": [b"\0RFB 003.008\n\x01\x01" + b"\0\0\0\x04\0\0\0\x01\0\0\0\0"
                   + b"\x04\x01\0\0\0\0\xff\x0d" + b"\x05\0\0\x10\0\x20"
                   + b"\x03\0\0\0\0\0\0\x40\0\x30"],
    "rfb_framer": [b"\x0dRFB 003.008\n\x01\x03\0\0\0\x04\xfa\0\x01\x02",
                   b"\x0c" + b"RFB 003.008\n" + SERVER_HANDSHAKE[12:]],
    "rfb_shareflag": [b"\x0dRFB 003.008\n\x01\x00" + SERVER_HANDSHAKE],
    "sim_http": [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
                 b"CONNECT /console?ref=OpaqueRef:1&session_id=OpaqueRef:2 HTTP/1.0\r\n\r\n",
                 b"GET /console?uuid=x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n"],
    "sim_xmlrpc": [b"<?xml version='1.0'?><methodCall><methodName>session.login_with_password"
                   b"</methodName><params><param><value><string>root</string></value></param>"
                   b"<param><value><string>pw</string></value></param></params></methodCall>",
                   b"<methodCall><methodName>VM.get_all_records</methodName><params><param>"
                   b"<value>x</value></param></params></methodCall>"],
    "sim_jsonrpc": [b'{"jsonrpc": "2.0", "method": "session.login_with_password", '
                    b'"params": ["root", "pw", "2.21", "t"], "id": 1}',
                    b'{"jsonrpc": "2.0", "method": "VM.get_all", "params": ["x"], "id": 2}'],
    "web_auth": [b"abc.def", b"login-1000.AAAA", b"https://consoles.example.com",
                 b"127.0.0.1:8080", b"[::1]:80"],
    "sim_idle": [b"\0RFB 003.008\n\x01\x01" + b"\x05\0\0\x10\0\x20" + b"\x04\x01\0\0\0\0\xff\x0d"],
}


def write_seeds(name: str, corpus: Path) -> None:
    """Put the seeds of ``name`` into its corpus directory (named by content, as libFuzzer)."""
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS.get(name, []):
        path = corpus / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
